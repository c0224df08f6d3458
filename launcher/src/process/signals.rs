//! The launcher's signals: signal-hook's handlers write to a socket pair, whose read end
//! sits in the same poll(2) as everything else the launcher waits on. No thread, so the
//! launcher stays single-threaded and may fork at any time.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use crate::error::{Error, Result};

/// The signals a launcher passes on to the command it runs (`cradle run`, `cradle exec`,
/// `cradle-oci exec`), through the shim, which forwards them.
pub const FORWARDED: [i32; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGALRM,
];

pub struct Signals {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
}

impl Signals {
    /// Starts catching `signals` (their default action no longer applies).
    pub fn catch(signals: &[i32]) -> Result<Self> {
        let (read, write) = UnixStream::pair().map_err(|e| Error::host("signal pipe", e))?;
        read.set_nonblocking(true)
            .map_err(|e| Error::host("signal pipe", e))?;
        let delivery = SignalDelivery::with_pipe(read, write, SignalOnly, signals)
            .map_err(|e| Error::host("catching signals", e))?;
        Ok(Signals { delivery })
    }

    /// Readable when a signal arrived.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.delivery.get_read().as_fd()
    }

    /// The signals that arrived since the last call.
    pub fn pending(&mut self) -> Vec<i32> {
        self.delivery.pending().collect()
    }
}
