//! The guest's root directory: opened once per `start` (read-only, `O_NOFOLLOW`) and held
//! across reboots, so that no later step resolves its name again.
//!
//! Every boot gets a detached, private copy of its mount tree ([`RootDir::clone_tree`]),
//! id-mapped through the guest's user namespace when it has one (`MOUNT_ATTR_IDMAP`: files
//! owned by host uid 0 on disk show as owned by the guest's root, and what the guest
//! creates is stored as uid 0; nothing is chowned). The container's first process attaches
//! that copy and resolves everything below it from its descriptor (see `plan`).

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat, mkdirat};
use nix::sys::statfs::{FsType, TMPFS_MAGIC, statfs};

use cradle_common::arch;
use cradle_common::guest::{DEVICES, INIT_PATHS, OPTIONAL_DEVICES};

use crate::container::mountinfo;
use crate::container::mountinfo::RootSwitch;
use crate::error::{Error, Result};
use crate::sys;

/// Why a kernel cannot id-map a mount at all.
pub const NO_IDMAP_KERNEL: &str =
    "id-mapped mounts (mount_setattr, MOUNT_ATTR_IDMAP) need Linux 5.12";

/// The directories the setup mounts on, directly below the root.
pub const MOUNT_POINTS: [&str; 3] = ["proc", "sys", "dev"];

/// True when the init the shim will run (the first of /sbin/init, /etc/init, /bin/init
/// that is an executable file, resolved inside the root) is systemd: a file named
/// `systemd`, as /sbin/init links to on a systemd system.
pub fn init_is_systemd(root: &RootDir) -> bool {
    for path in INIT_PATHS {
        let Some(relative) = path.to_bytes().strip_prefix(b"/") else {
            continue;
        };
        let Ok(relative) = std::ffi::CString::new(relative) else {
            continue;
        };
        match resolved_executable(root, &relative) {
            Some(target) => return target.file_name().is_some_and(|n| n == "systemd"),
            None => continue,
        }
    }
    false
}

/// The host path of `path` below the root, resolved there (symlinks as the guest sees
/// them), when it is an executable regular file.
fn resolved_executable(root: &RootDir, path: &CStr) -> Option<PathBuf> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.fd(), path, how).ok()?;
    let stat = fstat(&fd).ok()?;
    let is_file = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
    if !is_file || stat.st_mode & 0o111 == 0 {
        return None;
    }
    std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .ok()
}

/// Those it mounts on besides in boot mode.
pub const BOOT_MOUNT_POINTS: [&str; 1] = ["run"];

pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
    /// Who owns the mount points the launcher makes in it: the guest's root on the host
    /// for a tree whose owners were shifted (`ownership`), else the host's root (as the
    /// guest's root's files are stored when the tree is id-mapped).
    dirs_owner: Option<u32>,
}

/// Directories of the host's own system, refused as roots with everything below them: a
/// guest there would own the host's files.
const SYSTEM_TREES: [&str; 11] = [
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin",
    "/sys",
];
/// Directories of the host's own, refused as roots with the directories directly in them
/// (`/usr/lib`, `/var/lib`); deeper ones (`/var/lib/machines/web1`) may be guests.
const SYSTEM_DIRS: [&str; 10] = [
    "/usr", "/var", "/home", "/root", "/run", "/srv", "/opt", "/mnt", "/media", "/tmp",
];

/// Whether `canonical` is one of the host's system directories (see [`SYSTEM_TREES`],
/// [`SYSTEM_DIRS`]).
fn is_system_dir(canonical: &Path) -> bool {
    SYSTEM_TREES.iter().any(|tree| canonical.starts_with(tree))
        || SYSTEM_DIRS.iter().any(|dir| {
            canonical == Path::new(dir)
                || (canonical.parent() == Some(Path::new(dir))
                    && (*dir == "/usr" || *dir == "/var"))
        })
}

