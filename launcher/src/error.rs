//! The launcher's errors and its exit codes: one table, the one the README shows.

use std::fmt;
use std::io;
use std::path::PathBuf;

use cradle_common::outcome::{Outcome, Unexpected};
use nix::errno::Errno;
use nix::sys::signal::Signal;

/// The launcher's exit codes. `run` and `exec` exit with the command's own status instead
/// when the command ran (the code, or 128+N for signal N), as a shell does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The guest halted; the command succeeded; the guest is down (stop) or back (reboot).
    Ok = 0,
    /// Bad or missing options.
    Usage = 2,
    /// `start` of a NAME that is already running.
    AlreadyRunning = 3,
    /// `stop`/`exec` of a NAME that is not running.
    NotRunning = 4,
    /// `--root` is missing or not a directory.
    BadRoot = 5,
    /// None of /sbin/init, /etc/init, /bin/init in the root is an executable file.
    BadTemplate = 6,
    /// A step of building the container failed (namespaces, mounts, cgroup, shim).
    Setup = 7,
    /// The guest init exited by itself: not a halt, so not restarted.
    GuestExited = 8,
    /// The guest init (or the shim) was killed by a signal other than the reboot path's.
    GuestKilled = 9,
    /// `stop` gave up waiting: the guest did not go down, or did not come back.
    Timeout = 10,
    /// `start`/`run`: the `--userns` range is held by another running container (cradle's
    /// or systemd-nspawn's).
    RangeTaken = 11,
    /// `start` without `--root`, `destroy`, `set --save`: NAME has no config file.
    NoConfig = 12,
    /// `create`: NAME already has a config file (and no `--force`).
    ConfigExists = 13,
    /// `autostart`, `autostop`: at least one guest failed (each has its line).
    SomeFailed = 14,
    /// `run`/`exec`: the command was found but could not be executed.
    CannotExecute = 126,
    /// `run`/`exec`: the command was not found.
    NotFound = 127,
}

