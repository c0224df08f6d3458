//! The guest's user namespace: which host ids it gets, and the namespaces made with it.
//!
//! Every guest gets container ids 0–65535 mapped to a host range of 65536 ids that no other
//! running container holds. The range is picked from systemd's container range
//! (0x00080000–0x6FFEFFFF, as `systemd-nspawn --private-users=pick` does), starting at a
//! slot derived from the container's name, so a name gets the same range every time it
//! starts while that range is free; or it is given with `--userns BASE`.
//!
//! A range is held by a lock: `/run/cradle-userns/BASE` (`$CRADLE_USERNS_DIR` moves it),
//! flock'd for as long as the launcher runs. The directory is the same whatever
//! `--state-dir` says, so two starts never share a range; a launcher that dies releases
//! its lock with it, and the next one to take that range removes the file when it is done.
//! Ranges listed in `/etc/subuid` or `/etc/subgid` (rootless users of the host) are never
//! picked.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, open};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{close, read};

use crate::child::Child;
use crate::error::{Error, Result};
use crate::state;
use crate::sys::{self, SingleThreaded};

/// Ids in a guest's range: container ids 0 to 65535.
pub const RANGE: u32 = 0x1_0000;
/// The first and last base of systemd's container range (docs/UIDS-GIDS.md).
const FIRST_BASE: u32 = 0x0008_0000;
const LAST_BASE: u32 = 0x6FFE_0000;
/// How many ranges the pool holds.
const SLOTS: u32 = (LAST_BASE - FIRST_BASE) / RANGE + 1;

/// Where range locks live unless `$CRADLE_USERNS_DIR` says otherwise.
const DEFAULT_LOCK_DIR: &str = "/run/cradle-userns";

/// What `--userns` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsernsMode {
    /// A free range, picked from the name.
    Pick,
    /// No user namespace: the guest's root is the host's root.
    Off,
    /// This range (a multiple of 65536).
    Base(u32),
}

impl argh::FromArgValue for UsernsMode {
    fn from_arg_value(value: &str) -> std::result::Result<Self, String> {
        match value {
            "pick" | "auto" => Ok(UsernsMode::Pick),
            "off" | "no" => Ok(UsernsMode::Off),
            number => {
                let base: u32 = number.parse().map_err(|_| {
                    format!("bad --userns {number:?}: use pick, off, or a host uid that is a multiple of 65536")
                })?;
                check_base(base).map(UsernsMode::Base)
            }
        }
    }
}

/// A base the kernel and we accept: not 0 (that is the host's own root: say `off`), a
/// multiple of 65536 (so two ranges are either the same or disjoint, and one lock per
/// base is enough), and the whole range below 2^32-1 (the invalid id).
fn check_base(base: u32) -> std::result::Result<u32, String> {
    if base == 0 {
        return Err("--userns 0 would map the guest's root to the host's: use --userns off".into());
    }
    if base % RANGE != 0 {
        return Err(format!(
            "bad --userns {base}: the base must be a multiple of 65536 (say {})",
            base / RANGE * RANGE + RANGE
        ));
    }
    if base > u32::MAX - RANGE {
        return Err(format!(
            "bad --userns {base}: the range must end below 4294967295"
        ));
    }
    Ok(base)
}

/// FNV-1a: a stable hash of the name (std's hasher may change between Rust releases).
fn name_hash(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ byte as u32).wrapping_mul(0x0100_0193)
    })
}

/// The bases to try for `name`, in order: its own slot first, then the following ones.
fn candidates(name: &str) -> impl Iterator<Item = u32> {
    let first = name_hash(name) % SLOTS;
    (0..SLOTS).map(move |i| FIRST_BASE + (first + i) % SLOTS * RANGE)
}

/// The ranges `/etc/subuid` or `/etc/subgid` give to users of the host: `NAME:START:COUNT`.
fn subordinate_ranges(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':').skip(1);
            let start: u64 = fields.next()?.parse().ok()?;
            let count: u64 = fields.next()?.parse().ok()?;
            Some((start, start + count))
        })
        .collect()
}

fn overlaps(base: u32, taken: &[(u64, u64)]) -> bool {
    let (start, end) = (base as u64, base as u64 + RANGE as u64);
    taken.iter().any(|&(s, e)| start < e && s < end)
}

/// A range this launcher holds. Dropping it releases the range.
pub struct Lease {
    pub base: u32,
    path: PathBuf,
    _lock: Flock<File>,
}

