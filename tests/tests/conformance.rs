//! Conformance with tini and dumb-init, the two PID 1 shims cradle-shim stands in for.
//!
//! The checks are what tini's own suite (test/run_inner_tests.py, test/pgroup,
//! test/reaping, test/pdeathsignal, the sigconf test) and dumb-init's (tests/*.py) check,
//! written again against the static probe (tests/src/bin/probe.rs). Every test runs
//! against each shim of [`all_shims`] that has the feature: cradle-shim from dist/, and
//! Debian's tini, tini-static and dumb-init. A check that passes on a peer and on ours shows
//! that the test is a real oracle. Where ours differs on purpose, the test asserts each
//! side explicitly, so that the difference is written down here:
//!
//! - usage errors exit 2 (tini and dumb-init: 1); a failed exec exits 127 or 126, as tini
//!   does (dumb-init: 2); a script without `#!` is run by /bin/sh, as glibc's execvp does
//!   for tini and dumb-init (musl's, which ours is linked with, does not: ours searches
//!   PATH itself);
//! - the synchronous signals are never forwarded (dumb-init forwards them when they come
//!   from kill);
//! - job control: ours and dumb-init stop with the child and continue it on SIGCONT; tini
//!   neither stops nor forwards SIGTTIN and SIGTTOU (the shell that started it hangs);
//!   ours also stops when the child stops by itself (dumb-init and tini do not);
//! - the signal mask and the ignored signals reach the child as the shim got them (tini);
//!   dumb-init unblocks and resets them all;
//! - dumb-init's single-child mode leaves the child in dumb-init's process group; ours
//!   gives it a group of its own, made the terminal's foreground group (tini's way);
//! - signals go to the child only unless -g (tini's default); dumb-init signals the
//!   child's group in its default mode and the child only with -c;
//! - help and version: dumb-init writes them on stderr, tini has no -V, and tini writes its
//!   debug lines on stdout.
//!
//! Every wait has a deadline, and every process a test starts is killed by a guard, even
//! when the test fails.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::{Drained, dist, kill, require_root, run, secs};

/// Returns from the test, saying so, when our shim runs under qemu-user (scripts/test-arm:
/// [`integration_tests::shim_emulator`]), which does not do what the test checks: `why`
/// says what qemu-user does instead. Everything else runs there as here.
macro_rules! require_native_shim {
    ($why:expr) => {
        integration_tests::require_shape!(
            concat!("the shim run natively (qemu-user ", $why, ")"),
            |host| host.emulator.is_none()
        )
    };
}

/// How long anything that should happen may take.
const PATIENCE: Duration = secs(10);
/// How long something that must not happen is watched for.
const QUIET: Duration = Duration::from_millis(400);

const BUSYBOX: &str = "/bin/busybox";

/// Our one-line warning when orphans cannot come to us.
const NOT_PID1_WARNING: &str = "not PID 1 and not a child subreaper";
/// The same warning of tini's (the second of its three lines).
const TINI_REAPER_WARNING: &str = "zombie reaping won't work";
/// What tini's and our -w warning say about each reaped orphan (tini starts with "R").
const REAP_WARNING: &str = "eaped zombie process with pid=";

/// The variables the shims read: cleared for every run, so the host's cannot leak in.
const SHIM_ENV: [&str; 5] = [
    "TINI_SUBREAPER",
    "TINI_KILL_PROCESS_GROUP",
    "TINI_VERBOSITY",
    "DUMB_INIT_SETSID",
    "DUMB_INIT_DEBUG",
];

/// The signals every shim forwards as they are: all of 1-31 that the probe catches, but
/// the synchronous ones and the suspend signals (see [`job_control`]).
const FORWARDED: [i32; 18] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGSTKFLT,
    libc::SIGCONT,
    libc::SIGURG,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGWINCH,
    libc::SIGIO,
    libc::SIGPWR,
];

/// Raised by the kernel for a fault of the process itself: never forwarded by ours.
const SYNCHRONOUS: [i32; 7] = [
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGSYS,
];

const SUSPEND: [i32; 3] = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

// ---------------------------------------------------------------------------------------
// The shims and how each spells its options
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Cradle,
    Tini,
    DumbInit,
}

/// What a shim may or may not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feature {
    /// `-e CODE` (tini)
    RemapExit,
    /// `-g` and TINI_KILL_PROCESS_GROUP (tini)
    GroupOption,
    /// `-s` and TINI_SUBREAPER (tini)
    Subreaper,
    /// `-p SIGNAL` (tini)
    ParentDeath,
    /// `-w` (tini)
    WarnOnReap,
    /// TINI_VERBOSITY (tini)
    TiniVerbosity,
    /// `-r S:R` (dumb-init)
    Rewrite,
    /// `-c` and DUMB_INIT_SETSID=0 (dumb-init)
    SingleChild,
    /// Stops itself after forwarding a suspend signal, continues on SIGCONT (dumb-init)
    JobControl,
    /// A signal pending before the child exists is forwarded to it (tini, ours; dumb-init
    /// unblocks every signal in the child before it execs and loses or dies of it)
    EarlySignal,
}

struct Shim {
    name: &'static str,
    path: PathBuf,
    kind: Kind,
    /// The emulator that runs it: ours under qemu-user, when it is built for another
    /// architecture ([`integration_tests::shim_emulator`]).
    emulator: Option<PathBuf>,
}

impl Shim {
    /// The words that run the shim: its path, behind its emulator if it has one.
    fn words(&self) -> Vec<&std::ffi::OsStr> {
        self.emulator
            .iter()
            .chain([&self.path])
            .map(|p| p.as_os_str())
            .collect()
    }

    /// A command that runs the shim, without arguments yet.
    fn bare(&self) -> Command {
        let words = self.words();
        let mut command = Command::new(words[0]);
        command.args(&words[1..]);
        command
    }

    fn has(&self, feature: Feature) -> bool {
        use Feature::*;
        match feature {
            RemapExit | GroupOption | Subreaper | ParentDeath | WarnOnReap | TiniVerbosity
            | EarlySignal => self.kind != Kind::DumbInit,
            Rewrite | SingleChild | JobControl => self.kind != Kind::Tini,
        }
    }

    /// `SHIM MODE -- ARGV`, with a clean environment but for the mode's variables.
    fn command(&self, mode: &Mode, argv: &[&str]) -> Command {
        let mut command = self.bare();
        mode.apply(&mut command);
        command.arg("--").args(argv);
        command
    }

    /// The same, as PID 1 of a new PID namespace with its own /proc.
    fn command_as_pid1(&self, mode: &Mode, argv: &[&str]) -> Command {
        let mut command = Command::new("unshare");
        command
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .args(self.words());
        mode.apply(&mut command);
        command.arg("--").args(argv);
        command
    }

    /// `SHIM ARGS` exactly as given, with a clean environment.
    fn raw(&self, args: &[&str]) -> Command {
        let mut command = self.bare();
        Mode::default().apply(&mut command);
        command.args(args);
        command
    }

    /// How this shim is told to forward to the child's whole process group.
    fn group_modes(&self) -> Vec<Mode> {
        match self.kind {
            Kind::Cradle | Kind::Tini => vec![
                Mode::opts(&["-g"]),
                Mode::env("TINI_KILL_PROCESS_GROUP", "1"),
            ],
            // dumb-init's default (setsid) mode signals the group
            Kind::DumbInit => vec![Mode::default()],
        }
    }

    /// How this shim is told to forward to the child only.
    fn child_only_modes(&self) -> Vec<Mode> {
        match self.kind {
            Kind::Cradle | Kind::Tini => vec![Mode::default()],
            Kind::DumbInit => vec![Mode::opts(&["-c"])],
        }
    }

    /// dumb-init's single-child mode, as each of its spellings.
    fn single_child_modes(&self) -> Vec<Mode> {
        if !self.has(Feature::SingleChild) {
            return Vec::new();
        }
        vec![
            Mode::opts(&["-c"]),
            Mode::opts(&["--single-child"]),
            Mode::env("DUMB_INIT_SETSID", "0"),
        ]
    }
}

