//! `cradle exec NAME -- CMD`: runs a command inside a running guest, in all of its
//! namespaces, its root and its environment, with our standard streams; exits with the
//! command's status.

use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;

use crate::config;
use crate::error::{Error, Result};
use crate::guest::{Guest, status_code};
use crate::signals::Signals;
use crate::state::{Observed, validate_name};
use crate::sys;

/// How long exec waits for a guest that is still booting.
const BOOT_WAIT: Duration = Duration::from_secs(30);

/// Passed on to the command. SIGINT and SIGQUIT are caught but not passed: a terminal
/// sends them to the command itself (it is in our process group).
const CAUGHT: [i32; 7] = [
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGINT,
    libc::SIGQUIT,
];

pub fn exec(state_base: &Path, name: &str, env: &[String], command: &[String]) -> Result<u8> {
    validate_name(name)?;
    config::check_env(env)?;
    if command.is_empty() {
        return Err(Error::Usage("exec needs a command after --".into()));
    }
    let state = Observed::open(state_base, name)?;
    let guest = Guest::find(&state, name, BOOT_WAIT)?;
    guest.enter()?;
    let child = guest
        .command(command, env)
        .spawn()
        .map_err(|e| Error::Exec {
            command: command[0].clone(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    let pid = Pid::from_raw(child.id() as i32);
    let pidfd = sys::pidfd_open(pid).map_err(|e| Error::host("pidfd_open", e))?;
    let mut signals = Signals::catch(&CAUGHT)?;
    let mut child = child;
    loop {
        let mut fds = [
            PollFd::new(signals.fd(), PollFlags::POLLIN),
            PollFd::new(std::os::fd::AsFd::as_fd(&pidfd), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::host("poll", e)),
        }
        for sig in signals.pending() {
            if sig != libc::SIGINT && sig != libc::SIGQUIT {
                let _ = sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(&pidfd), sig);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status_code(status));
        }
    }
}
