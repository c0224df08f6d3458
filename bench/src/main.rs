//! Workloads and timers for `scripts/bench`, where a shell and hyperfine cannot do the job:
//!
//! ```text
//! benchtool floor ROOT CMD...   the least a container can do: clone with new mount, PID,
//!                               UTS, IPC and network namespaces, make / private, chroot
//!                               into ROOT, exec CMD, wait. Exits with CMD's status
//!                               (128+N for signal N). The floor cradle is compared with.
//! benchtool zgen N              make N orphans (double fork; both exit at once), then wait
//!                               until they are gone: as PID 1 by reaping them itself (the
//!                               floor), otherwise by checking kill(-1, 0) every 50 µs
//! benchtool ready               write one byte to fd 3 (when open), then wait for a signal
//! benchtool siglat ROUNDS ns|plain CMD...
//!                               ROUNDS times: start CMD (as PID 1 of a new PID namespace
//!                               with ns) with a pipe on fd 3, wait for its byte, send it
//!                               SIGTERM and time until waitpid returns; print every sample
//!                               in µs, one per line, then "ended: HOW" for the last round
//! benchtool time RUNS WARMUP SAMPLES_DIR LABEL=COMMAND...
//!                               time every COMMAND (split on spaces, run without a shell,
//!                               output discarded) RUNS times after WARMUP rounds,
//!                               interleaved: one run of each per round, starting with a
//!                               different one each round, so drift hits them all alike.
//!                               Prints "LABEL median p25 p75 runs failures" (ms) per
//!                               command and writes every sample to SAMPLES_DIR/LABEL
//! benchtool sink ADDR PORT      listen on ADDR:PORT, accept one TCP connection, read it
//!                               to its end and print "MBIT BYTES": Mbit/s from accept to
//!                               end of file, and the bytes read; gives up after 120 s
//! ```
#![allow(unsafe_code)]

use std::ffi::CString;

use cradle_common::outcome::Status;
use std::time::Instant;

fn cstrings(words: &[String]) -> Vec<CString> {
    words
        .iter()
        .map(|w| CString::new(w.as_bytes()).expect("no NUL in arguments"))
        .collect()
}

fn argv_pointers(words: &[CString]) -> Vec<*const libc::c_char> {
    words
        .iter()
        .map(|w| w.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

/// fork(2) with extra clone flags, by the raw system call.
fn clone_fork(flags: libc::c_int) -> libc::pid_t {
    // SAFETY: a null stack makes clone behave as fork; this tool is single-threaded.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    assert!(pid >= 0, "clone: {}", std::io::Error::last_os_error());
    pid as libc::pid_t
}

/// How `pid` ended (it is waited for without WUNTRACED, so it did end).
fn wait_status(pid: libc::pid_t) -> Status {
    let mut status = 0;
    // SAFETY: status is writable.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINTR)
        );
    }
    Status::from_raw(status).expect("waitpid reports only an end here")
}

fn describe(status: Status) -> String {
    match status {
        Status::Exited(code) => format!("exited {code}"),
        Status::Signaled(sig) => format!("killed by signal {sig}"),
    }
}

fn floor(root: &str, cmd: &[String]) -> ! {
    let root = CString::new(root).unwrap();
    let argv = cstrings(cmd);
    let ptrs = argv_pointers(&argv);
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET;
    let pid = clone_fork(flags);
    if pid == 0 {
        // SAFETY: plain system calls on strings prepared before the fork.
        unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            );
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                libc::_exit(126);
            }
            libc::execv(ptrs[0], ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    std::process::exit(wait_status(pid).shell_code().into());
}

fn zgen(n: usize) -> ! {
    for _ in 0..n {
        let pid = clone_fork(0);
        if pid == 0 {
            clone_fork(0);
            // SAFETY: both the middle child and the grandchild exit at once.
            unsafe { libc::_exit(0) };
        }
        wait_status(pid);
    }
    // SAFETY: getpid, wait and kill have no memory effects.
    unsafe {
        if libc::getpid() == 1 {
            while libc::wait(std::ptr::null_mut()) > 0 || *libc::__errno_location() == libc::EINTR {
            }
        } else {
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 50_000,
            };
            while libc::kill(-1, 0) == 0 || *libc::__errno_location() != libc::ESRCH {
                libc::nanosleep(&pause, std::ptr::null_mut());
            }
        }
    }
    std::process::exit(0);
}

