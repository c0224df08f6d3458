//! The shim's command line and environment, parsed by hand (argh needs std).
//!
//! tini's options and variables with tini's meaning, dumb-init's `-r` and `-c` with
//! dumb-init's, and the boot mode the launcher uses. Options end at `--` or at the first
//! word that is not an option (dumb-init's rule; tini's GNU getopt would also take options
//! written after the program unless `--` is given).

use core::ffi::{CStr, c_int};
use core::fmt;

use crate::log::Lossy;
use crate::signals;
use crate::sys::Fd;

pub const USAGE: &str = "\
usage: cradle-shim [OPTIONS] [--started-fd FD] [--] CMD [ARGS]...
       cradle-shim --boot [-v]... [--report-fd FD] [--cgroup-fd FD]
       cradle-shim --enter PIDFD [--userns] [--cgroup-fd FD] [--caps HEX] [--tty]
                   [--report-fd FD] (--power-off | [--] CMD [ARGS]...)
       cradle-shim --system [--caps HEX] [--no-new-privs] [--seccomp-fd FD]
                   [--apparmor PROFILE] [--proc-mask PATH]... [--proc-ro PATH]...
                   [--report-fd FD]
                   [-v]... [--] INIT [ARGS]...
       cradle-shim --monitor FDS -- LAUNCHER...   (cradle start --detach's, internal)

Runs CMD as its child in a session of its own (with the terminal, if there is
one), forwards every signal to it, reaps every zombie, and exits with CMD's
status (128+N when CMD dies of signal N). A drop-in for tini and dumb-init.

options:
  -s                   register as a child subreaper (when not PID 1)
  -g                   forward signals to CMD's whole process group
  -e CODE              exit 0 when CMD's status is CODE (repeatable)
  -p SIGNAL            have SIGNAL sent to us when our parent dies (e.g. SIGKILL)
  -w                   warn when a zombie other than CMD is reaped
  -r, --rewrite S:R    forward signal S as R; R = 0 drops S (repeatable)
  -c, --single-child   no session of its own for CMD: a process group in ours
  -v, --verbose        more output (repeatable: info, debug)
  --started-fd FD      write one byte on FD once CMD runs (cradle-oci's start)
  -h, --help           this text
  -V, --version        the version

environment: TINI_SUBREAPER (-s), TINI_KILL_PROCESS_GROUP (-g),
  TINI_VERBOSITY=N (0 errors only, 1 warnings, 2 info, 3 debug),
  DUMB_INIT_SETSID=0 (-c), DUMB_INIT_DEBUG=1 (debug)

The other modes are cradle's and cradle-oci's, not for use by hand: --boot
boots the guest's init in a nested PID namespace (cradle start), --enter runs
CMD or a power-off in a running guest (cradle exec, cradle stop), --system
boots an OCI system container's init and boots it again when it reboots
(cradle-oci), --monitor serves a detached guest's console (cradle start -d).
";

/// Exit codes that `-e` turns into 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Remap([u32; 8]);

impl Remap {
    fn add(&mut self, code: u8) {
        self.0[code as usize / 32] |= 1 << (code % 32);
    }

    /// The exit code to use for `code`.
    pub fn apply(&self, code: u8) -> u8 {
        if self.0[code as usize / 32] & (1 << (code % 32)) != 0 {
            0
        } else {
            code
        }
    }
}

/// `-r S:R`: what each signal is forwarded as. Signals are 1..=64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite([u8; SIGNALS]);

/// No rewrite for this signal.
const SAME: u8 = u8::MAX;
/// Room for signals 1 to [`signals::MAX`], indexed by number.
const SIGNALS: usize = signals::MAX as usize + 1;

impl Default for Rewrite {
    fn default() -> Self {
        Rewrite([SAME; SIGNALS])
    }
}

impl Rewrite {
    fn set(&mut self, from: c_int, to: c_int) {
        self.0[from as usize] = to as u8;
    }

    fn is_set(&self, sig: c_int) -> bool {
        self.0[sig as usize] != SAME
    }

    /// What `sig` is forwarded as; 0 means it is dropped.
    pub fn apply(&self, sig: c_int) -> c_int {
        match self.0.get(sig as usize) {
            Some(&to) if to != SAME => to as c_int,
            _ => sig,
        }
    }
}

/// Everything that shapes command mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub subreaper: bool,
    /// Forward to the child's process group, not only to the child.
    pub group: bool,
    /// The child gets a session of its own (else a process group in ours).
    pub setsid: bool,
    pub remap: Remap,
    pub rewrite: Rewrite,
    pub pdeathsig: Option<c_int>,
    pub warn_on_reap: bool,
}

/// What the shim was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Mode<'a> {
    /// Boot the guest found in `/`, with the shim's own environment; `cgroup` the
    /// directory the guest is born in.
    Boot { cgroup: Option<Fd> },
    /// Run the command `argv` (at least one word).
    Command {
        argv: &'a [&'a CStr],
        options: Options,
    },
    /// Enter the running guest whose init the pidfd `init` is.
    Enter(Enter<'a>),
    /// Boot the command as a system's init, again at each reboot (an OCI runtime's).
    System(System<'a>),
}

/// What `--system` runs, and the restrictions its init takes on at each boot.
#[derive(Debug, PartialEq, Eq)]
pub struct System<'a> {
    pub argv: &'a [&'a CStr],
    /// The capabilities kept in the bounding set; all when `None`.
    pub caps: Option<u64>,
    pub no_new_privs: bool,
    /// A descriptor holding the seccomp filter: its flags (u32), then its instructions.
    pub seccomp: Option<Fd>,
    /// The AppArmor profile the init (and its halt) takes on at its exec.
    pub apparmor: Option<&'a CStr>,
    /// Paths of /proc masked and made read-only on each boot's new /proc.
    pub proc_masks: alloc::vec::Vec<&'a CStr>,
    pub proc_read_only: alloc::vec::Vec<&'a CStr>,
}

