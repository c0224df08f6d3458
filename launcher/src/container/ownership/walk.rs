//! The walk that shifts a tree's owners: every directory opened relative to its parent's
//! descriptor (`O_DIRECTORY|O_NOFOLLOW`), never a path resolved from the host's `/`, no
//! symlink followed, no mount crossed (a directory on another mount than the root's stops
//! the walk: the caller refused such trees before, so one now is a race). Regular files and
//! directories are changed through a descriptor of their own; anything else (symlinks,
//! devices, fifos, sockets) by name in its open parent, without following it.
//!
//! Each id is shifted on its own ([`Shift::id`]): one already in the target range is left,
//! so a walk that meets a file twice (a resumed shift) changes it once. chown(2) clears a
//! file's set-user-ID bit (set-group-ID with group execute) and its file capability; for a
//! file that has them, the record first notes its inode, mode and shifted capability
//! ([`Keep`]), durably, so that a walk resumed after a SIGKILL between the chown and their
//! restoring restores them from there.
//!
//! A file with more than one link is shifted once, after the walk, and only when the walk
//! met all its links: one linked from outside the root (a tree made with `cp -al` from
//! another) is left as it is, lest a shift change a file of another tree.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{Gid, Uid, dup, fchown, fchownat};

use super::attrs::{shift_acl, shift_caps};
use super::{Journal, Keep, Shift};
use crate::error::{Error, Result};
use crate::sys;

const ACL_ACCESS: &CStr = c"system.posix_acl_access";
const ACL_DEFAULT: &CStr = c"system.posix_acl_default";
const CAPABILITY: &CStr = c"security.capability";

/// The largest extended attribute value (XATTR_SIZE_MAX).
const XATTR_MAX: usize = 65536;

/// A file the walk changes.
enum Node<'a> {
    /// A regular file or a directory, open.
    Open(BorrowedFd<'a>),
    /// Anything else, by name in its open parent (`proc` names it for the calls that take
    /// a path: `/proc/self/fd/PARENT/NAME`, never followed at the end).
    At {
        dir: BorrowedFd<'a>,
        name: &'a CStr,
        proc: CString,
    },
}

impl Node<'_> {
    fn get(&self, attr: &CStr, buf: &mut [u8]) -> nix::Result<Option<Vec<u8>>> {
        let n = match self {
            Node::Open(fd) => sys::fget_xattr(*fd, attr, buf),
            Node::At { proc, .. } => sys::lget_xattr(proc, attr, buf),
        };
        match n {
            Ok(n) => Ok(n.map(|n| buf[..n].to_vec())),
            // a file system without extended attributes (ramfs) has neither ACLs nor
            // capabilities
            Err(Errno::EOPNOTSUPP) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set(&self, attr: &CStr, value: &[u8]) -> nix::Result<()> {
        match self {
            Node::Open(fd) => sys::set_xattr(*fd, attr, value),
            Node::At { proc, .. } => sys::lset_xattr(proc, attr, value),
        }
    }

    fn chown(&self, uid: u32, gid: u32) -> nix::Result<()> {
        let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        match self {
            Node::Open(fd) => fchown(fd, uid, gid),
            Node::At { dir, name, .. } => {
                fchownat(dir, *name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
            }
        }
    }
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// A file's device and inode, as the walk keeps and records them: 64 bits everywhere
/// (on 32-bit ARM the C library's `struct stat` has a 32-bit inode).
#[allow(clippy::useless_conversion)]
pub fn file_id(st: &FileStat) -> (u64, u64) {
    (u64::from(st.st_dev), u64::from(st.st_ino))
}

/// A file with more than one link, met during the walk.
struct Linked {
    /// Links met.
    seen: libc::nlink_t,
    nlink: libc::nlink_t,
    /// Where one of them is: its directory below the root, and its name.
    dir: PathBuf,
    name: CString,
}

/// A directory being walked: its descriptor, its path below the root, the names in it
/// still to do.
struct Frame {
    fd: OwnedFd,
    path: PathBuf,
    names: Vec<CString>,
}

impl Frame {
    fn read(fd: OwnedFd, path: PathBuf) -> nix::Result<Self> {
        let mut dir = Dir::from_fd(dup(&fd)?)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let name = entry?.file_name().to_owned();
            if name.as_bytes() != b"." && name.as_bytes() != b".." {
                names.push(name);
            }
        }
        Ok(Frame { fd, path, names })
    }
}

/// One walk of a tree, shifting with `shift`.
pub struct Walk<'a> {
    pub shift: Shift,
    /// The root on the host, for messages.
    pub root: &'a Path,
    /// The mount the root is on: the walk stays on it.
    pub mount: u64,
    /// (dev, ino) of the host's `/`, `/usr`, `/etc`, and their names.
    pub host_dirs: &'a [((u64, u64), &'static str)],
    /// A file whose mode and capability an interrupted walk had still to restore.
    pub resume: Option<Keep>,
    pub journal: &'a mut dyn Journal,
    /// How many files the walk changed.
    pub changed: u64,
    linked: HashMap<(u64, u64), Linked>,
    buf: Vec<u8>,
}

