//! Booting busybox guests with `cradle start`: how init is started, reboots, bad
//! templates, a second start of the same name, exec, and stopping by signal.

use std::fs;
use std::io::Write;
use std::process::Stdio;

use integration_tests::{Sandbox, secs};

fn up_line(sandbox: &Sandbox) -> String {
    // printed by the busybox root's rcS (scripts/make-rootfs); the hostname is the name
    format!("busybox guest {} is up", sandbox.name)
}

fn stop_and_wait(
    sandbox: &Sandbox,
    launcher: integration_tests::Launcher,
) -> integration_tests::Finished {
    let stop = sandbox.run_cradle(&["stop", &sandbox.name], secs(60));
    assert_eq!(stop.code(), Some(0), "stop: {stop:?}");
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "launcher: {done:?}");
    done
}

#[test]
fn init_runs_as_pid_1_with_openvz_argv_and_exactly_the_guest_environment() {
    let sb = Sandbox::busybox("boot-argv-env");
    sb.install_testinit("/sbin/init", "busybox");
    // a variable the user sets wins over the base one, in its place, once
    let mut launcher = sb.start(&["--env", "LANG=C.UTF-8", "-e", "TERM=xterm"]);
    launcher.wait_console(&up_line(&sb), secs(30));

    assert_eq!(sb.testinit_record("pid"), b"1");
    assert_eq!(sb.testinit_record("argv"), b"init\0-z\0      \0");
    // nothing of the launcher's or the shim's leaks in: just the console on 0, 1, 2
    assert_eq!(sb.testinit_record("fds"), b"0\n1\n2\n");
    // (and systemd's container_uuid, a random UUID for a root without a machine id)
    let environ = String::from_utf8_lossy(&sb.testinit_record("environ")).into_owned();
    let uuid = environ
        .split('\0')
        .find_map(|v| v.strip_prefix("container_uuid="))
        .unwrap_or_else(|| panic!("{environ:?}"));
    assert_eq!(uuid.len(), 36, "{uuid}");
    let env = format!(
        "HOME=/\0TERM=xterm\0container={}\0container_uuid={uuid}\0LANG=C.UTF-8\0",
        sb.name
    );
    assert_eq!(environ, env);

    // from inside: PID 1 is init, with that environment and nothing from the host (the
    // test init exec'd busybox init, which keeps argv[0] "init" and clears the rest;
    // busybox ps shows that as "{busybox} init")
    let ps = sb.exec(&["ps", "-o", "pid,args"]);
    assert_eq!(ps.code(), Some(0), "{ps:?}");
    let pid1 = ps
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"));
    assert!(pid1.is_some_and(|l| l.ends_with(" init")), "{ps:?}");
    assert_eq!(
        sb.exec(&["cat", "/proc/1/cmdline"])
            .stdout
            .split('\0')
            .next(),
        Some("init")
    );
    let environ = sb.exec(&["cat", "/proc/1/environ"]);
    assert_eq!(environ.stdout, env);
    let hostname = sb.exec(&["hostname"]);
    assert_eq!(hostname.stdout.trim(), sb.name);

    let done = stop_and_wait(&sb, launcher);
    assert!(done.stderr.contains("the guest halted"), "{done:?}");
    sb.assert_clean();
}

#[test]
fn a_guest_that_reboots_is_booted_again_and_poweroff_ends_the_launcher() {
    let sb = Sandbox::busybox("boot-reboot-counter");
    // the guest itself: reboot on the first boot, power off on the second
    sb.write(
        "/etc/rc.local",
        "#!/bin/sh\n\
         n=$(cat /boots 2>/dev/null || echo 0); n=$((n + 1)); echo $n > /boots\n\
         if [ $n -eq 1 ]; then reboot; else poweroff; fi\n",
        0o755,
    );
    let done = sb.start(&[]).wait(secs(60));
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert_eq!(fs::read_to_string(sb.path("/boots")).unwrap().trim(), "2");
    assert_eq!(
        done.stderr.matches("booting it again").count(),
        1,
        "{done:?}"
    );
    assert!(done.stderr.contains("(boot 2)"), "{done:?}");
    sb.assert_clean();
}

