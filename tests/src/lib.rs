//! What every integration test uses: the real binaries from `dist/` (scripts/build), real
//! guest roots from `scripts/make-rootfs`, a sandbox per test (its own root, state
//! directory and container name, so tests can run side by side), and the check that a
//! test left nothing behind.
//!
//! The tests need root, and say so rather than skip: a run without root fails.

pub mod netlab;

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
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

/// The emulator that runs the shim under test, when it is built for another architecture
/// than the tests' (`$CRADLE_SHIM_EMULATOR`, say `qemu-aarch64-static`; scripts/test-arm
/// sets it, with `$CRADLE_DIST` at that architecture's binaries). The conformance tests
/// then run that shim under it; tests that need what the emulator does not have say so
/// with [`require_shape!`] (`HostShape::emulator`).
pub fn shim_emulator() -> Option<PathBuf> {
    std::env::var_os("CRADLE_SHIM_EMULATOR")
        .filter(|e| !e.is_empty())
        .map(PathBuf::from)
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

/// A static helper binary of the tests that scripts/test builds and names in `$var`.
fn built(var: &str) -> PathBuf {
    let path = PathBuf::from(
        std::env::var_os(var)
            .unwrap_or_else(|| panic!("{var} is not set: run the tests through scripts/test")),
    );
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The static test init ($CRADLE_TESTINIT).
pub fn testinit() -> PathBuf {
    built("CRADLE_TESTINIT")
}

/// The static escape probe ($CRADLE_ESCAPE; see escape.rs).
pub fn escape() -> PathBuf {
    built("CRADLE_ESCAPE")
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
    PathBuf::from(CgroupLayout::current().v2_root())
}

/// How the host's cgroups are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v2 alone, on /sys/fs/cgroup: systemd's default, the host most users have
    /// (Debian 12, Ubuntu 22.04 and later).
    Unified,
    /// The v1 controllers on /sys/fs/cgroup/*, and a cgroup2 without them on
    /// /sys/fs/cgroup/unified: these machines.
    Hybrid,
}

impl CgroupLayout {
    /// The layout `mountinfo` (the text of /proc/self/mountinfo) shows, if it has a cgroup2.
    pub fn from_mountinfo(mountinfo: &str) -> Option<Self> {
        let cgroup2_on = |point: &str| {
            mountinfo.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(4) == Some(&point) && line.contains(" - cgroup2 ")
            })
        };
        if cgroup2_on("/sys/fs/cgroup") {
            Some(CgroupLayout::Unified)
        } else if cgroup2_on("/sys/fs/cgroup/unified") {
            Some(CgroupLayout::Hybrid)
        } else {
            None
        }
    }

    /// This host's layout; panics on a host without cgroup v2, where cradle does not run.
    pub fn current() -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        CgroupLayout::from_mountinfo(&mountinfo).expect("no cgroup2 file system on this host")
    }

    /// Where the cgroup v2 hierarchy is mounted.
    pub fn v2_root(self) -> &'static str {
        match self {
            CgroupLayout::Unified => "/sys/fs/cgroup",
            CgroupLayout::Hybrid => "/sys/fs/cgroup/unified",
        }
    }
}

/// The host the tests run on, in the ways that decide what cradle can do there. The
/// suite runs on the hybrid machines it is developed on (`scripts/test`) and on the hosts
/// users have, pure cgroup v2 with and without systemd as PID 1, in a VM with Debian 12's
/// kernel (`scripts/vm-test`). A test that cannot run on some shape says so with
/// [`require_shape!`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostShape {
    pub cgroups: CgroupLayout,
    /// PID 1 is systemd.
    pub systemd: bool,
    /// The kernel's release, as `uname -r` prints it.
    pub kernel: String,
    /// The emulator the shim under test runs in ([`shim_emulator`]), if any.
    pub emulator: Option<PathBuf>,
}

