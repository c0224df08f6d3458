//! Who owns the guest's files on disk (`--ownership`), with a user namespace:
//!
//! - `map`: nothing is chowned; every boot's copy of the root's mounts is id-mapped
//!   through the guest's user namespace (`rootfs::RootDir::clone_tree`), so that files
//!   stored as uid 0 are its root's. The kernel and the file system must allow it (Linux
//!   5.12; tmpfs from 6.3; never ramfs, nor the initramfs).
//! - `chown`: the tree's owners are shifted once into the guest's range (host id = base +
//!   guest id), as LXC keeps an unprivileged container's root and nspawn's
//!   `--private-users-ownership=chown` does; the guest then uses it as it is.
//! - `auto` (the default): `map` where the kernel and the file system allow it (tried
//!   with a user namespace of the guest's range), `chown` otherwise, said once on standard
//!   error; a tree already shifted to the guest's range stays so.
//!
//! **The record.** Where a tree's owners are is written on its root directory, in the
//! extended attribute `trusted.cradle.shift`: `BASE` once shifted to the range at BASE,
//! `FROM>TO` while a shift runs (with ` keep=INO,MODE,CAPS` while a file's set-user-ID bit
//! or capability, which chown clears, is being restored). No record means the ids are
//! stored as the guest sees them (base 0), which `map` and `--userns off` need: they shift
//! a recorded tree back first. A `trusted.` attribute can be read and written only with
//! CAP_SYS_ADMIN in the host's user namespace, so the guest's root can neither forge nor
//! remove it; it goes with the tree (a copy made with `cp -a` as root carries it and the
//! owners it describes), and it needs no key: a record elsewhere keyed by device and inode
//! goes stale when a tree is copied or its file system mounted again. On a file system
//! without extended attributes (ramfs, as the initramfs is on some boards), the record is
//! the file `/run/cradle-shift/DEV:INO` instead: such a file system lasts no longer than
//! `/run` does.
//!
//! **Interrupted shifts.** The record says `FROM>TO`, durably (syncfs), before the first
//! file changes; every id is shifted on its own, and one already in TO's range is left
//! ([`Shift::id`]), so a walk that starts again after a SIGKILL or a power cut finishes
//! the job without shifting anything twice. Only then, after another syncfs, does the
//! record say `TO`. A start that finds `FROM>TO` finishes that shift first, whatever it
//! was asked for, and shifts from TO after that if it needs another range: never from a
//! guess.
//!
//! **A tree in use.** A guest holds a shared flock on its root directory's open file
//! description (`RootDir`'s, which its launcher keeps across reboots and hands its
//! monitor) for its whole life; a shift takes an exclusive one, without waiting. So no
//! tree is shifted under a guest that runs on it, nor by two launchers at once: the one
//! that would is refused (exit 3).

mod attrs;
mod walk;

use std::ffi::CStr;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fstat};

use crate::container::rootfs::{self, RootDir};
use crate::container::{mountattr, mountinfo};
use crate::error::{Error, Result};
use crate::security::userns::{self, Namespaces, PendingNamespaces, RANGE};
use crate::sys::{self, SingleThreaded};

/// What `--ownership` asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ownership {
    #[default]
    Auto,
    Map,
    Chown,
}

impl Ownership {
    pub fn word(self) -> &'static str {
        match self {
            Ownership::Auto => "auto",
            Ownership::Map => "map",
            Ownership::Chown => "chown",
        }
    }
}

impl argh::FromArgValue for Ownership {
    fn from_arg_value(value: &str) -> std::result::Result<Self, String> {
        match value {
            "auto" => Ok(Ownership::Auto),
            "map" => Ok(Ownership::Map),
            "chown" => Ok(Ownership::Chown),
            other => Err(format!("bad --ownership {other:?}: use auto, map or chown")),
        }
    }
}

/// The guest id the kernel shows for an id its user namespace does not map (overflowuid):
/// where a shift puts an id that is in neither range.
pub const OVERFLOW: u32 = 65534;

