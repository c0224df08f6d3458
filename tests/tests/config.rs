//! Config files, boot at host start and systemd's container interface, on real busybox
//! guests: `start NAME` from `NAME.toml` with the command line on top, the one-line error
//! of a bad file, `create` and `destroy`, `set --save`, `autostart` and `autostop`,
//! `/run/host`, and `cradle@.service` under a real systemd (the v2-systemd VM shape).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{Finished, Launcher, Sandbox, dist, require_shape, run, secs, workspace};

/// The sandbox's config directory.
fn config_dir(sb: &Sandbox) -> PathBuf {
    sb.dir.join("config")
}

/// `cradle --state-dir STATE --config-dir CONFIG ARGS...`
fn cradle(sb: &Sandbox, args: &[&str]) -> Command {
    let mut command = sb.cradle(["--config-dir"]);
    command.arg(config_dir(sb)).args(args);
    command
}

fn cradle_run(sb: &Sandbox, args: &[&str]) -> Finished {
    run(cradle(sb, args), secs(60))
}

/// Writes the sandbox's config file NAME.toml.
fn write_config(sb: &Sandbox, text: &str) -> PathBuf {
    let path = config_dir(sb).join(format!("{}.toml", sb.name));
    fs::create_dir_all(config_dir(sb)).unwrap();
    fs::write(&path, text).unwrap();
    path
}

fn root_line(sb: &Sandbox) -> String {
    format!("root = \"{}\"\n", sb.root.display())
}

/// `cradle start NAME` (no --root: from the config file) in the background, up.
fn start_from_file(sb: &Sandbox, extra: &[&str], hostname: &str) -> Launcher {
    let mut args = vec!["start", sb.name.as_str()];
    args.extend_from_slice(extra);
    let mut launcher = Launcher::spawn(cradle(sb, &args));
    launcher.wait_console(&format!("busybox guest {hostname} is up"), secs(30));
    sb.wait_running(&mut launcher, secs(10));
    launcher
}

fn stop(sb: &Sandbox, launcher: Launcher) {
    let stop = sb.run_cradle(&["stop", &sb.name], secs(60));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
}

/// The names of a directory's entries.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn start_name_reads_the_config_file_and_the_command_line_wins() {
    let sb = Sandbox::busybox("config-start");
    write_config(
        &sb,
        &format!(
            "# a comment\n{}hostname = \"from-file\"\nenv = [\"A=file\", \"B=file\"]\n\
             pids = 64\nmemory = \"64M\"\ntimeout = 20\n",
            root_line(&sb)
        ),
    );
    let launcher = start_from_file(
        &sb,
        &["-e", "B=cli", "-e", "C=cli", "--pids", "32"],
        "from-file",
    );
    let status = sb.status();
    assert_eq!(
        status["root"],
        sb.root.canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(status["hostname"], "from-file");
    // a limit given on the command line replaces the file's; the others stay
    assert_eq!(status["limits"]["pids"], 32);
    assert_eq!(status["limits"]["memory"], 64u64 << 20);
    // the file's variables, then the command line's: a variable in both has the latter
    let environ = sb.exec(&["cat", "/proc/1/environ"]).stdout;
    let vars: Vec<&str> = environ.split('\0').collect();
    for var in ["A=file", "B=cli", "C=cli"] {
        assert!(vars.contains(&var), "{var}: {vars:?}");
    }
    assert!(!vars.contains(&"B=file"), "{vars:?}");
    stop(&sb, launcher);
    sb.assert_clean();
}

#[test]
fn a_bad_config_file_is_one_line_naming_the_key_and_its_line() {
    let sb = Sandbox::busybox("config-bad");
    write_config(&sb, &format!("{}\nonbot = true\n", root_line(&sb)));
    let done = cradle_run(&sb, &["start", &sb.name]);
    let at = format!("{}.toml:3: unknown key `onbot`", sb.name);
    done.assert_one_line_error(2, &at);
    write_config(&sb, &format!("{}memory = \"lots\"\n", root_line(&sb)));
    let done = cradle_run(&sb, &["start", &sb.name]);
    done.assert_one_line_error(2, &format!("{}.toml:2: bad memory \"lots\"", sb.name));
    // no file and no --root
    fs::remove_dir_all(config_dir(&sb)).unwrap();
    let done = cradle_run(&sb, &["start", &sb.name]);
    done.assert_one_line_error(12, "no config file");
    assert!(done.stderr.contains("give --root"), "{done:?}");
    sb.assert_clean();
}

