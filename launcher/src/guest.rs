//! A running guest, reached from outside: `cradle exec`, `cradle stop`, and the launcher's
//! own graceful halt. Everything goes through a pidfd of the guest init, checked to be the
//! process the state directory names, so a recycled pid can never be acted on.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cradle_common::outcome::Status;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::reboot::{RebootMode, reboot};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::cgroups;
use crate::error::{Error, Result};
use crate::state::Observed;
use crate::sys;

/// The namespaces a command run in the guest joins: all of the guest init's.
const JOINED: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWNET)
    .union(CloneFlags::CLONE_NEWCGROUP);

/// How long a halt or reboot request that failed waits before it is made again.
const REQUEST_RETRY: Duration = Duration::from_secs(1);

/// The commands that ask a guest init to halt: the first that exists (OpenVZ's halt mode:
/// `halt`, else `init 0`).
pub const HALT: &[&[&str]] = &[&["halt"], &["init", "0"]];
/// The command that asks a guest init to reboot.
pub const REBOOT: &[&[&str]] = &[&["reboot"]];
/// How a helper ends when none of its commands exists in the guest.
pub const NO_COMMAND: u8 = 127;

/// PATH for commands run in the guest when the guest's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Guest {
    pub init: Pid,
    pidfd: OwnedFd,
    /// cgroup.procs of the guest init's own cgroup, opened on the host: commands run in the
    /// guest join it. It is always a leaf (it holds a process), so it always takes more.
    cgroup_procs: Option<File>,
    env: Vec<String>,
}

fn ns_inode(path: &str) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

/// The cgroup v2 path of `init` (from /proc/PID/cgroup), when it is in container `name`'s
/// cgroup or below it.
fn container_cgroup_of(init: Pid, name: &str) -> Option<String> {
    let wanted = format!("/{}", cgroups::name_for(name));
    let below = format!("{wanted}/");
    let text = fs::read_to_string(format!("/proc/{init}/cgroup")).ok()?;
    text.lines()
        .filter_map(|line| line.strip_prefix("0::"))
        .find(|path| *path == wanted || path.starts_with(&below))
        .map(str::to_owned)
}

impl Guest {
    /// The guest init `init` of container `name`, after checking that it is one: in the
    /// container's cgroup, in a PID namespace other than ours, and still that process.
    pub fn open(name: &str, init: Pid, env: Vec<String>) -> Result<Self> {
        let gone = || Error::NotRunning(name.to_owned());
        let pidfd = sys::pidfd_open(init).map_err(|_| gone())?;
        let other_ns = ns_inode(&format!("/proc/{init}/ns/pid")) != ns_inode("/proc/self/ns/pid");
        let cgroup = container_cgroup_of(init, name)
            .filter(|_| other_ns)
            .ok_or_else(gone)?;
        // still alive now, so the checks above were about this very process
        sys::pidfd_send_signal(pidfd.as_fd(), 0).map_err(|_| gone())?;
        let cgroup_procs = cgroups::v2_root()
            .map(|root| {
                root.join(cgroup.trim_start_matches('/'))
                    .join("cgroup.procs")
            })
            .and_then(|path| OpenOptions::new().write(true).open(path).ok());
        Ok(Guest {
            init,
            pidfd,
            cgroup_procs,
            env,
        })
    }