/// Why other users of the host could run the guest's set-user-ID files as the host's
/// root, or `None` when they cannot. The guest's ids are stored on disk as they are in
/// the guest (an id-mapped mount maps them to its range only while it runs): a file its
/// root makes set-user-ID is a set-user-ID-root file of the host's. It is harmless where
/// no other user can reach it: below a directory of the host's root that is closed to
/// group and others (as nspawn's `/var/lib/machines` and LXC's container directories are,
/// 0700), or on a file system mounted `nosuid`. The root directory itself does not count:
/// the guest's root owns it and may open it.
fn reachable_by_others(canonical: &Path) -> Option<String> {
    if nix::sys::statvfs::statvfs(canonical)
        .is_ok_and(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID))
    {
        return None;
    }
    let closed = canonical
        .ancestors()
        .skip(1)
        .any(|dir| fs::metadata(dir).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o011 == 0));
    if closed {
        return None;
    }
    let parent = canonical.parent().unwrap_or(Path::new("/"));
    Some(format!(
        "other users of the host can reach it (no directory above it is the host root's \
         alone), so a set-user-ID file of the guest's root would run as the host's root \
         for them; keep guests below a directory closed to others (chmod 700 {}, or \
         /var/lib/machines as nspawn does), or on a nosuid mount",
        parent.display()
    ))
}

/// The root directory `path` as a guest may have it: an existing directory, not the
/// host's own root or one of its system directories, out of other host users' reach (see
/// [`reachable_by_others`]). Its canonical path.
pub fn check_root(path: &Path) -> Result<PathBuf> {
    let bad = |why: String| Error::BadRoot {
        root: path.to_owned(),
        why,
    };
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => bad("no such directory".into()),
        _ => bad(e.to_string()),
    })?;
    if !meta.is_dir() {
        return Err(bad("not a directory".into()));
    }
    let canonical = fs::canonicalize(path).map_err(|e| bad(e.to_string()))?;
    if canonical == Path::new("/") {
        return Err(bad("the host's own root cannot be a guest".into()));
    }
    if is_system_dir(&canonical) {
        return Err(bad(format!(
            "{} is a directory of the host's own system",
            canonical.display()
        )));
    }
    if let Some(why) = reachable_by_others(&canonical) {
        return Err(bad(why));
    }
    Ok(canonical)
}