#[test]
fn create_writes_what_start_reads_and_destroy_refuses_while_the_guest_runs() {
    let sb = Sandbox::busybox("config-create");
    let before = snapshot(&sb.root);
    let root = sb.root.to_str().unwrap();
    let create = cradle_run(
        &sb,
        &[
            "create",
            &sb.name,
            "--root",
            root,
            "--hostname",
            "made",
            "--memory",
            "64M",
        ],
    );
    assert_eq!(create.code(), Some(0), "{create:?}");
    let file = config_dir(&sb).join(format!("{}.toml", sb.name));
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("memory = \"64M\"\n") && text.contains("hostname = \"made\"\n"),
        "{text}"
    );
    // a second create is refused unless --force
    let again = cradle_run(&sb, &["create", &sb.name, "--root", root]);
    again.assert_one_line_error(13, "exists already");
    assert_eq!(fs::read_to_string(&file).unwrap(), text);
    let bad_root = cradle_run(
        &sb,
        &["create", &sb.name, "--root", "/nonexistent", "--force"],
    );
    bad_root.assert_one_line_error(5, "/nonexistent");
    let forced = cradle_run(
        &sb,
        &[
            "create",
            &sb.name,
            "--root",
            root,
            "--hostname",
            "made",
            "--force",
            "--pids",
            "50",
        ],
    );
    assert_eq!(forced.code(), Some(0), "{forced:?}");

    let launcher = start_from_file(&sb, &[], "made");
    assert_eq!(sb.status()["limits"]["pids"], 50);
    let destroy = cradle_run(&sb, &["destroy", &sb.name]);
    destroy.assert_one_line_error(3, "is running");
    assert!(file.exists());
    stop(&sb, launcher);

    let destroy = cradle_run(&sb, &["destroy", &sb.name]);
    assert_eq!(destroy.code(), Some(0), "{destroy:?}");
    assert!(!file.exists());
    let again = cradle_run(&sb, &["destroy", &sb.name]);
    again.assert_one_line_error(12, "no config file");
    // create and destroy never touched the root (the boot did, inside: its /run stays
    // the guest's own tmpfs, and its mount points were there already)
    assert_eq!(snapshot(&sb.root), before);
    sb.assert_clean();
}

#[test]
fn set_save_writes_the_limits_into_the_file_running_or_not() {
    let sb = Sandbox::busybox("config-set-save");
    let file = write_config(
        &sb,
        &format!(
            "{}# the cache needs room\nmemory = \"64M\" # for now\npids = 64\n",
            root_line(&sb)
        ),
    );
    let launcher = start_from_file(&sb, &[], &sb.name);
    let set = sb.run_cradle(
        &["set", &sb.name, "--pids", "32", "--memory", "96M"],
        secs(20),
    );
    assert_eq!(set.code(), Some(0), "{set:?}");
    // without --save the file stays
    assert!(fs::read_to_string(&file).unwrap().contains("pids = 64\n"));
    let save = cradle_run(
        &sb,
        &["set", &sb.name, "--pids", "40", "--cpus", "0.5", "--save"],
    );
    assert_eq!(save.code(), Some(0), "{save:?}");
    let status = sb.status();
    assert_eq!(status["limits"]["pids"], 40);
    assert_eq!(status["limits"]["memory"], 96u64 << 20);
    let text = fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        format!(
            "{}# the cache needs room\nmemory = \"64M\" # for now\npids = 40\ncpus = 0.5\n",
            root_line(&sb)
        )
    );
    stop(&sb, launcher);

    // a guest that is down: --save still writes; without it, not running
    let save = cradle_run(&sb, &["set", &sb.name, "--memory", "80M", "--save"]);
    assert_eq!(save.code(), Some(0), "{save:?}");
    assert!(
        fs::read_to_string(&file)
            .unwrap()
            .contains("memory = \"80M\" # for now\n")
    );
    cradle_run(&sb, &["set", &sb.name, "--memory", "80M"]).assert_one_line_error(4, "not running");
    let swap = cradle_run(
        &sb,
        &["set", &sb.name, "--memory", "max", "--swap", "1M", "--save"],
    );
    swap.assert_one_line_error(2, "--swap needs --memory");
    let launcher = start_from_file(&sb, &[], &sb.name);
    let limits = &sb.status()["limits"];
    assert_eq!(
        (
            limits["pids"].clone(),
            limits["cpus"].clone(),
            limits["memory"].clone()
        ),
        (40.into(), 0.5.into(), (80u64 << 20).into())
    );
    stop(&sb, launcher);
    sb.assert_clean();
}

