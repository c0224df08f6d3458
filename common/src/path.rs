//! Paths with a number in them (`/proc/self/fd/7`, `/dev/pts/3`), built without
//! allocating: for a child between fork and exec, and for the shim.

use core::ffi::CStr;

use crate::console::decimal;

/// Writes the decimal `n` after `prefix` into `buf` with a NUL. None if it does not fit.
pub fn with_number<'b>(buf: &'b mut [u8; 64], prefix: &[u8], n: u32) -> Option<&'b CStr> {
    let mut digits = [0u8; 20];
    let number = decimal(u64::from(n), &mut digits);
    let total = prefix.len() + number.len();
    if total + 1 > buf.len() {
        return None;
    }
    buf[..prefix.len()].copy_from_slice(prefix);
    buf[prefix.len()..total].copy_from_slice(number);
    buf[total] = 0;
    CStr::from_bytes_with_nul(&buf[..=total]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_with_a_number_is_written_without_allocating() {
        let mut buf = [0u8; 64];
        let path = with_number(&mut buf, b"/proc/self/fd/", 1207).unwrap();
        assert_eq!(path.to_bytes(), b"/proc/self/fd/1207");
        let path = with_number(&mut buf, b"/dev/pts/", 0).unwrap();
        assert_eq!(path.to_bytes(), b"/dev/pts/0");
        assert!(with_number(&mut buf, &[b'x'; 60], 12345).is_none());
    }
}
