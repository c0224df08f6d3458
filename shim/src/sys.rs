//! The shim's only door to the kernel: small safe wrappers, one libc call each.
//!
//! The shim is `no_std` on the `libc` crate (linked against musl by `scripts/build`), so
//! there is no nix here. Every function turns libc's -1/errno convention into a [`Result`].
//! Functions meant for a spawned child use no allocation and no locks.
#![allow(unsafe_code)]

use core::ffi::{CStr, c_char, c_int, c_void};
use core::mem::MaybeUninit;

use cradle_common::arch::{self, CloneArgs, KERNEL_SIGSET_SIZE, KernelSigaction};
use cradle_common::caps::{self, CapData, CapHeader};
use cradle_common::errpipe::Failure;
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

    /// Every signal, 1 to 64. Not sigfillset: musl's leaves out 32, 33 and 34 (its own,
    /// for threads the shim does not have), and 34 is glibc's SIGRTMIN, which programs
    /// send; a signal left out of the mask would kill the shim or be lost.
    pub fn all() -> Self {
        let mut set = Self::empty();
        // SAFETY: the kernel's signal set is the first 64 bits of sigset_t (128 bytes in
        // both glibc's and musl's layout, aligned to at least 4); all ones is the same in
        // either word order.
        unsafe { (&raw mut set.0).cast::<[u32; 2]>().write([u32::MAX; 2]) };
        set
    }

    pub fn add(&mut self, sig: c_int) {
        // SAFETY: self.0 is an initialised set; an invalid signal number only fails.
        unsafe { libc::sigaddset(&mut self.0, sig) };
    }
}

/// Sets the signal mask of the calling thread; returns the previous one. By the raw
/// system call: musl's wrapper hides signals 32 to 34 in the old mask.
pub fn set_sigmask(mask: &SigSet) -> Result<SigSet> {
    let mut old = SigSet::empty();
    // SAFETY: both sets are initialised and larger than the kernel's 8 bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask.0,
            &mut old.0,
            KERNEL_SIGSET_SIZE,
        )
    };
    if ret == -1 {
        Err(last_errno())
    } else {
        Ok(old)
    }
}

/// Puts every signal's disposition back to the default (for a guest init, which must not
/// inherit whatever the host ignored).
pub fn reset_signal_dispositions() {
    // SIG_DFL: handler 0, no flags, no restorer, an empty mask
    let default = KernelSigaction::default();
    for sig in 1..=crate::signals::MAX {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `default` is the kernel's struct sigaction (SIG_DFL); by the raw call
        // because musl refuses signals 32 to 34.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                core::ptr::null::<KernelSigaction>(),
                KERNEL_SIGSET_SIZE,
            )
        };
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

/// The child's side of [`spawn`]: what it runs, and where it leaves its failure.
struct Job<'a> {
    child: &'a mut dyn FnMut() -> Failure,
    failure: Option<Failure>,
}

/// Runs the child of [`spawn`] on its own stack: the closure either execs (and never
/// returns) or returns the step that failed, which is left in the parent's memory.
extern "C" fn run_job(job: *mut c_void) -> c_int {
    // SAFETY: `job` is the Job that spawn passed to clone; the parent is suspended
    // (CLONE_VFORK) until we exec or exit, so nothing else touches it meanwhile.
    let job = unsafe { &mut *job.cast::<Job>() };
    job.failure = Some((job.child)());
    exit(127)
}

/// Size of the stack a spawned child runs on (it makes a few system calls, then execs).
const CHILD_STACK: usize = 64 * 1024;

/// The stack a spawned child runs on. In .bss, not on our stack: a frame this large would
/// be probed page by page on every call (16 page faults on each start of the shim),
/// while here only the pages the child touches are ever faulted in. One child is spawned
/// at a time (we are suspended while it uses it).
static mut CHILD_STACK_MEMORY: MaybeUninit<[u128; CHILD_STACK / 16]> = MaybeUninit::uninit();

