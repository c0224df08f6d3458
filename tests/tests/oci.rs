//! The shim as the process of an OCI bundle, as Kubernetes runs images (containerd and an
//! OCI runtime): `/cradle-shim -- PAYLOAD` in a busybox root, run by runc and by crun.
//! Every scenario is one test per runtime (`runc::NAME`, `crun::NAME`).
//!
//! This host's cgroups are hybrid (v1 controllers, and cgroup2 at /sys/fs/cgroup/unified).
//! runc takes that as it is; crun refuses it ("cgroups in hybrid mode not supported"), so
//! crun always runs in a private mount namespace where the cgroup2 mount is unmounted and
//! only v1 is left (as /work/shared/peers/peers.sh measures it). The host's mounts are
//! never touched.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::{Finished, Launcher, Sandbox, dist, secs, shell_code};

/// What the shim prints, on one line, when orphans cannot come to it.
const NOT_PID1_WARNING: &str = "not PID 1 and not a child subreaper";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Runc,
    Crun,
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Runtime::Runc => "runc",
            Runtime::Crun => "crun",
        })
    }
}

/// For crun: hide the cgroup2 mount of the hybrid layout in the private mount namespace
/// `unshare` made, then run crun with the arguments. Without the mount (a pure v1 or pure
/// v2 host) the umount fails quietly and changes nothing.
const CRUN_WITHOUT_CGROUP2: &str = "umount /sys/fs/cgroup/unified 2>/dev/null; exec crun \"$@\"";

impl Runtime {
    /// `RUNTIME --root STATE ARGS...`
    fn command(self, state: &Path, args: &[&str]) -> Command {
        let mut command = match self {
            Runtime::Runc => Command::new("runc"),
            Runtime::Crun => {
                let mut unshare = Command::new("unshare");
                unshare.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    CRUN_WITHOUT_CGROUP2,
                    "sh",
                ]);
                unshare
            }
        };
        command.arg("--root").arg(state).args(args);
        command
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A minimal OCI runtime config (what `runc spec` gives, without a terminal, with fewer
/// masked paths and no cgroup mount): @ROOT@ and @ARGS@ are filled in.
const CONFIG: &str = r#"{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": { "uid": 0, "gid": 0 },
    "args": [@ARGS@],
    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
    "noNewPrivileges": true
  },
  "root": { "path": @ROOT@, "readonly": true },
  "hostname": "oci-test",
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
      "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
    { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
      "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs",
      "options": ["nosuid", "noexec", "nodev", "ro"] }
  ],
  "linux": {
    "namespaces": [
      { "type": "pid" }, { "type": "ipc" }, { "type": "uts" },
      { "type": "mount" }, { "type": "network" }
    ],
    "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
    "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
  }
}
"#;

/// A busybox root with the static shim at /cradle-shim and the static probe at /probe.
fn sandbox(runtime: Runtime, scenario: &str) -> Sandbox {
    let sb = Sandbox::busybox(&format!("oci-{runtime}-{scenario}"));
    let probe = PathBuf::from(
        std::env::var_os("CRADLE_PROBE")
            .expect("CRADLE_PROBE is not set: run the tests through scripts/test"),
    );
    fs::copy(dist("cradle-shim"), sb.path("/cradle-shim")).unwrap();
    fs::copy(&probe, sb.path("/probe"))
        .unwrap_or_else(|e| panic!("copying {}: {e}", probe.display()));
    fs::create_dir_all(&sb.state).unwrap();
    sb
}

/// One bundle and its container, in the sandbox's own runtime state directory. Dropping
/// it deletes the container by force, whatever happened.
struct Container {
    runtime: Runtime,
    state: PathBuf,
    bundle: PathBuf,
    id: String,
}

