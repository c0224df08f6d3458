//! The container's first process: cloned into its namespaces and its cgroup, it runs the
//! setup plan and execs the shim by descriptor (the shim is never copied into the guest).
//!
//! Failures come back on a close-on-exec error pipe (`common::errpipe`). The shim inherits
//! the write end (`--report-fd`) and keeps it until the guest init (or the command) has
//! been exec'd, so the launcher reads end of file only then, and a record naming the step
//! when anything on the way failed.

use std::ffi::{CString, c_char};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cradle_common::errpipe::{Failure, RECORD_LEN};
use cradle_common::guest::{INIT_PATHS, proc_step_target};
use cradle_common::outcome::{Outcome, Status};
use cradle_common::stage::Stage;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::{Pid, pipe2, read, write};

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::plan::Step;
use crate::sys;

/// The namespaces every container gets. The cgroup namespace is made later, by a process
/// already in its cgroup: the child itself in run mode, the guest init's child in boot
/// mode (see `plan` and `cgroups`).
pub const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWNET);

/// The shim executable, open on the host.
pub struct ShimBinary {
    file: File,
    path: PathBuf,
}

impl ShimBinary {
    /// `--shim PATH`, or `cradle-shim` next to the launcher's own executable.
    pub fn locate(explicit: Option<&Path>) -> Result<Self> {
        let path = match explicit {
            Some(path) => path.to_owned(),
            None => std::env::current_exe()
                .map_err(|e| Error::host("finding the launcher's executable", e))?
                .with_file_name("cradle-shim"),
        };
        let ctx = || format!("shim {} (use --shim PATH)", path.display());
        let file = File::open(&path).map_err(|e| Error::host(ctx(), e))?;
        let meta = file.metadata().map_err(|e| Error::host(ctx(), e))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(Error::host(
                ctx(),
                std::io::Error::other("not an executable file"),
            ));
        }
        Ok(ShimBinary { file, path })
    }
}

/// How far the container's first process got, as the error pipe tells.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// Nothing yet.
    Pending,
    /// End of file: every exec succeeded; the guest init or the command runs.
    Started,
    /// A step failed.
    Failed(Failure),
}

/// The container's first process (the shim, once it has exec'd), until it is reaped.
pub struct Container {
    pub pid: Pid,
    pidfd: OwnedFd,
    errpipe: Option<OwnedFd>,
    report: Vec<u8>,
    steps: Vec<Step>,
    shim_path: PathBuf,
    reaped: bool,
}

fn cstrings(words: &[String]) -> Result<Vec<CString>> {
    words
        .iter()
        .map(|w| {
            CString::new(w.as_bytes())
                .map_err(|_| Error::Usage(format!("{w:?} contains a NUL byte")))
        })
        .collect()
}

fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

/// In the child, on failure: one record on the pipe, then exit. Nothing is allocated.
fn fail(report: BorrowedFd, stage: Stage, detail: usize, errno: Errno) -> ! {
    let _ = write(
        report,
        &Failure::new(stage, detail as u32, errno as i32).to_bytes(),
    );
    sys::exit_now(Outcome::SetupFailed.encode())
}

/// The child between clone and exec. Only system calls on memory prepared by the parent.
/// `keep` is a descriptor the shim inherits besides `report`.
fn child(
    steps: &[Step],
    shim: BorrowedFd,
    report: BorrowedFd,
    keep: Option<BorrowedFd>,
    argv: &[*const c_char],
    envp: &[*const c_char],
) -> ! {
    // die with the launcher; the shim keeps this across exec (it is not set-uid)
    let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    // the launcher may have gone before that: then nobody reads the pipe's other end
    let mut fds = [PollFd::new(report, PollFlags::POLLOUT)];
    if poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
    {
        sys::exit_now(Outcome::SetupFailed.encode());
    }
    let _ = prctl::set_name(c"cradle:child");
    // Rust's runtime ignores SIGPIPE; neither the shim nor the guest may inherit that
    sys::default_sigpipe();
    if let Err((index, errno)) = crate::plan::apply(steps) {
        fail(report, Stage::Setup, index, errno);
    }
    for fd in [Some(report), keep].into_iter().flatten() {
        if let Err(errno) = sys::keep_on_exec(fd) {
            fail(report, Stage::ExecShim, 0, errno);
        }
    }
    let errno = sys::exec_fd(shim, argv, envp);
    fail(report, Stage::ExecShim, 0, errno)
}

