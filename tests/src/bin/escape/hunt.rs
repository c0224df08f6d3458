//! `escape hunt SECONDS COUNT`: what a hostile root in a guest does to the processes the host
//! sends into it (the helpers of `cradle exec` and `cradle stop`), to take a descriptor,
//! the memory or the credentials of the host from them.
//!
//! The trap: the guest init's cgroup is where such a helper is born, so the hunter moves
//! the init into a cgroup of its own and freezes it. A helper born there stops before it
//! runs a single instruction; the hunter tries everything on it (as it is, with the
//! host's credentials), then thaws the cgroup and sends SIGSTOP in a loop until one is
//! accepted, which happens the moment the helper's credentials are the guest's, and
//! tries everything again on the stopped helper. Then it lets the helper go on, waits
//! until it has exec'd (or ended), freezes the trap again and waits for the next one,
//! until it has caught COUNT helpers or SECONDS have passed; then it thaws the trap (the
//! init is in it: a halt or reboot request reaches it only then).
//!
//! One line per event, flushed at once (the guest may reboot or halt under us):
//!
//! ```text
//! ready                          the trap is set
//! caught PID                     a helper was born in the trap (frozen)
//! PID STAGE ATTEMPT refused ERRNO
//! PID STAGE ATTEMPT allowed WHAT (STAGE: frozen, stopped)
//! stopped PID                    a SIGSTOP to it was accepted before it exec'd
//! missed PID WHY                 it exec'd or ended before a SIGSTOP was accepted
//! done caught N stopped M
//! ```
//!
//! A descriptor taken from a helper is described by what it reaches: a directory whose
//! `..` climbs to another root than ours (a way out) is "allowed ... climbs to another
//! root", listing what is there.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

const TRAP: &str = "/sys/fs/cgroup/hunt";
/// What the helpers are called (`cradle-shim`, as the launcher names them), as
/// /proc/PID/comm shows it.
const HELPER: &str = "cradle-shim";
/// How long a stop of a thawed helper is tried for.
const STOP_TRIES: Duration = Duration::from_secs(2);

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn write(path: &str, value: &str) {
    if let Err(e) = fs::write(path, value) {
        say(&format!("error writing {value} to {path}: {e}"));
        std::process::exit(1);
    }
}

fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn errno_name(e: i32) -> String {
    match e {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::ESRCH => "ESRCH".into(),
        libc::EBADF => "EBADF".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::ENOENT => "ENOENT".into(),
        other => format!("errno{other}"),
    }
}

