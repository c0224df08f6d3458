//! A child process behind a pidfd: the one type for every process the launcher forks or
//! spawns (the container's first process, the holder of a new user namespace, the shim it
//! runs in a guest for `exec` or a halt, the `cradle` runs of `autostart`). It is waited for in poll(2) through its pidfd, never through
//! SIGCHLD, and killed and reaped when dropped, so no path leaves one behind.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use cradle_common::outcome::Status;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sched::CloneFlags;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::sys::{self, Deadline, InChild, SingleThreaded};

pub struct Child {
    pid: Pid,
    pidfd: OwnedFd,
    /// Its status, once it has been reaped.
    status: Option<Status>,
}

impl Child {
    /// clone3 into new `namespaces` (and `cgroup`): see [`sys::fork_into`] for what the
    /// child may do.
    pub fn fork_into(
        threads: &SingleThreaded,
        namespaces: CloneFlags,
        cgroup: Option<BorrowedFd>,
        child: impl FnOnce(InChild),
    ) -> nix::Result<Self> {
        let (pid, pidfd) = sys::fork_into(threads, namespaces, cgroup, child)?;
        Ok(Child {
            pid,
            pidfd,
            status: None,
        })
    }

    /// A child of this process behind `pidfd`, not reaped yet (see `handoff`).
    pub fn take_back(pid: Pid, pidfd: OwnedFd) -> Self {
        Child {
            pid,
            pidfd,
            status: None,
        }
    }

    /// fork(2): the child runs ordinary Rust and exits with the code it returns.
    pub fn fork(threads: &SingleThreaded, child: impl FnOnce() -> u8) -> nix::Result<Self> {
        let (pid, pidfd) = sys::fork_helper(threads, child)?;
        Ok(Child {
            pid,
            pidfd,
            status: None,
        })
    }

    /// Spawns `command` (std's fork and exec), from then on behind a pidfd like the others.
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        Self::spawn_from(command.spawn()?)
    }

    /// A child std spawned (whose pipes the caller took first), from then on behind a
    /// pidfd like the others.
    pub fn spawn_from(child: std::process::Child) -> io::Result<Self> {
        let pid = Pid::from_raw(child.id() as i32);
        // ours to reap, so the pid stays this process's until we do; std's handle only
        // keeps the pipes left in it, and dropping it neither kills nor waits
        let pidfd = match sys::pidfd_open(pid) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
        };
        drop(child);
        Ok(Child {
            pid,
            pidfd,
            status: None,
        })
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Readable when the process has ended.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    fn reap(&mut self, flags: WaitPidFlag) -> Option<Status> {
        if self.status.is_some() {
            return self.status;
        }
        loop {
            let status = match waitid(Id::PIDFd(self.pidfd.as_fd()), WaitPidFlag::WEXITED | flags) {
                Ok(WaitStatus::Exited(_, code)) => Status::Exited(code as u8),
                Ok(WaitStatus::Signaled(_, sig, _)) => Status::Signaled(sig as i32),
                Err(Errno::EINTR) => continue,
                _ => return None,
            };
            self.status = Some(status);
            return self.status;
        }
    }

    /// Its status, once it has ended (it is then reaped); `None` while it runs.
    pub fn try_wait(&mut self) -> Option<Status> {
        self.reap(WaitPidFlag::WNOHANG)
    }

    /// Waits for it to end.
    pub fn wait(&mut self) -> Option<Status> {
        self.reap(WaitPidFlag::empty())
    }

    /// Waits up to `timeout` for it to end (a signal that interrupts the wait does not
    /// shorten it).
    pub fn wait_for(&mut self, timeout: Duration) -> Option<Status> {
        let deadline = Deadline::after(timeout);
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if deadline.passed() {
                return None;
            }
            let mut fds = [PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, deadline.poll_timeout()) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return self.try_wait(),
            }
        }
    }

    /// Lets it go on without us: not killed when this is dropped (its parent's end, an
    /// OCI runtime's `create`, re-parents it to the caller). Its pid.
    pub fn release(mut self) -> Pid {
        self.status = Some(Status::Exited(0));
        self.pid
    }

    /// Sends `signal` (nothing happens once it has been reaped).
    pub fn signal(&self, signal: i32) {
        if self.status.is_none() {
            if let Err(e) = sys::pidfd_send_signal(self.pidfd.as_fd(), signal) {
                log::debug!("signal {signal} to pid {}: {e}", self.pid);
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.signal(libc::SIGKILL);
            self.wait();
        }
    }
}