impl<'a> Walk<'a> {
    pub fn new(
        shift: Shift,
        root: &'a Path,
        mount: u64,
        host_dirs: &'a [((u64, u64), &'static str)],
        resume: Option<Keep>,
        journal: &'a mut dyn Journal,
    ) -> Self {
        Walk {
            shift,
            root,
            mount,
            host_dirs,
            resume,
            journal,
            changed: 0,
            linked: HashMap::new(),
            buf: vec![0; XATTR_MAX],
        }
    }

    /// `rel` (below the root) as the host names it.
    fn name(&self, rel: &Path) -> String {
        self.root.join(rel).display().to_string()
    }

    fn failed(&self, what: &str, rel: &Path, errno: Errno) -> Error {
        failed(self.root, what, rel, errno)
    }

    /// Walks the tree whose root directory is open on `root` (read-only).
    pub fn run(&mut self, root: BorrowedFd) -> Result<Vec<PathBuf>> {
        let top = PathBuf::new();
        let st = fstat(root).map_err(|e| self.failed("stat", &top, e))?;
        self.check_dir(root, &st, &top)?;
        self.shift_node(&Node::Open(root), &st, &top)?;
        let fd = dup(root).map_err(|e| self.failed("open", &top, e))?;
        let mut stack =
            vec![Frame::read(fd, top.clone()).map_err(|e| self.failed("read", &top, e))?];
        while let Some(frame) = stack.last_mut() {
            let Some(name) = frame.names.pop() else {
                stack.pop();
                continue;
            };
            let rel = frame.path.join(OsStr::from_bytes(name.to_bytes()));
            let dir = frame.fd.as_fd();
            let parent = frame.path.clone();
            if let Some(sub) = self.visit(dir, &parent, &name, &rel)? {
                stack.push(sub);
            }
        }
        self.finish_linked(root)
    }

    /// Shifts the entry `name` of the directory open on `dir`; a directory comes back as
    /// the frame to walk next.
    fn visit(
        &mut self,
        dir: BorrowedFd,
        parent: &Path,
        name: &CStr,
        rel: &Path,
    ) -> Result<Option<Frame>> {
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // gone since the directory was read
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.failed("stat", rel, e)),
        };
        let kind = kind(&st);
        if kind == SFlag::S_IFDIR {
            let fd = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.failed("open", rel, e))?;
            let st = self.same(fd.as_fd(), &st, rel)?;
            self.check_dir(fd.as_fd(), &st, rel)?;
            self.shift_node(&Node::Open(fd.as_fd()), &st, rel)?;
            let frame = Frame::read(fd, rel.to_owned()).map_err(|e| self.failed("read", rel, e))?;
            return Ok(Some(frame));
        }
        if st.st_nlink > 1 {
            let linked = self.linked.entry(file_id(&st)).or_insert_with(|| Linked {
                seen: 0,
                nlink: 0,
                dir: parent.to_owned(),
                name: name.to_owned(),
            });
            linked.seen += 1;
            linked.nlink = st.st_nlink;
            return Ok(None);
        }
        self.shift_entry(dir, name, &st, rel)?;
        Ok(None)
    }

    /// Shifts the non-directory `name` in `dir`, whose stat is `st`.
    fn shift_entry(
        &mut self,
        dir: BorrowedFd,
        name: &CStr,
        st: &FileStat,
        rel: &Path,
    ) -> Result<()> {
        if kind(st) == SFlag::S_IFREG {
            let fd = openat(
                dir,
                name,
                OFlag::O_RDONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_NONBLOCK
                    | OFlag::O_NOCTTY
                    | OFlag::O_NOATIME
                    | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.failed("open", rel, e))?;
            let st = self.same(fd.as_fd(), st, rel)?;
            return self.shift_node(&Node::Open(fd.as_fd()), &st, rel);
        }
        let mut proc =
            format!("/proc/self/fd/{}/", std::os::fd::AsRawFd::as_raw_fd(&dir)).into_bytes();
        proc.extend_from_slice(name.to_bytes());
        let proc = CString::new(proc).expect("no NUL in a file name");
        self.shift_node(&Node::At { dir, name, proc }, st, rel)
    }

    /// The stat of `fd`, which must be the file `before` was of (else the tree changed
    /// under the walk).
    fn same(&self, fd: BorrowedFd, before: &FileStat, rel: &Path) -> Result<FileStat> {
        let st = fstat(fd).map_err(|e| self.failed("stat", rel, e))?;
        if file_id(&st) != file_id(before) {
            return Err(self.failed("shift the owners of", rel, Errno::EAGAIN));
        }
        Ok(st)
    }

    /// Refuses a directory on another mount, and the host's own system directories.
    fn check_dir(&self, fd: BorrowedFd, st: &FileStat, rel: &Path) -> Result<()> {
        let bad = |why: String| Error::BadRoot {
            root: self.root.to_owned(),
            why,
        };
        if let Some((_, host)) = self.host_dirs.iter().find(|(id, _)| *id == file_id(st)) {
            return Err(bad(format!(
                "{} is the host's {host}: its owners cannot be shifted",
                self.name(rel)
            )));
        }
        let mount = sys::mount_id(fd).map_err(|e| self.failed("statx", rel, e))?;
        if mount != self.mount {
            return Err(bad(format!(
                "{} is a mount point: the owners of a tree with mounts in it are not shifted",
                self.name(rel)
            )));
        }
        Ok(())
    }

    /// The files with more than one link, once each, when the walk met every link.
    fn finish_linked(&mut self, root: BorrowedFd) -> Result<Vec<PathBuf>> {
        let mut outside = Vec::new();
        let linked: Vec<Linked> = std::mem::take(&mut self.linked).into_values().collect();
        for file in linked {
            let rel = file.dir.join(OsStr::from_bytes(file.name.to_bytes()));
            if file.seen < file.nlink {
                outside.push(rel);
                continue;
            }
            let how = OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(
                    ResolveFlag::RESOLVE_BENEATH
                        | ResolveFlag::RESOLVE_NO_SYMLINKS
                        | ResolveFlag::RESOLVE_NO_MAGICLINKS
                        | ResolveFlag::RESOLVE_NO_XDEV,
                );
            let dir_path = if file.dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                file.dir.as_path()
            };
            let dir =
                openat2(root, dir_path, how).map_err(|e| self.failed("open", &file.dir, e))?;
            let st = fstatat(&dir, file.name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| self.failed("stat", &rel, e))?;
            self.shift_entry(dir.as_fd(), &file.name, &st, &rel)?;
        }
        outside.sort();
        Ok(outside)
    }

    /// Shifts one file's owner and group, the ids in its ACLs and its capability's root.
    fn shift_node(&mut self, node: &Node, st: &FileStat, rel: &Path) -> Result<()> {
        let kind = kind(st);
        let root = self.root;
        let fail = |e| failed(root, "shift the owners of", rel, e);
        let mut changed = false;
        if kind != SFlag::S_IFLNK {
            for attr in [ACL_ACCESS, ACL_DEFAULT] {
                if attr == ACL_DEFAULT && kind != SFlag::S_IFDIR {
                    continue;
                }
                let Some(acl) = node.get(attr, &mut self.buf).map_err(fail)? else {
                    continue;
                };
                if let Some(new) = shift_acl(&acl, self.shift) {
                    node.set(attr, &new).map_err(fail)?;
                    changed = true;
                }
            }
        }
        let regular = kind == SFlag::S_IFREG;
        let caps = if regular {
            node.get(CAPABILITY, &mut self.buf).map_err(fail)?
        } else {
            None
        };
        let shifted_caps = caps.as_deref().and_then(|c| shift_caps(c, self.shift));
        let new_caps = shifted_caps.clone().or(caps.clone());
        let (uid, gid) = (self.shift.id(st.st_uid), self.shift.id(st.st_gid));
        if (uid, gid) != (st.st_uid, st.st_gid) {
            let mode = st.st_mode & 0o7777;
            // what chown clears: set-user-ID, set-group-ID with group execute, capability
            let cleared = mode & 0o4000 != 0 || mode & 0o2010 == 0o2010;
            let keep = (regular && (cleared || caps.is_some())).then(|| Keep {
                ino: file_id(st).1,
                mode,
                caps: new_caps.clone().unwrap_or_default(),
            });
            if let Some(keep) = &keep {
                self.journal.note(Some(keep))?;
            }
            node.chown(uid, gid).map_err(fail)?;
            if let Some(keep) = &keep {
                restore(node, keep).map_err(fail)?;
                self.journal.note(None)?;
            }
            changed = true;
        } else if let Some(new) = shifted_caps {
            node.set(CAPABILITY, &new).map_err(fail)?;
            changed = true;
        }
        let resumed = self
            .resume
            .as_ref()
            .filter(|k| regular && k.ino == file_id(st).1)
            .cloned();
        if let Some(keep) = resumed {
            restore(node, &keep).map_err(fail)?;
            self.resume = None;
            changed = true;
        }
        self.changed += u64::from(changed);
        Ok(())
    }
}

/// The error of a step of the walk on `rel` below `root`.
fn failed(root: &Path, what: &str, rel: &Path, errno: Errno) -> Error {
    Error::setup(format!("{what} {}", root.join(rel).display()), errno)
}

/// Gives a regular file back the mode and capability chown cleared.
fn restore(node: &Node, keep: &Keep) -> nix::Result<()> {
    if let Node::Open(fd) = node {
        fchmod(fd, Mode::from_bits_truncate(keep.mode))?;
    }
    if !keep.caps.is_empty() {
        node.set(CAPABILITY, &keep.caps)?;
    }
    Ok(())
}
