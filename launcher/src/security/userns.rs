//! The guest's user namespace: which host ids it gets, and the namespaces made with it.
//!
//! Every guest gets container ids 0–65535 mapped to a host range of 65536 ids. The range is
//! picked from systemd's container range (0x00080000–0x6FFEFFFF, as `systemd-nspawn
//! --private-users=pick` does), starting at a slot derived from the container's name, so a
//! name gets the same range every time it starts while that range is free; or it is given
//! with `--userns BASE`. Picked or given, a range must be free on two counts:
//!
//! - it holds no id the host has given out: no user of `/etc/passwd`, group of
//!   `/etc/group`, or range of `/etc/subuid` or `/etc/subgid` (see `hostids`), or the
//!   guest's root could be a user of the host;
//! - no other running container holds it: cradle's, or systemd-nspawn's (see `locks`:
//!   `/run/cradle-userns/BASE`, in a directory nothing moves, and nspawn's own lock
//!   `/run/systemd/nspawn-uid/BASE`, both locked for as long as the launcher runs).

mod hostids;
mod locks;

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{OFlag, open};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{close, read};

use crate::error::{Error, Result};
use crate::process::child::Child;
use crate::sys::{self, SingleThreaded};

use hostids::HostIds;
pub use locks::Lease;
use locks::{LockDirs, sweep};

/// Ids in a guest's range: container ids 0 to 65535.
pub const RANGE: u32 = 0x1_0000;
/// The first and last base of systemd's container range (docs/UIDS-GIDS.md).
const FIRST_BASE: u32 = 0x0008_0000;
const LAST_BASE: u32 = 0x6FFE_0000;
/// How many ranges the pool holds.
const SLOTS: u32 = (LAST_BASE - FIRST_BASE) / RANGE + 1;

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

/// The range for container `name` under `mode`: `None` for `off`. `prefer` (the range a
/// root's owners were shifted to: see `container::ownership`) is tried first by `pick`,
/// so that a tree used by `run` under a new name each time is not shifted again.
pub fn acquire(name: &str, mode: UsernsMode, prefer: Option<u32>) -> Result<Option<Lease>> {
    if mode == UsernsMode::Off {
        return Ok(None);
    }
    let host = HostIds::read()?;
    let dirs = LockDirs::prepare()?;
    match mode {
        UsernsMode::Off => Ok(None),
        UsernsMode::Base(base) => take(&dirs, &host, base).map(Some),
        UsernsMode::Pick => pick(&dirs, &host, name, prefer).map(Some),
    }
}

/// Removes the range locks of launchers that were killed (`locks::sweep`). Not part of
/// [`acquire`]: a lock file nobody holds is taken as a free range's, so this only tidies,
/// and `guest::sweep` does it where it costs a start nothing.
pub fn sweep_stale_locks() {
    sweep(&LockDirs::host());
}

/// The first free range for `name`: `prefer` while that is a free range of the pool, else
/// its own slot while that is free, else the next free one. Slots that hold host ids are
/// passed over before any lock is tried.
fn pick(dirs: &LockDirs, host: &HostIds, name: &str, prefer: Option<u32>) -> Result<Lease> {
    let prefer =
        prefer.filter(|&base| (FIRST_BASE..=LAST_BASE).contains(&base) && base % RANGE == 0);
    let bases = prefer.into_iter().chain(candidates(name));
    for base in bases.filter(|&base| host.conflict(base).is_none()) {
        if let Ok(lease) = Lease::try_take(dirs, base)? {
            return Ok(lease);
        }
    }
    Err(Error::host(
        "pick a user namespace range",
        io::Error::other("no range of the pool is free of running containers and host users"),
    ))
}

/// The range at `base` (`--userns BASE`), checked as a picked one is, with one failure
/// each:
///
/// - it holds ids the host has given out (a user of `/etc/passwd`, a group of
///   `/etc/group`, a range of `/etc/subuid` or `/etc/subgid`): a usage error, exit 2,
///   naming the first such id. Waiting would not free it, and the guest's root could be
///   that user: another BASE is needed.
/// - another running container holds it, cradle's or systemd-nspawn's:
///   [`Error::RangeTaken`], exit 11, saying which. It is free again once that container
///   stops.
fn take(dirs: &LockDirs, host: &HostIds, base: u32) -> Result<Lease> {
    if let Some(claim) = host.conflict(base) {
        return Err(Error::Usage(format!(
            "--userns {base}: the range {base}-{} includes {} (use another base, or --userns pick)",
            base + (RANGE - 1),
            claim.what
        )));
    }
    Lease::try_take(dirs, base)?.map_err(|by| Error::RangeTaken {
        base,
        last: base + (RANGE - 1),
        by: by.describe(),
    })
}

