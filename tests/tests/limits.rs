//! Resource limits, `cradle set` and `cradle status`, on real busybox guests. Every limit
//! is checked by what the guest can do under it (a fork storm, a memory hog, a spinner)
//! and by the cgroup file that holds it, which is in the container's v2 cgroup on a pure
//! v2 host and in its v1 cgroups on a hybrid one: each test runs on both.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{Finished, Launcher, Sandbox, proc_status, secs};
use serde_json::Value;

fn start(sb: &Sandbox, extra: &[&str]) -> Launcher {
    sb.install_escape();
    let mut launcher = sb.start(extra);
    launcher.wait_console("is up", secs(30));
    launcher
}

fn stop(sb: &Sandbox, launcher: Launcher) {
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "20"], secs(40));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    sb.assert_clean();
}

/// The file that holds a limit on this host: `v2` in the container's cgroup, or, on a
/// hybrid host, `file` in its cgroup of the v1 `hierarchy` (status names both).
fn limit_path(status: &Value, v2: &str, (hierarchy, file): (&str, &str)) -> PathBuf {
    let v1 = status["cgroups_v1"].as_object().expect("cgroups_v1");
    match v1
        .iter()
        .find(|(name, _)| name.split(',').any(|c| c == hierarchy))
    {
        Some((_, dir)) => Path::new(dir.as_str().unwrap()).join(file),
        None => Path::new(status["cgroup"].as_str().unwrap()).join(v2),
    }
}

