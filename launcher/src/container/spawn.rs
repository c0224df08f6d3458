//! The container's first process: cloned into its namespaces and its cgroup, it runs the
//! setup plan and execs the shim by descriptor (the shim is never copied into the guest).
//!
//! The shim runs from a file that cannot be written ([`ShimBinary`]: a read-only overlay of
//! the host's, or a sealed memfd copy), so that a process of the guest that reaches
//! `/proc/PID/exe` of the shim (PID 1 of the container) cannot change the host's binary:
//! the class of runc's CVE-2019-5736 is closed whatever the user namespace mode.
//!
//! Failures come back on a close-on-exec error pipe (`common::errpipe`). The shim inherits
//! the write end (`--report-fd`) and keeps it until the guest init (or the command) has
//! been exec'd, so the launcher reads end of file only then, and a record naming the step
//! when anything on the way failed.

use std::ffi::{CString, c_char};
use std::fs::{self, File, Metadata};
use std::io::{self, Seek};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cradle_common::errpipe::{Failure, RECORD_LEN};
use cradle_common::guest::{INIT_PATHS, proc_step_target};
use cradle_common::outcome::{Outcome, Status};
use cradle_common::stage::{ENTER_STEPS, Stage};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::{Pid, close, fchdir, pipe2, read, write};

use crate::console::relay::Relay;
use crate::container::plan::Step;
use crate::error::{Error, Result};
use crate::process::child::Child;
use crate::process::signals::Signals;
use crate::sys::{self, Deadline, InChild, SingleThreaded};

/// The namespaces the container's first process is cloned into. Its mount and PID
/// namespaces always; without a user namespace the UTS and IPC ones too, and a network
/// one when `new_net` (not when the guest is on the host's network, or has one made
/// beforehand for its link, joined by the plan). With a user namespace, those are made
/// with it (so that they belong to it) and joined by the plan's first steps. The cgroup
/// namespace is made later, by a process already in its cgroup: the child itself in run
/// mode, the guest init's child in boot mode (see `plan` and `cgroups`).
pub fn namespaces(userns: bool, new_net: bool) -> CloneFlags {
    let always = CloneFlags::CLONE_NEWNS.union(CloneFlags::CLONE_NEWPID);
    if userns {
        always
    } else if new_net {
        always
            .union(CloneFlags::CLONE_NEWUTS)
            .union(CloneFlags::CLONE_NEWIPC)
            .union(CloneFlags::CLONE_NEWNET)
    } else {
        always
            .union(CloneFlags::CLONE_NEWUTS)
            .union(CloneFlags::CLONE_NEWIPC)
    }
}

/// `MFD_EXEC` (linux/memfd.h, Linux 6.3): the memfd may be executed; said explicitly so
/// that kernels with `vm.memfd_noexec` neither refuse the exec nor warn about it.
const MFD_EXEC: MFdFlags = MFdFlags::from_bits_retain(0x0010);

/// The shim executable as the container runs it, in a file nothing can write.
///
/// - [`ShimBinary::shared`], for a shim no process of the guest can see (a guest's PID 1,
///   whose init runs in a nested PID namespace; a detached guest's monitor): the host's
///   file seen through a private overlayfs mount with no upper layer (as runc 1.2 runs
///   itself), which nothing can write through or turn back into a writable mount, and
///   whose pages are the host file's own, shared by every guest.
/// - [`ShimBinary::sealed`], for a shim the container's processes can reach through
///   `/proc/PID/exe` or `/proc/PID/map_files` (`run`'s PID 1, the helpers of `exec` and
///   `stop`, which enter the guest's PID namespace), and where overlayfs cannot be
///   mounted: a sealed copy in a memfd. A mapping of an overlay file is the underlying
///   file's on some kernels (Debian 12's 6.1), and `map_files` of a process that root
///   without a user namespace can see would then name the host's file itself.
pub struct ShimBinary {
    file: OwnedFd,
    path: PathBuf,
    /// The overlay's detached mount, for as long as the shim is: closing it detaches the
    /// mount from its anonymous namespace, which waits for an expedited RCU grace period,
    /// and that waits on what the other CPU is doing in the kernel. Closed with the shim
    /// (at the launcher's end, or at its exec into the monitor), not while the guest's
    /// namespaces are made alongside the boot: there it held the launcher up to half a
    /// millisecond, most of which it would have waited for those namespaces anyway.
    _overlay: Option<OwnedFd>,
}

/// The overlay's second lower layer, an empty directory in the state base (overlayfs
/// mounts without an upper layer only with two lower ones); no guest can be named so.
const EMPTY_LAYER: &str = ".empty";

