//! The console and the background: `start --detach` returns once the guest is up,
//! `cradle console` attaches a terminal to a running guest (with what it printed before),
//! Ctrl-] three times detaches a console or powers off a foreground guest, and no reader of
//! the console, however slow, holds the launcher up.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::{Detached, Drained, Killed, Launcher, Pty, Sandbox, run, secs, wait_child};

/// Ctrl-] three times.
const ESCAPE: [u8; 3] = [0x1d; 3];

fn raw(pty: &Pty) -> bool {
    pty.local_modes() & (libc::ICANON | libc::ECHO) == 0
}

#[test]
fn detach_returns_once_up_and_consoles_attach_take_over_and_detach() {
    let sb = Sandbox::busybox("console-detach");
    let log = sb.dir.join("launcher.log");
    let _guard = sb.start_detached(&["--log-file", log.to_str().unwrap()], secs(30));
    // "up" is the guest init running: the state says so as the command returns
    assert!(sb.state.join(&sb.name).join("init.pid").exists());
    assert_eq!(sb.status()["state"], "running");

    // what the guest printed before anyone attached comes first
    let (mut first, mut pty) = Pty::open().spawn(sb.cradle(["console", sb.name.as_str()]));
    pty.wait_for("is up", secs(30));
    assert!(
        raw(&pty),
        "the console's terminal is in raw mode while attached"
    );
    pty.type_in(b"echo con$((6*7))sole\r");
    pty.wait_for("con42sole", secs(10));

    // a second console takes over; the first is told, and puts its terminal back
    let (mut second, mut pty2) = Pty::open().spawn(sb.cradle(["console", sb.name.as_str()]));
    pty.wait_for("another console attached", secs(10));
    let status = wait_child(&mut first, "the first console", secs(10));
    assert_eq!(status.code(), Some(0), "{}", pty.text());
    assert!(!raw(&pty), "the first console put its terminal back");
    pty2.wait_for("con42sole", secs(10));
    pty2.type_in(b"echo sec$((5+5))ond\r");
    pty2.wait_for("sec10ond", secs(10));

    // Ctrl-] three times detaches; the guest runs on
    pty2.type_in(&ESCAPE);
    let status = wait_child(&mut second, "the second console", secs(10));
    assert_eq!(status.code(), Some(0), "{}", pty2.text());
    // the console has exited, but its last words may still be on their way to our reader
    pty2.wait_for("detached", secs(10));
    assert!(!raw(&pty2));
    assert_eq!(sb.status()["state"], "running");

    // attached again: what was typed and printed before is in the scrollback
    let (mut third, mut pty3) = Pty::open().spawn(sb.cradle(["console", sb.name.as_str()]));
    pty3.wait_for("sec10ond", secs(10));
    pty3.type_in(&ESCAPE);
    let status = wait_child(&mut third, "the third console", secs(10));
    assert_eq!(status.code(), Some(0), "{}", pty3.text());

    let stopped = sb.run_cradle(&["stop", &sb.name], secs(60));
    assert_eq!(stopped.code(), Some(0), "{stopped:?}");
    sb.assert_clean();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("the guest halted"),
        "the monitor's log:\n{log}"
    );
}