impl HostShape {
    pub fn current() -> Self {
        let read = |path: &str| {
            fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .trim()
                .to_owned()
        };
        HostShape {
            cgroups: CgroupLayout::current(),
            systemd: read("/proc/1/comm") == "systemd",
            kernel: read("/proc/sys/kernel/osrelease"),
            emulator: shim_emulator(),
        }
    }

    /// The kernel's (major, minor) version: (6, 1) for "6.1.0-50-cloud-amd64".
    pub fn kernel_version(&self) -> (u32, u32) {
        let mut numbers = self
            .kernel
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse().unwrap_or(0));
        (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
    }
}

impl std::fmt::Display for HostShape {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let cgroups = match self.cgroups {
            CgroupLayout::Unified => "unified cgroup v2",
            CgroupLayout::Hybrid => "hybrid cgroups",
        };
        let init = if self.systemd {
            "systemd"
        } else {
            "not systemd"
        };
        write!(f, "kernel {}, {cgroups}, PID 1 {init}", self.kernel)?;
        if let Some(emulator) = &self.emulator {
            write!(f, ", the shim under {}", emulator.display())?;
        }
        Ok(())
    }
}

/// True when the kernel's AppArmor is on (as runc and podman test it).
pub fn apparmor_on() -> bool {
    fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.starts_with('Y'))
}

/// True when AppArmor profiles can be loaded here: it is on, its files are mounted
/// (securityfs) and apparmor_parser is installed (what podman needs to load its own).
pub fn apparmor_loads_profiles() -> bool {
    apparmor_on()
        && Path::new("/sys/kernel/security/apparmor").exists()
        && ["/sbin/apparmor_parser", "/usr/sbin/apparmor_parser"]
            .iter()
            .any(|p| Path::new(p).exists())
}

/// True when this host has the shape a test needs (`needs` says which in words, `check`
/// tests it). Otherwise says, for the test running on this thread, that it needs `needs`
/// and what this host is, and returns false: on standard output, and as a line in the
/// file `$CRADLE_TEST_NOTES` names, which scripts/test and scripts/vm-test print after
/// the run. [`require_shape!`] returns from the test then.
pub fn host_has(needs: &str, check: impl FnOnce(&HostShape) -> bool) -> bool {
    let shape = HostShape::current();
    if check(&shape) {
        return true;
    }
    let line = not_run_here(thread::current().name().unwrap_or("a test"), needs, &shape);
    println!("{line}");
    if let Some(notes) = std::env::var_os("CRADLE_TEST_NOTES") {
        use std::io::Write;
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&notes)
            .unwrap_or_else(|e| panic!("{}: {e}", Path::new(&notes).display()));
        // one write per line: whole lines, even from tests that run side by side
        file.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    false
}

/// The line that says `test` does not run on `shape`, which is not what it `needs`.
fn not_run_here(test: &str, needs: &str, shape: &HostShape) -> String {
    format!("{test} needs {needs}; not run on this host ({shape})")
}

/// Returns from the test, saying so (see [`host_has`]), unless the host has the shape it
/// needs: `require_shape!("systemd as PID 1", |host| host.systemd);`. For what truly
/// depends on the host; everything else runs on every shape.
#[macro_export]
macro_rules! require_shape {
    ($needs:expr, $check:expr) => {
        if !$crate::host_has($needs, $check) {
            return;
        }
    };
}