/// Starts a child that runs `child` with extra clone `flags` (namespaces), and returns
/// once it has exec'd (`None`) or has exited after `child` returned the step that failed.
/// We are suspended until then (CLONE_VFORK), so no pipe is needed to learn the outcome.
///
/// Without a cgroup, as posix_spawn does it: the child shares our memory (CLONE_VM) on a
/// stack of its own, so there is no page table to copy. With `cgroup` (a cgroup v2
/// directory), the child is born in that cgroup (clone3 CLONE_INTO_CGROUP: no migration,
/// which would wait for an RCU grace period); clone3 cannot start a CLONE_VM child on a
/// new stack without an assembly trampoline, so that child gets a copy of our memory, and
/// its failure comes back through a shared anonymous page.
///
/// `child` must only make system calls until it execs: it runs with our thread's libc
/// state (errno included), in our address space when it shares it.
pub fn spawn<F: FnOnce() -> Failure>(
    flags: c_int,
    cgroup: Option<Fd>,
    child: F,
) -> Result<(Pid, Option<Failure>)> {
    // one body for every closure (the shim is small): called once, in the child
    let mut child = Some(child);
    let mut once = || match child.take() {
        Some(child) => child(),
        None => Failure::new(cradle_common::stage::Stage::SpawnCommand, 0, libc::EINVAL),
    };
    match cgroup {
        None => spawn_sharing_memory(flags, &mut once),
        Some(cgroup) => spawn_into_cgroup(flags, cgroup, &mut once),
    }
}

fn spawn_sharing_memory(
    flags: c_int,
    child: &mut dyn FnMut() -> Failure,
) -> Result<(Pid, Option<Failure>)> {
    let mut job = Job {
        child,
        failure: None,
    };
    // SAFETY: the stack is a static that only spawned children use, one at a time (we are
    // suspended until the child execs or exits, and the shim is single-threaded); `job` is
    // passed by pointer, so the compiler assumes clone may change it; the child only makes
    // system calls (see spawn's contract).
    let pid = unsafe {
        let stack = &raw mut CHILD_STACK_MEMORY;
        let top = stack.cast::<u8>().add(CHILD_STACK).cast::<c_void>();
        libc::clone(
            run_job,
            top,
            flags | libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut job as *mut Job).cast::<c_void>(),
        )
    };
    let pid = check(pid)?;
    Ok((pid, job.failure))
}

fn spawn_into_cgroup(
    flags: c_int,
    cgroup: Fd,
    child: &mut dyn FnMut() -> Failure,
) -> Result<(Pid, Option<Failure>)> {
    let size = core::mem::size_of::<Option<Failure>>();
    // SAFETY: a new anonymous shared mapping, ours alone until the child is started. By
    // the system call: musl's mmap takes a 64-bit offset where glibc's (whose declaration
    // the libc crate has) takes 32 bits on 32-bit ARM (see common::arch).
    let slot = unsafe {
        libc::syscall(
            arch::SYS_MMAP,
            core::ptr::null_mut::<c_void>(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1 as c_int,
            0 as libc::c_long,
        )
    };
    // the kernel's errors are the last page of addresses, which libc::syscall turns into -1
    if slot == -1 {
        return Err(last_errno());
    }
    let slot = slot as usize as *mut Option<Failure>;
    // SAFETY: the mapping is large enough and suitably aligned (page-aligned).
    unsafe { slot.write(None) };
    let args = CloneArgs {
        flags: u64::from((flags | libc::CLONE_VFORK) as u32) | arch::CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    // SAFETY: args is valid and its size given; with no stack the child continues on a
    // copy of ours, as with fork, which is sound in the single-threaded shim.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            core::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        let failure = child();
        // SAFETY: the slot is shared with the parent, which reads it only after we exit.
        unsafe { slot.write(Some(failure)) };
        exit(127);
    }
    // SAFETY: the child has exec'd or exited (CLONE_VFORK): the slot is ours again.
    let failure = unsafe { slot.read() };
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(slot.cast(), size) };
    match ret {
        -1 => Err(last_errno()),
        pid => Ok((pid as Pid, failure)),
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

/// The file type bits (S_IFMT) of `path`, following symlinks.
pub fn file_type(path: &CStr) -> Result<u32> {
    let mut st = MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: path is NUL-terminated; st is writable and the kernel's struct statx. By the
    // system call: libc's struct stat is not the same in glibc and musl on 32-bit ARM
    // (see common::arch).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_statx,
            libc::AT_FDCWD,
            path.as_ptr(),
            0 as c_int,
            libc::STATX_TYPE,
            st.as_mut_ptr(),
        )
    };
    if ret != 0 {
        return Err(last_errno());
    }
    // SAFETY: statx succeeded, so it filled st (the type at least, which was asked for).
    Ok(u32::from(unsafe { st.assume_init() }.stx_mode) & libc::S_IFMT)
}

