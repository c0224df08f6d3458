//! A guest init for the tests. It records how it was started in /testinit/ (its pid, its
//! argv and its environment, NUL-separated as in /proc, and the descriptors it inherited,
//! one number per line), then does what the first line of /etc/testinit says:
//!
//! - `busybox` (also when the file is missing): exec busybox init with the same argv and
//!   environment, so the guest boots as a busybox system would;
//! - `ignore-signals`: ignore every signal it can and stay up, reaping orphans (an init
//!   that will not take halt requests);
//! - `exit N`: exit with N (an init that ends by itself).
//!
//! Built statically (scripts/test) so it runs in any guest.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

fn nul_joined<I: IntoIterator<Item = OsString>>(words: I) -> Vec<u8> {
    let mut out = Vec::new();
    for word in words {
        out.extend_from_slice(word.as_bytes());
        out.push(0);
    }
    out
}

/// The descriptors open in this process, but the one that lists them.
fn open_fds() -> std::io::Result<String> {
    let mut fds: Vec<u32> = Vec::new();
    for entry in fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let target = fs::read_link(entry.path()).unwrap_or_default();
        if !target.to_string_lossy().ends_with("/fd") {
            fds.extend(
                entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok()),
            );
        }
    }
    fds.sort();
    Ok(fds.iter().map(|fd| format!("{fd}\n")).collect())
}

fn record() -> std::io::Result<()> {
    let fds = open_fds()?;
    fs::create_dir_all("/testinit")?;
    fs::write("/testinit/fds", fds)?;
    fs::write("/testinit/pid", std::process::id().to_string())?;
    fs::write("/testinit/argv", nul_joined(std::env::args_os()))?;
    let env = std::env::vars_os().map(|(k, v)| {
        let mut var = k;
        var.push("=");
        var.push(v);
        var
    });
    fs::write("/testinit/environ", nul_joined(env))
}

fn ignore_signals_forever() -> ! {
    for sig in 1..libc::SIGRTMAX() {
        // SAFETY: SIG_IGN installs no handler; invalid numbers (SIGKILL, SIGSTOP) just fail.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(sig, libc::SIG_IGN)
        };
    }
    loop {
        // reap whatever is orphaned to us; sleep when there is nothing
        #[allow(unsafe_code)]
        // SAFETY: a null status pointer is allowed.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) };
        if pid < 0 {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

fn main() {
    if let Err(e) = record() {
        eprintln!("testinit: recording: {e}");
    }
    let mode = fs::read_to_string("/etc/testinit").unwrap_or_default();
    let mut words = mode.split_whitespace();
    match words.next().unwrap_or("busybox") {
        "ignore-signals" => ignore_signals_forever(),
        "exit" => std::process::exit(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
        _ => {
            let args: Vec<OsString> = std::env::args_os().collect();
            let err = Command::new("/bin/busybox")
                .arg0(&args[0])
                .args(&args[1..])
                .exec();
            eprintln!("testinit: exec /bin/busybox: {err}");
            std::process::exit(127);
        }
    }
}
