//! `cradle autostart` and `cradle autostop`: the guests whose config file says
//! `onboot = true`, started at host boot and stopped at host shutdown, for hosts whose init
//! is not systemd (busybox, OpenRC, sysvinit; systemd hosts have `cradle@.service`).
//!
//! The order is vzctl's `BOOTORDER`: the higher `bootorder` starts first, guests without
//! one start last (by name among equals); `autostop` goes the other way. Each guest is one
//! process of this binary, `cradle start --detach NAME` (which returns once the guest is
//! up, leaving its launcher to watch it) or `cradle stop NAME`, waited for before the
//! next, so a guest's dependencies are up before it. A guest that fails does not stop the
//! others; each gets one line on standard output, and the exit status says whether every
//! one went well.

use std::cmp::Reverse;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::configfile::{self, DEFAULT_TIMEOUT, GuestConfig};
use cradle_core::error::{Code, Error, Result};
use cradle_core::guest::state::validate_name;
use cradle_core::process::child::Child;

/// The global options the guests' own `cradle` runs get, as this one had them.
pub struct Globals {
    pub state_dir: PathBuf,
    pub config_dir: PathBuf,
    pub verbose: u8,
    pub quiet: bool,
    pub syslog: bool,
}

/// A guest of the config directory: its name and what its file says (or what is wrong
/// with it).
struct Guest {
    name: String,
    config: Result<GuestConfig>,
}

/// Every `NAME.toml` of `dir` whose NAME is a guest name, read.
fn guests(dir: &Path) -> Result<Vec<Guest>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::host(format!("read {}", dir.display()), e)),
    };
    let mut guests = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".toml") else {
            continue;
        };
        if validate_name(name).is_err() {
            continue;
        }
        guests.push(Guest {
            name: name.to_owned(),
            config: configfile::read(&entry.path())
                .and_then(|c| c.ok_or_else(|| Error::NoConfig(entry.path(), "it went away"))),
        });
    }
    Ok(guests)
}

/// The guests `autostart` starts, in its order: those with `onboot = true`, the higher
/// `bootorder` first, then those without one, by name among equals. A file that cannot
/// be read is kept, last, so that its error is said.
fn boot_order(guests: Vec<Guest>) -> Vec<Guest> {
    let mut chosen: Vec<Guest> = guests
        .into_iter()
        .filter(|g| g.config.as_ref().map_or(true, |c| c.onboot))
        .collect();
    chosen.sort_by(|a, b| {
        let key = |g: &Guest| match &g.config {
            Ok(c) => (0, Reverse(c.bootorder.map_or(0, |o| u64::from(o) + 1))),
            Err(_) => (1, Reverse(0)),
        };
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
    chosen
}

/// How a `cradle` run for one guest ended.
enum Ended {
    /// With this exit code, and the last line it wrote on standard error.
    Code(i32, String),
    /// Not within the time it was given: the guest goes on booting under its monitor, the
    /// command that waited for it is ended.
    Late(Duration),
}

/// Runs this binary with `args` for one guest, waiting at most `limit`.
fn run(globals: &Globals, args: &[&str], limit: Option<Duration>) -> Result<Ended> {
    let exe = std::env::current_exe().map_err(|e| Error::host("find the cradle binary", e))?;
    // standard error in memory: a launcher that stays behind (start --detach) may keep a
    // pipe open for good, and its end would never come
    let err = memfd_create(c"cradle-autostart", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| Error::host("memfd_create", e))?;
    let mut err = File::from(err);
    let mut command = Command::new(&exe);
    command
        .arg("--state-dir")
        .arg(&globals.state_dir)
        .arg("--config-dir")
        .arg(&globals.config_dir);
    for _ in 0..globals.verbose {
        command.arg("-v");
    }
    if globals.quiet {
        command.arg("-q");
    }
    if globals.syslog {
        command.arg("--syslog");
    }
    let clone = err
        .try_clone()
        .map_err(|e| Error::host("memfd_create", e))?;
    let mut child = Child::spawn(
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(clone),
    )
    .map_err(|e| Error::host(format!("run {}", exe.display()), e))?;
    let ended = match limit {
        Some(limit) => child.wait_for(limit),
        None => child.wait(),
    };
    let Some(status) = ended else {
        let Some(limit) = limit else {
            return Err(Error::host(
                format!("wait for {}", exe.display()),
                io::Error::last_os_error(),
            ));
        };
        // `start --detach` waiting for a guest that is not up: dropped, it is killed and
        // reaped (it would wait on, unowned); its monitor, in a session of its own, keeps
        // the guest
        return Ok(Ended::Late(limit));
    };
    let code = i32::from(status.shell_code());
    let mut text = String::new();
    let _ = err.rewind().and_then(|()| err.read_to_string(&mut text));
    Ok(Ended::Code(code, why(&text).to_owned()))
}

/// What a `cradle` run that failed said about it: its one-line error, or, from a usage
/// error (argh's), the first line.
fn why(stderr: &str) -> &str {
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.clone().next().unwrap_or("");
    lines
        .find_map(|l| l.strip_prefix("cradle: error: "))
        .unwrap_or(first)
}

/// Says what became of one guest, on a line of its own.
fn say(name: &str, what: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{name}: {what}");
    let _ = out.flush();
}

/// The error that ends a run in which `failed` of `total` guests failed.
fn failures(verb: &str, failed: &[String], total: usize) -> Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::SomeFailed(format!(
        "{} of {total} guests did not {verb}: {}",
        failed.len(),
        failed.join(", ")
    )))
}

