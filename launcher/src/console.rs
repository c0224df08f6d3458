//! The guest's /dev/console: a pty whose master the launcher holds and relays to its own
//! standard output.
//!
//! The launcher also keeps a descriptor of the slave open for as long as it runs, so the
//! master never sees a hang-up between two boots or while the guest has the console
//! closed (a master with no slave open reports POLLHUP without end, and EIO on read).

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;
use nix::unistd::read;

use crate::error::{Error, Result};

pub struct Console {
    master: PtyMaster,
    /// Held open so the master never hangs up (see the module documentation).
    _slave: OwnedFd,
    /// The slave's path on the host (/dev/pts/N).
    slave_path: String,
    /// False once writing to our stdout failed (a closed pipe): the guest's output is then
    /// still read, so that the guest never blocks on its console, and dropped.
    relaying: bool,
}

impl Console {
    /// A new pty; its slave is given to `owner` (the host uid and gid of the guest's root,
    /// with a user namespace), whose root could not open it otherwise.
    pub fn open(owner: Option<u32>) -> Result<Self> {
        let ctx = |what: &str| format!("console pty: {what}");
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .map_err(|e| Error::host(ctx("posix_openpt"), e))?;
        grantpt(&master).map_err(|e| Error::host(ctx("grantpt"), e))?;
        unlockpt(&master).map_err(|e| Error::host(ctx("unlockpt"), e))?;
        let name = ptsname_r(&master).map_err(|e| Error::host(ctx("ptsname"), e))?;
        let slave = open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::host(ctx(&format!("open {name}")), e))?;
        if let Some(owner) = owner {
            // the tty group of the guest (gid 5 there), as a terminal's slave has
            nix::unistd::fchown(
                &slave,
                Some(nix::unistd::Uid::from_raw(owner)),
                Some(nix::unistd::Gid::from_raw(owner + 5)),
            )
            .map_err(|e| Error::host(ctx(&format!("chown {name}")), e))?;
        }
        let flags =
            fcntl(&master, FcntlArg::F_GETFL).map_err(|e| Error::host(ctx("F_GETFL"), e))?;
        fcntl(
            &master,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(|e| Error::host(ctx("O_NONBLOCK"), e))?;
        Ok(Console {
            master,
            _slave: slave,
            slave_path: name,
            relaying: true,
        })
    }

    /// The slave's path, for a detached bind the launcher's child attaches on the guest's
    /// /dev/console.
    pub fn slave_path(&self) -> &str {
        &self.slave_path
    }

    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// Copies what the guest wrote to the console to our standard output, until there is
    /// nothing more to read right now.
    pub fn relay(&mut self) {
        let mut buf = [0u8; 8192];
        let mut out = io::stdout().lock();
        loop {
            match read(&self.master, &mut buf) {
                Ok(0) | Err(Errno::EAGAIN) | Err(Errno::EIO) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::debug!("reading the console: {e}");
                    break;
                }
                Ok(n) => {
                    if self.relaying && out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err()
                    {
                        log::debug!("standard output is gone; the console is no longer relayed");
                        self.relaying = false;
                    }
                }
            }
        }
    }
}
