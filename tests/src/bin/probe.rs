//! The program the conformance and OCI tests run under a PID 1 shim (ours, tini,
//! dumb-init). Built statically (scripts/test) so that it runs in a busybox bundle too.
//!
//! ```text
//! probe signals        print "ready PID", then the number of every signal received, one
//!                      per line (all of 1-31 but KILL, STOP, CHLD are caught), forever
//! probe orphans N      make N orphans (double fork, both exit at once), then wait up to
//!                      10 s for no zombie to be left in our PID namespace; print
//!                      "zombies K" and exit 0 when K is 0, else 1
//! probe pgroup         ignore SIGUSR1, start a child that does not, print "ready", and
//!                      exit 0 when the child is gone (tini's process-group test)
//! probe tty            print "tty", "controlling" and "foreground", each yes or no, for
//!                      standard input
//! probe sleep          sleep until killed
//! ```

use std::fs;
use std::io::Write;
use std::os::fd::RawFd;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The write end of the self-pipe the signal handler writes to.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; the buffer is one byte on our stack.
    #[allow(unsafe_code)]
    unsafe {
        libc::write(
            PIPE_WRITE.load(Ordering::Relaxed),
            (&byte as *const u8).cast(),
            1,
        )
    };
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[allow(unsafe_code)]
fn signals() -> ! {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    PIPE_WRITE.store(fds[1], Ordering::Relaxed);
    for sig in 1..32 {
        if [libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD].contains(&sig) {
            continue;
        }
        // SAFETY: sigaction is zeroed plain data; the handler only writes to a pipe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
    // SAFETY: a full mask is fine to unblock; the shim under test set ours.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    print_line(&format!("ready {}", std::process::id()));
    loop {
        let mut byte = 0u8;
        // SAFETY: reading one byte into a local.
        let n = unsafe { libc::read(fds[0], (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            print_line(&byte.to_string());
        }
    }
}

/// Zombies in our PID namespace (as our /proc shows it), other than us.
fn zombies() -> usize {
    let me = std::process::id().to_string();
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .filter(|e| e.file_name().to_string_lossy() != me)
                .filter(|e| {
                    fs::read_to_string(e.path().join("stat"))
                        .ok()
                        .and_then(|stat| {
                            stat.rsplit_once(") ")
                                .map(|(_, rest)| rest.starts_with('Z'))
                        })
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

#[allow(unsafe_code)]
fn orphans(n: usize) -> ! {
    for _ in 0..n {
        // SAFETY: single-threaded; the children only fork and _exit.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: as above
                unsafe {
                    libc::fork();
                    libc::_exit(0)
                }
            }
            pid if pid > 0 => {
                // SAFETY: a null status pointer is allowed.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            }
            _ => panic!("fork failed"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = zombies();
    while left > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = zombies();
    }
    print_line(&format!("zombies {left}"));
    std::process::exit(if left == 0 { 0 } else { 1 });
}

#[allow(unsafe_code)]
fn pgroup() -> ! {
    // SAFETY: SIG_IGN installs no handler.
    unsafe { libc::signal(libc::SIGUSR1, libc::SIG_IGN) };
    let me = std::env::current_exe().unwrap();
    let mut child = Command::new(me);
    child.arg("sleep");
    // the child must not inherit our ignoring of SIGUSR1
    // SAFETY: the hook only calls signal(2), which is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut child, || {
            libc::signal(libc::SIGUSR1, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = child.spawn().unwrap();
    print_line("ready");
    let _ = child.wait();
    std::process::exit(0);
}

#[allow(unsafe_code)]
fn tty() -> ! {
    let yes = |b: bool| if b { "yes" } else { "no" };
    // SAFETY: these calls only read process and terminal state.
    let (is_tty, controlling, foreground) = unsafe {
        let is_tty = libc::isatty(0) == 1;
        let fd = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        let controlling = fd >= 0;
        if fd >= 0 {
            libc::close(fd);
        }
        (
            is_tty,
            controlling,
            is_tty && libc::tcgetpgrp(0) == libc::getpgrp(),
        )
    };
    print_line(&format!(
        "tty {} controlling {} foreground {}",
        yes(is_tty),
        yes(controlling),
        yes(foreground)
    ));
    std::process::exit(0);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("signals") => signals(),
        Some("orphans") => orphans(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000)),
        Some("pgroup") => pgroup(),
        Some("tty") => tty(),
        Some("sleep") => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        _ => {
            eprintln!("usage: probe signals|orphans N|pgroup|tty|sleep");
            std::process::exit(2);
        }
    }
}
