//! `cradle-shim --monitor`: a detached guest's monitor while nothing happens to it.
//!
//! Once a detached guest is up, the launcher (`cradle start --detach`) execs this, handing
//! over what it holds: the pidfd of the container's first process (its child, and so ours),
//! the console (pty master, the socket `cradle console` connects to, the attached client,
//! the ring of output in a memfd), the readiness socket, and its own executable. Here the
//! console is served as the launcher serves it (`cradle_common::console`: the same ring,
//! the same frames), the readiness socket is drained, and nothing else is done: no heap
//! grows, no std and no glibc are mapped, so a host's many guests cost it little.
//!
//! Everything else is the launcher's: when the container's first process ends (a halt, a
//! reboot) or a signal asks the guest to stop, this execs the launcher again with what it
//! was given and where the console stands (`cradle __resume`). The signal stays pending
//! (blocked here, read by nobody) until the launcher catches it. SIGPIPE is ignored, as the
//! launcher ignored it (an ignored signal stays ignored across exec): a client that went
//! away is an EPIPE.

use alloc::vec::Vec;
use core::ffi::{CStr, c_char};

use cradle_common::console::{self, Frame, Frames, RING, Ring, Wrote};

use crate::Environment;
use crate::log::{Strerror, error};
use crate::sys::{self, Errno, Fd, SigSet};

/// The signals that ask the launcher to stop the guest, and our terminal's change of size
/// (the launcher's `SIGNALS`): blocked by the launcher before it exec'd us, left pending.
const SIGNALS: [i32; 5] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGWINCH,
];

/// Exit code when the arguments are not the launcher's.
const EXIT_USAGE: u8 = 2;

/// What the launcher hands over (`-1` for what it does not have).
struct Handed {
    pidfd: Fd,
    master: Fd,
    listener: Fd,
    client: Option<Fd>,
    notify: Option<Fd>,
    ring_fd: Fd,
    launcher: Fd,
    ring: Ring,
    sent: u64,
    frames: Frames,
}

/// `PIDFD,MASTER,LISTENER,NOTIFY,RING,LAUNCHER,CLIENT,TOTAL,SENT,FRAMES`: the last four
/// are where the console stands, in the form given back to the launcher.
fn parse(list: &CStr) -> Option<Handed> {
    let mut numbers = [0u64; 10];
    let mut count = 0;
    for word in list.to_bytes().split(|&b| b == b',') {
        *numbers.get_mut(count)? = number(word)?;
        count += 1;
    }
    if count != numbers.len() {
        return None;
    }
    let fd = |n: u64| (3..=i32::MAX as u64).contains(&n).then_some(n as Fd);
    let optional = |n: u64| {
        if n == NONE {
            Some(None)
        } else {
            fd(n).map(Some)
        }
    };
    Some(Handed {
        pidfd: fd(numbers[0])?,
        master: fd(numbers[1])?,
        listener: fd(numbers[2])?,
        notify: optional(numbers[3])?,
        ring_fd: fd(numbers[4])?,
        launcher: fd(numbers[5])?,
        client: optional(numbers[6])?,
        ring: Ring { total: numbers[7] },
        sent: numbers[8],
        frames: Frames::from_u64(numbers[9])?,
    })
}

/// "-1" in the list: no such descriptor.
const NONE: u64 = u64::MAX;