/// A shift of a tree's ids from the range at `from` (0: as the guest sees them) to the
/// range at `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shift {
    pub from: u32,
    pub to: u32,
}

fn in_range(id: u32, base: u32) -> bool {
    id.checked_sub(base).is_some_and(|offset| offset < RANGE)
}

impl Shift {
    /// Where the id `id` goes: an id in the target range stays (it is shifted already: a
    /// resumed walk meets such ids), one in the source range moves by the difference, and
    /// any other (no guest could have made it: the host put it there) becomes the guest's
    /// overflow id, as the kernel would show it through an id-mapped mount, and nobody's
    /// of the host's.
    pub fn id(self, id: u32) -> u32 {
        if in_range(id, self.to) {
            id
        } else if in_range(id, self.from) {
            id - self.from + self.to
        } else {
            self.to + OVERFLOW
        }
    }
}

/// A file whose set-user-ID bit or capability chown is clearing: its inode, its mode
/// before (the bits chown clears, to set again) and its shifted capability (empty: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keep {
    pub ino: u64,
    pub mode: u32,
    pub caps: Vec<u8>,
}

/// Where a tree's owners are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Shifted to the range at this base.
    At(u32),
    /// A shift from one range to another is under way (or was interrupted).
    Shifting {
        from: u32,
        to: u32,
        keep: Option<Keep>,
    },
}

impl Record {
    fn to_text(&self) -> String {
        match self {
            Record::At(base) => base.to_string(),
            Record::Shifting { from, to, keep } => {
                let mut text = format!("{from}>{to}");
                if let Some(k) = keep {
                    let caps: String = k.caps.iter().map(|b| format!("{b:02x}")).collect();
                    text.push_str(&format!(" keep={},{:o},{caps}", k.ino, k.mode));
                }
                text
            }
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let Some((from, rest)) = text.split_once('>') else {
            return text.parse().ok().map(Record::At);
        };
        let (to, keep) = match rest.split_once(" keep=") {
            Some((to, keep)) => (to, Some(keep)),
            None => (rest, None),
        };
        let keep = match keep {
            None => None,
            Some(keep) => {
                let mut parts = keep.split(',');
                let ino = parts.next()?.parse().ok()?;
                let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
                let hex = parts.next()?;
                if parts.next().is_some() || hex.len() % 2 != 0 {
                    return None;
                }
                let caps = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()?;
                Some(Keep { ino, mode, caps })
            }
        };
        Some(Record::Shifting {
            from: from.parse().ok()?,
            to: to.parse().ok()?,
            keep,
        })
    }

    /// The range the tree is at, or is being shifted to.
    fn target(&self) -> u32 {
        match self {
            Record::At(base) | Record::Shifting { to: base, .. } => *base,
        }
    }
}

/// The extended attribute that holds the record.
const RECORD_XATTR: &CStr = c"trusted.cradle.shift";
/// Where the records of trees on file systems without extended attributes are.
const RECORD_DIR: &str = "/run/cradle-shift";

/// Where a tree's record is kept.
enum Store {
    Xattr,
    /// This file (see the module's comment).
    File(PathBuf),
}

impl Store {
    /// The store for the tree whose root directory is open (read-only) on `dir`.
    fn for_root(dir: BorrowedFd) -> Result<Self> {
        match sys::fget_xattr(dir, RECORD_XATTR, &mut [0u8; 256]) {
            Ok(_) | Err(Errno::ERANGE) => Ok(Store::Xattr),
            Err(Errno::EOPNOTSUPP) => {
                let st = fstat(dir).map_err(|e| Error::setup("stat the root directory", e))?;
                Ok(Store::File(Path::new(RECORD_DIR).join({
                    let (dev, ino) = walk::file_id(&st);
                    format!("{dev}:{ino}")
                })))
            }
            Err(e) => Err(Error::setup("read the root directory's shift record", e)),
        }
    }

