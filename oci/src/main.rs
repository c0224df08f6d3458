//! `cradle-oci`: an OCI runtime with runc's command line (as containerd's go-runc,
//! podman's conmon and the runtime-tools suite call it), on cradle's container core, with
//! `cradle-shim` as PID 1 of every container.
//!
//! `main` parses the command line, sets up the log (`--log FILE`, `--log-format
//! text|json`: containerd reads the JSON lines back), runs the command, and is the one
//! place that prints an error and turns it into an exit code (cradle's table).
#![deny(unsafe_code)]

mod commands;
mod create;
mod exec;
mod hooks;
mod resources;
mod seccomp;
mod spec;
mod state;
mod update;

use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use argh::FromArgs;
use cradle_core::error::{Code, Error, Result};
use cradle_core::sys::{self, SingleThreaded};

/// The runtime's allocator, as the launcher's (see its `main.rs`; README, Dependencies).
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// An OCI runtime (runc's command line) on cradle's container core; cradle-shim is PID 1
/// of every container.
#[derive(FromArgs)]
struct Cli {
    /// where containers' state lives (default /run/cradle-oci)
    #[argh(option)]
    root: Option<PathBuf>,
    /// append errors and warnings to FILE
    #[argh(option)]
    log: Option<PathBuf>,
    /// the log's format: text or json
    #[argh(option, default = "String::from(\"text\")")]
    log_format: String,
    /// log debug messages too
    #[argh(switch)]
    debug: bool,
    /// read cgroupsPath as systemd's slice:prefix:name (laid out as systemd does; no unit
    /// is made)
    #[argh(switch)]
    systemd_cgroup: bool,
    /// the version
    #[argh(switch, short = 'v')]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Create(CreateCmd),
    Start(StartCmd),
    State(StateCmd),
    Kill(KillCmd),
    Delete(DeleteCmd),
    Run(RunCmd),
    Exec(ExecCmd),
    Update(UpdateCmd),
    List(ListCmd),
    Ps(PsCmd),
    Pause(PauseCmd),
    Resume(ResumeCmd),
    Spec(SpecCmd),
    Features(FeaturesCmd),
}

/// make a container from a bundle; its process waits for `start`
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
struct CreateCmd {
    /// the bundle directory (default: the current one)
    #[argh(option, short = 'b', default = "PathBuf::from(\".\")")]
    bundle: PathBuf,
    /// write the container's pid (its PID 1's, on the host) to FILE
    #[argh(option)]
    pid_file: Option<PathBuf>,
    /// a Unix socket to send the terminal's pty to (process.terminal)
    #[argh(option)]
    console_socket: Option<PathBuf>,
    /// move the root over / instead of pivot_root
    #[argh(switch)]
    no_pivot: bool,
    /// accepted for runc's callers: no keyring is made
    #[argh(switch)]
    no_new_keyring: bool,
    /// pass descriptors 3 to N+2 on to the process, as they are
    #[argh(option, default = "0")]
    preserve_fds: u32,
    /// the container's id
    #[argh(positional)]
    id: String,
}

/// create and start a container, then wait for it (unless --detach) and delete it
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct RunCmd {
    /// the bundle directory (default: the current one)
    #[argh(option, short = 'b', default = "PathBuf::from(\".\")")]
    bundle: PathBuf,
    /// write the container's pid to FILE
    #[argh(option)]
    pid_file: Option<PathBuf>,
    /// a Unix socket to send the terminal's pty to
    #[argh(option)]
    console_socket: Option<PathBuf>,
    /// return once started, leaving the container running
    #[argh(switch, short = 'd')]
    detach: bool,
    /// move the root over / instead of pivot_root
    #[argh(switch)]
    no_pivot: bool,
    /// accepted for runc's callers: no keyring is made
    #[argh(switch)]
    no_new_keyring: bool,
    /// pass descriptors 3 to N+2 on to the process, as they are
    #[argh(option, default = "0")]
    preserve_fds: u32,
    /// the container's id
    #[argh(positional)]
    id: String,
}

/// let a created container's process run
#[derive(FromArgs)]
#[argh(subcommand, name = "start")]
struct StartCmd {
    /// the container's id
    #[argh(positional)]
    id: String,
}

/// print the container's state (the spec's JSON)
#[derive(FromArgs)]
#[argh(subcommand, name = "state")]
struct StateCmd {
    /// the container's id
    #[argh(positional)]
    id: String,
}

/// freeze every process of the container
#[derive(FromArgs)]
#[argh(subcommand, name = "pause")]
struct PauseCmd {
    /// the container's id
    #[argh(positional)]
    id: String,
}

