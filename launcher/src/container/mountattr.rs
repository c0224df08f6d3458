//! A mount's flags and propagation, changed with mount_setattr(2) (Linux 5.12) where the
//! kernel has it, and with mount(2) where it does not (Linux 5.8 to 5.11):
//!
//! - propagation: `mount(NULL, PATH, NULL, MS_PRIVATE (| MS_REC), NULL)`, as before the
//!   new mount API;
//! - flags (`MOUNT_ATTR_RDONLY`, `NOSUID`, `NODEV`, `NOEXEC`, the atime ones): a bind
//!   remount (`MS_REMOUNT|MS_BIND`) with the mount's present flags (statvfs) plus those
//!   set, minus those cleared, of the one mount (a recursive change of flags has no
//!   mount(2) form: refused with ENOSYS);
//! - an id mapping (`MOUNT_ATTR_IDMAP`) has no older form: ENOSYS, which callers turn into
//!   "id-mapped mounts need Linux 5.12".
//!
//! mount(2) changes only mounts of the caller's own mount namespace (a detached copy from
//! open_tree(2) is in none: EINVAL), so the fallback is for attached mounts: the steps
//! that used to change a detached copy attach it first where the kernel is older. The
//! mount is named by its descriptor, through /proc/self/fd/N (a magic link that is the
//! mount itself, never resolved again by name), or by an absolute path the process
//! controls ("/"). Nothing here allocates: sound between clone and exec.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::AT_FDCWD;
use nix::mount::{MsFlags, mount};
use nix::sys::statvfs::{FsFlags, fstatvfs, statvfs};

use crate::sys;

/// The mount to change: by descriptor (the root of the mount), or by path.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    Fd(BorrowedFd<'a>),
    Path(&'a CStr),
}

/// mount_setattr(2) on `target` (and the mounts below it, with `recursive`), or its
/// mount(2) form on a kernel without it (see the module's comment).
pub fn set(target: Target, recursive: bool, attr: &libc::mount_attr) -> nix::Result<()> {
    let at_recursive = if recursive {
        libc::AT_RECURSIVE as u32
    } else {
        0
    };
    let result = match target {
        Target::Fd(fd) => {
            sys::mount_setattr(fd, c"", libc::AT_EMPTY_PATH as u32 | at_recursive, attr)
        }
        Target::Path(path) => sys::mount_setattr(AT_FDCWD, path, at_recursive, attr),
    };
    match result {
        Err(Errno::ENOSYS) => set_with_mount(target, recursive, attr),
        other => other,
    }
}

/// Makes `target` (and with `recursive`, every mount below it) private.
pub fn make_private(target: Target, recursive: bool) -> nix::Result<()> {
    let attr = libc::mount_attr {
        attr_set: 0,
        attr_clr: 0,
        propagation: cradle_common::arch::MS_PRIVATE,
        userns_fd: 0,
    };
    set(target, recursive, &attr)
}

/// Whether the kernel has mount_setattr(2) (Linux 5.12), and so id-mapped mounts.
pub fn kernel_has_mount_setattr() -> bool {
    let attr = libc::mount_attr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // an empty path without AT_EMPTY_PATH: ENOENT where the call exists
    sys::mount_setattr(AT_FDCWD, c"", 0, &attr) != Err(Errno::ENOSYS)
}

/// The mount(2) form of [`set`].
fn set_with_mount(target: Target, recursive: bool, attr: &libc::mount_attr) -> nix::Result<()> {
    if attr.attr_set & libc::MOUNT_ATTR_IDMAP != 0 {
        return Err(Errno::ENOSYS);
    }
    let mut buf = [0u8; 64];
    let path = match target {
        Target::Fd(fd) => sys::path_with_number(&mut buf, b"/proc/self/fd/", fd.as_raw_fd() as u32)
            .ok_or(Errno::ENAMETOOLONG)?,
        Target::Path(path) => path,
    };
    if attr.attr_set != 0 || attr.attr_clr != 0 {
        if recursive {
            return Err(Errno::ENOSYS);
        }
        let now = match target {
            Target::Fd(fd) => fstatvfs(fd)?.flags(),
            Target::Path(path) => statvfs(path)?.flags(),
        };
        let flags = remount_flags(now, attr.attr_set, attr.attr_clr);
        mount(None::<&CStr>, path, None::<&CStr>, flags, None::<&CStr>)?;
    }
    if attr.propagation != 0 {
        let mut flags = MsFlags::from_bits_truncate(attr.propagation as libc::c_ulong);
        if recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(None::<&CStr>, path, None::<&CStr>, flags, None::<&CStr>)?;
    }
    Ok(())
}

/// The flags of a bind remount that gives a mount whose flags are `now` those of
/// mount_setattr's `set` and `clear`. Its atime flags are left as they are unless `set`
/// names one (the kernel keeps them on a remount that names none).
fn remount_flags(now: FsFlags, set: u64, clear: u64) -> MsFlags {
    const SIMPLE: [(u64, FsFlags, MsFlags); 5] = [
        (
            libc::MOUNT_ATTR_RDONLY,
            FsFlags::ST_RDONLY,
            MsFlags::MS_RDONLY,
        ),
        (
            libc::MOUNT_ATTR_NOSUID,
            FsFlags::ST_NOSUID,
            MsFlags::MS_NOSUID,
        ),
        (libc::MOUNT_ATTR_NODEV, FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (
            libc::MOUNT_ATTR_NOEXEC,
            FsFlags::ST_NOEXEC,
            MsFlags::MS_NOEXEC,
        ),
        (
            libc::MOUNT_ATTR_NODIRATIME,
            FsFlags::ST_NODIRATIME,
            MsFlags::MS_NODIRATIME,
        ),
    ];
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    for (attr, st, ms) in SIMPLE {
        if set & attr != 0 || (now.contains(st) && clear & attr == 0) {
            flags |= ms;
        }
    }
    if set & libc::MOUNT_ATTR_STRICTATIME != 0 {
        flags |= MsFlags::MS_STRICTATIME;
    } else if set & libc::MOUNT_ATTR_NOATIME != 0 {
        flags |= MsFlags::MS_NOATIME;
    } else if clear & libc::MOUNT_ATTR__ATIME != 0 {
        flags |= MsFlags::MS_RELATIME;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remount_keeps_the_flags_it_is_not_told_to_change() {
        let now = FsFlags::ST_NOSUID | FsFlags::ST_NODEV;
        let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
        assert_eq!(
            remount_flags(now, libc::MOUNT_ATTR_RDONLY, 0),
            base | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        assert_eq!(
            remount_flags(
                now | FsFlags::ST_RDONLY,
                libc::MOUNT_ATTR_NOEXEC,
                libc::MOUNT_ATTR_RDONLY
            ),
            base | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
        );
        assert_eq!(
            remount_flags(FsFlags::empty(), libc::MOUNT_ATTR_STRICTATIME, 0),
            base | MsFlags::MS_STRICTATIME
        );
    }
}
