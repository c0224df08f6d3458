//! `cradle`: boots a guest OS from a plain root directory, as OpenVZ's `vzctl start` does,
//! with `cradle-shim` as the container's PID 1.
//!
//! `main` parses the command line, sets up logging, runs the command, and is the one place
//! that prints an error and turns it into an exit code (the table in `error::Code`).
//!
//! The launcher is single-threaded by design: see `sys`.
#![deny(unsafe_code)]

mod cli;
mod commands;
mod configfile;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use cli::{Cli, Command, LimitOptions, Seconds, Switch};
use commands::detach::{Forked, Readiness};
use commands::{attach, autostart, create, detach, exec, run, set, start, status, stop};
use cradle_core::cgroups::limits::{Changes, Limits};
use cradle_core::error::{Code, Error};
use cradle_core::guest::state;
use cradle_core::handoff;
use cradle_core::security::{Security, caps};
use cradle_core::sys::{self, SingleThreaded};

/// The launcher's allocator: musl's own maps and unmaps pages as a command allocates and
/// frees, which cost `cradle exec` and a boot 0.2 to 0.35 ms each (README, Dependencies).
/// Here, not in the library: its lock is not reset in a forked child, which is sound in a
/// single-threaded program and not in a test harness's threads (a unit test that forked
/// hung on it).
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// Parses the command line; on a usage error, the message and code 2 (argh's own
/// `--help` output goes to standard output with code 0).
fn parse_cli() -> Result<Cli, ExitCode> {
    let mut args = Vec::new();
    for arg in std::env::args_os() {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                eprintln!("cradle: error: argument {arg:?} is not valid UTF-8");
                return Err(ExitCode::from(Code::Usage as u8));
            }
        }
    }
    let words: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    if matches!(words.as_slice(), ["--version"] | ["-V"]) {
        println!("cradle {}", env!("CARGO_PKG_VERSION"));
        return Err(ExitCode::SUCCESS);
    }
    Cli::from_args(&["cradle"], &words).map_err(|early| match early.status {
        Ok(()) => {
            print!("{}", early.output);
            ExitCode::SUCCESS
        }
        Err(()) => {
            eprint!("{}", early.output);
            eprintln!("Run cradle --help for how to use it.");
            ExitCode::from(Code::Usage as u8)
        }
    })
}