impl Container {
    /// A bundle `TAG` whose process is `args`.
    fn new(sb: &Sandbox, runtime: Runtime, tag: &str, args: &[&str]) -> Self {
        let bundle = sb.dir.join(format!("bundle-{tag}"));
        fs::create_dir_all(&bundle).unwrap();
        let args: Vec<String> = args.iter().map(|a| json_string(a)).collect();
        let config = CONFIG
            .replace("@ROOT@", &json_string(sb.root.to_str().unwrap()))
            .replace("@ARGS@", &args.join(", "));
        fs::write(bundle.join("config.json"), config).unwrap();
        Container {
            runtime,
            state: sb.state.clone(),
            bundle,
            id: format!("{}-{tag}", sb.name),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        self.runtime.command(&self.state, args)
    }

    fn run_command(&self) -> Command {
        self.command(&["run", "--bundle", self.bundle.to_str().unwrap(), &self.id])
    }

    /// `RUNTIME run` to the end.
    fn run(&self) -> Finished {
        integration_tests::run(self.run_command(), secs(30))
    }

    /// `RUNTIME run` in the background.
    fn start(&self) -> Launcher {
        Launcher::spawn(self.run_command())
    }

    /// `RUNTIME kill ID SIGNAL`
    fn kill(&self, signal: &str) {
        let done = integration_tests::run(self.command(&["kill", &self.id, signal]), secs(10));
        assert!(
            done.status.success(),
            "{} kill {} {signal}: {done:?}",
            self.runtime,
            self.id
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // never panics: this runs on failures too
        let mut delete = self.command(&["delete", "--force", &self.id]);
        delete
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let Ok(mut child) = delete.spawn() else {
            return;
        };
        let deadline = Instant::now() + secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Waits until the payload printed a line for which `found` holds.
fn wait_line(
    runtime: Runtime,
    run: &mut Launcher,
    what: &str,
    timeout: Duration,
    found: impl Fn(&str) -> bool,
) {
    run.wait_for(&format!("{runtime}: {what}"), timeout, |l| {
        l.output().0.lines().any(&found)
    });
}

/// Kills the container for good and checks that the run ends as killed (137).
fn kill_for_good(runtime: Runtime, container: &Container, run: Launcher) -> Finished {
    container.kill("KILL");
    let done = run.wait(secs(10));
    assert_eq!(
        shell_code(done.status),
        137,
        "{runtime}: the run after {runtime} kill KILL: {done:?}"
    );
    done
}

fn exit_codes_pass_through(runtime: Runtime) {
    let sb = sandbox(runtime, "codes");
    let cases: [(&str, &[&str], i32); 4] = [
        ("exit3", &["/bin/sh", "-c", "exit 3"], 3),
        ("true", &["/bin/true"], 0),
        ("sigkill", &["/bin/sh", "-c", "kill -KILL $$"], 137),
        ("missing", &["/no-such-command"], 127),
    ];
    for (tag, payload, code) in cases {
        let mut args = vec!["/cradle-shim", "--"];
        args.extend_from_slice(payload);
        let container = Container::new(&sb, runtime, tag, &args);
        let done = container.run();
        assert_eq!(
            shell_code(done.status),
            code,
            "{runtime}: {payload:?} under the shim: {done:?}"
        );
        assert!(
            !done.stderr.contains(NOT_PID1_WARNING),
            "{runtime}: the shim is PID 1 but warns: {done:?}"
        );
        if tag == "missing" {
            assert!(
                done.stderr.contains("no-such-command"),
                "{runtime}: the shim does not name the missing command: {done:?}"
            );
        }
    }
}

fn kill_reaches_the_payload(runtime: Runtime) {
    let sb = sandbox(runtime, "kill");
    let container = Container::new(
        &sb,
        runtime,
        "c",
        &["/cradle-shim", "--", "/probe", "signals"],
    );
    let mut run = container.start();
    wait_line(runtime, &mut run, "ready from the probe", secs(10), |l| {
        l.starts_with("ready ")
    });
    container.kill("TERM");
    wait_line(runtime, &mut run, "15 from the probe", secs(10), |l| {
        l == "15"
    });
    let done = kill_for_good(runtime, &container, run);
    // runc's init is a Go program: its runtime preempts goroutines with SIGURG (23), and
    // one it sent itself just before it exec'd the shim stays pending across the exec
    // (signal(7)), so the shim forwards it like any signal it was sent; seen about once
    // in twenty runs, never with crun
    let after_ready: Vec<&str> = done
        .stdout
        .lines()
        .skip(1)
        .filter(|l| !(runtime == Runtime::Runc && *l == "23"))
        .collect();
    assert_eq!(
        after_ready,
        ["15"],
        "{runtime}: the payload got other signals than TERM: {done:?}"
    );
}

fn orphans_are_reaped(runtime: Runtime) {
    let sb = sandbox(runtime, "orphans");
    let container = Container::new(
        &sb,
        runtime,
        "c",
        &["/cradle-shim", "--", "/probe", "orphans", "1000"],
    );
    let done = container.run();
    assert_eq!(
        done.code(),
        Some(0),
        "{runtime}: orphans under the shim as PID 1: {done:?}"
    );
    assert_eq!(
        done.stdout.lines().collect::<Vec<_>>(),
        ["zombies 0"],
        "{runtime}: orphans under the shim as PID 1: {done:?}"
    );
}

fn group_signal_reaches_the_process_group(runtime: Runtime) {
    let sb = sandbox(runtime, "pgroup");
    // with -g, USR1 also reaches the probe's child, which dies of it: the probe exits 0
    let container = Container::new(
        &sb,
        runtime,
        "g",
        &["/cradle-shim", "-g", "--", "/probe", "pgroup"],
    );
    let mut run = container.start();
    wait_line(runtime, &mut run, "ready from the probe", secs(10), |l| {
        l == "ready"
    });
    container.kill("USR1");
    let done = run.wait(secs(10));
    assert_eq!(
        done.code(),
        Some(0),
        "{runtime}: USR1 with -g did not end the process group: {done:?}"
    );

    // without -g only the probe, which ignores it, gets USR1: the run goes on
    let container = Container::new(
        &sb,
        runtime,
        "no-g",
        &["/cradle-shim", "--", "/probe", "pgroup"],
    );
    let mut run = container.start();
    wait_line(runtime, &mut run, "ready from the probe", secs(10), |l| {
        l == "ready"
    });
    container.kill("USR1");
    let sent = Instant::now();
    run.wait_for(
        &format!("{runtime}: the run to go on for 500 ms after USR1 without -g"),
        secs(5),
        |_| sent.elapsed() > Duration::from_millis(500),
    );
    kill_for_good(runtime, &container, run);
}

/// Waits for the probe's `zombies K` line and returns K.
fn zombies_left(runtime: Runtime, run: &mut Launcher) -> usize {
    let is_report = |l: &str| l.starts_with("zombies ");
    wait_line(
        runtime,
        run,
        "the probe's zombie count",
        secs(30),
        is_report,
    );
    let out = run.output().0;
    let report = out.lines().find(|l| is_report(l)).unwrap();
    report["zombies ".len()..]
        .parse()
        .unwrap_or_else(|e| panic!("{runtime}: {report:?}: {e}"))
}

fn subreaper_below_pid1(runtime: Runtime) {
    let sb = sandbox(runtime, "subreaper");
    // PID 1 is `probe sleep`, which never reaps: the orphans are reaped only if the shim,
    // a subreaper below it, gets them
    let with_s = "/cradle-shim -s -- /probe orphans 1000 & exec /probe sleep";
    let container = Container::new(&sb, runtime, "s", &["/bin/sh", "-c", with_s]);
    let mut run = container.start();
    let left = zombies_left(runtime, &mut run);
    let (out, err) = run.output();
    assert_eq!(
        left, 0,
        "{runtime}: the shim with -s under PID 1 left zombies\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    assert!(
        !err.contains(NOT_PID1_WARNING),
        "{runtime}: the shim with -s warns that it is no subreaper\n--- stderr\n{err}"
    );
    kill_for_good(runtime, &container, run);

    // negative control: without -s the orphans go to PID 1, which leaves them zombies
    let without_s = "/cradle-shim -- /probe orphans 1000 & exec /probe sleep";
    let container = Container::new(&sb, runtime, "no-s", &["/bin/sh", "-c", without_s]);
    let mut run = container.start();
    let left = zombies_left(runtime, &mut run);
    let (out, err) = run.output();
    assert!(
        left > 0,
        "{runtime}: without -s the orphans were reaped all the same\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.contains(NOT_PID1_WARNING)).count(),
        1,
        "{runtime}: the shim without -s, not PID 1, must warn once\n--- stderr\n{err}"
    );
    kill_for_good(runtime, &container, run);
}

/// Each scenario as one test per runtime, so that they run side by side.
macro_rules! on_each_runtime {
    ($($scenario:ident),* $(,)?) => {
        mod runc {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Runtime::Runc)
            })*
        }
        mod crun {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Runtime::Crun)
            })*
        }
    };
}

on_each_runtime!(
    exit_codes_pass_through,
    kill_reaches_the_payload,
    orphans_are_reaped,
    group_signal_reaches_the_process_group,
    subreaper_below_pid1,
);
