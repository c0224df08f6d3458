//! The container's cgroup: `cradle.NAME` directly below the root of the cgroup v2
//! hierarchy (`/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a hybrid one
//! such as these machines).
//!
//! Processes are cloned straight into their cgroup (clone3 `CLONE_INTO_CGROUP`), never
//! moved: a move waits for an RCU grace period, milliseconds each. In run mode the
//! container's first process is born in `cradle.NAME` and makes its cgroup namespace there.
//! In boot mode `cradle.NAME` gets two leaves (`common::guest::CGROUP_SHIM_DIR` and
//! `CGROUP_GUEST_DIR`): the shim is born in the first and the guest init in the second,
//! whose cgroup namespace the guest then gets, so systemd in the guest writes only below
//! it. When the container is gone the launcher removes the cgroup and everything the guest
//! created under it.

use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};

use crate::error::Error;

pub mod container;
pub mod limits;
pub mod tree;
pub mod v1;

/// The mount point of the cgroup v2 hierarchy, if the host has one.
pub fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| statfs(path).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC))
}

/// The calling process's own cgroup in the v2 hierarchy, relative to its root (the `0::`
/// line of /proc/self/cgroup); empty at the root.
pub fn own_v2() -> PathBuf {
    fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map_or_else(PathBuf::new, |path| {
            PathBuf::from(path.trim_start_matches('/'))
        })
}

/// The error of a host without a cgroup v2 hierarchy.
pub fn no_v2() -> Error {
    Error::host(
        "cgroup v2",
        io::Error::other("no cgroup2 file system at /sys/fs/cgroup or /sys/fs/cgroup/unified"),
    )
}

/// The name of container `name`'s cgroup directory, directly below the cgroup root.
pub fn name_for(name: &str) -> String {
    format!("cradle.{name}")
}

/// The cgroup of container `name`, below `root`.
pub fn path_for(root: &Path, name: &str) -> PathBuf {
    root.join(name_for(name))
}

/// True while a process is in `dir` or below (cgroup.events says `populated 1`).
pub fn is_populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|events| events.lines().any(|line| line == "populated 1"))
        .unwrap_or(false)
}

/// How deep the guest may nest cgroups below its own (`cgroup.max.depth`): systemd with
/// user sessions, and a container engine in the guest, use about ten levels.
pub const MAX_DEPTH: u32 = 32;
/// How many cgroups the guest may have below its own (`cgroup.max.descendants`): systemd
/// makes one per unit, slice and session.
pub const MAX_DESCENDANTS: u32 = 4096;

/// Removes `dir` and every cgroup below it (see [`tree`]).
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    let fd = match open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Err(Errno::ENOENT) => return Ok(()),
        other => other?,
    };
    tree::remove_below(fd.as_fd())?;
    drop(fd);
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The extended attribute of a container's cgroup that names its state directory.
pub const OWNER_XATTR: &CStr = c"trusted.cradle.state";
