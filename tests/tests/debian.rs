//! A Debian 12 guest with systemd (scripts/make-rootfs debian): boot, reboot, halt.

use std::time::Instant;

use integration_tests::{Sandbox, proc_status, secs};

#[test]
fn debian_with_systemd_boots_reboots_and_halts() {
    let sb = Sandbox::debian("debian-systemd");
    sb.install_escape();
    let mut launcher = sb.start(&[]);
    sb.wait_running(&mut launcher, secs(30));
    // every unit started: nothing of the containment got in systemd's way (its cgroup is
    // delegated, and it may mount the procs its services ask for)
    assert_eq!(sb.wait_system_running(secs(120)), "running");
    let uid = proc_status(sb.init_pid(), "Uid");
    assert!(!uid.starts_with("0\t"), "systemd runs as host uid {uid}");
    let attempts = sb.exec(&["/escape", "attempts"]);
    assert_eq!(attempts.code(), Some(0), "{attempts:?}");
    let allowed: Vec<&str> = attempts
        .stdout
        .lines()
        .filter(|l| !l.contains(" refused "))
        .collect();
    assert!(allowed.is_empty(), "{allowed:?}\n{attempts:?}");
    assert!(attempts.stdout.lines().count() >= 20, "{attempts:?}");
    let pid1 = sb.exec(&["cat", "/proc/1/comm"]);
    assert_eq!(pid1.stdout.trim(), "systemd", "{pid1:?}");
    // systemd's container interface: systemd left cradle's /run (and /run/host) in place,
    // took its machine id from container_uuid (the image's is empty), and its tools see a
    // container
    let manager = sb.exec(&["cat", "/run/host/container-manager"]);
    assert_eq!(manager.stdout, "cradle\n", "{manager:?}");
    let uuid = sb.exec(&["cat", "/run/host/container-uuid"]).stdout;
    let machine_id = sb.exec(&["cat", "/etc/machine-id"]).stdout;
    assert_eq!(machine_id.trim(), uuid.trim().replace('-', ""), "{uuid}");
    let virt = sb.exec(&["systemd-detect-virt", "--container"]);
    assert_eq!(virt.stdout.trim(), "container-other", "{virt:?}");
    // systemd sees the container's own cgroup tree, rooted at its cgroup namespace
    let cgroup = sb.exec(&["cat", "/proc/1/cgroup"]);
    assert!(
        cgroup.stdout.lines().any(|l| l == "0::/init.scope"),
        "{cgroup:?}"
    );

    let reboot = sb.exec(&["systemctl", "reboot"]);
    assert_eq!(reboot.code(), Some(0), "{reboot:?}");
    launcher.wait_for("the second boot", secs(60), |_| sb.boot_number() == Some(2));
    sb.wait_system_running(secs(120));

    let started = Instant::now();
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "60"], secs(90));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert!(
        started.elapsed() < secs(60),
        "halt took {:?}",
        started.elapsed()
    );
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    // halted by systemd itself, not powered off by the fallback
    assert!(!stop.stderr.contains("powering it off"), "{stop:?}");
    assert!(
        done.stdout.contains("Reached target") && done.stdout.contains("System Halt"),
        "{done:?}"
    );
    sb.assert_clean();
}

/// `start --detach` returns once systemd says it has booted (READY=1 on the socket the
/// launcher gives it at /run/host/notify), not once its init merely runs: right after it
/// returns, nothing is still starting.
#[test]
fn a_detached_systemd_guest_is_up_when_start_returns() {
    let sb = Sandbox::debian("debian-detached");
    let _guard = sb.start_detached(&[], secs(120));
    let state = sb.exec(&["systemctl", "is-system-running"]);
    assert!(
        state.stdout.trim() == "running" || state.stdout.trim() == "degraded",
        "{state:?}"
    );
    let socket = sb.exec(&["sh", "-c", "echo $NOTIFY_SOCKET; test -S /run/host/notify"]);
    assert_eq!(socket.code(), Some(0), "{socket:?}");
    // the init's variable is not every exec'd process's
    assert_eq!(socket.stdout, "\n", "{socket:?}");
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "60"], secs(90));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    sb.assert_clean();
}