fn read_limit(status: &Value, v2: &str, v1: (&str, &str)) -> String {
    let path = limit_path(status, v2, v1);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// On a v2 host "max" where a v1 one says "-1" (memory, CPU quota).
fn is_unlimited(text: &str) -> bool {
    text == "max" || text == "-1" || text.starts_with("max ") || text == "9223372036854771712"
}

fn usage(sb: &Sandbox, what: &str) -> f64 {
    sb.status()["usage"][what]
        .as_f64()
        .unwrap_or_else(|| panic!("usage {what}: {}", sb.status()))
}

/// Waits until `done` holds, or fails after `timeout` saying `what`.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `/escape storm` in the guest, in the background: it holds every process slot
/// it gets and keeps asking for more.
fn start_storm(sb: &Sandbox) {
    let storm = sb.exec(&["sh", "-c", "/escape storm >/dev/null 2>&1 &"]);
    assert_eq!(storm.code(), Some(0), "{storm:?}");
}

#[test]
fn a_fork_storm_stops_at_pids_and_stop_still_halts_the_guest_within_its_timeout() {
    let sb = Sandbox::busybox("limits-storm");
    let launcher = start(&sb, &["--pids", "24", "--cpus", "0.2"]);
    start_storm(&sb);
    wait_until("the storm to fill --pids", secs(20), || {
        usage(&sb, "pids") >= 24.0
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(usage(&sb, "pids"), 24.0, "held at --pids");
    // the kernel counted the refused forks
    let status = sb.status();
    let events = read_limit(&status, "pids.events", ("pids", "pids.events"));
    let refused: u64 = events
        .strip_prefix("max ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "pids.events: {events}");
    // nothing more gets in, not even exec: a one-line error
    let exec = sb.exec(&["true"]);
    assert_ne!(exec.code(), Some(0), "{exec:?}");
    assert_eq!(exec.stderr.lines().count(), 1, "{exec:?}");
    // the halt cannot get in either; the power-off needs no slot in the guest
    let asked = Instant::now();
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "3"], secs(30));
    let took = asked.elapsed();
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert!(took < secs(6), "stop took {took:?} with --timeout 3");
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    sb.assert_clean();
}

#[test]
fn the_launcher_powers_off_a_guest_in_a_fork_storm_too() {
    let sb = Sandbox::busybox("limits-storm-signal");
    let launcher = start(&sb, &["--pids", "16", "--cpus", "0.2", "--timeout", "2"]);
    start_storm(&sb);
    wait_until("the storm to fill --pids", secs(20), || {
        usage(&sb, "pids") >= 16.0
    });
    let asked = Instant::now();
    launcher.signal(libc::SIGTERM);
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert!(asked.elapsed() < secs(5), "took {:?}", asked.elapsed());
    sb.assert_clean();
}

#[test]
fn a_memory_hog_is_oom_killed_and_the_guest_lives_on() {
    let sb = Sandbox::busybox("limits-hog");
    let launcher = start(&sb, &["--memory", "48M", "--swap", "0"]);
    let init = sb.init_pid();
    let hog = sb.exec(&["/escape", "hog", "128"]);
    assert_eq!(hog.code(), Some(137), "killed by SIGKILL: {hog:?}");
    assert!(!hog.stdout.contains("hogged"), "{hog:?}");
    // the guest and its init live on, and say what happened
    let status = sb.status();
    assert_eq!(status["state"], "running");
    assert_eq!(status["init_pid"], init);
    assert!(
        status["usage"]["oom_kills"].as_u64().unwrap() >= 1,
        "{status}"
    );
    if let Some(peak) = memory_peak(&status["usage"]) {
        assert!(
            (40 << 20..=49 << 20).contains(&peak),
            "peak {peak} near the limit"
        );
    }
    let alive = sb.exec(&["/escape", "hog", "8"]);
    assert_eq!(alive.stdout.trim(), "hogged 8", "{alive:?}");
    assert_eq!(proc_status(init, "State").chars().next(), Some('S'));
    stop(&sb, launcher);
}

#[test]
fn a_spinner_is_held_near_its_cpus_share() {
    let sb = Sandbox::busybox("limits-cpus");
    let launcher = start(&sb, &["--cpus", "0.25"]);
    let spin = sb.exec(&["/escape", "spin", "3"]);
    let cpu: f64 = spin
        .stdout
        .trim()
        .strip_prefix("cpu ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{spin:?}"));
    // 0.25 CPU for 4 s is 1 s of CPU time; the quota is enforced per 100 ms period
    assert!(
        cpu <= 1.0 * 1.15 + 0.05,
        "{cpu} s of CPU in 4 s at --cpus 0.25"
    );
    assert!(cpu >= 0.5, "{cpu} s of CPU in 4 s: the spinner barely ran");
    let status = sb.status();
    let quota = read_limit(&status, "cpu.max", ("cpu", "cpu.cfs_quota_us"));
    assert!(quota == "25000 100000" || quota == "25000", "{quota}");
    stop(&sb, launcher);
}

#[test]
fn set_changes_a_running_guest_s_limits_and_its_reboots_keep_them() {
    let sb = Sandbox::busybox("limits-set");
    let mut launcher = start(&sb, &["--pids", "64", "--memory", "128M"]);
    let set = sb.run_cradle(
        &[
            "set",
            &sb.name,
            "--pids",
            "32",
            "--memory",
            "96M",
            "--swap",
            "16M",
            "--cpus",
            "1.5",
            "--cpu-weight",
            "50",
        ],
        secs(20),
    );
    assert_eq!(set.code(), Some(0), "{set:?}");
    assert_eq!(set.stdout, "", "{set:?}");
    let check = |boot: u64| {
        let status = sb.status();
        assert_eq!(status["boot"], boot);
        let limits = &status["limits"];
        assert_eq!(limits["pids"], 32);
        assert_eq!(limits["memory"], 96u64 << 20);
        assert_eq!(limits["swap"], 16u64 << 20);
        assert_eq!(limits["cpus"], 1.5);
        assert_eq!(limits["cpu_weight"], 50);
        assert_eq!(read_limit(&status, "pids.max", ("pids", "pids.max")), "32");
        assert_eq!(
            read_limit(&status, "memory.max", ("memory", "memory.limit_in_bytes")),
            (96u64 << 20).to_string()
        );
        let swap = read_limit(
            &status,
            "memory.swap.max",
            ("memory", "memory.memsw.limit_in_bytes"),
        );
        assert!(
            swap == (16u64 << 20).to_string() || swap == (112u64 << 20).to_string(),
            "swap (v1: memory and swap) {swap}"
        );
        let quota = read_limit(&status, "cpu.max", ("cpu", "cpu.cfs_quota_us"));
        assert!(quota == "150000 100000" || quota == "150000", "{quota}");
        let weight = read_limit(&status, "cpu.weight", ("cpu", "cpu.shares"));
        assert!(weight == "50" || weight == "512", "{weight}");
    };
    check(1);
    let reboot = sb.run_cradle(&["stop", &sb.name, "--mode", "reboot"], secs(40));
    assert_eq!(reboot.code(), Some(0), "{reboot:?}");
    launcher.wait_for("the second boot", secs(30), |_| sb.boot_number() == Some(2));
    check(2);
    // max takes a limit away
    let unset = sb.run_cradle(&["set", &sb.name, "--pids", "max"], secs(20));
    assert_eq!(unset.code(), Some(0), "{unset:?}");
    let status = sb.status();
    assert_eq!(status["limits"]["pids"], Value::Null);
    assert!(is_unlimited(&read_limit(
        &status,
        "pids.max",
        ("pids", "pids.max")
    )));
    stop(&sb, launcher);
}

#[test]
fn a_guest_started_without_limits_gets_them_from_set() {
    let sb = Sandbox::busybox("limits-set-late");
    // no limit at all: the default --pids taken away
    let launcher = start(&sb, &["--pids", "max"]);
    let before = sb.status();
    assert_eq!(before["limits"]["pids"], Value::Null);
    // on a hybrid host, no v1 cgroup until a limit needs one: the guest is moved into them
    let set = sb.run_cradle(
        &["set", &sb.name, "--pids", "12", "--cpus", "0.2"],
        secs(20),
    );
    assert_eq!(set.code(), Some(0), "{set:?}");
    start_storm(&sb);
    wait_until("the storm to fill --pids", secs(20), || {
        usage(&sb, "pids") >= 12.0
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(usage(&sb, "pids"), 12.0, "held at the --pids set later");
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "2"], secs(30));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    assert_eq!(launcher.wait(secs(20)).code(), Some(0));
    sb.assert_clean();
}

#[test]
fn status_json_says_what_the_guest_is_and_uses() {
    let sb = Sandbox::busybox("limits-status");
    let launcher = start(
        &sb,
        &[
            "--memory",
            "256M",
            "--pids",
            "100",
            "--hostname",
            "box",
            "--cpus",
            "2",
        ],
    );
    let spin = sb.exec(&["/escape", "spin", "0.3"]);
    assert_eq!(spin.code(), Some(0), "{spin:?}");
    let status = sb.status();
    let fields: Vec<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    for field in [
        "name",
        "state",
        "launcher_pid",
        "init_pid",
        "boot",
        "started_at",
        "uptime_seconds",
        "root",
        "hostname",
        "userns",
        "limits",
        "usage",
        "cgroup",
        "cgroups_v1",
        "network",
    ] {
        assert!(fields.contains(&field), "{field} in {status}");
    }
    assert_eq!(fields.len(), 15, "{status}");
    assert_eq!(status["network"]["mode"], "none");
    assert_eq!(status["name"], sb.name.as_str());
    assert_eq!(status["state"], "running");
    assert_eq!(status["launcher_pid"], launcher.pid());
    assert_eq!(status["init_pid"], sb.init_pid());
    assert_eq!(status["boot"], 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let started = status["started_at"].as_u64().unwrap();
    assert!(started <= now && now - started < 60, "{started} {now}");
    let uptime = status["uptime_seconds"].as_f64().unwrap();
    assert!((0.0..60.0).contains(&uptime), "{uptime}");
    assert_eq!(
        Path::new(status["root"].as_str().unwrap()),
        sb.root.canonicalize().unwrap()
    );
    assert_eq!(status["hostname"], "box");
    let host_uid: u64 = proc_status(sb.init_pid(), "Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(status["userns"]["base"], host_uid);
    assert_eq!(status["userns"]["size"], 65536);
    let limits = &status["limits"];
    assert_eq!(limits["memory"], 256u64 << 20);
    assert_eq!(limits["swap"], Value::Null);
    assert_eq!(limits["pids"], 100);
    assert_eq!(limits["cpus"], 2.0);
    assert_eq!(limits["cpu_weight"], Value::Null);
    let usage = &status["usage"];
    let memory = usage["memory"].as_u64().unwrap();
    let peak = memory_peak(usage).unwrap_or(memory);
    assert!(memory > 0 && memory <= peak && peak <= 256 << 20, "{usage}");
    // the shim, busybox init, the console's shell: at least three
    let pids = usage["pids"].as_u64().unwrap();
    assert!((3..=100).contains(&pids), "{usage}");
    let cpu = usage["cpu_seconds"].as_f64().unwrap();
    assert!(cpu >= 0.2, "the spinner's 0.3 s are counted: {usage}");
    assert_eq!(usage["oom_kills"], 0);
    let cgroup = status["cgroup"].as_str().unwrap();
    assert!(
        cgroup.ends_with(&format!("/cradle.{}", sb.name)),
        "{cgroup}"
    );
    assert!(Path::new(cgroup).is_dir());
    for (_, dir) in status["cgroups_v1"].as_object().unwrap() {
        assert!(Path::new(dir.as_str().unwrap()).is_dir(), "{dir}");
    }
    // the text says the same
    let text = sb.run_cradle(&["status", &sb.name], secs(20));
    assert_eq!(text.code(), Some(0), "{text:?}");
    assert!(text.stdout.contains("state:          running"), "{text:?}");
    assert!(text.stdout.contains("limit 256M"), "{text:?}");
    stop(&sb, launcher);
}

#[test]
fn list_shows_every_running_guest() {
    let a = Sandbox::busybox("limits-list-a");
    let b = Sandbox::busybox("limits-list-b");
    let first = start(&a, &["--pids", "50"]);
    // the second under the first's state directory, as two guests under the default one
    b.install_escape();
    let mut start_b = a.cradle(["start", b.name.as_str(), "--root"]);
    start_b.arg(&b.root);
    let mut second = Launcher::spawn(start_b);
    second.wait_console("is up", secs(30));
    let list = a.run_cradle(&["list", "--json"], secs(20));
    assert_eq!(list.code(), Some(0), "{list:?}");
    let all: Value = serde_json::from_str(&list.stdout).unwrap();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [a.name.as_str(), b.name.as_str()]);
    assert_eq!(all[0]["limits"]["pids"], 50);
    assert_eq!(all[1]["state"], "running");
    // the default ceiling of a guest whose options say nothing
    assert_eq!(all[1]["limits"]["pids"], 16384);
    assert_eq!(
        read_limit(&all[1], "pids.max", ("pids", "pids.max")),
        "16384"
    );
    let text = a.run_cradle(&["list"], secs(20));
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert!(lines[0].starts_with("NAME "), "{text:?}");
    assert!(lines[2].starts_with(&b.name), "{text:?}");
    let stop_b = a.run_cradle(&["stop", &b.name], secs(40));
    assert_eq!(stop_b.code(), Some(0), "{stop_b:?}");
    assert_eq!(second.wait(secs(20)).code(), Some(0));
    assert!(!a.state.join(&b.name).exists());
    b.assert_clean();
    stop(&a, first);
    let empty = a.run_cradle(&["list", "--json"], secs(20));
    assert_eq!(empty.stdout.trim(), "[]", "{empty:?}");
}

#[test]
fn status_and_set_of_a_name_that_is_not_running_exit_4() {
    let sb = Sandbox::new("limits-not-running");
    for args in [
        vec!["status", sb.name.as_str()],
        vec!["status", sb.name.as_str(), "--json"],
        vec!["set", sb.name.as_str(), "--pids", "5"],
    ] {
        let done = sb.run_cradle(&args, secs(20));
        done.assert_one_line_error(4, &format!("{} is not running", sb.name));
        assert_eq!(done.stdout, "", "{done:?}");
    }
    sb.assert_clean();
}

/// Runs `cradle` with `args` and checks it refused them with one line naming `naming`.
fn refused(sb: &Sandbox, args: &[&str], naming: &str) -> Finished {
    let done = sb.run_cradle(args, secs(20));
    done.assert_one_line_error(2, naming);
    sb.assert_clean();
    done
}

#[test]
fn bad_limit_values_are_one_line_errors_and_make_nothing() {
    let sb = Sandbox::busybox("limits-bad");
    let root = sb.root.to_str().unwrap().to_owned();
    let bad: [(&[&str], &str); 6] = [
        (&["--memory", "lots"], "\"lots\""),
        (&["--pids", "0"], "--pids \"0\""),
        (&["--cpus", "-1"], "--cpus \"-1\""),
        (&["--cpu-weight", "0"], "--cpu-weight \"0\""),
        (&["--memory", "100K"], "at least 1M"),
        (&["--swap", "1G"], "--swap needs --memory"),
    ];
    for (option, naming) in bad {
        let mut start = vec!["start", sb.name.as_str(), "--root", &root];
        start.extend_from_slice(option);
        refused(&sb, &start, naming);
        let mut run = vec!["run", "--root", &root, "--name", sb.name.as_str()];
        run.extend_from_slice(option);
        run.extend(["--", "true"]);
        refused(&sb, &run, naming);
    }
    // and on a running guest, which keeps its limits
    let launcher = start(&sb, &["--pids", "40"]);
    for (option, naming) in bad {
        let mut set = vec!["set", sb.name.as_str()];
        set.extend_from_slice(option);
        let done = sb.run_cradle(&set, secs(20));
        done.assert_one_line_error(2, naming);
    }
    let nothing = sb.run_cradle(&["set", &sb.name], secs(20));
    nothing.assert_one_line_error(2, "--memory");
    assert_eq!(sb.status()["limits"]["pids"], 40);
    stop(&sb, launcher);
}

/// Writes "max" into `path` as host uid and gid `uid`, with no capability: what the
/// guest's root is on the host.
fn write_as(uid: u64, path: &Path) -> std::process::Output {
    Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_owned(),
            "--inh-caps=-all".to_owned(),
            "--bounding-set=-all".to_owned(),
            "--".to_owned(),
            "sh".to_owned(),
            "-c".to_owned(),
            "echo max > \"$0\"".to_owned(),
        ])
        .arg(path)
        .output()
        .unwrap()
}