/// The process a detached guest's monitor runs as: what `/proc/PID/cmdline` says.
fn cmdline(pid: u64) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Waits until the launcher `pid` has handed the guest to the shim's monitor mode.
fn wait_for_monitor(pid: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if cmdline(pid).starts_with("cradle --monitor ") && exe.ends_with("cradle-shim") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} is still {:?} ({})",
            exe,
            cmdline(pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Once a detached guest is up, its launcher becomes the shim's small monitor, which
/// serves the console and gives the guest back to the launcher for a reboot and a stop: a
/// console attached all along sees it all, and the guest is still the launcher's (its pid
/// never changes).
#[test]
fn a_detached_guest_is_kept_by_the_small_monitor_across_reboots_until_it_stops() {
    let sb = Sandbox::busybox("console-monitor");
    let log = sb.dir.join("launcher.log");
    let _guard = sb.start_detached(
        &["--log-file", log.to_str().unwrap(), "-e", "TOKEN=s3cr3t"],
        secs(30),
    );
    let monitor = sb.status()["launcher_pid"].as_u64().unwrap();
    wait_for_monitor(monitor, secs(10));
    // the guest's variables are the host root's alone: not on a command line, not in a
    // file others can read
    assert!(!cmdline(monitor).contains("s3cr3t"), "{}", cmdline(monitor));
    let env = sb.state.join(&sb.name).join("env");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&env).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "{} is {mode:o}", env.display());

    let (mut console, mut pty) = Pty::open().spawn(sb.cradle(["console", sb.name.as_str()]));
    pty.wait_for("is up", secs(30));
    pty.type_in(b"echo mon$((2*3))itor\r");
    pty.wait_for("mon6itor", secs(10));
    // more than the ring holds, while attached: the end reaches the console (and what a
    // slow reader missed, if it fell further behind than the ring holds, is said)
    let flood = sb.exec(&[
        "sh",
        "-c",
        "yes flood | head -n 20000 >/dev/console; echo flood-end >/dev/console",
    ]);
    assert_eq!(flood.code(), Some(0), "{flood:?}");
    pty.wait_for("flood-end", secs(30));
    let text = pty.text();
    assert!(
        text.matches("flood\r\n").count() >= 20000 || text.contains("console output were lost"),
        "lines went missing unsaid"
    );

    // a reboot goes through the launcher and back; the console stays attached
    let rebooted = sb.run_cradle(&["stop", &sb.name, "--mode", "reboot"], secs(60));
    assert_eq!(rebooted.code(), Some(0), "{rebooted:?}");
    assert_eq!(sb.boot_number(), Some(2));
    assert_eq!(sb.status()["launcher_pid"].as_u64(), Some(monitor));
    wait_for_monitor(monitor, secs(10));
    pty.type_in(b"echo boot$((1+1))\r");
    pty.wait_for("boot2", secs(10));
    // the shim of the new boot holds nothing of the host's but its console: none of what
    // passed between the launcher and the monitor
    let shim = integration_tests::only_child(monitor as i32);
    for (fd, target) in integration_tests::open_files(shim) {
        let target = target.to_string_lossy();
        assert!(
            target.starts_with("/dev/") || target.starts_with("anon_inode:"),
            "the shim holds /proc/{shim}/fd/{fd} -> {target}"
        );
    }
    // the launcher that booted it again gave its init the same environment
    let environ = sb.exec(&["cat", "/proc/1/environ"]);
    assert!(environ.stdout.contains("TOKEN=s3cr3t"), "{environ:?}");

    // a console that takes over, then is killed: the monitor serves on, and the guest's
    // output, with nobody to read it, goes to the ring
    let (second, pty2) = Pty::open().spawn(sb.cradle(["console", sb.name.as_str()]));
    pty.wait_for("another console attached", secs(10));
    let status = wait_child(&mut console, "the console", secs(10));
    assert_eq!(status.code(), Some(0), "{}", pty.text());
    pty2.wait_for("boot2", secs(10));
    drop((second, pty2));
    let flood = sb.exec(&["sh", "-c", "yes again | head -n 50000 >/dev/console"]);
    assert_eq!(flood.code(), Some(0), "{flood:?}");
    assert_eq!(sb.status()["state"], "running");
    wait_for_monitor(monitor, secs(10));

    // a stop signal to the monitor halts the guest, as it does the launcher
    integration_tests::kill(monitor as i32, libc::SIGTERM);
    let deadline = Instant::now() + secs(60);
    while std::path::Path::new(&format!("/proc/{monitor}")).exists() {
        assert!(Instant::now() < deadline, "the monitor is still there");
        std::thread::sleep(Duration::from_millis(20));
    }
    sb.assert_clean();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("booting it again (boot 2)"), "{log}");
    assert!(log.contains("SIGTERM: halting the guest"), "{log}");
    assert!(log.contains("the guest halted"), "{log}");
    let said = integration_tests::without_shift_notes(log.clone());
    assert!(!said.contains("warning"), "{log}");
}

