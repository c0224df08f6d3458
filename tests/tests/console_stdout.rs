//! A foreground guest's console on the launcher's standard output, whatever that is: a
//! terminal, a pipe, a file (truncated by `>` or opened for append by `>>`), a socket (a
//! service's journal), /dev/null. Every byte the guest printed is there once, in order,
//! with the launcher's own lines (standard error, the same open file as `2>&1` makes it)
//! after it.
//!
//! The guest's init is a script that prints a known text and powers off: that text is all
//! the guest ever prints, so the test knows every byte of it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use integration_tests::{Drained, Killed, Pty, Sandbox, secs, wait_child};

/// How many lines the guest prints: about 20 KB, more than one read of the console.
const LINES: usize = 600;

/// A busybox sandbox whose init prints [`LINES`] lines between its first and last words,
/// then powers the guest off; and what its console shows of that: every byte, each
/// newline made CR LF by the console's terminal, as a terminal's output does.
fn talking_guest(test: &str) -> (Sandbox, Vec<u8>) {
    let sb = Sandbox::busybox(test);
    fs::remove_file(sb.path("/sbin/init")).unwrap();
    sb.write(
        "/sbin/init",
        &format!(
            "#!/bin/sh\n\
             echo first-words\n\
             i=0\n\
             while [ $i -lt {LINES} ]; do echo \"line $i of the guest's console\"; i=$((i+1)); done\n\
             echo last-words\n\
             exec poweroff -f\n"
        ),
        0o755,
    );
    let mut console = String::from("first-words\r\n");
    for i in 0..LINES {
        console.push_str(&format!("line {i} of the guest's console\r\n"));
    }
    console.push_str("last-words\r\n");
    (sb, console.into_bytes())
}

/// `cradle start NAME --root ROOT`, in the foreground.
fn start(sb: &Sandbox) -> Command {
    sb.cradle([
        "start",
        sb.name.as_str(),
        "--root",
        sb.root.to_str().unwrap(),
    ])
}

/// Runs `command` with `out` as its standard output and error (one open file, as `2>&1`
/// makes it) and nothing on its standard input, to its end (exit 0).
fn run_onto(mut command: Command, out: OwnedFd) {
    let launcher = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let mut launcher = Killed(launcher);
    let status = wait_child(&mut launcher, "the launcher", secs(60));
    assert_eq!(status.code(), Some(0), "the launcher's exit");
}

/// Asserts that `out` is `before`, then every byte of `console`, then the launcher's
/// lines, ending with its word that the guest halted (before Linux 5.12, the notes of the
/// shift of the root's owners may come before the console: they are said before the
/// guest starts).
fn assert_console_then_launcher(out: &[u8], before: &[u8], console: &[u8], sb: &Sandbox) {
    // its start and its end: where what goes wrong shows
    let shown = || {
        let text = String::from_utf8_lossy(out);
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() <= 12 {
            return text.into_owned();
        }
        let (head, tail) = (&lines[..6], &lines[lines.len() - 6..]);
        format!("{}\n[...]\n{}", head.join("\n"), tail.join("\n"))
    };
    assert!(
        out.starts_with(before),
        "what was there before is kept at the start:\n{}",
        shown()
    );
    let out = integration_tests::after_shift_notes(&out[before.len()..]);
    assert!(
        out.starts_with(console),
        "every byte the guest printed comes first, in order, once:\n{}",
        shown()
    );
    let launcher = String::from_utf8_lossy(&out[console.len()..]).into_owned();
    let lines: Vec<&str> = launcher.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(
        lines.iter().all(|l| l.starts_with("cradle: ")),
        "after the console, the launcher's lines alone:\n{launcher}"
    );
    assert_eq!(
        lines.last().copied(),
        Some(format!("cradle: {}: the guest halted", sb.name).as_str()),
        "the launcher's last line:\n{launcher}"
    );
}

/// The flags of an open file, from /proc/self/fdinfo (O_NONBLOCK is 0o4000).
fn open_flags(fd: &impl AsRawFd) -> u32 {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("fdinfo has flags");
    u32::from_str_radix(flags.trim(), 8).unwrap()
}

#[test]
fn console_on_a_terminal_is_all_there_then_the_launchers_lines() {
    let (sb, console) = talking_guest("stdout-terminal");
    let (mut launcher, pty) = Pty::open().spawn(start(&sb));
    let status = wait_child(&mut launcher, "the launcher", secs(60));
    assert_eq!(status.code(), Some(0), "{}", pty.text());
    pty.wait_closed(secs(10));
    assert_console_then_launcher(pty.text().as_bytes(), b"", &console, &sb);
    assert_ne!(
        pty.local_modes() & (libc::ICANON | libc::ECHO),
        0,
        "the launcher put its terminal back"
    );
    sb.assert_clean();
}

