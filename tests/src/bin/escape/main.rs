//! What a hostile root inside a guest would try, for the containment tests. Built
//! statically (scripts/test) so that it runs in any guest; the tests copy it into the root
//! and run it with `cradle exec`.
//!
//! ```text
//! escape attempts [NAME]...
//!                   try each way out (or those named), print one line per attempt:
//!                   "NAME refused ERRNO-NAME" or "NAME allowed WHAT"
//! escape scan       print every process of our PID namespace whose executable or one of
//!                   whose descriptors is something of the host's: "PID exe PATH" or
//!                   "PID fd N PATH" (nothing at all when there is none)
//! escape hunt SECS [COUNT]
//!                   trap the helpers `cradle exec` and `cradle stop` send into the guest
//!                   and try to take something of the host from them (see hunt.rs)
//! escape reach PID  try every way of taking PID's descriptors, memory or credentials,
//!                   one line each (as hunt does)
//! escape reach-proc PID
//!                   the same through /proc/PID alone (a process of another PID namespace)
//! escape deep N LEN N nested cgroups of LEN-byte names below /sys/fs/cgroup (a path
//!                   past PATH_MAX) and a child that sleeps in the deepest
//! escape euid       print our effective uid (run set-user-ID to see it change)
//! escape spin SECS  keep a CPU busy for SECS seconds of wall time, then print the CPU
//!                   seconds we got (getrusage), as "cpu SECONDS"
//! escape hog MIB    allocate MIB MiB and touch every page; print "hogged MIB" if we live
//! escape storm [N]  fork children that sleep for ever until fork is refused, and keep
//!                   trying for ever (a fork storm that holds every slot it gets); with N,
//!                   try N forks, print "forked K of N", end the children and exit
//! ```
//!
//! An attempt is refused when the kernel answers EPERM or EACCES (or EROFS for a write to
//! a read-only mount, or ENOSYS for a call the filter makes look absent, the keyring): each one passes arguments that a call that *got past* its
//! permission check would fail on differently (EINVAL, EFAULT, ENOENT, EBADF), or does no
//! harm when it succeeds (a sysctl is written back with the value it has).
#![allow(unsafe_code)]

mod hunt;

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn errno_name(e: i32) -> String {
    match e {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::EROFS => "EROFS".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EBADF => "EBADF".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EBUSY => "EBUSY".into(),
        STAYED_IN_ROOT => "stayed-in-the-root".into(),
        other => format!("errno{other}"),
    }
}

/// Not an errno: what [`chroot_dotdot`] answers when `..` stayed inside the root.
const STAYED_IN_ROOT: i32 = -1;

/// The answers of a permission check that said no; any other error came after it.
const REFUSALS: [i32; 4] = [libc::EPERM, libc::EACCES, libc::EROFS, STAYED_IN_ROOT];

/// The attempts the filter answers ENOSYS, as if the kernel had no such call (the
/// keyring): there ENOSYS is the refusal. Elsewhere it is a kernel built without the
/// call, which says nothing of the container.
const REFUSED_AS_ABSENT: [&str; 1] = ["keyctl"];

fn report(name: &str, outcome: Result<String, i32>) {
    let line = match outcome {
        Ok(what) => format!("{name} allowed {what}"),
        Err(e) if REFUSALS.contains(&e) => format!("{name} refused {}", errno_name(e)),
        Err(libc::ENOSYS) if REFUSED_AS_ABSENT.contains(&name) => {
            format!("{name} refused ENOSYS")
        }
        Err(e) => format!(
            "{name} allowed past the permission check ({})",
            errno_name(e)
        ),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// A raw system call with up to six arguments: Ok(return) or Err(errno).
fn syscall(nr: libc::c_long, args: [usize; 6]) -> Result<String, i32> {
    // SAFETY: every call below passes null, zeroed or small valid buffers; the kernel
    // checks its arguments and fails on bad ones.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if ret == -1 {
        Err(errno())
    } else {
        Ok(format!("returned {ret}"))
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A device of the host's made in a fresh tmpfs and opened: `kind` is S_IFCHR or S_IFBLK.
fn device_node(kind: libc::mode_t, major: u32, minor: u32) -> Result<String, i32> {
    let dir = c("/tmp/escape-node");
    // SAFETY: NUL-terminated paths; mkdir, mount, mknod and open take no other memory.
    unsafe {
        libc::mkdir(dir.as_ptr(), 0o700);
        if libc::mount(
            c("t").as_ptr(),
            dir.as_ptr(),
            c("tmpfs").as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            return Err(errno());
        }
        let node = c("/tmp/escape-node/node");
        let made = libc::mknod(node.as_ptr(), kind | 0o600, libc::makedev(major, minor));
        let outcome = if made != 0 {
            Err(errno())
        } else {
            let fd = libc::open(node.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK);
            if fd < 0 {
                Err(errno())
            } else {
                libc::close(fd);
                Ok(format!("opened device {major}:{minor}"))
            }
        };
        libc::umount2(dir.as_ptr(), libc::MNT_DETACH);
        libc::rmdir(dir.as_ptr());
        outcome
    }
}

fn remount_sys_rw() -> Result<String, i32> {
    // SAFETY: NUL-terminated path; no data.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            c("/sys").as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if ret == 0 {
        Ok("/sys is writable now".into())
    } else {
        Err(errno())
    }
}

/// The superblock of the file system the root is on, reconfigured (as Debian's
/// checkroot.sh does at boot, and umountroot, read-only, at halt): the host's file system.
/// Asked with the flags it has (read-write), so that nothing changes if it is allowed.
fn remount_root() -> Result<String, i32> {
    // SAFETY: NUL-terminated path; no data.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            c("/").as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT,
            std::ptr::null(),
        )
    };
    if ret == 0 {
        Ok("the root's superblock was reconfigured".into())
    } else {
        Err(errno())
    }
}

