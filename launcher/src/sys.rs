//! System calls nix does not wrap, as small safe functions: clone3 with a pidfd and a
//! target cgroup, pidfd_open, execveat by descriptor without allocating, the loopback
//! interface's flags, close_range, and the new mount API (open_tree, mount_setattr,
//! move_mount, fsopen/fsconfig/fsmount).
//!
//! The launcher is single-threaded by design (signal-hook is used through its self-pipe,
//! with no thread), which is what makes forking here sound. That is not left to a comment:
//! the fork functions take a [`SingleThreaded`] token, which only a check of the thread
//! count makes, and the child of [`fork_into`] gets an [`InChild`] token, which the
//! functions that are only sound between clone and exec (`plan::apply`) ask for.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char};
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use cradle_common::arch::{self, CloneArgs};
use cradle_common::caps::{self, CapData, CapHeader};
use nix::errno::Errno;
use nix::poll::{PollFd, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Proof that the process had one thread when it was made. Not `Send`, so it stays on
/// that thread; the launcher never starts another (signals come through a self-pipe).
pub struct SingleThreaded {
    _not_send: PhantomData<*const ()>,
}

impl SingleThreaded {
    /// Checks that the process has exactly one thread (/proc/self/task).
    pub fn check() -> std::io::Result<Self> {
        let threads = std::fs::read_dir("/proc/self/task")?.count();
        if threads != 1 {
            return Err(std::io::Error::other(format!(
                "the launcher must be single-threaded to fork (it has {threads} threads)"
            )));
        }
        Ok(SingleThreaded {
            _not_send: PhantomData,
        })
    }
}

#[cfg(test)]
impl SingleThreaded {
    /// The unit tests fork from the test harness, which has threads of its own. Their
    /// children run a few system calls and small closures, then exit; a lock another test
    /// thread held at the fork would hang that child, and the test would time out, not pass.
    pub fn for_tests() -> Self {
        SingleThreaded {
            _not_send: PhantomData,
        }
    }
}

/// Proof that the caller is the child of [`fork_into`], between clone and exec: given to
/// the child's closure and to nothing else. Functions that take it make system calls on
/// memory prepared before the fork, and allocate nothing.
#[derive(Clone, Copy)]
pub struct InChild {
    _private: (),
}

/// Which side of a fork the caller is on.
enum Forked {
    Child,
    /// The parent, with the child's pid and a pidfd for it.
    Parent {
        pid: Pid,
        pidfd: OwnedFd,
    },
}

/// fork(2) by clone3: the child gets the new `namespaces` and starts in the cgroup
/// `cgroup` (a directory descriptor of a cgroup v2 hierarchy) when one is given; the
/// parent gets a pidfd for it, so that it can wait in poll(2) without SIGCHLD.
///
/// # Safety
/// As for fork: in a multithreaded process the child may only call async-signal-safe
/// functions until it execs or exits.
unsafe fn clone3(namespaces: CloneFlags, cgroup: Option<BorrowedFd>) -> nix::Result<Forked> {
    let mut pidfd: RawFd = -1;
    let mut flags = u64::from(namespaces.bits() as u32) | libc::CLONE_PIDFD as u64;
    if cgroup.is_some() {
        flags |= arch::CLONE_INTO_CGROUP;
    }
    let args = CloneArgs {
        flags,
        pidfd: &mut pidfd as *mut RawFd as usize as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    // SAFETY: args is valid for the call and its size is passed; with no stack the child
    // continues on a copy of ours, as with fork; the caller upholds fork's rules.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match Errno::result(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: Pid::from_raw(pid as libc::pid_t),
            // SAFETY: the kernel wrote a new descriptor that nobody else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// Forks a child into new `namespaces` (and `cgroup`), which runs `child`. The child
/// must only make system calls on memory prepared before the call, then exec or exit: it
/// is the container's first process and glibc's state in it is a copy of ours (clone3 is
/// not glibc's fork, so glibc's cached thread id is stale there; nothing it calls uses it).
/// The [`InChild`] token it gets is what the functions written for that state ask for.
pub fn fork_into(
    _: &SingleThreaded,
    namespaces: CloneFlags,
    cgroup: Option<BorrowedFd>,
    child: impl FnOnce(InChild),
) -> nix::Result<(Pid, OwnedFd)> {
    // SAFETY: the token proves the process is single-threaded; the child's restrictions
    // are this function's documented contract.
    match unsafe { clone3(namespaces, cgroup) }? {
        Forked::Child => {
            child(InChild { _private: () });
            // the child is meant to exec or exit; if it returns, it must not go on as us
            exit_now(127)
        }
        Forked::Parent { pid, pidfd } => Ok((pid, pidfd)),
    }
}

/// Forks a helper process that runs `child` (ordinary Rust, allocation included: the
/// launcher is single-threaded, so no lock can be held across the fork) and exits with
/// the code it returns. glibc's own fork is used, so the child's libc is consistent.
pub fn fork_helper(_: &SingleThreaded, child: impl FnOnce() -> u8) -> nix::Result<(Pid, OwnedFd)> {
    // SAFETY: fork in a single-threaded process (the token proves it).
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => exit_now(child()),
        nix::unistd::ForkResult::Parent { child } => Ok((child, pidfd_open(child)?)),
    }
}

/// fork(2), both processes going on: the child gets `None`, the parent the child's pid.
/// For the launcher that turns into a background monitor (`start --detach`): the child is
/// ordinary Rust from then on, which is sound because we were single-threaded.
pub fn fork(_: &SingleThreaded) -> nix::Result<Option<Pid>> {
    // SAFETY: fork in a single-threaded process (the token proves it).
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(None),
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child)),
    }
}