/// A decimal number, or `-1` ([`NONE`]).
fn number(word: &[u8]) -> Option<u64> {
    if word == b"-1" {
        return Some(NONE);
    }
    if word.is_empty() {
        return None;
    }
    word.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Appends `n` in decimal (`NONE` as `-1`) and a comma to `out`.
fn push_number(out: &mut [u8; 96], len: &mut usize, n: u64) {
    let mut buf = [0; 20];
    let digits = if n == NONE {
        b"-1"
    } else {
        console::decimal(n, &mut buf)
    };
    for &b in digits.iter().chain(b",") {
        out[*len] = b;
        *len += 1;
    }
}

/// The whole mode: `args` is what follows `--monitor`. Returns only on failure.
pub fn run(args: &[&CStr], environment: Environment) -> u8 {
    let handed = match args {
        [list, dashes, launcher_argv @ ..]
            if dashes.to_bytes() == b"--" && !launcher_argv.is_empty() =>
        {
            parse(list).map(|h| (h, launcher_argv))
        }
        _ => None,
    };
    let Some((mut m, launcher_argv)) = handed else {
        error!("--monitor is for cradle start --detach alone");
        return EXIT_USAGE;
    };
    if let Err(e) = m.serve() {
        // the launcher is still ours to run: it cleans up
        error!("monitor: {}", Strerror(e.0));
    }
    // CLIENT,TOTAL,SENT,FRAMES: where the console stands
    let mut state = [0u8; 96];
    let mut len = 0;
    let client = m.client.map_or(NONE, |fd| fd as u64);
    for n in [client, m.ring.total, m.sent, m.frames.to_u64()] {
        push_number(&mut state, &mut len, n);
    }
    // the last comma becomes the terminating NUL
    state[len - 1] = 0;
    let errno = resume(&m, launcher_argv, &state[..len], environment);
    // nobody is left to clean up: end the guest, so the next start sweeps what is left
    error!("monitor: exec the launcher: {}", Strerror(errno.0));
    let _ = sys::pidfd_kill(m.pidfd, libc::SIGKILL);
    1
}

/// Execs the launcher: its own argv, and `state` (where the console stands, ending in a
/// NUL) as the last word. Returns only on failure.
fn resume(m: &Handed, launcher_argv: &[&CStr], state: &[u8], environment: Environment) -> Errno {
    debug_assert_eq!(state.last(), Some(&0));
    let mut argv: Vec<*const c_char> = Vec::with_capacity(launcher_argv.len() + 2);
    argv.extend(launcher_argv.iter().map(|a| a.as_ptr()));
    argv.push(state.as_ptr().cast());
    argv.push(core::ptr::null());
    if let Some(client) = m.client {
        if let Err(e) = sys::keep_on_exec(client) {
            return e;
        }
    }
    sys::exec_fd(m.launcher, &argv, environment)
}

impl Handed {
    /// Serves the console until the container's first process ends or a signal is
    /// pending.
    fn serve(&mut self) -> sys::Result<()> {
        let storage = sys::map_shared(self.ring_fd, RING)?;
        let mut set = SigSet::empty();
        for sig in SIGNALS {
            set.add(sig);
        }
        sys::set_sigmask(&set)?;
        let signals = sys::signalfd(&set)?;
        loop {
            let client_events = match self.client {
                Some(_) if self.sent < self.ring.total => libc::POLLIN | libc::POLLOUT,
                Some(_) => libc::POLLIN,
                None => 0,
            };
            let mut fds = [
                pollfd(self.pidfd, libc::POLLIN),
                pollfd(signals, libc::POLLIN),
                pollfd(self.master, libc::POLLIN),
                pollfd(self.listener, libc::POLLIN),
                pollfd(self.client.unwrap_or(-1), client_events),
                pollfd(self.notify.unwrap_or(-1), libc::POLLIN),
            ];
            sys::poll(&mut fds)?;
            let ready = |i: usize| fds[i].revents != 0;
            if ready(0) || ready(1) {
                sys::close(signals);
                return Ok(());
            }
            if ready(2) {
                self.drain(storage);
            }
            if ready(3) {
                self.accept();
            }
            if ready(4) {
                self.read_client();
            }
            if ready(5) {
                drain_notify(self.notify.unwrap_or(-1));
            }
            self.flush(storage);
        }
    }

    /// Reads what the guest wrote, one ring's worth at most: a guest that writes without
    /// end does not keep us from the shim's end or a signal.
    fn drain(&mut self, storage: &mut [u8]) {
        let mut buf = [0u8; 4096];
        let mut taken = 0;
        while taken < RING {
            match sys::read(self.master, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.ring.push(storage, &buf[..n]);
                    taken += n;
                }
            }
        }
    }

    /// Sends the client what it has not had.
    fn flush(&mut self, storage: &[u8]) {
        let Some(client) = self.client else {
            return;
        };
        let alive = console::flush(&self.ring, storage, &mut self.sent, |bytes| {
            loop {
                match sys::write(client, bytes) {
                    Ok(n) => return Wrote::Some(n),
                    Err(Errno(libc::EAGAIN)) => return Wrote::WouldBlock,
                    Err(Errno(libc::EINTR)) => {}
                    Err(_) => return Wrote::Gone,
                }
            }
        });
        if !alive {
            self.drop_client();
        }
    }

    /// A new client takes the console over; the one it replaces is told so.
    fn accept(&mut self) {
        let Ok(client) = sys::accept(self.listener) else {
            return;
        };
        if let Some(old) = self.client {
            let _ = sys::write(old, b"\r\n[cradle: another console attached; detached]\r\n");
            sys::close(old);
        }
        self.client = Some(client);
        self.sent = self.ring.oldest();
        self.frames = Frames::default();
    }

    /// What the client typed goes to the guest (what the pty takes now: the rest is
    /// dropped, as a serial line drops it); a window size goes to the pty.
    fn read_client(&mut self) {
        let Some(client) = self.client else {
            return;
        };
        // a client that hung up reads as the end of file
        let mut buf = [0u8; 4096];
        let n = match sys::read(client, &mut buf) {
            Ok(0) => return self.drop_client(),
            Ok(n) => n,
            Err(Errno(libc::EAGAIN | libc::EINTR)) => return,
            Err(_) => return self.drop_client(),
        };
        let master = self.master;
        let read = self.frames.feed(&buf[..n], |frame| match frame {
            Frame::Input(bytes) => {
                let _ = sys::write(master, bytes);
            }
            Frame::WindowSize(rows, cols) => {
                let _ = sys::set_window_size(master, rows, cols);
            }
        });
        if read.is_err() {
            // not a client of ours
            self.drop_client();
        }
    }

    fn drop_client(&mut self) {
        if let Some(client) = self.client.take() {
            sys::close(client);
        }
        self.frames = Frames::default();
    }
}

/// Reads and forgets what a guest that is up says on the readiness socket (its
/// `READY=1` is the launcher's business, and was heard before we started).
fn drain_notify(fd: Fd) {
    let mut buf = [0u8; 4096];
    // a bounded number per turn, as for the console
    for _ in 0..64 {
        if sys::read(fd, &mut buf).is_err() {
            break;
        }
    }
}

fn pollfd(fd: Fd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