#[test]
fn internal_resume_words_are_refused_in_one_line() {
    let sb = Sandbox::busybox("console-resume-refused");
    for args in [
        vec!["__resume"],
        vec!["__resume", "{}", "-1,0,0,0"],
        vec!["__resume", "not json", "x"],
    ] {
        let mut cradle = std::process::Command::new(integration_tests::dist("cradle"));
        cradle.args(&args);
        let done = run(cradle, secs(10));
        assert_eq!(done.code(), Some(2), "{args:?}: {done:?}");
        assert_eq!(done.stderr.lines().count(), 1, "{args:?}: {done:?}");
    }
    // nor does the shim take a monitor's words from anyone else
    for args in [
        vec!["--monitor"],
        vec!["--monitor", "1,2,3", "--", "cradle"],
    ] {
        let mut shim = std::process::Command::new(integration_tests::dist("cradle-shim"));
        shim.args(&args);
        let done = run(shim, secs(10));
        assert_eq!(done.code(), Some(2), "{args:?}: {done:?}");
        assert_eq!(done.stderr.lines().count(), 1, "{args:?}: {done:?}");
    }
    sb.assert_clean();
}

#[test]
fn a_detached_start_that_fails_says_why_with_its_own_exit_code() {
    let sb = Sandbox::busybox("console-detach-fails");
    let log = sb.dir.join("launcher.log");
    let log_arg = log.to_str().unwrap();
    let missing = sb.dir.join("no-such-root");
    let done = sb.run_cradle(
        &[
            "start",
            "--detach",
            "--log-file",
            log_arg,
            &sb.name,
            "--root",
            missing.to_str().unwrap(),
        ],
        secs(30),
    );
    done.assert_one_line_error(5, "no-such-root");
    // a root without an init: the failure comes from deeper down, after the state was made
    std::fs::remove_file(sb.path("/sbin/init")).unwrap();
    let root = sb.root.to_str().unwrap();
    let done = sb.run_cradle(
        &[
            "start",
            "-d",
            "--log-file",
            log_arg,
            &sb.name,
            "--root",
            root,
        ],
        secs(30),
    );
    done.assert_one_line_error(6, "bad template");
    sb.assert_clean();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("bad template"),
        "the monitor logs it too:\n{log}"
    );
    // and the console of a guest that does not run
    let done = sb.run_cradle(&["console", &sb.name], secs(10));
    done.assert_one_line_error(4, &sb.name);
}

#[test]
fn ctrl_bracket_three_times_powers_off_a_foreground_guest() {
    let sb = Sandbox::busybox("console-escape");
    let command = sb.cradle([
        "start",
        sb.name.as_str(),
        "--root",
        sb.root.to_str().unwrap(),
    ]);
    let (mut launcher, mut pty) = Pty::open().spawn(command);
    pty.wait_for("is up", secs(30));
    assert!(
        raw(&pty),
        "a foreground start puts its terminal in raw mode"
    );
    // what is typed goes to the guest
    pty.type_in(b"echo fore$((40+2))ground\r");
    pty.wait_for("fore42ground", secs(10));
    // two presses, then something else: no escape
    pty.type_in(&[0x1d, 0x1d, b'\r']);
    pty.type_in(b"echo still$((1+1))\r");
    pty.wait_for("still2", secs(10));
    pty.type_in(&ESCAPE);
    let status = wait_child(&mut launcher, "the launcher", secs(30));
    assert_eq!(status.code(), Some(0), "{}", pty.text());
    pty.wait_for("powering the guest off", secs(10));
    assert!(!raw(&pty), "the launcher put its terminal back");
    sb.assert_clean();
}

