//! The shim's command line, parsed by hand (argh needs std).
//!
//! ```text
//! cradle-shim [-v]... [--report-fd FD] -- CMD [ARGS]...          run CMD as its PID 1
//! cradle-shim --boot --ctid ID [--env K=V]... [--report-fd FD]   boot the guest in /
//! ```
//! Options end at `--` or at the first word that is not an option (as getopt's `+` mode).

use alloc::vec::Vec;
use core::ffi::CStr;
use core::fmt;

use crate::log::Lossy;
use crate::sys::Fd;

pub const USAGE: &str = "\
usage: cradle-shim [OPTIONS] [--] CMD [ARGS]...
       cradle-shim --boot --ctid ID [--env K=V]... [OPTIONS]

Runs CMD as its child, forwards signals to it, reaps every zombie, and exits with
CMD's status (128+N when CMD dies of signal N). With --boot, runs the guest's
/sbin/init, /etc/init or /bin/init (the first that is executable) as PID 1 of a
nested PID namespace, as cradle start does.

options:
  --boot            boot the guest init instead of running CMD
  --ctid ID         container name, given to the guest init as container=ID
  --env K=V         add a variable to the guest init's environment (repeatable)
  --report-fd FD    write a failure before exec as a binary record on FD (for cradle)
  -v                more verbose (repeatable)
  -h, --help        this text
  --version         the version
";

/// What the shim was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Mode<'a> {
    /// Boot the guest found in `/`.
    Boot { ctid: &'a CStr, env: Vec<&'a CStr> },
    /// Run the command `argv` (at least one word).
    Command { argv: &'a [&'a CStr] },
}

#[derive(Debug, PartialEq, Eq)]
pub struct Config<'a> {
    pub mode: Mode<'a>,
    pub report_fd: Option<Fd>,
    pub verbosity: u8,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    Run(Config<'a>),
    Help,
    Version,
}

/// A command line the shim cannot act on. Reported with the usage and exit code 2.
#[derive(Debug, PartialEq, Eq)]
pub enum ArgError<'a> {
    Unknown(&'a CStr),
    MissingValue(&'static str),
    BadValue(&'static str, &'a CStr),
    NoCommand,
    BootWithCommand,
    CtidWithoutBoot,
    NoCtid,
}

impl fmt::Display for ArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ArgError::Unknown(arg) => write!(f, "unknown option {}", Lossy(arg)),
            ArgError::MissingValue(opt) => write!(f, "option {opt} needs a value"),
            ArgError::BadValue(opt, value) => {
                write!(f, "bad value for {opt}: {}", Lossy(value))
            }
            ArgError::NoCommand => f.write_str("no command to run"),
            ArgError::BootWithCommand => f.write_str("--boot takes no command"),
            ArgError::CtidWithoutBoot => f.write_str("--ctid and --env need --boot"),
            ArgError::NoCtid => f.write_str("--boot needs --ctid"),
        }
    }
}

/// A `K=V` word with a non-empty name.
fn is_assignment(s: &CStr) -> bool {
    let bytes = s.to_bytes();
    matches!(bytes.iter().position(|&b| b == b'='), Some(i) if i > 0)
}

fn parse_fd(s: &CStr) -> Option<Fd> {
    let text = s.to_str().ok()?;
    text.parse::<Fd>().ok().filter(|fd| *fd > 2)
}

