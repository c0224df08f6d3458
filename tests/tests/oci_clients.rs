//! `cradle-oci` under the real clients that drive runc: Debian's podman (with conmon) and
//! containerd (`ctr`, through containerd's runc shim v2 with the runtime's `BinaryName`,
//! the path a Kubernetes RuntimeClass takes). Each test keeps everything in its sandbox:
//! podman's storage, run and libpod directories, containerd's root, state and socket, and no
//! network (`--network none`; ctr's default has none). The podman image is made without a
//! registry, by `podman import` of the busybox root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{Finished, Launcher, Sandbox, busybox_template, dist, run, secs};

/// podman with its storage in the sandbox and cradle-oci as its runtime.
struct Podman {
    sb: Sandbox,
}

impl Podman {
    fn new(test: &str) -> Self {
        let podman = Podman {
            sb: Sandbox::new(test),
        };
        podman.import(&busybox_template(), "localhost/cradle-bb", secs(120));
        podman
    }

    /// Makes image `name` of the root tree `root`, without a registry (`podman import` of
    /// a tarball of it).
    fn import(&self, root: &Path, name: &str, timeout: Duration) {
        let tar = self.sb.dir.join(format!("{}.tar", name.replace('/', "_")));
        let mut pack = Command::new("tar");
        pack.arg("-C").arg(root).args(["-cf"]).arg(&tar).arg(".");
        assert!(run(pack, timeout).status.success());
        let imported = self.run(&["import", tar.to_str().unwrap(), name]);
        assert!(imported.status.success(), "{imported:?}");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(self.sb.dir.join("storage"))
            .arg("--runroot")
            .arg(self.sb.dir.join("run"))
            // its own libpod tmpdir too: the default (/run/libpod) is every podman's, and a
            // `system reset` of one test's podman would look like a reboot to another's
            .arg("--tmpdir")
            .arg(self.sb.dir.join("libpod"))
            .arg("--runtime")
            .arg(dist("cradle-oci"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "none"])
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Finished {
        run(self.command(args), secs(120))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // its containers, then its storage's mounts: the sandbox is removed after this
        let _ = run(self.command(&["rm", "-a", "-f"]), secs(60));
        let _ = run(self.command(&["system", "reset", "-f"]), secs(60));
    }
}

/// The options every container gets: no network, and rlimits below the host's (these
/// machines' root has no CAP_SYS_RESOURCE, which podman's default 1048576 open files
/// need, with runc and crun as with cradle-oci).
const CONTAINED: &[&str] = &[
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
];

fn args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter().chain(CONTAINED).chain(tail).copied().collect()
}

#[test]
fn podman_runs_a_container_with_its_options_and_default_seccomp_profile() {
    let p = Podman::new("podman-run");
    let done = p.run(&args(
        &["run", "--rm"],
        &[
            "-e",
            "GREETING=hello",
            "--user",
            "1000:1000",
            "-w",
            "/tmp",
            "localhost/cradle-bb",
            "sh",
            "-c",
            "echo $GREETING $(id -u):$(id -g) $(pwd); grep Seccomp: /proc/self/status; \
             cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 3",
        ],
    ));
    assert_eq!(done.code(), Some(3), "{done:?}");
    let mut lines = done.stdout.lines();
    assert_eq!(lines.next(), Some("hello 1000:1000 /tmp"), "{done:?}");
    assert_eq!(
        lines.next(),
        Some("Seccomp:\t2"),
        "podman's profile: {done:?}"
    );
    assert!(
        lines.next().unwrap().starts_with("cradle-shim"),
        "the shim is PID 1: {done:?}"
    );
    let missing = p.run(&args(
        &["run", "--rm"],
        &["localhost/cradle-bb", "nosuchcmd"],
    ));
    assert_eq!(missing.code(), Some(127), "{missing:?}");
    let ro = p.run(&args(
        &["run", "--rm"],
        &["--read-only", "localhost/cradle-bb", "touch", "/x"],
    ));
    assert_ne!(ro.code(), Some(0), "{ro:?}");
    let shared = p.sb.dir.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::write(shared.join("f"), "from the host\n").unwrap();
    let volume = format!("{}:/data", shared.display());
    let caps = p.run(&args(
        &["run", "--rm"],
        &[
            "-v",
            &volume,
            "--cap-drop",
            "all",
            "localhost/cradle-bb",
            "sh",
            "-c",
            "cat /data/f; grep CapEff /proc/self/status",
        ],
    ));
    assert_eq!(
        caps.stdout, "from the host\nCapEff:\t0000000000000000\n",
        "{caps:?}"
    );
    let tty = p.run(&args(
        &["run", "--rm", "-t"],
        &["localhost/cradle-bb", "tty"],
    ));
    assert!(tty.stdout.starts_with("/dev/pts/"), "{tty:?}");
    // where the kernel's AppArmor is on and apparmor_parser is there (a Debian host),
    // podman confines its containers with its own profile, which the runtime applies
    if integration_tests::apparmor_loads_profiles() {
        let confined = p.run(&args(
            &["run", "--rm"],
            &["localhost/cradle-bb", "cat", "/proc/self/attr/current"],
        ));
        assert_eq!(confined.code(), Some(0), "{confined:?}");
        assert!(
            confined.stdout.starts_with("containers-default-")
                && confined
                    .stdout
                    .trim_end_matches(['\0', '\n'])
                    .ends_with(" (enforce)"),
            "podman's AppArmor profile: {confined:?}"
        );
    }
}

