//! The container's cgroup: `cradle.NAME` directly below the root of the cgroup v2
//! hierarchy (`/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a hybrid one
//! such as these machines).
//!
//! The container's first process is cloned straight into it (clone3 `CLONE_INTO_CGROUP`) and
//! makes its cgroup namespace there, so the guest's /sys/fs/cgroup is rooted at this cgroup
//! and systemd in the guest writes only below it. When the container is gone the launcher
//! removes the cgroup and everything the guest created under it.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;
use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};

use crate::error::{Error, Result};

/// The mount point of the cgroup v2 hierarchy, if the host has one.
pub fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| statfs(path).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC))
}

/// The cgroup of container `name`, below `root`.
pub fn path_for(root: &Path, name: &str) -> PathBuf {
    root.join(format!("cradle.{name}"))
}

/// True while a process is in `dir` or below (cgroup.events says `populated 1`).
fn is_populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|events| events.lines().any(|line| line == "populated 1"))
        .unwrap_or(false)
}

/// Removes `dir` and every cgroup below it, deepest first (a cgroup directory is removed
/// with rmdir; its files go with it).
fn remove_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A cgroup this launcher created; removed (with everything below it) when dropped.
pub struct Cgroup {
    path: PathBuf,
    dir: OwnedFd,
}

impl Cgroup {
    /// Creates the cgroup of container `name`. One left behind by a launcher that was
    /// killed is taken over if no process is in it.
    pub fn create(name: &str) -> Result<Self> {
        let root = v2_root().ok_or_else(|| {
            Error::host(
                "cgroup v2",
                io::Error::other(
                    "no cgroup2 file system at /sys/fs/cgroup or /sys/fs/cgroup/unified",
                ),
            )
        })?;
        let path = path_for(&root, name);
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
        let dir = open(
            &path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::host(format!("open cgroup {}", path.display()), e))?;
        Ok(Cgroup { path, dir })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup's directory, for clone3's `CLONE_INTO_CGROUP`.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Kills every process in the cgroup and below (cgroup.kill, Linux 5.14).
    pub fn kill_all(&self) {
        if let Err(e) = fs::write(self.path.join("cgroup.kill"), "1") {
            log::debug!("cgroup.kill in {}: {e}", self.path.display());
        }
    }

    /// Waits (up to `timeout`) until no process is left in the cgroup. The kernel notifies
    /// a change of cgroup.events with POLLPRI, so this sleeps in poll(2), not in a loop.
    fn wait_empty(&self, timeout: Duration) -> bool {
        let Ok(mut events) = File::open(self.path.join("cgroup.events")) else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        loop {
            let mut text = String::new();
            if events.read_to_string(&mut text).is_err()
                || !text.lines().any(|l| l == "populated 1")
            {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [PollFd::new(events.as_fd(), PollFlags::POLLPRI)];
            let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32 + 1)
                .unwrap_or(PollTimeout::MAX);
            if let Err(e) = poll(&mut fds, ms) {
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