/// True when `path` is a regular file (following symlinks) that we may execute.
pub fn is_executable_file(path: &CStr) -> bool {
    // SAFETY: path is NUL-terminated.
    file_type(path) == Ok(libc::S_IFREG) && unsafe { libc::access(path.as_ptr(), libc::X_OK) } == 0
}

fn opt_ptr(s: Option<&CStr>) -> *const c_char {
    s.map_or(core::ptr::null(), CStr::as_ptr)
}

/// Makes one mount(2) call.
pub fn mount(call: &MountCall) -> Result<()> {
    mount_with(call.source, call.target, call.fstype, call.flags, call.data)
}

/// mount(2) with the arguments as given.
pub fn mount_with(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<()> {
    // SAFETY: every pointer is a NUL-terminated string or null, as mount accepts.
    check(unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast(),
        )
    })
    .map(drop)
}

/// unshare(2): new namespaces for the caller (and, for a PID namespace, its children).
pub fn unshare(flags: c_int) -> Result<()> {
    // SAFETY: unshare has no memory effects.
    check(unsafe { libc::unshare(flags) }).map(drop)
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
/// `environment` is the one the kernel gave the shim (`crate::Environment`).
pub fn execve(path: &CStr, argv: &[*const c_char], environment: crate::Environment) -> Errno {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    // SAFETY: argv is a null-terminated array of NUL-terminated strings (checked above in
    // debug builds; every caller builds it that way); the environment is the one C's
    // main received, valid for the process's life.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), environment.0) };
    last_errno()
}

/// The argv of a command to exec, with one free slot in front for [`execvp`]'s
/// `/bin/sh` fallback: prepared by the parent, so that the child never allocates.
pub struct ExecArgv {
    /// `[slot, argv0, argv1, ..., null]`
    words: alloc::vec::Vec<*const c_char>,
}

impl ExecArgv {
    pub fn new(argv: &[&CStr]) -> Self {
        let mut words = alloc::vec::Vec::with_capacity(argv.len() + 2);
        words.push(core::ptr::null());
        words.extend(argv.iter().map(|a| a.as_ptr()));
        words.push(core::ptr::null());
        ExecArgv { words }
    }
}

fn execv(path: *const c_char, argv: *const *const c_char) -> Errno {
    // SAFETY: path is NUL-terminated and argv a null-terminated array of NUL-terminated
    // strings (ExecArgv's and execvp's invariants).
    unsafe { libc::execv(path, argv) };
    last_errno()
}

/// execvp(3) with the inherited environment, as glibc does it (and so tini and
/// dumb-init): the PATH search, and a file that is not in an executable format (a script
/// without `#!`) run by `/bin/sh`. musl's execvp has no such fallback. Returns only on
/// failure, with its errno. Allocates nothing.
pub fn execvp(argv: &mut ExecArgv) -> Errno {
    let file = argv.words[1];
    // SAFETY: argv[0] is a NUL-terminated string (ExecArgv::new).
    let name = unsafe { CStr::from_ptr(file) }.to_bytes();
    let run = |path: *const c_char, words: &mut [*const c_char]| -> Errno {
        match execv(path, words[1..].as_ptr()) {
            Errno(libc::ENOEXEC) => {
                words[0] = c"sh".as_ptr();
                words[1] = path;
                let errno = execv(c"/bin/sh".as_ptr(), words.as_ptr());
                words[1] = file;
                if errno == Errno(libc::ENOENT) {
                    Errno(libc::ENOEXEC)
                } else {
                    errno
                }
            }
            errno => errno,
        }
    };
    if name.is_empty() {
        return Errno(libc::ENOENT);
    }
    if name.contains(&b'/') {
        return run(file, &mut argv.words);
    }
    let path = getenv(c"PATH").map_or(&b"/usr/local/bin:/bin:/usr/bin"[..], CStr::to_bytes);
    let mut buf = [0u8; 4096];
    let mut denied = false;
    for dir in path.split(|&b| b == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        let len = dir.len() + 1 + name.len();
        if len >= buf.len() {
            continue;
        }
        buf[..dir.len()].copy_from_slice(dir);
        buf[dir.len()] = b'/';
        buf[dir.len() + 1..len].copy_from_slice(name);
        buf[len] = 0;
        match run(buf.as_ptr().cast(), &mut argv.words) {
            Errno(libc::EACCES) => denied = true,
            Errno(libc::ENOENT | libc::ENOTDIR) => {}
            errno => return errno,
        }
    }
    Errno(if denied { libc::EACCES } else { libc::ENOENT })
}

/// An environment variable of the shim's own (it never changes its environment, so
/// the strings live as long as the process).
pub fn getenv(name: &CStr) -> Option<&'static CStr> {
    // SAFETY: name is NUL-terminated; getenv returns null or a pointer into environ,
    // which nothing in the shim modifies.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: a non-null result is a NUL-terminated string that outlives us (above).
    (!value.is_null()).then(|| unsafe { CStr::from_ptr(value) })
}

