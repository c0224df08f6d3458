//! The locks that say which ranges running containers hold.
//!
//! A range at BASE is held by a lock file named BASE in two directories, both taken for as
//! long as the launcher runs:
//!
//! - `/run/cradle-userns`, cradle's own. It is fixed: neither the environment nor
//!   `--state-dir` moves it, because two launchers that locked in two places could give
//!   two guests one range.
//! - `/run/systemd/nspawn-uid`, systemd-nspawn's: `--private-users=pick` locks the range it
//!   picks there (`uid_shift_pick` in systemd's `src/nspawn/nspawn.c`, through
//!   `make_lock_file`), so cradle skips the ranges nspawn holds and nspawn those cradle
//!   holds. On a host without `/run/systemd` there is no such lock: nspawn makes only the
//!   last directory, so it could not lock there either. (An nspawn given a fixed
//!   `--private-users=BASE` takes no lock, and is not seen.)
//!
//! Every lock file is taken the way systemd's `make_lock_file` takes one: opened
//! `O_CREAT|O_NOFOLLOW`, write-locked whole with an open file description lock
//! (`F_OFD_SETLK`; systemd fell back to flock(2) on kernels before 3.15), then checked to
//! be still in place (its holder removes it, while still locked, when done, so one opened
//! just before that is worthless: open again). Each is flock'd as well, which is how earlier
//! launchers locked `/run/cradle-userns`; either lock held means the range is held. A
//! launcher that dies releases its locks with its descriptors, and the next launcher
//! sweeps the files it left (see [`sweep`]).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, Flock, FlockArg, fcntl};

use crate::error::{Error, Result};
use crate::handoff::{LeaseFds, Taken};
use crate::sys;

/// Where cradle locks ranges.
const LOCK_DIR: &str = "/run/cradle-userns";
/// Where systemd-nspawn locks the ranges it picks.
const NSPAWN_LOCK_DIR: &str = "/run/systemd/nspawn-uid";

/// Who holds a range a launcher could not take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Another cradle launcher.
    Cradle,
    /// systemd-nspawn (`--private-users=pick`).
    Nspawn,
}

impl Holder {
    /// Who it is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Holder::Cradle => "another running container",
            Holder::Nspawn => "a running systemd-nspawn container",
        }
    }
}

/// Where the locks of ranges are.
pub struct LockDirs {
    pub cradle: PathBuf,
    /// systemd-nspawn's; `None` on a host without `/run/systemd`.
    pub nspawn: Option<PathBuf>,
}

impl LockDirs {
    /// The host's: fixed paths.
    pub fn host() -> Self {
        LockDirs {
            cradle: PathBuf::from(LOCK_DIR),
            nspawn: Some(PathBuf::from(NSPAWN_LOCK_DIR)),
        }
    }

    /// The host's, made where missing (nspawn's only when `/run/systemd` is there, with the
    /// mode nspawn gives it).
    pub fn prepare() -> Result<Self> {
        let mut dirs = Self::host();
        fs::create_dir_all(&dirs.cradle).map_err(|e| {
            Error::host(format!("user namespace locks {}", dirs.cradle.display()), e)
        })?;
        if let Some(dir) = &dirs.nspawn {
            match fs::DirBuilder::new().mode(0o755).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => dirs.nspawn = None,
                Err(e) => {
                    return Err(Error::host(
                        format!("user namespace locks {}", dir.display()),
                        e,
                    ));
                }
            }
        }
        Ok(dirs)
    }
}

/// One lock file of a range, locked. Dropping it removes the file, then releases it.
struct RangeLock {
    path: PathBuf,
    file: Flock<File>,
}

/// Takes the OFD write lock on the whole of `file`, without waiting: EAGAIN (or EACCES)
/// when another open file has it.
fn lock_ofd(file: &File) -> nix::Result<()> {
    let whole = sys::whole_file(libc::F_WRLCK as libc::c_short);
    fcntl(file, FcntlArg::F_OFD_SETLK(&whole)).map(drop)
}