/// A launcher whose standard output nobody reads (a full pipe) goes on: the guest writes
/// a megabyte to its console, and is halted on request as ever.
#[test]
fn a_stalled_reader_of_the_console_holds_nothing_up() {
    let sb = Sandbox::busybox("console-stalled");
    let mut command = sb.cradle([
        "start",
        sb.name.as_str(),
        "--root",
        sb.root.to_str().unwrap(),
    ]);
    let mut launcher = Killed(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stalled = launcher.stdout.take().unwrap();
    let mut stderr = Drained::start(launcher.stderr.take().unwrap());
    let init_pid = sb.state.join(&sb.name).join("init.pid");
    let deadline = std::time::Instant::now() + secs(30);
    while !init_pid.exists() {
        assert!(std::time::Instant::now() < deadline, "{}", stderr.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let flood = sb.exec(&["sh", "-c", "yes | head -c 1000000 >/dev/console"]);
    assert_eq!(flood.code(), Some(0), "{flood:?}");
    let stopped = sb.run_cradle(&["stop", &sb.name], secs(60));
    assert_eq!(stopped.code(), Some(0), "{stopped:?}");
    let status = wait_child(&mut launcher, "the launcher", secs(30));
    stderr.join();
    assert_eq!(status.code(), Some(0), "{}", stderr.text());
    drop(stalled);
    sb.assert_clean();
}

/// Under systemd with Type=notify, the launcher says READY=1 (and its pid) once the guest
/// init runs: to the socket $NOTIFY_SOCKET names.
#[test]
fn the_launcher_tells_notify_socket_when_the_guest_is_up() {
    let sb = Sandbox::busybox("console-notify");
    let socket_path = sb.dir.join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(secs(30))).unwrap();
    let mut command = sb.cradle([
        "start",
        sb.name.as_str(),
        "--root",
        sb.root.to_str().unwrap(),
    ]);
    command.env("NOTIFY_SOCKET", &socket_path);
    let launcher = integration_tests::Launcher::spawn(command);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification within 30 s");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.contains("READY=1"), "{message:?}");
    assert!(
        message.contains(&format!("MAINPID={}", launcher.pid())),
        "{message:?}"
    );
    // by then the guest init runs
    assert!(sb.state.join(&sb.name).join("init.pid").exists());
    launcher.signal(libc::SIGTERM);
    let done = launcher.wait(secs(60));
    assert_eq!(done.code(), Some(0), "{done:?}");
    sb.assert_clean();
}

/// A guest whose init is systemd is up when it says `READY=1` on the socket the launcher
/// gives it (`$NOTIFY_SOCKET`, /run/host/notify), not when it merely runs; one whose
/// `--env` names a socket of its own is up once it runs, as nothing would tell us more.
#[test]
fn a_systemd_guest_is_up_when_it_says_ready() {
    let sb = Sandbox::busybox("console-notify-systemd");
    sb.init_as_silent_systemd();

    let guard = sb.start_detached(&["--env", "NOTIFY_SOCKET=/run/elsewhere"], secs(30));
    let stop = sb.run_cradle(&["stop", &sb.name, "--mode", "kill"], secs(30));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    sb.assert_clean();
    drop(guard);

    let mut command = sb.cradle(["start", "-d", sb.name.as_str(), "--root"]);
    command.arg(&sb.root);
    let mut start = Launcher::spawn(command);
    let _guard = Detached(&sb);
    start.wait_for("the guest's init", secs(30), |_| sb.boot_number().is_some());
    let environ = sb.exec(&["cat", "/proc/1/environ"]);
    assert!(
        environ
            .stdout
            .contains("\0NOTIFY_SOCKET=/run/host/notify\0"),
        "{environ:?}"
    );
    // (busybox's rcS mounts a /run of its own over the one with /run/host/notify: the
    // Debian test sees the socket in the guest)
    // the init runs, and `start -d` still waits for it to say it is up
    let running = Instant::now();
    start.wait_for("half a second more", secs(10), |_| {
        running.elapsed() > Duration::from_millis(500)
    });
    let notify = sb.state.join(&sb.name).join("notify");
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"STATUS=Booted\nREADY=1\n", &notify)
        .unwrap();
    let started = start.wait(secs(10));
    assert_eq!(started.code(), Some(0), "{started:?}");
    assert_eq!(started.stderr, "", "{started:?}");
    let stop = sb.run_cradle(&["stop", &sb.name, "--mode", "kill"], secs(30));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    sb.assert_clean();
}