/// Output of a finished command, with what it printed as text.
pub struct Finished {
    /// The command, for messages.
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    /// Its stderr, without the notes of a shift of owners before Linux 5.12
    /// ([`without_shift_notes`]).
    pub stderr: String,
    /// Its stderr as printed.
    pub raw_stderr: String,
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

/// Whether the kernel has id-mapped mounts (mount_setattr, Linux 5.12).
pub fn kernel_has_idmapped_mounts() -> bool {
    HostShape::current().kernel_version() >= (5, 12)
}

/// `stderr` as the launcher prints it where a guest's root can be id-mapped. Before Linux
/// 5.12 no tree can be, and `--ownership auto` (the default) shifts every test root's
/// owners at its first start, saying so in two lines (a warning naming the kernel, the
/// count of files shifted): dropped here, so that a test's checks of what else is said
/// hold on every kernel. `ownership.rs`, which checks those lines, reads
/// [`Finished::raw_stderr`].
pub fn without_shift_notes(stderr: String) -> String {
    if kernel_has_idmapped_mounts() {
        return stderr;
    }
    let kept: String = stderr
        .split_inclusive('\n')
        .filter(|line| !is_shift_note(line))
        .collect();
    kept
}

/// True for a line of those notes.
fn is_shift_note(line: &str) -> bool {
    (line.starts_with("cradle: warning: ") && line.contains("cannot be id-mapped on this kernel"))
        || (line.starts_with("cradle: ") && line.contains(" files shifted to host ids "))
}

/// `out`, a launcher's standard output and error in one stream, without the notes of a
/// shift of owners (see [`without_shift_notes`]) that it starts with before Linux 5.12:
/// they are said before the guest starts, so before anything it prints.
pub fn after_shift_notes(mut out: &[u8]) -> &[u8] {
    if kernel_has_idmapped_mounts() {
        return out;
    }
    while let Some(end) = out.iter().position(|&b| b == b'\n') {
        if !is_shift_note(&String::from_utf8_lossy(&out[..end])) {
            break;
        }
        out = &out[end + 1..];
    }
    out
}

/// Runs `command` to the end, killing it (and failing the test) after `timeout`.
pub fn run(command: Command, timeout: Duration) -> Finished {
    Launcher::spawn(command).wait(timeout)
}

/// Waits until `systemctl is-system-running`, run in a container by `exec` (a runtime's or
/// a client's exec, given the command's words), says `running`; a `degraded` system fails
/// the test naming its failed units, and one not running after `timeout` with its jobs.
pub fn wait_system_running(exec: impl Fn(&[&str]) -> Finished, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let state = exec(&["systemctl", "is-system-running"]);
        match state.stdout.trim() {
            "running" => return,
            "degraded" => {
                let failed = exec(&["systemctl", "--failed", "--no-legend"]);
                panic!("systemd is degraded: {}", failed.stdout);
            }
            _ => {}
        }
        if Instant::now() > deadline {
            let jobs = exec(&["systemctl", "list-jobs", "--no-legend"]);
            panic!("systemd is not running after {timeout:?}: {state:?}\njobs: {jobs:?}");
        }
        thread::sleep(Duration::from_millis(200));
    }
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

