//! The shim's only door to the kernel: small safe wrappers, one libc call each.
//!
//! The shim is `no_std` on the `libc` crate (linked against musl by `scripts/build`), so
//! there is no nix here. Every function turns libc's -1/errno convention into a [`Result`].
//! Functions meant for a freshly cloned child use no allocation and no locks.
#![allow(unsafe_code)]

use core::ffi::{CStr, c_char, c_int};
use core::mem::MaybeUninit;

use cradle_common::guest::MountCall;

/// An errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

pub type Result<T> = core::result::Result<T, Errno>;

/// A file descriptor number. The shim is small enough to track ownership by hand.
pub type Fd = c_int;

/// A process id.
pub type Pid = libc::pid_t;

fn last_errno() -> Errno {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    Errno(unsafe { *libc::__errno_location() })
}

fn check(ret: c_int) -> Result<c_int> {
    if ret == -1 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

/// Writes all of `buf`, retrying on EINTR and short writes.
pub fn write_all(fd: Fd, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice of buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        match n {
            -1 if last_errno() == Errno(libc::EINTR) => continue,
            -1 => return Err(last_errno()),
            n => buf = &buf[n as usize..],
        }
    }
    Ok(())
}

/// Reads into `buf`, retrying on EINTR; 0 is end of file.
pub fn read(fd: Fd, buf: &mut [u8]) -> Result<usize> {
    loop {
        // SAFETY: buf is a live, writable slice of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            -1 if last_errno() == Errno(libc::EINTR) => continue,
            -1 => return Err(last_errno()),
            n => return Ok(n as usize),
        }
    }
}

/// Closes `fd`, ignoring errors: there is nothing to do about them.
pub fn close(fd: Fd) {
    // SAFETY: closing a descriptor number has no memory effects.
    unsafe { libc::close(fd) };
}

/// Marks `fd` close-on-exec.
pub fn set_cloexec(fd: Fd) -> Result<()> {
    // SAFETY: fcntl with F_SETFD takes an integer argument.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// A pipe whose both ends are close-on-exec: `(read, write)`.
pub fn pipe_cloexec() -> Result<(Fd, Fd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

pub fn getpid() -> Pid {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// Ends the process at once, without running anything (no atexit, no flushing).
pub fn exit(code: u8) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code as c_int) }
}

/// A set of signals.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    pub fn empty() -> Self {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the whole set it is given.
        unsafe { libc::sigemptyset(set.as_mut_ptr()) };
        // SAFETY: initialised just above.
        SigSet(unsafe { set.assume_init() })
    }

    pub fn full() -> Self {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset initialises the whole set it is given.
        unsafe { libc::sigfillset(set.as_mut_ptr()) };
        // SAFETY: initialised just above.
        SigSet(unsafe { set.assume_init() })
    }

    pub fn remove(&mut self, sig: c_int) {
        // SAFETY: self.0 is an initialised set; an invalid signal number only fails.
        unsafe { libc::sigdelset(&mut self.0, sig) };
    }
}

/// Sets the signal mask of the calling thread; returns the previous one.
pub fn set_sigmask(mask: &SigSet) -> Result<SigSet> {
    let mut old = SigSet::empty();
    // SAFETY: both sets are initialised; old is writable.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &mask.0, &mut old.0) };
    if ret != 0 { Err(Errno(ret)) } else { Ok(old) }
}

/// Puts every signal's disposition back to the default (for a guest init, which must not
/// inherit whatever the host ignored).
pub fn reset_signal_dispositions() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; invalid numbers just fail.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// A signalfd for `set` (which must be blocked), close-on-exec.
pub fn signalfd(set: &SigSet) -> Result<Fd> {
    // SAFETY: set is an initialised sigset; -1 asks for a new descriptor.
    check(unsafe { libc::signalfd(-1, &set.0, libc::SFD_CLOEXEC) })
}

/// What a signalfd read says about one signal.
#[derive(Clone, Copy, Debug)]
pub struct SigInfo {
    pub signo: c_int,
    /// The sender's pid, as seen from the shim's namespace (0 from the kernel or another
    /// namespace).
    pub pid: Pid,
}

/// Waits for the next signal on a signalfd.
pub fn read_signal(fd: Fd) -> Result<SigInfo> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
    let size = core::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: info is writable and exactly one signalfd_siginfo long.
        let n = unsafe { libc::read(fd, info.as_mut_ptr().cast(), size) };
        if n == -1 && last_errno() == Errno(libc::EINTR) {
            continue;
        }
        if n as usize != size {
            return Err(if n == -1 {
                last_errno()
            } else {
                Errno(libc::EIO)
            });
        }
        // SAFETY: the kernel filled the whole struct (checked above).
        let info = unsafe { info.assume_init() };
        return Ok(SigInfo {
            signo: info.ssi_signo as c_int,
            pid: info.ssi_pid as Pid,
        });
    }
}