/// What `--enter` does, and how.
#[derive(Debug, PartialEq, Eq)]
pub struct Enter<'a> {
    pub init: Fd,
    /// Join the init's user namespace too (it has its own).
    pub userns: bool,
    pub cgroup: Option<Fd>,
    /// The capabilities kept in the bounding set; all when `None`.
    pub caps: Option<u64>,
    /// The command takes its terminal (the launcher's pty) as controlling terminal.
    pub tty: bool,
    /// The command, or `None` for `--power-off`.
    pub argv: Option<&'a [&'a CStr]>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Config<'a> {
    pub mode: Mode<'a>,
    pub report_fd: Option<Fd>,
    /// Where to say "started" (one byte) once the command or init runs.
    pub started_fd: Option<Fd>,
    /// 0 errors only, 1 warnings (the default), 2 info, 3 debug.
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
    CommandOptionWithBoot,
    CgroupWithoutBoot,
    EnterWithBoot,
    CommandOptionWithEnter,
    EnterOptionWithoutEnter,
    PowerOffWithCommand,
    SystemWithOtherMode,
    SystemOptionWithoutSystem,
}

impl fmt::Display for ArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ArgError::Unknown(arg) => write!(f, "unknown option {}", Lossy(arg)),
            ArgError::MissingValue(opt) => write!(f, "option {opt} needs a value"),
            ArgError::BadValue(opt, value) => write!(f, "bad value for {opt}: {}", Lossy(value)),
            ArgError::NoCommand => f.write_str("no command to run"),
            ArgError::BootWithCommand => f.write_str("--boot takes no command"),
            ArgError::CommandOptionWithBoot => {
                f.write_str("-s, -g, -e, -p, -w, -r and -c apply to a command, not to --boot")
            }
            ArgError::CgroupWithoutBoot => f.write_str("--cgroup-fd needs --boot or --enter"),
            ArgError::EnterWithBoot => f.write_str("--enter and --boot exclude each other"),
            ArgError::CommandOptionWithEnter => {
                f.write_str("-s, -g, -e, -p, -w, -r and -c do not apply to --enter")
            }
            ArgError::EnterOptionWithoutEnter => {
                f.write_str("--userns, --caps, --tty and --power-off need --enter")
            }
            ArgError::PowerOffWithCommand => f.write_str("--power-off takes no command"),
            ArgError::SystemWithOtherMode => f.write_str("--system takes no other mode's options"),
            ArgError::SystemOptionWithoutSystem => f.write_str("option needs --system"),
        }
    }
}