/// Opens `path` for writing and writes back what it holds.
fn write_back(path: &str) -> Result<String, i32> {
    let mut value = String::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut value))
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map(|()| format!("wrote {path}"))
        .map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// /proc/sys unmounted (its read-only bind, and the writable one of /proc/sys/net on it)
/// and then a host-wide knob written.
fn host_sysctl_after_umount() -> Result<String, i32> {
    // SAFETY: NUL-terminated paths.
    unsafe {
        libc::umount2(c("/proc/sys/net").as_ptr(), libc::MNT_DETACH);
        libc::umount2(c("/proc/sys").as_ptr(), libc::MNT_DETACH);
    }
    write_back("/proc/sys/vm/overcommit_ratio")
}

fn kallsyms() -> Result<String, i32> {
    let text = fs::read_to_string("/proc/kallsyms").map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let first = text.lines().next().unwrap_or_default();
    if first.starts_with("0000000000000000") || first.is_empty() {
        Err(libc::EPERM)
    } else {
        Ok(format!("shows {first}"))
    }
}

/// The classic way out of a chroot: chroot into a directory below the root, keeping the
/// working directory at the root, then `..` as far as it goes. Where the root's mount sits
/// on a directory of another file system (a root moved over a plain directory instead of
/// pivoted into), that climbs out into it. In a child, so that our own root stays.
fn chroot_dotdot() -> Result<String, i32> {
    use std::os::unix::fs::MetadataExt;
    let root = fs::metadata("/").map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let below = "/tmp/.escape-chroot";
    fs::create_dir_all(below).map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let dir = c(below);
    // SAFETY: the probe is single-threaded; the child makes system calls and exits.
    match unsafe { libc::fork() } {
        -1 => Err(errno()),
        0 => {
            // SAFETY: NUL-terminated paths; the child only changes its own root.
            let code = unsafe {
                if libc::chroot(dir.as_ptr()) != 0 {
                    errno()
                } else {
                    for _ in 0..64 {
                        libc::chdir(c"..".as_ptr());
                    }
                    let mut st: libc::stat = std::mem::zeroed();
                    if libc::stat(c".".as_ptr(), &mut st) != 0 {
                        errno()
                    } else if (st.st_dev as u64, st.st_ino as u64) == (root.dev(), root.ino()) {
                        0
                    } else {
                        255
                    }
                }
            };
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(code) }
        }
        child => {
            let mut status = 0;
            // SAFETY: status is writable; child is ours.
            unsafe { libc::waitpid(child, &mut status, 0) };
            let _ = fs::remove_dir(below);
            match libc::WEXITSTATUS(status) {
                0 => Err(STAYED_IN_ROOT),
                255 => Ok("climbed out of the root".into()),
                errno => Err(errno),
            }
        }
    }
}

/// One way out: Ok(what it got) or Err(errno).
type Attempt<'a> = Box<dyn Fn() -> Result<String, i32> + 'a>;