fn state_base(cli: &Cli) -> PathBuf {
    cli.state_dir
        .clone()
        .or_else(|| std::env::var_os("CRADLE_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(state::DEFAULT_BASE))
}

fn config_dir(cli: &Cli) -> PathBuf {
    cli.config_dir
        .clone()
        .or_else(|| std::env::var_os("CRADLE_CONFIG_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(configfile::DEFAULT_DIR))
}

/// The bounding set and filter `run` was asked for.
fn security(add: &[String], drop: &[String], seccomp: Switch) -> Result<Security, Error> {
    Ok(Security {
        caps: caps::resolve(add, drop)?,
        seccomp: seccomp == Switch::On,
    })
}

/// The limits `run` was given.
fn limits(options: &impl LimitOptions) -> Result<Limits, Error> {
    Changes::parse(options.given())?.apply_to(Limits::DEFAULT)
}

/// Prints what `status` or `list` made.
fn print(text: String) -> u8 {
    use std::io::Write;
    // a reader that went away (`| head`) is no error of ours
    let _ = std::io::stdout().write_all(text.as_bytes());
    Code::Ok as u8
}

/// Where a detached monitor logs unless told (`--log-file`): as LXC's, a file per guest
/// that outlives it, in `$CRADLE_LOG_DIR` or /var/log/cradle.
const LOG_DIR: &str = "/var/log/cradle";

fn log_file(start: &cli::Start) -> Result<PathBuf, Error> {
    if let Some(path) = &start.log_file {
        return Ok(path.clone());
    }
    let dir =
        std::env::var_os("CRADLE_LOG_DIR").map_or_else(|| PathBuf::from(LOG_DIR), PathBuf::from);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::host(format!("log directory {}", dir.display()), e))?;
    Ok(dir.join(format!("{}.log", start.name)))
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    let threads = SingleThreaded::check().map_err(|e| Error::host("start", e))?;
    let base = state_base(&cli);
    let configs = config_dir(&cli);
    let globals = autostart::Globals {
        state_dir: base.clone(),
        config_dir: configs.clone(),
        verbose: cli.verbose,
        quiet: cli.quiet,
        syslog: cli.syslog,
    };
    match cli.command {
        Command::Start(start) => {
            let mut readiness = if start.detach {
                state::validate_name(&start.name)?;
                let log = (!cli.syslog).then(|| log_file(&start)).transpose()?;
                match detach::fork(&threads, log.as_deref())? {
                    Forked::Command(code) => return Ok(code),
                    Forked::Monitor(readiness) => readiness,
                }
            } else {
                Readiness::foreground()
            };
            // with --root, the command line says everything; without, the config file
            let started = match start.root {
                Some(_) => Ok(None),
                None => configfile::load(
                    &configs,
                    &start.name,
                    "give --root, or make one with cradle create",
                )
                .map(Some),
            }
            .and_then(|file| start::start_options(&start, file, base))
            .and_then(|opts| start::start(&threads, &opts, &mut readiness));
            if let Err(error) = &started {
                // the command that started a detached monitor says it; the monitor logs it
                readiness.failed(error);
            }
            started.map(|()| Code::Ok as u8)
        }
        Command::Console(console) => attach::console(&base, &console.name).map(|_| Code::Ok as u8),
        Command::Stop(stop) => stop::stop(
            &threads,
            &base,
            &stop.name,
            stop.mode,
            stop.timeout.map(cli::Seconds::duration),
        )
        .map(|()| Code::Ok as u8),
        Command::Exec(exec) => exec::exec(
            &threads,
            &base,
            &exec.name,
            &exec.env,
            exec.timeout.map(Seconds::duration),
            &exec.command,
        ),
        Command::Run(run) => {
            let limits = limits(&run)?;
            let net = cradle_core::net::Request::parse(&cli::NetOptions::net_given(&run))?;
            run::run(
                &threads,
                &run::Options {
                    state_base: base.clone(),
                    root: run.root,
                    name: run.name,
                    hostname: run.hostname,
                    env: run.env,
                    shim: run.shim,
                    command: run.command,
                    userns: run.userns,
                    ownership: run.ownership,
                    security: security(&run.capability, &run.drop_capability, run.seccomp)?,
                    limits,
                    net,
                },
            )
        }
        Command::Set(set) => set::set(
            &base,
            &set.name,
            &set::Wanted {
                limits: Changes::parse(set.given())?,
                ports: set::ports(&set.port)?,
            },
            set.save.then_some(configs.as_path()),
        )
        .map(|()| Code::Ok as u8),
        Command::Create(create) => create::create(&configs, &create).map(|()| Code::Ok as u8),
        Command::Destroy(destroy) => {
            create::destroy(&configs, &base, &destroy.name).map(|()| Code::Ok as u8)
        }
        Command::Autostart(_) => autostart::autostart(&globals).map(|()| Code::Ok as u8),
        Command::Autostop(_) => autostart::autostop(&globals).map(|()| Code::Ok as u8),
        Command::Status(status) => status::status(&base, &status.name, status.json).map(print),
        Command::List(list) => status::list(&base, list.json).map(print),
    }
}

/// `cradle __resume HANDOFF CONSOLE`: what the monitor of a detached guest execs (see
/// `handoff`); the launcher takes the guest back and goes on.
fn resume(words: &[String]) -> ExitCode {
    let parsed = match words {
        [json, console] => serde_json::from_str::<handoff::Handoff>(json)
            .ok()
            .zip(handoff::ConsoleState::parse(console)),
        _ => None,
    };
    let Some((handoff, console)) = parsed else {
        eprintln!(
            "cradle: error: {} is for the monitor of a detached guest alone",
            handoff::RESUME
        );
        return ExitCode::from(Code::Usage as u8);
    };
    logging::init(handoff.verbosity, handoff.syslog);
    // what the monitor passed and is not taken back (its copy of our executable) too
    close_inherited_on_exec();
    let syslog = handoff.syslog;
    let resumed = SingleThreaded::check()
        .map_err(|e| Error::host("resume", e))
        .and_then(|threads| start::resume(&threads, handoff, console));
    exit_code(resumed.map(|()| Code::Ok as u8), syslog)
}

/// Marks every descriptor this process inherited beyond the standard three close-on-exec:
/// nothing it inherited may leak into a container. What it takes on purpose (a resumed
/// launcher's, `handoff::Taken`) it adopts, close-on-exec too.
fn close_inherited_on_exec() {
    if let Err(e) = sys::cloexec_from(3) {
        log::debug!("close_range: {e}");
    }
}

/// A command's result as the process's exit code; an error is said in one line on standard
/// error (and to syslog, with `--syslog`).
fn exit_code(result: Result<u8, Error>, syslog: bool) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("cradle: error: {error}");
            if syslog {
                log::error!("{error}");
            }
            ExitCode::from(error.code() as u8)
        }
    }
}

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == handoff::RESUME)
    {
        let words: Vec<String> = std::env::args_os()
            .skip(2)
            .map(|a| a.into_string().unwrap_or_default())
            .collect();
        return resume(&words);
    }
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let verbosity = if cli.quiet {
        -1
    } else {
        cli.verbose.min(2) as i8
    };
    logging::init(verbosity, cli.syslog);
    close_inherited_on_exec();
    let syslog = cli.syslog;
    exit_code(dispatch(cli), syslog)
}