fn parse_number(s: &CStr) -> Option<u32> {
    s.to_str().ok()?.parse().ok()
}

fn parse_fd(s: &CStr) -> Option<Fd> {
    parse_number(s)
        .and_then(|n| Fd::try_from(n).ok())
        .filter(|fd| *fd > 2)
}

/// A path below /proc for `--proc-mask` and `--proc-ro`, absolute.
fn proc_path<'a>(s: &'a CStr, opt: &'static str) -> Result<&'a CStr, ArgError<'a>> {
    let path = s.to_bytes();
    let below =
        path.starts_with(b"/proc/") && path.len() > 6 && !path.windows(2).any(|w| w == b"..");
    if below {
        Ok(s)
    } else {
        Err(ArgError::BadValue(opt, s))
    }
}

/// `S:R` of `-r`: two signals, R may be 0 (drop).
fn parse_rewrite(s: &CStr) -> Option<(c_int, c_int)> {
    let text = s.to_str().ok()?;
    let (from, to) = text.split_once(':')?;
    let from = signals::parse(from)?;
    let to = if to == "0" { 0 } else { signals::parse(to)? };
    Some((from, to))
}

/// The short options that take a value.
const SHORT_WITH_VALUE: [&str; 3] = ["-e", "-p", "-r"];
/// The long options that take a value.
const LONG_WITH_VALUE: [&str; 10] = [
    "--rewrite",
    "--apparmor",
    "--report-fd",
    "--started-fd",
    "--cgroup-fd",
    "--enter",
    "--caps",
    "--seccomp-fd",
    "--proc-mask",
    "--proc-ro",
];

/// `name` as it is written in [`LONG_WITH_VALUE`], when it takes a value.
fn long_with_value(name: &[u8]) -> Option<&'static str> {
    LONG_WITH_VALUE
        .into_iter()
        .find(|opt| opt.as_bytes() == name)
}

/// `-FLAG` as it is written in [`SHORT_WITH_VALUE`], when it takes a value.
fn short_with_value(flag: u8) -> Option<&'static str> {
    SHORT_WITH_VALUE
        .into_iter()
        .find(|opt| opt.as_bytes()[1] == flag)
}

/// One option, by its canonical name, with its value when it takes one.
enum Opt<'a> {
    Short(u8, Option<&'a CStr>),
    Long(&'a [u8], Option<&'a CStr>),
}