fn all_shims() -> Vec<Shim> {
    let peer = |name: &'static str, kind| {
        let path = PathBuf::from("/usr/bin").join(name);
        assert!(
            path.is_file(),
            "{} is missing: install Debian's tini and dumb-init (scripts/test does)",
            path.display()
        );
        Shim {
            name,
            path,
            kind,
            emulator: None,
        }
    };
    vec![
        Shim {
            name: "cradle-shim",
            path: dist("cradle-shim"),
            kind: Kind::Cradle,
            emulator: integration_tests::shim_emulator(),
        },
        peer("tini", Kind::Tini),
        peer("tini-static", Kind::Tini),
        peer("dumb-init", Kind::DumbInit),
    ]
}

fn shims_with(feature: Feature) -> Vec<Shim> {
    all_shims().into_iter().filter(|s| s.has(feature)).collect()
}

/// Options and environment variables for one run of a shim.
#[derive(Clone, Debug, Default)]
struct Mode {
    opts: Vec<String>,
    env: Vec<(String, String)>,
}

impl Mode {
    fn opts(opts: &[&str]) -> Self {
        Mode {
            opts: opts.iter().map(|o| o.to_string()).collect(),
            env: Vec::new(),
        }
    }

    fn env(name: &str, value: &str) -> Self {
        Mode {
            opts: Vec::new(),
            env: vec![(name.to_owned(), value.to_owned())],
        }
    }

    fn with_opts(mut self, opts: &[&str]) -> Self {
        self.opts.extend(opts.iter().map(|o| o.to_string()));
        self
    }

    fn label(&self) -> String {
        let words: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(self.opts.iter().cloned())
            .collect();
        if words.is_empty() {
            "default".to_owned()
        } else {
            words.join(" ")
        }
    }

    fn apply(&self, command: &mut Command) {
        for name in SHIM_ENV {
            command.env_remove(name);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command.args(&self.opts);
    }
}

/// "SHIM [MODE]", for messages.
fn who(shim: &Shim, mode: &Mode) -> String {
    format!("{} [{}]", shim.name, mode.label())
}

fn probe() -> String {
    let path = std::env::var("CRADLE_PROBE")
        .expect("CRADLE_PROBE is not set: run the tests through scripts/test");
    assert!(Path::new(&path).is_file(), "CRADLE_PROBE={path} is missing");
    path
}

// ---------------------------------------------------------------------------------------
// Processes: a running shim with its output, /proc, signals
// ---------------------------------------------------------------------------------------

/// The complete (newline-terminated) lines of `bytes`.
fn complete_lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| l.trim_end_matches('\n').to_owned())
        .collect()
}

/// A process started by a test, its stdout read line by line. Dropping it kills it and
/// every descendant it still has, and the pids in `also_kill` (orphans, a reparented
/// shim).
struct Proc {
    what: String,
    child: Child,
    stdout: Drained,
    stderr: Drained,
    /// Lines of stdout already taken by `next_line`.
    taken: usize,
    status: Option<ExitStatus>,
    also_kill: Vec<i32>,
}

impl Proc {
    fn start(what: String, command: Command) -> Self {
        Proc::start_on(what, command, Stdio::null())
    }

