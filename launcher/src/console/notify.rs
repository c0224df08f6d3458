//! When a guest whose init is systemd is up: as systemd-nspawn learns it, from the init
//! itself. The launcher binds a datagram socket in the state directory (`notify`), the
//! guest finds it at `/run/host/notify` (systemd's container interface) and its init has
//! `NOTIFY_SOCKET` naming it; systemd sends `READY=1` there once it has booted
//! (sd_notify(3)), and that is when `start --detach` returns and the launcher's own
//! service manager hears `READY=1`. A guest with another init is up once its init runs.
//!
//! Only the guest's root may send (the socket is its, mode 0600); what it sends is read
//! without blocking and taken for no more than the readiness it states.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the guest finds the socket, and the variable that names it to its init.
pub const GUEST_PATH: &str = "/run/host/notify";
pub const VAR: &str = "NOTIFY_SOCKET";

/// The most of one message read (systemd's are a few lines).
const MESSAGE_MAX: usize = 4096;

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
    fn ready_is_one_line_of_the_message() {
        assert!(says_ready(b"READY=1"));
        assert!(says_ready(b"STATUS=Startup finished\nREADY=1\n"));
        assert!(!says_ready(b"READY=0\n"));
        assert!(!says_ready(b"STATUS=READY=1\n"));
        assert!(!says_ready(b"XREADY=1"));
    }
}
