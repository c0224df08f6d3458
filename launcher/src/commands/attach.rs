//! `cradle console NAME`: our terminal on a running guest's console, through the socket its
//! launcher listens on (see `console`): first the last 64 KiB the console printed, then
//! whatever it prints, and what we type goes to the guest. Ctrl-] three times within a
//! second detaches; the guest runs on. Our terminal is in raw mode meanwhile, and put back
//! as it was on the way out.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use cradle_core::console::{Escape, FRAME_INPUT, FRAME_WINSIZE, RawTerminal};
use cradle_core::error::{Error, Result};
use cradle_core::guest::state::{self, Observed, validate_name};
use cradle_core::process::signals::Signals;
use cradle_core::sys;

/// How the attachment ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Ctrl-] three times: the guest runs on.
    Detached,
    /// The launcher closed the console: the guest went down, or another console took it.
    Closed,
}

fn winsize_frame(terminal: &RawTerminal) -> Option<[u8; 5]> {
    let size = sys::window_size(terminal.as_fd())?;
    let [r0, r1] = size.ws_row.to_be_bytes();
    let [c0, c1] = size.ws_col.to_be_bytes();
    Some([FRAME_WINSIZE, r0, r1, c0, c1])
}

pub fn console(state_base: &Path, name: &str) -> Result<End> {
    validate_name(name)?;
    let state = Observed::open(state_base, name)?;
    let path = state.path().join(state::CONSOLE);
    let mut stream = UnixStream::connect(&path)
        .map_err(|e| Error::host(format!("console of {name} ({})", path.display()), e))?;
    let terminal = RawTerminal::stdin();
    let mut signals = Signals::catch(&[libc::SIGWINCH])?;
    let send = |stream: &mut UnixStream, bytes: &[u8]| stream.write_all(bytes);
    if let Some(frame) = terminal.as_ref().and_then(winsize_frame) {
        let _ = send(&mut stream, &frame);
    }
    let mut escape = Escape::default();
    let mut stdin_open = true;
    let mut stdout = io::stdout().lock();
    let end = loop {
        let mut fds = vec![
            PollFd::new(stream.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.fd(), PollFlags::POLLIN),
        ];
        let stdin = io::stdin();
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let ready =
            sys::poll_ready(&mut fds, PollTimeout::NONE).map_err(|e| Error::host("poll", e))?;
        drop(fds);
        if ready[0] {
            let mut buf = [0u8; 8192];
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break End::Closed,
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]).and_then(|()| stdout.flush());
                }
            }
        }
        if ready[1] {
            for _ in signals.pending() {
                if let Some(frame) = terminal.as_ref().and_then(winsize_frame) {
                    let _ = send(&mut stream, &frame);
                }
            }
        }
        if ready.get(2) == Some(&true) {
            let mut buf = [0u8; 1024];
            match io::stdin().lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if escape.feed(&buf[..n]) {
                        break End::Detached;
                    }
                    let mut frame = vec![FRAME_INPUT];
                    frame.extend_from_slice(&(n as u16).to_be_bytes());
                    frame.extend_from_slice(&buf[..n]);
                    if send(&mut stream, &frame).is_err() {
                        break End::Closed;
                    }
                }
            }
        }
    };
    drop(terminal);
    let note = match end {
        End::Detached => format!("\r\n[cradle: detached from {name}; it runs on]\r\n"),
        End::Closed => format!("\r\n[cradle: the console of {name} closed]\r\n"),
    };
    let _ = io::stderr().write_all(note.as_bytes());
    Ok(end)
}