/// The namespaces a guest with a user namespace gets besides its mount and PID ones, each
/// owned by the user namespace (so the guest's root can manage its network, hostname and
/// IPC), made before the container's first process so that it can set up its mounts as the
/// host's root, in a mount namespace the guest's root cannot undo, and only then enter them.
pub struct Namespaces {
    /// The host uid (and gid) that container id 0 maps to.
    pub base: u32,
    pub user: OwnedFd,
    /// None for a guest on the host's network (`--net host`).
    pub net: Option<OwnedFd>,
    pub uts: OwnedFd,
    pub ipc: OwnedFd,
}

impl Namespaces {
    /// Begins to make them, with container ids 0–65535 mapped to `base`: the user
    /// namespace at once, the others in a process of their own, alongside whatever the
    /// caller does until [`PendingNamespaces::finish`] (a network namespace takes the
    /// kernel half a millisecond to make).
    pub fn begin(threads: &SingleThreaded, base: u32, net: bool) -> Result<PendingNamespaces> {
        let map = format!("0 {base} {RANGE}\n");
        let mut kinds = vec![
            (CloneFlags::CLONE_NEWUTS, "uts"),
            (CloneFlags::CLONE_NEWIPC, "ipc"),
        ];
        if net {
            kinds.push((CloneFlags::CLONE_NEWNET, "net"));
        }
        Ok(PendingNamespaces {
            base,
            net,
            pending: begin_owned(threads, &map, &map, &kinds)?,
        })
    }

    /// [`Namespaces::begin`] for a guest whose root is host uid `owner`, when it has a user
    /// namespace (`None`: none to make).
    pub fn begin_for(
        threads: &SingleThreaded,
        owner: Option<u32>,
        net: bool,
    ) -> Result<Option<PendingNamespaces>> {
        owner
            .map(|base| Self::begin(threads, base, net))
            .transpose()
    }

    pub fn user(&self) -> std::os::fd::BorrowedFd<'_> {
        self.user.as_fd()
    }
}

/// [`Namespaces`] being made.
pub struct PendingNamespaces {
    base: u32,
    net: bool,
    pending: PendingOwned,
}

impl PendingNamespaces {
    /// The user namespace, made already.
    pub fn user(&self) -> BorrowedFd<'_> {
        self.pending.user.as_fd()
    }

    /// Waits until they are made.
    pub fn finish(self) -> Result<Namespaces> {
        let (user, mut owned) = self.pending.finish()?;
        let net = self.net.then(|| owned.pop()).flatten();
        let ipc = owned.pop().expect("made above");
        let uts = owned.pop().expect("made above");
        Ok(Namespaces {
            base: self.base,
            user,
            net,
            uts,
            ipc,
        })
    }
}

/// A new user namespace with the id maps `uid_map` and `gid_map` (the kernel's format,
/// "INSIDE OUTSIDE COUNT" lines), and new namespaces of `kinds` (flag, name under
/// /proc/PID/ns) owned by it (see [`begin_owned`]). The user namespace, and the others in
/// `kinds`' order.
pub fn create_owned(
    threads: &SingleThreaded,
    uid_map: &str,
    gid_map: &str,
    kinds: &[(CloneFlags, &str)],
) -> Result<(OwnedFd, Vec<OwnedFd>)> {
    begin_owned(threads, uid_map, gid_map, kinds)?.finish()
}

const CTX: &str = "create the guest's user namespace (or run it without one: --userns off)";