/// thaw a paused container
#[derive(FromArgs)]
#[argh(subcommand, name = "resume")]
struct ResumeCmd {
    /// the container's id
    #[argh(positional)]
    id: String,
}

/// run another process in a running container
#[derive(FromArgs)]
#[argh(subcommand, name = "exec")]
struct ExecCmd {
    /// the process as JSON (the spec's process object), instead of CMD and the options
    #[argh(option, short = 'p')]
    process: Option<PathBuf>,
    /// give it a terminal (sent to --console-socket)
    #[argh(switch, short = 't')]
    tty: bool,
    /// a Unix socket to send the terminal's pty to
    #[argh(option)]
    console_socket: Option<PathBuf>,
    /// write its pid (its shim's, on the host) to FILE
    #[argh(option)]
    pid_file: Option<PathBuf>,
    /// return once it runs
    #[argh(switch, short = 'd')]
    detach: bool,
    /// UID[:GID] to run it as
    #[argh(option, short = 'u')]
    user: Option<String>,
    /// add NAME=VALUE to its environment (repeatable)
    #[argh(option, short = 'e')]
    env: Vec<String>,
    /// its working directory
    #[argh(option)]
    cwd: Option<String>,
    /// add a capability (CAP_NAME) to its sets (repeatable)
    #[argh(option, short = 'c')]
    cap: Vec<String>,
    /// set no_new_privs for it
    #[argh(switch)]
    no_new_privs: bool,
    /// a supplementary group id (repeatable)
    #[argh(option, short = 'g')]
    additional_gids: Vec<u32>,
    /// the container's id
    #[argh(positional)]
    id: String,
    /// the command and its arguments (after the id)
    #[argh(positional, greedy)]
    args: Vec<String>,
}

/// change a container's resources
#[derive(FromArgs)]
#[argh(subcommand, name = "update")]
struct UpdateCmd {
    /// the spec's linux.resources object as JSON (- for standard input)
    #[argh(option, short = 'r')]
    resources: Option<PathBuf>,
    /// memory limit (bytes, or with K, M, G; -1 for none)
    #[argh(option, short = 'm')]
    memory: Option<String>,
    /// memory and swap together
    #[argh(option)]
    memory_swap: Option<String>,
    /// memory reservation (soft limit)
    #[argh(option)]
    memory_reservation: Option<String>,
    /// most processes (0 or -1: none)
    #[argh(option)]
    pids_limit: Option<i64>,
    /// CPU time per period (microseconds; -1: none)
    #[argh(option)]
    cpu_quota: Option<i64>,
    /// CPU period (microseconds)
    #[argh(option)]
    cpu_period: Option<u64>,
    /// CPU shares (cgroup v1's; a weight on v2)
    #[argh(option)]
    cpu_share: Option<u64>,
    /// the CPUs it may use (0-3,5)
    #[argh(option)]
    cpuset_cpus: Option<String>,
    /// the memory nodes it may use
    #[argh(option)]
    cpuset_mems: Option<String>,
    /// the container's id
    #[argh(positional)]
    id: String,
}

/// send a signal to the container's process (default SIGTERM)
#[derive(FromArgs)]
#[argh(subcommand, name = "kill")]
struct KillCmd {
    /// send it to every process of the container
    #[argh(switch, short = 'a')]
    all: bool,
    /// the container's id
    #[argh(positional)]
    id: String,
    /// a signal name (KILL, SIGKILL) or number
    #[argh(positional, default = "String::from(\"SIGTERM\")")]
    signal: String,
}

/// remove a container (its processes with --force), its cgroup and its state
#[derive(FromArgs)]
#[argh(subcommand, name = "delete")]
struct DeleteCmd {
    /// kill it first if it runs; no error if it does not exist
    #[argh(switch, short = 'f')]
    force: bool,
    /// the container's id
    #[argh(positional)]
    id: String,
}

/// list the containers
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct ListCmd {
    /// table or json
    #[argh(option, short = 'f', default = "String::from(\"table\")")]
    format: String,
    /// ids only
    #[argh(switch, short = 'q')]
    quiet: bool,
}

/// the processes of a container (json: their pids)
#[derive(FromArgs)]
#[argh(subcommand, name = "ps")]
struct PsCmd {
    /// table or json
    #[argh(option, short = 'f', default = "String::from(\"table\")")]
    format: String,
    /// the container's id
    #[argh(positional)]
    id: String,
    /// options for ps(1) (default -ef)
    #[argh(positional, greedy)]
    ps_args: Vec<String>,
}