/// A pidfd for `pid` (Linux 5.3).
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, and returns a new descriptor or -1.
    let fd = Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) })?;
    // SAFETY: the descriptor is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A copy of descriptor `fd` of the process behind `pidfd` (pidfd_getfd, Linux 5.6),
/// close-on-exec.
pub fn pidfd_getfd(pidfd: BorrowedFd, fd: RawFd) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes two descriptor numbers and flags (0), and returns a new
    // descriptor or -1.
    let new =
        Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })?;
    // SAFETY: the descriptor is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(new as RawFd) })
}

/// Sends `signal` to the process behind `pidfd` (0 only checks that it is alive).
pub fn pidfd_send_signal(pidfd: BorrowedFd, signal: i32) -> nix::Result<()> {
    // SAFETY: a null siginfo asks the kernel to fill it as kill(2) would.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// execveat(fd, "", argv, envp, AT_EMPTY_PATH): runs the executable open on `fd`.
/// `argv` and `envp` are null-terminated arrays prepared before fork; nothing is allocated
/// here. Returns only on failure.
pub fn exec_fd(fd: BorrowedFd, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    assert!(argv.last().is_some_and(|p| p.is_null()) && envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: argv and envp are null-terminated arrays of NUL-terminated strings (ends
    // checked above; their builders make every element from a CString).
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    match Errno::last() {
        // Debian 11's 5.10 answers ENOENT for a memfd (the sealed shim); its magic link in
        // /proc runs the same file (and is no name a guest can swap)
        Errno::ENOENT => {
            let mut buf = [0u8; 64];
            let Some(path) = path_with_number(&mut buf, b"/proc/self/fd/", fd.as_raw_fd() as u32)
            else {
                return Errno::ENOENT;
            };
            // SAFETY: as above; path is NUL-terminated.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            Errno::last()
        }
        errno => errno,
    }
}

/// Sets IFF_UP on the interface `name` (the loopback of a new network namespace is down).
pub fn interface_up(name: &CStr) -> nix::Result<()> {
    // SAFETY: socket takes three integers and returns a new descriptor or -1.
    let sock = Errno::result(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: the descriptor is new and ours.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.to_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_flags of the request we own.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) })?;
    // SAFETY: the kernel filled ifru_flags above; the union member is plain data.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads ifr_name and ifr_flags of the request we own.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) }).map(drop)
}

/// The moment a wait ends: what is left of it, as a duration and as poll(2)'s timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// `wait` from now (every wait is bounded: `--timeout` and the rest).
    pub fn after(wait: Duration) -> Self {
        Deadline(Instant::now() + wait)
    }

    /// What is left: zero once it has passed.
    pub fn left(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    pub fn passed(self) -> bool {
        self.left().is_zero()
    }

    /// A poll(2) timeout for what is left: rounded up to the next millisecond (a poll that
    /// ends before the deadline would come back too soon), at most poll's largest.
    pub fn poll_timeout(self) -> PollTimeout {
        let ms = self
            .left()
            .as_millis()
            .saturating_add(1)
            .min(i32::MAX as u128) as i32;
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
    }
}

/// poll(2) on `fds` until one has an event or `timeout` passes (a signal that interrupts it
/// is no error: nothing is ready then): which of them have events, in their order.
pub fn poll_ready(fds: &mut [PollFd], timeout: PollTimeout) -> nix::Result<Vec<bool>> {
    match poll(fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(e),
    }
    Ok(fds
        .iter()
        .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

/// Marks every descriptor from `first` up close-on-exec, so that nothing the launcher
/// inherited leaks into a container: with close_range's `CLOSE_RANGE_CLOEXEC` (Linux
/// 5.11), or one by one as /proc/self/fd lists them where the kernel has no such flag
/// (EINVAL from Linux 5.9's close_range, ENOSYS before).
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    match close_range(first as RawFd, RawFd::MAX, libc::CLOSE_RANGE_CLOEXEC) {
        Err(Errno::EINVAL | Errno::ENOSYS) => {}
        other => return other.map(drop),
    }
    let listed: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| fd >= first as RawFd)
        .collect();
    for fd in listed {
        // the directory's own descriptor, closed by now, is among them: EBADF
        match set_cloexec(fd, true) {
            Ok(()) | Err(Errno::EBADF) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// close_range(2) of `first..=last` with `flags` (nothing when the range is empty).
fn close_range(first: RawFd, last: RawFd, flags: libc::c_uint) -> nix::Result<()> {
    if first > last {
        return Ok(());
    }
    // SAFETY: closes descriptors (or, with CLOSE_RANGE_CLOEXEC, marks them); the caller
    // owns every one in the range.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, flags) };
    Errno::result(ret).map(drop)
}

/// Closes every descriptor of this process but `keep` (sorted): for a forked helper,
/// which holds copies of everything its parent had open. Allocation-free.
pub fn close_all_but(keep: &[RawFd]) {
    let mut next = 0;
    for &fd in keep {
        let _ = close_range(next, fd - 1, 0);
        next = fd + 1;
    }
    let _ = close_range(next, RawFd::MAX, 0);
}

/// Forks a grandchild that closes every descriptor but `keep` (sorted), runs `work` and
/// exits; the child between exits at once and is waited for here, so the grandchild is
/// reaped by init (or the nearest subreaper), not by us, however long we live. It holds
/// nothing of ours (no lock, no standard stream) but `keep`. False when it could not be
/// forked.
///
/// # Safety
/// `work` runs in a forked copy of this process: it must make only async-signal-safe
/// calls unless the process is single-threaded.
unsafe fn orphan(keep: &[RawFd], work: impl FnOnce()) -> bool {
    // SAFETY: both children make only system calls until `work`, whose soundness is the
    // caller's contract.
    match unsafe { libc::fork() } {
        -1 => false,
        0 => {
            // SAFETY: as above
            if unsafe { libc::fork() } != 0 {
                exit_now(0)
            }
            close_all_but(keep);
            work();
            exit_now(0)
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child, into a local.
            while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
                && Errno::last() == Errno::EINTR
            {}
            true
        }
    }
}

/// Runs `work` in the background, in a process of its own that nobody waits for (see
/// [`orphan`]): ordinary Rust, since the launcher is single-threaded.
pub fn in_background(_: &SingleThreaded, work: impl FnOnce()) {
    // SAFETY: the process is single-threaded (the token proves it).
    if !unsafe { orphan(&[], work) } {
        log::debug!("no process for background work: not done");
    }
}

/// Closes `fd` in the background, after this process has let go of it, so that what the
/// kernel does on the last close is not waited for here (an nf_tables socket that deleted
/// something waits there for an RCU grace period, 5 to 25 ms): a process of its own
/// waits until our copy is closed and closes its own. Where it cannot be forked, `fd` is
/// closed here.
pub fn close_in_background(fd: OwnedFd) {
    let Ok((wait, go)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    let (keep, hold) = (fd.as_raw_fd(), wait.as_raw_fd());
    let work = || {
        let mut byte = 0u8;
        // end of file once we closed `go` (after our copy of `fd`)
        // SAFETY: reads into a local byte.
        unsafe { libc::read(hold, (&raw mut byte).cast(), 1) };
        // SAFETY: `keep` is this process's copy of `fd`.
        unsafe { libc::close(keep) };
    };
    // SAFETY: `work` makes only async-signal-safe system calls on values computed here.
    unsafe { orphan(&[keep.min(hold), keep.max(hold)], work) };
    // our copy goes first, then the other process may close its own
    drop(fd);
    drop(go);
}

/// Clears close-on-exec on `fd`, to hand it to the program the child execs.
pub fn keep_on_exec(fd: BorrowedFd) -> nix::Result<()> {
    set_cloexec(fd.as_raw_fd(), false)
}

/// Sets or clears the close-on-exec flag of our descriptor `fd`.
pub fn set_cloexec(fd: RawFd, on: bool) -> Result<(), Errno> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD only changes the descriptor's flags.
    Errno::result(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) }).map(drop)
}

/// Takes the descriptor number `fd`, inherited across an exec, as ours: checked open, and
/// close-on-exec again. The caller takes each number once (`handoff::Taken`).
pub fn adopt_fd(fd: RawFd) -> nix::Result<OwnedFd> {
    // EBADF when it is not open
    set_cloexec(fd, true)?;
    // SAFETY: open (checked above), and taken once: nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Ends the process at once: no destructors, no atexit, no flushing (for forked children).
pub fn exit_now(code: u8) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code as i32) }
}