    fn read(&self, dir: BorrowedFd, root: &Path) -> Result<Option<Record>> {
        let text = match self {
            Store::Xattr => {
                let mut buf = [0u8; 256];
                match sys::fget_xattr(dir, RECORD_XATTR, &mut buf) {
                    Ok(Some(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                    Ok(None) => return Ok(None),
                    Err(e) => {
                        return Err(Error::setup("read the root directory's shift record", e));
                    }
                }
            }
            Store::File(path) => match fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::host(format!("read {}", path.display()), e)),
            },
        };
        Record::parse(text.trim())
            .map(Some)
            .ok_or_else(|| Error::BadRoot {
                root: root.to_owned(),
                why: format!("its shift record {:?} cannot be read", text.trim()),
            })
    }

    /// Writes `record`; with `durable`, on disk before it returns.
    fn write(&self, dir: BorrowedFd, record: &Record, durable: bool) -> Result<()> {
        let text = record.to_text();
        let fail = |e| Error::setup("write the root directory's shift record", e);
        match self {
            Store::Xattr => {
                sys::set_xattr(dir, RECORD_XATTR, text.as_bytes()).map_err(fail)?;
                if durable {
                    nix::unistd::fsync(dir).map_err(fail)?;
                }
            }
            Store::File(path) => {
                let host = |e| Error::host(format!("write {}", path.display()), e);
                fs::DirBuilder::new()
                    .mode(0o700)
                    .recursive(true)
                    .create(RECORD_DIR)
                    .map_err(host)?;
                let tmp = path.with_extension("tmp");
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(host)?;
                file.write_all(text.as_bytes()).map_err(host)?;
                if durable {
                    file.sync_all().map_err(host)?;
                }
                fs::rename(&tmp, path).map_err(host)?;
            }
        }
        Ok(())
    }

    /// Removes the record: the tree's ids are as the guest sees them.
    fn clear(&self, dir: BorrowedFd) -> Result<()> {
        match self {
            Store::Xattr => sys::fremove_xattr(dir, RECORD_XATTR)
                .map_err(|e| Error::setup("remove the root directory's shift record", e)),
            Store::File(path) => match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::host(format!("remove {}", path.display()), e))
                }
                _ => Ok(()),
            },
        }
    }
}

/// Notes, in the record, the file whose mode and capability a walk is restoring.
pub trait Journal {
    fn note(&mut self, keep: Option<&Keep>) -> Result<()>;
}

struct Recorder<'a> {
    store: &'a Store,
    dir: BorrowedFd<'a>,
    shift: Shift,
}

impl Journal for Recorder<'_> {
    fn note(&mut self, keep: Option<&Keep>) -> Result<()> {
        let record = Record::Shifting {
            from: self.shift.from,
            to: self.shift.to,
            keep: keep.cloned(),
        };
        // the note must be on disk before the chown it covers; its removal need not
        self.store.write(self.dir, &record, keep.is_some())
    }
}

/// The range the owners of `root`'s tree are shifted (or being shifted) to, if they are:
/// for `userns::acquire` to try first. `None` for `map`, which wants no shifted tree.
fn recorded_base(root: &RootDir, mode: Ownership) -> Result<Option<u32>> {
    if mode == Ownership::Map {
        return Ok(None);
    }
    let dir = open_dir(root)?;
    let store = Store::for_root(dir.as_fd())?;
    Ok(store.read(dir.as_fd(), root.path())?.map(|r| r.target()))
}

