//! The record a child writes on the close-on-exec error pipe (libvzctl's `err_p`).
//!
//! The parent opens a pipe with `O_CLOEXEC` before it forks. A child that fails before exec
//! writes one [`Failure`] (12 bytes, below `PIPE_BUF`, so the write is atomic) and exits; a
//! child whose exec succeeds has its end closed by the kernel. The parent drops its own
//! write end and reads to end of file: nothing means every exec on the way succeeded, one
//! record says which step failed and with which errno.
//!
//! The pipe spans two execs: the launcher's child passes its end to the shim, which keeps
//! it until its own child (the guest init, or the command) has exec'd. So a bad template
//! reaches the launcher before anything of the guest has run, and end of file means the
//! guest init or the command runs.

use crate::stage::Stage;

/// Size of a record on the wire.
pub const RECORD_LEN: usize = 12;

/// A failed step: which one, an index that the stage gives a meaning to, and the errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    pub detail: u32,
    pub errno: i32,
}

impl Failure {
    pub fn new(stage: Stage, detail: u32, errno: i32) -> Self {
        Failure {
            stage,
            detail,
            errno,
        }
    }

    /// The record as written on the pipe: stage, detail and errno, little-endian.
    pub fn to_bytes(self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0..4].copy_from_slice(&(self.stage as u32).to_le_bytes());
        out[4..8].copy_from_slice(&self.detail.to_le_bytes());
        out[8..12].copy_from_slice(&self.errno.to_le_bytes());
        out
    }

    /// Reads a record. `None` when the bytes are not exactly one record of a known stage.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; RECORD_LEN] = bytes.try_into().ok()?;
        let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        Some(Failure {
            stage: Stage::from_u32(u32::from_le_bytes(word(0)))?,
            detail: u32::from_le_bytes(word(4)),
            errno: i32::from_le_bytes(word(8)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let failure = Failure::new(Stage::ExecInit, 2, libc::ENOEXEC);
        assert_eq!(Failure::from_bytes(&failure.to_bytes()), Some(failure));
    }

    #[test]
    fn short_long_or_unknown_records_are_refused() {
        let bytes = Failure::new(Stage::Setup, 7, libc::EPERM).to_bytes();
        assert_eq!(Failure::from_bytes(&bytes[..RECORD_LEN - 1]), None);
        let mut long = [0u8; RECORD_LEN + 1];
        long[..RECORD_LEN].copy_from_slice(&bytes);
        assert_eq!(Failure::from_bytes(&long), None);
        let mut unknown = bytes;
        unknown[0..4].copy_from_slice(&999u32.to_le_bytes());
        assert_eq!(Failure::from_bytes(&unknown), None);
    }
}