pub fn autostart(globals: &Globals) -> Result<()> {
    let order = boot_order(guests(&globals.config_dir)?);
    let total = order.len();
    let mut failed = Vec::new();
    for guest in order {
        let name = guest.name.as_str();
        let config = match guest.config {
            Ok(config) => config,
            Err(e) => {
                say(name, &format!("failed: {e}"));
                failed.push(guest.name);
                continue;
            }
        };
        // the time its halt may take bounds its boot here too: one guest that never
        // comes up must not keep the others down
        let limit = config.timeout.unwrap_or(DEFAULT_TIMEOUT).duration();
        let ended = run(globals, &["start", "--detach", name], Some(limit))?;
        let ok = match ended {
            Ended::Code(0, _) => {
                say(name, "started");
                true
            }
            Ended::Code(code, _) if code == Code::AlreadyRunning as i32 => {
                say(name, "already running");
                true
            }
            Ended::Code(code, why) => {
                say(name, &format!("failed (exit {code}): {why}"));
                false
            }
            Ended::Late(limit) => {
                say(
                    name,
                    &format!("failed: not up within {}s; left booting", limit.as_secs()),
                );
                false
            }
        };
        if !ok {
            failed.push(guest.name);
        }
    }
    failures("start", &failed, total)
}

pub fn autostop(globals: &Globals) -> Result<()> {
    let mut order = boot_order(guests(&globals.config_dir)?);
    order.reverse();
    let total = order.len();
    let mut failed = Vec::new();
    for guest in order {
        let name = guest.name.as_str();
        if let Err(e) = guest.config {
            say(name, &format!("failed: {e}"));
            failed.push(guest.name);
            continue;
        }
        // `stop` bounds itself: the guest's own timeout, then a power-off
        let ok = match run(globals, &["stop", name], None)? {
            Ended::Code(0, _) => {
                say(name, "stopped");
                true
            }
            Ended::Code(code, _) if code == Code::NotRunning as i32 => {
                say(name, "not running");
                true
            }
            Ended::Code(code, why) => {
                say(name, &format!("failed (exit {code}): {why}"));
                false
            }
            Ended::Late(_) => false,
        };
        if !ok {
            failed.push(guest.name);
        }
    }
    failures("stop", &failed, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(name: &str, onboot: bool, bootorder: Option<u32>) -> Guest {
        Guest {
            name: name.to_owned(),
            config: Ok(GuestConfig {
                onboot,
                bootorder,
                ..GuestConfig::default()
            }),
        }
    }

    #[test]
    fn higher_bootorder_first_then_none_by_name_and_broken_files_last() {
        let broken = Guest {
            name: "aaa-broken".into(),
            config: Err(Error::Usage("x.toml:1: unknown key `y`".into())),
        };
        let order = boot_order(vec![
            guest("web", true, Some(10)),
            broken,
            guest("cache", true, None),
            guest("off", false, Some(100)),
            guest("db", true, Some(20)),
            guest("app", true, None),
            guest("zero", true, Some(0)),
            guest("also-web", true, Some(10)),
        ]);
        let names: Vec<&str> = order.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "db",
                "also-web",
                "web",
                "zero",
                "app",
                "cache",
                "aaa-broken"
            ]
        );
    }

    #[test]
    fn a_failure_is_told_by_its_error_line() {
        assert_eq!(
            why("web1: booting\ncradle: error: bad root /x: no such directory\n"),
            "bad root /x: no such directory"
        );
        assert_eq!(
            why("Unrecognized argument: --detach\nRun cradle --help for how to use it.\n"),
            "Unrecognized argument: --detach"
        );
        assert_eq!(why(""), "");
    }

    #[test]
    fn the_summary_names_the_guests_that_failed() {
        assert!(failures("start", &[], 3).is_ok());
        let err = failures("start", &["db".into(), "web".into()], 3).unwrap_err();
        assert_eq!(err.to_string(), "2 of 3 guests did not start: db, web");
        assert_eq!(err.code(), Code::SomeFailed);
    }
}
