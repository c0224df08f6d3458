//! Failures before exec: from a child to the shim on a close-on-exec pipe, and from the
//! shim to the launcher on the report descriptor (`--report-fd`).

use cradle_common::errpipe::{Failure, RECORD_LEN};
use cradle_common::stage::Stage;

use crate::sys::{self, Errno, Fd};

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

/// Reads a child's error pipe to end of file (the child's exec closes its end): `None`
/// when the exec succeeded, the failure otherwise. Closes `read_fd`.
pub fn wait_for_exec(read_fd: Fd) -> Option<Failure> {
    let mut buf = [0u8; RECORD_LEN + 1];
    let mut len = 0;
    while len < buf.len() {
        match sys::read(read_fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno(errno)) => {
                sys::close(read_fd);
                return Some(Failure::new(Stage::SpawnGuest, 0, errno));
            }
        }
    }
    sys::close(read_fd);
    match len {
        0 => None,
        _ => Some(Failure::from_bytes(&buf[..len]).unwrap_or(Failure::new(
            Stage::SpawnGuest,
            0,
            libc::EPROTO,
        ))),
    }
}

/// In a child before exec: writes the failure on its error pipe and exits with `code`.
pub fn fail_child(write_fd: Fd, failure: Failure, code: u8) -> ! {
    let _ = sys::write_all(write_fd, &failure.to_bytes());
    sys::exit(code)
}