/// write an example config.json into the bundle
#[derive(FromArgs)]
#[argh(subcommand, name = "spec")]
struct SpecCmd {
    /// the bundle directory (default: the current one)
    #[argh(option, short = 'b', default = "PathBuf::from(\".\")")]
    bundle: PathBuf,
}

/// print what this runtime supports (the spec's features document)
#[derive(FromArgs)]
#[argh(subcommand, name = "features")]
struct FeaturesCmd {}

/// Where errors and warnings go besides standard error.
struct Log {
    file: Option<fs::File>,
    json: bool,
}

impl Log {
    fn open(path: Option<&Path>, format: &str) -> std::result::Result<Self, String> {
        let json = match format {
            "json" => true,
            "text" => false,
            other => return Err(format!("bad --log-format {other:?}: use text or json")),
        };
        let file = path
            .map(|p| {
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("--log {}: {e}", p.display()))
            })
            .transpose()?;
        Ok(Log { file, json })
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(mut file) = self.file.as_ref() else {
            return;
        };
        let level = match level {
            "warn" => "warning",
            other => other,
        };
        let time = state::now_rfc3339();
        let line = if self.json {
            format!(
                "{}\n",
                serde_json::json!({"level": level, "msg": msg, "time": time})
            )
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}\n")
        };
        let _ = file.write_all(line.as_bytes());
    }
}

/// The log, as the `log` crate's logger: standard error, and the `--log` file.
static LOG: std::sync::OnceLock<Log> = std::sync::OnceLock::new();

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = record.args().to_string();
        let level = record.level().as_str().to_ascii_lowercase();
        eprintln!("cradle-oci: {level}: {msg}");
        if let Some(log) = LOG.get() {
            log.write(&level, &msg);
        }
    }

    fn flush(&self) {}
}

/// runc's callers write `--opt=value` as often as `--opt value`: argh takes the second.
fn split_equals(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        match arg.split_once('=') {
            Some((opt, value)) if opt.starts_with("--") && opt.len() > 2 => {
                out.push(opt.to_owned());
                out.push(value.to_owned());
            }
            _ => out.push(arg),
        }
    }
    out
}

fn parse_cli() -> std::result::Result<Cli, ExitCode> {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                eprintln!("cradle-oci: error: argument {arg:?} is not valid UTF-8");
                return Err(ExitCode::from(Code::Usage as u8));
            }
        }
    }
    let args = split_equals(args);
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    if matches!(words.as_slice(), ["--version"] | ["-v"] | ["-V"]) {
        println!(
            "cradle-oci version {}\nspec: 1.2.0",
            env!("CARGO_PKG_VERSION")
        );
        return Err(ExitCode::SUCCESS);
    }
    Cli::from_args(&["cradle-oci"], &words).map_err(|early| match early.status {
        Ok(()) => {
            print!("{}", early.output);
            ExitCode::SUCCESS
        }
        Err(()) => {
            eprint!("{}", early.output);
            eprintln!("Run cradle-oci --help for how to use it.");
            ExitCode::from(Code::Usage as u8)
        }
    })
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let preserved = match take_descriptors(&cli) {
        Ok(preserved) => preserved,
        Err(msg) => {
            eprintln!("cradle-oci: error: {msg}");
            return ExitCode::from(Code::Usage as u8);
        }
    };
    let log = match Log::open(cli.log.as_deref(), &cli.log_format) {
        Ok(log) => log,
        Err(msg) => {
            eprintln!("cradle-oci: error: {msg}");
            return ExitCode::from(Code::Usage as u8);
        }
    };
    let level = if cli.debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    let log = LOG.get_or_init(|| log);
    if log::set_logger(&Logger).is_ok() {
        log::set_max_level(level);
    }
    match run(cli, &preserved) {
        Ok(code) => code,
        Err(error) => {
            let msg = error.to_string();
            log.write("error", &msg);
            eprintln!("cradle-oci: error: {msg}");
            ExitCode::from(error.code() as u8)
        }
    }
}