/// The limit files of a cgroup directory (every `memory.*`, `pids.*`, `cpu.*` file that is
/// not read-only).
fn limit_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mode = entry.metadata().unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        if ["memory.", "pids.", "cpu."]
            .iter()
            .any(|p| name.starts_with(p))
            && mode.mode() & 0o200 != 0
        {
            files.push(entry.path());
        }
    }
    files
}

#[test]
fn the_guest_s_root_cannot_raise_its_limits() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::busybox("limits-own");
    let launcher = start(&sb, &["--memory", "64M", "--pids", "40", "--cpus", "1"]);
    // in the guest: whatever it sees of its cgroup, writing a limit is refused
    let tries = sb.exec(&[
        "sh",
        "-c",
        "cd /sys/fs/cgroup; for f in memory.max memory.swap.max pids.max cpu.max cpu.weight \
         ../memory.max ../pids.max; do echo max > $f 2>/dev/null && echo \"wrote $f\"; done; \
         mkdir -p sub && for f in sub/pids.max sub/memory.max; do echo max > $f 2>/dev/null \
         && echo \"wrote $f\"; done; rmdir sub; true",
    ]);
    assert_eq!(tries.code(), Some(0), "{tries:?}");
    assert_eq!(tries.stdout, "", "{tries:?}");
    // from the host: every limit file of the container's cgroups belongs to the host's
    // root, and the guest's root (its host uid, no capability) cannot write one; that
    // includes those the shim's leaf reaches as its parent's
    let status = sb.status();
    let base = status["userns"]["base"].as_u64().unwrap();
    let v2 = PathBuf::from(status["cgroup"].as_str().unwrap());
    let mut dirs = vec![v2.clone(), v2.join("shim"), v2.join("guest")];
    for (_, dir) in status["cgroups_v1"].as_object().unwrap() {
        dirs.push(PathBuf::from(dir.as_str().unwrap()));
    }
    let mut checked = 0;
    for dir in &dirs {
        for file in limit_files(dir) {
            let meta = fs::metadata(&file).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (0, 0), "{}", file.display());
            let wrote = write_as(base, &file);
            assert!(
                !wrote.status.success(),
                "uid {base} wrote {}",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "limit files checked: {checked} in {dirs:?}");
    // the shim's leaf is not the guest's: none of it is delegated
    let shim_leaf = fs::metadata(v2.join("shim/cgroup.procs")).unwrap();
    assert_eq!(shim_leaf.uid(), 0);
    // the limits are where they were
    let status = sb.status();
    assert_eq!(read_limit(&status, "pids.max", ("pids", "pids.max")), "40");
    stop(&sb, launcher);
}

