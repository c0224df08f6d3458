//! `cradle run`: application mode. The same isolation as a guest, with the shim as PID 1
//! running one command directly (no guest init, no nested namespace), on the launcher's
//! own standard streams. The exit status is the command's, 128+N when it died of signal N.

use std::path::PathBuf;

use cradle_core::cgroups::limits::Limits;
use cradle_core::cgroups::v1::Host;
use cradle_core::config;
use cradle_core::container::ownership::{self, Ownership};
use cradle_core::container::rootfs::RootDir;
use cradle_core::container::spawn::ShimBinary;
use cradle_core::container::{Blueprint, Kind};
use cradle_core::error::{Error, Result};
use cradle_core::guest::DEFAULT_PATH;
use cradle_core::guest::state::{StateDir, validate_name};
use cradle_core::guest::sweep::Sweep;
use cradle_core::net::Request;
use cradle_core::net::lease::Holder;
use cradle_core::net::setup as net_setup;
use cradle_core::process::signals::{FORWARDED, Signals};
use cradle_core::security::Security;
use cradle_core::security::devices;
use cradle_core::security::userns::UsernsMode;
use cradle_core::sys::SingleThreaded;

pub struct Options {
    pub state_base: PathBuf,
    pub root: PathBuf,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    pub shim: Option<PathBuf>,
    pub command: Vec<String>,
    pub userns: UsernsMode,
    /// Who owns the root's files on disk (see `ownership`).
    pub ownership: Ownership,
    pub security: Security,
    pub limits: Limits,
    pub net: Request,
}

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
    let mut root = RootDir::open(&opts.root)?;
    // the name is this container's while it runs, as for `start`: its cgroup too
    let state = StateDir::acquire(&opts.state_base, &name)?;
    let host = Host::probe()?;
    host.check(&opts.limits)?;
    let devices = devices::Policy::begin_for_guest(threads);
    let mut sweep = Sweep::begin(&host, opts.net.mode.linked());
    let shim = ShimBinary::sealed(opts.shim.as_deref())?;
    // the namespaces are made alongside what follows
    let (lease, begun, prepared) = ownership::lease_and_prepare(
        threads,
        &mut root,
        &name,
        opts.userns,
        opts.ownership,
        opts.net.mode.private(),
    )?;
    let holder = Holder {
        name: name.clone(),
        lock: state.lock_path(),
    };
    let network = net_setup::hold(&name, &opts.net, &holder)?;
    state.set_network(&network)?;
    let mut signals = Signals::catch(&FORWARDED)?;
    let mut args = vec!["--".to_owned()];
    args.extend(opts.command.iter().cloned());
    let env = command_env(&name, &opts.env);
    let devices = devices.finish()?;
    let filter = opts.security.filter(lease.is_some())?;
    let blueprint = Blueprint {
        threads,
        name: &name,
        state: state.path(),
        root: &root,
        hostname: &hostname,
        shim: &shim,
        owner: lease.as_ref().map(|l| l.base),
        id_map: prepared.id_map,
        devices: &devices,
        caps: opts.security.caps,
        seccomp: filter.as_ref(),
        host: &host,
        limits: &opts.limits,
        network: &network,
        begun,
        tree: prepared.tree,
    };
    let spawned = blueprint.spawn(Kind::Run {
        shim_args: &args,
        env: &env,
    });
    let (mut container, cgroup) = match spawned {
        Ok(spawned) => spawned,
        Err(e) => {
            net_setup::finish(&network);
            net_setup::release(&network, &holder);
            return Err(e);
        }
    };
    sweep.after_clone(&host);
    let status = container.supervise(Some(&mut signals), &opts.command[0], None, None);
    // in this order: the shim (reaped), then the cgroup (emptied and removed), the
    // forwards, the addresses, then the range
    drop(container);
    drop(cgroup);
    net_setup::finish(&network);
    net_setup::release(&network, &holder);
    drop(lease);
    drop(state);
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