/// `(device, inode)` of a directory open on `fd`.
fn identity(fd: i32) -> Option<(u64, u64)> {
    fs::metadata(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// What a descriptor we took reaches: for a directory, climbs `..` as far as it goes and
/// says whether that is our root.
fn describe(fd: i32) -> String {
    let link = fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into());
    let Ok(meta) = fs::metadata(format!("/proc/self/fd/{fd}")) else {
        return link;
    };
    if !meta.is_dir() {
        return link;
    }
    let up = CString::new("..").unwrap();
    let mut here = fd;
    for _ in 0..64 {
        // SAFETY: openat on a descriptor we own, with a valid path.
        let parent = unsafe {
            libc::openat(
                here,
                up.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if parent < 0 {
            break;
        }
        let same = identity(parent) == identity(here);
        if here != fd {
            // SAFETY: a descriptor of ours that we no longer use.
            unsafe { libc::close(here) };
        }
        here = parent;
        if same {
            break;
        }
    }
    let ours = fs::metadata("/").map(|m| (m.dev(), m.ino())).ok();
    let top = identity(here);
    let what = if top == ours {
        format!("{link}, climbs to our own root")
    } else {
        let names: Vec<String> = fs::read_dir(format!("/proc/self/fd/{here}"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .take(12)
            .collect();
        format!("{link}, climbs to another root: {}", names.join(" "))
    };
    if here != fd {
        // SAFETY: a descriptor of ours.
        unsafe { libc::close(here) };
    }
    what
}

/// What an attempt gave: what it took, or the errno.
type Outcome = Result<String, i32>;

fn report(pid: i32, stage: &str, attempt: &str, outcome: Outcome) {
    match outcome {
        Ok(what) => say(&format!("{pid} {stage} {attempt} allowed {what}")),
        Err(e) if [libc::EPERM, libc::EACCES].contains(&e) => say(&format!(
            "{pid} {stage} {attempt} refused {}",
            errno_name(e)
        )),
        // the process went away, or the attempt got past the permission check and
        // failed on its arguments
        Err(libc::ESRCH) => say(&format!("{pid} {stage} {attempt} gone ESRCH")),
        Err(e) => say(&format!(
            "{pid} {stage} {attempt} allowed past the permission check ({})",
            errno_name(e)
        )),
    }
}

fn pidfd_open(pid: i32) -> Result<i32, i32> {
    // SAFETY: pidfd_open takes integers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 { Err(errno()) } else { Ok(fd as i32) }
}

/// pidfd_getfd of every descriptor number up to 63: each one taken, or the refusal.
fn steal_descriptors(pid: i32) -> Result<String, i32> {
    let pidfd = pidfd_open(pid)?;
    let mut taken = Vec::new();
    let mut refusal = libc::EBADF;
    for n in 0..64 {
        // SAFETY: pidfd_getfd takes integers.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, n, 0) };
        if fd >= 0 {
            taken.push(format!("fd {n} ({})", describe(fd as i32)));
            // SAFETY: the descriptor we were just given.
            unsafe { libc::close(fd as i32) };
        } else if errno() != libc::EBADF {
            refusal = errno();
        }
    }
    // SAFETY: our pidfd.
    unsafe { libc::close(pidfd) };
    if taken.is_empty() {
        Err(refusal)
    } else {
        Ok(taken.join("; "))
    }
}

fn ptrace(request: libc::c_uint, pid: i32) -> Result<String, i32> {
    // SAFETY: a request on another process, no memory of ours passed.
    let ret = unsafe { libc::ptrace(request, pid, 0, 0) };
    if ret < 0 {
        return Err(errno());
    }
    // SAFETY: detach what we just attached to; a stopped tracee stays stopped.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
    Ok("attached".into())
}

fn open_proc(pid: i32, what: &str, flags: i32) -> Result<String, i32> {
    let path = CString::new(format!("/proc/{pid}/{what}")).unwrap();
    // SAFETY: a valid path.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    let what = describe(fd);
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    Ok(format!("opened: {what}"))
}

/// process_vm_readv or _writev of one byte at an address no process maps: EFAULT once past
/// the permission check, and no harm either way.
fn process_vm(pid: i32, write: bool) -> Result<String, i32> {
    let mut byte = 0u8;
    let local = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let remote = libc::iovec {
        iov_base: 8 as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: one local iovec of our own byte; the remote one is checked by the kernel.
    let n = unsafe {
        if write {
            libc::process_vm_writev(pid, &local, 1, &remote, 1, 0)
        } else {
            libc::process_vm_readv(pid, &local, 1, &remote, 1, 0)
        }
    };
    if n < 0 {
        Err(errno())
    } else {
        Ok(format!("{n} byte"))
    }
}

/// Every way in, on `pid` as it is now (also `escape reach PID`).
pub fn try_everything(pid: i32, stage: &str) {
    let attempts: [(&str, Outcome); 5] = [
        ("pidfd_getfd", steal_descriptors(pid)),
        ("ptrace-seize", ptrace(libc::PTRACE_SEIZE, pid)),
        ("ptrace-attach", ptrace(libc::PTRACE_ATTACH, pid)),
        ("process_vm_readv", process_vm(pid, false)),
        ("process_vm_writev", process_vm(pid, true)),
    ];
    for (attempt, outcome) in attempts {
        report(pid, stage, attempt, outcome);
    }
    try_through_proc(pid, stage);
}

/// The ways in through /proc/PID alone: all there is to a process of a PID namespace
/// above ours whose /proc is mounted here (also `escape reach-proc PID`).
pub fn try_through_proc(pid: i32, stage: &str) {
    let directory = libc::O_RDONLY | libc::O_DIRECTORY;
    let files: [(&str, i32); 6] = [
        ("mem", libc::O_RDWR),
        ("environ", libc::O_RDONLY),
        ("fd", directory),
        ("root", directory),
        ("cwd", directory),
        ("exe", libc::O_RDONLY),
    ];
    for (file, flags) in files {
        report(
            pid,
            stage,
            &format!("proc-{file}"),
            open_proc(pid, file, flags),
        );
    }
    for n in 0..8 {
        let what = format!("fd/{n}");
        match open_proc(pid, &what, libc::O_RDONLY) {
            Err(libc::ENOENT) => {}
            outcome => report(pid, stage, &format!("proc-{what}"), outcome),
        }
    }
}

/// Thaws the trap and sends SIGSTOP until it is accepted while the helper is still the
/// helper; true when it stopped before it exec'd.
fn stop_on_the_way(pid: i32) -> bool {
    // a helper that is the guest's from birth takes the signal while still frozen, and
    // stops before its first instruction once thawed
    // SAFETY: kill takes integers.
    let mut sent = unsafe { libc::kill(pid, libc::SIGSTOP) } == 0;
    write(&format!("{TRAP}/cgroup.freeze"), "0");
    let until = Instant::now() + STOP_TRIES;
    let mut tries: u64 = 0;
    while !sent {
        // SAFETY: kill takes integers.
        sent = unsafe { libc::kill(pid, libc::SIGSTOP) } == 0;
        if sent {
            break;
        }
        match errno() {
            libc::ESRCH => {
                say(&format!("missed {pid} it ended"));
                return false;
            }
            _ if Instant::now() > until => {
                say(&format!(
                    "missed {pid} every SIGSTOP refused for {STOP_TRIES:?}"
                ));
                return false;
            }
            _ => {}
        }
        tries += 1;
        if tries % 4096 == 0 && comm(pid).as_deref() != Some(HELPER) {
            say(&format!(
                "missed {pid} it exec'd (SIGSTOP refused until then)"
            ));
            return false;
        }
    }
    // stopped at its next return to user space
    let until = Instant::now() + STOP_TRIES;
    while !matches!(state(pid), Some('T' | 't') | None) && Instant::now() < until {
        std::thread::yield_now();
    }
    if comm(pid).as_deref() != Some(HELPER) {
        say(&format!("missed {pid} it exec'd before the stop"));
        // SAFETY: kill takes integers.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        return false;
    }
    say(&format!("stopped {pid}"));
    true
}

/// Waits (a while) until the helper we let go has ended (its command too), so that the
/// trap is not frozen under it again.
fn let_go(pid: i32) {
    // SAFETY: kill takes integers.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let until = Instant::now() + STOP_TRIES;
    while !matches!(state(pid), Some('Z') | None) && Instant::now() < until {
        std::thread::sleep(Duration::from_micros(200));
    }
}

pub fn hunt(seconds: f64, count: u32) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    if let Err(e) = fs::create_dir(TRAP) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            say(&format!("error making {TRAP}: {e}"));
            std::process::exit(1);
        }
    }
    // we were born in the init's cgroup, which may be the trap already
    write("/sys/fs/cgroup/cgroup.procs", "0");
    write(&format!("{TRAP}/cgroup.freeze"), "1");
    write(&format!("{TRAP}/cgroup.procs"), "1");
    say("ready");
    let mut seen = HashSet::new();
    let (mut caught, mut stopped) = (0, 0);
    while Instant::now() < deadline && caught < count {
        let procs = fs::read_to_string(format!("{TRAP}/cgroup.procs")).unwrap_or_default();
        let mut found = false;
        for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
            if pid <= 1 || !seen.insert(pid) || comm(pid).as_deref() != Some(HELPER) {
                continue;
            }
            found = true;
            caught += 1;
            say(&format!("caught {pid}"));
            try_everything(pid, "frozen");
            if stop_on_the_way(pid) {
                stopped += 1;
                try_everything(pid, "stopped");
            }
            let_go(pid);
            if caught < count {
                write(&format!("{TRAP}/cgroup.freeze"), "1");
            }
        }
        if !found {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    write(&format!("{TRAP}/cgroup.freeze"), "0");
    say(&format!("done caught {caught} stopped {stopped}"));
}
