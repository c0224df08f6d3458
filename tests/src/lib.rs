//! What every integration test uses: the real binaries from `dist/` (scripts/build), real
//! guest roots from `scripts/make-rootfs`, a sandbox per test (its own root, state
//! directory and container name, so tests can run side by side), and the check that a
//! test left nothing behind.
//!
//! The tests need root, and say so rather than skip: a run without root fails.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Panics unless we run as root: these tests create namespaces and mount file systems.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the integration tests must run as root (scripts/test does)"
    );
}

/// The workspace's top directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

/// A binary from dist/ ($CRADLE_DIST overrides where that is).
pub fn dist(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("CRADLE_DIST").map_or_else(|| workspace().join("dist"), PathBuf::from);
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build (scripts/test does)",
        path.display()
    );
    path
}

/// The static test init ($CRADLE_TESTINIT, set by scripts/test).
pub fn testinit() -> PathBuf {
    let path = PathBuf::from(
        std::env::var_os("CRADLE_TESTINIT")
            .expect("CRADLE_TESTINIT is not set: run the tests through scripts/test"),
    );
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The static escape probe ($CRADLE_ESCAPE, set by scripts/test; see escape.rs).
pub fn escape() -> PathBuf {
    let path = PathBuf::from(
        std::env::var_os("CRADLE_ESCAPE")
            .expect("CRADLE_ESCAPE is not set: run the tests through scripts/test"),
    );
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// A field of /proc/PID/status (`Uid`, `CapBnd`, `Seccomp`, ...), as the host sees it.
pub fn proc_status(pid: i32, field: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status_field(&text, field)
}

/// A field of a /proc/PID/status text.
pub fn status_field(text: &str, field: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in:\n{text}"))
        .trim()
        .to_owned()
}

/// The mount point of the cgroup v2 hierarchy, as the launcher finds it.
pub fn cgroup_v2_root() -> PathBuf {
    for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let is_v2 = fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
            info.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(4) == Some(&candidate) && line.contains(" - cgroup2 ")
            })
        });
        if is_v2 {
            return PathBuf::from(candidate);
        }
    }
    panic!("no cgroup2 file system on this host");
}

/// Output of a finished command, with what it printed as text.
pub struct Finished {
    /// The command, for messages.
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts the ground rule for bad input and failures: exit code `code`, and exactly
    /// one line on stderr, which names `naming`.
    pub fn assert_one_line_error(&self, code: i32, naming: &str) {
        assert_eq!(self.code(), Some(code), "{self:?}");
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line on stderr: {self:?}"
        );
        assert!(
            self.stderr.contains(naming),
            "stderr names {naming:?}: {self:?}"
        );
    }
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{}: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }
}

/// A child's pipe, read to its end by a thread of its own.
pub struct Drained {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Drained {
    pub fn start(mut pipe: impl Read + Send + 'static) -> Self {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bytes);
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Drained {
            bytes,
            reader: Some(reader),
        }
    }

    /// What was read so far.
    pub fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.bytes.lock().unwrap()
    }

    /// What was read so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// True once the pipe has reached its end (every writer closed it).
    pub fn is_closed(&self) -> bool {
        self.reader.as_ref().is_none_or(|r| r.is_finished())
    }

    /// Waits until the pipe has reached its end.
    pub fn join(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }
}

/// Runs `command` to the end, killing it (and failing the test) after `timeout`.
pub fn run(command: Command, timeout: Duration) -> Finished {
    Launcher::spawn(command).wait(timeout)
}

/// A process running in the background (`cradle start`, `cradle run`, any command), its
/// output captured.
pub struct Launcher {
    what: String,
    child: Option<Child>,
    stdout: Drained,
    stderr: Drained,
}