/// The root directory, open read-only (its descriptor is `O_PATH`).
fn open_dir(root: &RootDir) -> Result<OwnedFd> {
    openat(
        root.fd(),
        c".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::setup(format!("open {}", root.path().display()), e))
}

/// What the guest's root tree needs for a boot: whether its mounts are id-mapped.
pub struct Prepared {
    pub id_map: bool,
    /// The root's tree id-mapped through the first container's user namespace, when
    /// `auto` made one to learn whether it can be: that container takes it instead of
    /// making another (`Blueprint::tree`).
    pub tree: Option<OwnedFd>,
}

/// Who guest `name` is on the host, as every front end gets it: its id range (`userns`
/// says whether it has one; the range the tree's owners were last shifted to is asked for
/// first, so that a guest started again, or a `run` under a new name, finds its tree as it
/// left it), its first container's namespaces begun in that range (with a network
/// namespace when `private_net`; made by another process alongside the rest of the
/// setup, see `Namespaces::begin`), and its tree made ready for it: shifted where `mode`
/// needs it, probed through that user namespace where `auto` must find out.
pub fn lease_and_prepare(
    threads: &SingleThreaded,
    root: &mut RootDir,
    name: &str,
    userns: userns::UsernsMode,
    mode: Ownership,
    private_net: bool,
) -> Result<(Option<userns::Lease>, Option<PendingNamespaces>, Prepared)> {
    let recorded = recorded_base(root, mode)?;
    let lease = userns::acquire(name, userns, recorded)?;
    let base = lease.as_ref().map(|l| l.base);
    let begun = Namespaces::begin_for(threads, base, private_net)?;
    let guest = base.zip(begun.as_ref().map(PendingNamespaces::user));
    let prepared = prepare(root, guest, mode)?;
    Ok((lease, begun, prepared))
}

/// Gets the tree of `root` ready for a guest whose range is at `base`, with the user
/// namespace `user` of that range (`guest`; `None`: no user namespace) under `mode`:
/// shifts its owners where needed (see the module's comment).
fn prepare(
    root: &mut RootDir,
    guest: Option<(u32, BorrowedFd)>,
    mode: Ownership,
) -> Result<Prepared> {
    let dir = open_dir(root)?;
    let store = Store::for_root(dir.as_fd())?;
    let record = store.read(dir.as_fd(), root.path())?;
    let at = record.as_ref().map_or(0, Record::target);
    let mut probed = None;
    let (target, id_map) = match (guest, mode) {
        (None, _) => (0, false),
        (Some(_), Ownership::Map) => (0, true),
        (Some((base, _)), Ownership::Chown) => (base, false),
        (Some((base, _)), Ownership::Auto) if record.is_some() && at == base => (base, false),
        (Some((base, user)), Ownership::Auto) => {
            probed = id_mapped_tree(root, user)?;
            if probed.is_some() {
                (0, true)
            } else {
                let why = if mountattr::kernel_has_mount_setattr() {
                    "for the guest's user namespace".to_owned()
                } else {
                    format!("on this kernel ({})", rootfs::NO_IDMAP_KERNEL)
                };
                log::warn!(
                    "{}: its file system ({}) cannot be id-mapped {why}: its owners are \
                     shifted to host ids {base}-{} instead (--ownership chown)",
                    root.path().display(),
                    root.fs_type(),
                    base + (RANGE - 1)
                );
                (base, false)
            }
        }
    };
    if !id_map && target != 0 {
        root.set_dirs_owner(target);
    }
    let done = match &record {
        None => target == 0,
        Some(Record::At(at)) => *at == target,
        Some(Record::Shifting { .. }) => false,
    };
    if done {
        hold(root, libc::LOCK_SH | libc::LOCK_NB).map_err(|e| match e {
            Errno::EWOULDBLOCK => Error::Conflict(format!(
                "another launcher is shifting the owners of {}",
                root.path().display()
            )),
            e => Error::setup(format!("lock {}", root.path().display()), e),
        })?;
        return held_at(&store, dir.as_fd(), root.path(), target).map(|()| Prepared {
            id_map,
            tree: probed,
        });
    }
    refuse_mounts_below(root)?;
    hold(root, libc::LOCK_EX | libc::LOCK_NB).map_err(|e| {
        if e != Errno::EWOULDBLOCK {
            return Error::setup(format!("lock {}", root.path().display()), e);
        }
        let to = match target {
            0 => "the ids the guest sees".to_owned(),
            base => format!("host ids {base}-{}", base + (RANGE - 1)),
        };
        Error::Conflict(format!(
            "{} is in use by another guest (running, or starting): its owners cannot be \
             shifted to {to} under it",
            root.path().display()
        ))
    })?;
    // again, now that nobody else can change it
    let mut record = store.read(dir.as_fd(), root.path())?;
    let host_dirs = host_dirs();
    let mount = sys::mount_id(dir.as_fd())
        .map_err(|e| Error::setup(format!("statx {}", root.path().display()), e))?;
    loop {
        let (shift, resume) = match record.take() {
            Some(Record::Shifting { from, to, keep }) => (Shift { from, to }, keep),
            Some(Record::At(at)) if at == target => break,
            None if target == 0 => break,
            other => {
                let from = other.map_or(0, |r| r.target());
                let shift = Shift { from, to: target };
                let begin = Record::Shifting {
                    from,
                    to: target,
                    keep: None,
                };
                store.write(dir.as_fd(), &begin, true)?;
                sync(dir.as_fd(), root.path())?;
                (shift, None)
            }
        };
        let mut recorder = Recorder {
            store: &store,
            dir: dir.as_fd(),
            shift,
        };
        let mut walk =
            walk::Walk::new(shift, root.path(), mount, &host_dirs, resume, &mut recorder);
        let outside = walk.run(dir.as_fd())?;
        let changed = walk.changed;
        sync(dir.as_fd(), root.path())?;
        if shift.to == 0 {
            store.clear(dir.as_fd())?;
        } else {
            store.write(dir.as_fd(), &Record::At(shift.to), true)?;
        }
        log_shift(root.path(), shift, changed, &outside);
        record = (shift.to != 0).then_some(Record::At(shift.to));
    }
    // shared from now on: other guests of this range may run on it too, and nobody
    // shifts it under them (the change of lock is not atomic: the record says whether
    // another launcher shifted it in between)
    hold(root, libc::LOCK_SH)
        .map_err(|e| Error::setup(format!("lock {}", root.path().display()), e))?;
    held_at(&store, dir.as_fd(), root.path(), target).map(|()| Prepared {
        id_map,
        tree: probed,
    })
}

/// flock(2) of the root's own open file description, which the launcher keeps for the
/// guest's life (across its reboots, and through its monitor: `handoff`): a shared lock
/// while a guest runs on the tree, an exclusive one while its owners are shifted.
fn hold(root: &RootDir, operation: libc::c_int) -> nix::Result<()> {
    sys::flock(root.fd(), operation)
}

/// Checks, with the lock held, that the tree's owners are still at `target`.
fn held_at(store: &Store, dir: BorrowedFd, root: &Path, target: u32) -> Result<()> {
    let at = store.read(dir, root)?;
    let still = match at {
        None => target == 0,
        Some(Record::At(at)) => at == target,
        Some(Record::Shifting { .. }) => false,
    };
    if still {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "another launcher shifted the owners of {} as this one started",
        root.display()
    )))
}