    /// The running guest of `name`, waiting up to `wait` while it is still booting.
    pub fn find(state: &Observed, name: &str, wait: Duration) -> Result<Self> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            state.wait_until(left, |s| s.running().is_some() || !s.is_alive())?;
            if !state.is_alive() {
                return Err(Error::NotRunning(name.to_owned()));
            }
            let Some(running) = state.running() else {
                return Err(Error::Timeout(format!(
                    "{name} has no running guest init (still booting?) after {}s",
                    wait.as_secs()
                )));
            };
            match Guest::open(name, running.init, state.env()?) {
                // the guest init may have just ended (a reboot): look again
                Err(Error::NotRunning(_))
                    if !deadline.saturating_duration_since(Instant::now()).is_zero() =>
                {
                    state
                        .wait_until(Duration::from_millis(100), |s| s.running() != Some(running))?;
                }
                other => return other,
            }
        }
    }

    /// Moves the calling process into all of the guest init's namespaces: its mount
    /// namespace (and so its root), UTS, IPC, network, cgroup, and PID namespace for the
    /// children it forks from now on. The caller must be single-threaded.
    pub fn enter(&self) -> Result<()> {
        setns(&self.pidfd, JOINED).map_err(|e| {
            Error::setup(
                format!("join the namespaces of the guest init (pid {})", self.init),
                e,
            )
        })
    }

    /// `argv` as a command for a process that has entered the guest: the guest's
    /// environment (plus `extra`), working directory /, and the container's cgroup.
    pub fn command(&self, argv: &[String], extra: &[String]) -> Command {
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]).env_clear().current_dir("/");
        let vars = self
            .env
            .iter()
            .chain(extra)
            .filter_map(|var| var.split_once('='));
        let mut has_path = false;
        for (key, value) in vars {
            has_path |= key == "PATH";
            command.env(key, value);
        }
        if !has_path {
            command.env("PATH", DEFAULT_PATH);
        }
        if let Some(procs) = &self.cgroup_procs {
            sys::join_cgroup_on_exec(&mut command, procs.as_raw_fd());
        }
        command
    }

    /// Asks the guest init to halt or reboot: runs the first of `candidates` that exists in
    /// the guest, from a helper process that enters it. A request that fails is made again
    /// every second (an init that is still starting may not take it yet: systemd before its
    /// control socket is up) until it succeeds or the helper is dropped. The helper exits 0
    /// once a request succeeded, [`NO_COMMAND`] when no candidate exists, 125 when it could not
    /// enter.
    pub fn spawn_helper(&self, candidates: &[&[&str]]) -> Result<Helper> {
        let (_, pidfd) = sys::fork_helper(|| {
            if self.enter().is_err() {
                return 125;
            }
            loop {
                // the first candidate that exists, and how its run went
                let tried = candidates.iter().find_map(|argv| {
                    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
                    match self.command(&argv, &[]).stdin(Stdio::null()).status() {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        tried => Some(tried),
                    }
                });
                match tried {
                    None => return NO_COMMAND,
                    Some(Ok(status)) if status.success() => return 0,
                    Some(Ok(_)) => std::thread::sleep(REQUEST_RETRY),
                    Some(Err(_)) => return 126,
                }
            }
        })
        .map_err(|e| Error::host("fork a helper", e))?;
        Ok(Helper { pidfd, done: false })
    }

    /// Powers the guest off at once, as OpenVZ's kill mode does: reboot(2) POWER_OFF from
    /// inside the guest's PID namespace, which makes the kernel kill the guest init (its
    /// parent sees it killed by SIGINT, a halt).
    pub fn power_off(&self) -> Result<()> {
        let (_, pidfd) = sys::fork_helper(|| {
            if setns(&self.pidfd, CloneFlags::CLONE_NEWPID).is_err() {
                return 2;
            }
            // never, whatever happened above, call reboot(2) in our own PID namespace
            if ns_inode("/proc/self/ns/pid_for_children") == ns_inode("/proc/self/ns/pid") {
                return 3;
            }
            match sys::fork_helper(|| match reboot(RebootMode::RB_POWER_OFF) {
                Err(e) => e as u8,
            }) {
                Ok((_, grandchild)) => wait_pidfd(grandchild.as_fd()).map_or(4, |s| s.shell_code()),
                Err(_) => 4,
            }
        })
        .map_err(|e| Error::host("fork a helper", e))?;
        match wait_pidfd(pidfd.as_fd()) {
            Some(Status::Exited(0)) => Ok(()),
            other => Err(Error::setup(
                format!("power off the guest (reboot(2) in its PID namespace: {other:?})"),
                Errno::EIO,
            )),
        }
    }
}

/// A command's exit status as a shell reports it: the code, or 128+N for signal N.
pub fn status_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        _ => 1,
    }
}

/// Waits for the process behind `pidfd` (its child) to end, and reaps it.
fn wait_pidfd(pidfd: BorrowedFd) -> Option<Status> {
    loop {
        match waitid(Id::PIDFd(pidfd), WaitPidFlag::WEXITED) {
            Ok(WaitStatus::Exited(_, code)) => return Some(Status::Exited(code as u8)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(Status::Signaled(sig as i32)),
            Err(Errno::EINTR) => continue,
            _ => return None,
        }
    }
}

/// A helper process running a command in the guest.
pub struct Helper {
    pidfd: OwnedFd,
    done: bool,
}

impl Helper {
    /// Readable when the helper has ended.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The helper's status once it has ended.
    pub fn try_wait(&mut self) -> Option<Status> {
        if self.done {
            return None;
        }
        let status = match waitid(
            Id::PIDFd(self.pidfd.as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::Exited(_, code)) => Status::Exited(code as u8),
            Ok(WaitStatus::Signaled(_, sig, _)) => Status::Signaled(sig as i32),
            _ => return None,
        };
        self.done = true;
        Some(status)
    }

    /// True when the helper found none of its commands in the guest. It learns that at
    /// once, while a request being retried keeps it running: so this waits no longer than
    /// one retry period, nor than `limit`.
    pub fn found_no_command(&mut self, limit: Duration) -> bool {
        self.wait(limit.min(REQUEST_RETRY)) == Some(Status::Exited(NO_COMMAND))
    }

    /// Waits up to `timeout` for the helper to end.
    fn wait(&mut self, timeout: Duration) -> Option<Status> {
        let mut fds = [PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        let _ = poll(&mut fds, ms);
        self.try_wait()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if !self.done {
            let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
            let _ = wait_pidfd(self.pidfd.as_fd());
        }
    }
}