/// Parses `args` (without argv\[0\]).
pub fn parse<'a>(args: &'a [&'a CStr]) -> Result<Parsed<'a>, ArgError<'a>> {
    let mut boot = false;
    let mut ctid = None;
    let mut env = Vec::new();
    let mut report_fd = None;
    let mut verbosity = 0u8;
    let mut i = 0;
    while i < args.len() {
        let word = args[i].to_bytes();
        if word == b"--" {
            i += 1;
            break;
        }
        if !word.starts_with(b"-") || word == b"-" {
            break;
        }
        // `--opt=value`: the value is the rest of the word, still NUL-terminated
        let (name, inline) = match word.iter().position(|&b| b == b'=') {
            Some(eq) if word.starts_with(b"--") => (
                &word[..eq],
                CStr::from_bytes_with_nul(&args[i].to_bytes_with_nul()[eq + 1..]).ok(),
            ),
            _ => (word, None),
        };
        let mut value = |name: &'static str| match inline {
            Some(v) => Ok(v),
            None => {
                i += 1;
                args.get(i).copied().ok_or(ArgError::MissingValue(name))
            }
        };
        match name {
            b"--boot" => boot = true,
            b"--ctid" => ctid = Some(value("--ctid")?),
            b"--env" => {
                let v = value("--env")?;
                if !is_assignment(v) {
                    return Err(ArgError::BadValue("--env", v));
                }
                env.push(v);
            }
            b"--report-fd" => {
                let v = value("--report-fd")?;
                report_fd = Some(parse_fd(v).ok_or(ArgError::BadValue("--report-fd", v))?);
            }
            b"-h" | b"--help" => return Ok(Parsed::Help),
            b"--version" => return Ok(Parsed::Version),
            _ if name.len() > 1 && name[0] == b'-' && name[1] != b'-' => {
                // a cluster of short flags: -v, -vv
                for &flag in &name[1..] {
                    match flag {
                        b'v' => verbosity = verbosity.saturating_add(1),
                        b'h' => return Ok(Parsed::Help),
                        _ => return Err(ArgError::Unknown(args[i])),
                    }
                }
            }
            _ => return Err(ArgError::Unknown(args[i])),
        }
        i += 1;
    }
    let rest = &args[i..];
    let mode = if boot {
        if !rest.is_empty() {
            return Err(ArgError::BootWithCommand);
        }
        Mode::Boot {
            ctid: ctid.ok_or(ArgError::NoCtid)?,
            env,
        }
    } else {
        if ctid.is_some() || !env.is_empty() {
            return Err(ArgError::CtidWithoutBoot);
        }
        if rest.is_empty() {
            return Err(ArgError::NoCommand);
        }
        Mode::Command { argv: rest }
    };
    Ok(Parsed::Run(Config {
        mode,
        report_fd,
        verbosity,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn parse_words(words: &[&str], check: impl FnOnce(Result<Parsed, ArgError>)) {
        let owned: Vec<CString> = words.iter().map(|w| CString::new(*w).unwrap()).collect();
        let args: Vec<&CStr> = owned.iter().map(|c| c.as_c_str()).collect();
        check(parse(&args));
    }

    fn words(argv: &[&CStr]) -> Vec<String> {
        argv.iter()
            .map(|c| c.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn command_after_double_dash() {
        parse_words(&["-v", "--", "sh", "-c", "exit 3"], |r| match r {
            Ok(Parsed::Run(Config {
                mode: Mode::Command { argv },
                verbosity: 1,
                report_fd: None,
            })) => assert_eq!(words(argv), ["sh", "-c", "exit 3"]),
            other => panic!("{other:?}"),
        });
    }

    #[test]
    fn options_stop_at_the_first_word() {
        parse_words(&["sleep", "-v", "1"], |r| match r {
            Ok(Parsed::Run(Config {
                mode: Mode::Command { argv },
                verbosity: 0,
                ..
            })) => assert_eq!(words(argv), ["sleep", "-v", "1"]),
            other => panic!("{other:?}"),
        });
    }

    #[test]
    fn boot_with_ctid_env_and_report_fd() {
        let args = [
            "--boot",
            "--ctid",
            "web1",
            "--env=A=1",
            "--env",
            "B=",
            "--report-fd=3",
        ];
        parse_words(&args, |r| match r {
            Ok(Parsed::Run(Config {
                mode: Mode::Boot { ctid, env },
                report_fd: Some(3),
                ..
            })) => {
                assert_eq!(ctid.to_str().unwrap(), "web1");
                assert_eq!(words(&env), ["A=1", "B="]);
            }
            other => panic!("{other:?}"),
        });
    }

    #[test]
    fn bad_command_lines_are_errors_not_crashes() {
        let cases: [&[&str]; 9] = [
            &["--bogus", "--", "true"],
            &["-x", "true"],
            &["--ctid"],
            &["--boot"],
            &["--boot", "--ctid", "a", "--", "sh"],
            &["--ctid", "a", "--", "sh"],
            &["--env", "NOEQUALS", "--boot", "--ctid", "a"],
            &["--report-fd", "1", "--", "true"],
            &[],
        ];
        for case in cases {
            parse_words(case, |r| assert!(r.is_err(), "{case:?} gave {r:?}"));
        }
    }

    #[test]
    fn help_and_version() {
        parse_words(&["-h"], |r| assert_eq!(r, Ok(Parsed::Help)));
        parse_words(&["--help", "--", "x"], |r| assert_eq!(r, Ok(Parsed::Help)));
        parse_words(&["--version"], |r| assert_eq!(r, Ok(Parsed::Version)));
    }
}