#[test]
fn a_root_without_init_is_a_bad_template_named_in_one_line() {
    let sb = Sandbox::new("bad-template");
    fs::create_dir_all(sb.path("/sbin")).unwrap();
    // present but not executable does not count either
    sb.write("/sbin/init", "not a program", 0o644);
    let root = sb.root.to_str().unwrap().to_owned();
    let done = sb.run_cradle(&["start", &sb.name, "--root", &root], secs(30));
    done.assert_one_line_error(6, "bad template");
    for path in ["/sbin/init", "/etc/init", "/bin/init"] {
        assert!(done.stderr.contains(path), "{done:?}");
    }
    sb.assert_clean();
}

/// Boots the guest, checks that the test init ran as its PID 1, halts it, checks the host.
fn boots_with_the_test_init(sb: &Sandbox) {
    let mut launcher = sb.start(&[]);
    launcher.wait_console(&up_line(sb), secs(30));
    assert_eq!(sb.testinit_record("pid"), b"1");
    stop_and_wait(sb, launcher);
    sb.assert_clean();
}

#[test]
fn etc_init_runs_when_sbin_init_is_absent() {
    let sb = Sandbox::busybox("boot-etc-init");
    fs::remove_file(sb.path("/sbin/init")).unwrap();
    sb.install_testinit("/etc/init", "busybox");
    boots_with_the_test_init(&sb);
}

#[test]
fn an_absolute_symlink_to_init_resolves_inside_the_guest() {
    let sb = Sandbox::busybox("boot-init-symlink");
    // /opt/guest-only/init exists in the guest's root only, not on the host
    sb.install_testinit("/opt/guest-only/init", "busybox");
    fs::remove_file(sb.path("/sbin/init")).unwrap();
    std::os::unix::fs::symlink("/opt/guest-only/init", sb.path("/sbin/init")).unwrap();
    boots_with_the_test_init(&sb);
}

#[test]
fn starting_a_running_name_is_refused_and_leaves_the_guest_alone() {
    let sb = Sandbox::busybox("boot-twice");
    let mut launcher = sb.start(&[]);
    launcher.wait_console(&up_line(&sb), secs(30));
    sb.wait_running(&mut launcher, secs(10));
    let before = fs::read_to_string(sb.state.join(&sb.name).join("init.pid")).unwrap();

    let root = sb.root.to_str().unwrap().to_owned();
    let second = sb.run_cradle(&["start", &sb.name, "--root", &root], secs(10));
    second.assert_one_line_error(3, "already running");

    let after = fs::read_to_string(sb.state.join(&sb.name).join("init.pid")).unwrap();
    assert_eq!(before, after);
    assert_eq!(sb.exec(&["true"]).code(), Some(0));
    stop_and_wait(&sb, launcher);
    sb.assert_clean();
}

#[test]
fn exec_passes_streams_environment_and_exit_status_through() {
    let sb = Sandbox::busybox("exec-io");
    let mut launcher = sb.start(&[]);
    launcher.wait_console(&up_line(&sb), secs(30));

    assert_eq!(sb.exec(&["sh", "-c", "exit 7"]).code(), Some(7));
    assert_eq!(
        sb.exec(&["sh", "-c", "kill -TERM $$"]).code(),
        Some(128 + 15)
    );
    let missing = sb.exec(&["no-such-command"]);
    assert_eq!(missing.code(), Some(127), "{missing:?}");
    assert!(missing.stderr.contains("no-such-command"), "{missing:?}");

    let env = sb.run_cradle(
        &[
            "exec",
            &sb.name,
            "--env",
            "X=y z",
            "--",
            "sh",
            "-c",
            "echo \"$X|$container|$HOME|$PATH\"",
        ],
        secs(30),
    );
    assert_eq!(
        env.stdout.trim(),
        format!(
            "y z|{}|/|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            sb.name
        )
    );

    // standard input reaches the command; it runs in the guest's root, as one of its processes
    let mut cat = sb.cradle([
        "exec",
        sb.name.as_str(),
        "--",
        "sh",
        "-c",
        "cat; echo; cat /proc/1/comm; pwd",
    ]);
    let mut child = cat
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello from the host")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the host\ninit\n/\n"
    );

    stop_and_wait(&sb, launcher);
    sb.assert_clean();
}

