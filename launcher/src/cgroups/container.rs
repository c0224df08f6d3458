//! The cgroup of one container: `cradle.NAME`, its leaves in boot mode, and its cgroups in
//! a hybrid host's v1 hierarchies; removed with everything below it when dropped.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use cradle_common::guest::{CGROUP_GUEST_DIR, CGROUP_SHIM_DIR};

use super::tree;
use super::v1::{self, V1Dir};
use super::{
    MAX_DEPTH, MAX_DESCENDANTS, OWNER_XATTR, is_populated, no_v2, path_for, remove_tree, v2_root,
};
use crate::error::{Error, Result};
use crate::sys::{self, Deadline};

/// A cgroup this launcher created; removed (with everything below it) when dropped, with
/// the container's cgroups in the v1 hierarchies of a hybrid host.
pub struct Cgroup {
    path: PathBuf,
    dir: OwnedFd,
    /// The shim's and the guest's leaves, in boot mode.
    leaves: Option<(OwnedFd, OwnedFd)>,
    /// The container's v1 cgroups (removed when dropped, wherever they came from: `cradle
    /// set` may make them while the guest runs), and whether this boot joins them.
    v1: Vec<V1Dir>,
    join_v1: bool,
    /// Left in place when dropped ([`Cgroup::keep`]).
    kept: bool,
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::host(format!("open cgroup {}", path.display()), e))
}

impl Cgroup {
    /// Creates the cgroup of container `name`, with the shim's and the guest's leaves when
    /// `leaves`, marked as the container whose state directory is `state` (for
    /// [`sweep_leftovers`]). The caller holds the name (the lock in `state`), so one left
    /// behind by a launcher that was killed is taken over if no process is in it.
    pub fn create(name: &str, leaves: bool, state: &Path) -> Result<Self> {
        let root = v2_root().ok_or_else(no_v2)?;
        Self::create_at(path_for(&root, name), leaves, state)
    }