/// Puts SIGPIPE back to its default disposition (Rust's runtime ignores it, and an ignored
/// signal stays ignored across exec).
pub fn default_sigpipe() {
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in signal context.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// open_tree(2): with `OPEN_TREE_CLONE`, a detached copy of the mount at `path` (below
/// `dirfd`), which can be changed with [`mount_setattr`] and attached with [`move_mount`].
/// The descriptor is close-on-exec.
pub fn open_tree(dirfd: BorrowedFd, path: &CStr, flags: u32) -> nix::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated; open_tree returns a new descriptor or -1.
    let fd = Errno::result(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            flags | libc::OPEN_TREE_CLOEXEC,
        )
    })?;
    // SAFETY: the descriptor is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// mount_setattr(2): changes the flags, propagation or id mapping of the mount at `path`
/// below `dirfd` (and of the mounts below it, with `AT_RECURSIVE`).
pub fn mount_setattr(
    dirfd: BorrowedFd,
    path: &CStr,
    at_flags: u32,
    attr: &libc::mount_attr,
) -> nix::Result<()> {
    // SAFETY: path is NUL-terminated; attr is a valid mount_attr of the size passed.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            at_flags,
            attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })
    .map(drop)
}

/// move_mount(2): attaches (or moves) the mount at `from`/`from_path` onto `to`/`to_path`.
/// Nothing is allocated: sound between clone and exec.
pub fn move_mount(
    from: BorrowedFd,
    from_path: &CStr,
    to: BorrowedFd,
    to_path: &CStr,
    flags: u32,
) -> nix::Result<()> {
    // SAFETY: both paths are NUL-terminated; move_mount has no other memory effects.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            from_path.as_ptr(),
            to.as_raw_fd(),
            to_path.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// fsopen(2): a file system context for `fstype`, close-on-exec.
pub fn fsopen(fstype: &CStr) -> nix::Result<OwnedFd> {
    // SAFETY: fstype is NUL-terminated; fsopen returns a new descriptor or -1.
    let fd = Errno::result(unsafe {
        libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC)
    })?;
    // SAFETY: the descriptor is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// fsconfig(2) on a context from [`fsopen`]: the option `key=value`, or the flag `key`
/// when there is no value.
pub fn fsconfig_set(fs: BorrowedFd, key: &CStr, value: Option<&CStr>) -> nix::Result<()> {
    let (cmd, value) = match value {
        Some(value) => (libc::FSCONFIG_SET_STRING, value.as_ptr()),
        None => (libc::FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: key and value are NUL-terminated (or null for a flag, as fsconfig takes).
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.as_ptr(),
            value,
            0,
        )
    })
    .map(drop)
}