/// Parses `args` (without argv\[0\]); `env` looks up an environment variable.
pub fn parse<'a, 'e>(
    args: &'a [&'a CStr],
    getenv: impl Fn(&CStr) -> Option<&'e CStr>,
) -> Result<Parsed<'a>, ArgError<'a>> {
    let mut options = Options {
        subreaper: false,
        group: false,
        setsid: true,
        remap: Remap::default(),
        rewrite: Rewrite::default(),
        pdeathsig: None,
        warn_on_reap: false,
    };
    let mut boot = false;
    let mut report_fd = None;
    let mut started_fd = None;
    let mut cgroup_fd = None;
    let mut enter = None;
    let mut userns = false;
    let mut tty = false;
    let mut caps = None;
    let mut power_off = false;
    let mut system = false;
    let mut no_new_privs = false;
    let mut seccomp_fd = None;
    let mut apparmor = None;
    let mut proc_masks = alloc::vec::Vec::new();
    let mut proc_read_only = alloc::vec::Vec::new();
    let mut verbosity: u8 = 1;
    let mut command_option = false;
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
        // gather this word's options: `--long[=value]`, or a cluster of short ones
        let mut opts: [Option<Opt>; 16] = Default::default();
        let mut count = 0;
        if word.starts_with(b"--") {
            let (name, inline) = match word.iter().position(|&b| b == b'=') {
                Some(eq) => (
                    &word[..eq],
                    CStr::from_bytes_with_nul(&args[i].to_bytes_with_nul()[eq + 1..]).ok(),
                ),
                None => (word, None),
            };
            let value = match (long_with_value(name), inline) {
                (None, Some(_)) => return Err(ArgError::Unknown(args[i])),
                (Some(opt), None) => {
                    i += 1;
                    Some(*args.get(i).ok_or(ArgError::MissingValue(opt))?)
                }
                (_, value) => value,
            };
            opts[0] = Some(Opt::Long(name, value));
            count = 1;
        } else {
            let cluster = &word[1..];
            let mut j = 0;
            while j < cluster.len() {
                let flag = cluster[j];
                if count == opts.len() {
                    return Err(ArgError::Unknown(args[i]));
                }
                if let Some(opt) = short_with_value(flag) {
                    // -eCODE, or -e CODE
                    let rest = &args[i].to_bytes_with_nul()[2 + j..];
                    let value = if rest.len() > 1 {
                        CStr::from_bytes_with_nul(rest).ok()
                    } else {
                        i += 1;
                        Some(*args.get(i).ok_or(ArgError::MissingValue(opt))?)
                    };
                    opts[count] = Some(Opt::Short(flag, value));
                    count += 1;
                    break;
                }
                opts[count] = Some(Opt::Short(flag, None));
                count += 1;
                j += 1;
            }
        }
        for opt in opts.iter().take(count).flatten() {
            match *opt {
                Opt::Long(b"--help", _) | Opt::Short(b'h', _) => return Ok(Parsed::Help),
                Opt::Long(b"--version", _) | Opt::Short(b'V', _) => return Ok(Parsed::Version),
                Opt::Long(b"--boot", _) => boot = true,
                Opt::Long(b"--report-fd", Some(v)) => {
                    report_fd = Some(parse_fd(v).ok_or(ArgError::BadValue("--report-fd", v))?);
                }
                Opt::Long(b"--started-fd", Some(v)) => {
                    started_fd = Some(parse_fd(v).ok_or(ArgError::BadValue("--started-fd", v))?);
                }
                Opt::Long(b"--cgroup-fd", Some(v)) => {
                    cgroup_fd = Some(parse_fd(v).ok_or(ArgError::BadValue("--cgroup-fd", v))?);
                }
                Opt::Long(b"--enter", Some(v)) => {
                    enter = Some(parse_fd(v).ok_or(ArgError::BadValue("--enter", v))?);
                }
                Opt::Long(b"--userns", _) => userns = true,
                Opt::Long(b"--tty", _) => tty = true,
                Opt::Long(b"--power-off", _) => power_off = true,
                Opt::Long(b"--system", _) => system = true,
                Opt::Long(b"--no-new-privs", _) => no_new_privs = true,
                Opt::Long(b"--seccomp-fd", Some(v)) => {
                    seccomp_fd = Some(parse_fd(v).ok_or(ArgError::BadValue("--seccomp-fd", v))?);
                }
                Opt::Long(b"--apparmor", Some(v)) => apparmor = Some(v),
                Opt::Long(b"--proc-mask", Some(v)) => proc_masks.push(proc_path(v, "--proc-mask")?),
                Opt::Long(b"--proc-ro", Some(v)) => proc_read_only.push(proc_path(v, "--proc-ro")?),
                Opt::Long(b"--caps", Some(v)) => {
                    let hex = v
                        .to_str()
                        .ok()
                        .and_then(|t| u64::from_str_radix(t, 16).ok());
                    caps = Some(hex.ok_or(ArgError::BadValue("--caps", v))?);
                }
                Opt::Long(b"--verbose", _) | Opt::Short(b'v', _) => {
                    verbosity = verbosity.saturating_add(1)
                }
                Opt::Long(b"--single-child", _) | Opt::Short(b'c', _) => {
                    options.setsid = false;
                    command_option = true;
                }
                Opt::Long(b"--rewrite", Some(v)) | Opt::Short(b'r', Some(v)) => {
                    let (from, to) = parse_rewrite(v).ok_or(ArgError::BadValue("-r", v))?;
                    options.rewrite.set(from, to);
                    command_option = true;
                }
                Opt::Short(b's', _) => {
                    options.subreaper = true;
                    command_option = true;
                }
                Opt::Short(b'g', _) => {
                    options.group = true;
                    command_option = true;
                }
                Opt::Short(b'w', _) => {
                    options.warn_on_reap = true;
                    command_option = true;
                }
                Opt::Short(b'e', Some(v)) => {
                    let code = parse_number(v)
                        .and_then(|n| u8::try_from(n).ok())
                        .ok_or(ArgError::BadValue("-e", v))?;
                    options.remap.add(code);
                    command_option = true;
                }
                Opt::Short(b'p', Some(v)) => {
                    let sig = v
                        .to_str()
                        .ok()
                        .and_then(signals::parse)
                        .ok_or(ArgError::BadValue("-p", v))?;
                    options.pdeathsig = Some(sig);
                    command_option = true;
                }
                _ => return Err(ArgError::Unknown(args[i])),
            }
        }
        i += 1;
    }
    apply_env(&mut options, &mut verbosity, &getenv);
    let rest = &args[i..];
    let system_option = no_new_privs
        || seccomp_fd.is_some()
        || apparmor.is_some()
        || !proc_masks.is_empty()
        || !proc_read_only.is_empty();
    if system {
        if boot || enter.is_some() || cgroup_fd.is_some() || command_option {
            return Err(ArgError::SystemWithOtherMode);
        }
        if userns || tty || power_off {
            return Err(ArgError::EnterOptionWithoutEnter);
        }
        if rest.is_empty() {
            return Err(ArgError::NoCommand);
        }
        return Ok(Parsed::Run(Config {
            mode: Mode::System(System {
                argv: rest,
                caps,
                no_new_privs,
                seccomp: seccomp_fd,
                apparmor,
                proc_masks,
                proc_read_only,
            }),
            report_fd,
            started_fd,
            verbosity,
        }));
    }
    if system_option {
        return Err(ArgError::SystemOptionWithoutSystem);
    }
    let enter_option = userns || tty || caps.is_some() || power_off;
    let mode = if let Some(init) = enter {
        if boot {
            return Err(ArgError::EnterWithBoot);
        }
        if command_option {
            return Err(ArgError::CommandOptionWithEnter);
        }
        let argv = match (power_off, rest.is_empty()) {
            (true, false) => return Err(ArgError::PowerOffWithCommand),
            (true, true) => None,
            (false, true) => return Err(ArgError::NoCommand),
            (false, false) => Some(rest),
        };
        Mode::Enter(Enter {
            init,
            userns,
            cgroup: cgroup_fd,
            caps,
            tty,
            argv,
        })
    } else if enter_option {
        return Err(ArgError::EnterOptionWithoutEnter);
    } else if boot {
        if !rest.is_empty() {
            return Err(ArgError::BootWithCommand);
        }
        if command_option {
            return Err(ArgError::CommandOptionWithBoot);
        }
        Mode::Boot { cgroup: cgroup_fd }
    } else {
        if cgroup_fd.is_some() {
            return Err(ArgError::CgroupWithoutBoot);
        }
        if rest.is_empty() {
            return Err(ArgError::NoCommand);
        }
        if options.setsid {
            // dumb-init: in a session of its own the child has no job control of ours, so
            // suspend signals reach it as SIGSTOP unless rewritten
            for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
                if !options.rewrite.is_set(sig) {
                    options.rewrite.set(sig, libc::SIGSTOP);
                }
            }
        }
        Mode::Command {
            argv: rest,
            options,
        }
    };
    Ok(Parsed::Run(Config {
        mode,
        report_fd,
        started_fd,
        verbosity,
    }))
}

