//! The shim's signal mask: everything blocked and read from a signalfd, except the signals
//! the kernel raises for a fault in the shim itself.
//!
//! Blocking is also what lets signals reach us at all: PID 1 of a namespace never gets a
//! signal whose disposition is the default, unless that signal is blocked, in which case it
//! is queued (kernel/signal.c, `sig_ignored`). A signal that comes before the child exists
//! waits in the queue and is forwarded once it does.

use core::ffi::c_int;

use crate::sys::{self, Fd, SigInfo, SigSet};

/// Raised by the kernel when *we* fault. Blocking them would not stop the kernel from
/// killing us, and would hide the reason; they stay at their default (catatonit does the
/// same). They are never forwarded.
pub const FAULTS: [c_int; 7] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// The blocked set and its signalfd.
pub struct Signals {
    fd: Fd,
    /// The mask the shim was started with, for the command it runs.
    original: SigSet,
}

impl Signals {
    /// Blocks every signal but [`FAULTS`] and opens a signalfd for them.
    pub fn block() -> sys::Result<Self> {
        let mut mask = SigSet::full();
        for sig in FAULTS {
            mask.remove(sig);
        }
        let original = sys::set_sigmask(&mask)?;
        let fd = sys::signalfd(&mask)?;
        Ok(Signals { fd, original })
    }

    /// Waits for the next signal.
    pub fn next(&self) -> sys::Result<SigInfo> {
        sys::read_signal(self.fd)
    }

    /// The mask the shim inherited (for the child, before it execs).
    pub fn original(&self) -> &SigSet {
        &self.original
    }
}

/// True for the signals the shim passes on to its child: all but SIGCHLD (which is ours)
/// and the faults (which are never queued, see [`FAULTS`]).
pub fn is_forwarded(sig: c_int) -> bool {
    sig != libc::SIGCHLD && !FAULTS.contains(&sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigchld_and_faults_are_not_forwarded() {
        assert!(!is_forwarded(libc::SIGCHLD));
        for sig in FAULTS {
            assert!(!is_forwarded(sig));
        }
        for sig in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGWINCH,
        ] {
            assert!(is_forwarded(sig));
        }
    }
}