#[test]
fn sigterm_to_the_launcher_halts_the_guest_gracefully() {
    let sb = Sandbox::busybox("sigterm-halt");
    sb.write(
        "/etc/rc.local",
        "#!/bin/sh\ntrap 'echo rc-saw-term' TERM\n",
        0o755,
    );
    let mut launcher = sb.start(&[]);
    launcher.wait_console(&up_line(&sb), secs(30));
    launcher.signal(libc::SIGTERM);
    let done = launcher.wait(secs(30));
    assert_eq!(done.code(), Some(0), "{done:?}");
    // busybox init's own shutdown ran: the guest was halted, not killed
    assert!(
        done.stdout.contains("The system is going down NOW!"),
        "{done:?}"
    );
    assert!(
        done.stderr.contains("SIGTERM: halting the guest"),
        "{done:?}"
    );
    assert!(!done.stderr.contains("did not halt"), "{done:?}");
    sb.assert_clean();
}

#[test]
fn the_shim_holds_only_its_streams_and_its_signalfd() {
    let sb = Sandbox::busybox("shim-fds");
    let mut launcher = sb.start(&[]);
    sb.wait_running(&mut launcher, secs(30));
    let shim = integration_tests::only_child(launcher.pid());
    let fds: Vec<String> = integration_tests::open_files(shim)
        .iter()
        .map(|(fd, target)| format!("{fd} -> {}", target.display()))
        .collect();
    assert_eq!(fds.len(), 4, "{fds:#?}");
    assert!(fds.iter().any(|f| f.contains("signalfd")), "{fds:#?}");
    stop_and_wait(&sb, launcher);
    sb.assert_clean();
}

#[test]
fn signals_to_the_shim_reach_the_guest_init_and_do_not_kill_the_shim() {
    let sb = Sandbox::busybox("shim-forwards");
    let mut launcher = sb.start(&[]);
    launcher.wait_console(&up_line(&sb), secs(30));
    let shim = integration_tests::only_child(launcher.pid());
    // SIGTERM to the shim: forwarded; busybox init takes SIGTERM as reboot
    integration_tests::kill(shim, libc::SIGTERM);
    // up again, not just started: a namespace's init gets only the signals it has a
    // handler for, and busybox init sets its handlers before it runs rcS (which prints
    // the line); a slow machine (a VM under TCG) shows the gap
    launcher.wait_for("the second boot to be up", secs(30), |l| {
        sb.boot_number() == Some(2) && l.output().0.matches(&up_line(&sb)).count() == 2
    });
    // SIGUSR2 to the (new) shim: busybox init powers off
    integration_tests::kill(integration_tests::only_child(launcher.pid()), libc::SIGUSR2);
    let done = launcher.wait(secs(30));
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert!(
        done.stdout.contains("Requesting system poweroff"),
        "{done:?}"
    );
    sb.assert_clean();
}

#[test]
fn a_shim_that_cannot_run_in_the_guest_is_a_one_line_setup_error() {
    let sb = Sandbox::busybox("bad-shim");
    // a dynamically linked program has no loader in a busybox root
    let done = sb.start(&["--shim", "/bin/true"]).wait(secs(30));
    done.assert_one_line_error(7, "exec the shim /bin/true");
    sb.assert_clean();
}

#[test]
fn an_init_that_cannot_be_executed_is_a_one_line_setup_error() {
    let sb = Sandbox::busybox("bad-init");
    fs::remove_file(sb.path("/sbin/init")).unwrap();
    // executable, but dynamically linked: its loader is not in the guest
    fs::copy("/bin/true", sb.path("/sbin/init")).unwrap();
    let done = sb.start(&[]).wait(secs(30));
    done.assert_one_line_error(7, "exec /sbin/init: No such file or directory");
    sb.assert_clean();
}
