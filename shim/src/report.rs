//! Failures before exec, from the shim to the launcher on the report descriptor
//! (`--report-fd`, the launcher's close-on-exec error pipe). The shim learns its own
//! child's failure from `sys::spawn`, which waits for the child's exec and gets a failure
//! back through memory it shares with the child.

use cradle_common::errpipe::Failure;

use crate::sys::{self, Fd};

/// The launcher's end of the error pipe, when the shim was given one.
pub struct Reporter {
    fd: Option<Fd>,
}

impl Reporter {
    /// Takes the descriptor and makes it close-on-exec, so that nothing the shim runs
    /// inherits it.
    pub fn new(fd: Option<Fd>) -> sys::Result<Self> {
        if let Some(fd) = fd {
            sys::set_cloexec(fd)?;
        }
        Ok(Reporter { fd })
    }

    /// True when the launcher will say what went wrong, so the shim need not.
    pub fn is_connected(&self) -> bool {
        self.fd.is_some()
    }

    /// Passes a failure on and closes the descriptor.
    pub fn failure(&mut self, failure: Failure) {
        if let Some(fd) = self.fd.take() {
            let _ = sys::write_all(fd, &failure.to_bytes());
            sys::close(fd);
        }
    }

    /// Says that the exec succeeded: the launcher reads end of file.
    pub fn success(&mut self) {
        if let Some(fd) = self.fd.take() {
            sys::close(fd);
        }
    }
}