#[test]
fn console_on_a_pipe_is_all_there_then_the_launchers_lines() {
    let (sb, console) = talking_guest("stdout-pipe");
    // `cradle start ... 2>&1 | cat`: the launcher gets the write end of cat's input
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut read = Drained::start(cat.stdout.take().unwrap());
    let pipe = OwnedFd::from(cat.stdin.take().unwrap());
    let mut cat = Killed(cat);
    run_onto(start(&sb), pipe.try_clone().unwrap());
    assert_eq!(
        open_flags(&pipe) & libc::O_NONBLOCK as u32,
        0,
        "the pipe is left blocking, as it was given"
    );
    drop(pipe);
    wait_child(&mut cat, "cat", secs(10));
    read.join();
    assert_console_then_launcher(&read.bytes(), b"", &console, &sb);
    sb.assert_clean();
}

/// A pipe of one page (4 KiB): its read end, and its write end.
fn small_pipe() -> (File, OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two descriptors to an array of two ints.
    #[allow(unsafe_code)]
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(made, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded: both are open descriptors that nothing else owns.
    #[allow(unsafe_code)]
    let (read, write) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETPIPE_SZ takes an int and changes nothing in our memory.
    #[allow(unsafe_code)]
    let size = unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert_eq!(
        size,
        4096,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    (read, write)
}

/// A reader slower than the guest: the launcher is still writing the console to the pipe
/// (one page of it) when the guest halts, and its line that the guest halted still comes
/// after all of it.
#[test]
fn console_on_a_pipe_read_slowly_is_all_there_then_the_launchers_lines() {
    use std::io::Read;
    let (sb, console) = talking_guest("stdout-slow-pipe");
    let (mut read, write) = small_pipe();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 512];
        while let Ok(n @ 1..) = read.read(&mut chunk) {
            bytes.extend_from_slice(&chunk[..n]);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        bytes
    });
    run_onto(start(&sb), write);
    let bytes = reader.join().unwrap();
    assert_console_then_launcher(&bytes, b"", &console, &sb);
    sb.assert_clean();
}

#[test]
fn console_to_a_file_truncated_is_all_there_then_the_launchers_lines() {
    let (sb, console) = talking_guest("stdout-file");
    let path = sb.dir.join("console.log");
    // `cradle start ... >console.log 2>&1`
    let file = File::create(&path).unwrap();
    run_onto(start(&sb), OwnedFd::from(file));
    let out = fs::read(&path).unwrap();
    assert_console_then_launcher(&out, b"", &console, &sb);
    sb.assert_clean();
}

#[test]
fn console_to_a_file_opened_for_append_follows_what_was_there() {
    let (sb, console) = talking_guest("stdout-append");
    let path = sb.dir.join("console.log");
    let before = b"what an earlier run left\n";
    fs::write(&path, before).unwrap();
    // `cradle start ... >>console.log 2>&1`
    let file = OpenOptions::new().append(true).open(&path).unwrap();
    run_onto(start(&sb), OwnedFd::from(file));
    let out = fs::read(&path).unwrap();
    assert_console_then_launcher(&out, before, &console, &sb);
    sb.assert_clean();
}

#[test]
fn console_on_a_socket_is_all_there_and_the_socket_left_as_given() {
    let (sb, console) = talking_guest("stdout-socket");
    // a service's standard output and error as systemd gives them: a stream socket
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut read = Drained::start(ours);
    run_onto(start(&sb), OwnedFd::from(theirs.try_clone().unwrap()));
    assert_eq!(
        open_flags(&theirs) & libc::O_NONBLOCK as u32,
        0,
        "the socket is left blocking, as it was given"
    );
    drop(theirs);
    read.join();
    assert_console_then_launcher(&read.bytes(), b"", &console, &sb);
    sb.assert_clean();
}

#[test]
fn console_to_dev_null_goes_nowhere_and_the_launcher_still_says_its_lines() {
    let (sb, _) = talking_guest("stdout-null");
    // `cradle start ... >/dev/null 2>launcher.log`
    let path = sb.dir.join("launcher.log");
    let log = File::create(&path).unwrap();
    let mut launcher = Killed(
        start(&sb)
            .stdin(Stdio::null())
            .stdout(OpenOptions::new().write(true).open("/dev/null").unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let status = wait_child(&mut launcher, "the launcher", secs(60));
    let out = fs::read(&path).unwrap();
    assert_eq!(status.code(), Some(0), "{}", String::from_utf8_lossy(&out));
    // standard error has the launcher's lines alone
    assert_console_then_launcher(&out, b"", b"", &sb);
    sb.assert_clean();
}

/// What a file of the guest's console holds is written as the guest printed it: a
/// console that is written while the file grows for other reasons (a line of the
/// launcher's) is not written over.
#[test]
fn console_to_a_file_shares_its_offset_with_the_launchers_standard_error() {
    let (sb, console) = talking_guest("stdout-offset");
    let path = sb.dir.join("console.log");
    let file = File::create(&path).unwrap();
    // one open file for both, and the test's own line in it first, at offset 0: the
    // console comes after it, not over it
    let mut ours = file.try_clone().unwrap();
    ours.write_all(b"before the launcher\n").unwrap();
    run_onto(start(&sb), OwnedFd::from(file));
    let out = fs::read(&path).unwrap();
    assert_console_then_launcher(&out, b"before the launcher\n", &console, &sb);
    sb.assert_clean();
}