/// Sends `sig` to `pid` (a process, -pgid for a group, -1 for all).
pub fn kill(pid: Pid, sig: c_int) -> Result<()> {
    // SAFETY: kill has no memory effects.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Which side of a fork the caller is on.
pub enum Forked {
    Child,
    Parent(Pid),
}

/// fork(2) with extra clone flags (namespaces), by the raw clone system call.
///
/// The child shares no memory with the parent but inherits libc's state as it was
/// (musl's cached thread id among it), so it should only make plain system calls until it
/// execs or exits: no allocation, no `raise`, no locks.
pub fn clone_fork(flags: c_int) -> Result<Forked> {
    // SAFETY: with a null stack, clone behaves as fork. fork is sound in a single-threaded
    // process, and the shim never starts a thread (it is no_std: it has no way to).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match ret {
        -1 => Err(last_errno()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as Pid)),
    }
}

/// A process that ended, with its raw wait status.
#[derive(Clone, Copy, Debug)]
pub struct Reaped {
    pub pid: Pid,
    pub wstatus: c_int,
}

/// waitpid(-1) for any child: `Ok(None)` when `nohang` and no child has ended yet;
/// `Err(ECHILD)` when there are no children left. Stopped children are reported too
/// (`WUNTRACED`) so that job control can be followed.
pub fn wait_any(nohang: bool) -> Result<Option<Reaped>> {
    let flags = libc::WUNTRACED | if nohang { libc::WNOHANG } else { 0 };
    let mut wstatus: c_int = 0;
    loop {
        // SAFETY: wstatus is writable.
        let pid = unsafe { libc::waitpid(-1, &mut wstatus, flags) };
        match pid {
            -1 if last_errno() == Errno(libc::EINTR) => continue,
            -1 => return Err(last_errno()),
            0 => return Ok(None),
            pid => return Ok(Some(Reaped { pid, wstatus })),
        }
    }
}

/// True when `path` is a regular file (following symlinks) that we may execute.
pub fn is_executable_file(path: &CStr) -> bool {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated; st is writable.
    if unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: stat succeeded, so it filled st.
    let mode = unsafe { st.assume_init() }.st_mode;
    // SAFETY: path is NUL-terminated.
    mode & libc::S_IFMT == libc::S_IFREG && unsafe { libc::access(path.as_ptr(), libc::X_OK) } == 0
}

fn opt_ptr(s: Option<&CStr>) -> *const c_char {
    s.map_or(core::ptr::null(), CStr::as_ptr)
}

/// Makes one mount(2) call.
pub fn mount(call: &MountCall) -> Result<()> {
    // SAFETY: every pointer is a NUL-terminated string or null, as mount accepts.
    check(unsafe {
        libc::mount(
            opt_ptr(call.source),
            call.target.as_ptr(),
            opt_ptr(call.fstype),
            call.flags,
            opt_ptr(call.data).cast(),
        )
    })
    .map(drop)
}

/// mkdir(2); an existing directory is not an error.
pub fn mkdir(path: &CStr, mode: libc::mode_t) -> Result<()> {
    // SAFETY: path is NUL-terminated.
    match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Err(Errno(libc::EEXIST)) => Ok(()),
        other => other.map(drop),
    }
}

/// Writes `contents` to the existing file `path` (a cgroup or proc knob).
pub fn write_file(path: &CStr, contents: &[u8]) -> Result<()> {
    let fd = open(path, libc::O_WRONLY | libc::O_CLOEXEC)?;
    let result = write_all(fd, contents);
    close(fd);
    result
}

/// unshare(2): new namespaces for the caller (and, for a PID namespace, its children).
pub fn unshare(flags: c_int) -> Result<()> {
    // SAFETY: unshare has no memory effects.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

/// Detaches the mount on `path` (umount2 with MNT_DETACH).
pub fn unmount(path: &CStr) -> Result<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

pub fn chdir(path: &CStr) -> Result<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

pub fn open(path: &CStr, flags: c_int) -> Result<Fd> {
    // SAFETY: path is NUL-terminated; no O_CREAT, so no mode is read.
    check(unsafe { libc::open(path.as_ptr(), flags) })
}

pub fn dup2(old: Fd, new: Fd) -> Result<()> {
    // SAFETY: dup2 has no memory effects.
    check(unsafe { libc::dup2(old, new) }).map(drop)
}

pub fn setsid() -> Result<Pid> {
    // SAFETY: setsid has no preconditions.
    check(unsafe { libc::setsid() })
}

/// Makes the terminal on `fd` the caller's controlling terminal.
pub fn set_controlling_tty(fd: Fd) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal).
    check(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) }).map(drop)
}

/// execve(2); returns only on failure, with its errno.
pub fn execve(path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: argv and envp are null-terminated arrays of NUL-terminated strings
    // (checked above in debug builds; every caller builds them that way).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    last_errno()
}

/// execvp(3) with the inherited environment; returns only on failure, with its errno.
pub fn execvp(argv: &[*const c_char]) -> Errno {
    assert!(argv.len() >= 2 && !argv[0].is_null() && argv.last().is_some_and(|p| p.is_null()));
    // SAFETY: argv is a null-terminated array of NUL-terminated strings (every caller
    // builds it from CStrs; the ends are checked above).
    unsafe { libc::execvp(argv[0], argv.as_ptr()) };
    last_errno()
}

/// The text of an errno value, for messages.
pub fn strerror(errno: Errno) -> &'static CStr {
    // SAFETY: strerror returns a pointer to a static, NUL-terminated string (musl keeps
    // them in a table; the shim is single-threaded).
    unsafe { CStr::from_ptr(libc::strerror(errno.0)) }
}
