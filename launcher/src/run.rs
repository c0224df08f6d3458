//! `cradle run`: application mode. The same isolation as a guest, with the shim as PID 1
//! running one command directly (no guest init, no nested namespace), on the launcher's
//! own standard streams. The exit status is the command's, 128+N when it died of signal N.

use std::path::PathBuf;

use crate::cgroups::Cgroup;
use crate::config;
use crate::devices;
use crate::error::{Error, Result};
use crate::guest::DEFAULT_PATH;
use crate::plan::{self, Purpose};
use crate::rootfs::{self, RootDir};
use crate::security::Security;
use crate::signals::Signals;
use crate::spawn::{self, ShimBinary, Spawn};
use crate::state::validate_name;
use crate::sys::SingleThreaded;
use crate::userns::{self, Namespaces, UsernsMode};

pub struct Options {
    pub root: PathBuf,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    pub shim: Option<PathBuf>,
    pub command: Vec<String>,
    pub userns: UsernsMode,
    pub security: Security,
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
    let base = [
        format!("PATH={DEFAULT_PATH}"),
        "HOME=/".to_owned(),
        format!("TERM={term}"),
        format!("{}{name}", cradle_common::guest::CONTAINER_VAR),
    ];
    config::merge_env(&base, user)
}

/// Runs the command and returns its exit status.
pub fn run(threads: &SingleThreaded, opts: &Options) -> Result<u8> {
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
    let root = RootDir::open(&opts.root)?;
    let shim = ShimBinary::locate(opts.shim.as_deref())?;
    let lease = userns::acquire(&name, opts.userns)?;
    let base = lease.as_ref().map(|l| l.base);
    let mut signals = Signals::catch(&FORWARDED)?;
    let cgroup = Cgroup::create(&name, false)?;
    devices::Policy::for_guest()?.attach(cgroup.dir())?;
    if let Some(base) = base {
        cgroup.delegate(base)?;
    }
    let namespaces = base
        .map(|base| Namespaces::create(threads, base))
        .transpose()?;
    let steps = plan::build(plan::Config {
        tree: root.clone_tree(namespaces.as_ref().map(Namespaces::user))?,
        hostname: &hostname,
        purpose: Purpose::Run,
        devices: rootfs::host_devices()?,
        userns: namespaces,
        caps: opts.security.caps,
        seccomp: opts.security.filter(base.is_some())?,
        switch: root.switch()?,
    })
    .map_err(|_| Error::Usage("the hostname contains a NUL byte".into()))?;
    let mut args = vec!["--".to_owned()];
    args.extend(opts.command.iter().cloned());
    let env = command_env(&name, &opts.env);
    let mut container = spawn::spawn(
        &Spawn {
            threads,
            shim: &shim,
            cwd: Some(root.fd()),
            namespaces: spawn::namespaces(base.is_some()),
            cgroup: Some(cgroup.first_process_dir()),
            keep: &[],
            args: &args,
            env: &env,
        },
        steps,
    )?;
    let status = container.supervise(Some(&mut signals), &opts.command[0]);
    // in this order: the shim (reaped), then the cgroup (emptied and removed), then the range
    drop(container);
    drop(cgroup);
    drop(lease);
    Ok(status?.shell_code())
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