/// Makes the shim a child subreaper: orphans below it are reparented to it.
pub fn set_subreaper() -> Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) }).map(drop)
}

/// True when the shim is a child subreaper.
pub fn is_subreaper() -> bool {
    let mut flag: c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int to the pointer it is given.
    unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut flag as *mut c_int) == 0 && flag != 0 }
}

/// Has `sig` sent to the shim when its parent dies.
pub fn set_pdeathsig(sig: c_int) -> Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) }).map(drop)
}

/// The session id of the caller.
pub fn getsid() -> Pid {
    // SAFETY: getsid(0) has no preconditions.
    unsafe { libc::getsid(0) }
}

/// The process group of the caller.
pub fn getpgrp() -> Pid {
    // SAFETY: getpgrp has no preconditions.
    unsafe { libc::getpgrp() }
}

/// Puts the caller in a process group of its own.
pub fn setpgid_self() -> Result<()> {
    // SAFETY: setpgid has no memory effects.
    check(unsafe { libc::setpgid(0, 0) }).map(drop)
}

/// The foreground process group of the terminal on `fd`.
pub fn tcgetpgrp(fd: Fd) -> Result<Pid> {
    // SAFETY: tcgetpgrp has no memory effects.
    check(unsafe { libc::tcgetpgrp(fd) })
}

/// Makes `pgrp` the foreground process group of the terminal on `fd`.
pub fn tcsetpgrp(fd: Fd, pgrp: Pid) -> Result<()> {
    // SAFETY: tcsetpgrp has no memory effects.
    check(unsafe { libc::tcsetpgrp(fd, pgrp) }).map(drop)
}

/// Gives up the controlling terminal on `fd` (TIOCNOTTY). For a session leader, the
/// kernel hangs up the terminal's foreground group: it sends it SIGHUP and SIGCONT.
pub fn release_controlling_tty(fd: Fd) -> Result<()> {
    // SAFETY: TIOCNOTTY takes no argument.
    check(unsafe { libc::ioctl(fd, libc::TIOCNOTTY) }).map(drop)
}

/// Takes every pending signal of `set` without acting on it (they must be blocked).
pub fn discard_pending(set: &SigSet) {
    // a timeout of zero, whichever timespec the call reads (32-bit ARM's rt_sigtimedwait
    // takes 32-bit seconds; libc's wrappers differ there, see common::arch)
    let zero = [0u64; 2];
    // SAFETY: set and zero are valid; a null siginfo pointer is allowed.
    while unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            &set.0,
            core::ptr::null_mut::<libc::siginfo_t>(),
            zero.as_ptr(),
            KERNEL_SIGSET_SIZE,
        )
    } > 0
    {}
}

/// The text of an errno value, for messages.
pub fn strerror(errno: Errno) -> &'static CStr {
    // SAFETY: strerror returns a pointer to a static, NUL-terminated string (musl keeps
    // them in a table; the shim is single-threaded).
    unsafe { CStr::from_ptr(libc::strerror(errno.0)) }
}

/// setns(2): joins the namespaces `flags` of the process behind the pidfd `fd` (for
/// `CLONE_NEWPID`, the namespace of the children we make from now on).
pub fn setns(fd: Fd, flags: c_int) -> Result<()> {
    // SAFETY: setns has no memory effects.
    check(unsafe { libc::setns(fd, flags) }).map(drop)
}