    /// What the launcher printed so far: the guest's console (stdout), its log (stderr,
    /// without the notes of a shift of owners on a kernel that has no id-mapped mounts:
    /// see [`without_shift_notes`]).
    pub fn output(&self) -> (String, String) {
        (self.stdout.text(), without_shift_notes(self.stderr.text()))
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
            raw_stderr: self.stderr.text(),
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

/// A file system mounted on a directory for the length of a test (`mount -t FSTYPE`, or a
/// bind), unmounted when dropped (a failed test too).
pub struct Mounted(PathBuf);

impl Mounted {
    pub fn new(fstype: &str, on: &Path) -> Self {
        Mounted::with(&["-t", fstype, fstype], on)
    }

    /// `from` bound on `on`.
    pub fn bind(from: &Path, on: &Path) -> Self {
        Mounted::with(&["--bind", &from.to_string_lossy()], on)
    }

    fn with(args: &[&str], on: &Path) -> Self {
        let mount = Command::new("mount").args(args).arg(on).status().unwrap();
        assert!(mount.success(), "mount {args:?} on {}", on.display());
        Mounted(on.to_owned())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// One test's world: a guest root, a state directory, a container name.
pub struct Sandbox {
    pub name: String,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    /// Held for the sandbox's life: two tests that chose the same name (so the same
    /// directory, container name and cgroup) would otherwise run into each other.
    _claim: fs::File,
    /// The network namespace cradle runs in (`nsenter --net`), for the networking tests.
    pub netns: Option<PathBuf>,
}

/// Claims the sandbox name whose lock file is `path`, or fails the test: another test that
/// runs now has it.
fn claim(path: &Path) -> fs::File {
    let file = fs::File::create(path).unwrap();
    // SAFETY: flock takes a descriptor we own and an integer.
    #[allow(unsafe_code)]
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    assert!(
        taken,
        "{} is held: two tests use this sandbox name",
        path.display()
    );
    file
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
        let base = std::env::temp_dir().join("cradle-tests");
        fs::create_dir_all(&base).unwrap();
        let claim = claim(&base.join(format!("{name}.lock")));
        let dir = base.join(&name);
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("clearing {}: {e}", dir.display()));
        }
        let root = dir.join("root");
        let state = dir.join("state");
        fs::create_dir_all(&root).unwrap();
        // closed to other users of the host, as cradle wants a guest's root to be
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        Sandbox {
            name,
            dir,
            root,
            state,
            _claim: claim,
            netns: None,
        }
    }

    /// The sandbox with cradle run in the lab's host namespace.
    pub fn in_lab(mut self, lab: &netlab::NetLab) -> Self {
        self.netns = Some(lab.host_path());
        self
    }

    /// A sandbox whose root is made by `scripts/make-rootfs KIND`.
    pub fn with_rootfs(test: &str, kind: &str) -> Self {
        let sandbox = Sandbox::new(test);
        fs::remove_dir(&sandbox.root).unwrap();
        make_rootfs(kind, &sandbox.root);
        sandbox
    }

    /// A sandbox whose root is a copy of what `scripts/make-rootfs busybox` makes (see
    /// [`busybox_template`]).
    pub fn busybox(test: &str) -> Self {
        let sandbox = Sandbox::new(test);
        fs::remove_dir(&sandbox.root).unwrap();
        let mut copy = Command::new("cp");
        copy.arg("-a").arg(busybox_template()).arg(&sandbox.root);
        let done = run(copy, Duration::from_secs(120));
        assert!(done.status.success(), "{done:?}");
        sandbox
    }

    pub fn debian(test: &str) -> Self {
        Sandbox::with_rootfs(test, "debian")
    }

    /// Makes the (busybox) guest's init a stand-in for systemd that never says READY=1:
    /// /sbin/init links to a file named systemd, which runs busybox's init.
    pub fn init_as_silent_systemd(&self) {
        self.write(
            "/lib/systemd/systemd",
            "#!/bin/sh\nexec /bin/busybox init\n",
            0o755,
        );
        let init = self.path("/sbin/init");
        fs::remove_file(&init).unwrap();
        std::os::unix::fs::symlink("/lib/systemd/systemd", &init).unwrap();
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
        let mut command = match &self.netns {
            Some(ns) => {
                let mut nsenter = Command::new("nsenter");
                nsenter
                    .arg(format!("--net={}", ns.display()))
                    .arg(dist("cradle"));
                nsenter
            }
            None => Command::new(dist("cradle")),
        };
        // a detached launcher's log: in the sandbox, not the host's /var/log
        command.env("CRADLE_LOG_DIR", self.dir.join("log"));
        command.arg("--state-dir").arg(&self.state).args(args);
        command
    }

    /// `cradle start NAME --root ROOT EXTRA...` in the background.
    pub fn start(&self, extra: &[&str]) -> Launcher {
        let mut command = self.cradle(["start", self.name.as_str(), "--root"]);
        command.arg(&self.root).args(extra);
        Launcher::spawn(command)
    }

    /// `cradle start -d NAME --root ROOT EXTRA...`, which must return 0 and print nothing.
    pub fn start_detached(&self, extra: &[&str], timeout: Duration) -> Detached<'_> {
        let mut command = self.cradle(["start", "-d", self.name.as_str(), "--root"]);
        command.arg(&self.root).args(extra);
        // made first, so that a start that fails or hangs leaves no monitor behind
        let guard = Detached(self);
        let started = run(command, timeout);
        assert_eq!(started.code(), Some(0), "{started:?}");
        assert_eq!(started.stderr, "", "{started:?}");
        guard
    }

