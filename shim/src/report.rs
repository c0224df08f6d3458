//! Failures before exec, from the shim to the launcher on the report descriptor
//! (`--report-fd`, the launcher's close-on-exec error pipe). The shim learns its own
//! child's failure from `sys::spawn`, which waits for the child's exec and gets a failure
//! back through memory it shares with the child.

use cradle_common::errpipe::Failure;

use crate::sys::{self, Fd};

/// The launcher's end of the error pipe, when the shim was given one; and the descriptor
/// to say "started" on (`--started-fd`: an OCI runtime's exec.fifo, so that `start`
/// returns once the command runs and the shim takes signals).
pub struct Reporter {
    fd: Option<Fd>,
    started: Option<Fd>,
}

impl Reporter {
    /// Takes the descriptors and makes them close-on-exec, so that nothing the shim runs
    /// inherits them.
    pub fn new(fd: Option<Fd>, started: Option<Fd>) -> sys::Result<Self> {
        for fd in fd.iter().chain(&started) {
            sys::set_cloexec(*fd)?;
        }
        Ok(Reporter { fd, started })
    }

    /// True when the launcher will say what went wrong, so the shim need not.
    pub fn is_connected(&self) -> bool {
        self.fd.is_some()
    }

    /// Passes a failure on and closes the descriptors (nothing said on `started`).
    pub fn failure(&mut self, failure: Failure) {
        if let Some(fd) = self.fd.take() {
            let _ = sys::write_all(fd, &failure.to_bytes());
            sys::close(fd);
        }
        if let Some(fd) = self.started.take() {
            sys::close(fd);
        }
    }

    /// Says that the exec succeeded: the launcher reads end of file, and `started` one
    /// byte.
    pub fn success(&mut self) {
        if let Some(fd) = self.fd.take() {
            sys::close(fd);
        }
        if let Some(fd) = self.started.take() {
            let _ = sys::write_all(fd, b"0");
            sys::close(fd);
        }
    }
}