/// Creates the file system of a context ([`fsopen`], [`fsconfig_set`]) and returns a
/// detached mount of it with the `MOUNT_ATTR_*` flags `attrs`, close-on-exec.
pub fn fsmount(fs: BorrowedFd, attrs: u64) -> nix::Result<OwnedFd> {
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<c_char>(),
            std::ptr::null::<c_char>(),
            0,
        )
    })?;
    // SAFETY: fsmount returns a new descriptor or -1.
    let fd = Errno::result(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    })?;
    // SAFETY: the descriptor is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sets the extended attribute `name` of the file open on `fd` to `value`.
pub fn set_xattr(fd: BorrowedFd, name: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: name is NUL-terminated; value is a live slice of value.len() bytes.
    Errno::result(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// The extended attribute `name` of `path` (up to 4 KiB), if it has one.
pub fn get_xattr(path: &CStr, name: &CStr) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: path and name are NUL-terminated; buf is writable for buf.len() bytes.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// What a read of an extended attribute returned: its length in `buf`, `None` when the
/// file has no such attribute (ENODATA; a file system without any is EOPNOTSUPP).
fn xattr_read(n: libc::ssize_t) -> nix::Result<Option<usize>> {
    match Errno::result(n) {
        Ok(n) => Ok(Some(n as usize)),
        Err(Errno::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The extended attribute `name` of the file open on `fd`, read into `buf` (its length),
/// or `None` when it has none (see [`xattr_read`]).
pub fn fget_xattr(fd: BorrowedFd, name: &CStr, buf: &mut [u8]) -> nix::Result<Option<usize>> {
    // SAFETY: name is NUL-terminated; buf is writable for buf.len() bytes.
    xattr_read(unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })
}

/// The extended attribute `name` of `path` itself (a symlink is not followed), read into
/// `buf` (its length), or `None` when it has none (see [`xattr_read`]).
pub fn lget_xattr(path: &CStr, name: &CStr, buf: &mut [u8]) -> nix::Result<Option<usize>> {
    // SAFETY: path and name are NUL-terminated; buf is writable for buf.len() bytes.
    xattr_read(unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })
}

/// Sets the extended attribute `name` of `path` itself (a symlink is not followed).
pub fn lset_xattr(path: &CStr, name: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: path and name are NUL-terminated; value is a live slice of value.len() bytes.
    Errno::result(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// Removes the extended attribute `name` of the file open on `fd`; one it does not have
/// is no error.
pub fn fremove_xattr(fd: BorrowedFd, name: &CStr) -> nix::Result<()> {
    // SAFETY: name is NUL-terminated.
    match Errno::result(unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) }) {
        Ok(_) | Err(Errno::ENODATA) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The id of the mount the file open on `fd` is on (statx `STATX_MNT_ID`, Linux 5.8): two
/// directories of one file system bound in two places have one `st_dev` but two of these.
pub fn mount_id(fd: BorrowedFd) -> nix::Result<u64> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: the path is an empty NUL-terminated string (AT_EMPTY_PATH: fd itself); stx is
    // writable memory of the struct's size, which the kernel fills in.
    Errno::result(unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            stx.as_mut_ptr(),
        )
    })?;
    // SAFETY: zeroed is a valid statx, and the call succeeded.
    let stx = unsafe { stx.assume_init() };
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(Errno::ENOSYS);
    }
    Ok(stx.stx_mnt_id)
}

/// The window size of the terminal on `fd` (TIOCGWINSZ), if it is one.
pub fn window_size(fd: BorrowedFd) -> Option<libc::winsize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize to the pointer it is given.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (ret == 0).then_some(size)
}