fn log_shift(root: &Path, shift: Shift, changed: u64, outside: &[PathBuf]) {
    let to = if shift.to == 0 {
        "the ids the guest sees (for an id-mapped mount, or no user namespace)".to_owned()
    } else {
        format!("host ids {}-{}", shift.to, shift.to + (RANGE - 1))
    };
    log::info!(
        "{}: the owners of {changed} files shifted to {to}",
        root.display()
    );
    if let Some(first) = outside.first() {
        log::warn!(
            "{}: {} files hard-linked from outside the root were left as they are \
             (the first: {}): a shift would change the other tree too",
            root.display(),
            outside.len(),
            root.join(first).display()
        );
    }
}

fn sync(dir: BorrowedFd, root: &Path) -> Result<()> {
    nix::unistd::syncfs(dir)
        .map_err(|e| Error::setup(format!("sync the file system of {}", root.display()), e))
}

/// (dev, ino) of the host's `/`, `/usr`, `/etc`: a walk that meets one stops.
fn host_dirs() -> Vec<((u64, u64), &'static str)> {
    ["/", "/usr", "/etc"]
        .into_iter()
        .filter_map(|dir| {
            let meta = fs::metadata(dir).ok()?;
            Some(((meta.dev(), meta.ino()), dir))
        })
        .collect()
}

