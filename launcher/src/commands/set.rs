//! `cradle set NAME [LIMITS] [--port P]... [--save]`: changes the limits or the port
//! forwards of a running guest at once, as vzctl's `set` does. The state directory records
//! them, so every later boot has them too. With `--save` what is given is also written into
//! the guest's config file (the guest then need not be running), so that its next `start`
//! has it.
//!
//! The limits' lock (see `state`) keeps a `set` and the launcher apart: the launcher holds
//! it while it makes a boot's cgroups (and link and rules) and writes their limits, and
//! while it removes the cgroups, so what `set` finds there is the running boot's, and stays
//! there until it is done.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::configfile;
use cradle_core::cgroups::limits::{Changes, Limits};
use cradle_core::cgroups::v1::{self, Host};
use cradle_core::error::{Error, Result};
use cradle_core::guest::state::{Observed, validate_name};
use cradle_core::net::{self, Mode, Port, nft};

/// What `set` changes: limits, and the forwards when `ports` is given.
pub struct Wanted {
    pub limits: Changes,
    pub ports: Option<Vec<Port>>,
}

/// `--port` as `set` takes it: none given, the forwards (checked), or `none`.
pub fn ports(given: &[String]) -> Result<Option<Vec<Port>>> {
    match given {
        [] => Ok(None),
        [none] if none == "none" => Ok(Some(Vec::new())),
        _ => net::parse_ports(given).map(Some),
    }
}

/// `set NAME`; with `save`, the directory of the config file to write the changes into.
pub fn set(state_base: &Path, name: &str, wanted: &Wanted, save: Option<&Path>) -> Result<()> {
    validate_name(name)?;
    let changes = &wanted.limits;
    if changes.is_empty() && wanted.ports.is_none() {
        return Err(Error::Usage(
            "set needs at least one of --memory, --swap, --pids, --cpus, --cpu-weight, --port"
                .into(),
        ));
    }
    // the file's new text first: a file that cannot take the change stops the change
    let saved = save
        .map(|dir| edited_file(&configfile::path(dir, name), wanted))
        .transpose()?;
    match set_running(state_base, name, wanted) {
        Err(Error::NotRunning(_)) if saved.is_some() => {}
        other => other?,
    }
    if let Some((path, text)) = saved {
        configfile::write(&path, &text, false)?;
    }
    Ok(())
}

/// The config file at `path` with the limits and forwards `wanted` names set, checked.
fn edited_file(path: &Path, wanted: &Wanted) -> Result<(PathBuf, String)> {
    let changes = &wanted.limits;
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NoConfig(
                path.to_owned(),
                "set --save changes one; cradle create makes one",
            ));
        }
        Err(e) => return Err(Error::host(format!("read {}", path.display()), e)),
    };
    let before = configfile::parse(path, &text)?;
    changes.over(before.changes()).apply_to(Limits::default())?;
    let mut entries = configfile::limit_entries(changes);
    if let Some(ports) = &wanted.ports {
        // a forward's text is digits, dots, colons, brackets and a slash: nothing to escape
        let list: Vec<String> = ports.iter().map(|p| format!("\"{p}\"")).collect();
        entries.push(("port", format!("[{}]", list.join(", "))));
    }
    let after = configfile::edit(path, &text, &entries)?;
    configfile::parse(path, &after)?;
    Ok((path.to_owned(), after))
}

/// The running guest's limits and forwards, changed.
fn set_running(state_base: &Path, name: &str, wanted: &Wanted) -> Result<()> {
    let state = Observed::open(state_base, name)?;
    let host = Host::probe()?;
    let _lock = state.lock_limits()?;
    if !state.is_alive() {
        return Err(Error::NotRunning(name.to_owned()));
    }
    if let Some(ports) = &wanted.ports {
        set_ports(&state, name, ports)?;
    }
    let changes = &wanted.limits;
    if changes.is_empty() {
        return Ok(());
    }
    let new = changes.apply_to(state.limits()?)?;
    host.check(&new)?;
    let info = state.info()?;
    // between boots there is no cgroup: the next boot applies the recorded limits
    if info.cgroup.is_dir() {
        let mut knobs = changes.knobs();
        let v1 = &info.cgroups_v1;
        if host.needs_v1(&new) && !v1.iter().all(|d| d.path.is_dir()) {
            // a guest started without limits on a hybrid host is in no v1 cgroup of its
            // own: it gets them now, every process of it moved there, with all its limits
            v1::ensure_v1(v1)?;
            v1::migrate(&info.cgroup, v1)?;
            for knob in new.set_knobs() {
                if !knobs.contains(&knob) {
                    knobs.push(knob);
                }
            }
        }
        v1::apply(&host, &info.cgroup, v1, &new, &knobs)?;
    }
    state.set_limits(&new)
}

/// The running guest's forwards, replaced: recorded for its later boots, and the running
/// boot's rules made again at once (one nft transaction: no moment without them).
fn set_ports(state: &Observed, name: &str, ports: &[Port]) -> Result<()> {
    let network = state.network()?;
    if !matches!(network.mode, Mode::Nat | Mode::Routed) {
        return Err(Error::Usage(format!(
            "--port is for nat and routed guests; {name} has --net {}",
            network.mode
        )));
    }
    if let Some(port) = ports.iter().find(|p| {
        !network
            .addresses
            .iter()
            .any(|a| p.host_addr.is_none_or(|h| h.is_ipv4() == a.addr.is_ipv4()))
    }) {
        return Err(Error::Usage(format!(
            "--port {port}: {name} has no address of that family"
        )));
    }
    let here =
        net::link::current_netns_id().map_err(|e| Error::host("read this network namespace", e))?;
    if here != network.netns {
        return Err(Error::Usage(format!(
            "{name} was started in another network namespace: run cradle set there"
        )));
    }
    // the forwards of the running boot replaced (between boots, the old ones go and the
    // next boot adds the new ones from the record)
    let running = state.info()?.cgroup.is_dir();
    let mut new = network.clone();
    new.ports = ports.to_vec();
    if running {
        nft::set_forwards(&network, &new)?;
    } else {
        nft::remove(&network, nft::Which::Forwards)?;
    }
    state.set_network(&new)
}