impl RootDir {
    /// Opens the root directory `path`, as [`check_root`] allows it.
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |why: String| Error::BadRoot {
            root: path.to_owned(),
            why,
        };
        let canonical = check_root(path)?;
        // read-only, not O_PATH: its open file description holds the flock that keeps
        // its owners as they are while the guest runs (`ownership`)
        let fd = open(
            &canonical,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| bad(e.desc().to_owned()))?;
        let root = RootDir {
            fd,
            path: canonical,
            dirs_owner: None,
        };
        root.check_mount_points(false)?;
        Ok(root)
    }

    /// Opens the directory `path` as an OCI bundle's root, which the caller (containerd,
    /// podman) prepared and answers for: none of [`check_root`]'s checks, no mount points
    /// made (the bundle's mounts say what is mounted where).
    pub fn open_as_given(path: &Path) -> Result<Self> {
        let bad = |why: String| Error::BadRoot {
            root: path.to_owned(),
            why,
        };
        let canonical = fs::canonicalize(path).map_err(|e| bad(e.to_string()))?;
        let fd = open(
            &canonical,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| bad(e.desc().to_owned()))?;
        Ok(RootDir {
            fd,
            path: canonical,
            dirs_owner: None,
        })
    }

    /// The root directory a launcher opened before it exec'd itself (see `handoff`).
    pub fn take_back(fd: OwnedFd, path: PathBuf) -> Self {
        RootDir {
            fd,
            path,
            dirs_owner: None,
        }
    }

    /// Makes the mount points made from now on the host uid (and gid) `owner`'s: the
    /// guest's root, in a tree whose owners are shifted.
    pub fn set_dirs_owner(&mut self, owner: u32) {
        self.dirs_owner = Some(owner);
    }

    /// The root's path on the host, as it was opened (for messages and `status`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Makes sure [`MOUNT_POINTS`] (and with `boot`, [`BOOT_MOUNT_POINTS`]) are
    /// directories, creating the missing ones. Done again at every boot: a guest may have
    /// swapped one for a symlink before it rebooted, and a mount through a symlink would
    /// land wherever it points (the plan refuses it: this says so in words first).
    pub fn check_mount_points(&self, boot: bool) -> Result<()> {
        let extra: &[&str] = if boot { &BOOT_MOUNT_POINTS } else { &[] };
        for &name in MOUNT_POINTS.iter().chain(extra) {
            let stat = match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Err(Errno::ENOENT) => {
                    match mkdirat(&self.fd, name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) => self.chown_made(name)?,
                        Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(Error::BadRoot {
                                root: self.path.clone(),
                                why: format!("cannot create /{name} in it: {}", e.desc()),
                            });
                        }
                    }
                    fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                }
                other => other,
            };
            let is_dir = stat.is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
            });
            if !is_dir {
                return Err(Error::BadRoot {
                    root: self.path.clone(),
                    why: format!("/{name} in it is not a directory"),
                });
            }
        }
        Ok(())
    }

    /// Gives the directory `name` the launcher just made in the root to the guest's root,
    /// in a tree whose owners are shifted.
    fn chown_made(&self, name: &str) -> Result<()> {
        let Some(owner) = self.dirs_owner else {
            return Ok(());
        };
        nix::unistd::fchownat(
            &self.fd,
            name,
            Some(nix::unistd::Uid::from_raw(owner)),
            Some(nix::unistd::Gid::from_raw(owner)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::BadRoot {
            root: self.path.clone(),
            why: format!(
                "cannot give /{name} in it to the guest's root: {}",
                e.desc()
            ),
        })
    }

    /// A detached copy of the root's mount tree (submounts included) for one boot, private
    /// (nothing mounted on it can propagate to the host), id-mapped through `userns` when
    /// one is given. On a kernel without mount_setattr (before 5.12) the copy is left as
    /// it came, to be made private once attached (`plan`'s `AttachRoot`), and one that is
    /// to be id-mapped is refused (a bad root: `--ownership auto` then shifts its owners).
    pub fn clone_tree(&self, userns: Option<BorrowedFd>) -> Result<OwnedFd> {
        let tree = sys::open_tree(
            self.fd.as_fd(),
            c"",
            libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32 | libc::AT_EMPTY_PATH as u32,
        )
        .map_err(|e| Error::setup(format!("clone the mounts of {}", self.path.display()), e))?;
        let mut attr = libc::mount_attr {
            attr_set: 0,
            attr_clr: 0,
            propagation: arch::MS_PRIVATE,
            userns_fd: 0,
        };
        if let Some(userns) = userns {
            attr.attr_set = libc::MOUNT_ATTR_IDMAP;
            attr.userns_fd = userns.as_raw_fd() as u64;
        }
        let result = sys::mount_setattr(
            tree.as_fd(),
            c"",
            libc::AT_EMPTY_PATH as u32 | libc::AT_RECURSIVE as u32,
            &attr,
        );
        let Err(errno) = result else {
            return Ok(tree);
        };
        Err(match (userns, errno) {
            // attached, then made private (plan's AttachRoot)
            (None, Errno::ENOSYS) => return Ok(tree),
            (None, errno) => Error::setup(
                format!("make the mounts of {} private", self.path.display()),
                errno,
            ),
            (Some(_), Errno::ENOSYS) => Error::BadRoot {
                root: self.path.clone(),
                why: format!(
                    "it cannot be id-mapped for the guest's user namespace: \
                     {NO_IDMAP_KERNEL}; use --ownership chown (or auto), or --userns off"
                ),
            },
            (Some(_), Errno::EINVAL | Errno::EOPNOTSUPP) => Error::BadRoot {
                root: self.path.clone(),
                why: format!(
                    "its file system ({}) cannot be id-mapped for the guest's user namespace \
                     (tmpfs needs Linux 6.3); use --ownership chown (or auto), or --userns off",
                    self.fs_type()
                ),
            },
            (Some(_), errno) => Error::setup(
                format!("id-map the mounts of {}", self.path.display()),
                errno,
            ),
        })
    }

    /// The id of the mount the root is on (`mnt_id` in /proc/self/fdinfo).
    fn mount_id(&self) -> io::Result<u64> {
        let fdinfo = fs::read_to_string(format!("/proc/self/fdinfo/{}", self.fd.as_raw_fd()))?;
        fdinfo
            .lines()
            .find_map(|l| l.strip_prefix("mnt_id:"))
            .and_then(|id| id.trim().parse().ok())
            .ok_or_else(|| io::Error::other("no mnt_id in its fdinfo"))
    }

    /// The type of the file system the root is on, as /proc/self/mountinfo names it.
    pub fn fs_type(&self) -> String {
        let mounts =
            mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
        self.mount_id()
            .ok()
            .and_then(|id| mounts.into_iter().find(|m| m.id == id))
            .map_or_else(|| "unknown".to_owned(), |m| m.fs_type)
    }

    /// How the container's first process will switch to this root, from the host's
    /// mounts as they are now (read again at every boot).
    pub fn switch(&self) -> Result<RootSwitch> {
        // only the host's root being the namespace's first mount (the kernel's rootfs,
        // ramfs or tmpfs: the initramfs) calls for anything but pivot_root; any other file
        // system on "/" says it is not, without the mount table (some 60 us to make)
        let root_fs = statfs("/").map(|fs| fs.filesystem_type());
        if root_fs.is_ok_and(|t| t != RAMFS_MAGIC && t != TMPFS_MAGIC) {
            return Ok(RootSwitch::Pivot);
        }
        let fail = |e| Error::host("read the host's mounts (/proc/self/mountinfo)", e);
        let text = fs::read_to_string("/proc/self/mountinfo").map_err(fail)?;
        let id = self.mount_id().map_err(fail)?;
        let switch = mountinfo::root_switch(&mountinfo::parse(&text), id, &self.path);
        if let RootSwitch::Move { detach } = &switch {
            log::debug!(
                "the host's root is the initramfs, which pivot_root refuses: the root \
                 directory will be moved over it, after detaching {} mounts of the host",
                detach.len()
            );
        }
        Ok(switch)
    }
}