#[derive(Debug)]
pub enum Error {
    Usage(String),
    AlreadyRunning(String),
    NotRunning(String),
    /// The thing named does not exist (code 4, as `NotRunning`), in words of its own.
    Missing(String),
    /// The thing named is in a state that forbids the command (code 3, as
    /// `AlreadyRunning`), in words of its own.
    Conflict(String),
    BadRoot {
        root: PathBuf,
        why: String,
    },
    BadTemplate,
    /// A step of building the container failed, with what it was doing.
    Setup {
        what: String,
        errno: Errno,
    },
    /// Something on the host side failed (state directory, cgroup, console).
    Host {
        what: String,
        err: io::Error,
    },
    /// The command of `run`/`exec` could not be executed.
    Exec {
        command: String,
        errno: Errno,
    },
    /// The guest ended without halting.
    GuestEnded(std::result::Result<Outcome, Unexpected>),
    Timeout(String),
    /// The user-namespace range `base`..=`last` is held by another container (`by`, in
    /// words).
    RangeTaken {
        base: u32,
        last: u32,
        by: &'static str,
    },
    /// The shim failed at something of its own (what, in words).
    ShimFailed(&'static str),
    /// No config file at this path; what to do instead.
    NoConfig(PathBuf, &'static str),
    /// A config file is already at this path.
    ConfigExists(PathBuf),
    /// The guest runs, and what was asked needs it down (`destroy`): what, in words.
    StillRunning(String),
    /// Some guests of `autostart` or `autostop` failed: which, in words.
    SomeFailed(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn setup(what: impl Into<String>, errno: Errno) -> Self {
        Error::Setup {
            what: what.into(),
            errno,
        }
    }

    pub fn host(what: impl Into<String>, err: impl Into<io::Error>) -> Self {
        Error::Host {
            what: what.into(),
            err: err.into(),
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Error::Usage(_) => Code::Usage,
            Error::AlreadyRunning(_) => Code::AlreadyRunning,
            Error::NotRunning(_) | Error::Missing(_) => Code::NotRunning,
            Error::Conflict(_) => Code::AlreadyRunning,
            Error::BadRoot { .. } => Code::BadRoot,
            Error::BadTemplate => Code::BadTemplate,
            Error::Setup { .. } | Error::Host { .. } | Error::ShimFailed(_) => Code::Setup,
            Error::Exec { errno, .. } if *errno == Errno::ENOENT => Code::NotFound,
            Error::Exec { .. } => Code::CannotExecute,
            Error::GuestEnded(Ok(Outcome::Exited(_) | Outcome::ExitedHigh)) => Code::GuestExited,
            Error::GuestEnded(_) => Code::GuestKilled,
            Error::Timeout(_) => Code::Timeout,
            Error::RangeTaken { .. } => Code::RangeTaken,
            Error::NoConfig(..) => Code::NoConfig,
            Error::ConfigExists(_) => Code::ConfigExists,
            Error::StillRunning(_) => Code::AlreadyRunning,
            Error::SomeFailed(_) => Code::SomeFailed,
        }
    }
}

/// A signal number as its name (`SIGTERM`), or the number when it has none.
pub fn signal_name(sig: i32) -> String {
    Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_owned())
}

fn describe_outcome(outcome: &std::result::Result<Outcome, Unexpected>) -> String {
    match outcome {
        Ok(Outcome::Exited(code)) => {
            format!("the guest init exited by itself with status {code}; that is not a halt")
        }
        Ok(Outcome::ExitedHigh) => {
            "the guest init exited by itself with a status of 128 or more; that is not a halt"
                .to_owned()
        }
        Ok(Outcome::Killed(sig)) => {
            format!("the guest init was killed by {}", signal_name(*sig as i32))
        }
        Ok(other) => format!("the guest ended: {other:?}"),
        Err(Unexpected::ShimKilled(sig)) => {
            format!("cradle-shim was killed by {}", signal_name(*sig))
        }
        Err(Unexpected::Code(code)) => format!("cradle-shim exited with unknown status {code}"),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Error::Usage(msg) => f.write_str(msg),
            Error::AlreadyRunning(name) => write!(f, "{name} is already running"),
            Error::NotRunning(name) => write!(f, "{name} is not running"),
            Error::Missing(msg) | Error::Conflict(msg) => f.write_str(msg),
            Error::BadRoot { root, why } => write!(f, "bad root {}: {why}", root.display()),
            Error::BadTemplate => f.write_str(
                "bad template: none of /sbin/init, /etc/init, /bin/init in the root is an executable file",
            ),
            Error::Setup { what, errno } => write!(f, "{what}: {}", errno.desc()),
            Error::Host { what, err } => write!(f, "{what}: {err}"),
            Error::Exec { command, errno } => write!(f, "cannot run {command}: {}", errno.desc()),
            Error::GuestEnded(outcome) => f.write_str(&describe_outcome(outcome)),
            Error::Timeout(msg) => f.write_str(msg),
            Error::ShimFailed(what) => f.write_str(what),
            Error::NoConfig(path, hint) => write!(f, "no config file {}: {hint}", path.display()),
            Error::ConfigExists(path) => write!(
                f,
                "{} exists already (cradle create --force replaces it)",
                path.display()
            ),
            Error::StillRunning(what) | Error::SomeFailed(what) => f.write_str(what),
            Error::RangeTaken { base, last, by } => {
                write!(f, "--userns {base}: {by} holds the range {base}-{last}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Setup { errno, .. } | Error::Exec { errno, .. } => Some(errno),
            Error::Host { err, .. } => Some(err),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_that_exits_by_itself_is_not_a_kill() {
        assert_eq!(
            Error::GuestEnded(Ok(Outcome::Exited(0))).code(),
            Code::GuestExited
        );
        assert_eq!(
            Error::GuestEnded(Ok(Outcome::Killed(11))).code(),
            Code::GuestKilled
        );
        assert_eq!(
            Error::GuestEnded(Err(Unexpected::ShimKilled(9))).code(),
            Code::GuestKilled
        );
    }

    #[test]
    fn exec_failures_use_the_shell_s_codes() {
        let not_found = Error::Exec {
            command: "x".into(),
            errno: Errno::ENOENT,
        };
        let denied = Error::Exec {
            command: "x".into(),
            errno: Errno::EACCES,
        };
        assert_eq!(not_found.code() as u8, 127);
        assert_eq!(denied.code() as u8, 126);
    }

    #[test]
    fn bad_template_names_the_three_paths() {
        let text = Error::BadTemplate.to_string();
        for path in ["/sbin/init", "/etc/init", "/bin/init"] {
            assert!(text.contains(path), "{text}");
        }
        assert!(!text.contains('\n'));
    }

    #[test]
    fn signals_are_named() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(99), "signal 99");
    }
}