impl ShimBinary {
    /// `--shim PATH`, or `cradle-shim` next to the launcher's own executable, through an
    /// overlay whose empty layer is made in `state_base` (see the type).
    pub fn shared(explicit: Option<&Path>, state_base: &Path) -> Result<Self> {
        Self::open(explicit, Some(state_base))
    }

    /// `--shim PATH`, or `cradle-shim` next to the launcher's own executable, as a sealed
    /// copy (see the type).
    pub fn sealed(explicit: Option<&Path>) -> Result<Self> {
        Self::open(explicit, None)
    }

    /// With `state_base`, through an overlay if it can be; else a sealed copy.
    fn open(explicit: Option<&Path>, state_base: Option<&Path>) -> Result<Self> {
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
        let shared = match state_base {
            Some(base) => overlay(&file, &meta, base)
                .inspect_err(|why| log::debug!("{}: no overlay ({why}): a sealed copy", ctx()))
                .ok(),
            None => None,
        };
        let (file, overlay) = match shared {
            Some((file, mount)) => (file, Some(mount)),
            None => (sealed_copy(file).map_err(|e| Error::host(ctx(), e))?, None),
        };
        Ok(ShimBinary {
            file,
            path,
            _overlay: overlay,
        })
    }

    /// The shim a launcher opened before it exec'd itself (see `handoff`).
    pub fn take_back(file: OwnedFd, path: PathBuf) -> Self {
        ShimBinary {
            file,
            path,
            _overlay: None,
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The directory in the state base with the execute-only copies of the shim.
const COPIES: &str = ".shim";
/// The file name of the shim, as it runs (so `/proc/PID/exe` and `ps` say what it is).
const SHIM_NAME: &str = "cradle-shim";

/// The mode of every copy of the shim: execute-only. A shim exec'd by a process whose
/// credentials cannot read its file (a guest's root: the file's owner, the host's root, is
/// not mapped in its user namespace) is undumpable and its memory belongs to the host's
/// user namespace (the kernel's `would_dump`): no process of the guest, whatever its
/// capabilities there, may trace it, take its descriptors or touch its memory, as if it
/// had been exec'd outside the guest's user namespace.
const EXECUTE_ONLY: u32 = 0o111;

/// An execute-only copy of the shim `file` (which `meta` describes) in the state base,
/// `.shim/BUILD/cradle-shim`, one per build (named after the file's identity) and shared by
/// every guest: made once, atomically (a directory written aside, then renamed), older
/// builds' copies removed (running guests keep what they have open).
fn execute_only_copy(mut file: &File, meta: &Metadata, state_base: &Path) -> io::Result<PathBuf> {
    let copies = state_base.join(COPIES);
    fs::create_dir_all(&copies)?;
    fs::set_permissions(&copies, fs::Permissions::from_mode(0o700))?;
    let build = format!(
        "{:x}-{:x}-{}-{}.{}",
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    let copy = copies.join(&build).join(SHIM_NAME);
    if let Ok(seen) = fs::symlink_metadata(&copy) {
        if seen.is_file() && seen.len() == meta.len() && seen.mode() & 0o7777 == EXECUTE_ONLY {
            return Ok(copy);
        }
    }
    let aside = copies.join(format!(".{build}.{}", std::process::id()));
    let written = (|| {
        fs::create_dir(&aside)?;
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(aside.join(SHIM_NAME))?;
        io::copy(&mut file, &mut out)?;
        out.set_permissions(fs::Permissions::from_mode(EXECUTE_ONLY))?;
        match fs::rename(&aside, copies.join(&build)) {
            // another launcher made it meanwhile: theirs is as good
            Err(e) if copy.is_file() => {
                log::debug!("{}: {e}", copy.display());
                fs::remove_dir_all(&aside)
            }
            other => other,
        }
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&aside);
        return Err(e);
    }
    for entry in fs::read_dir(&copies)?.flatten() {
        if entry.file_name() != build.as_str() && !entry.file_name().as_bytes().starts_with(b".") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(copy)
}

/// An execute-only copy of the shim `file` (see [`execute_only_copy`]) through a read-only
/// overlayfs mount of its directory, detached (in no mount namespace once its descriptor is
/// closed, so nothing can remount it): the file, and the mount's descriptor.
fn overlay(file: &File, meta: &Metadata, state_base: &Path) -> io::Result<(OwnedFd, OwnedFd)> {
    let path = execute_only_copy(file, meta, state_base)?;
    let dir = path.parent().ok_or(io::ErrorKind::InvalidInput)?;
    let name = path.file_name().ok_or(io::ErrorKind::InvalidInput)?;
    let meta = fs::metadata(&path)?;
    let empty = state_base.join(EMPTY_LAYER);
    fs::create_dir_all(&empty)?;
    let empty = fs::canonicalize(empty)?;
    let lower = format!("{}:{}", layer_option(dir)?, layer_option(&empty)?);
    let fs = sys::fsopen(c"overlay")?;
    sys::fsconfig_set(fs.as_fd(), c"lowerdir", Some(&CString::new(lower)?))?;
    // xino only logs about layers on different file systems here
    let _ = sys::fsconfig_set(fs.as_fd(), c"xino", Some(c"off"));
    let attrs = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOSUID;
    let mount = sys::fsmount(fs.as_fd(), attrs)?;
    let file = File::from(nix::fcntl::openat(
        &mount,
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )?);
    let seen = file.metadata()?;
    if !seen.is_file() || seen.len() != meta.len() || seen.mtime_nsec() != meta.mtime_nsec() {
        return Err(io::Error::other("the overlay shows another file"));
    }
    Ok((OwnedFd::from(file), mount))
}

/// A directory as overlayfs's `lowerdir` takes it: ':' separates layers, '\' escapes.
fn layer_option(dir: &Path) -> io::Result<String> {
    let text = dir.to_str().ok_or(io::ErrorKind::InvalidInput)?;
    Ok(text.replace('\\', "\\\\").replace(':', "\\:"))
}

/// A copy of `file` in a memfd sealed against every change, execute-only (see
/// [`EXECUTE_ONLY`]).
fn sealed_copy(mut file: File) -> io::Result<OwnedFd> {
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    let memfd = match memfd_create(c"cradle-shim", flags | MFD_EXEC) {
        Err(Errno::EINVAL) => memfd_create(c"cradle-shim", flags),
        other => other,
    }?;
    let mut copy = File::from(memfd);
    // from the start: an overlay that failed may have read it
    file.seek(io::SeekFrom::Start(0))?;
    io::copy(&mut file, &mut copy)?;
    copy.set_permissions(fs::Permissions::from_mode(EXECUTE_ONLY))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(OwnedFd::from(copy))
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
    child: Child,
    errpipe: Option<OwnedFd>,
    report: Vec<u8>,
    /// What each step of the plan does, for a failure record's words.
    steps: Vec<String>,
    shim_path: PathBuf,
}

pub fn cstrings(words: &[String]) -> Result<Vec<CString>> {
    words
        .iter()
        .map(|w| {
            CString::new(w.as_bytes())
                .map_err(|_| Error::Usage(format!("{w:?} contains a NUL byte")))
        })
        .collect()
}

pub fn pointers(strings: &[CString]) -> Vec<*const c_char> {
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

/// What the child execs, prepared before the fork.
struct Exec<'a> {
    shim: BorrowedFd<'a>,
    argv: &'a [*const c_char],
    envp: &'a [*const c_char],
    /// The error pipe: ours to write, and the launcher's end to close in the child.
    report: BorrowedFd<'a>,
    launcher_end: BorrowedFd<'a>,
    /// Descriptors the shim inherits besides `report`.
    keep: &'a [BorrowedFd<'a>],
    outlives_launcher: bool,
}

/// The child between clone and exec: system calls on memory prepared by the parent.
fn child(token: InChild, steps: &[Step], exec: &Exec) -> ! {
    let _ = prctl::set_name(c"cradle:child");
    // our copy of the launcher's end, so that the pipe breaks when the launcher is gone
    let _ = close(exec.launcher_end.as_raw_fd());
    // Rust's runtime ignores SIGPIPE; neither the shim nor the guest may inherit that
    sys::default_sigpipe();
    if let Err((index, errno)) = crate::container::plan::apply(token, steps) {
        fail(exec.report, Stage::Setup, index, errno);
    }
    // die with the launcher: set now, after the plan changed our credentials (which clears
    // it); the shim keeps it across exec (it is not set-uid)
    if !exec.outlives_launcher {
        let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    }
    // the launcher may have gone before that: then nobody reads the pipe's other end
    // (a container that outlives its launcher expects it gone)
    let mut fds = [PollFd::new(exec.report, PollFlags::POLLOUT)];
    if !exec.outlives_launcher
        && poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
    {
        sys::exit_now(Outcome::SetupFailed.encode());
    }
    for fd in [exec.report].iter().chain(exec.keep) {
        if let Err(errno) = sys::keep_on_exec(*fd) {
            fail(exec.report, Stage::ExecShim, 0, errno);
        }
    }
    let errno = sys::exec_fd(exec.shim, exec.argv, exec.envp);
    fail(exec.report, Stage::ExecShim, 0, errno)
}

/// What [`spawn`] needs besides the plan.
pub struct Spawn<'a> {
    pub threads: &'a SingleThreaded,
    pub shim: &'a ShimBinary,
    /// The child's working directory (the root directory, for a container's first
    /// process); ours when `None`.
    pub cwd: Option<BorrowedFd<'a>>,
    /// The namespaces the child is cloned into (see [`namespaces`]).
    pub namespaces: CloneFlags,
    /// The cgroup the child is born in; ours when `None`.
    pub cgroup: Option<BorrowedFd<'a>>,
    /// Descriptors the shim inherits (named in `args`).
    pub keep: &'a [BorrowedFd<'a>],
    /// The shim's arguments after `--report-fd FD`.
    pub args: &'a [String],
    /// The shim's environment, exactly.
    pub env: &'a [String],
    /// The container goes on when the launcher exits (an OCI runtime's `create`, whose
    /// caller reaps it): no parent-death signal.
    pub outlives_launcher: bool,
}

/// Clones a child as `how` says. It runs `steps`, then execs the shim with `--report-fd`
/// and `how.args`.
pub fn spawn(how: &Spawn, steps: Vec<Step>) -> Result<Container> {
    let (read_end, write_end) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::host("error pipe", e))?;
    let mut words = vec![
        "cradle-shim".to_owned(),
        "--report-fd".to_owned(),
        write_end.as_raw_fd().to_string(),
    ];
    words.extend_from_slice(how.args);
    let argv = cstrings(&words)?;
    let envp = cstrings(how.env)?;
    let (argv_ptrs, envp_ptrs) = (pointers(&argv), pointers(&envp));
    let exec = Exec {
        shim: how.shim.fd(),
        argv: &argv_ptrs,
        envp: &envp_ptrs,
        report: write_end.as_fd(),
        launcher_end: read_end.as_fd(),
        keep: how.keep,
        outlives_launcher: how.outlives_launcher,
    };
    // a container's first process starts in the root directory: its new mount namespace
    // moves that working directory to its own copy of the mount, where the plan attaches
    // the root tree
    let here = match how.cwd {
        Some(cwd) => {
            let here = open(c".", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| Error::host("open the working directory", e))?;
            fchdir(cwd).map_err(|e| Error::host("chdir to the root directory", e))?;
            Some(here)
        }
        None => None,
    };
    let cloned = Child::fork_into(how.threads, how.namespaces, how.cgroup, |token| {
        child(token, &steps, &exec)
    });
    if let Some(here) = here {
        fchdir(&here).map_err(|e| Error::host("chdir back", e))?;
    }
    let child = cloned.map_err(|e| Error::setup("clone the container's first process", e))?;
    drop(write_end);
    fcntl(&read_end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(|e| Error::host("error pipe", e))?;
    Ok(Container {
        child,
        errpipe: Some(read_end),
        report: Vec::new(),
        // the descriptors the steps hold close here, now that the child has its own
        steps: steps.iter().map(ToString::to_string).collect(),
        shim_path: how.shim.path().to_owned(),
    })
}

impl Container {
    /// The container's first process, running the shim, as a launcher that exec'd itself
    /// left it (see `handoff`): its child still, and started.
    pub fn take_back(pid: Pid, pidfd: OwnedFd, shim_path: PathBuf) -> Self {
        Container {
            child: Child::take_back(pid, pidfd),
            errpipe: None,
            report: Vec::new(),
            steps: Vec::new(),
            shim_path,
        }
    }

    /// Its pid and pidfd, for a handoff.
    /// Lets the container go on when the launcher exits (see `Spawn::outlives_launcher`);
    /// its first process's pid.
    pub fn release(self) -> Pid {
        self.child.release()
    }

    pub fn handoff_ids(&self) -> (Pid, RawFd) {
        (self.child.pid(), self.child.pidfd().as_raw_fd())
    }

    /// Readable when the process ended.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.child.pidfd()
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
        self.child.try_wait()
    }

    /// Sends `signal` to the shim.
    pub fn signal(&self, signal: i32) {
        self.child.signal(signal);
    }

    /// Runs the shim to its end, passing on `signals` (the shim forwards them to its
    /// command): its status, or the failure the error pipe reported (`command` names the
    /// command for an exec failure). With `started_by`, a command that has not started
    /// by then (a guest that froze its cgroup or stopped the process on its way in) is
    /// given up on: the shim is killed (and what it started with it) and this is a
    /// timeout. With `relay`, the command's standard streams are relayed meanwhile, and
    /// what is left in them once it ended goes out before this returns.
    pub fn supervise(
        &mut self,
        mut signals: Option<&mut Signals>,
        command: &str,
        started_by: Option<Deadline>,
        mut relay: Option<&mut Relay>,
    ) -> Result<Status> {
        let mut failure = None;
        loop {
            let deadline = started_by.filter(|_| self.errpipe.is_some());
            if deadline.is_some_and(Deadline::passed) {
                self.kill_with_children();
                return Err(Error::Timeout(format!(
                    "{command} did not start in the guest in time (a frozen cgroup, or a \
                     process stopped on its way in)"
                )));
            }
            let mut fds = vec![PollFd::new(self.child.pidfd(), PollFlags::POLLIN)];
            if let Some(signals) = &signals {
                fds.push(PollFd::new(signals.fd(), PollFlags::POLLIN));
            }
            let errpipe_at = self.errpipe.as_ref().map(|fd| {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let relay_at = fds.len();
            if let Some(relay) = relay.as_deref() {
                relay.poll_fds(&mut fds);
            }
            let timeout = deadline.map_or(PollTimeout::NONE, Deadline::poll_timeout);
            let ready = sys::poll_ready(&mut fds, timeout).map_err(|e| Error::host("poll", e))?;
            drop(fds);
            if errpipe_at.is_some_and(|i| ready[i]) {
                if let Report::Failed(f) = self.read_report() {
                    failure = Some(self.failure_error(f, command));
                }
            }
            if let Some(signals) = signals.as_deref_mut() {
                if ready[1] {
                    for sig in signals.pending() {
                        if !relay.as_deref().is_some_and(|r| r.takes_signal(sig)) {
                            self.signal(sig);
                        }
                    }
                }
            }
            if let Some(relay) = relay.as_deref_mut() {
                relay.service(&ready[relay_at..]);
            }
            if ready[0] {
                if let Some(status) = self.try_wait() {
                    if let Some(relay) = relay.as_deref_mut() {
                        relay.finish();
                    }
                    // whatever the pipe still holds was written before the shim ended
                    if let Report::Failed(f) = self.read_report() {
                        failure = Some(self.failure_error(f, command));
                    }
                    return match failure {
                        Some(error) => Err(error),
                        None => Ok(status),
                    };
                }
            }
        }
    }

    /// Waits for the shim to end: [`Container::supervise`] without signals.
    pub fn wait(&mut self) -> Result<Status> {
        self.supervise(None, "", None, None)
    }

    /// The shim's children (host pids).
    fn children(&self) -> Vec<Pid> {
        let path = format!("/proc/{0}/task/{0}/children", self.child.pid());
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .map(Pid::from_raw)
            .collect()
    }

    /// The guest init's host pid: the shim's only child once it started it.
    pub fn guest_init(&self) -> Option<Pid> {
        self.children().first().copied()
    }

    /// Kills the shim and, first, what it started (a process held frozen or stopped by
    /// the guest before it set its parent-death signal would outlive the shim, holding
    /// our standard streams), and reaps the shim. The shim cannot reap them while we
    /// look: it waits for its child to exec.
    fn kill_with_children(&mut self) {
        for pid in self.children() {
            if let Ok(pidfd) = sys::pidfd_open(pid) {
                let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            }
        }
        self.child.signal(libc::SIGKILL);
        self.child.wait();
    }

    /// A failure record in words, as an error with the right exit code.
    pub fn failure_error(&self, failure: Failure, command: &str) -> Error {
        let errno = Errno::from_raw(failure.errno);
        let detail = failure.detail as usize;
        match failure.stage {
            Stage::Setup => match self.steps.get(detail) {
                Some(step) if step.starts_with(crate::container::plan::FIND_EXECUTABLE) => {
                    Error::Exec {
                        command: step[crate::container::plan::FIND_EXECUTABLE.len()..].to_owned(),
                        errno,
                    }
                }
                Some(step) if errno == Errno::ELOOP => {
                    Error::setup(format!("{step} (a symlink on the way is refused)"), errno)
                }
                Some(step) => Error::setup(step.clone(), errno),
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
            Stage::EnterGuest => Error::setup(
                ENTER_STEPS
                    .get(detail)
                    .copied()
                    .unwrap_or("enter the guest"),
                errno,
            ),
            Stage::ExecCommand => Error::Exec {
                command: command.to_owned(),
                errno,
            },
            other => Error::setup(other.describe(), errno),
        }
    }
}