impl Launcher {
    pub fn spawn(mut command: Command) -> Self {
        let what = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        Launcher {
            what,
            stdout: Drained::start(child.stdout.take().unwrap()),
            stderr: Drained::start(child.stderr.take().unwrap()),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// What the launcher printed so far: the guest's console (stdout), its log (stderr).
    pub fn output(&self) -> (String, String) {
        (self.stdout.text(), self.stderr.text())
    }

    fn dump(&self) -> String {
        let (out, err) = self.output();
        format!("--- console (stdout)\n{out}\n--- stderr\n{err}")
    }

    /// Waits until `done` holds, failing the test after `timeout` or when the launcher
    /// exits first.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "the launcher exited ({status:?}) while waiting for {what}\n{}",
                    self.dump()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.dump()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the guest's console shows `needle`.
    pub fn wait_console(&mut self, needle: &str, timeout: Duration) {
        self.wait_for(&format!("{needle:?} on the console"), timeout, |l| {
            l.output().0.contains(needle)
        });
    }

    pub fn signal(&self, sig: i32) {
        kill(self.pid(), sig);
    }

    /// Waits for the launcher to exit; fails the test after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.what,
                    self.dump()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        self.stdout.join();
        self.stderr.join();
        let (stdout, stderr) = self.output();
        Finished {
            what: std::mem::take(&mut self.what),
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // a failed test must not leave a guest running: the launcher's death kills it
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One test's world: a guest root, a state directory, a container name.
pub struct Sandbox {
    pub name: String,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
}

impl Sandbox {
    /// An empty sandbox for the test `test` (its name becomes the container's).
    pub fn new(test: &str) -> Self {
        require_root();
        let name: String = format!("t-{test}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(60)
            .collect();
        let dir = std::env::temp_dir().join("cradle-tests").join(&name);
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("clearing {}: {e}", dir.display()));
        }
        let root = dir.join("root");
        let state = dir.join("state");
        fs::create_dir_all(&root).unwrap();
        Sandbox {
            name,
            dir,
            root,
            state,
        }
    }

    /// A sandbox whose root is made by `scripts/make-rootfs KIND`.
    pub fn with_rootfs(test: &str, kind: &str) -> Self {
        let sandbox = Sandbox::new(test);
        fs::remove_dir(&sandbox.root).unwrap();
        let mut make = Command::new(workspace().join("scripts/make-rootfs"));
        make.arg(kind).arg(&sandbox.root);
        let done = run(make, Duration::from_secs(600));
        assert!(done.status.success(), "make-rootfs {kind}: {done:?}");
        sandbox
    }

    pub fn busybox(test: &str) -> Self {
        Sandbox::with_rootfs(test, "busybox")
    }

    pub fn debian(test: &str) -> Self {
        Sandbox::with_rootfs(test, "debian")
    }

    /// A path inside the guest root.
    pub fn path(&self, in_guest: &str) -> PathBuf {
        self.root.join(in_guest.trim_start_matches('/'))
    }

    /// Writes a file in the guest root, with its directories, and sets its mode.
    pub fn write(&self, in_guest: &str, contents: &str, mode: u32) {
        let path = self.path(in_guest);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Installs the test init at `at` in the guest, doing `mode` (see testinit.rs).
    pub fn install_testinit(&self, at: &str, mode: &str) {
        let path = self.path(at);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&path);
        fs::copy(testinit(), &path).unwrap();
        self.write("/etc/testinit", &format!("{mode}\n"), 0o644);
    }

    /// Installs the escape probe at /escape in the guest.
    pub fn install_escape(&self) {
        fs::copy(escape(), self.path("/escape")).unwrap();
    }

    /// The host pid of the running guest init (from the state directory).
    pub fn init_pid(&self) -> i32 {
        let text = fs::read_to_string(self.state.join(&self.name).join("init.pid")).unwrap();
        text.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// What the test init recorded: `pid`, `argv` or `environ`.
    pub fn testinit_record(&self, what: &str) -> Vec<u8> {
        fs::read(self.path(&format!("/testinit/{what}")))
            .unwrap_or_else(|e| panic!("testinit record {what}: {e}"))
    }

    /// `cradle --state-dir STATE ARGS...`
    pub fn cradle<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(dist("cradle"));
        command.arg("--state-dir").arg(&self.state).args(args);
        command
    }

    /// `cradle start NAME --root ROOT EXTRA...` in the background.
    pub fn start(&self, extra: &[&str]) -> Launcher {
        let mut command = self.cradle(["start", self.name.as_str(), "--root"]);
        command.arg(&self.root).args(extra);
        Launcher::spawn(command)
    }

    /// Runs `cradle ARGS...` to the end.
    pub fn run_cradle(&self, args: &[&str], timeout: Duration) -> Finished {
        run(self.cradle(args), timeout)
    }

    /// `cradle exec NAME -- ARGS...`
    pub fn exec(&self, args: &[&str]) -> Finished {
        let mut all = vec!["exec", self.name.as_str(), "--"];
        all.extend_from_slice(args);
        self.run_cradle(&all, Duration::from_secs(60))
    }

    /// Waits until the guest init runs (the state directory names it).
    pub fn wait_running(&self, launcher: &mut Launcher, timeout: Duration) {
        let init_pid = self.state.join(&self.name).join("init.pid");
        launcher.wait_for("the guest init to run", timeout, |_| init_pid.exists());
    }

    /// The boot number of the running guest, from the state directory.
    pub fn boot_number(&self) -> Option<u32> {
        let text = fs::read_to_string(self.state.join(&self.name).join("init.pid")).ok()?;
        text.split_whitespace().nth(1)?.parse().ok()
    }

    /// Asserts that nothing of this test's container is left: no state directory, no
    /// cgroup, no mount, no process.
    pub fn assert_clean(&self) {
        let state = self.state.join(&self.name);
        assert!(
            !state.exists(),
            "state directory {} is left",
            state.display()
        );
        let cgroup = cgroup_v2_root().join(format!("cradle.{}", self.name));
        assert!(!cgroup.exists(), "cgroup {} is left", cgroup.display());
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.to_string_lossy();
        let leaked: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(dir.as_ref()))
            .collect();
        assert!(leaked.is_empty(), "mounts are left:\n{}", leaked.join("\n"));
        let procs = processes_naming(&self.name);
        assert!(
            procs.is_empty(),
            "processes are left:\n{}",
            procs.join("\n")
        );
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Command lines of the processes (other than us) that have `word` as an argument.
pub fn processes_naming(word: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == word) {
            found.push(format!("{pid}: {}", args.join(" ")));
        }
    }
    found
}

/// The pid of `pid`'s only child (the shim, for a launcher).
pub fn only_child(pid: i32) -> i32 {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let mut pids = children.split_whitespace();
    let child = pids
        .next()
        .unwrap_or_else(|| panic!("{pid} has no child"))
        .parse()
        .unwrap();
    assert_eq!(pids.next(), None, "{pid} has more than one child");
    child
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill has no memory effects.
    #[allow(unsafe_code)]
    let ret = unsafe { libc::kill(pid, sig) };
    assert_eq!(ret, 0, "kill({pid}, {sig})");
}

/// The shell's view of a status: the code, or 128+N for signal N.
pub fn shell_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Seconds, for readability at call sites.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