#[test]
fn podman_detaches_execs_stops_kills_and_limits() {
    let p = Podman::new("podman-detach");
    let started = p.run(&args(
        &[
            "run",
            "-d",
            "--name",
            "d1",
            "--memory",
            "64m",
            "--pids-limit",
            "50",
        ],
        &[
            "localhost/cradle-bb",
            "sh",
            "-c",
            "trap 'echo got-term; exit 0' TERM; echo started; while :; do sleep 0.1; done",
        ],
    ));
    assert!(started.status.success(), "{started:?}");
    let id = started.stdout.trim().to_owned();
    let exec = p.run(&["exec", "d1", "sh", "-c", "echo in-exec; exit 5"]);
    assert_eq!(exec.code(), Some(5), "{exec:?}");
    assert_eq!(exec.stdout, "in-exec\n");
    // the limits, where this host keeps them (its v1 hierarchies, or v2)
    let memory = read_limit(&id, "memory", "memory.limit_in_bytes", "memory.max");
    assert_eq!(memory.as_deref(), Some("67108864"), "the memory limit");
    let pids = read_limit(&id, "pids", "pids.max", "pids.max");
    assert_eq!(pids.as_deref(), Some("50"), "the pids limit");
    let stopped = p.run(&["stop", "-t", "10", "d1"]);
    assert!(stopped.status.success(), "{stopped:?}");
    let logs = p.run(&["logs", "d1"]);
    assert_eq!(logs.stdout, "started\ngot-term\n", "{logs:?}");
    let code = p.run(&["inspect", "d1", "--format", "{{.State.ExitCode}}"]);
    assert_eq!(code.stdout.trim(), "0", "a graceful stop: {code:?}");
    assert!(p.run(&["rm", "d1"]).status.success());
    let killed = p.run(&args(
        &["run", "-d", "--name", "k1"],
        &["localhost/cradle-bb", "sleep", "100"],
    ));
    assert!(killed.status.success(), "{killed:?}");
    assert!(p.run(&["kill", "k1"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = p.run(&[
            "inspect",
            "k1",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
        ]);
        if state.stdout.trim() == "exited 137" {
            break;
        }
        assert!(Instant::now() < deadline, "{state:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// busybox's init, noting each boot and shutdown in /boots, with a service running.
const SYSTEM_INITTAB: &str = "::sysinit:/bin/sh -c 'echo boot >> /boots'
::respawn:/bin/sleep 1000
::shutdown:/bin/sh -c 'echo shutdown >> /boots'
";

#[test]
fn podman_boots_a_system_container_that_reboots_in_place_and_stops_cleanly() {
    let p = Podman::new("podman-system");
    // an image whose init is busybox's, told what to do by its inittab
    let dockerfile = p.sb.dir.join("Containerfile");
    fs::write(p.sb.dir.join("inittab"), SYSTEM_INITTAB).unwrap();
    fs::write(
        &dockerfile,
        "FROM localhost/cradle-bb\nCOPY inittab /etc/inittab\n",
    )
    .unwrap();
    let built = p.run(&[
        "build",
        "--network",
        "none",
        "-t",
        "localhost/cradle-bb-init",
        "-f",
        dockerfile.to_str().unwrap(),
        p.sb.dir.to_str().unwrap(),
    ]);
    assert!(built.status.success(), "{built:?}");
    // podman's systemd mode wants a systemd's cgroup layout: not for busybox's init
    let started = p.run(&args(
        &["run", "-d", "--name", "s1", "--systemd", "false"],
        &["localhost/cradle-bb-init", "/sbin/init"],
    ));
    assert!(started.status.success(), "{started:?}");
    let boots = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = p.run(&["exec", "s1", "cat", "/boots"]);
            if seen.stdout == want {
                return;
            }
            assert!(Instant::now() < deadline, "{seen:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    boots("boot\n");
    assert!(p.run(&["exec", "s1", "reboot"]).status.success());
    boots("boot\nshutdown\nboot\n");
    let state = p.run(&["inspect", "s1", "--format", "{{.State.Status}}"]);
    assert_eq!(
        state.stdout.trim(),
        "running",
        "rebooted in place: {state:?}"
    );
    stops_cleanly(&p, "s1");
}

/// The start time of the container's init (field 22 of /proc/1/stat, as the container
/// sees it): a new one after each boot.
fn init_started(p: &Podman, name: &str) -> String {
    let stat = p.run(&["exec", name, "cat", "/proc/1/stat"]);
    assert!(stat.status.success(), "{stat:?}");
    let after = &stat.stdout[stat.stdout.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().to_owned()
}

/// Waits until systemd in container `name` says the system is `running`.
fn wait_running(p: &Podman, name: &str) {
    let exec = |words: &[&str]| p.run(&[&["exec", name][..], words].concat());
    integration_tests::wait_system_running(exec, Duration::from_secs(60));
}

/// `podman stop` of container `name`: it halts, well before podman's 10 s would have it
/// killed, and exits 0.
fn stops_cleanly(p: &Podman, name: &str) {
    let begun = Instant::now();
    let stopped = p.run(&["stop", name]);
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(
        begun.elapsed() < Duration::from_secs(8),
        "halted, not killed"
    );
    let code = p.run(&["inspect", name, "--format", "{{.State.ExitCode}}"]);
    assert_eq!(code.stdout.trim(), "0", "{code:?}");
}

#[test]
fn podman_boots_debian_with_systemd_reboots_it_in_place_and_stops_it_cleanly() {
    let p = Podman::new("podman-debian");
    // a Debian 12 image with systemd, made without a registry
    let debian = Sandbox::debian("podman-debian-root");
    p.import(&debian.root, "localhost/cradle-debian", secs(300));
    // podman's systemd mode (the command is /sbin/init): its tmpfs mounts, its cgroup
    // tree, SIGRTMIN+3 as the stop signal
    let started = p.run(&args(
        &["run", "-d", "--name", "deb"],
        &["localhost/cradle-debian", "/sbin/init"],
    ));
    assert!(started.status.success(), "{started:?}");
    wait_running(&p, "deb");
    let first = init_started(&p, "deb");
    let rebooted = p.run(&["exec", "deb", "systemctl", "reboot"]);
    assert!(rebooted.status.success(), "{rebooted:?}");
    // the same container, a new boot
    let deadline = Instant::now() + Duration::from_secs(60);
    while p
        .run(&["exec", "deb", "cat", "/proc/1/stat"])
        .stdout
        .is_empty()
        || init_started(&p, "deb") == first
    {
        assert!(Instant::now() < deadline, "no second boot");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_running(&p, "deb");
    let state = p.run(&["inspect", "deb", "--format", "{{.State.Status}}"]);
    assert_eq!(state.stdout.trim(), "running", "{state:?}");
    stops_cleanly(&p, "deb");
    assert!(p.run(&["rm", "deb"]).status.success());
}

/// A limit of container `id` under podman's cgroupfs parent: in the controller's v1
/// hierarchy where the host has one, else in the v2 one.
fn read_limit(id: &str, controller: &str, v1_file: &str, v2_file: &str) -> Option<String> {
    let v1 = PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join("libpod_parent")
        .join(format!("libpod-{id}"))
        .join(v1_file);
    let v2 = integration_tests::cgroup_v2_root()
        .join("libpod_parent")
        .join(format!("libpod-{id}"))
        .join(v2_file);
    [v1, v2]
        .iter()
        .find_map(|path| fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
}

/// containerd with its root, state and socket in the sandbox, stopped when dropped.
struct Containerd {
    sb: Sandbox,
    daemon: Option<Launcher>,
}

impl Containerd {
    fn start(test: &str) -> Self {
        let sb = Sandbox::new(test);
        let socket = sb.dir.join("containerd.sock");
        let config = sb.dir.join("config.toml");
        // no plugin reaches the network, the host's image store or a CRI
        fs::write(
            &config,
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        )
        .unwrap();
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(sb.dir.join("root"))
            .arg("--state")
            .arg(sb.dir.join("state"))
            .arg("--address")
            .arg(&socket);
        let daemon = Launcher::spawn(command);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Containerd {
            sb,
            daemon: Some(daemon),
        }
    }

    fn ctr(&self, args: &[&str]) -> Finished {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(self.sb.dir.join("containerd.sock"))
            .args(args);
        run(command, secs(60))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.signal(libc::SIGTERM);
            let _ = daemon.wait(secs(30));
        }
    }
}

#[test]
fn containerd_runs_cradle_oci_as_the_runc_shims_binary() {
    let c = Containerd::start("containerd-ctr");
    let runtime = dist("cradle-oci");
    let runtime = runtime.to_str().unwrap();
    let rootfs = busybox_template();
    let rootfs = rootfs.to_str().unwrap();
    let done = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        runtime,
        "--rootfs",
        rootfs,
        "c1",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 4",
    ]);
    assert_eq!(done.code(), Some(4), "{done:?}");
    assert!(done.stdout.starts_with("cradle-shim"), "{done:?}");
    let detached = c.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        runtime,
        "--rootfs",
        rootfs,
        "c2",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    assert!(detached.status.success(), "{detached:?}");
    let exec = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "c2",
        "sh",
        "-c",
        "echo in-exec; exit 3",
    ]);
    assert_eq!(exec.code(), Some(3), "{exec:?}");
    assert_eq!(exec.stdout, "in-exec\n");
    assert!(c.ctr(&["task", "kill", "c2"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = c.ctr(&["task", "ls"]);
        if tasks
            .stdout
            .lines()
            .any(|l| l.starts_with("c2") && l.contains("STOPPED"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{tasks:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.ctr(&["task", "delete", "c2"]).status.success());
    assert!(c.ctr(&["container", "delete", "c2"]).status.success());
}