/// setgroups([]), setresgid(0, 0, 0), setresuid(0, 0, 0): the root of the user namespace
/// we are in, with no supplementary group of the host. By the raw system calls: musl's
/// wrappers would signal every thread, and we must not depend on its thread list.
pub fn become_root() -> Result<()> {
    // SAFETY: a zero-length group list; the id calls take integers.
    unsafe {
        check(libc::syscall(arch::SYS_SETGROUPS, 0, core::ptr::null::<libc::gid_t>()) as c_int)?;
        check(libc::syscall(arch::SYS_SETRESGID, 0, 0, 0) as c_int)?;
        check(libc::syscall(arch::SYS_SETRESUID, 0, 0, 0) as c_int)?;
    }
    Ok(())
}

/// Drops from the bounding set every capability whose bit is not set in `keep`, up to the
/// last one the kernel knows (PR_CAPBSET_DROP answers EINVAL past it).
pub fn drop_bounding_set(keep: u64) -> Result<()> {
    for cap in 0..64 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number.
        match check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) }) {
            Ok(_) => {}
            Err(Errno(libc::EINVAL)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// PR_SET_DUMPABLE 0: no process without CAP_SYS_PTRACE in the user namespace our memory
/// was made in (the host's, for a shim exec'd there) may trace us, take our descriptors
/// (pidfd_getfd), read or write our memory (/proc/PID/mem, process_vm_*) or follow our
/// /proc links. Inherited by a child we clone; an exec by that child makes its own memory,
/// dumpable again in its user namespace.
pub fn set_undumpable() -> Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong) }).map(drop)
}

/// The parent's pid (in our PID namespace).
pub fn getppid() -> Pid {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() }
}

/// Cuts the permitted and effective capability sets to `keep` (bit N for capability N; a
/// set only ever shrinks) and empties the inheritable and ambient ones, so that nothing
/// outside `keep` is held now or survives an exec, whatever our parent had.
pub fn limit_capabilities(keep: u64) -> Result<()> {
    let mut header = CapHeader::current();
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two cap_data structs for version 3, which `data` has room for.
    check(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) as c_int })?;
    caps::limit(&mut data, keep);
    // SAFETY: capset reads the header and two cap_data structs.
    check(unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as c_int })?;
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    // EINVAL: a kernel before ambient capabilities (4.3), which has none to clear
    match check(cleared) {
        Ok(_) | Err(Errno(libc::EINVAL)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Closes every descriptor from `first` up (close_range, Linux 5.9).
pub fn close_from(first: c_int) {
    // SAFETY: close_range only closes descriptors.
    unsafe { libc::syscall(libc::SYS_close_range, first, c_int::MAX, 0) };
}

/// reboot(2) POWER_OFF. In a PID namespace other than the first, the kernel kills the
/// namespace's init and ends the caller (exit 0); returns only on failure.
pub fn power_off() -> Errno {
    // SAFETY: reboot takes integers.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    last_errno()
}

/// Sets the calling thread's name (`/proc/PID/comm`, 15 bytes kept).
pub fn set_name(name: &CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (the kernel copies 16 bytes at most).
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// poll(2) on `fds`, waiting as long as it takes; EINTR counts as nothing ready.
pub fn poll(fds: &mut [libc::pollfd]) -> Result<()> {
    // SAFETY: fds is a live, writable array of fds.len() pollfd structs.
    match check(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) }) {
        Ok(_) | Err(Errno(libc::EINTR)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// PR_SET_NO_NEW_PRIVS: no exec from now on gains privileges.
pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) }).map(drop)
}

/// Installs the classic BPF program `program` (struct sock_filter instructions, 8 bytes
/// each in the kernel's layout) as a seccomp filter with SECCOMP_FILTER_FLAG_* `flags`.
pub fn install_seccomp(program: &[u8], flags: u32) -> Result<()> {
    let len = u16::try_from(program.len() / 8).map_err(|_| Errno(libc::EINVAL))?;
    // the kernel copies the instructions from this address, whatever its alignment
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut().cast(),
    };
    // SAFETY: prog points to `program`, valid for the call; the kernel copies it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    check(ret as c_int).map(drop)
}