/// Sets the window size of the terminal on `fd` (TIOCSWINSZ).
pub fn set_window_size(fd: BorrowedFd, size: &libc::winsize) -> nix::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer it is given.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, size) }).map(drop)
}

// -----------------------------------------------------------------------------------------
// Containment: the capability bounding set (caps.rs) and the seccomp filter (seccomp.rs).
// Everything here is allocation-free and async-signal-safe, so the container's first
// process can call it between clone and exec, on data built before the fork. Each call
// changes only the calling thread, which is the whole process in that child.
// -----------------------------------------------------------------------------------------

/// Whether capability `cap` is in the calling thread's bounding set; `None` past the
/// running kernel's last capability (`/proc/sys/kernel/cap_last_cap`), where prctl fails
/// with EINVAL.
fn capbset_read(cap: u32) -> nix::Result<Option<bool>> {
    // SAFETY: PR_CAPBSET_READ takes a capability number and touches no memory of ours.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
    match Errno::result(ret) {
        Ok(n) => Ok(Some(n == 1)),
        Err(Errno::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The calling thread's capability bounding set, bit N for capability N, up to the
/// running kernel's last capability.
#[allow(dead_code)] // the tests', until the container setup logs it
pub fn bounding_set() -> nix::Result<u64> {
    let mut set = 0;
    for cap in 0..64 {
        match capbset_read(cap)? {
            Some(true) => set |= 1 << cap,
            Some(false) => {}
            None => break,
        }
    }
    Ok(set)
}

/// Drops from the calling thread's capability bounding set every capability the running
/// kernel knows that is not in `keep` (bit N for capability N). The end of the kernel's
/// list is found by asking (PR_CAPBSET_DROP fails with EINVAL past it; dropping one that
/// is not in the set is no error), so nothing has to be read from /proc first, and there
/// is one call per capability dropped. Needs CAP_SETPCAP; irreversible; allocation-free,
/// for the container's first process before it execs.
pub fn drop_bounding_set(keep: u64) -> nix::Result<()> {
    for cap in (0..64).filter(|cap| keep & (1 << cap) == 0) {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and changes only this
        // thread's bounding set.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        match Errno::result(ret) {
            Ok(_) => {}
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Our standard stream `fd` (0, 1 or 2), borrowed for as long as the process lives.
pub fn std_stream(fd: RawFd) -> BorrowedFd<'static> {
    assert!((0..3).contains(&fd), "not a standard stream: {fd}");
    // SAFETY: the launcher never closes its standard streams, so 0, 1 and 2 stay open (a
    // closed one is a descriptor the calls made on it answer EBADF) for the process's life.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// The calling thread's capability sets: capget(2), version 3.
fn capget() -> nix::Result<[CapData; 2]> {
    let mut header = CapHeader::current();
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two cap_data structs for version 3, which `data` has room for.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    })?;
    Ok(data)
}

/// Sets the calling thread's capability sets: capset(2), version 3.
fn capset(data: &[CapData; 2]) -> nix::Result<()> {
    let header = CapHeader::current();
    // SAFETY: capset reads the header and two cap_data structs.
    Errno::result(unsafe {
        libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr())
    })
    .map(drop)
}

/// Cuts the calling thread's permitted and effective capability sets to `keep` (bit N for
/// capability N; they only shrink) and empties its inheritable and ambient sets: what it
/// inherited from whoever ran the launcher (`setpriv --inh-caps`, ambient capabilities)
/// would otherwise survive an exec as root past the bounding set, since a root exec keeps
/// the inheritable set whole. Allocation-free, for the container's first process.
pub fn limit_capabilities(keep: u64) -> nix::Result<()> {
    let mut data = capget()?;
    caps::limit(&mut data, keep);
    capset(&data)?;
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // EINVAL: a kernel before ambient capabilities (4.3), which has none to clear
    match Errno::result(cleared) {
        Ok(_) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Tests only: the calling thread's effective, permitted and inheritable sets.
#[cfg(test)]
pub fn capabilities() -> nix::Result<[u64; 3]> {
    let data = capget()?;
    let join =
        |word: fn(&CapData) -> u32| u64::from(word(&data[0])) | u64::from(word(&data[1])) << 32;
    Ok([
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ])
}

/// Tests only: adds `caps` to the calling thread's inheritable set, as a launcher run
/// under `setpriv --inh-caps` has them.
#[cfg(test)]
pub fn inherit_for_tests(caps: u64) -> nix::Result<()> {
    let mut data = capget()?;
    data[0].inheritable |= caps as u32;
    data[1].inheritable |= (caps >> 32) as u32;
    capset(&data)
}

/// Installs the classic BPF `program` as a seccomp filter on the calling thread:
/// seccomp(SECCOMP_SET_MODE_FILTER) with the SECCOMP_FILTER_FLAG_* bits `flags` (LOG,
/// SPEC_ALLOW; not NEW_LISTENER, whose descriptor would be lost) and *without*
/// PR_SET_NO_NEW_PRIVS, so set-user-ID programs (su, passwd) keep working under it. The
/// kernel then requires CAP_SYS_ADMIN in the caller's user namespace (EACCES otherwise),
/// and refuses flags it does not know with EINVAL. Filters stack: the kernel runs every
/// installed filter and the most restrictive answer wins. The kernel copies the program;
/// nothing is allocated here.
pub fn install_seccomp(program: &[libc::sock_filter], flags: u32) -> nix::Result<RawFd> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: prog points to `program`, valid for the call; the kernel only reads it
    // (filter is *mut in the C struct, but SECCOMP_SET_MODE_FILTER copies it).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    // the listener's descriptor with SECCOMP_FILTER_FLAG_NEW_LISTENER, else 0
    Errno::result(ret).map(|fd| fd as RawFd)
}

/// Makes the directory open on `dir` our root and working directory (fchdir, chroot):
/// how a process joins a container whose root is a chroot in our mount namespace.
pub fn enter_root(dir: BorrowedFd) -> nix::Result<()> {
    nix::unistd::fchdir(dir)?;
    nix::unistd::chroot(c".")?;
    nix::unistd::chdir(c"/")
}

/// Takes ownership of `fd`, a descriptor a system call just returned to us (a seccomp
/// listener), which nobody else holds.
pub fn own_new_fd(fd: RawFd) -> nix::Result<OwnedFd> {
    if fd < 0 {
        return Err(Errno::EBADF);
    }
    // SAFETY: the kernel returned this descriptor to the caller, who hands it over here
    // and holds no other owner of it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Tests only: system call `nr` of the native ABI with `args`. Arguments are integers;
/// an address among them must be of memory the call may read or write, or one the kernel
/// refuses with EFAULT.
#[cfg(test)]
pub fn raw_syscall(nr: libc::c_long, args: [u64; 6]) -> nix::Result<i64> {
    // SAFETY: the callers (tests) keep the contract above, so the kernel reads and writes
    // only memory they own or fails with EFAULT.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    Errno::result(ret)
}

/// Tests only: system call `nr` of the i386 ABI, made with `int $0x80` as a 32-bit
/// program does (seccomp then sees AUDIT_ARCH_I386 and i386 numbers). Up to five
/// arguments; addresses are cut to 32 bits, so in a 64-bit process they point nowhere
/// and the kernel answers EFAULT.
#[cfg(all(test, target_arch = "x86_64"))]
pub fn raw_syscall_i386(nr: u32, args: [u32; 5]) -> nix::Result<u32> {
    let ret: u32;
    // SAFETY: int $0x80 enters the kernel's i386 entry with the number in eax and the
    // arguments in ebx, ecx, edx, esi, edi; it returns in eax and leaves the other
    // registers as they were (r8-r11 are declared clobbered anyway). rbx is reserved by
    // the compiler, so the first argument is swapped into it and back around the call.
    // Memory is touched only as the contract above allows.
    unsafe {
        std::arch::asm!(
            "xchg {first:r}, rbx",
            "int 0x80",
            "xchg {first:r}, rbx",
            first = inout(reg) u64::from(args[0]) => _,
            inlateout("eax") nr => ret,
            in("ecx") args[1],
            in("edx") args[2],
            in("esi") args[3],
            in("edi") args[4],
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    match ret as i32 {
        err @ -4095..=-1 => Err(Errno::from_raw(-err)),
        _ => Ok(ret),
    }
}

// ---------------------------------------------------------------------------------------
// bpf(2), for the device policy (devices.rs). Constants and layouts from linux/bpf.h; the
// libc crate has the syscall number only.
// ---------------------------------------------------------------------------------------

/// `enum bpf_cmd`.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
/// `enum bpf_prog_type`.
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `enum bpf_attach_type`.
const BPF_CGROUP_DEVICE: u32 = 6;
/// An attach flag: the cgroup's programs and those attached below it all run, and an
/// access is allowed only if every one of them allows it.
pub const BPF_F_ALLOW_MULTI: u32 = 2;
/// `BPF_OBJ_NAME_LEN`, the terminating NUL included.
const BPF_OBJ_NAME_LEN: usize = 16;

/// The head of `union bpf_attr` that BPF_PROG_LOAD reads; the kernel takes a shorter
/// attribute and treats the fields after it as zero.
#[repr(C, align(8))]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
}

/// The head of `union bpf_attr` that BPF_PROG_ATTACH reads.
#[repr(C, align(8))]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    /// With `expected_revision`, for the programs kept in order (Linux 6.6); a cgroup's
    /// device programs must have it 0. A field of its own, so that no padding byte of
    /// unknown value is passed.
    relative_fd: u32,
}

/// Loads `insns` (encoded `struct bpf_insn`s) as a BPF_PROG_TYPE_CGROUP_DEVICE program
/// named `name` (at most 15 bytes: letters, digits, `_`, `.`) under `license`. With
/// `log`, the verifier writes its log there, NUL-terminated (only its end when it does not
/// fit, Linux 6.4; its start before that, with ENOSPC).
pub fn bpf_load_cgroup_device(
    insns: &[[u8; 8]],
    license: &CStr,
    name: &CStr,
    log: Option<&mut [u8]>,
) -> nix::Result<OwnedFd> {
    let name = name.to_bytes();
    if name.len() >= BPF_OBJ_NAME_LEN {
        return Err(Errno::ENAMETOOLONG);
    }
    let mut prog_name = [0; BPF_OBJ_NAME_LEN];
    prog_name[..name.len()].copy_from_slice(name);
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (
            1,
            u32::try_from(buf.len()).map_err(|_| Errno::E2BIG)?,
            buf.as_mut_ptr() as u64,
        ),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
    };
    // SAFETY: attr is valid for the call and its size is passed; the kernel reads
    // insn_cnt instructions from insns and the NUL-terminated license, and writes at most
    // log_size bytes to log_buf, all of which are borrowed for the call.
    let fd = Errno::result(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    })?;
    // SAFETY: the kernel returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Attaches the program `prog` to the cgroup v2 directory `cgroup` as a
/// BPF_CGROUP_DEVICE program, with attach `flags` ([`BPF_F_ALLOW_MULTI`] or 0). The
/// attachment holds a reference to the program: `prog` may be closed afterwards, and
/// removing the cgroup drops it.
pub fn bpf_attach_cgroup_device(
    cgroup: BorrowedFd,
    prog: BorrowedFd,
    flags: u32,
) -> nix::Result<()> {
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        replace_bpf_fd: 0,
        relative_fd: 0,
    };
    // SAFETY: attr is valid for the call and its size is passed; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// The name lock: an open file description lock (`F_OFD_SETLK`, a write lock on the whole
/// file), which another process can test without taking it (`F_OFD_GETLK`), so that
/// `stop`, `exec` or `status` asking whether a guest runs never makes a concurrent `start`
/// of it think it does. It goes with the last descriptor of that open file, when its
/// launcher ends, however it ends.
pub fn whole_file(kind: libc::c_short) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// flock(2) of the open file `fd` (`LOCK_SH`, `LOCK_EX`, with `LOCK_NB`, or `LOCK_UN`),
/// held by its open file description, for as long as any copy of it is open: not
/// released when a copy made by dup or fork is dropped, as nix's `Flock` would.
pub fn flock(fd: BorrowedFd, operation: libc::c_int) -> nix::Result<()> {
    // SAFETY: flock takes a descriptor and an integer.
    Errno::result(unsafe { libc::flock(fd.as_raw_fd(), operation) }).map(drop)
}

/// Opens (or makes, mode 0600) the lock file `path` and takes an exclusive flock of it,
/// waiting for whoever holds it; held while the returned value lives.
pub fn flock_exclusive(
    path: &std::path::Path,
) -> crate::error::Result<nix::fcntl::Flock<std::fs::File>> {
    use crate::error::Error;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::host(format!("open {}", path.display()), e))?;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((again, Errno::EINTR)) => file = again,
            Err((_, e)) => return Err(Error::host(format!("lock {}", path.display()), e)),
        }
    }
}

