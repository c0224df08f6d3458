//! The shim's log: one line per message on standard error, `cradle-shim[PID]: LEVEL: text`.
//!
//! There is no /dev/log in a guest that is still booting, so this writes to stderr only
//! (the guest's console in boot mode). Lines longer than the buffer are cut, never split.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

use crate::sys;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

/// Messages at or below this level are written. Warnings by default, as tini does.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);

pub fn set_max_level(level: u8) {
    MAX_LEVEL.store(level.min(Level::Debug as u8), Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - 1 - self.len; // keep one byte for the newline
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// A C string for a message: its UTF-8 as it is, anything else as U+FFFD. No allocation.
pub struct Lossy<'a>(pub &'a core::ffi::CStr);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for chunk in self.0.to_bytes().utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

/// The text of an errno value.
pub struct Strerror(pub i32);

impl fmt::Display for Strerror {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Lossy(sys::strerror(sys::Errno(self.0))).fmt(f)
    }
}

pub fn emit(level: Level, args: fmt::Arguments) {
    if !enabled(level) {
        return;
    }
    let name = match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
    };
    let mut line = Line {
        buf: [0; 512],
        len: 0,
    };
    let _ = write!(line, "cradle-shim[{}]: {}: {}", sys::getpid(), name, args);
    line.buf[line.len] = b'\n';
    let _ = sys::write_all(2, &line.buf[..=line.len]);
}

macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, format_args!($($arg)*)) };
}
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Warn, format_args!($($arg)*)) };
}
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Info, format_args!($($arg)*)) };
}
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Debug, format_args!($($arg)*)) };
}
pub(crate) use {debug, error, info, warning};
