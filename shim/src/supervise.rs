//! The loop both modes share: wait for a signal, reap on SIGCHLD, hand the rest over.
//!
//! It blocks in read(2) on the signalfd: no timeout, no polling (tini wakes every second).
//! Signals coalesce (several SIGCHLD are one), so every SIGCHLD reaps until nothing is
//! left. Once the child is running the shim no longer gives up on errors: it warns and
//! carries on, because PID 1 going away takes the whole container with it.

use core::ffi::c_int;

use cradle_common::outcome::Status;

use crate::log::{Strerror, debug, warning};
use crate::signals::{self, Signals};
use crate::sys::{self, Errno, Pid};

/// What a mode does with what the loop sees.
pub trait Supervisor {
    /// A signal to pass on (never SIGCHLD or a fault).
    fn forward(&mut self, sig: c_int);
    /// The main child stopped (job control).
    fn child_stopped(&mut self) {}
    /// A process other than the main child was reaped (an orphan).
    fn reaped(&mut self, pid: Pid, status: Status) {
        debug!("reaped {} ({})", pid, status);
    }
}

/// Reaps every child that has ended, without blocking. Returns the status of `main` if it
/// was among them.
fn reap_ready(main: Pid, supervisor: &mut dyn Supervisor) -> Option<Status> {
    let mut main_status = None;
    loop {
        match sys::wait_any(true) {
            Ok(Some(reaped)) => match Status::from_raw(reaped.wstatus) {
                Some(status) if reaped.pid == main => main_status = Some(status),
                Some(status) => supervisor.reaped(reaped.pid, status),
                None if reaped.pid == main => supervisor.child_stopped(),
                None => {}
            },
            Ok(None) | Err(Errno(libc::ECHILD)) => return main_status,
            Err(Errno(e)) => {
                warning!("waitpid: {}", Strerror(e));
                return main_status;
            }
        }
    }
}

/// Reaps every child until none is left, blocking (after everything was killed).
pub fn reap_all() {
    while let Ok(Some(_)) | Err(Errno(libc::EINTR)) = sys::wait_any(false) {}
}

/// Runs until `main` ends and returns how it ended.
pub fn until_exit(signals: &Signals, main: Pid, supervisor: &mut dyn Supervisor) -> Status {
    // the child may have ended before its SIGCHLD was queued to us
    if let Some(status) = reap_ready(main, supervisor) {
        return status;
    }
    loop {
        match signals.next() {
            Ok(info) if info.signo == libc::SIGCHLD => {
                if let Some(status) = reap_ready(main, supervisor) {
                    return status;
                }
            }
            Ok(info) if signals::is_forwarded(info.signo) => {
                debug!("signal {} from pid {}", info.signo, info.pid);
                supervisor.forward(info.signo);
            }
            Ok(_) => {}
            Err(errno) => {
                // cannot happen with a valid signalfd; do not spin: wait for a child instead
                warning!("reading signals: {}", Strerror(errno.0));
                if let Ok(Some(reaped)) = sys::wait_any(false) {
                    if reaped.pid == main {
                        if let Some(status) = Status::from_raw(reaped.wstatus) {
                            return status;
                        }
                    }
                }
            }
        }
    }
}