/// True when some process holds a write lock (OFD or POSIX) on the file `file` is open
/// on: tested, never taken.
pub fn write_locked(file: &std::fs::File) -> bool {
    let mut probe = whole_file(libc::F_RDLCK as libc::c_short);
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_GETLK(&mut probe)).is_ok()
        && probe.l_type != libc::F_UNLCK as libc::c_short
}

/// Whether the open `file` is the one at `path` now (same inode), for a lock file its
/// owner may have removed since it was opened.
pub fn is_at(file: &std::fs::File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| {
        file.metadata()
            .is_ok_and(|f| f.ino() == m.ino() && f.dev() == m.dev())
    })
}

/// mknodat(2): a node `name` in the directory `parent`, `mode` with its type bits.
/// Allocation-free, for the container's first process.
pub fn mknodat(parent: BorrowedFd, name: &CStr, mode: u32, dev: u64) -> nix::Result<()> {
    // SAFETY: name is a valid NUL-terminated string for the call; parent a descriptor.
    let ret = unsafe {
        libc::mknodat(
            parent.as_raw_fd(),
            name.as_ptr(),
            mode as libc::mode_t,
            dev as libc::dev_t,
        )
    };
    Errno::result(ret).map(drop)
}

/// setdomainname(2), in the calling process's UTS namespace.
pub fn set_domainname(name: &CStr) -> nix::Result<()> {
    let bytes = name.to_bytes();
    // SAFETY: bytes is valid for its length; the kernel copies it.
    let ret = unsafe { libc::setdomainname(bytes.as_ptr().cast(), bytes.len()) };
    Errno::result(ret).map(drop)
}