/// Every attempt, by name. Each is harmless when it is allowed: bad arguments, or a value
/// written back; but `adjtimex`, `acct`, `iopl` and `ioperm` do change something of the
/// host's when nothing stops them, so a test that expects them allowed must not ask for
/// them.
fn attempts(only: &[String]) {
    let zeros = [0u8; 256];
    let z = zeros.as_ptr() as usize;
    let empty = c("");
    let e = empty.as_ptr() as usize;
    let nowhere = c("/nonexistent-swap");
    let w = nowhere.as_ptr() as usize;
    // SAFETY: timex is plain data; all-zero is a valid value.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    // ADJ_OFFSET with offset 0: sets the clock's offset, needs CAP_SYS_TIME
    timex.modes = libc::ADJ_OFFSET;
    let t = &mut timex as *mut libc::timex as usize;
    let table: Vec<(&str, Attempt)> = vec![
        // the kernel log, and the first loop device
        ("mknod-kmsg", Box::new(|| device_node(libc::S_IFCHR, 1, 11))),
        ("mknod-block", Box::new(|| device_node(libc::S_IFBLK, 7, 0))),
        ("remount-sys-rw", Box::new(remount_sys_rw)),
        ("remount-root", Box::new(remount_root)),
        (
            "write-sys-kernel",
            Box::new(|| write_back("/sys/kernel/mm/transparent_hugepage/enabled")),
        ),
        ("host-sysctl", Box::new(host_sysctl_after_umount)),
        ("kallsyms", Box::new(kallsyms)),
        ("chroot-dotdot", Box::new(chroot_dotdot)),
        (
            "init_module",
            Box::new(move || syscall(libc::SYS_init_module, [0, 0, e, 0, 0, 0])),
        ),
        (
            "finit_module",
            Box::new(move || syscall(libc::SYS_finit_module, [usize::MAX, e, 0, 0, 0, 0])),
        ),
        (
            "delete_module",
            Box::new(move || syscall(libc::SYS_delete_module, [e, 0, 0, 0, 0, 0])),
        ),
        // flags no kernel knows: EINVAL past the permission check
        (
            "kexec_load",
            Box::new(|| syscall(libc::SYS_kexec_load, [0, 0, 0, 0x7fff_0000, 0, 0])),
        ),
        (
            "open_by_handle_at",
            Box::new(move || syscall(libc::SYS_open_by_handle_at, [usize::MAX, z, 0, 0, 0, 0])),
        ),
        // BPF_MAP_CREATE with an all-zero attribute: EINVAL past the permission check
        (
            "bpf",
            Box::new(move || syscall(libc::SYS_bpf, [0, z, 64, 0, 0, 0])),
        ),
        (
            "swapon",
            Box::new(move || syscall(libc::SYS_swapon, [w, 0, 0, 0, 0, 0])),
        ),
        (
            "swapoff",
            Box::new(move || syscall(libc::SYS_swapoff, [w, 0, 0, 0, 0, 0])),
        ),
        // an all-zero perf_event_attr with a bad cpu (-2): EINVAL if allowed
        (
            "perf_event_open",
            Box::new(move || {
                syscall(
                    libc::SYS_perf_event_open,
                    [z, 0, usize::MAX - 1, usize::MAX, 0, 0],
                )
            }),
        ),
        #[cfg(target_arch = "x86_64")]
        (
            "iopl",
            Box::new(|| syscall(libc::SYS_iopl, [3, 0, 0, 0, 0, 0])),
        ),
        #[cfg(target_arch = "x86_64")]
        (
            "ioperm",
            Box::new(|| syscall(libc::SYS_ioperm, [0x80, 1, 1, 0, 0, 0])),
        ),
        // SYSLOG_ACTION_SIZE_BUFFER (10) needs CAP_SYSLOG (or CAP_SYS_ADMIN) like a read
        (
            "syslog",
            Box::new(|| syscall(libc::SYS_syslog, [10, 0, 0, 0, 0, 0])),
        ),
        // KEYCTL_GET_KEYRING_ID of the session keyring
        (
            "keyctl",
            Box::new(|| syscall(libc::SYS_keyctl, [0, (-3isize) as usize, 0, 0, 0, 0])),
        ),
        (
            "adjtimex",
            Box::new(move || syscall(libc::SYS_adjtimex, [t, 0, 0, 0, 0, 0])),
        ),
        (
            "acct",
            Box::new(|| syscall(libc::SYS_acct, [0, 0, 0, 0, 0, 0])),
        ),
    ];
    for (name, attempt) in &table {
        if only.is_empty() || only.iter().any(|o| o == name) {
            report(name, attempt());
        }
    }
}

/// What `PID`'s link `link` (exe, fd/N) points to, when it is the host's: a path that
/// names cradle, or a cgroup file of the host.
fn hostly(target: &str) -> bool {
    target.contains("cradle") || target.contains("cgroup.procs")
}

fn scan() {
    let me = std::process::id().to_string();
    let mut out = std::io::stdout().lock();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        if let Ok(exe) = fs::read_link(entry.path().join("exe")) {
            let exe = exe.to_string_lossy().into_owned();
            if hostly(&exe) {
                let _ = writeln!(out, "{pid} exe {exe}");
            }
        }
        for fd in fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = fs::read_link(fd.path()) {
                let target = target.to_string_lossy().into_owned();
                if hostly(&target) {
                    let _ = writeln!(
                        out,
                        "{pid} fd {} {target}",
                        fd.file_name().to_string_lossy()
                    );
                }
            }
        }
    }
}