    fn start_on(what: String, mut command: Command, stdin: Stdio) -> Self {
        let mut child = command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: spawning {command:?}: {e}"));
        let stdout = Drained::start(child.stdout.take().unwrap());
        let stderr = Drained::start(child.stderr.take().unwrap());
        Proc {
            what,
            child,
            stdout,
            stderr,
            taken: 0,
            status: None,
            also_kill: Vec::new(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stdout(&self) -> String {
        self.stdout.text()
    }

    fn stderr(&self) -> String {
        self.stderr.text()
    }

    fn dump(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    fn status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// The next line on stdout; fails after [`PATIENCE`] or when stdout ends first.
    fn next_line(&mut self, expecting: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // closed first: a line that came just before the end is still taken
            let closed = self.stdout.is_closed();
            let line = complete_lines(&self.stdout.bytes())
                .into_iter()
                .nth(self.taken);
            if let Some(line) = line {
                self.taken += 1;
                return line;
            }
            assert!(
                !closed,
                "{}: stdout ended while waiting for {expecting}\n{}",
                self.what,
                self.dump()
            );
            assert!(
                Instant::now() < deadline,
                "{}: timed out after {PATIENCE:?} waiting for {expecting}\n{}",
                self.what,
                self.dump()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn expect_line(&mut self, expected: &str, why: &str) {
        let line = self.next_line(&format!("{expected:?} ({why})"));
        assert_eq!(line, expected, "{}: {why}\n{}", self.what, self.dump());
    }

    /// The probe's `ready PID` line.
    fn expect_ready(&mut self) {
        let line = self.next_line("the probe's ready line");
        assert!(
            line.starts_with("ready"),
            "{}: expected the probe's ready line, got {line:?}\n{}",
            self.what,
            self.dump()
        );
    }

    /// Fails if a new line shows up on stdout within [`QUIET`].
    fn expect_silence(&mut self, why: &str) {
        thread::sleep(QUIET);
        self.expect_no_new_line(why);
    }

    /// Fails if stdout has a line not taken yet (after a wait of the caller's).
    fn expect_no_new_line(&self, why: &str) {
        let lines = complete_lines(&self.stdout.bytes());
        assert!(
            lines.len() <= self.taken,
            "{}: {why}, but it printed {:?}\n{}",
            self.what,
            &lines[self.taken..],
            self.dump()
        );
    }

    /// Fails if the process exits within [`QUIET`].
    fn expect_running(&mut self, why: &str) {
        let deadline = Instant::now() + QUIET;
        while Instant::now() < deadline {
            if let Some(status) = self.status() {
                panic!(
                    "{}: {why}, but it exited ({status:?})\n{}",
                    self.what,
                    self.dump()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit and for its stdout and stderr to end, so that all it
    /// wrote can be read; fails after `timeout`.
    fn finish(&mut self, timeout: Duration) -> ExitStatus {
        let status = self.wait(timeout);
        wait_until(&format!("{}: its output ends", self.what), || {
            self.stdout.is_closed() && self.stderr.is_closed()
        });
        status
    }

    /// Waits for the process to exit; fails after `timeout`.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: did not exit within {timeout:?}\n{}",
                self.what,
                self.dump()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // never panics: this runs on failures too. Once reaped, our pid may be reused.
        let mut victims = if self.status.is_none() {
            descendants(self.pid())
        } else {
            Vec::new()
        };
        victims.extend(&self.also_kill);
        for pid in victims {
            signal_quietly(pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal, ignoring failure (cleanup).
fn signal_quietly(pid: i32, sig: i32) {
    // SAFETY: kill has no memory effects.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, sig)
    };
}

fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|task| {
            fs::read_to_string(task.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut todo = children(pid);
    while let Some(next) = todo.pop() {
        todo.extend(children(next));
        found.push(next);
    }
    found
}

/// What /proc/PID/stat says about a process.
#[derive(Debug)]
struct Stat {
    state: char,
    ppid: i32,
    pgrp: i32,
    session: i32,
    tty_nr: i32,
    tpgid: i32,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse().ok());
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: number(1)?,
        pgrp: number(2)?,
        session: number(3)?,
        tty_nr: number(4)?,
        tpgid: number(5)?,
    })
}

/// The state letter of a process ('T' stopped), or '-' when it is gone.
fn state(pid: i32) -> char {
    stat(pid).map_or('-', |s| s.state)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The only child of `pid`, once it has exactly one.
fn sole_child(pid: i32, what: &str) -> i32 {
    let mut child = 0;
    wait_until(&format!("{what} ({pid}) has exactly one child"), || {
        let all = children(pid);
        child = all.first().copied().unwrap_or(0);
        all.len() == 1
    });
    child
}

/// A shim running `probe signals`, its pid and its child's (host pids, also as PID 1 of a
/// namespace).
struct Signals {
    proc: Proc,
    shim: i32,
    child: i32,
}

fn start_signals(shim: &Shim, mode: &Mode, as_pid1: bool) -> Signals {
    let probe = probe();
    let argv = [probe.as_str(), "signals"];
    let (what, command) = if as_pid1 {
        (
            format!("{} as PID 1", who(shim, mode)),
            shim.command_as_pid1(mode, &argv),
        )
    } else {
        (who(shim, mode), shim.command(mode, &argv))
    };
    let mut proc = Proc::start(what, command);
    proc.expect_ready();
    let shim_pid = if as_pid1 {
        sole_child(proc.pid(), "unshare")
    } else {
        proc.pid()
    };
    let child = sole_child(shim_pid, &proc.what);
    Signals {
        proc,
        shim: shim_pid,
        child,
    }
}

/// The shim (default mode) running `probe sleep`, once the child has exec'd the probe;
/// the child's pid. No core files: the child may die of SIGQUIT.
fn start_sleeping(shim: &Shim, what: String) -> (Proc, i32) {
    let mut command = shim.command(&Mode::default(), &[&probe(), "sleep"]);
    // SAFETY: the hook only calls setrlimit, which is async-signal-safe, on a struct on
    // its own stack.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let proc = Proc::start(what.clone(), command);
    let child = sole_child(proc.pid(), &what);
    // exec'd: before, the child is a copy of the shim, whose arguments end in "sleep" too
    let probe_exe = fs::canonicalize(probe()).unwrap();
    wait_until(&format!("{what}: the child runs the probe"), || {
        fs::read_link(format!("/proc/{child}/exe")).is_ok_and(|exe| exe == probe_exe)
    });
    (proc, child)
}

/// Waits [`QUIET`] once, then fails if any of the runs printed a line not taken yet.
fn expect_silence_all(runs: &[Signals], why: &str) {
    thread::sleep(QUIET);
    for run in runs {
        run.proc.expect_no_new_line(why);
    }
}

/// `/bin/busybox sh -c SCRIPT`
fn sh(script: &str) -> Vec<String> {
    vec![BUSYBOX.into(), "sh".into(), "-c".into(), script.into()]
}

fn strs(words: &[String]) -> Vec<&str> {
    words.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------------
// Exit status
// ---------------------------------------------------------------------------------------

/// tini's and dumb-init's exit status tests: the child's code, or 128+N for signal N,
/// as the shim's own exit code (the shim must not die of the signal itself).
#[test]
fn exit_status_is_the_child_s_or_128_plus_its_signal() {
    require_root();
    for shim in all_shims() {
        let mode = Mode::default();
        for code in [0, 1, 2, 32, 64, 127, 254, 255] {
            let argv = sh(&format!("exit {code}"));
            let done = run(shim.command(&mode, &strs(&argv)), PATIENCE);
            assert_eq!(
                done.code(),
                Some(code),
                "{}: the child exited {code}, so must the shim: {done:?}",
                shim.name
            );
        }
        // the child killed from outside (busybox sh ignores SIGQUIT, so not by itself)
        for (name, sig) in [
            ("TERM", libc::SIGTERM),
            ("HUP", libc::SIGHUP),
            ("QUIT", libc::SIGQUIT),
            ("KILL", libc::SIGKILL),
        ] {
            let what = format!("{} (child killed by SIG{name})", shim.name);
            let (mut proc, child) = start_sleeping(&shim, what.clone());
            kill(child, sig);
            let status = proc.wait(PATIENCE);
            assert_eq!(
                status.code(),
                Some(128 + sig),
                "{what}: the shim must exit 128+{sig} (status {status:?})\n{}",
                proc.dump()
            );
        }
    }
}

/// tini's exit code test, complete: for every code, `-e CODE` makes it 0, and `-e` of
/// every other code leaves it alone. One shell loop per shim does the 512 runs (about a
/// second each), so that process start-up here does not dominate.
#[test]
fn e_remaps_exit_codes_to_0() {
    require_root();
    const LOOP: &str = r#"code=0
while [ $code -le 255 ]; do
  "$@" -e $code -- /bin/busybox sh -c "exit $code"; only=$?
  others=""; x=0
  while [ $x -le 255 ]; do [ $x = $code ] || others="$others -e $x"; x=$((x + 1)); done
  "$@" $others -- /bin/busybox sh -c "exit $code"; rest=$?
  echo "$code $only $rest"
  code=$((code + 1))
done"#;
    for shim in all_shims() {
        if !shim.has(Feature::RemapExit) {
            // dumb-init has no -e: a usage error
            let done = run(shim.raw(&["-e", "3", "--", BUSYBOX, "true"]), PATIENCE);
            assert_eq!(
                done.code(),
                Some(1),
                "{}: -e is no option of dumb-init: {done:?}",
                shim.name
            );
            continue;
        }
        let mut command = Command::new(BUSYBOX);
        command.args(["sh", "-c", LOOP, "loop"]).args(shim.words());
        Mode::env("TINI_VERBOSITY", "0").apply(&mut command);
        let done = run(command, secs(60));
        assert_eq!(
            done.code(),
            Some(0),
            "{}: the loop failed: {done:?}",
            shim.name
        );
        let lines: Vec<&str> = done.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            256,
            "{}: one line per code expected: {done:?}",
            shim.name
        );
        for (expected_code, line) in lines.iter().enumerate() {
            let numbers: Vec<usize> = line.split(' ').map(|n| n.parse().unwrap()).collect();
            let [code, only, rest] = numbers[..] else {
                panic!("{}: bad line {line:?}", shim.name)
            };
            assert_eq!(code, expected_code, "{}: {done:?}", shim.name);
            assert_eq!(
                only, 0,
                "{}: -e {code} with the child exiting {code} must exit 0",
                shim.name
            );
            assert_eq!(
                rest, code,
                "{}: -e of every code but {code}, with the child exiting {code}, must exit {code}",
                shim.name
            );
        }
        // the remap applies to the final code, 128+N included
        let kill_term = sh("kill -TERM $$");
        let done = run(
            shim.command(&Mode::opts(&["-e", "143"]), &strs(&kill_term)),
            PATIENCE,
        );
        assert_eq!(
            done.code(),
            Some(0),
            "{}: -e 143 with the child dying of SIGTERM: {done:?}",
            shim.name
        );
        let done = run(
            shim.command(&Mode::opts(&["-e", "15"]), &strs(&kill_term)),
            PATIENCE,
        );
        assert_eq!(
            done.code(),
            Some(143),
            "{}: -e 15 must not touch 128+15: {done:?}",
            shim.name
        );
    }
}

// ---------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------

/// dumb-init's test_proxies_signals and tini's signals test: each forwarded signal sent to
/// the shim reaches the child, in every mode (child only, process group, single child).
#[test]
fn every_forwarded_signal_reaches_the_child() {
    require_root();
    // checked for silence together at the end, to wait once
    let mut runs = Vec::new();
    for shim in all_shims() {
        let mut modes = vec![Mode::default()];
        modes.extend(shim.single_child_modes());
        if shim.has(Feature::GroupOption) {
            modes.extend(shim.group_modes());
        }
        for mode in modes {
            let mut run = start_signals(&shim, &mode, false);
            for sig in FORWARDED {
                kill(run.shim, sig);
                run.proc.expect_line(
                    &sig.to_string(),
                    &format!("signal {sig} sent to the shim must reach the child"),
                );
            }
            runs.push(run);
        }
    }
    expect_silence_all(&runs, "nothing else may reach the child");
}

/// Real-time signals (34 and up: 32 and 33 are the C libraries' own) reach the child: it
/// dies of the signal and the shim exits 128+N. The shim must exit, not die of it.
#[test]
fn realtime_signals_reach_the_child() {
    require_native_shim!("keeps real-time signals of the host for itself");
    require_root();
    for shim in all_shims() {
        for sig in [34, 35, 40, 64] {
            let what = format!("{} (signal {sig})", shim.name);
            let (mut proc, child) = start_sleeping(&shim, what.clone());
            kill(proc.pid(), sig);
            let status = proc.wait(PATIENCE);
            // if the shim died instead, its child is left: kill it
            if status.code().is_none() {
                proc.also_kill.push(child);
            }
            assert_eq!(
                status.code(),
                Some(128 + sig),
                "{what}: the child must die of signal {sig} and the shim exit {} (shim status {status:?})\n{}",
                128 + sig,
                proc.dump()
            );
        }
    }
}

/// The synchronous signals are never forwarded by ours and tini (as PID 1 they do not even
/// reach the shim); dumb-init forwards them when they come from kill (an intentional
/// difference). Each one is followed by SIGUSR1 as a marker.
#[test]
fn synchronous_signals_are_not_forwarded() {
    require_native_shim!("takes SIGILL, SIGSEGV, SIGBUS and SIGFPE for itself");
    require_root();
    for shim in all_shims() {
        let mut run = start_signals(&shim, &Mode::default(), true);
        for sig in SYNCHRONOUS {
            kill(run.shim, sig);
            if shim.kind == Kind::DumbInit {
                run.proc.expect_line(
                    &sig.to_string(),
                    &format!("dumb-init forwards signal {sig}"),
                );
            }
            kill(run.shim, libc::SIGUSR1);
            run.proc.expect_line(
                "10",
                &format!(
                    "synchronous signal {sig} must not reach the child, the marker SIGUSR1 must"
                ),
            );
        }
        assert!(
            run.proc.status().is_none() && state(run.shim) != '-',
            "{}: the shim must survive the synchronous signals\n{}",
            run.proc.what,
            run.proc.dump()
        );
    }
}

/// The fault signals sent to a shim that is not PID 1 (where the kernel does not shield it):
/// ours takes them from its queue and drops them, so it lives on with its child; tini
/// leaves them at their default and dies of them, orphaning its child; dumb-init forwards
/// them.
#[test]
fn fault_signals_sent_to_a_shim_that_is_not_pid1() {
    require_native_shim!("takes SIGILL, SIGSEGV, SIGBUS and SIGFPE for itself");
    require_root();
    for shim in all_shims() {
        let mut run = start_signals(&shim, &Mode::default(), false);
        for sig in SYNCHRONOUS {
            kill(run.shim, sig);
            match shim.kind {
                Kind::Cradle => {
                    kill(run.shim, libc::SIGUSR1);
                    run.proc
                        .expect_line("10", &format!("the shim lives on after signal {sig}"));
                }
                Kind::DumbInit => run
                    .proc
                    .expect_line(&sig.to_string(), "dumb-init forwards it"),
                Kind::Tini => {
                    // its child outlives it: make sure the guard kills it too
                    run.proc.also_kill.push(run.child);
                    let status = run.proc.wait(PATIENCE);
                    assert_eq!(
                        status.signal(),
                        Some(sig),
                        "{}: tini dies of it\n{}",
                        run.proc.what,
                        run.proc.dump()
                    );
                    break;
                }
            }
        }
    }
}

/// dumb-init's rewrite tests (test_proxies_signals_with_rewrite,
/// test_ignored_signals_are_not_proxied), in both of its modes.
#[test]
fn rewrite_forwards_a_signal_as_another_or_drops_it() {
    require_root();
    use libc::{SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH};
    // (options, steps): each step sends a signal to the shim and, unless it is dropped,
    // waits for what the child gets before the next (signals pending together would be
    // taken lowest first, not in the order sent)
    type Step = (i32, Option<i32>);
    let r = |pairs: &[&str]| -> Vec<String> { pairs.iter().map(|p| p.to_string()).collect() };
    let cases: Vec<(Vec<String>, Vec<Step>)> = vec![
        (
            r(&[]),
            vec![
                (SIGTERM, Some(SIGTERM)),
                (SIGQUIT, Some(SIGQUIT)),
                (SIGCONT, Some(SIGCONT)),
                (SIGINT, Some(SIGINT)),
            ],
        ),
        (
            r(&["-r", "15:2"]),
            vec![
                (SIGTERM, Some(SIGINT)),
                (SIGQUIT, Some(SIGQUIT)),
                (SIGCONT, Some(SIGCONT)),
                (SIGINT, Some(SIGINT)),
            ],
        ),
        (
            r(&["-r", "15:2", "--rewrite", "2:15", "--rewrite=3:3"]),
            vec![
                (SIGTERM, Some(SIGINT)),
                (SIGQUIT, Some(SIGQUIT)),
                (SIGCONT, Some(SIGCONT)),
                (SIGINT, Some(SIGTERM)),
            ],
        ),
        // the lowest signal to the highest (dumb-init's case also rewrites 31 to 1: 31 is
        // SIGSYS, synchronous, never forwarded by ours; checked for dumb-init below)
        (r(&["-r", "1:31"]), vec![(SIGHUP, Some(31))]),
        // dropped: a forwarded SIGINT would come before the SIGQUIT that SIGTERM becomes,
        // a forwarded SIGWINCH after SIGHUP (caught by the silence at the end)
        (
            r(&["-r", "15:3", "-r", "2:0", "-r", "28:0"]),
            vec![
                (SIGINT, None),
                (SIGTERM, Some(SIGQUIT)),
                (SIGWINCH, None),
                (SIGHUP, Some(SIGHUP)),
            ],
        ),
    ];
    // checked for silence together at the end, to wait once
    let mut runs = Vec::new();
    for shim in shims_with(Feature::Rewrite) {
        let mut base_modes = vec![Mode::default()];
        base_modes.extend(shim.single_child_modes());
        for base in &base_modes {
            for (opts, steps) in &cases {
                let mode = base.clone().with_opts(&strs(opts));
                let mut run = start_signals(&shim, &mode, false);
                for &(sig, got) in steps {
                    kill(run.shim, sig);
                    if let Some(got) = got {
                        run.proc.expect_line(
                            &got.to_string(),
                            &format!("signal {sig} sent to the shim, {got} expected in the child"),
                        );
                    }
                }
                runs.push(run);
            }
        }
        let by_name = Mode::opts(&["-r", "SIGTERM:SIGINT", "--rewrite=QUIT:0"]);
        let argv = [BUSYBOX, "true"];
        match shim.kind {
            Kind::Cradle => {
                let mut run = start_signals(&shim, &by_name, false);
                kill(run.shim, libc::SIGQUIT);
                kill(run.shim, libc::SIGTERM);
                run.proc.expect_line(
                    "2",
                    "SIGQUIT dropped, SIGTERM forwarded as SIGINT (by name)",
                );
                runs.push(run);
            }
            Kind::DumbInit => {
                // dumb-init takes numbers only, 1-31
                let done = run(shim.command(&by_name, &argv), PATIENCE);
                assert_eq!(
                    done.code(),
                    Some(1),
                    "{}: -r with names: {done:?}",
                    shim.name
                );
                let mut run = start_signals(&shim, &Mode::opts(&["-r", "31:1"]), false);
                kill(run.shim, 31);
                run.proc
                    .expect_line("1", "dumb-init rewrites 31 (SIGSYS) to 1");
                runs.push(run);
            }
            Kind::Tini => unreachable!(),
        }
    }
    expect_silence_all(&runs, "nothing else may reach the child");
}

/// tini's process group test: the child ignores SIGUSR1 and has a child that does not.
/// Forwarded to the group, SIGUSR1 kills the grandchild, the child exits 0, the shim too.
/// Forwarded to the child only, nothing happens (the negative control).
#[test]
fn group_forwarding_reaches_the_whole_process_group() {
    require_root();
    let probe = probe();
    for shim in all_shims() {
        for mode in shim.group_modes() {
            let mut proc = Proc::start(who(&shim, &mode), shim.command(&mode, &[&probe, "pgroup"]));
            proc.expect_line("ready", "the pgroup probe starts");
            kill(proc.pid(), libc::SIGUSR1);
            let status = proc.wait(PATIENCE);
            assert_eq!(
                status.code(),
                Some(0),
                "{}: SIGUSR1 to the group must end the grandchild, then the child\n{}",
                proc.what,
                proc.dump()
            );
        }
        for mode in shim.child_only_modes() {
            let mut proc = Proc::start(who(&shim, &mode), shim.command(&mode, &[&probe, "pgroup"]));
            proc.expect_line("ready", "the pgroup probe starts");
            kill(proc.pid(), libc::SIGUSR1);
            proc.expect_running(
                "SIGUSR1 to the child only is ignored by it, the shim must keep running",
            );
        }
    }
}

/// dumb-init's shell background tests, and tini's lack of them.
///
/// Ours and dumb-init: after SIGTSTP, SIGTTIN or SIGTTOU the shim stops (State T) with its
/// child (in a session of its own the child gets SIGSTOP, in single-child mode the signal
/// itself); SIGCONT continues both. A rewritten suspend signal still stops the shim. Ours
/// also stops when the child stops by itself, and never stops as PID 1.
///
/// tini (documented): it forwards SIGTSTP and stays running, never forwards SIGTTIN and
/// SIGTTOU (it ignores them), and does not follow a child that stops: a shell waiting for
/// it never gets its prompt back.
#[test]
fn job_control() {
    require_root();
    let stopped = |pid: i32| state(pid) == 'T';
    let running = |pid: i32| !matches!(state(pid), 'T' | 't' | 'Z' | '-');
    for shim in all_shims() {
        if !shim.has(Feature::JobControl) {
            let mut run = start_signals(&shim, &Mode::default(), false);
            kill(run.shim, libc::SIGTSTP);
            run.proc.expect_line("20", "tini forwards SIGTSTP as it is");
            kill(run.shim, libc::SIGTTIN);
            kill(run.shim, libc::SIGTTOU);
            kill(run.shim, libc::SIGUSR1);
            run.proc.expect_line(
                "10",
                "tini ignores SIGTTIN and SIGTTOU: only the marker SIGUSR1 arrives",
            );
            thread::sleep(QUIET);
            assert!(
                running(run.shim),
                "{}: tini does not stop itself (state {})",
                shim.name,
                state(run.shim)
            );
            kill(run.child, libc::SIGSTOP);
            wait_until(&format!("{}: the child stops", shim.name), || {
                stopped(run.child)
            });
            thread::sleep(QUIET);
            assert!(
                running(run.shim),
                "{}: tini does not follow its child into a stop (state {})",
                shim.name,
                state(run.shim)
            );
            kill(run.child, libc::SIGCONT);
            run.proc.expect_line("18", "the child continues");
            continue;
        }
        let mut modes = vec![Mode::default()];
        modes.extend(shim.single_child_modes());
        for mode in &modes {
            let setsid = mode.opts.is_empty() && mode.env.is_empty();
            let mut run = start_signals(&shim, mode, false);
            let what = run.proc.what.clone();
            for sig in SUSPEND {
                kill(run.shim, sig);
                if setsid {
                    wait_until(
                        &format!("{what}: signal {sig} stops the child (as SIGSTOP) and the shim"),
                        || stopped(run.child) && stopped(run.shim),
                    );
                } else {
                    run.proc.expect_line(
                        &sig.to_string(),
                        "single-child mode forwards the signal as it is",
                    );
                    wait_until(&format!("{what}: signal {sig} stops the shim"), || {
                        stopped(run.shim)
                    });
                }
                kill(run.shim, libc::SIGCONT);
                run.proc
                    .expect_line("18", "SIGCONT to the shim is forwarded");
                wait_until(&format!("{what}: both run again after SIGCONT"), || {
                    running(run.child) && running(run.shim)
                });
            }
            // the child stops by itself
            kill(run.child, libc::SIGSTOP);
            wait_until(&format!("{what}: the child stops"), || stopped(run.child));
            if shim.kind == Kind::Cradle {
                wait_until(
                    &format!("{what}: the shim follows its child into the stop"),
                    || stopped(run.shim),
                );
                kill(run.shim, libc::SIGCONT);
            } else {
                thread::sleep(QUIET);
                assert!(
                    running(run.shim),
                    "{what}: dumb-init does not follow its child into a stop (state {})",
                    state(run.shim)
                );
                kill(run.child, libc::SIGCONT);
            }
            run.proc.expect_line("18", "the child continues");
            wait_until(&format!("{what}: both run again"), || {
                running(run.child) && running(run.shim)
            });
        }
        // dumb-init's test_default_rewrites_can_be_overriden_with_setsid_enabled
        let rewritten = Mode::opts(&["-r", "21:15", "-r", "22:2", "-r", "20:1"]);
        let mut run = start_signals(&shim, &rewritten, false);
        let what = run.proc.what.clone();
        for (sig, as_sig) in [(21, 15), (22, 2), (20, 1)] {
            kill(run.shim, sig);
            run.proc
                .expect_line(&as_sig.to_string(), "the rewritten suspend signal");
            wait_until(
                &format!("{what}: signal {sig} still stops the shim"),
                || stopped(run.shim),
            );
            kill(run.shim, libc::SIGCONT);
            run.proc
                .expect_line("18", "SIGCONT to the shim is forwarded");
            wait_until(&format!("{what}: the shim runs again"), || {
                running(run.shim)
            });
        }
        if shim.kind == Kind::Cradle {
            // PID 1 never stops: the child does, the shim forwards SIGCONT all the same
            let mut run = start_signals(&shim, &Mode::default(), true);
            let what = run.proc.what.clone();
            kill(run.shim, libc::SIGTSTP);
            wait_until(&format!("{what}: SIGTSTP stops the child"), || {
                stopped(run.child)
            });
            thread::sleep(QUIET);
            assert!(
                running(run.shim),
                "{what}: PID 1 must not stop (state {})",
                state(run.shim)
            );
            kill(run.shim, libc::SIGCONT);
            run.proc
                .expect_line("18", "SIGCONT to the shim is forwarded");
            kill(run.child, libc::SIGSTOP);
            wait_until(&format!("{what}: the child stops"), || stopped(run.child));
            thread::sleep(QUIET);
            assert!(
                running(run.shim),
                "{what}: PID 1 must not follow its child into a stop (state {})",
                state(run.shim)
            );
        }
    }
}

/// A signal that reaches the shim before its child exists is forwarded once it runs: the
/// shim is started with SIGUSR1 blocked and pending (pending signals survive exec). The
/// child starts with the shim's original mask, so SIGUSR1 waits in it until the probe
/// unblocks it. Negative control: with `-r 10:0` ours drops it and the child gets nothing.
///
/// Not for dumb-init: its child unblocks every signal before exec, so the forwarded signal
/// is lost (before setsid, or to the child's temporary handler) or kills the probe before
/// it catches it, depending on timing.
#[test]
fn a_signal_before_the_child_exists_is_forwarded() {
    require_root();
    let probe = probe();
    let start = |shim: &Shim, mode: &Mode| {
        let mut command = shim.command(mode, &[&probe, "signals"]);
        // SAFETY: the hook only calls sigprocmask, getpid and kill, which are
        // async-signal-safe, on a set on its own stack.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR1);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                libc::kill(libc::getpid(), libc::SIGUSR1);
                Ok(())
            });
        }
        let mut proc = Proc::start(format!("{} with SIGUSR1 pending", who(shim, mode)), command);
        proc.expect_ready();
        proc
    };
    for shim in shims_with(Feature::EarlySignal) {
        let mut proc = start(&shim, &Mode::default());
        proc.expect_line("10", "the SIGUSR1 pending at exec must reach the child");
        proc.expect_silence("once only");
        if shim.has(Feature::Rewrite) {
            let mut proc = start(&shim, &Mode::opts(&["-r", "10:0"]));
            proc.expect_silence("with -r 10:0 the pending SIGUSR1 must be dropped");
        }
    }
}

/// tini's signal configuration test: what the shim was started with, blocked and ignored
/// signals, is what the child gets (tini takes care to restore it). dumb-init unblocks
/// every signal in the child and resets the ignored ones (documented).
#[test]
fn the_child_inherits_the_blocked_and_ignored_signals() {
    require_native_shim!(
        "handles SIGSEGV itself, so a SIGSEGV the shim got ignored is not ignored in its child"
    );
    require_root();
    let ignored = [libc::SIGTTOU, libc::SIGSEGV, libc::SIGINT];
    let blocked = [libc::SIGTTIN, libc::SIGILL, libc::SIGTERM];
    for shim in all_shims() {
        let mut command = shim.command(&Mode::default(), &[BUSYBOX, "cat", "/proc/self/status"]);
        // SAFETY: the hook only calls signal and sigprocmask, which are async-signal-safe,
        // on a set on its own stack.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for sig in ignored {
                    libc::signal(sig, libc::SIG_IGN);
                }
                for sig in blocked {
                    libc::sigaddset(&mut set, sig);
                }
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut proc = Proc::start(shim.name.to_owned(), command);
        let status = proc.finish(PATIENCE);
        assert!(
            status.success(),
            "{}: {status:?}\n{}",
            shim.name,
            proc.dump()
        );
        let out = proc.stdout();
        let mask = |field: &str| {
            let line = out
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))
                .unwrap_or_else(|| panic!("{}: no {field} in\n{out}", shim.name));
            u64::from_str_radix(line.trim(), 16).unwrap()
        };
        let (sig_ign, sig_blk) = (mask("SigIgn"), mask("SigBlk"));
        let has = |set: u64, sig: i32| set & (1 << (sig - 1)) != 0;
        let inherits = shim.kind != Kind::DumbInit;
        for sig in ignored {
            assert_eq!(
                has(sig_ign, sig),
                inherits,
                "{}: signal {sig} ignored when the shim started: ignored in the child? (SigIgn {sig_ign:x})",
                shim.name
            );
        }
        for sig in blocked {
            assert_eq!(
                has(sig_blk, sig),
                inherits,
                "{}: signal {sig} blocked when the shim started: blocked in the child? (SigBlk {sig_blk:x})",
                shim.name
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reaping
// ---------------------------------------------------------------------------------------

/// tini's reaping test and dumb-init's zombie test: as PID 1, every orphan is reaped, also
/// a storm of a thousand.
#[test]
fn pid1_reaps_every_orphan() {
    require_root();
    let probe = probe();
    for shim in all_shims() {
        let done = run(
            shim.command_as_pid1(&Mode::default(), &[&probe, "orphans", "1000"]),
            secs(30),
        );
        assert_eq!(
            done.code(),
            Some(0),
            "{}: zombies were left: {done:?}",
            shim.name
        );
        assert_eq!(done.stdout, "zombies 0\n", "{}: {done:?}", shim.name);
    }
}

/// The negative control of [`pid1_reaps_every_orphan`]: with the probe itself as PID 1,
/// which never reaps, the probe sees the zombies and fails. (The probe waits its whole
/// 10 s for them to go.)
#[test]
fn without_a_shim_orphans_stay_zombies() {
    require_root();
    let probe = probe();
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .args([&probe, "orphans", "20"]);
    let done = run(command, secs(30));
    assert_eq!(
        done.code(),
        Some(1),
        "the probe must see its zombies: {done:?}"
    );
    assert_eq!(done.stdout, "zombies 20\n", "{done:?}");
}

/// The shim's child makes `n` orphans (`probe sleep`, their parent gone), then becomes
/// `probe sleep` itself. Returns the orphans' pids once their parent has exited.
fn start_orphan_maker(shim: &Shim, mode: &Mode, n: usize) -> (Proc, Vec<i32>) {
    const ORPHAN_MAKER: &str = r#"probe=$0
/bin/busybox sh -c 'i=0; while [ $i -lt $1 ]; do "$0" sleep & echo "orphan $!"; i=$((i + 1)); done' "$probe" "$1"
echo parent-gone
exec "$probe" sleep"#;
    let mut argv = sh(ORPHAN_MAKER);
    argv.extend([probe(), n.to_string()]);
    let what = who(shim, mode);
    let mut proc = Proc::start(what.clone(), shim.command(mode, &strs(&argv)));
    let mut orphans = Vec::new();
    for _ in 0..n {
        let line = proc.next_line("an orphan's pid");
        let orphan: i32 = line
            .strip_prefix("orphan ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{what}: bad line {line:?}"));
        proc.also_kill.push(orphan);
        orphans.push(orphan);
    }
    // their parent has exited and been reaped: they are reparented by now
    proc.expect_line("parent-gone", "the orphans' parent exits");
    (proc, orphans)
}

/// Waits until `orphan` is reaped: gone from /proc, not left a zombie.
fn wait_reaped(what: &str, orphan: i32) {
    wait_until(
        &format!("{what}: orphan {orphan} is reaped (not left a zombie)"),
        || stat(orphan).is_none(),
    );
}

/// The child makes an orphan and runs on. With -s or TINI_SUBREAPER (any value) the orphan
/// is reparented to the shim, which reaps it when it dies (tini's reaping test, not as
/// PID 1); without, it goes elsewhere (the negative control).
#[test]
fn subreaper_gets_and_reaps_orphans() {
    require_native_shim!("answers PR_SET_CHILD_SUBREAPER with EINVAL");
    require_root();
    for shim in shims_with(Feature::Subreaper) {
        for (mode, subreaper) in [
            (Mode::opts(&["-s"]), true),
            (Mode::env("TINI_SUBREAPER", ""), true),
            (Mode::default(), false),
        ] {
            let what = who(&shim, &mode);
            let (mut proc, orphans) = start_orphan_maker(&shim, &mode, 1);
            let orphan = orphans[0];
            let parent = stat(orphan).map(|s| s.ppid);
            if !subreaper {
                assert_ne!(
                    parent,
                    Some(proc.pid()),
                    "{what}: orphans must not come to a shim that is no subreaper"
                );
                continue;
            }
            assert_eq!(
                parent,
                Some(proc.pid()),
                "{what}: the orphan must be reparented to the shim"
            );
            kill(orphan, libc::SIGKILL);
            wait_reaped(&what, orphan);
            proc.expect_running("the shim runs on after reaping an orphan");
        }
    }
}

/// tini's reaping display test: with -w, one warning per reaped orphan, naming it (tini:
/// "Reaped zombie process with pid=N", ours: "reaped zombie process with pid=N (...)"),
/// none for the child; without -w, none at all. As a subreaper, so that the orphans are
/// known ones (as PID 1 some of the probe's orphans may still run when it exits).
#[test]
fn w_warns_once_per_reaped_orphan() {
    require_native_shim!("answers PR_SET_CHILD_SUBREAPER with EINVAL");
    require_root();
    for shim in shims_with(Feature::WarnOnReap) {
        for (mode, warns) in [
            (Mode::opts(&["-s", "-w"]), true),
            (Mode::opts(&["-s"]), false),
        ] {
            let what = who(&shim, &mode);
            let (mut proc, mut orphans) = start_orphan_maker(&shim, &mode, 3);
            for &orphan in &orphans {
                kill(orphan, libc::SIGKILL);
            }
            for &orphan in &orphans {
                wait_reaped(&what, orphan);
            }
            // the child last: the shim exits, and all it wrote can be read
            let child = sole_child(proc.pid(), &what);
            kill(child, libc::SIGKILL);
            let status = proc.finish(PATIENCE);
            assert_eq!(status.code(), Some(137), "{what}\n{}", proc.dump());
            let mut warned: Vec<i32> = proc
                .stderr()
                .lines()
                .filter_map(|l| l.split_once(REAP_WARNING))
                .map(|(_, rest)| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().unwrap()
                })
                .collect();
            warned.sort_unstable();
            orphans.sort_unstable();
            let expected = if warns { orphans } else { Vec::new() };
            assert_eq!(
                warned,
                expected,
                "{what}: one warning per reaped orphan, naming it\n{}",
                proc.dump()
            );
        }
    }
}

/// Not PID 1 and not a subreaper: ours warns on exactly one line, tini on three, dumb-init
/// never. No warning with -s, TINI_SUBREAPER, TINI_VERBOSITY=0 or as PID 1.
#[test]
fn warning_when_not_pid1_and_not_a_subreaper() {
    require_native_shim!("answers PR_SET_CHILD_SUBREAPER with EINVAL");
    require_root();
    let argv = [BUSYBOX, "true"];
    for shim in all_shims() {
        let done = run(shim.command(&Mode::default(), &argv), PATIENCE);
        assert_eq!(done.code(), Some(0), "{}: {done:?}", shim.name);
        match shim.kind {
            Kind::Cradle => {
                let lines: Vec<&str> = done.stderr.lines().collect();
                assert!(
                    lines.len() == 1 && lines[0].contains(NOT_PID1_WARNING),
                    "{}: exactly one warning line expected: {done:?}",
                    shim.name
                );
            }
            Kind::Tini => assert!(
                done.stderr.contains(TINI_REAPER_WARNING) && done.stderr.lines().count() == 3,
                "{}: tini's three-line warning expected: {done:?}",
                shim.name
            ),
            Kind::DumbInit => assert_eq!(done.stderr, "", "{}: dumb-init never warns", shim.name),
        }
        let mut quiet = vec![];
        if shim.has(Feature::Subreaper) {
            quiet.push(Mode::opts(&["-s"]));
            quiet.push(Mode::env("TINI_SUBREAPER", ""));
        }
        if shim.has(Feature::TiniVerbosity) {
            quiet.push(Mode::env("TINI_VERBOSITY", "0"));
        }
        for mode in quiet {
            let done = run(shim.command(&mode, &argv), PATIENCE);
            assert_eq!(done.code(), Some(0), "{}: {done:?}", who(&shim, &mode));
            assert_eq!(
                done.stderr,
                "",
                "{}: no warning expected",
                who(&shim, &mode)
            );
        }
        let done = run(shim.command_as_pid1(&Mode::default(), &argv), PATIENCE);
        assert_eq!(done.code(), Some(0), "{} as PID 1: {done:?}", shim.name);
        assert_eq!(
            done.stderr, "",
            "{} as PID 1: no warning expected",
            shim.name
        );
    }
}

/// tini's pdeathsignal test: with `-p SIGUSR1` the shim gets SIGUSR1 when its parent dies,
/// and forwards it to the child. Without -p nothing reaches the child (negative control).
#[test]
fn p_forwards_the_parent_death_signal() {
    require_root();
    let probe = probe();
    for shim in shims_with(Feature::ParentDeath) {
        for (mode, expected) in [
            (Mode::opts(&["-p", "SIGUSR1"]), true),
            (Mode::default(), false),
        ] {
            let what = format!("{} below a shell that is killed", who(&shim, &mode));
            // the parent: a shell that runs the shim in the background and waits
            let mut command = Command::new(BUSYBOX);
            command
                .args(["sh", "-c", r#""$@" & wait"#, "sh"])
                .args(shim.words());
            mode.apply(&mut command);
            command.args(["--", &probe, "signals"]);
            let mut proc = Proc::start(what.clone(), command);
            let line = proc.next_line("the probe's ready line");
            let child: i32 = line
                .strip_prefix("ready ")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{what}: bad line {line:?}"));
            let shim_pid = stat(child).map(|s| s.ppid).unwrap();
            proc.also_kill.extend([child, shim_pid]);
            assert_eq!(
                stat(shim_pid).map(|s| s.ppid),
                Some(proc.pid()),
                "{what}: the shell is the shim's parent"
            );
            kill(proc.pid(), libc::SIGKILL);
            if expected {
                proc.expect_line("10", "the parent death signal must reach the child");
            } else {
                proc.expect_silence("without -p the parent's death sends nothing");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Terminal
// ---------------------------------------------------------------------------------------

/// A new pseudo-terminal: (master, slave).
fn open_pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: plain calls on descriptors we own; the name buffer is ours and its length
    // is given.
    #[allow(unsafe_code)]
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        let master = OwnedFd::from_raw_fd(master);
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r"
        );
        let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(
            slave >= 0,
            "opening the pty: {}",
            std::io::Error::last_os_error()
        );
        (master, OwnedFd::from_raw_fd(slave))
    }
}

/// Starts `command` with a new pty as stdin, in a session of its own; with `take_it`,
/// the pty becomes the session's controlling terminal (its foreground group: the
/// command's). The master is returned: the terminal lives as long as it.
fn start_on_new_terminal(what: String, mut command: Command, take_it: bool) -> (Proc, OwnedFd) {
    let (master, slave) = open_pty();
    // SAFETY: the hook only calls setsid and ioctl, which are async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if take_it && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    (Proc::start_on(what, command, Stdio::from(slave)), master)
}

/// dumb-init's tty tests and tini's tcsetpgrp: the shim runs on a terminal it controls,
/// in the foreground; the child must be on the terminal, have it as its controlling
/// terminal and be in its foreground group. In a session of its own (ours and dumb-init
/// by default) or as a process group in the shim's session (ours with -c, tini);
/// dumb-init's -c leaves the child in its own group (documented). Negative control: the
/// probe in a session without a controlling terminal says so.
#[test]
fn the_child_gets_the_terminal_in_the_foreground() {
    require_root();
    let probe = probe();
    let all_yes = "tty yes controlling yes foreground yes";
    for shim in all_shims() {
        let mut modes = vec![Mode::default()];
        modes.extend(shim.single_child_modes());
        for mode in modes {
            let setsid = shim.kind != Kind::Tini && mode.opts.is_empty() && mode.env.is_empty();
            let what = format!("{} on a terminal", who(&shim, &mode));
            let (mut proc, master) =
                start_on_new_terminal(what.clone(), shim.command(&mode, &[&probe, "tty"]), true);
            proc.expect_line(all_yes, "the child has the terminal, in the foreground");
            let status = proc.wait(PATIENCE);
            assert_eq!(status.code(), Some(0), "{what}\n{}", proc.dump());
            drop(master);

            // the same, seen from /proc: the child's session and process group
            let (proc, master) = start_on_new_terminal(
                what.clone(),
                shim.command(&mode, &[&probe, "signals"]),
                true,
            );
            let mut run = Signals {
                shim: proc.pid(),
                child: 0,
                proc,
            };
            run.proc.expect_ready();
            run.child = sole_child(run.shim, &what);
            let (shim_stat, child_stat) = (stat(run.shim).unwrap(), stat(run.child).unwrap());
            let detail = format!("{what}: shim {shim_stat:?}, child {child_stat:?}");
            assert_ne!(
                child_stat.tty_nr, 0,
                "{detail}: the child has a controlling terminal"
            );
            assert_eq!(
                child_stat.tpgid, child_stat.pgrp,
                "{detail}: the child's group is the foreground"
            );
            if setsid {
                assert_eq!(
                    child_stat.session, run.child,
                    "{detail}: a session of its own"
                );
                assert_eq!(child_stat.pgrp, run.child, "{detail}: leads its group");
            } else if shim.kind == Kind::DumbInit {
                assert_eq!(
                    child_stat.session, shim_stat.session,
                    "{detail}: in the shim's session"
                );
                assert_eq!(
                    child_stat.pgrp, shim_stat.pgrp,
                    "{detail}: dumb-init -c: in the shim's group"
                );
            } else {
                assert_eq!(
                    child_stat.session, shim_stat.session,
                    "{detail}: in the shim's session"
                );
                assert_eq!(
                    child_stat.pgrp, run.child,
                    "{detail}: a process group of its own"
                );
            }
            drop(run);
            drop(master);
        }
    }
    // the negative control: the probe can tell
    let mut command = Command::new(&probe);
    command.arg("tty");
    let (mut proc, master) = start_on_new_terminal(
        "probe without a controlling terminal".into(),
        command,
        false,
    );
    proc.expect_line(
        "tty yes controlling no foreground no",
        "no controlling terminal",
    );
    proc.wait(PATIENCE);
    drop(master);
}

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------

/// Usage errors: ours exits 2 with the message and the usage on stderr; tini and
/// dumb-init exit 1 (an intentional difference). Help and version: what each prints,
/// where.
#[test]
fn usage_errors_help_and_version() {
    require_root();
    for shim in all_shims() {
        let usage_code = if shim.kind == Kind::Cradle { 2 } else { 1 };
        let missing_value: &[&str] = if shim.kind == Kind::DumbInit {
            &["-r"]
        } else {
            &["-e"]
        };
        let cases: [(&str, &[&str]); 4] = [
            ("unknown option", &["-x", "--", BUSYBOX, "true"]),
            ("missing value", missing_value),
            ("no command", &[]),
            ("no command after --", &["--"]),
        ];
        for (case, args) in cases {
            let done = run(shim.raw(args), PATIENCE);
            assert_eq!(
                done.code(),
                Some(usage_code),
                "{}: {case} {args:?}: {done:?}",
                shim.name
            );
            assert_eq!(done.stdout, "", "{}: {case}: nothing on stdout", shim.name);
            match shim.kind {
                Kind::Cradle => assert!(
                    done.stderr.contains("error: ") && done.stderr.contains("usage: cradle-shim"),
                    "{}: {case}: a message and the usage on stderr: {done:?}",
                    shim.name
                ),
                _ => assert!(
                    !done.stderr.is_empty(),
                    "{}: {case}: a message on stderr",
                    shim.name
                ),
            }
        }
        let help = run(shim.raw(&["-h"]), PATIENCE);
        assert_eq!(help.code(), Some(0), "{}: -h: {help:?}", shim.name);
        let (help_text, version_args, version_text): (&str, &[&str], String) = match shim.kind {
            Kind::Cradle => (
                &help.stdout,
                &["--version", "-V"],
                format!("cradle-shim {}\n", env!("CARGO_PKG_VERSION")),
            ),
            Kind::Tini => (&help.stdout, &["--version"], "tini version 0.19.0\n".into()),
            // dumb-init writes both on stderr
            Kind::DumbInit => (
                &help.stderr,
                &["--version", "-V"],
                "dumb-init v1.2.5\n".into(),
            ),
        };
        assert!(
            help_text.to_lowercase().contains("usage:"),
            "{}: -h: {help:?}",
            shim.name
        );
        if shim.kind == Kind::Cradle {
            let long = run(shim.raw(&["--help"]), PATIENCE);
            assert_eq!(
                (long.code(), &long.stdout),
                (Some(0), &help.stdout),
                "{}: --help",
                shim.name
            );
        }
        for arg in version_args {
            let done = run(shim.raw(&[arg]), PATIENCE);
            assert_eq!(done.code(), Some(0), "{}: {arg}: {done:?}", shim.name);
            let printed = if shim.kind == Kind::DumbInit {
                &done.stderr
            } else {
                &done.stdout
            };
            assert_eq!(printed, &version_text, "{}: {arg}: {done:?}", shim.name);
        }
    }
}

/// Exec failures: not found 127, not executable 126, as tini and the shell; dumb-init
/// exits 2 for both. A script without `#!` is run by /bin/sh in all of them (glibc's
/// execvp does it for tini and dumb-init; ours does it itself).
#[test]
fn exec_failures() {
    require_native_shim!(
        "runs a CLONE_VFORK child as a fork, so the shim cannot see its exec fail"
    );
    require_root();
    let dir = std::env::temp_dir().join(format!("cradle-conformance-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let not_executable = dir.join("not-executable");
    fs::write(&not_executable, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).unwrap();
    let no_shebang = dir.join("no-shebang");
    fs::write(&no_shebang, "exit 7\n").unwrap();
    fs::set_permissions(&no_shebang, fs::Permissions::from_mode(0o755)).unwrap();
    let missing = dir.join("missing");
    let path = |p: &PathBuf| p.to_str().unwrap().to_owned();
    for shim in all_shims() {
        let (not_found, denied, script) = match shim.kind {
            Kind::Cradle => (127, 126, 7),
            Kind::Tini => (127, 126, 7),
            Kind::DumbInit => (2, 2, 7),
        };
        for (file, code) in [
            (&missing, not_found),
            (&not_executable, denied),
            (&no_shebang, script),
        ] {
            let file = path(file);
            let done = run(shim.command(&Mode::default(), &[&file]), PATIENCE);
            assert_eq!(
                done.code(),
                Some(code),
                "{}: exec {file}: {done:?}",
                shim.name
            );
            if code == 7 {
                continue;
            }
            // one error line naming the command (besides the not-PID-1 warning)
            let errors: Vec<&str> = done
                .stderr
                .lines()
                .filter(|l| !l.contains(NOT_PID1_WARNING) && l.contains(&file))
                .collect();
            assert_eq!(
                errors.len(),
                1,
                "{}: exec {file}: one error line: {done:?}",
                shim.name
            );
            if shim.kind == Kind::Cradle {
                assert_eq!(
                    done.stderr.lines().count(),
                    2,
                    "{}: exec {file}: the warning and the error, nothing else: {done:?}",
                    shim.name
                );
            }
        }
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// Runs `probe signals` under the shim, forwards SIGUSR1 to it, kills the child: enough
/// for every shim to have something to say at debug level. Returns (stdout, stderr).
fn debug_run(shim: &Shim, mode: &Mode) -> (String, String) {
    let probe = probe();
    let mut proc = Proc::start(who(shim, mode), shim.command(mode, &[&probe, "signals"]));
    // tini writes its debug lines on stdout, between the probe's
    while !proc
        .next_line("the probe's ready line")
        .starts_with("ready")
    {}
    let child = sole_child(proc.pid(), &proc.what);
    kill(proc.pid(), libc::SIGUSR1);
    while proc.next_line("the forwarded SIGUSR1") != "10" {}
    kill(child, libc::SIGKILL);
    let status = proc.finish(PATIENCE);
    assert_eq!(
        status.code(),
        Some(137),
        "{}: {status:?}\n{}",
        proc.what,
        proc.dump()
    );
    (proc.stdout(), proc.stderr())
}

/// Verbosity: -v -v, TINI_VERBOSITY=3 and DUMB_INIT_DEBUG=1 give debug lines, none by
/// default (TINI_VERBOSITY=0 is checked with the not-PID-1 warning). Ours and dumb-init
/// write them on stderr, tini on stdout (documented).
#[test]
fn verbosity() {
    require_root();
    for shim in all_shims() {
        let (modes, marker): (Vec<Mode>, &str) = match shim.kind {
            Kind::Cradle => (
                vec![
                    Mode::opts(&["-v", "-v"]),
                    Mode::opts(&["-vv"]),
                    Mode::env("TINI_VERBOSITY", "3"),
                    Mode::env("DUMB_INIT_DEBUG", "1"),
                ],
                ": debug: ",
            ),
            Kind::Tini => (
                vec![
                    Mode::opts(&["-v", "-v", "-v"]),
                    Mode::env("TINI_VERBOSITY", "3"),
                ],
                "[DEBUG tini",
            ),
            Kind::DumbInit => (
                vec![Mode::opts(&["-v"]), Mode::env("DUMB_INIT_DEBUG", "1")],
                "[dumb-init]",
            ),
        };
        let debug_stream = |(stdout, stderr): (String, String)| {
            if shim.kind == Kind::Tini {
                stdout
            } else {
                stderr
            }
        };
        let quiet = debug_stream(debug_run(&shim, &Mode::default()));
        assert!(
            !quiet.contains(marker),
            "{}: no debug lines by default:\n{quiet}",
            shim.name
        );
        for mode in modes {
            let loud = debug_stream(debug_run(&shim, &mode));
            assert!(
                loud.contains(marker),
                "{}: debug lines expected:\n{loud}",
                who(&shim, &mode)
            );
        }
    }
}
