//! `cradle set NAME [LIMITS]`: changes the limits of a running guest at once, as vzctl's
//! `set` does. The state directory records them, so every later boot has them too.
//!
//! The limits' lock (see `state`) keeps a `set` and the launcher apart: the launcher holds
//! it while it makes a boot's cgroups and writes their limits, and while it removes them,
//! so what `set` finds there is the running boot's, and stays there until it is done.

use std::path::Path;

use crate::controllers::{self, Host};
use crate::error::{Error, Result};
use crate::limits::Changes;
use crate::state::{Observed, validate_name};

pub fn set(state_base: &Path, name: &str, changes: &Changes) -> Result<()> {
    validate_name(name)?;
    if changes.is_empty() {
        return Err(Error::Usage(
            "set needs at least one of --memory, --swap, --pids, --cpus, --cpu-weight".into(),
        ));
    }
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
            controllers::ensure_v1(v1)?;
            controllers::migrate(&info.cgroup, v1)?;
            for knob in new.set_knobs() {
                if !knobs.contains(&knob) {
                    knobs.push(knob);
                }
            }
        }
        controllers::apply(&host, &info.cgroup, v1, &new, &knobs)?;
    }
    state.set_limits(&new)
}