#[test]
fn a_booted_guest_finds_systemd_s_container_interface_in_run_host() {
    let sb = Sandbox::busybox("config-run-host");
    // this guest keeps the /run cradle gives it (busybox's rcS mounts its own on top)
    let rcs = fs::read_to_string(sb.path("/etc/init.d/rcS")).unwrap();
    let own_run: String = rcs
        .lines()
        .filter(|l| !l.contains(" /run"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(own_run, rcs);
    sb.write("/etc/init.d/rcS", &own_run, 0o755);
    sb.write(
        "/etc/machine-id",
        "0b5f5ffa6e3a4c4f9a8e1d2a3b4c5d6e\n",
        0o444,
    );
    let mut launcher = sb.start(&[]);
    launcher.wait_console(&format!("busybox guest {} is up", sb.name), secs(30));
    let cat = |path: &str| {
        let done = sb.exec(&["cat", path]);
        assert_eq!(done.code(), Some(0), "{done:?}");
        done.stdout
    };
    assert_eq!(cat("/run/host/container-manager"), "cradle\n");
    // the guest's machine id, as a UUID, in the file and in the init's environment
    let uuid = "0b5f5ffa-6e3a-4c4f-9a8e-1d2a3b4c5d6e";
    assert_eq!(cat("/run/host/container-uuid"), format!("{uuid}\n"));
    let environ = cat("/proc/1/environ");
    assert!(
        environ
            .split('\0')
            .any(|v| v == format!("container_uuid={uuid}")),
        "{environ:?}"
    );
    assert!(
        environ
            .split('\0')
            .any(|v| v == format!("container={}", sb.name)),
        "{environ:?}"
    );
    assert_eq!(
        cat("/run/host/os-release"),
        fs::read_to_string("/etc/os-release").unwrap()
    );
    // /run is the guest's to write; /run/host is read-only, and stays so
    let touch = sb.exec(&["sh", "-c", "touch /run/mine && ls -ld /run"]);
    assert_eq!(touch.code(), Some(0), "{touch:?}");
    assert!(
        touch.stdout.starts_with("drwxr-xr-x") && touch.stdout.contains(" root "),
        "{touch:?}"
    );
    for attempt in [
        "echo x >/run/host/container-manager",
        "touch /run/host/new",
        "mount -o remount,rw /run/host",
        "umount /run/host",
    ] {
        let done = sb.exec(&["sh", "-c", attempt]);
        assert_ne!(done.code(), Some(0), "{attempt}: {done:?}");
    }
    assert_eq!(cat("/run/host/container-manager"), "cradle\n");
    stop(&sb, launcher);
    sb.assert_clean();
}

/// Two busybox guests' worth of sandboxes, one config and state directory (the first's).
fn guests(test: &str, names: &[&str]) -> Vec<Sandbox> {
    names
        .iter()
        .map(|n| Sandbox::busybox(&format!("{test}-{n}")))
        .collect()
}

#[test]
fn autostart_goes_on_after_a_failure_and_says_which() {
    let sb = Sandbox::new("config-autostart-fail");
    fs::create_dir_all(config_dir(&sb)).unwrap();
    let file = |name: &str, text: &str| {
        fs::write(config_dir(&sb).join(format!("{name}.toml")), text).unwrap()
    };
    file(
        "x",
        "root = \"/nonexistent/x\"\nonboot = true\nbootorder = 9\n",
    );
    file("y", "root = \"/nonexistent/y\"\nonbot = true\n");
    file(
        "z",
        "root = \"/nonexistent/z\"\nonboot = false\nbootorder = 99\n",
    );
    file("not a guest", "onboot = true\n");
    let start = cradle_run(&sb, &["autostart"]);
    assert_eq!(start.code(), Some(14), "{start:?}");
    let lines: Vec<&str> = start.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{start:?}");
    assert!(lines[0].starts_with("x: failed"), "{start:?}");
    assert!(
        lines[1].starts_with("y: failed: ") && lines[1].contains("y.toml:2: unknown key `onbot`"),
        "{start:?}"
    );
    start.assert_one_line_error(14, "2 of 2 guests did not start: x, y");
    let stop = cradle_run(&sb, &["autostop"]);
    let lines: Vec<&str> = stop.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stop:?}");
    assert!(lines[0].starts_with("y: failed"), "{stop:?}");
    assert_eq!(lines[1], "x: not running", "{stop:?}");
    stop.assert_one_line_error(14, "1 of 2 guests did not stop: y");
}

/// Guests that autostart started (in the state directory of the first of them): powered
/// off if the test fails, so that none outlives it.
struct PowerOffOnFailure<'a>(&'a [Sandbox]);