impl Lease {
    /// The range at `base` a launcher that exec'd itself holds (see `handoff`): `lock` is
    /// its lock file at `path`, locked (taking the lock again on the same open file keeps
    /// it).
    pub fn take_back(base: u32, path: PathBuf, lock: OwnedFd) -> Result<Self> {
        let lock = Flock::lock(File::from(lock), FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| Error::host(format!("user namespace lock {}", path.display()), e))?;
        Ok(Lease {
            base,
            path,
            _lock: lock,
        })
    }

    /// Its lock file, open, and path, for a handoff.
    pub fn handoff(&self) -> (u32, PathBuf, std::os::fd::RawFd) {
        (
            self.base,
            self.path.clone(),
            std::os::fd::AsRawFd::as_raw_fd(&*self._lock),
        )
    }

    /// Takes the range at `base`; `None` when another launcher holds it.
    fn try_take(dir: &Path, base: u32) -> Result<Option<Lease>> {
        let path = dir.join(base.to_string());
        loop {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&path)
                .map_err(|e| Error::host(format!("user namespace lock {}", path.display()), e))?;
            let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, e)) => {
                    return Err(Error::host(
                        format!("user namespace lock {}", path.display()),
                        e,
                    ));
                }
            };
            // its holder may have removed the file between our open and our flock
            if state::is_at(&lock, &path) {
                return Ok(Some(Lease {
                    base,
                    path,
                    _lock: lock,
                }));
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // removed while still locked: a launcher that opens it now finds another inode
        let _ = fs::remove_file(&self.path);
    }
}

/// Removes the locks of launchers that were killed (a lock file nobody holds): taking one
/// and dropping it removes it.
fn sweep(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if let Some(base) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            if let Ok(Some(stale)) = Lease::try_take(dir, base) {
                drop(stale);
            }
        }
    }
}

fn lock_dir() -> PathBuf {
    std::env::var_os("CRADLE_USERNS_DIR")
        .map_or_else(|| PathBuf::from(DEFAULT_LOCK_DIR), PathBuf::from)
}

/// The range for container `name` under `mode`: `None` for `off`.
pub fn acquire(name: &str, mode: UsernsMode) -> Result<Option<Lease>> {
    let dir = lock_dir();
    if mode == UsernsMode::Off {
        return Ok(None);
    }
    fs::create_dir_all(&dir)
        .map_err(|e| Error::host(format!("user namespace locks {}", dir.display()), e))?;
    sweep(&dir);
    match mode {
        UsernsMode::Off => Ok(None),
        UsernsMode::Base(base) => match Lease::try_take(&dir, base)? {
            Some(lease) => Ok(Some(lease)),
            None => Err(Error::RangeTaken(base)),
        },
        UsernsMode::Pick => {
            let mut taken = Vec::new();
            for file in ["/etc/subuid", "/etc/subgid"] {
                match fs::read_to_string(file) {
                    Ok(text) => taken.extend(subordinate_ranges(&text)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::host(format!("read {file}"), e)),
                }
            }
            for base in candidates(name).filter(|b| !overlaps(*b, &taken)) {
                if let Some(lease) = Lease::try_take(&dir, base)? {
                    return Ok(Some(lease));
                }
            }
            Err(Error::host(
                "pick a user namespace range",
                io::Error::other("every range of the pool is held"),
            ))
        }
    }
}

/// The namespaces a guest with a user namespace gets besides its mount and PID ones, each
/// owned by the user namespace (so the guest's root can manage its network, hostname and
/// IPC), made before the container's first process so that it can set up its mounts as the
/// host's root, in a mount namespace the guest's root cannot undo, and only then enter them.
pub struct Namespaces {
    /// The host uid (and gid) that container id 0 maps to.
    pub base: u32,
    pub user: OwnedFd,
    pub net: OwnedFd,
    pub uts: OwnedFd,
    pub ipc: OwnedFd,
}

/// The namespaces [`Namespaces`] makes together.
const CREATED: CloneFlags = CloneFlags::CLONE_NEWUSER
    .union(CloneFlags::CLONE_NEWNET)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC);