fn run(cli: Cli, preserved: &[OwnedFd]) -> Result<ExitCode> {
    if cli.version {
        println!(
            "cradle-oci version {}\nspec: 1.2.0",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let root = state::Root::new(
        cli.root
            .as_deref()
            .unwrap_or(Path::new(state::DEFAULT_ROOT)),
    );
    let Some(command) = cli.command else {
        return Err(Error::Usage(
            "no command: run cradle-oci --help for the list".into(),
        ));
    };
    let threads = || SingleThreaded::check().map_err(|e| Error::host("check threads", e));
    match command {
        Command::Create(c) => {
            // cradle-oci never makes a session keyring: there is none to leave out
            log::debug!("--no-new-keyring: {}", c.no_new_keyring);
            create::create(
                &threads()?,
                &root,
                &create::Options {
                    id: &c.id,
                    bundle: &c.bundle,
                    pid_file: c.pid_file.as_deref(),
                    console_socket: c.console_socket.as_deref(),
                    no_pivot: c.no_pivot,
                    systemd_cgroup: cli.systemd_cgroup,
                    preserved,
                },
            )?;
        }
        Command::Run(c) => {
            log::debug!("--no-new-keyring: {}", c.no_new_keyring);
            let record = create::create(
                &threads()?,
                &root,
                &create::Options {
                    id: &c.id,
                    bundle: &c.bundle,
                    pid_file: c.pid_file.as_deref(),
                    console_socket: c.console_socket.as_deref(),
                    no_pivot: c.no_pivot,
                    systemd_cgroup: cli.systemd_cgroup,
                    preserved,
                },
            )?;
            if let Err(e) = commands::start(&threads()?, &root, &c.id) {
                let _ = commands::delete(&threads()?, &root, &c.id, true);
                return Err(e);
            }
            if c.detach {
                return Ok(ExitCode::SUCCESS);
            }
            // ours to reap: create made it our child
            let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(record.pid), None);
            commands::delete(&threads()?, &root, &c.id, true)?;
            return Ok(match status {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => ExitCode::from(code as u8),
                Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => {
                    ExitCode::from(128 + sig as u8)
                }
                _ => ExitCode::from(Code::Setup as u8),
            });
        }
        Command::Exec(c) => {
            let code = exec::exec(
                &threads()?,
                &root,
                &exec::Options {
                    id: &c.id,
                    process_file: c.process.as_deref(),
                    args: &c.args,
                    tty: c.tty,
                    console_socket: c.console_socket.as_deref(),
                    pid_file: c.pid_file.as_deref(),
                    detach: c.detach,
                    user: c.user.as_deref(),
                    env: &c.env,
                    cwd: c.cwd.as_deref(),
                    caps: &c.cap,
                    no_new_privs: c.no_new_privs,
                    additional_gids: &c.additional_gids,
                },
            )?;
            return Ok(ExitCode::from(code));
        }
        Command::Update(c) => update::update(
            &root,
            &c.id,
            &update::Flags {
                resources: c.resources.as_deref(),
                memory: c.memory.as_deref(),
                memory_swap: c.memory_swap.as_deref(),
                memory_reservation: c.memory_reservation.as_deref(),
                pids_limit: c.pids_limit,
                cpu_quota: c.cpu_quota,
                cpu_period: c.cpu_period,
                cpu_share: c.cpu_share,
                cpuset_cpus: c.cpuset_cpus.as_deref(),
                cpuset_mems: c.cpuset_mems.as_deref(),
            },
        )?,
        Command::Start(c) => commands::start(&threads()?, &root, &c.id)?,
        Command::State(c) => commands::state(&root, &c.id)?,
        Command::Kill(c) => {
            let signal = commands::parse_signal(&c.signal)?;
            commands::kill(&root, &c.id, signal, c.all)?
        }
        Command::Delete(c) => commands::delete(&threads()?, &root, &c.id, c.force)?,
        Command::List(c) => commands::list(&root, &c.format, c.quiet)?,
        Command::Ps(c) => commands::ps(&root, &c.id, &c.format, &c.ps_args)?,
        Command::Pause(c) => commands::freeze(&root, &c.id, true)?,
        Command::Resume(c) => commands::freeze(&root, &c.id, false)?,
        Command::Spec(c) => commands::spec(&c.bundle)?,
        Command::Features(_) => commands::features()?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The descriptors `--preserve-fds N` hands the container's process as they are (3 to
/// N+2, each checked open), taken before we open anything; every other descriptor we
/// inherited is made close-on-exec, so that none leaks into a container.
fn take_descriptors(cli: &Cli) -> std::result::Result<Vec<OwnedFd>, String> {
    let n = match &cli.command {
        Some(Command::Create(c)) => c.preserve_fds,
        Some(Command::Run(c)) => c.preserve_fds,
        _ => 0,
    };
    if n > 65_536 {
        return Err(format!(
            "--preserve-fds {n}: more descriptors than a process may hold"
        ));
    }
    let preserved = (3..3 + n as i32)
        .map(|fd| {
            sys::adopt_fd(fd)
                .map_err(|e| format!("--preserve-fds {n}: descriptor {fd} is not open ({e})"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // close_range is Linux 5.11: older kernels pass on what the caller left open
    if let Err(e) = sys::cloexec_from(3 + n) {
        log::debug!("close_range: {e}");
    }
    Ok(preserved)
}