impl Drop for PowerOffOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for sb in self.0 {
                let _ = self.0[0].run_cradle(&["stop", &sb.name, "--mode", "kill"], secs(30));
            }
        }
    }
}

#[test]
fn autostart_starts_onboot_guests_by_bootorder_and_autostop_stops_them_backwards() {
    let all = guests("config-autostart", &["a", "b", "c", "d"]);
    let _guard = PowerOffOnFailure(&all);
    let home = &all[0];
    fs::create_dir_all(config_dir(home)).unwrap();
    for (sb, options) in all.iter().zip([
        "onboot = true\nbootorder = 1\n",
        "onboot = true\nbootorder = 5\n",
        "onboot = false\nbootorder = 9\n",
        "onboot = true\n",
    ]) {
        let text = format!("{}{options}", root_line(sb));
        fs::write(config_dir(home).join(format!("{}.toml", sb.name)), text).unwrap();
    }
    let start = cradle_run(home, &["autostart"]);
    assert_eq!(start.code(), Some(0), "{start:?}");
    let (a, b, c, d) = (&all[0].name, &all[1].name, &all[2].name, &all[3].name);
    assert_eq!(
        start.stdout,
        format!("{b}: started\n{a}: started\n{d}: started\n"),
        "{start:?}"
    );
    // one after the other, each up before the next: their inits' pids in that order
    let init = |name: &str| {
        let done = home.run_cradle(&["status", name, "--json"], secs(20));
        assert_eq!(done.code(), Some(0), "{done:?}");
        let status: serde_json::Value = serde_json::from_str(&done.stdout).unwrap();
        status["init_pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("{status}"))
    };
    assert!(init(b) < init(a) && init(a) < init(d));
    let c_status = home.run_cradle(&["status", c], secs(20));
    assert_eq!(c_status.code(), Some(4), "onboot = false: {c_status:?}");
    // again: nothing to do, and no failure
    let again = cradle_run(home, &["autostart"]);
    assert_eq!(again.code(), Some(0), "{again:?}");
    assert!(
        again.stdout.contains(&format!("{b}: already running")),
        "{again:?}"
    );

    let stop = cradle_run(home, &["autostop"]);
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert_eq!(
        stop.stdout,
        format!("{d}: stopped\n{a}: stopped\n{b}: stopped\n"),
        "{stop:?}"
    );
    for sb in &all {
        sb.assert_clean();
    }
}

/// A guest that is not up within its `timeout` is left booting, reported, and the others
/// go on; nothing of autostart's waits on for it.
#[test]
fn autostart_leaves_a_guest_that_is_not_up_in_time_booting_and_goes_on() {
    let all = guests("config-autostart-late", &["slow", "next"]);
    let _guard = PowerOffOnFailure(&all);
    let home = &all[0];
    fs::create_dir_all(config_dir(home)).unwrap();
    all[0].init_as_silent_systemd();
    for (sb, options) in all.iter().zip([
        "onboot = true\nbootorder = 2\ntimeout = 1\n",
        "onboot = true\n",
    ]) {
        let text = format!("{}{options}", root_line(sb));
        fs::write(config_dir(home).join(format!("{}.toml", sb.name)), text).unwrap();
    }
    let start = cradle_run(home, &["autostart"]);
    let (slow, next) = (&all[0].name, &all[1].name);
    assert_eq!(
        start.stdout,
        format!("{slow}: failed: not up within 1s; left booting\n{next}: started\n"),
        "{start:?}"
    );
    start.assert_one_line_error(14, &format!("1 of 2 guests did not start: {slow}"));
    // the guest boots on under its monitor, and that monitor is the one `start
    // --detach` process left of it: the one that waited was ended
    assert_eq!(all[0].status()["state"], "running");
    let detached = integration_tests::processes_naming(slow)
        .into_iter()
        .filter(|p| p.contains("--detach"))
        .count();
    assert_eq!(
        detached,
        1,
        "{:?}",
        integration_tests::processes_naming(slow)
    );

    let stop = cradle_run(home, &["autostop"]);
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    for sb in &all {
        sb.assert_clean();
    }
}

/// The unit as the repository has it, with the binary from dist/ and, in a drop-in, the
/// test's config and state directories.
fn install_unit(sb: &Sandbox) {
    let unit = fs::read_to_string(workspace().join("dist-files/cradle@.service")).unwrap();
    let unit = unit.replace("/usr/local/bin/cradle", dist("cradle").to_str().unwrap());
    fs::write("/run/systemd/system/cradle@.service", unit).unwrap();
    let dropin = format!("/run/systemd/system/cradle@{}.service.d", sb.name);
    fs::create_dir_all(&dropin).unwrap();
    let conf = config_dir(sb);
    fs::write(
        format!("{dropin}/test.conf"),
        format!(
            "[Unit]\nConditionPathExists=\nConditionPathExists={}/%i.toml\n\
             [Service]\nEnvironment=CRADLE_CONFIG_DIR={} CRADLE_STATE_DIR={}\n",
            conf.display(),
            conf.display(),
            sb.state.display()
        ),
    )
    .unwrap();
    systemctl(&["daemon-reload"]);
}

fn systemctl(args: &[&str]) -> Finished {
    let mut command = Command::new("systemctl");
    command.args(args);
    run(command, secs(120))
}

fn unit_property(unit: &str, property: &str) -> String {
    systemctl(&["show", "-P", property, unit])
        .stdout
        .trim()
        .to_owned()
}

#[test]
fn cradle_at_service_runs_a_guest_under_systemd_and_restarts_a_failed_launcher() {
    require_shape!("systemd as PID 1", |host| host.systemd);
    let sb = Sandbox::busybox("config-unit");
    write_config(&sb, &format!("{}timeout = 20\n", root_line(&sb)));
    install_unit(&sb);
    let unit = format!("cradle@{}.service", sb.name);
    let start = systemctl(&["start", &unit]);
    assert_eq!(start.code(), Some(0), "{start:?}");
    // up: the unit's main process is the launcher of a running guest whose init is not
    // `not_init` (a launcher killed by SIGKILL leaves its init.pid behind until the next
    // one sweeps it: that one must not count)
    let up = |not_init: i64| -> Option<(i64, i64)> {
        let main: i64 = unit_property(&unit, "MainPID").parse().unwrap_or(0);
        let done = sb.run_cradle(&["status", &sb.name, "--json"], secs(20));
        let status: serde_json::Value = serde_json::from_str(&done.stdout).ok()?;
        let init = status["init_pid"].as_i64()?;
        (main > 0
            && status["state"] == "running"
            && status["launcher_pid"] == main
            && init != not_init)
            .then_some((main, init))
    };
    let wait_up = |not_init: i64| {
        let deadline = std::time::Instant::now() + secs(60);
        loop {
            if let Some(up) = up(not_init) {
                return up;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{unit} is not up: {}",
                systemctl(&["status", &unit]).stdout
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let (first, first_init) = wait_up(0);
    assert_eq!(unit_property(&unit, "ActiveState"), "active");
    assert_eq!(sb.status()["launcher_pid"], first);
    assert_eq!(sb.exec(&["hostname"]).stdout.trim(), sb.name);
    // a launcher that dies is started again (Restart=on-failure), and its guest with it
    integration_tests::kill(first as i32, libc::SIGKILL);
    let (second, _) = wait_up(first_init);
    assert_ne!(second, first);
    assert_eq!(sb.status()["state"], "running");
    let stop = systemctl(&["stop", &unit]);
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert_eq!(unit_property(&unit, "ActiveState"), "inactive");
    assert_eq!(unit_property(&unit, "Result"), "success", "{second}");
    let _ = fs::remove_dir_all(format!("/run/systemd/system/cradle@{}.service.d", sb.name));
    let _ = fs::remove_file("/run/systemd/system/cradle@.service");
    systemctl(&["daemon-reload"]);
    sb.assert_clean();
}