impl RangeLock {
    /// `dir/BASE`, locked; `None` when another process holds it.
    fn try_take(dir: &Path, base: u32) -> Result<Option<Self>> {
        let path = dir.join(base.to_string());
        let ctx = |e: Errno| Error::host(format!("user namespace lock {}", path.display()), e);
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
                .open(&path)
                .map_err(|e| Error::host(format!("user namespace lock {}", path.display()), e))?;
            let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, e)) => return Err(ctx(e)),
            };
            match lock_ofd(&lock) {
                Ok(()) => {}
                Err(Errno::EAGAIN | Errno::EACCES) => return Ok(None),
                Err(e) => return Err(ctx(e)),
            }
            // its holder may have removed the file between our open and our locks
            if sys::is_at(&lock, &path) {
                return Ok(Some(RangeLock { path, file: lock }));
            }
        }
    }

    /// The lock at `path` a launcher that exec'd itself holds (see `handoff`): `fd` must be
    /// that file, open (taking the locks again on the same open file keeps them).
    fn take_back(path: PathBuf, fd: OwnedFd) -> Result<Self> {
        let file = File::from(fd);
        if !sys::is_at(&file, &path) {
            return Err(Error::Usage(format!(
                "the lock handed over is not {}",
                path.display()
            )));
        }
        let ctx = |e: Errno| Error::host(format!("user namespace lock {}", path.display()), e);
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| ctx(e))?;
        lock_ofd(&lock).map_err(ctx)?;
        Ok(RangeLock { path, file: lock })
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Drop for RangeLock {
    fn drop(&mut self) {
        // removed while still locked: a process that opens it now finds another inode
        let _ = fs::remove_file(&self.path);
    }
}

/// A range this launcher holds. Dropping it releases the range.
pub struct Lease {
    pub base: u32,
    // Fields drop in order: nspawn's lock goes before cradle's, so a range whose cradle
    // lock is free while its nspawn lock is held is nspawn's, not a cradle launcher's.
    nspawn: Option<RangeLock>,
    cradle: RangeLock,
}

impl Lease {
    /// Takes the range at `base` in `dirs`; `Err(holder)` when a running container holds it.
    pub fn try_take(dirs: &LockDirs, base: u32) -> Result<std::result::Result<Lease, Holder>> {
        let Some(cradle) = RangeLock::try_take(&dirs.cradle, base)? else {
            return Ok(Err(Holder::Cradle));
        };
        let nspawn = match &dirs.nspawn {
            Some(dir) => match RangeLock::try_take(dir, base)? {
                Some(lock) => Some(lock),
                // cradle's lock is dropped (and its file removed) on the way out
                None => return Ok(Err(Holder::Nspawn)),
            },
            None => None,
        };
        Ok(Ok(Lease {
            base,
            nspawn,
            cradle,
        }))
    }

    /// The range a launcher that exec'd itself holds (see `handoff`).
    pub fn take_back(fds: &LeaseFds, taken: &mut Taken) -> Result<Self> {
        Self::take_back_in(&LockDirs::host(), fds, taken)
    }

    fn take_back_in(dirs: &LockDirs, fds: &LeaseFds, taken: &mut Taken) -> Result<Self> {
        let name = fds.base.to_string();
        let cradle = RangeLock::take_back(
            dirs.cradle.join(&name),
            taken.take(fds.lock, "user namespace lock")?,
        )?;
        let nspawn = match (fds.nspawn_lock, &dirs.nspawn) {
            (Some(fd), Some(dir)) => Some(RangeLock::take_back(
                dir.join(&name),
                taken.take(fd, "systemd-nspawn's user namespace lock")?,
            )?),
            (Some(fd), None) => {
                return Err(Error::Usage(format!(
                    "descriptor {fd} is no user namespace lock of this host"
                )));
            }
            (None, _) => None,
        };
        Ok(Lease {
            base: fds.base,
            nspawn,
            cradle,
        })
    }

