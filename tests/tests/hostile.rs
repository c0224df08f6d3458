//! A guest's root against what the host sends into its guest: the helpers of `cradle
//! exec` and `cradle stop` give it nothing of the host (tests/src/bin/escape/hunt.rs traps
//! each one in a frozen cgroup, stops it on its way in and tries every way of taking its
//! descriptors, memory or credentials), nor does the shim that is PID 1 of its container,
//! and a guest that freezes its cgroup makes no host command hang.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{Finished, Launcher, Sandbox, secs, v1_cgroups};

fn start_busybox(sb: &Sandbox) -> Launcher {
    sb.install_escape();
    let mut launcher = sb.start(&[]);
    launcher.wait_console("is up", secs(30));
    launcher
}

/// `cradle stop NAME`, which must succeed, as must the foreground launcher; then nothing
/// of the guest is left.
fn stop(sb: &Sandbox, launcher: Launcher) {
    let stop = sb.run_cradle(&["stop", &sb.name], secs(60));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    let done = launcher.wait(secs(30));
    assert_eq!(done.code(), Some(0), "{done:?}");
    sb.assert_clean();
}

/// Starts the hunter in the guest, writing to `log` (a path in the guest), to catch
/// `count` helpers; returns once its trap is set.
fn start_hunter(sb: &Sandbox, log: &str, count: u32) {
    let script = format!("/escape hunt 120 {count} > {log} 2>&1 &");
    let started = sb.exec(&["sh", "-c", &script]);
    assert_eq!(started.code(), Some(0), "{started:?}");
    wait_for_line(sb, log, "ready", secs(20));
}

