//! The shim's signal mask: every signal blocked and read from a signalfd.
//!
//! Blocking is also what lets signals reach us at all: PID 1 of a namespace never gets a
//! signal whose disposition is the default, unless that signal is blocked, in which case it
//! is queued (kernel/signal.c, `sig_ignored`). A signal that comes before the child exists
//! waits in the queue and is forwarded once it does.
//!
//! The fault signals are blocked too. A real fault in the shim is delivered by the kernel
//! regardless of the mask (force_sig_fault unblocks it), so nothing is lost there; the same
//! numbers sent with kill(2) are then taken from the queue and dropped, so that a stray
//! `kill -ABRT` never kills the shim and orphans its child.

use core::ffi::c_int;

use crate::sys::{self, Fd, SigInfo, SigSet};

/// Raised by the kernel when a process faults: never forwarded (the child's own faults are
/// its own, and the same numbers sent to the shim are not meant for the child).
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
    /// Blocks every signal and opens a signalfd for them.
    pub fn block() -> sys::Result<Self> {
        let mask = SigSet::all();
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

/// Signal names, as `-p` and `-r` accept them (with or without the SIG prefix).
const NAMES: [(&str, c_int); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// The highest signal number on Linux (SIGRTMAX).
pub const MAX: c_int = 64;

/// A signal by name (`SIGTERM`, `TERM`) or number (`15`), 1 to 64.
pub fn parse(text: &str) -> Option<c_int> {
    if let Ok(n) = text.parse::<c_int>() {
        return (1..=MAX).contains(&n).then_some(n);
    }
    let name = text.strip_prefix("SIG").unwrap_or(text);
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, sig)| *sig)
}

/// True for the signals the shim passes on to its child: all but SIGCHLD (which is ours)
/// and the faults (see [`FAULTS`]).
pub fn is_forwarded(sig: c_int) -> bool {
    sig != libc::SIGCHLD && !FAULTS.contains(&sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse("SIGKILL"), Some(9));
        assert_eq!(parse("TERM"), Some(15));
        assert_eq!(parse("10"), Some(10));
        assert_eq!(parse("64"), Some(64));
        for bad in ["0", "65", "-1", "SIGNOPE", "kill", ""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

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