/// setrlimit(2) of `resource` (`RLIMIT_*`).
pub fn set_rlimit(resource: i32, soft: u64, hard: u64) -> nix::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: limit is valid for the call; the kernel only reads it.
    let ret = unsafe { libc::setrlimit(resource as _, &limit) };
    Errno::result(ret).map(drop)
}

/// Sets the calling thread's effective, permitted and inheritable capability sets, then
/// raises each capability of `ambient` in its ambient set (bit N for capability N) that
/// is also permitted and inheritable, as the kernel requires (runc skips the others with a
/// warning). Allocation-free, for the container's first process after it changed its uid.
pub fn set_capabilities(
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
) -> nix::Result<()> {
    let word = |set: u64, i: usize| (set >> (32 * i)) as u32;
    let data = [0, 1].map(|i| CapData {
        effective: word(effective, i),
        permitted: word(permitted, i),
        inheritable: word(inheritable, i),
    });
    capset(&data)?;
    let raisable = ambient & permitted & inheritable;
    for cap in (0..64).filter(|cap| raisable & (1 << cap) != 0) {
        // SAFETY: PR_CAP_AMBIENT_RAISE takes a capability number, no pointer.
        let ret = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        Errno::result(ret)?;
    }
    Ok(())
}

/// A path with a number in it, built without allocating (`cradle_common::path`).
pub use cradle_common::path::with_number as path_with_number;