/// Clones the container's first process into `cgroup` (its shim leaf in boot mode). It
/// runs `steps`, then execs the shim with `--report-fd`, `--cgroup-fd` for the guest's
/// leaf in boot mode, and `shim_args`, with exactly `env` as its environment.
pub fn spawn(
    shim: &ShimBinary,
    steps: Vec<Step>,
    shim_args: &[String],
    env: &[String],
    cgroup: &Cgroup,
) -> Result<Container> {
    let (read_end, write_end) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::host("error pipe", e))?;
    let mut words = vec![
        "cradle-shim".to_owned(),
        "--report-fd".to_owned(),
        write_end.as_raw_fd().to_string(),
    ];
    let guest = cgroup.guest_dir();
    if let Some(fd) = guest {
        words.extend(["--cgroup-fd".to_owned(), fd.as_raw_fd().to_string()]);
    }
    words.extend_from_slice(shim_args);
    let argv = cstrings(&words)?;
    let envp = cstrings(env)?;
    let (argv_ptrs, envp_ptrs) = (pointers(&argv), pointers(&envp));
    // the child only makes system calls on the memory prepared above, then execs or exits
    let (pid, pidfd) = sys::fork_into(NAMESPACES, Some(cgroup.first_process_dir()), || {
        let shim = shim.file.as_fd();
        child(
            &steps,
            shim,
            write_end.as_fd(),
            guest,
            &argv_ptrs,
            &envp_ptrs,
        )
    })
    .map_err(|e| {
        Error::setup(
            format!(
                "clone into new namespaces and cgroup {}",
                cgroup.path().display()
            ),
            e,
        )
    })?;
    drop(write_end);
    nix::fcntl::fcntl(&read_end, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(|e| Error::host("error pipe", e))?;
    Ok(Container {
        pid,
        pidfd,
        errpipe: Some(read_end),
        report: Vec::new(),
        steps,
        shim_path: shim.path.clone(),
        reaped: false,
    })
}

impl Container {
    /// Readable when the process ended.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The error pipe, until it reached end of file.
    pub fn errpipe(&self) -> Option<BorrowedFd<'_>> {
        self.errpipe.as_ref().map(|fd| fd.as_fd())
    }

    /// Reads what the error pipe has now.
    pub fn read_report(&mut self) -> Report {
        let Some(fd) = &self.errpipe else {
            return Report::Pending;
        };
        let mut buf = [0u8; RECORD_LEN];
        loop {
            match read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => self.report.extend_from_slice(&buf[..n]),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Report::Pending,
                Err(e) => {
                    self.errpipe = None;
                    return Report::Failed(Failure::new(Stage::Setup, u32::MAX, e as i32));
                }
            }
        }
        self.errpipe = None;
        if self.report.is_empty() {
            return Report::Started;
        }
        Report::Failed(Failure::from_bytes(&self.report).unwrap_or(Failure::new(
            Stage::Setup,
            u32::MAX,
            Errno::EPROTO as i32,
        )))
    }

    /// The process's status, once it has ended (it is then reaped).
    pub fn try_wait(&mut self) -> Option<Status> {
        if self.reaped {
            return None;
        }
        match waitid(
            Id::PIDFd(self.pidfd.as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::Exited(_, code)) => {
                self.reaped = true;
                Some(Status::Exited(code as u8))
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                self.reaped = true;
                Some(Status::Signaled(sig as i32))
            }
            _ => None,
        }
    }

    /// Sends `signal` to the shim.
    pub fn signal(&self, signal: i32) {
        if let Err(e) = sys::pidfd_send_signal(self.pidfd.as_fd(), signal) {
            log::debug!("signal {signal} to the shim: {e}");
        }
    }

    /// The guest init's host pid: the shim's only child once it started it.
    pub fn guest_init(&self) -> Option<Pid> {
        let path = format!("/proc/{0}/task/{0}/children", self.pid);
        let text = std::fs::read_to_string(path).ok()?;
        text.split_whitespace()
            .next()?
            .parse()
            .ok()
            .map(Pid::from_raw)
    }

    /// A failure record in words, as an error with the right exit code.
    pub fn failure_error(&self, failure: Failure, command: &str) -> Error {
        let errno = Errno::from_raw(failure.errno);
        let detail = failure.detail as usize;
        match failure.stage {
            Stage::Setup => match self.steps.get(detail) {
                Some(step) => Error::setup(step.to_string(), errno),
                None => Error::setup("set up the container (error pipe)", errno),
            },
            Stage::ExecShim if errno == Errno::ENOENT => Error::setup(
                format!(
                    "exec the shim {} (it must be statically linked to run in any guest; see scripts/build)",
                    self.shim_path.display()
                ),
                errno,
            ),
            Stage::ExecShim => {
                Error::setup(format!("exec the shim {}", self.shim_path.display()), errno)
            }
            Stage::FindInit => Error::BadTemplate,
            Stage::ExecInit => {
                let path = INIT_PATHS
                    .get(detail)
                    .map_or("the guest init".into(), |p| p.to_string_lossy());
                Error::setup(format!("exec {path}"), errno)
            }
            Stage::GuestCgroup => {
                let what = [
                    "make the guest's cgroup namespace",
                    "mount the guest's /sys/fs/cgroup",
                ];
                Error::setup(
                    what.get(detail)
                        .copied()
                        .unwrap_or("give the guest its cgroup"),
                    errno,
                )
            }
            Stage::GuestProc => {
                let target =
                    proc_step_target(detail).map_or("proc".into(), |t| t.to_string_lossy());
                Error::setup(format!("mount /{target} for the guest init"), errno)
            }
            Stage::ExecCommand => Error::Exec {
                command: command.to_owned(),
                errno,
            },
            other => Error::setup(other.describe(), errno),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let _ = waitid(Id::PIDFd(self.pidfd.as_fd()), WaitPidFlag::WEXITED);
        }
    }
}