/// Refuses a root with a mount point below it (or that is one of the host's `/`, `/usr`,
/// `/etc`), before anything changes: a shift must stay on the root's own file system.
fn refuse_mounts_below(root: &RootDir) -> Result<()> {
    let bad = |why: String| Error::BadRoot {
        root: root.path().to_owned(),
        why,
    };
    let st = fstat(root.fd()).map_err(|e| Error::setup("stat the root directory", e))?;
    if let Some((_, host)) = host_dirs()
        .into_iter()
        .find(|(id, _)| *id == walk::file_id(&st))
    {
        return Err(bad(format!(
            "it is the host's {host}: its owners cannot be shifted"
        )));
    }
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::host("read the host's mounts (/proc/self/mountinfo)", e))?;
    let mut prefix = root.path().as_os_str().as_encoded_bytes().to_vec();
    prefix.push(b'/');
    if let Some(mount) = mountinfo::parse(&text)
        .into_iter()
        .find(|m| m.mount_point.starts_with(&prefix))
    {
        return Err(bad(format!(
            "{} is a mount point ({}): the owners of a tree with mounts in it are not \
             shifted; unmount it, or use --ownership map",
            String::from_utf8_lossy(&mount.mount_point),
            mount.fs_type
        )));
    }
    Ok(())
}

/// The root's tree id-mapped through the user namespace `user`, made as a boot makes it;
/// `None` when the kernel or the file system does not allow it.
fn id_mapped_tree(root: &RootDir, user: BorrowedFd) -> Result<Option<OwnedFd>> {
    match root.clone_tree(Some(user)) {
        Ok(tree) => Ok(Some(tree)),
        Err(Error::BadRoot { .. }) => Ok(None),
        Err(Error::Setup {
            errno: Errno::ENOSYS,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u32 = 0x0020_0000;
    const C: u32 = 0x0021_0000;

    #[test]
    fn ids_move_from_the_source_range_stay_in_the_target_and_others_overflow() {
        let first = Shift { from: 0, to: B };
        assert_eq!(first.id(0), B);
        assert_eq!(first.id(1000), B + 1000);
        assert_eq!(first.id(65535), B + 65535);
        // shifted already: a resumed walk leaves it
        assert_eq!(first.id(B + 7), B + 7);
        // the host put it there: the guest's nobody
        assert_eq!(first.id(70000), B + OVERFLOW);
        assert_eq!(first.id(u32::MAX), B + OVERFLOW);
        let again = Shift { from: B, to: C };
        assert_eq!(again.id(B), C);
        assert_eq!(again.id(B + 1000), C + 1000);
        assert_eq!(again.id(0), C + OVERFLOW);
        let back = Shift { from: C, to: 0 };
        assert_eq!(back.id(C + 5), 5);
        assert_eq!(back.id(5), 5);
        assert_eq!(back.id(B), OVERFLOW);
    }

    #[test]
    fn records_read_back_as_written_and_garbage_is_refused() {
        for record in [
            Record::At(B),
            Record::Shifting {
                from: 0,
                to: B,
                keep: None,
            },
            Record::Shifting {
                from: B,
                to: C,
                keep: Some(Keep {
                    ino: 1234,
                    mode: 0o4755,
                    caps: vec![0, 1, 0xab, 0xff],
                }),
            },
            Record::Shifting {
                from: B,
                to: 0,
                keep: Some(Keep {
                    ino: 7,
                    mode: 0o2755,
                    caps: vec![],
                }),
            },
        ] {
            assert_eq!(Record::parse(&record.to_text()), Some(record.clone()));
        }
        assert_eq!(Record::parse("2097152"), Some(Record::At(B)));
        for bad in [
            "",
            "x",
            "1>",
            ">2",
            "1>2 keep=",
            "1>2 keep=1,9,",
            "1>2 keep=1,7,abc",
        ] {
            assert_eq!(Record::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ownership_words() {
        use argh::FromArgValue;
        for mode in [Ownership::Auto, Ownership::Map, Ownership::Chown] {
            assert_eq!(Ownership::from_arg_value(mode.word()), Ok(mode));
        }
        let err = Ownership::from_arg_value("copy").unwrap_err();
        assert!(err.contains("auto, map or chown"), "{err}");
    }
}