/// [`create_owned`] begun: a process (the holder) is cloned into a new user namespace,
/// whose id maps we write, and then makes the namespaces of `kinds` itself (unshare(2), in
/// its own time, while the caller goes on) and waits, blocked on a pipe, until
/// [`PendingOwned::finish`] opened them; then it exits, and the namespaces live on through
/// the descriptors. Dropped unfinished, the holder is killed and reaped.
pub fn begin_owned(
    threads: &SingleThreaded,
    uid_map: &str,
    gid_map: &str,
    kinds: &[(CloneFlags, &str)],
) -> Result<PendingOwned> {
    // `go`: a byte once the maps are written, then end of file to exit; `made`: the
    // holder's unshare(2) result, its errno as four bytes (0 when made)
    let (go_read, go) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::setup(CTX, e))?;
    let (made, made_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::setup(CTX, e))?;
    let others = kinds
        .iter()
        .fold(CloneFlags::empty(), |all, (flag, _)| all.union(*flag));
    let holder = Child::fork_into(threads, CloneFlags::CLONE_NEWUSER, None, |_| {
        // end of file on `go_read` once the launcher closed its end, or died
        let _ = close(go.as_raw_fd());
        let _ = close(made.as_raw_fd());
        if !matches!(read(&go_read, &mut [0u8]), Ok(1)) {
            sys::exit_now(0)
        }
        let errno = match nix::sched::unshare(others) {
            Ok(()) => 0,
            Err(e) => e as i32,
        };
        let _ = nix::unistd::write(&made_write, &errno.to_ne_bytes());
        let _ = read(&go_read, &mut [0u8]);
        sys::exit_now(0)
    })
    .map_err(|e| Error::setup(CTX, e))?;
    drop((go_read, made_write));
    let proc_dir = PathBuf::from(format!("/proc/{}", holder.pid()));
    for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        fs::write(proc_dir.join(file), map)
            .map_err(|e| Error::host(format!("write {file} of the guest's user namespace"), e))?;
    }
    let user = open_ns(&proc_dir, "user")?;
    nix::unistd::write(&go, &[1]).map_err(|e| Error::setup(CTX, e))?;
    Ok(PendingOwned {
        holder,
        proc_dir,
        kinds: kinds.iter().map(|&(_, name)| name.to_owned()).collect(),
        user,
        go,
        made,
    })
}

/// The namespaces [`begin_owned`] is making.
pub struct PendingOwned {
    holder: Child,
    proc_dir: PathBuf,
    kinds: Vec<String>,
    user: OwnedFd,
    go: OwnedFd,
    made: OwnedFd,
}

impl PendingOwned {
    /// Waits until the holder made the others, opens them, and lets it exit.
    pub fn finish(self) -> Result<(OwnedFd, Vec<OwnedFd>)> {
        let mut errno = [0u8; 4];
        match nix::unistd::read(&self.made, &mut errno) {
            Ok(4) => {}
            Ok(_) => return Err(Error::setup(CTX, nix::errno::Errno::EPIPE)),
            Err(e) => return Err(Error::setup(CTX, e)),
        }
        let errno = i32::from_ne_bytes(errno);
        if errno != 0 {
            return Err(Error::setup(CTX, nix::errno::Errno::from_raw(errno)));
        }
        let owned = self
            .kinds
            .iter()
            .map(|name| open_ns(&self.proc_dir, name))
            .collect::<Result<Vec<_>>>()?;
        // the holder reads end of file and exits; reap it now
        let PendingOwned {
            mut holder,
            user,
            go,
            ..
        } = self;
        drop(go);
        holder.wait();
        Ok((user, owned))
    }
}

fn open_ns(proc_dir: &std::path::Path, kind: &str) -> Result<OwnedFd> {
    open(
        &proc_dir.join("ns").join(kind),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::setup(format!("open the guest's {kind} namespace"), e))
}

#[cfg(test)]
mod tests {
    use super::locks::tests::TestDirs;
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

    /// A host with a user in `name`'s own slot and a group in its next one.
    fn host_with_ids_in_the_first_two_slots_of(name: &str) -> (HostIds, [u32; 3]) {
        let slots: Vec<u32> = candidates(name).take(3).collect();
        let mut host = HostIds::default();
        host.add_users(
            "/etc/passwd",
            format!("bob:x:{}:100\n", slots[0] + 77).as_bytes(),
        );
        host.add_groups(
            "/etc/group",
            format!("staff:x:{}:\n", slots[1] + 65535).as_bytes(),
        );
        (host, [slots[0], slots[1], slots[2]])
    }

