//! When a guest whose init is systemd is up: as systemd-nspawn learns it, from the init
//! itself. The launcher binds a datagram socket in the state directory (`notify`), the
//! guest finds it at `/run/host/notify` (systemd's container interface) and its init has
//! `NOTIFY_SOCKET` naming it; systemd sends `READY=1` there once it has booted
//! (sd_notify(3)), and that is when `start --detach` returns and the launcher's own
//! service manager hears `READY=1`. A guest with another init is up once its init runs.
//!
//! Only the guest's root may send (the socket is its, mode 0600); what it sends is read
//! without blocking and taken for no more than the readiness it states.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use cradle_common::guest::INIT_PATHS;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{SFlag, fstat};

use crate::error::{Error, Result};
use crate::rootfs::RootDir;

/// Where the guest finds the socket, and the variable that names it to its init.
pub const GUEST_PATH: &str = "/run/host/notify";
pub const VAR: &str = "NOTIFY_SOCKET";

/// The most of one message read (systemd's are a few lines).
const MESSAGE_MAX: usize = 4096;

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

/// The socket, bound at a path on the host (removed when dropped).
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds the socket at `path`, for `owner` (the host uid and gid of the guest's root,
    /// with a user namespace) alone to send to.
    pub fn bind(path: &Path, owner: Option<u32>) -> Result<Self> {
        let ctx = |e| Error::host(format!("notify socket {}", path.display()), e);
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path).map_err(ctx)?;
        let bound = NotifySocket {
            socket,
            path: path.to_owned(),
        };
        bound.socket.set_nonblocking(true).map_err(ctx)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(ctx)?;
        if let Some(owner) = owner {
            std::os::unix::fs::chown(path, Some(owner), Some(owner)).map_err(ctx)?;
        }
        Ok(bound)
    }

    /// The socket a launcher bound before it exec'd itself (see `handoff`).
    pub fn take_back(fd: OwnedFd, path: PathBuf) -> Self {
        NotifySocket {
            socket: UnixDatagram::from(fd),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Reads the messages waiting, [`MESSAGES_PER_TURN`] at most (a guest that sends
    /// without end does not keep the launcher from its other work); true when one of them
    /// says `READY=1`.
    pub fn ready(&self) -> bool {
        let mut ready = false;
        let mut buf = [0u8; MESSAGE_MAX];
        for _ in 0..MESSAGES_PER_TURN {
            let Ok(n) = self.socket.recv(&mut buf) else {
                break;
            };
            ready |= says_ready(&buf[..n]);
        }
        ready
    }
}

/// How many notify messages are read in one turn of the launcher's loop.
const MESSAGES_PER_TURN: usize = 64;

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// True when a message (newline-separated assignments) has `READY=1`.
fn says_ready(message: &[u8]) -> bool {
    message
        .split(|&b| b == b'\n')
        .any(|line| line == b"READY=1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_systemd_init_is_told_from_others_through_the_root_s_own_links() {
        use std::os::unix::fs::symlink;
        let dir = crate::rootfs::tests::closed_dir("notify");
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

    #[test]
    fn ready_is_one_line_of_the_message() {
        assert!(says_ready(b"READY=1"));
        assert!(says_ready(b"STATUS=Startup finished\nREADY=1\n"));
        assert!(!says_ready(b"READY=0\n"));
        assert!(!says_ready(b"STATUS=READY=1\n"));
        assert!(!says_ready(b"XREADY=1"));
    }
}