/// Waits until the guest file `log` has a line starting with `start`.
fn wait_for_line(sb: &Sandbox, log: &str, start: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = fs::read_to_string(sb.path(log)).unwrap_or_default();
        if text.lines().any(|l| l.starts_with(start)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {start:?} line in {log} after {timeout:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How `cradle exec NAME -- true` ended, or `None` if it did not within `timeout` (it is
/// then killed). Its output goes nowhere: a process left in the guest could hold a pipe.
fn exec_within(sb: &Sandbox, timeout: Duration) -> Option<ExitStatus> {
    let mut child = sb
        .cradle(["exec", sb.name.as_str(), "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that the hunter caught `caught` helpers, stopped at least one of them on its
/// way in, and that every attempt on each was refused.
fn assert_nothing_taken(log: &str, text: &str, caught: usize) {
    let lines: Vec<&str> = text.lines().collect();
    let taken: Vec<&&str> = lines.iter().filter(|l| l.contains(" allowed")).collect();
    assert!(
        taken.is_empty(),
        "{log}: the guest's root took something from a helper:\n{text}"
    );
    let count = |word: &str| lines.iter().filter(|l| l.starts_with(word)).count();
    assert_eq!(count("caught "), caught, "{log}: helpers caught:\n{text}");
    assert!(
        count("stopped ") >= 1,
        "{log}: no helper was stopped on its way in, so the window was not tried:\n{text}"
    );
    // every attempt was made on every helper caught, frozen and stopped
    let refused = lines.iter().filter(|l| l.contains(" refused ")).count();
    assert!(
        refused >= caught * 12,
        "{log}: {refused} attempts refused for {caught} helpers:\n{text}"
    );
}

#[test]
fn the_helpers_of_exec_and_stop_give_a_hostile_root_nothing_of_the_host() {
    let sb = Sandbox::busybox("hostile-helpers");
    let launcher = start_busybox(&sb);
    // exec: every helper trapped, stopped where it turns into the guest's root, and tried
    const EXECS: u32 = 6;
    start_hunter(&sb, "/hunt-exec.log", EXECS);
    // what the hunter took is the finding: looked at before how the execs went, which a
    // helper in the guest's hands may not finish
    let execs: Vec<Option<ExitStatus>> = (0..EXECS).map(|_| exec_within(&sb, secs(20))).collect();
    let text = fs::read_to_string(sb.path("/hunt-exec.log")).unwrap_or_default();
    assert!(
        !text.contains(" allowed"),
        "the guest's root took something from a helper of exec:\n{text}"
    );
    for status in execs {
        let status = status.expect("exec finished within 20 s");
        assert_eq!(status.code(), Some(0), "exec -- true: {status:?}");
    }
    let text = wait_for_line(&sb, "/hunt-exec.log", "done", secs(30));
    assert_nothing_taken("exec", &text, EXECS as usize);
    // stop --mode reboot: its helper, which runs `reboot` in the guest
    start_hunter(&sb, "/hunt-reboot.log", 1);
    let boot = sb.boot_number();
    let reboot = sb.run_cradle(&["stop", &sb.name, "--mode", "reboot"], secs(60));
    assert_eq!(reboot.code(), Some(0), "{reboot:?}");
    assert_ne!(sb.boot_number(), boot, "a new boot");
    let text = wait_for_line(&sb, "/hunt-reboot.log", "caught", secs(5));
    assert_nothing_taken("stop --mode reboot", &text, 1);
    // stop: its helper, which runs `halt`
    start_hunter(&sb, "/hunt-halt.log", 1);
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "30"], secs(60));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    let text = wait_for_line(&sb, "/hunt-halt.log", "caught", secs(5));
    assert_nothing_taken("stop", &text, 1);
    assert!(
        !done.stderr.contains("powering it off"),
        "the halt went through: {done:?}"
    );
    sb.assert_clean();
}

/// Runs a shell command in the guest, which must succeed.
fn in_guest(sb: &Sandbox, script: &str) {
    let done = sb.exec(&["sh", "-c", script]);
    assert_eq!(done.code(), Some(0), "{done:?}");
}

/// Runs `cradle ARGS` and checks that it ended within `within`.
fn timed(sb: &Sandbox, args: &[&str], within: Duration) -> Finished {
    let began = Instant::now();
    let done = sb.run_cradle(args, within + secs(30));
    assert!(
        began.elapsed() < within,
        "cradle {args:?} took {:?}: {done:?}",
        began.elapsed()
    );
    done
}

#[test]
fn a_guest_that_freezes_its_cgroup_makes_no_host_command_hang() {
    let sb = Sandbox::busybox("hostile-frozen");
    let launcher = start_busybox(&sb);
    // the init in a cgroup of its own, frozen: what exec and stop start there is born
    // frozen, and the init takes no halt or reboot request
    in_guest(
        &sb,
        "mkdir /sys/fs/cgroup/ice && echo 1 > /sys/fs/cgroup/ice/cgroup.freeze \
         && echo 1 > /sys/fs/cgroup/ice/cgroup.procs",
    );
    let exec = timed(
        &sb,
        &["exec", &sb.name, "--timeout", "2", "--", "touch", "/ran"],
        secs(10),
    );
    exec.assert_one_line_error(10, "did not start in the guest in time");
    let status = timed(&sb, &["status", &sb.name], secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
    let list = timed(&sb, &["list"], secs(10));
    assert_eq!(list.code(), Some(0), "{list:?}");
    let reboot = timed(
        &sb,
        &["stop", &sb.name, "--mode", "reboot", "--timeout", "2"],
        secs(10),
    );
    reboot.assert_one_line_error(10, "did not come back");
    // thawed, the guest never runs the commands that were given up on
    let boot = sb.boot_number();
    let ice = integration_tests::cgroup_v2_root()
        .join(format!("cradle.{}", sb.name))
        .join("guest/ice/cgroup.freeze");
    fs::write(&ice, "0").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !sb.path("/ran").exists(),
        "the command exec gave up on ran once the guest thawed"
    );
    assert_eq!(sb.boot_number(), boot, "the reboot given up on happened");
    fs::write(&ice, "1").unwrap();
    // a halt it cannot take: powered off after the timeout
    let stop = timed(&sb, &["stop", &sb.name, "--timeout", "2"], secs(20));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    sb.assert_clean();
}

/// Asserts that `escape reach` refused every attempt, and made them.
fn assert_unreachable(what: &str, done: &Finished) {
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert!(
        !done.stdout.contains(" allowed"),
        "{what}: the guest's root reached it:\n{done:?}"
    );
    let refused = done
        .stdout
        .lines()
        .filter(|l| l.contains(" refused "))
        .count();
    assert!(refused >= 12, "{what}: every attempt made: {done:?}");
}

#[test]
fn the_shim_is_out_of_the_guest_s_reach_in_boot_and_run_mode() {
    let sb = Sandbox::busybox("hostile-shim");
    let launcher = start_busybox(&sb);
    // below the guest's own /proc is its container's, where the shim is PID 1 (of a PID
    // namespace above the guest's: /proc is the one way to it)
    let reach = sb.exec(&[
        "sh",
        "-c",
        "umount -l /proc && test \"$(cat /proc/1/comm)\" = cradle-shim \
         && /escape reach-proc 1",
    ]);
    assert_unreachable("the shim in boot mode", &reach);
    stop(&sb, launcher);
    // in run mode the command sees the shim as PID 1
    let reach = sb.run_in(&[], &["/escape", "reach", "1"]);
    assert_unreachable("the shim in run mode", &reach);
    sb.assert_clean();
}

/// The host pid of the process of the guest whose command line is `argv` (NUL-separated
/// on /proc), in the sandbox's container's cgroup.
fn host_pid_of(sb: &Sandbox, argv: &str) -> Option<i32> {
    let cgroup = format!("/cradle.{}/", sb.name);
    let guest_pid_ns = fs::metadata(format!("/proc/{}/ns/pid", sb.init_pid()))
        .ok()?
        .ino();
    let wanted: Vec<u8> = argv
        .replace(' ', "\0")
        .into_bytes()
        .into_iter()
        .chain([0])
        .collect();
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        if cmdline != wanted {
            return None;
        }
        let in_guest = match fs::read_to_string(entry.path().join("cgroup")) {
            Ok(own) => own.contains(&cgroup),
            // a cgroup path longer than PATH_MAX, which Linux 5.10 cannot print: the
            // process is the guest's if it is in the guest's PID namespace
            Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                fs::metadata(entry.path().join("ns/pid")).ok()?.ino() == guest_pid_ns
            }
            Err(_) => false,
        };
        in_guest.then_some(pid)
    })
}

#[test]
fn a_guest_s_cgroup_tree_deeper_than_path_max_is_counted_limited_and_removed() {
    let sb = Sandbox::busybox("hostile-deep");
    let launcher = start_busybox(&sb);
    let pids = || sb.status()["usage"]["pids"].as_u64().unwrap();
    let before = pids();
    // twenty nested cgroups of 250-byte names (a path of 5 KB), a process in the deepest
    let deep = sb.exec(&["/escape", "deep", "20", "250"]);
    assert_eq!(deep.stdout.trim(), "deep 20", "{deep:?}");
    assert_eq!(
        pids(),
        before + 1,
        "status counts the process in the deep cgroup"
    );
    // a limit given to the running guest covers it, on a hybrid host's v1 hierarchy too
    let set = sb.run_cradle(&["set", &sb.name, "--memory", "256M"], secs(20));
    assert_eq!(set.code(), Some(0), "{set:?}");
    let sleeper = host_pid_of(&sb, "/escape deep 20 250").expect("the sleeping process");
    // (which Linux 5.10 cannot print: a pure v2 host has no v1 line to check then)
    let own = match fs::read_to_string(format!("/proc/{sleeper}/cgroup")) {
        Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) && v1_cgroups().is_empty() => {
            String::new()
        }
        read => read.unwrap(),
    };
    for line in own
        .lines()
        .filter(|l| l.split(':').nth(1) == Some("memory"))
    {
        assert!(
            line.ends_with(&format!("/cradle.{}", sb.name)),
            "the deep process is in the guest's v1 memory cgroup: {own}"
        );
    }
    // the guest cannot nest deeper than 32 below its own cgroup, nor make more than 4096
    let deep = sb.exec(&[
        "sh",
        "-c",
        "cd /sys/fs/cgroup; for i in $(seq 40); do mkdir d || exit 0; cd d; echo $i; done",
    ]);
    assert_eq!(deep.stdout.lines().last(), Some("32"), "{deep:?}");
    let wide = sb.exec(&[
        "sh",
        "-c",
        "cd /sys/fs/cgroup; for i in $(seq 5000); do mkdir w$i 2>/dev/null || break; done; \
         echo $((i - 1))",
    ]);
    // 4096 in all, the 20 + 32 made above among them
    assert_eq!(wide.stdout.trim(), (4096 - 20 - 32).to_string(), "{wide:?}");
    stop(&sb, launcher);
    // and the name starts again
    let launcher = start_busybox(&sb);
    stop(&sb, launcher);
}

#[test]
fn exec_hands_the_guest_none_of_the_operator_s_streams() {
    let sb = Sandbox::busybox("hostile-streams");
    let launcher = start_busybox(&sb);
    // a terminal: the command gets a pty of its own, its controlling terminal; a process
    // it leaves behind with it reads nothing typed at the operator's terminal afterwards
    let script = format!(
        "{} --state-dir {} exec {} -- sh -c 'test -t 0 && test -t 1 && echo on-a-terminal; exec 3<&0; head -c 5 <&3 > /stolen & sleep 0.5'; \
         echo exec-done; sleep 5",
        integration_tests::dist("cradle").display(),
        sb.state.display(),
        sb.name
    );
    let mut shell = Command::new("sh");
    shell.args(["-c", &script]);
    let (_shell, mut terminal) = integration_tests::Pty::open().spawn(shell);
    terminal.wait_for("exec-done", secs(20));
    assert!(
        terminal.text().contains("on-a-terminal"),
        "the command's input and output are a terminal: {}",
        terminal.text()
    );
    terminal.type_in(b"hello\n");
    std::thread::sleep(Duration::from_millis(1000));
    let stolen = fs::read_to_string(sb.path("/stolen")).unwrap_or_default();
    assert_eq!(
        stolen, "",
        "the guest read what was typed after exec returned"
    );
    // pipes: a process left behind holds none of ours, so the caller's read ends
    let began = Instant::now();
    let done = sb.exec(&["sh", "-c", "echo out; echo err >&2; sleep 30 &"]);
    assert!(
        began.elapsed() < secs(10),
        "{:?}: {done:?}",
        began.elapsed()
    );
    assert_eq!(
        (done.stdout.as_str(), done.stderr.as_str()),
        ("out\n", "err\n")
    );
    // input from a file, output to a file, each relayed whole
    let input = sb.dir.join("input");
    fs::write(&input, "x".repeat(200_000)).unwrap();
    let output = sb.dir.join("output");
    let mut cat = sb.cradle(["exec", sb.name.as_str(), "--", "cat"]);
    cat.stdin(fs::File::open(&input).unwrap())
        .stdout(fs::File::create(&output).unwrap());
    assert!(cat.status().unwrap().success());
    assert_eq!(fs::read(&output).unwrap().len(), 200_000);
    // a directory of the host's is no standard stream for the guest
    let refused = sb
        .cradle(["exec", sb.name.as_str(), "--", "true"])
        .stdin(fs::File::open("/").unwrap())
        .output()
        .unwrap();
    let refused = Finished {
        what: "cradle exec -- true < /".into(),
        status: refused.status,
        stdout: String::from_utf8_lossy(&refused.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&refused.stderr).into_owned(),
        raw_stderr: String::from_utf8_lossy(&refused.stderr).into_owned(),
    };
    refused.assert_one_line_error(2, "standard input is a directory");
    stop(&sb, launcher);
}

#[test]
fn a_guest_that_floods_its_console_and_notify_socket_is_still_served_and_stopped() {
    let sb = Sandbox::busybox("hostile-flood");
    sb.install_escape();
    // in the background: its launcher is the shim's small monitor while it is up
    let _detached = sb.start_detached(&[], secs(60));
    in_guest(
        &sb,
        "for i in 1 2 3 4; do yes flood > /dev/console 2>/dev/null & done",
    );
    for _ in 0..3 {
        let began = Instant::now();
        let done = sb.exec(&["true"]);
        assert_eq!(done.code(), Some(0), "{done:?}");
        assert!(
            began.elapsed() < secs(10),
            "exec took {:?}",
            began.elapsed()
        );
        let status = timed(&sb, &["status", &sb.name], secs(10));
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
    let reboot = timed(&sb, &["stop", &sb.name, "--mode", "reboot"], secs(30));
    assert_eq!(reboot.code(), Some(0), "{reboot:?}");
    in_guest(
        &sb,
        "for i in 1 2 3 4; do yes flood > /dev/console 2>/dev/null & done",
    );
    let stop = timed(&sb, &["stop", &sb.name, "--timeout", "10"], secs(30));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    sb.assert_clean();
}