    #[test]
    fn a_range_holding_a_host_user_or_group_is_never_picked() {
        let t = TestDirs::new("pick-users");
        let (host, slots) = host_with_ids_in_the_first_two_slots_of("web1");
        let lease = pick(&t.dirs, &host, "web1", None).unwrap();
        assert_eq!(lease.base, slots[2]);
        // and, once they are gone, the name gets its own slot back
        drop(lease);
        let lease = pick(&t.dirs, &HostIds::default(), "web1", None).unwrap();
        assert_eq!(lease.base, slots[0]);
        drop(lease);
        // a root's recorded range first, while it is free of host ids
        let lease = pick(&t.dirs, &HostIds::default(), "web1", Some(slots[2])).unwrap();
        assert_eq!(lease.base, slots[2]);
        drop(lease);
        let lease = pick(&t.dirs, &host, "web1", Some(slots[0])).unwrap();
        assert_eq!(lease.base, slots[2]);
        drop(lease);
        // not a base of the pool: ignored
        let lease = pick(&t.dirs, &HostIds::default(), "web1", Some(12345)).unwrap();
        assert_eq!(lease.base, slots[0]);
    }

    #[test]
    fn a_range_systemd_nspawn_holds_is_never_picked() {
        let t = TestDirs::new("pick-nspawn");
        let slots: Vec<u32> = candidates("db").take(2).collect();
        let nspawn = t.hold_as_nspawn(slots[0]);
        let lease = pick(&t.dirs, &HostIds::default(), "db", None).unwrap();
        assert_eq!(lease.base, slots[1]);
        assert!(
            t.nspawn_sees_held(slots[1]),
            "nspawn must skip what we picked"
        );
        drop(nspawn);
    }

    #[test]
    fn a_given_base_that_holds_host_ids_is_a_usage_error_naming_them() {
        let t = TestDirs::new("take-host");
        let (host, slots) = host_with_ids_in_the_first_two_slots_of("web1");
        let mut subuid = HostIds::default();
        subuid.add_subordinate("/etc/subuid", b"alice:100000:65536\n");
        for (host, base, named) in [
            (
                &host,
                slots[0],
                format!("uid {} (bob) of /etc/passwd", slots[0] + 77),
            ),
            (
                &host,
                slots[1],
                format!("gid {} (staff) of /etc/group", slots[1] + 65535),
            ),
            (
                &subuid,
                65536,
                "alice's ids 100000-165535 in /etc/subuid".to_owned(),
            ),
        ] {
            let err = take(&t.dirs, host, base).err().unwrap();
            assert_eq!(err.code() as u8, 2, "{err}");
            let text = err.to_string();
            assert!(
                text.contains(&named) && text.contains(&base.to_string()),
                "{text}"
            );
            assert!(!text.contains('\n'), "{text}");
            assert!(
                !t.cradle(base).exists(),
                "nothing is locked for a refused base"
            );
        }
    }

    #[test]
    fn a_given_base_another_container_holds_is_exit_11_saying_whose() {
        let t = TestDirs::new("take-held");
        let host = HostIds::default();
        let first = take(&t.dirs, &host, 0x0010_0000).unwrap();
        let err = take(&t.dirs, &host, 0x0010_0000).err().unwrap();
        assert_eq!(err.code() as u8, 11, "{err}");
        assert!(
            err.to_string().contains("another running container"),
            "{err}"
        );
        drop(first);
        let nspawn = t.hold_as_nspawn(0x0010_0000);
        let err = take(&t.dirs, &host, 0x0010_0000).err().unwrap();
        assert_eq!(err.code() as u8, 11, "{err}");
        assert!(err.to_string().contains("systemd-nspawn"), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
        drop(nspawn);
        assert!(take(&t.dirs, &host, 0x0010_0000).is_ok());
    }

    /// Set in the child that [`the_lock_directory_is_fixed_whatever_the_environment_says`]
    /// runs: a test cannot set its own environment safely.
    const MOVED: &str = "CRADLE_USERNS_DIR";

    #[test]
    fn the_lock_directory_is_fixed_whatever_the_environment_says() {
        if std::env::var_os(MOVED).is_none() {
            // this test's name, as the harness knows it (the module path without the crate)
            let module = module_path!().split_once("::").map_or("", |(_, m)| m);
            let test =
                format!("{module}::the_lock_directory_is_fixed_whatever_the_environment_says");
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([test.as_str(), "--exact", "--test-threads=1"])
                .env(MOVED, std::env::temp_dir().join("cradle-userns-elsewhere"))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{stdout}"
            );
            return;
        }
        let dirs = LockDirs::host();
        assert_eq!(dirs.cradle, PathBuf::from("/run/cradle-userns"));
        assert_eq!(dirs.nspawn, Some(PathBuf::from("/run/systemd/nspawn-uid")));
    }
}