fn ready() -> ! {
    // SAFETY: plain system calls on a local byte.
    unsafe {
        if libc::fcntl(3, libc::F_GETFD) >= 0 {
            libc::write(3, b"x".as_ptr().cast(), 1);
            libc::close(3);
        }
        loop {
            libc::pause();
        }
    }
}

fn siglat(rounds: usize, ns: bool, cmd: &[String]) -> ! {
    let argv = cstrings(cmd);
    let ptrs = argv_pointers(&argv);
    let mut last = String::new();
    for _ in 0..rounds {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let pid = clone_fork(if ns { libc::CLONE_NEWPID } else { 0 });
        if pid == 0 {
            // SAFETY: plain system calls, then exec.
            unsafe {
                libc::close(fds[0]);
                if fds[1] != 3 {
                    libc::dup2(fds[1], 3);
                    libc::close(fds[1]);
                }
                libc::execvp(ptrs[0], ptrs.as_ptr());
                libc::_exit(127);
            }
        }
        let mut byte = 0u8;
        // SAFETY: the parent reads one byte into a local, then closes its ends.
        unsafe {
            libc::close(fds[1]);
            libc::read(fds[0], (&mut byte as *mut u8).cast(), 1);
            libc::close(fds[0]);
        }
        let start = Instant::now();
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = wait_status(pid);
        println!("{:.1}", start.elapsed().as_secs_f64() * 1e6);
        last = describe(status);
    }
    println!("ended: {last}");
    std::process::exit(0);
}

/// Runs `command` once, output discarded; returns the wall time and whether it succeeded.
fn time_once(command: &[&str]) -> (f64, bool) {
    let start = Instant::now();
    let status = std::process::Command::new(command[0])
        .args(&command[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let elapsed = start.elapsed().as_secs_f64() * 1e3;
    (elapsed, status.is_ok_and(|s| s.success()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn time(runs: usize, warmup: usize, samples_dir: &str, specs: &[String]) -> ! {
    let commands: Vec<(&str, Vec<&str>)> = specs
        .iter()
        .map(|spec| {
            let (label, command) = spec.split_once('=').expect("LABEL=COMMAND");
            (label, command.split_whitespace().collect())
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(runs); commands.len()];
    let mut failures = vec![0usize; commands.len()];
    for round in 0..warmup + runs {
        for k in 0..commands.len() {
            let i = (round + k) % commands.len();
            let (elapsed, ok) = time_once(&commands[i].1);
            if round >= warmup {
                samples[i].push(elapsed);
                failures[i] += usize::from(!ok);
            }
        }
    }
    for (i, (label, _)) in commands.iter().enumerate() {
        let text: String = samples[i].iter().map(|s| format!("{s:.4}\n")).collect();
        let _ = std::fs::write(format!("{samples_dir}/{label}"), text);
        let mut sorted = samples[i].clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{label} {:.4} {:.4} {:.4} {} {}",
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.25),
            percentile(&sorted, 0.75),
            sorted.len(),
            failures[i]
        );
    }
    std::process::exit(0);
}

fn sink(addr: &str, port: &str) -> ! {
    use std::io::Read;
    // SAFETY: alarm has no memory effects; SIGALRM's default action ends the process.
    unsafe { libc::alarm(120) };
    let listener = std::net::TcpListener::bind(format!("{addr}:{port}"))
        .unwrap_or_else(|e| panic!("bind {addr}:{port}: {e}"));
    let (mut conn, _) = listener.accept().expect("accept");
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{:.0} {total}", total as f64 * 8.0 / secs / 1e6);
    std::process::exit(0);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!(
            "usage: benchtool floor ROOT CMD... | zgen N | ready | siglat ROUNDS ns|plain CMD... | time RUNS WARMUP DIR LABEL=CMD... | sink ADDR PORT"
        );
        std::process::exit(2)
    };
    match args.first().map(String::as_str) {
        Some("floor") if args.len() >= 3 => floor(&args[1], &args[2..]),
        Some("zgen") => zgen(
            args.get(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| usage()),
        ),
        Some("ready") => ready(),
        Some("siglat") if args.len() >= 4 => {
            let rounds = args[1].parse().unwrap_or_else(|_| usage());
            siglat(rounds, args[2] == "ns", &args[3..])
        }
        Some("time") if args.len() >= 5 => {
            let runs = args[1].parse().unwrap_or_else(|_| usage());
            let warmup = args[2].parse().unwrap_or_else(|_| usage());
            time(runs, warmup, &args[3], &args[4..])
        }
        Some("sink") if args.len() == 3 => sink(&args[1], &args[2]),
        _ => usage(),
    }
}