/// tini's and dumb-init's variables. They add to the options (TINI_VERBOSITY replaces
/// the verbosity, as in tini).
fn apply_env<'e>(
    options: &mut Options,
    verbosity: &mut u8,
    env: &impl Fn(&CStr) -> Option<&'e CStr>,
) {
    if env(c"TINI_SUBREAPER").is_some() {
        options.subreaper = true;
    }
    if env(c"TINI_KILL_PROCESS_GROUP").is_some() {
        options.group = true;
    }
    if let Some(level) = env(c"TINI_VERBOSITY").and_then(parse_number) {
        *verbosity = level.min(u8::MAX as u32) as u8;
    }
    if env(c"DUMB_INIT_SETSID").is_some_and(|v| v.to_bytes() == b"0") {
        options.setsid = false;
    }
    if env(c"DUMB_INIT_DEBUG").is_some_and(|v| v.to_bytes() == b"1") {
        *verbosity = (*verbosity).max(3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn with_args<T>(
        words: &[&str],
        env: &[(&str, &str)],
        check: impl FnOnce(Result<Parsed, ArgError>) -> T,
    ) -> T {
        let owned: Vec<CString> = words.iter().map(|w| CString::new(*w).unwrap()).collect();
        let args: Vec<&CStr> = owned.iter().map(|c| c.as_c_str()).collect();
        let env_owned: Vec<(CString, CString)> = env
            .iter()
            .map(|(k, v)| (CString::new(*k).unwrap(), CString::new(*v).unwrap()))
            .collect();
        let lookup = |name: &CStr| {
            env_owned
                .iter()
                .find(|(k, _)| k.as_c_str() == name)
                .map(|(_, v)| v.as_c_str())
        };
        check(parse(&args, lookup))
    }

    fn words(argv: &[&CStr]) -> Vec<String> {
        argv.iter()
            .map(|c| c.to_str().unwrap().to_owned())
            .collect()
    }

    fn command(words_in: &[&str], env: &[(&str, &str)]) -> (Vec<String>, Options, u8) {
        with_args(words_in, env, |r| match r {
            Ok(Parsed::Run(Config {
                mode: Mode::Command { argv, options },
                verbosity,
                ..
            })) => (words(argv), options, verbosity),
            other => panic!("{words_in:?}: {other:?}"),
        })
    }

    #[test]
    fn defaults_are_a_session_child_only_forwarding_warnings() {
        let (argv, options, verbosity) = command(&["--", "sh", "-c", "exit 3"], &[]);
        assert_eq!(argv, ["sh", "-c", "exit 3"]);
        assert!(options.setsid && !options.group && !options.subreaper);
        assert_eq!(verbosity, 1);
        // dumb-init's default rewrites in setsid mode
        assert_eq!(options.rewrite.apply(libc::SIGTSTP), libc::SIGSTOP);
        assert_eq!(options.rewrite.apply(libc::SIGTERM), libc::SIGTERM);
    }

    #[test]
    fn options_stop_at_the_first_word() {
        let (argv, options, verbosity) = command(&["sleep", "-v", "-g", "1"], &[]);
        assert_eq!(argv, ["sleep", "-v", "-g", "1"]);
        assert!(!options.group);
        assert_eq!(verbosity, 1);
    }

    #[test]
    fn tini_options_clustered_and_with_values() {
        let (argv, o, verbosity) = command(
            &["-sgwvv", "-e", "3", "-e143", "-p", "SIGKILL", "--", "x"],
            &[],
        );
        assert_eq!(argv, ["x"]);
        assert!(o.subreaper && o.group && o.warn_on_reap);
        assert_eq!(verbosity, 3);
        assert_eq!(
            (o.remap.apply(3), o.remap.apply(143), o.remap.apply(4)),
            (0, 0, 4)
        );
        assert_eq!(o.pdeathsig, Some(libc::SIGKILL));
        let (_, o, _) = command(&["-pUSR1", "x"], &[]);
        assert_eq!(o.pdeathsig, Some(libc::SIGUSR1));
    }

    #[test]
    fn dumb_init_options() {
        let (_, o, _) = command(
            &[
                "-c",
                "-r",
                "15:2",
                "--rewrite=28:0",
                "--rewrite",
                "1:31",
                "x",
            ],
            &[],
        );
        assert!(!o.setsid);
        assert_eq!(o.rewrite.apply(15), 2);
        assert_eq!(o.rewrite.apply(28), 0);
        assert_eq!(o.rewrite.apply(1), 31);
        // without setsid there is no default rewrite of suspend signals
        assert_eq!(o.rewrite.apply(libc::SIGTSTP), libc::SIGTSTP);
        let (_, o, _) = command(&["--single-child", "-r", "SIGTSTP:SIGHUP", "x"], &[]);
        assert_eq!(o.rewrite.apply(libc::SIGTSTP), libc::SIGHUP);
        // a rewrite the user chose wins over the setsid default
        let (_, o, _) = command(&["-r", "20:1", "x"], &[]);
        assert_eq!(o.rewrite.apply(20), 1);
        assert_eq!(o.rewrite.apply(21), libc::SIGSTOP);
    }

    #[test]
    fn environment_variables() {
        let env = [
            ("TINI_SUBREAPER", ""),
            ("TINI_KILL_PROCESS_GROUP", "1"),
            ("TINI_VERBOSITY", "0"),
        ];
        let (_, o, verbosity) = command(&["-vv", "x"], &env);
        assert!(o.subreaper && o.group);
        assert_eq!(verbosity, 0, "TINI_VERBOSITY replaces -v, as in tini");
        let (_, o, _) = command(&["x"], &[("DUMB_INIT_SETSID", "0")]);
        assert!(!o.setsid);
        let (_, o, _) = command(&["x"], &[("DUMB_INIT_SETSID", "1")]);
        assert!(o.setsid);
        let (_, _, verbosity) = command(&["x"], &[("DUMB_INIT_DEBUG", "1")]);
        assert_eq!(verbosity, 3);
    }

    #[test]
    fn system_mode_takes_an_init_and_its_restrictions() {
        let args = [
            "--system",
            "--caps=20400420",
            "--no-new-privs",
            "--seccomp-fd",
            "7",
            "--proc-mask=/proc/kcore",
            "--proc-ro",
            "/proc/sys",
            "--apparmor=containers-default-0.50.0",
            "--",
            "/sbin/init",
            "splash",
        ];
        with_args(&args, &[], |r| match r {
            Ok(Parsed::Run(Config {
                mode: Mode::System(how),
                ..
            })) => {
                assert_eq!(words(how.argv), ["/sbin/init", "splash"]);
                assert_eq!(how.caps, Some(0x20400420));
                assert!(how.no_new_privs);
                assert_eq!(how.seccomp, Some(7));
                assert_eq!(words(&how.proc_masks), ["/proc/kcore"]);
                assert_eq!(words(&how.proc_read_only), ["/proc/sys"]);
                assert_eq!(
                    how.apparmor.map(|p| p.to_bytes()),
                    Some(&b"containers-default-0.50.0"[..])
                );
            }
            other => panic!("{other:?}"),
        });
        for bad in [
            &["--system"][..],
            &["--system", "--boot", "x"],
            &["--system", "-s", "x"],
            &["--system", "--tty", "x"],
            &["--system", "--proc-mask=/etc/x", "x"],
            &["--system", "--proc-ro=/proc/../etc", "x"],
            &["--no-new-privs", "x"],
            &["--seccomp-fd=5", "x"],
            &["--apparmor=unconfined", "x"],
        ] {
            with_args(bad, &[], |r| assert!(r.is_err(), "{bad:?}: {r:?}"));
        }
    }

    #[test]
    fn enter_with_a_command_or_power_off() {
        let args = [
            "--enter",
            "5",
            "--userns",
            "--cgroup-fd",
            "6",
            "--caps",
            "1ff",
            "--tty",
            "--",
            "ls",
            "-l",
        ];
        with_args(&args, &[], |r| match r {
            Ok(Parsed::Run(Config {
                mode:
                    Mode::Enter(Enter {
                        init: 5,
                        userns: true,
                        cgroup: Some(6),
                        caps: Some(0x1ff),
                        tty: true,
                        argv: Some(argv),
                    }),
                ..
            })) => assert_eq!(words(argv), ["ls", "-l"]),
            other => panic!("{other:?}"),
        });
        with_args(&["--enter", "5", "--power-off"], &[], |r| {
            assert!(
                matches!(
                    r,
                    Ok(Parsed::Run(Config {
                        mode: Mode::Enter(Enter {
                            argv: None,
                            userns: false,
                            caps: None,
                            ..
                        }),
                        ..
                    }))
                ),
                "{r:?}"
            )
        });
        for bad in [
            &["--enter", "5"][..],
            &["--enter", "5", "--power-off", "ls"],
            &["--enter", "5", "--boot"],
            &["--enter", "5", "-g", "ls"],
            &["--enter", "x", "ls"],
            &["--enter", "5", "--caps", "zz", "ls"],
            &["--userns", "ls"],
            &["--tty", "ls"],
            &["--power-off"],
        ] {
            with_args(bad, &[], |r| assert!(r.is_err(), "{bad:?}: {r:?}"));
        }
    }

    #[test]
    fn boot_with_report_and_cgroup_fds() {
        let args = ["--boot", "--report-fd=3", "--cgroup-fd", "4", "-v"];
        with_args(&args, &[], |r| {
            assert_eq!(
                r,
                Ok(Parsed::Run(Config {
                    mode: Mode::Boot { cgroup: Some(4) },
                    report_fd: Some(3),
                    started_fd: None,
                    verbosity: 2,
                }))
            )
        });
    }

    #[test]
    fn an_option_s_value_is_never_read_as_an_option() {
        with_args(&["--report-fd", "--boot"], &[], |r| {
            assert_eq!(r, Err(ArgError::BadValue("--report-fd", c"--boot")))
        });
    }

    #[test]
    fn bad_command_lines_are_errors_not_crashes() {
        let cases: [&[&str]; 17] = [
            &["--bogus", "--", "true"],
            &["-x", "true"],
            &["-sx", "true"],
            &["--ctid", "a", "--boot"],
            &["--boot", "--", "sh"],
            &["--boot", "-g"],
            &["--boot", "--env", "A=1"],
            &["--boot", "--enter", "5"],
            &["--report-fd", "1", "--", "true"],
            &["--cgroup-fd", "5", "--", "true"],
            &["-e", "256", "true"],
            &["-e", "x", "true"],
            &["-e"],
            &["-p", "SIGNOPE", "true"],
            &["-r", "15", "true"],
            &["-r", "99:1", "true"],
            &["--help=now", "x"],
        ];
        for case in cases {
            with_args(case, &[], |r| assert!(r.is_err(), "{case:?} gave {r:?}"));
        }
        with_args(&[], &[], |r| assert_eq!(r, Err(ArgError::NoCommand)));
        with_args(&["-v"], &[], |r| assert_eq!(r, Err(ArgError::NoCommand)));
    }

    #[test]
    fn a_missing_value_names_its_option() {
        let cases = [
            (&["-e"][..], "-e"),
            (&["-vp"], "-p"),
            (&["-r"], "-r"),
            (&["--rewrite"], "--rewrite"),
            (&["--boot", "--cgroup-fd"], "--cgroup-fd"),
            (&["--report-fd"], "--report-fd"),
            (&["--cgroup-fd"], "--cgroup-fd"),
        ];
        for (case, opt) in cases {
            with_args(case, &[], |r| {
                assert_eq!(r, Err(ArgError::MissingValue(opt)), "{case:?}")
            });
        }
    }

    #[test]
    fn help_and_version() {
        with_args(&["-h"], &[], |r| assert_eq!(r, Ok(Parsed::Help)));
        with_args(&["--help", "--", "x"], &[], |r| {
            assert_eq!(r, Ok(Parsed::Help))
        });
        with_args(&["--version"], &[], |r| assert_eq!(r, Ok(Parsed::Version)));
        with_args(&["-V"], &[], |r| assert_eq!(r, Ok(Parsed::Version)));
    }

    #[test]
    fn every_exit_code_can_be_remapped_alone() {
        for code in 0..=255u8 {
            let mut remap = Remap::default();
            remap.add(code);
            for other in 0..=255u8 {
                assert_eq!(remap.apply(other), if other == code { 0 } else { other });
            }
        }
    }
}