impl Namespaces {
    /// Creates them with container ids 0–65535 mapped to `base`: a process is cloned into
    /// new namespaces and waits (blocked on a pipe) while we write its id maps and open
    /// its namespaces; then it exits, and the namespaces live on through the descriptors.
    pub fn create(threads: &SingleThreaded, base: u32) -> Result<Self> {
        let ctx = "create the guest's user namespace (or run it without one: --userns off)";
        let (wait_end, release_end) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::setup(ctx, e))?;
        let mut holder = Child::fork_into(threads, CREATED, None, |_| {
            // end of file once the launcher closed its end, or died
            let _ = close(release_end.as_raw_fd());
            let _ = read(&wait_end, &mut [0u8]);
            sys::exit_now(0)
        })
        .map_err(|e| Error::setup(ctx, e))?;
        drop(wait_end);
        let proc_dir = PathBuf::from(format!("/proc/{}", holder.pid()));
        let map = format!("0 {base} {RANGE}\n");
        for file in ["uid_map", "gid_map"] {
            fs::write(proc_dir.join(file), &map).map_err(|e| {
                Error::host(format!("write {file} of the guest's user namespace"), e)
            })?;
        }
        let open_ns = |kind: &str| {
            open(
                &proc_dir.join("ns").join(kind),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::setup(format!("open the guest's {kind} namespace"), e))
        };
        let namespaces = Namespaces {
            base,
            user: open_ns("user")?,
            net: open_ns("net")?,
            uts: open_ns("uts")?,
            ipc: open_ns("ipc")?,
        };
        // the holder reads end of file and exits; reap it now
        drop(release_end);
        holder.wait();
        Ok(namespaces)
    }

    pub fn user(&self) -> std::os::fd::BorrowedFd<'_> {
        self.user.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argh::FromArgValue;

    #[test]
    fn a_name_always_starts_at_the_same_slot_inside_the_pool() {
        let first: Vec<u32> = candidates("web1").take(3).collect();
        assert_eq!(first, candidates("web1").take(3).collect::<Vec<_>>());
        assert_ne!(first[0], candidates("web2").next().unwrap());
        for base in candidates("x").take(SLOTS as usize + 1) {
            assert!((FIRST_BASE..=LAST_BASE).contains(&base), "{base:#x}");
            assert_eq!(base % RANGE, 0);
        }
        // every slot once, then it wraps
        let all: std::collections::BTreeSet<u32> = candidates("y").collect();
        assert_eq!(all.len(), SLOTS as usize);
    }

    #[test]
    fn userns_values() {
        assert_eq!(UsernsMode::from_arg_value("pick"), Ok(UsernsMode::Pick));
        assert_eq!(UsernsMode::from_arg_value("off"), Ok(UsernsMode::Off));
        assert_eq!(
            UsernsMode::from_arg_value("524288"),
            Ok(UsernsMode::Base(524288))
        );
        for bad in ["0", "1000", "-1", "lots", "4294901760"] {
            let err = UsernsMode::from_arg_value(bad).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(
            UsernsMode::from_arg_value("1000")
                .unwrap_err()
                .contains("131072")
                || UsernsMode::from_arg_value("1000")
                    .unwrap_err()
                    .contains("65536")
        );
    }

    #[test]
    fn subordinate_ranges_are_avoided() {
        let taken = subordinate_ranges("alice:100000:65536\nbob:600000:10\n# junk\n");
        assert_eq!(taken, [(100_000, 165_536), (600_000, 600_010)]);
        assert!(overlaps(131_072, &taken));
        assert!(overlaps(589_824, &taken));
        assert!(!overlaps(655_360, &taken));
    }

    #[test]
    fn the_lock_of_a_killed_launcher_is_swept_and_a_held_one_is_not() {
        let dir = std::env::temp_dir().join(format!("cradle-userns-sweep-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("655360"), "").unwrap();
        let held = Lease::try_take(&dir, 0x80000).unwrap().unwrap();
        sweep(&dir);
        assert!(!dir.join("655360").exists());
        assert!(dir.join("524288").exists());
        drop(held);
        fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn two_leases_never_share_a_range_and_a_released_one_is_free_again() {
        let dir = std::env::temp_dir().join(format!("cradle-userns-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let a = Lease::try_take(&dir, 0x80000).unwrap().unwrap();
        assert!(Lease::try_take(&dir, 0x80000).unwrap().is_none());
        drop(a);
        assert!(!dir.join("524288").exists());
        let again = Lease::try_take(&dir, 0x80000).unwrap();
        assert!(again.is_some());
        drop(again);
        fs::remove_dir(&dir).unwrap();
    }
}
