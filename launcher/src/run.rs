//! `cradle run`: application mode. The same isolation as a guest, with the shim as PID 1
//! running one command directly (no guest init, no nested namespace), on the launcher's
//! own standard streams. The exit status is the command's, 128+N when it died of signal N.

use std::path::PathBuf;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::cgroups::Cgroup;
use crate::config;
use crate::error::{Error, Result};
use crate::guest::DEFAULT_PATH;
use crate::plan::{self, Purpose};
use crate::signals::Signals;
use crate::spawn::{self, Report, ShimBinary};
use crate::state::validate_name;

pub struct Options {
    pub root: PathBuf,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    pub shim: Option<PathBuf>,
    pub command: Vec<String>,
}

/// Signals passed on to the command (through the shim, which forwards them).
const FORWARDED: [i32; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGALRM,
];

/// The command's environment: a PATH, HOME=/, the host's TERM, container=NAME, then the
/// user's variables (which may override any of them).
fn command_env(name: &str, user: &[String]) -> Vec<String> {
    let term = std::env::var("TERM").unwrap_or_else(|_| "linux".to_owned());
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        "HOME=/".to_owned(),
        format!("TERM={term}"),
        format!("{}{name}", cradle_common::guest::CONTAINER_VAR),
    ];
    for var in user {
        let key = var.split('=').next().unwrap_or_default();
        env.retain(|v| v.split('=').next() != Some(key));
        env.push(var.clone());
    }
    env
}

/// Runs the command and returns its exit status.
pub fn run(opts: &Options) -> Result<u8> {
    if opts.command.is_empty() {
        return Err(Error::Usage("run needs a command after --".into()));
    }
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    validate_name(&name)?;
    config::check_env(&opts.env)?;
    let hostname = opts.hostname.clone().unwrap_or_else(|| name.clone());
    config::check_hostname(&hostname)?;
    let root = config::check_root(&opts.root)?;
    let shim = ShimBinary::locate(opts.shim.as_deref())?;
    let mut signals = Signals::catch(&FORWARDED)?;
    let cgroup = Cgroup::create(&name, false)?;
    let steps = plan::build(&plan::Config {
        root: &root,
        hostname: &hostname,
        purpose: Purpose::Run,
    })
    .map_err(|_| Error::Usage("the root path contains a NUL byte".into()))?;
    let mut shim_args = vec!["--".to_owned()];
    shim_args.extend(opts.command.iter().cloned());
    let env = command_env(&name, &opts.env);
    let mut container = spawn::spawn(&shim, steps, &shim_args, &env, &cgroup)?;
    let mut failure = None;
    let status = loop {
        let mut fds = vec![
            PollFd::new(signals.fd(), PollFlags::POLLIN),
            PollFd::new(container.pidfd(), PollFlags::POLLIN),
        ];
        if let Some(fd) = container.errpipe() {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::host("poll", e)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready.get(2) == Some(&true) {
            if let Report::Failed(f) = container.read_report() {
                failure = Some(container.failure_error(f, &opts.command[0]));
            }
        }
        if ready[0] {
            for sig in signals.pending() {
                container.signal(sig);
            }
        }
        if ready[1] {
            if let Some(status) = container.try_wait() {
                break status;
            }
        }
    };
    drop(container);
    drop(cgroup);
    match failure {
        Some(error) => Err(error),
        None => Ok(status.shell_code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_variables_override_the_defaults() {
        let env = command_env("app", &["PATH=/bin".into(), "A=1".into()]);
        assert!(env.contains(&"PATH=/bin".to_owned()));
        assert_eq!(env.iter().filter(|v| v.starts_with("PATH=")).count(), 1);
        assert!(env.contains(&"container=app".to_owned()));
        assert!(env.contains(&"HOME=/".to_owned()));
        assert_eq!(env.last().unwrap(), "A=1");
    }
}