/// ramfs's magic number (linux/magic.h), which neither libc nor nix names.
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6_u32 as _);

/// A detached, private bind of the host file `path` (a device node, the console pty), for
/// the container's first process to attach in the guest's /dev. On a kernel without
/// mount_setattr (before 5.12) it is made private once attached (`plan`'s `Bind`).
pub fn clone_host_file(path: &CStr) -> nix::Result<OwnedFd> {
    let fd = sys::open_tree(AT_FDCWD, path, libc::OPEN_TREE_CLONE)?;
    let attr = libc::mount_attr {
        attr_set: 0,
        attr_clr: 0,
        propagation: arch::MS_PRIVATE,
        userns_fd: 0,
    };
    match sys::mount_setattr(fd.as_fd(), c"", libc::AT_EMPTY_PATH as u32, &attr) {
        Ok(()) | Err(Errno::ENOSYS) => Ok(fd),
        Err(e) => Err(e),
    }
}

/// Detached binds of the host's device nodes for a guest's /dev (common::guest::DEVICES,
/// and the optional ones the host has), by their path below /dev.
pub fn host_devices() -> Result<Vec<(&'static CStr, OwnedFd)>> {
    let mut devices = Vec::new();
    let optional = OPTIONAL_DEVICES.iter().map(|d| (d, true));
    for ((name, _, _), optional) in DEVICES.iter().map(|d| (d, false)).chain(optional) {
        let path = CString::new([b"/dev/", name.to_bytes()].concat()).expect("no NUL");
        match clone_host_file(&path) {
            Ok(fd) => devices.push((*name, fd)),
            Err(Errno::ENOENT) if optional => {}
            Err(e) => {
                return Err(Error::setup(
                    format!("bind the host's {} for the guest", path.to_string_lossy()),
                    e,
                ));
            }
        }
    }
    Ok(devices)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A directory for a test's root, below one closed to other users.
    pub fn closed_dir(test: &str) -> PathBuf {
        let closed = std::env::temp_dir().join(format!("cradle-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&closed);
        fs::create_dir_all(closed.join("root")).unwrap();
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
        closed.join("root")
    }

    #[test]
    fn roots_that_cannot_be_guests_are_refused() {
        for bad in [
            "/nonexistent/x",
            "/etc/hostname",
            "/",
            "/usr",
            "/usr/lib",
            "/etc/ssl",
            "/var",
            "/var/lib",
            "/tmp",
        ] {
            assert!(
                matches!(RootDir::open(Path::new(bad)), Err(Error::BadRoot { .. })),
                "{bad}"
            );
        }
        let msg = RootDir::open(Path::new("/nonexistent/x"))
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("/nonexistent/x"), "{msg}");
        let msg = RootDir::open(Path::new("/usr")).err().unwrap().to_string();
        assert!(msg.contains("host's own system"), "{msg}");
    }

    #[test]
    fn a_root_other_users_can_reach_is_refused_until_a_directory_above_is_closed() {
        let root = closed_dir("reach");
        let closed = root.parent().unwrap().to_owned();
        let deeper = root.join("srv/guest");
        fs::create_dir_all(&deeper).unwrap();
        assert!(RootDir::open(&root).is_ok());
        // closed two levels up is as good
        assert!(RootDir::open(&deeper).is_ok());
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o755)).unwrap();
        let msg = RootDir::open(&root).err().unwrap().to_string();
        assert!(
            msg.contains("other users of the host can reach it"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("chmod 700 {}", closed.display())),
            "{msg}"
        );
        // a directory that lets its group through is open too
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o710)).unwrap();
        assert!(RootDir::open(&root).is_err());
        // the root directory itself does not count: the guest's root owns it
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(RootDir::open(&root).is_err());
        fs::remove_dir_all(&closed).unwrap();
    }

    #[test]
    fn mount_points_are_made_and_a_symlink_is_refused() {
        let dir = closed_dir("mount-points");
        let root = RootDir::open(&dir).unwrap();
        for name in MOUNT_POINTS {
            assert!(dir.join(name).is_dir(), "{name}");
        }
        fs::remove_dir(dir.join("dev")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("dev")).unwrap();
        let err = root.check_mount_points(false).unwrap_err().to_string();
        assert!(err.contains("/dev in it is not a directory"), "{err}");
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_systemd_init_is_told_from_others_through_the_root_s_own_links() {
        use std::os::unix::fs::symlink;
        let dir = closed_dir("notify");
        let make = |root: &Path, file: &str, link_to_it: bool| {
            for d in ["sbin", "bin", "lib/systemd"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            std::fs::write(root.join(file), b"").unwrap();
            std::fs::set_permissions(root.join(file), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            if link_to_it {
                // absolute, as Debian has it: resolved inside the root, not on the host
                symlink(format!("/{file}"), root.join("sbin/init")).unwrap();
            }
        };
        let systemd = dir.join("systemd");
        make(&systemd, "lib/systemd/systemd", true);
        assert!(init_is_systemd(&RootDir::open(&systemd).unwrap()));
        let busybox = dir.join("busybox");
        make(&busybox, "bin/busybox", true);
        assert!(!init_is_systemd(&RootDir::open(&busybox).unwrap()));
        // a /sbin/init that is no executable file: the next one counts, as for the shim
        let fallback = dir.join("fallback");
        make(&fallback, "bin/init", false);
        std::fs::write(fallback.join("sbin/init"), b"").unwrap();
        std::fs::create_dir_all(fallback.join("etc")).unwrap();
        symlink("/lib/systemd/systemd", fallback.join("etc/init")).unwrap();
        make(&fallback, "lib/systemd/systemd", false);
        assert!(init_is_systemd(&RootDir::open(&fallback).unwrap()));
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