    /// `cradle run --root ROOT --name NAME OPTIONS... -- COMMAND...`
    pub fn run_command(&self, options: &[&str], command: &[&str]) -> Command {
        let mut cradle = self.cradle(["run", "--root"]);
        cradle
            .arg(&self.root)
            .args(["--name", self.name.as_str()])
            .args(options)
            .arg("--")
            .args(command);
        cradle
    }

    /// [`Sandbox::run_command`] to the end.
    pub fn run_in(&self, options: &[&str], command: &[&str]) -> Finished {
        run(self.run_command(options, command), Duration::from_secs(30))
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

    /// Waits until `systemctl is-system-running --wait` answers running or degraded, and
    /// returns the answer. Right after a boot systemd's control socket may not exist yet;
    /// that answer is retried.
    pub fn wait_system_running(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.exec(&["systemctl", "is-system-running", "--wait"]);
            let answer = state.stdout.trim().to_owned();
            if answer == "running" || answer == "degraded" {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not finish booting: {state:?}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `cradle status NAME --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let done = self.run_cradle(&["status", &self.name, "--json"], Duration::from_secs(20));
        assert_eq!(done.code(), Some(0), "{done:?}");
        serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {done:?}"))
    }

    /// Asserts that nothing of this test's container is left: no state directory, no
    /// cgroup (in the v2 hierarchy, nor in a hybrid host's v1 ones), no mount, no process.
    pub fn assert_clean(&self) {
        let state = self.state.join(&self.name);
        // `stop` returns when the launcher's name lock goes, with its lock file; the
        // launcher removes the directory with its next system call, which a slow machine
        // (the VM lanes, under TCG) may not have made yet
        let deadline = Instant::now() + Duration::from_secs(2);
        while state.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !state.exists(),
            "state directory {} is left",
            state.display()
        );
        let cgroup = cgroup_v2_root().join(format!("cradle.{}", self.name));
        assert!(!cgroup.exists(), "cgroup {} is left", cgroup.display());
        for dir in v1_cgroups() {
            let cgroup = dir.join(format!("cradle.{}", self.name));
            assert!(!cgroup.exists(), "cgroup {} is left", cgroup.display());
        }
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.to_string_lossy();
        let leaked: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(dir.as_ref()))
            .collect();
        assert!(leaked.is_empty(), "mounts are left:\n{}", leaked.join("\n"));
        // and its exit comes after that (the same allowance)
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut procs = processes_naming(&self.name);
        while !procs.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
            procs = processes_naming(&self.name);
        }
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

/// Our own cgroups in the host's v1 hierarchies of memory, pids and cpu (where the
/// launchers we start make theirs); none on a pure v2 host.
pub fn v1_cgroups() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let cgroup = fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut dirs = Vec::new();
    for line in cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, list, path) = (fields.next(), fields.next().unwrap_or(""), fields.next());
        if !list
            .split(',')
            .any(|c| ["memory", "pids", "cpu"].contains(&c))
        {
            continue;
        }
        let mount = mountinfo.lines().find_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            let options = tail.split_whitespace().nth(2)?;
            let names: Vec<&str> = options.split(',').collect();
            (tail.starts_with("cgroup ") && list.split(',').all(|c| names.contains(&c)))
                .then(|| head.split_whitespace().nth(4).map(PathBuf::from))?
        });
        if let (Some(mount), Some(path)) = (mount, path) {
            dirs.push(mount.join(path.trim_start_matches('/')));
        }
    }
    dirs
}

/// Runs `scripts/make-rootfs KIND DIR`.
fn make_rootfs(kind: &str, dir: &Path) {
    let mut make = Command::new(workspace().join("scripts/make-rootfs"));
    make.arg(kind).arg(dir);
    let done = run(make, Duration::from_secs(600));
    assert!(done.status.success(), "make-rootfs {kind}: {done:?}");
}

/// A busybox root made by `scripts/make-rootfs busybox` once, for the tests to copy: the
/// script runs a process for each of busybox's ~400 applet links, which takes 15 s in a
/// VM under TCG (scripts/vm-test), where one `cp -a` takes well under one. It is kept
/// in the tests' temporary directory, named after what makes it (the script and the
/// host's busybox), so a change to either makes a new one. Tests that start side by side
/// may each make one; the first to finish is the one kept.
pub fn busybox_template() -> PathBuf {
    use std::hash::{DefaultHasher, Hash, Hasher};
    use std::sync::atomic::{AtomicU32, Ordering};

    let script = workspace().join("scripts/make-rootfs");
    let mut hasher = DefaultHasher::new();
    fs::read(&script)
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()))
        .hash(&mut hasher);
    if let Ok(busybox) = fs::metadata("/bin/busybox") {
        (busybox.len(), busybox.modified().ok()).hash(&mut hasher);
    }
    let parent = std::env::temp_dir().join("cradle-tests");
    let template = parent.join(format!(".busybox-{:016x}", hasher.finish()));
    if template.is_dir() {
        return template;
    }
    static MADE: AtomicU32 = AtomicU32::new(0);
    let making = parent.join(format!(
        ".busybox-making-{}-{}",
        std::process::id(),
        MADE.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&parent).unwrap();
    let _ = fs::remove_dir_all(&making);
    make_rootfs("busybox", &making);
    // rename(2) will not replace a directory that is not empty: a template another test
    // made first stays, and ours goes
    if fs::rename(&making, &template).is_err() {
        assert!(template.is_dir(), "{} was not made", template.display());
        fs::remove_dir_all(&making).unwrap();
    }
    template
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

/// The descriptors process `pid` has open, with what each is open on (a path, or
/// `anon_inode:...` and the like).
pub fn open_files(pid: i32) -> Vec<(i32, PathBuf)> {
    let mut files: Vec<(i32, PathBuf)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .flatten()
        .map(|e| {
            let fd = e.file_name().to_string_lossy().parse().unwrap();
            let target = fs::read_link(e.path())
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            (fd, target)
        })
        .collect();
    files.sort();
    files
}

/// Sends `sig` to `pid`.
/// A guest started with `--detach`: its monitor is killed if the test fails, so that no
/// guest outlives a failed test (the container dies with its launcher).
pub struct Detached<'a>(pub &'a Sandbox);

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lock = self.0.state.join(&self.0.name).join("lock");
            if let Some(pid) = std::fs::read_to_string(lock)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}

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

/// A pseudo-terminal whose master the test holds: a command runs on its slave as on a
/// user's terminal, and what it prints is read from the master by a thread of its own.
pub struct Pty {
    master: fs::File,
    slave: std::os::fd::OwnedFd,
    output: Drained,
}

impl Pty {
    pub fn open() -> Self {
        use std::os::fd::{FromRawFd, OwnedFd};
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two descriptors; the name, termios and winsize may be null.
        #[allow(unsafe_code)]
        let ret = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(ret, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty succeeded: both are open descriptors that nothing else owns.
        #[allow(unsafe_code)]
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let master = fs::File::from(master);
        Pty {
            output: Drained::start(master.try_clone().unwrap()),
            master,
            slave,
        }
    }

    /// Spawns `command` with the slave as its standard input, output and error; the test's
    /// own copy of the slave is closed, so the reader sees the end when the command's is.
    pub fn spawn(mut self, mut command: Command) -> (Killed, Pty) {
        let stdio = || Stdio::from(self.slave.try_clone().unwrap());
        let child = command
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio())
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        let (read, write) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(read);
        // closing ours: replaced by a descriptor that is no terminal
        self.slave = std::os::fd::OwnedFd::from(write);
        (Killed(child), self)
    }

    /// Types `input`.
    pub fn type_in(&mut self, input: &[u8]) {
        use std::io::Write;
        self.master.write_all(input).unwrap();
    }

    /// What the terminal showed so far.
    pub fn text(&self) -> String {
        self.output.text()
    }

    /// Waits until the terminal shows `needle`, failing the test after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {needle:?} on the terminal:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every holder of the slave has closed it (what the terminal showed is
    /// then all it will show), failing the test after `timeout`.
    pub fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output.is_closed() {
            assert!(
                Instant::now() < deadline,
                "the terminal is still open after {timeout:?}:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The terminal's local modes (c_lflag): ICANON and ECHO are on unless a program put
    /// it in raw mode.
    pub fn local_modes(&self) -> libc::tcflag_t {
        use std::os::fd::AsRawFd;
        // SAFETY: a zeroed termios is a valid value for tcgetattr to overwrite.
        #[allow(unsafe_code)]
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes one termios to the pointer it is given.
        #[allow(unsafe_code)]
        let ret = unsafe { libc::tcgetattr(self.master.as_raw_fd(), &mut termios) };
        assert_eq!(ret, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        termios.c_lflag
    }
}

/// A child that is killed and reaped when dropped, so that a failed test leaves no process
/// (and no guest) behind.
pub struct Killed(pub Child);

impl std::ops::Deref for Killed {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` to exit; kills it and fails the test after `timeout`.
pub fn wait_child(child: &mut Child, what: &str, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // /proc/self/mountinfo lines as these machines and a Debian 12 host show them
    const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
37 35 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
";
    const UNIFIED: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn the_cgroup_layout_is_read_from_mountinfo() {
        assert_eq!(
            CgroupLayout::from_mountinfo(HYBRID),
            Some(CgroupLayout::Hybrid)
        );
        assert_eq!(
            CgroupLayout::from_mountinfo(UNIFIED),
            Some(CgroupLayout::Unified)
        );
        let v1_only: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(CgroupLayout::from_mountinfo(&v1_only), None);
        assert_eq!(CgroupLayout::Hybrid.v2_root(), "/sys/fs/cgroup/unified");
    }

    #[test]
    fn the_kernel_version_is_its_first_two_numbers() {
        let shape = |kernel: &str| HostShape {
            cgroups: CgroupLayout::Unified,
            systemd: true,
            kernel: kernel.to_owned(),
            emulator: None,
        };
        assert_eq!(shape("6.1.0-50-cloud-amd64").kernel_version(), (6, 1));
        assert_eq!(shape("6.18.44-fc-v782").kernel_version(), (6, 18));
        assert_eq!(
            shape("5.15.0-91-generic").to_string(),
            "kernel 5.15.0-91-generic, unified cgroup v2, PID 1 systemd"
        );
    }

    #[test]
    fn a_test_that_needs_another_shape_says_which_and_what_the_host_is() {
        let host = HostShape {
            cgroups: CgroupLayout::Hybrid,
            systemd: false,
            kernel: "6.18.44".to_owned(),
            emulator: None,
        };
        assert_eq!(
            not_run_here("boots_under_systemd", "systemd as PID 1", &host),
            "boots_under_systemd needs systemd as PID 1; \
             not run on this host (kernel 6.18.44, hybrid cgroups, PID 1 not systemd)"
        );
        let emulated = HostShape {
            emulator: Some("/usr/bin/qemu-arm-static".into()),
            ..host
        };
        assert_eq!(
            emulated.to_string(),
            "kernel 6.18.44, hybrid cgroups, PID 1 not systemd, \
             the shim under /usr/bin/qemu-arm-static"
        );
    }

    #[test]
    fn require_shape_lets_a_test_on_the_right_shape_go_on() {
        let mut went_on = false;
        (|| {
            require_shape!("any host", |_| true);
            went_on = true;
        })();
        assert!(went_on);
    }
}
