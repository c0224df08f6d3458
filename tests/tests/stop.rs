//! `cradle stop`'s modes on an init that will not halt, and on names that do not run.

use std::fs;
use std::time::Instant;

use integration_tests::{Sandbox, secs};

/// A busybox guest whose init (the test init) ignores every signal, so halt does nothing.
fn stubborn(test: &str) -> Sandbox {
    let sb = Sandbox::busybox(test);
    sb.install_testinit("/sbin/init", "ignore-signals");
    sb
}

#[test]
fn kill_mode_stops_a_guest_whose_init_ignores_halt() {
    let sb = stubborn("stop-kill");
    let mut launcher = sb.start(&[]);
    sb.wait_running(&mut launcher, secs(30));
    // halt is sent and ignored
    assert_eq!(sb.exec(&["halt"]).code(), Some(0));
    assert!(sb.boot_number().is_some(), "the guest went down on halt");

    let started = Instant::now();
    let stop = sb.run_cradle(&["stop", &sb.name, "--mode", "kill"], secs(30));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert!(
        started.elapsed() < secs(10),
        "kill took {:?}",
        started.elapsed()
    );
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert!(done.stderr.contains("the guest halted"), "{done:?}");
    sb.assert_clean();
}

#[test]
fn halt_falls_back_to_kill_after_the_timeout() {
    let sb = stubborn("stop-halt-timeout");
    let mut launcher = sb.start(&[]);
    sb.wait_running(&mut launcher, secs(30));
    let started = Instant::now();
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "2"], secs(30));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert!(stop.stderr.contains("did not halt within 2s"), "{stop:?}");
    assert!(started.elapsed() >= secs(2), "{:?}", started.elapsed());
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    sb.assert_clean();
}

#[test]
fn halt_powers_off_at_once_a_guest_with_neither_halt_nor_init() {
    let sb = Sandbox::busybox("stop-no-halt");
    // busybox init still boots it, from /etc/init, which is not on PATH
    fs::remove_file(sb.path("/sbin/halt")).unwrap();
    fs::remove_file(sb.path("/sbin/init")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", sb.path("/etc/init")).unwrap();
    let mut launcher = sb.start(&[]);
    sb.wait_running(&mut launcher, secs(30));
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "60"], secs(30));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert!(
        stop.stderr
            .contains("neither halt nor init; powering it off"),
        "{stop:?}"
    );
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    sb.assert_clean();
}

#[test]
fn sigterm_to_the_launcher_powers_off_a_stubborn_guest_after_its_timeout() {
    let sb = stubborn("sigterm-timeout");
    let mut launcher = sb.start(&["--timeout", "1"]);
    sb.wait_running(&mut launcher, secs(30));
    launcher.signal(libc::SIGTERM);
    let done = launcher.wait(secs(30));
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert!(
        done.stderr
            .contains("did not halt within 1s; powering it off"),
        "{done:?}"
    );
    sb.assert_clean();
}

#[test]
fn reboot_mode_returns_once_the_guest_is_back() {
    let sb = Sandbox::busybox("stop-reboot");
    let mut launcher = sb.start(&[]);
    sb.wait_running(&mut launcher, secs(30));
    assert_eq!(sb.boot_number(), Some(1));
    let stop = sb.run_cradle(&["stop", &sb.name, "--mode", "reboot"], secs(60));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert_eq!(sb.boot_number(), Some(2));
    assert_eq!(sb.exec(&["true"]).code(), Some(0));
    let stop = sb.run_cradle(&["stop", &sb.name], secs(60));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert_eq!(launcher.wait(secs(20)).code(), Some(0));
    sb.assert_clean();
}

#[test]
fn stop_and_exec_of_a_name_that_does_not_run_say_so() {
    let sb = Sandbox::new("stop-nothing");
    for args in [
        vec!["stop", sb.name.as_str()],
        vec!["exec", sb.name.as_str(), "--", "true"],
    ] {
        let done = sb.run_cradle(&args, secs(10));
        done.assert_one_line_error(4, "is not running");
    }
    sb.assert_clean();
}

#[test]
fn an_init_that_exits_by_itself_is_not_restarted_and_the_launcher_says_so() {
    let sb = Sandbox::busybox("init-exits");
    sb.install_testinit("/sbin/init", "exit 3");
    let done = sb.start(&[]).wait(secs(30));
    assert_eq!(done.code(), Some(8), "{done:?}");
    assert!(
        done.stderr.contains("exited by itself with status 3"),
        "{done:?}"
    );
    assert!(!done.stderr.contains("booting it again"), "{done:?}");
    sb.assert_clean();
}

/// Runs the host's static busybox in the shim's PID namespace (outside the guest's).
fn in_shim_pid_namespace(shim: &str, applet: &str) -> integration_tests::Finished {
    let mut command = std::process::Command::new("nsenter");
    command.args([
        "--target",
        shim,
        "--pid",
        "--",
        "/bin/busybox",
        applet,
        "-f",
    ]);
    integration_tests::run(command, secs(10))
}

#[test]
fn reboot_2_in_the_shim_s_own_namespace_reads_as_restart_and_poweroff_as_halt() {
    let sb = Sandbox::busybox("shim-reboot");
    let mut launcher = sb.start(&[]);
    sb.wait_running(&mut launcher, secs(30));
    // the kernel kills the shim itself, by SIGHUP: a restart
    in_shim_pid_namespace(
        &integration_tests::only_child(launcher.pid()).to_string(),
        "reboot",
    );
    launcher.wait_for("the second boot", secs(30), |_| sb.boot_number() == Some(2));
    // and by SIGINT: a halt
    in_shim_pid_namespace(
        &integration_tests::only_child(launcher.pid()).to_string(),
        "poweroff",
    );
    let done = launcher.wait(secs(30));
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert!(done.stderr.contains("the guest halted"), "{done:?}");
    sb.assert_clean();
}