/// Opens the fifo behind the O_PATH descriptor `fifo` for writing (through
/// /proc/self/fd: the container's own /proc), which blocks until a reader opens it (runc's
/// exec.fifo, which `start` opens and reads), and puts it in place of `slot` (its number,
/// kept across exec): what is written on that number from then on reaches `start`.
pub fn await_fifo_reader(fifo: BorrowedFd, slot: BorrowedFd) -> nix::Result<()> {
    let mut buf = [0u8; 64];
    let path = path_with_number(&mut buf, b"/proc/self/fd/", fifo.as_raw_fd() as u32)
        .ok_or(Errno::ENAMETOOLONG)?;
    let file = loop {
        match nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    // SAFETY: dup2 onto a number this process holds open (`slot`): it is replaced, not
    // leaked, and the new descriptor has no close-on-exec flag, which is what is wanted.
    Errno::result(unsafe { libc::dup2(file.as_raw_fd(), slot.as_raw_fd()) }).map(drop)
}

/// An OCI terminal: a pty from the container's /dev/ptmx (its own devpts), whose main
/// side goes to the caller over `socket` (one message: the pty's name as payload, the
/// descriptor in SCM_RIGHTS, as runc sends it), and whose other side becomes standard
/// input, output and error, with the window size `size` (rows, columns) if given.
/// Allocation-free, for the container's first process.
pub fn open_terminal(socket: BorrowedFd, size: Option<(u16, u16)>) -> nix::Result<()> {
    use nix::fcntl::OFlag;
    use std::os::fd::AsFd;
    let main = nix::fcntl::open(
        c"/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer.
    Errno::result(unsafe { libc::ioctl(main.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) })?;
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int through the pointer.
    Errno::result(unsafe { libc::ioctl(main.as_raw_fd(), libc::TIOCGPTN, &mut number) })?;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor we own.
    let peer = Errno::result(unsafe {
        libc::ioctl(
            main.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY,
        )
    })?;
    // SAFETY: the kernel just returned this descriptor and nobody else holds it.
    let peer = unsafe { OwnedFd::from_raw_fd(peer) };
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        set_window_size(peer.as_fd(), &ws)?;
    }
    let mut buf = [0u8; 64];
    let name = path_with_number(&mut buf, b"/dev/pts/", number).ok_or(Errno::ENAMETOOLONG)?;
    send_fd(socket, name.to_bytes(), main.as_fd())?;
    nix::unistd::dup2_stdin(&peer)?;
    nix::unistd::dup2_stdout(&peer)?;
    nix::unistd::dup2_stderr(&peer)
}

/// sendmsg(2) of `payload` with `fd` in SCM_RIGHTS, built on the stack (allocation-free,
/// for the container's first process).
pub fn send_fd(socket: BorrowedFd, payload: &[u8], fd: BorrowedFd) -> nix::Result<()> {
    // room for one cmsghdr and one int, aligned as the kernel wants it
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid value for every field.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as _;
    // SAFETY: msg_control points to a buffer at least CMSG_SPACE(sizeof int) long, so
    // the first header and its data are inside it.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd.as_raw_fd());
    }
    loop {
        // SAFETY: msg and everything it points to live until the call returns.
        let ret = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        match Errno::result(ret) {
            Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_says_what_is_left_and_polls_no_shorter() {
        let now = Deadline::after(Duration::ZERO);
        assert!(now.passed());
        assert_eq!(now.left(), Duration::ZERO);
        // rounded up: a poll never ends before the deadline
        assert_eq!(now.poll_timeout(), PollTimeout::from(1u8));
        let later = Deadline::after(Duration::from_secs(3600));
        assert!(!later.passed());
        assert!(later.left() > Duration::from_secs(3599));
        let ms = i32::from(later.poll_timeout());
        assert!((3_599_000..=3_600_001).contains(&ms), "{ms}");
        // beyond what poll(2) takes: its largest
        let far = Deadline::after(Duration::from_secs(u64::from(u32::MAX)));
        assert_eq!(far.poll_timeout(), PollTimeout::MAX);
    }
}