    /// As [`Cgroup::create`], at `path` in the v2 hierarchy (an OCI bundle's
    /// `cgroupsPath`), its missing parents made.
    pub fn create_at(path: PathBuf, leaves: bool, state: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::host(format!("create cgroup {}", parent.display()), e))?;
        }
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if is_populated(&path) {
                    return Err(Error::host(
                        format!("cgroup {}", path.display()),
                        io::Error::other(
                            "exists and has processes: is another cradle running this name?",
                        ),
                    ));
                }
                remove_tree(&path)
                    .and_then(|()| fs::create_dir(&path))
                    .map_err(|e| Error::host(format!("recreate cgroup {}", path.display()), e))?;
            }
            Err(e) => return Err(Error::host(format!("create cgroup {}", path.display()), e)),
        }
        let dir = open_dir(&path)?;
        // best effort: a kernel without xattrs on cgroups only loses the sweep
        if let Err(e) = sys::set_xattr(dir.as_fd(), OWNER_XATTR, state.as_os_str().as_bytes()) {
            log::debug!("{OWNER_XATTR:?} on {}: {e}", path.display());
        }
        let mut cgroup = Cgroup {
            path,
            dir,
            leaves: None,
            v1: Vec::new(),
            join_v1: false,
            kept: false,
        };
        if leaves {
            let leaf = |name: &str| {
                let path = cgroup.path.join(name);
                fs::create_dir(&path)
                    .map_err(|e| Error::host(format!("create cgroup {}", path.display()), e))
                    .and_then(|()| open_dir(&path))
            };
            cgroup.leaves = Some((leaf(CGROUP_SHIM_DIR)?, leaf(CGROUP_GUEST_DIR)?));
        }
        // the cgroup the guest's cgroup namespace is rooted at: what it may make below
        let guest = match cgroup.leaves {
            Some(_) => cgroup.path.join(CGROUP_GUEST_DIR),
            None => cgroup.path.clone(),
        };
        for (file, cap) in [
            ("cgroup.max.depth", MAX_DEPTH),
            ("cgroup.max.descendants", MAX_DESCENDANTS),
        ] {
            let path = guest.join(file);
            fs::write(&path, cap.to_string())
                .map_err(|e| Error::host(format!("write {}", path.display()), e))?;
        }
        Ok(cgroup)
    }

    /// The cgroup of container `name` as a launcher that exec'd itself left it (see
    /// `handoff`), with its v1 cgroups `v1`: removed when dropped, as ever.
    pub fn take_back(name: &str, v1: Vec<V1Dir>) -> Result<Self> {
        let root = v2_root().ok_or_else(no_v2)?;
        Self::take_back_at(path_for(&root, name), v1)
    }

    /// As [`Cgroup::take_back`], the cgroup at `path` in the v2 hierarchy (one an OCI
    /// runtime's `create` kept, for its `delete`).
    pub fn take_back_at(path: PathBuf, v1: Vec<V1Dir>) -> Result<Self> {
        let dir = open_dir(&path)?;
        Ok(Cgroup {
            path,
            dir,
            leaves: None,
            v1,
            join_v1: false,
            kept: false,
        })
    }

    /// Gives the container its cgroups in the v1 hierarchies `dirs` (a hybrid host's): they
    /// are removed with it; with `join`, they are made now and the container's first
    /// process joins them ([`Cgroup::open_v1_tasks`]).
    pub fn with_v1(mut self, dirs: Vec<V1Dir>, join: bool) -> Result<Self> {
        self.v1 = dirs;
        if join {
            v1::create_v1(&self.v1)?;
            self.join_v1 = true;
        }
        Ok(self)
    }

    /// The container's v1 cgroups, joined or not.
    pub fn v1(&self) -> &[V1Dir] {
        &self.v1
    }

    /// The `tasks` files of the v1 cgroups this boot joins, open for writing, with their
    /// hierarchies' names (for the plan's steps; why `tasks`, see `cgroups::v1`).
    pub fn open_v1_tasks(&self) -> Result<Vec<(String, OwnedFd)>> {
        if !self.join_v1 {
            return Ok(Vec::new());
        }
        self.v1
            .iter()
            .map(|d| v1::open_to_join(&d.path).map(|fd| (d.controllers.clone(), fd)))
            .collect()
    }

    /// The container's cgroup directory (for the device policy).
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the container's first process is born (clone3's `CLONE_INTO_CGROUP`): the
    /// shim's leaf in boot mode, the container's cgroup otherwise.
    pub fn first_process_dir(&self) -> BorrowedFd<'_> {
        match &self.leaves {
            Some((shim, _)) => shim.as_fd(),
            None => self.dir.as_fd(),
        }
    }

    /// The guest's leaf (boot mode), for the shim to clone the guest init into.
    pub fn guest_dir(&self) -> Option<BorrowedFd<'_>> {
        self.leaves.as_ref().map(|(_, guest)| guest.as_fd())
    }

    /// Delegates the container's cgroup and the guest's leaf to the guest's root (host uid
    /// and gid `owner`), as systemd's delegation document says: the directories and their
    /// `cgroup.procs`, `cgroup.subtree_control` and `cgroup.threads` change owner, so that
    /// systemd in the guest can make its cgroups and move its processes; every other file
    /// (the limits among them) stays the host's.
    pub fn delegate(&self, owner: u32) -> Result<()> {
        let mut dirs = vec![self.path.clone()];
        if self.leaves.is_some() {
            dirs.push(self.path.join(CGROUP_GUEST_DIR));
        }
        for dir in dirs {
            for file in [
                "",
                "cgroup.procs",
                "cgroup.subtree_control",
                "cgroup.threads",
            ] {
                let path = dir.join(file);
                std::os::unix::fs::chown(&path, Some(owner), Some(owner)).map_err(|e| {
                    Error::host(format!("delegate cgroup: chown {}", path.display()), e)
                })?;
            }
        }
        Ok(())
    }

    /// Leaves the cgroup in place when this is dropped (an OCI runtime's `create`: the
    /// container outlives it, and `delete` removes it): its v2 path and v1 directories.
    pub fn keep(mut self) -> (PathBuf, Vec<V1Dir>) {
        self.kept = true;
        (self.path.clone(), std::mem::take(&mut self.v1))
    }

    /// Kills every process in the cgroup and below: with cgroup.kill (Linux 5.14), or on
    /// an older kernel with SIGKILL to each process the cgroups list, frozen meanwhile
    /// (cgroup.freeze, Linux 5.2) so that none forks one that the walk would miss.
    pub fn kill_all(&self) {
        let Err(e) = fs::write(self.path.join("cgroup.kill"), "1") else {
            return;
        };
        log::debug!("cgroup.kill in {}: {e}", self.path.display());
        let _ = fs::write(self.path.join("cgroup.freeze"), "1");
        let walked = tree::visit(self.dir.as_fd(), &mut |cgroup| {
            for pid in tree::read(cgroup, c"cgroup.procs")
                .unwrap_or_default()
                .lines()
            {
                if let Ok(pid) = pid.parse() {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        });
        if let Err(e) = walked {
            log::debug!("kill the processes of {}: {e}", self.path.display());
        }
        // a frozen process dies of SIGKILL; thawed, in case some other did not
        let _ = fs::write(self.path.join("cgroup.freeze"), "0");
    }

    /// Waits (up to `timeout`) until no process is left in the cgroup. The kernel notifies
    /// a change of cgroup.events with POLLPRI, so this sleeps in poll(2), not in a loop.
    fn wait_empty(&self, timeout: Duration) -> bool {
        let Ok(mut events) = File::open(self.path.join("cgroup.events")) else {
            return true;
        };
        let deadline = Deadline::after(timeout);
        loop {
            let mut text = String::new();
            if events.read_to_string(&mut text).is_err()
                || !text.lines().any(|l| l == "populated 1")
            {
                return true;
            }
            if deadline.passed() {
                return false;
            }
            let mut fds = [PollFd::new(events.as_fd(), PollFlags::POLLPRI)];
            if let Err(e) = poll(&mut fds, deadline.poll_timeout()) {
                if e != Errno::EINTR {
                    return false;
                }
            }
            // cgroup files are read from the start each time
            events = match File::open(self.path.join("cgroup.events")) {
                Ok(file) => file,
                Err(_) => return true,
            };
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        self.remove_v2();
        // every process of the container is in the v2 tree, now empty: so are these
        v1::remove_v1(&self.v1);
    }
}

impl Cgroup {
    fn remove_v2(&mut self) {
        // the common case: the container's PID 1 is gone, so are its processes, and the
        // guest made no cgroups of its own (busybox): the directories are empty leaves
        let leaves = [CGROUP_SHIM_DIR, CGROUP_GUEST_DIR].map(|leaf| self.path.join(leaf));
        let quick = leaves.iter().all(|leaf| match fs::remove_dir(leaf) {
            Ok(()) => true,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }) && fs::remove_dir(&self.path).is_ok();
        if quick {
            return;
        }
        if is_populated(&self.path) {
            self.kill_all();
            if !self.wait_empty(Duration::from_secs(10)) {
                log::warn!(
                    "processes are still in {} after SIGKILL",
                    self.path.display()
                );
            }
        }
        if let Err(e) = remove_tree(&self.path) {
            log::warn!("cannot remove cgroup {}: {e}", self.path.display());
        }
    }
}
