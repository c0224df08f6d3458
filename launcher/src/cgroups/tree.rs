//! The guest's cgroup tree may be as deep and as wide as its root makes it, with names of
//! 255 bytes: its paths may be longer than PATH_MAX. So every walk below a container's
//! cgroup goes by directory descriptors, each child opened relative to its parent, and
//! the guest's tree is capped (`MAX_DEPTH`, `MAX_DESCENDANTS`).

use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

/// The directories directly below `dir` (the child cgroups).
fn children(dir: BorrowedFd) -> nix::Result<Vec<CString>> {
    let mut listing = Dir::openat(
        dir,
        c".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(listing
        .iter()
        .flatten()
        .filter(|e| e.file_type() == Some(Type::Directory))
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect())
}

/// The child cgroup `name` of `dir`, not through a symlink.
pub fn open_child(dir: BorrowedFd, name: &CStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The contents of the file `name` of the cgroup `dir`.
pub fn read(dir: BorrowedFd, name: &CStr) -> std::io::Result<String> {
    let fd = openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text)?;
    Ok(text)
}

/// Calls `visit` on `dir` and on every cgroup below it, parents first. A cgroup that
/// goes away meanwhile is skipped.
pub fn visit(dir: BorrowedFd, visit_one: &mut dyn FnMut(BorrowedFd)) -> nix::Result<()> {
    visit_one(dir);
    for name in children(dir)? {
        match open_child(dir, &name) {
            Ok(child) => visit(child.as_fd(), visit_one)?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes every cgroup below `dir`, deepest first (a cgroup directory is removed
/// with rmdir; its files go with it).
pub fn remove_below(dir: BorrowedFd) -> nix::Result<()> {
    for name in children(dir)? {
        match open_child(dir, &name) {
            Ok(child) => remove_below(child.as_fd())?,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e),
        }
        match unlinkat(dir, name.as_c_str(), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