    /// Its base and lock files, open, for a handoff.
    pub fn handoff(&self) -> LeaseFds {
        LeaseFds {
            base: self.base,
            lock: self.cradle.fd(),
            nspawn_lock: self.nspawn.as_ref().map(RangeLock::fd),
        }
    }

    /// Every descriptor [`Lease::handoff`] names.
    pub fn fds(fds: &LeaseFds) -> impl Iterator<Item = RawFd> {
        std::iter::once(fds.lock).chain(fds.nspawn_lock)
    }
}

/// Removes the locks of launchers that were killed (a lock file of cradle's that nobody
/// holds, and nspawn's of the same range when nobody holds it either): taking one and
/// dropping it removes it. nspawn's other files are nspawn's to take over.
pub fn sweep(dirs: &LockDirs) {
    let Ok(entries) = fs::read_dir(&dirs.cradle) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(base) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(Some(stale)) = RangeLock::try_take(&dirs.cradle, base) else {
            continue;
        };
        if let Some(dir) = &dirs.nspawn {
            if let Ok(Some(left)) = RangeLock::try_take(dir, base) {
                drop(left);
            }
        }
        drop(stale);
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Lock directories of a test's own, removed when dropped.
    pub struct TestDirs {
        root: PathBuf,
        pub dirs: LockDirs,
    }

    impl TestDirs {
        pub fn new(test: &str) -> Self {
            let root =
                std::env::temp_dir().join(format!("cradle-userns-{test}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            let dirs = LockDirs {
                cradle: root.join("cradle"),
                nspawn: Some(root.join("nspawn")),
            };
            fs::create_dir_all(&dirs.cradle).unwrap();
            fs::create_dir_all(dirs.nspawn.as_ref().unwrap()).unwrap();
            TestDirs { root, dirs }
        }

        pub fn nspawn(&self, base: u32) -> PathBuf {
            self.dirs.nspawn.as_ref().unwrap().join(base.to_string())
        }

        pub fn cradle(&self, base: u32) -> PathBuf {
            self.dirs.cradle.join(base.to_string())
        }

        /// What systemd-nspawn does to hold the range at `base` (`make_lock_file`): the
        /// file, with an OFD write lock on it, and no flock.
        pub fn hold_as_nspawn(&self, base: u32) -> File {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.nspawn(base))
                .unwrap();
            lock_ofd(&file).unwrap();
            file
        }

        /// Whether systemd-nspawn would find the range at `base` held: its lock file there,
        /// and write-locked (an OFD lock) by another open file.
        pub fn nspawn_sees_held(&self, base: u32) -> bool {
            let Ok(file) = OpenOptions::new().read(true).open(self.nspawn(base)) else {
                return false;
            };
            let mut probe = sys::whole_file(libc::F_WRLCK as libc::c_short);
            fcntl(&file, FcntlArg::F_OFD_GETLK(&mut probe)).unwrap();
            probe.l_type != libc::F_UNLCK as libc::c_short
        }
    }

    impl Drop for TestDirs {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    #[test]
    fn the_locks_of_a_killed_launcher_are_swept_and_held_ones_are_not() {
        let t = TestDirs::new("sweep");
        // a killed launcher's two files, and one nspawn left on its own
        fs::write(t.cradle(655_360), "").unwrap();
        fs::write(t.nspawn(655_360), "").unwrap();
        fs::write(t.nspawn(720_896), "").unwrap();
        let held = Lease::try_take(&t.dirs, 0x80000).unwrap().unwrap();
        sweep(&t.dirs);
        assert!(!t.cradle(655_360).exists());
        assert!(!t.nspawn(655_360).exists());
        assert!(t.nspawn(720_896).exists(), "nspawn's own is nspawn's");
        assert!(t.cradle(524_288).exists());
        assert!(t.nspawn(524_288).exists());
        drop(held);
    }

    #[test]
    fn two_leases_never_share_a_range_and_a_released_one_is_free_again() {
        let t = TestDirs::new("two");
        let a = Lease::try_take(&t.dirs, 0x80000).unwrap().unwrap();
        assert_eq!(
            Lease::try_take(&t.dirs, 0x80000).unwrap().err(),
            Some(Holder::Cradle)
        );
        drop(a);
        assert!(!t.cradle(524_288).exists());
        assert!(!t.nspawn(524_288).exists());
        let again = Lease::try_take(&t.dirs, 0x80000).unwrap();
        assert!(again.is_ok());
    }

    #[test]
    fn a_range_nspawn_holds_is_not_taken_and_leaves_no_cradle_lock() {
        let t = TestDirs::new("nspawn-held");
        let nspawn = t.hold_as_nspawn(0x80000);
        assert_eq!(
            Lease::try_take(&t.dirs, 0x80000).unwrap().err(),
            Some(Holder::Nspawn)
        );
        assert!(!t.cradle(0x80000).exists(), "cradle's lock was given back");
        assert!(t.nspawn(0x80000).exists(), "nspawn's lock file is nspawn's");
        drop(nspawn);
        // nspawn gone (killed: its file left behind, unlocked): the range is free
        assert!(Lease::try_take(&t.dirs, 0x80000).unwrap().is_ok());
    }

    #[test]
    fn a_range_cradle_holds_is_held_for_nspawn_until_it_is_released() {
        let t = TestDirs::new("nspawn-sees");
        let lease = Lease::try_take(&t.dirs, 0x90000).unwrap().unwrap();
        assert!(t.nspawn_sees_held(0x90000));
        drop(lease);
        assert!(!t.nspawn_sees_held(0x90000));
        assert!(!t.nspawn(0x90000).exists());
    }

    #[test]
    fn a_range_an_earlier_launcher_flocked_is_held() {
        let t = TestDirs::new("flock");
        let file = File::create(t.cradle(0xA0000)).unwrap();
        let old = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
        assert_eq!(
            Lease::try_take(&t.dirs, 0xA0000).unwrap().err(),
            Some(Holder::Cradle)
        );
        drop(old);
    }

    #[test]
    fn without_systemd_only_cradle_s_lock_is_taken() {
        let mut t = TestDirs::new("no-systemd");
        t.dirs.nspawn = None;
        let lease = Lease::try_take(&t.dirs, 0x80000).unwrap().unwrap();
        assert!(lease.nspawn.is_none());
        assert_eq!(Lease::fds(&lease.handoff()).count(), 1);
    }

    #[test]
    fn a_lease_handed_over_is_kept_and_a_lock_of_another_file_is_refused() {
        use std::os::fd::{AsFd, IntoRawFd};
        let t = TestDirs::new("take-back");
        let lease = Lease::try_take(&t.dirs, 0x80000).unwrap().unwrap();
        // the same open files under other numbers, as the monitor passes them back
        let dup = |lock: &RangeLock| lock.file.as_fd().try_clone_to_owned().unwrap();
        let fds = LeaseFds {
            base: 0x80000,
            lock: dup(&lease.cradle).into_raw_fd(),
            nspawn_lock: Some(dup(lease.nspawn.as_ref().unwrap()).into_raw_fd()),
        };
        let kept = Lease::take_back_in(&t.dirs, &fds, &mut Taken::new()).unwrap();
        assert_eq!(kept.handoff().lock, fds.lock);
        assert_eq!(kept.handoff().nspawn_lock, fds.nspawn_lock);
        // another file at the same number: refused
        let other = File::open(t.nspawn(0x80000)).unwrap();
        let err = RangeLock::take_back(t.cradle(0x80000), other.into())
            .err()
            .unwrap();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        // a new open file of the right path holds neither lock: refused
        let stranger = File::open(t.cradle(0x80000)).unwrap();
        assert!(RangeLock::take_back(t.cradle(0x80000), stranger.into()).is_err());
        drop(kept);
        drop(lease);
    }
}