/// CPU seconds this process has used, user and system.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn spin(seconds: f64) {
    let start = std::time::Instant::now();
    let mut x: u64 = 0;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    println!("cpu {:.3}", cpu_seconds());
}

fn hog(mib: usize) {
    let mut memory: Vec<u8> = Vec::with_capacity(mib << 20);
    // one write per page makes it resident
    for _ in 0..(mib << 20) / 4096 {
        memory.extend_from_slice(&[1u8; 4096]);
    }
    println!("hogged {}", std::hint::black_box(memory).len() >> 20);
}

fn storm(tries: Option<u32>) {
    let mut children = Vec::new();
    let mut tried = 0;
    while tries.is_none_or(|n| tried < n) {
        tried += 1;
        // SAFETY: the child only calls pause, which is async-signal-safe.
        match unsafe { libc::fork() } {
            0 => loop {
                // SAFETY: pause has no arguments.
                unsafe { libc::pause() };
            },
            -1 => std::thread::sleep(std::time::Duration::from_millis(10)),
            child => children.push(child),
        }
    }
    println!("forked {} of {tried}", children.len());
    for child in children {
        // SAFETY: kill and waitpid on our own children.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
    }
}

/// `escape deep N LEN`: N nested cgroups of LEN-byte names below /sys/fs/cgroup, made
/// by directory descriptors (the path grows past PATH_MAX), and a child of ours that
/// moves itself into the deepest and sleeps for ever; prints "deep N" once it is there.
fn deep(levels: usize, len: usize) {
    let name = CString::new("x".repeat(len)).unwrap();
    let procs = c("cgroup.procs");
    // SAFETY: open of a literal path.
    let mut dir = unsafe { libc::open(c("/sys/fs/cgroup").as_ptr(), libc::O_DIRECTORY) };
    for level in 0..levels {
        // SAFETY: mkdirat and openat on our descriptor, with a NUL-terminated name.
        let next = unsafe {
            libc::mkdirat(dir, name.as_ptr(), 0o755);
            libc::openat(dir, name.as_ptr(), libc::O_DIRECTORY)
        };
        if next < 0 {
            eprintln!("level {level}: errno {}", errno());
            std::process::exit(1);
        }
        dir = next;
    }
    let (read_end, write_end) = {
        let mut fds = [0; 2];
        // SAFETY: pipe fills the array.
        unsafe { libc::pipe(fds.as_mut_ptr()) };
        (fds[0], fds[1])
    };
    // SAFETY: the child only makes system calls, then pauses.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain system calls on our descriptors.
            unsafe {
                let fd = libc::openat(dir, procs.as_ptr(), libc::O_WRONLY);
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::write(write_end, [ok as u8].as_ptr().cast(), 1);
                for fd in 0..3 {
                    libc::close(fd);
                }
                loop {
                    libc::pause();
                }
            }
        }
        -1 => std::process::exit(1),
        _ => {
            let mut ok = [0u8];
            // SAFETY: one byte into our buffer.
            unsafe { libc::read(read_end, ok.as_mut_ptr().cast(), 1) };
            if ok[0] != 1 {
                eprintln!("could not move into the deepest cgroup");
                std::process::exit(1);
            }
            println!("deep {levels}");
        }
    }
}

fn main() {
    let number = || std::env::args().nth(2).and_then(|n| n.parse().ok());
    match std::env::args().nth(1).as_deref() {
        Some("spin") => spin(number().unwrap_or(1.0)),
        Some("hog") => hog(number().unwrap_or(64.0) as usize),
        Some("storm") => storm(std::env::args().nth(2).and_then(|n| n.parse().ok())),
        Some("attempts") => attempts(&std::env::args().skip(2).collect::<Vec<_>>()),
        Some("scan") => scan(),
        Some("deep") => deep(
            number().unwrap_or(20.0) as usize,
            std::env::args()
                .nth(3)
                .and_then(|n| n.parse().ok())
                .unwrap_or(250),
        ),
        Some("reach") => hunt::try_everything(number().unwrap_or(1.0) as i32, "as-is"),
        Some("reach-proc") => hunt::try_through_proc(number().unwrap_or(1.0) as i32, "as-is"),
        Some("hunt") => hunt::hunt(
            number().unwrap_or(60.0),
            std::env::args()
                .nth(3)
                .and_then(|n| n.parse().ok())
                .unwrap_or(u32::MAX),
        ),
        // SAFETY: geteuid has no preconditions.
        Some("euid") => println!("{}", unsafe { libc::geteuid() }),
        _ => {
            eprintln!(
                "usage: escape attempts|scan|hunt SECS [COUNT]|reach[-proc] PID|deep N LEN|euid|spin SECS|hog MIB|storm"
            );
            std::process::exit(2);
        }
    }
}
