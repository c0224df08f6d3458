//! `cradle run`: application mode, with the shim as PID 1 of the command.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::{Sandbox, secs, shell_code};

#[test]
fn exit_status_is_the_command_s() {
    let sb = Sandbox::busybox("run-codes");
    assert_eq!(sb.run_in(&[], &["sh", "-c", "exit 3"]).code(), Some(3));
    assert_eq!(sb.run_in(&[], &["true"]).code(), Some(0));
    assert_eq!(
        sb.run_in(&[], &["sh", "-c", "kill -KILL $$"]).code(),
        Some(137)
    );
    assert_eq!(
        sb.run_in(&[], &["sh", "-c", "kill -TERM $$"]).code(),
        Some(143)
    );
    let missing = sb.run_in(&[], &["no-such-command"]);
    missing.assert_one_line_error(127, "no-such-command");
    sb.assert_clean();
}

#[test]
fn the_command_runs_isolated_under_the_shim_as_pid_1() {
    let sb = Sandbox::busybox("run-isolation");
    let out = sb.run_in(
        &[],
        &[
            "sh",
            "-c",
            "echo pid=$$; cat /proc/1/comm; hostname; ls /sys/class/net; echo $container; echo err >&2",
        ],
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "pid=2",
            "cradle-shim",
            sb.name.as_str(),
            "lo",
            sb.name.as_str()
        ],
        "{out:?}"
    );
    assert_eq!(out.stderr, "err\n");
    sb.assert_clean();
}

#[test]
fn sigterm_to_the_launcher_reaches_the_command() {
    let sb = Sandbox::busybox("run-sigterm");
    let script = "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.1; done";
    let mut command = sb.run_command(&[], &["sh", "-c", script]);
    let mut child = command
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // SAFETY: kill has no memory effects.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let deadline = Instant::now() + secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "cradle run did not end after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(lines.next().unwrap().unwrap(), "got-term");
    assert_eq!(shell_code(status), 42);
    sb.assert_clean();
}
