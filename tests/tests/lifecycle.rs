//! A guest's life around its launcher: names held while a container runs, leftovers of a
//! launcher that was killed.

use std::time::Duration;

use integration_tests::{Sandbox, cgroup_v2_root, kill, secs};

#[test]
fn run_holds_its_name_so_a_start_of_it_is_refused() {
    let sb = Sandbox::busybox("life-run-name");
    let mut running = integration_tests::Launcher::spawn(sb.run_command(&[], &["sleep", "3"]));
    let lock = sb.state.join(&sb.name).join("lock");
    running.wait_for("run to hold its name", secs(10), |_| lock.exists());
    let refused = sb.run_cradle(
        &["start", &sb.name, "--root", sb.root.to_str().unwrap()],
        secs(20),
    );
    refused.assert_one_line_error(3, &sb.name);
    let done = running.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    sb.assert_clean();
}

#[test]
fn what_a_killed_launcher_leaves_is_swept_by_the_next_start() {
    let sb = Sandbox::busybox("life-killed");
    let mut launcher = sb.start(&[]);
    launcher.wait_console("is up", secs(30));
    let cgroup = cgroup_v2_root().join(format!("cradle.{}", sb.name));
    assert!(cgroup.is_dir());
    // SIGKILL: no cleanup of its own; its container dies with it (parent-death signal)
    kill(launcher.pid(), libc::SIGKILL);
    let _ = launcher.wait(secs(10));
    let events = cgroup.join("cgroup.events");
    let deadline = std::time::Instant::now() + secs(10);
    while std::fs::read_to_string(&events).is_ok_and(|e| e.contains("populated 1")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the container outlived its launcher"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cgroup.is_dir(),
        "the killed launcher's cgroup is left, for the sweep to find"
    );
    assert!(sb.state.join(&sb.name).join("lock").exists());
    // any start or run sweeps it, with its state directory: here a run of another name,
    // with a state directory of its own (the cgroup says whose it is)
    let other = Sandbox::busybox("life-killed-other");
    let done = other.run_in(&[], &["true"]);
    assert_eq!(done.code(), Some(0), "{done:?}");
    other.assert_clean();
    sb.assert_clean();
}
