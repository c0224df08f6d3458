//! What launchers that were killed left behind, removed by the next one.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::cgroups::v1::{self, Host};
use crate::cgroups::{OWNER_XATTR, is_populated, remove_tree, v2_root};
use crate::net::lease::Holder;
use crate::net::setup;
use crate::sys;

/// Removes the rules and link a killed launcher's guest left (made in this network
/// namespace), and gives back its leases.
pub fn sweep_network(state: &super::state::StateDir) {
    let Ok(network) = state.network() else {
        return;
    };
    log::debug!("removing the leftover network of {}", network.name);
    setup::detach(&network);
    let holder = Holder {
        name: network.name.clone(),
        lock: state.lock_path(),
    };
    setup::release(&network, &holder);
}

/// The sweep of everything that launchers that were killed left, their containers
/// ([`sweep_leftovers`]) and their uid-range locks, once per `start` or `run`: before the
/// guest's network is made where it has a link (a leftover's forwards and links must be
/// gone first), else right after its first clone, while the child sets up on the other
/// CPU and the launcher would only wait. It reads every `cradle.*` cgroup and tries every
/// range lock, some 30 us a guest running on the host (a boot among 50 running guests
/// took 10.1 ms with the sweep before its clone, 9.0 after).
pub struct Sweep {
    done: bool,
}

impl Sweep {
    /// Sweeps now for a guest with a link (`linked`), else leaves it to
    /// [`Sweep::after_clone`].
    pub fn begin(host: &Host, linked: bool) -> Self {
        let mut sweep = Sweep { done: false };
        if linked {
            sweep.run(host);
        }
        sweep
    }

    /// Already done (by the launcher that handed a running guest over).
    pub fn done() -> Self {
        Sweep { done: true }
    }

    /// Once the guest's first process is cloned: sweeps unless that was done.
    pub fn after_clone(&mut self, host: &Host) {
        if !self.done {
            self.run(host);
        }
    }

    fn run(&mut self, host: &Host) {
        sweep_leftovers(host);
        crate::security::userns::sweep_stale_locks();
        self.done = true;
    }
}

/// Removes what launchers that were killed (SIGKILL, a crash) left of their containers: a
/// `cradle.NAME` with no process in it, whose state directory (named on the cgroup, see
/// `Cgroup::create`) nobody holds, whatever `--state-dir` it was started with. The name
/// lock is taken while its cgroups go (in the v2 hierarchy, and the v1 ones of a hybrid
/// host) and its state directory with them, but for files this cradle does not write
/// (another version's), which stay, with their directory; a state directory whose base
/// is gone is not made again. A launcher holds its name before it makes its cgroup, and names it
/// on the cgroup at once, so a cgroup being made is never taken for a leftover. Nothing of
/// this is said but at debug level: it is no business of the command that sweeps. The
/// network the state directory records goes with it (`sweep_network`).
fn sweep_leftovers(host: &Host) {
    let Some(root) = v2_root() else {
        return;
    };
    let Ok(entries) = fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("cradle."))
            .map(str::to_owned)
        else {
            continue;
        };
        if is_populated(&dir) {
            continue;
        }
        let Some(state) = CString::new(dir.as_os_str().as_bytes())
            .ok()
            .and_then(|path| sys::get_xattr(&path, OWNER_XATTR))
            .map(|bytes| PathBuf::from(std::ffi::OsString::from_vec(bytes)))
        else {
            continue;
        };
        let (Some(base), Some(owner)) = (state.parent(), state.file_name()) else {
            continue;
        };
        if owner.to_str() != Some(name.as_str()) {
            continue;
        }
        // held by a running launcher: not a leftover; gone with its base: nobody holds
        // it, and the cgroup goes without it
        let claimed = match super::state::StateDir::claim_leftover(base, &name) {
            Ok(claimed) => claimed,
            Err(_) => continue,
        };
        log::debug!("removing the leftover cgroup {}", dir.display());
        if let Err(e) = remove_tree(&dir) {
            log::debug!("cannot remove {}: {e}", dir.display());
        }
        v1::remove_v1(&host.v1_dirs(&name));
        if let Some(claimed) = &claimed {
            sweep_network(claimed);
        }
        drop(claimed);
    }
}