#[test]
fn run_mode_takes_the_same_limits() {
    let sb = Sandbox::busybox("limits-run");
    sb.install_escape();
    let root = sb.root.to_str().unwrap().to_owned();
    let run = |extra: &[&str], command: &[&str]| {
        let mut args = vec!["run", "--root", &root, "--name", &sb.name];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(command);
        sb.run_cradle(&args, secs(60))
    };
    let hog = run(
        &["--memory", "32M", "--swap", "0"],
        &["/escape", "hog", "96"],
    );
    assert_eq!(hog.code(), Some(137), "{hog:?}");
    // the shim and the command are two of the five: three of its eight forks get a process
    let forks = run(&["--pids", "5"], &["/escape", "storm", "8"]);
    assert_eq!(forks.stdout.trim(), "forked 3 of 8", "{forks:?}");
    let spin = run(&["--cpus", "0.2"], &["/escape", "spin", "2"]);
    let cpu: f64 = spin.stdout.trim()[4..].parse().unwrap();
    assert!(
        cpu <= 0.4 * 1.15 + 0.05,
        "{cpu} s of CPU in 2 s at --cpus 0.2"
    );
    // in run mode the command sees its container's cgroup, limits and all, and cannot
    // write them
    let own = run(
        &["--pids", "9"],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids.max 2>/dev/null; echo max > /sys/fs/cgroup/pids.max \
             2>/dev/null && echo wrote; true",
        ],
    );
    assert!(!own.stdout.contains("wrote"), "{own:?}");
    sb.assert_clean();
}

/// `usage.memory_peak` of `status --json`, which a v2 host has from Linux 5.19 on
/// (`memory.peak`): none before, and `status` says none then.
fn memory_peak(usage: &Value) -> Option<u64> {
    let v2_before_peak = integration_tests::v1_cgroups().is_empty()
        && integration_tests::HostShape::current().kernel_version() < (5, 19);
    if v2_before_peak {
        assert_eq!(usage["memory_peak"], Value::Null, "{usage}");
        return None;
    }
    Some(usage["memory_peak"].as_u64().expect("usage.memory_peak"))
}
