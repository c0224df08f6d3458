//! `cradle set NAME [LIMITS] [--save]`: changes the limits of a running guest at once, as
//! vzctl's `set` does. The state directory records them, so every later boot has them too.
//! With `--save` the limits given are also written into the guest's config file (the
//! guest then need not be running), so that its next `start` has them.
//!
//! The limits' lock (see `state`) keeps a `set` and the launcher apart: the launcher holds
//! it while it makes a boot's cgroups and writes their limits, and while it removes them,
//! so what `set` finds there is the running boot's, and stays there until it is done.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::configfile;
use cradle_core::cgroups::limits::{Changes, Limits};
use cradle_core::cgroups::v1::{self, Host};
use cradle_core::error::{Error, Result};
use cradle_core::guest::state::{Observed, validate_name};

/// `set NAME`; with `save`, the directory of the config file to write the limits into.
pub fn set(state_base: &Path, name: &str, changes: &Changes, save: Option<&Path>) -> Result<()> {
    validate_name(name)?;
    if changes.is_empty() {
        return Err(Error::Usage(
            "set needs at least one of --memory, --swap, --pids, --cpus, --cpu-weight".into(),
        ));
    }
    // the file's new text first: a file that cannot take the change stops the change
    let saved = save
        .map(|dir| edited_file(&configfile::path(dir, name), changes))
        .transpose()?;
    match set_running(state_base, name, changes) {
        Err(Error::NotRunning(_)) if saved.is_some() => {}
        other => other?,
    }
    if let Some((path, text)) = saved {
        configfile::write(&path, &text, false)?;
    }
    Ok(())
}

/// The config file at `path` with the limits `changes` names set, checked.
fn edited_file(path: &Path, changes: &Changes) -> Result<(PathBuf, String)> {
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
    let after = configfile::edit(path, &text, &configfile::limit_entries(changes))?;
    configfile::parse(path, &after)?;
    Ok((path.to_owned(), after))
}

/// The running guest's limits, changed.
fn set_running(state_base: &Path, name: &str, changes: &Changes) -> Result<()> {
    let state = Observed::open(state_base, name)?;
    let host = Host::probe()?;
    let _lock = state.lock_limits()?;
    if !state.is_alive() {
        return Err(Error::NotRunning(name.to_owned()));
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