/// One read(2) into `buf`.
pub fn read(fd: Fd, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: buf is a live, writable slice of buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(last_errno())
    } else {
        Ok(n as usize)
    }
}

/// One write(2) of `buf` (what a non-blocking descriptor takes now).
pub fn write(fd: Fd, buf: &[u8]) -> Result<usize> {
    // SAFETY: buf is a live slice of buf.len() bytes.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(last_errno())
    } else {
        Ok(n as usize)
    }
}

/// accept4(2): a connection on the listening socket `fd`, non-blocking, close-on-exec.
pub fn accept(fd: Fd) -> Result<Fd> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: null address and length: the peer's address is not wanted. The raw call:
    // musl's wrapper carries a fallback for kernels older than ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_accept4,
            fd,
            core::ptr::null_mut::<libc::sockaddr>(),
            core::ptr::null_mut::<libc::socklen_t>(),
            flags,
        )
    };
    check(fd as c_int)
}

/// Sets the window size of the terminal `fd` (TIOCSWINSZ).
pub fn set_window_size(fd: Fd, rows: u16, cols: u16) -> Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct, which size is.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size as *const libc::winsize) }).map(drop)
}

/// Maps `len` bytes of the file `fd` shared, readable and writable, for the rest of the
/// process's life (it is never unmapped, so the slice may be `'static`). The file must be
/// at least `len` bytes long; its pages cost memory only once written.
pub fn map_shared(fd: Fd, len: usize) -> Result<&'static mut [u8]> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a new mapping chosen by the kernel; nothing else refers to that memory. The
    // raw call (musl's wrapper checks what the kernel checks): -1 and errno on failure.
    let addr = unsafe {
        libc::syscall(
            arch::SYS_MMAP,
            core::ptr::null_mut::<c_void>(),
            len,
            prot,
            libc::MAP_SHARED,
            fd,
            0,
        )
    } as *mut c_void;
    if addr as isize == -1 {
        return Err(last_errno());
    }
    // SAFETY: the mapping is len bytes, readable and writable, never unmapped, and this is
    // its only reference.
    Ok(unsafe { core::slice::from_raw_parts_mut(addr.cast::<u8>(), len) })
}

/// Clears `fd`'s close-on-exec flag: the next program inherits it.
pub fn keep_on_exec(fd: Fd) -> Result<()> {
    // SAFETY: F_SETFD with 0 only changes the descriptor's flags.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(drop)
}

/// execveat(fd, "", argv, environment, AT_EMPTY_PATH): runs the executable open on `fd`.
/// Returns only on failure, with its errno.
pub fn exec_fd(fd: Fd, argv: &[*const c_char], environment: crate::Environment) -> Errno {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    // SAFETY: argv is a null-terminated array of NUL-terminated strings (every caller
    // builds it that way); the environment is the one C's main received.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            environment.0,
            libc::AT_EMPTY_PATH,
        )
    };
    let errno = last_errno();
    if errno.0 != libc::ENOENT {
        return errno;
    }
    // Debian 11's 5.10 answers ENOENT for some descriptors (an O_PATH one of the
    // launcher): their magic link in /proc runs the same file
    let mut buf = [0u8; 64];
    match cradle_common::path::with_number(&mut buf, b"/proc/self/fd/", fd as u32) {
        Some(path) => execve(path, argv, environment),
        None => errno,
    }
}

/// A pidfd of the process `pid` (close-on-exec).
pub fn pidfd_open(pid: Pid) -> Result<Fd> {
    // SAFETY: pidfd_open takes integers and returns a new descriptor.
    check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as c_int)
}

/// Whether the process behind the pidfd `fd` has ended (its pidfd is readable), asked
/// without waiting. Unlike a signal, this works across PID namespaces.
pub fn has_ended(fd: Fd) -> bool {
    let mut fds = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: fds is a live, writable array of one pollfd struct.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    ready != 0
}

/// Sends `sig` to the process behind the pidfd `fd`.
pub fn pidfd_kill(fd: Fd, sig: c_int) -> Result<()> {
    // SAFETY: a null siginfo and no flags: pidfd_send_signal then acts as kill(2).
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            sig,
            core::ptr::null::<c_void>(),
            0,
        )
    } as c_int)
    .map(drop)
}
