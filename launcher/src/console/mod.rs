//! The guest's /dev/console: a pty whose master the launcher holds, and everything that
//! reads and writes it from the host's side.
//!
//! - What the guest writes goes into a ring of its last 64 KiB ([`Ring`]), and from there,
//!   as fast as each can take it, to our standard output (a foreground `start`) and to the
//!   client attached by `cradle console` (see `attach`), which first gets what the ring
//!   holds. Nothing the console does ever blocks the launcher: every descriptor is
//!   non-blocking, a reader that stalls is left behind (it misses what the ring no longer
//!   holds, and is told so) while signals, halts, reboots and the shim's exit are handled
//!   as ever.
//! - What is typed goes to the guest: from our own terminal, in raw mode, when `start`
//!   runs in the foreground on one, and from the attached client. Ctrl-] three times within
//!   a second on our terminal asks to power the guest off (systemd-nspawn's key); the
//!   client detaches on it instead.
//! - One client at a time: a new `cradle console` takes the console over, and the one it
//!   replaces is told so.
//!
//! The launcher (and the shim's monitor mode, to which a detached launcher hands the console
//! over with the ring: see `handoff`) keeps a descriptor of the slave open for as long as it
//! runs, so the master never sees a hang-up between two boots or while the guest has the console closed
//! (a master with no slave open reports POLLHUP without end, and EIO on read).

pub mod notify;
pub mod relay;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::poll::{PollFd, PollFlags};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{MsgFlags, send};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::{isatty, read, write};

use cradle_common::console::{self, Frame, Frames, RING, Ring, Wrote};
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::error::{Error, Result};
use crate::handoff::{ConsoleFds, ConsoleState, Taken};
use crate::sys;

pub use cradle_common::console::{FRAME_INPUT, FRAME_WINSIZE};

/// At a boot's end, how long our standard output may take nothing before what it has not
/// taken of the console is left behind, and how long it may take in all (see
/// [`Console::drain`]).
const CATCH_UP_QUIET_MS: u16 = 1000;
const CATCH_UP_MOST: Duration = Duration::from_secs(5);

/// The byte Ctrl-] sends, and how many within [`ESCAPE_WINDOW`] make the escape.
pub const ESCAPE_KEY: u8 = 0x1d;
pub const ESCAPE_PRESSES: usize = 3;
pub const ESCAPE_WINDOW: Duration = Duration::from_secs(1);

/// Somewhere the console's output goes, with how far it got.
struct Sink<W> {
    out: W,
    sent: u64,
}

impl<W: Write> Sink<W> {
    /// Writes what it can of what it has not got yet, without blocking. False when the
    /// sink is gone (an error other than "would block").
    fn flush(&mut self, ring: &Ring, storage: &[u8]) -> bool {
        let out = &mut self.out;
        console::flush(ring, storage, &mut self.sent, |bytes| {
            loop {
                match out.write(bytes) {
                    Ok(n) => return Wrote::Some(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wrote::WouldBlock,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Wrote::Gone,
                }
            }
        })
    }

    fn behind(&self, ring: &Ring) -> bool {
        self.sent < ring.total
    }
}

/// Counts Ctrl-] presses: true on the [`ESCAPE_PRESSES`]th within [`ESCAPE_WINDOW`].
#[derive(Default)]
pub struct Escape {
    presses: Vec<Instant>,
}

impl Escape {
    pub fn feed(&mut self, input: &[u8]) -> bool {
        for &byte in input {
            if byte != ESCAPE_KEY {
                self.presses.clear();
                continue;
            }
            let now = Instant::now();
            self.presses
                .retain(|t| now.duration_since(*t) < ESCAPE_WINDOW);
            self.presses.push(now);
            if self.presses.len() >= ESCAPE_PRESSES {
                self.presses.clear();
                return true;
            }
        }
        false
    }
}

/// A terminal put in raw mode, put back as it was when dropped.
pub struct RawTerminal {
    fd: OwnedFd,
    saved: Termios,
}

impl RawTerminal {
    /// Our standard input's terminal in raw mode, when standard input is a terminal.
    pub fn stdin() -> Option<Self> {
        let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        let saved = termios::tcgetattr(&fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { fd, saved })
    }
}

impl AsFd for RawTerminal {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// The client attached through the console socket.
struct Client {
    sink: Sink<UnixStream>,
    frames: Frames,
}

/// What the console asks of the launcher.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Ctrl-] three times on our own terminal: power the guest off.
    PowerOff,
}

/// Which of the console's descriptors poll(2) found ready (see [`Console::poll_fds`]).
#[derive(Default)]
pub struct Ready {
    master: bool,
    stdout: bool,
    stdin: bool,
    listener: bool,
    client: bool,
}

/// Where [`Console::poll_fds`] put the console's descriptors.
pub struct Slots {
    master: usize,
    stdout: Option<usize>,
    stdin: Option<usize>,
    listener: Option<usize>,
    client: Option<usize>,
}

pub struct Console {
    master: OwnedFd,
    /// Held open so the master never hangs up (see the module documentation).
    _slave: OwnedFd,
    /// The slave's path on the host (/dev/pts/N).
    slave_path: String,
    ring: Ring,
    /// The ring's bytes ([`RING`] of them).
    storage: Vec<u8>,
    /// Our standard output, when the launcher runs in the foreground.
    stdout: Option<Sink<Stdout>>,
    /// Our terminal, when the launcher runs in the foreground on one: what is typed on it
    /// goes to the guest.
    terminal: Option<RawTerminal>,
    escape: Escape,
    listener: Option<(UnixListener, PathBuf)>,
    client: Option<Client>,
    /// Where the ring's bytes pass to a monitor (see `handoff`), once made.
    ring_memfd: Option<File>,
}

/// Our standard output, where a foreground guest's console goes, written as the
/// descriptor we were given would be: what the guest prints lands where a write of ours
/// lands (a file's offset, which `>file 2>&1` shares with our standard error, so the
/// launcher's own lines follow the console and never overwrite it; a file's end for
/// `>>`), and no write of it waits for a reader (see [`Stdout::given`]).
struct Stdout {
    fd: OwnedFd,
    /// A socket: written by send(2) with `MSG_DONTWAIT`.
    socket: bool,
}

impl Stdout {
    /// Our standard output, when it is open, as the module needs it: a write that cannot
    /// be taken now is "would block", and nothing is changed that the shell and our
    /// standard error share with us (`O_NONBLOCK` is a flag of the open file, not of
    /// the descriptor).
    ///
    /// - A file, /dev/null or another device that is no terminal: a copy of the
    ///   descriptor. A write to it never waits on a reader.
    /// - A socket (a service's journal): a copy, written with `MSG_DONTWAIT`.
    /// - A terminal, a pipe or a FIFO, which have no offset: opened again through /proc,
    ///   a new open file of the same terminal or pipe whose `O_NONBLOCK` is ours alone;
    ///   where that cannot be done, a copy, whose writes may then wait.
    fn given() -> Option<Self> {
        let given = sys::std_stream(1);
        let kind = SFlag::from_bits_truncate(fstat(given).ok()?.st_mode) & SFlag::S_IFMT;
        let copy = |socket| {
            let fd = given.try_clone_to_owned().ok()?;
            Some(Stdout { fd, socket })
        };
        let paced_by_a_reader = match kind {
            SFlag::S_IFSOCK => return copy(true),
            SFlag::S_IFIFO => true,
            SFlag::S_IFCHR => isatty(given).unwrap_or(false),
            _ => false,
        };
        if !paced_by_a_reader {
            return copy(false);
        }
        let reopened = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open("/proc/self/fd/1");
        match reopened {
            Ok(file) => Some(Stdout {
                fd: file.into(),
                socket: false,
            }),
            Err(e) => {
                log::debug!("standard output cannot be opened again ({e}): written as given");
                copy(false)
            }
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = if self.socket {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            send(self.fd.as_raw_fd(), bytes, flags)
        } else {
            write(&self.fd, bytes)
        };
        written.map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stdout {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A new pty: its master (non-blocking), its slave and the slave's path. The slave is
/// given to `owner` (the host uid and gid of the guest's root, with a user namespace),
/// whose root could not open it otherwise.
fn new_pty(owner: Option<u32>) -> Result<(OwnedFd, OwnedFd, String)> {
    let ctx = |what: &str| format!("pty: {what}");
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| Error::host(ctx("posix_openpt"), e))?;
    grantpt(&master).map_err(|e| Error::host(ctx("grantpt"), e))?;
    unlockpt(&master).map_err(|e| Error::host(ctx("unlockpt"), e))?;
    let name = ptsname_r(&master).map_err(|e| Error::host(ctx("ptsname"), e))?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::host(ctx(&format!("open {name}")), e))?;
    if let Some(owner) = owner {
        // the tty group of the guest (gid 5 there), as a terminal's slave has
        nix::unistd::fchown(
            &slave,
            Some(nix::unistd::Uid::from_raw(owner)),
            Some(nix::unistd::Gid::from_raw(owner + 5)),
        )
        .map_err(|e| Error::host(ctx(&format!("chown {name}")), e))?;
    }
    let flags = fcntl(&master, FcntlArg::F_GETFL).map_err(|e| Error::host(ctx("F_GETFL"), e))?;
    fcntl(
        &master,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|e| Error::host(ctx("O_NONBLOCK"), e))?;
    Ok((OwnedFd::from(master), slave, name))
}

/// A new pty for a command (see `relay`): its master (non-blocking) and its slave.
pub fn open_pty(owner: Option<u32>) -> Result<(OwnedFd, OwnedFd)> {
    new_pty(owner).map(|(master, slave, _)| (master, slave))
}

impl Console {
    /// A new pty; its slave is given to `owner` (the host uid and gid of the guest's root,
    /// with a user namespace), whose root could not open it otherwise. `foreground`: the
    /// output also goes to our standard output, and, when standard input is a terminal,
    /// what is typed there goes to the guest.
    pub fn open(owner: Option<u32>, foreground: bool) -> Result<Self> {
        let (master, slave, name) = new_pty(owner)?;
        let terminal = if foreground {
            RawTerminal::stdin()
        } else {
            None
        };
        let console = Console {
            master,
            _slave: slave,
            slave_path: name,
            ring: Ring::default(),
            storage: vec![0; RING],
            stdout: if foreground {
                Stdout::given().map(|out| Sink { out, sent: 0 })
            } else {
                None
            },
            terminal,
            escape: Escape::default(),
            listener: None,
            client: None,
            ring_memfd: None,
        };
        console.resize_from_terminal();
        Ok(console)
    }

    /// Takes `cradle console` clients on a socket at `path` (in the state directory; only
    /// the host's root may connect).
    pub fn listen(&mut self, path: &Path) -> Result<()> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .map_err(|e| Error::host(format!("console socket {}", path.display()), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::host(format!("console socket {}", path.display()), e))?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| Error::host(format!("console socket {}", path.display()), e))?;
        self.listener = Some((listener, path.to_owned()));
        Ok(())
    }

    /// The slave's path, for a detached bind the launcher's child attaches on the guest's
    /// /dev/console.
    pub fn slave_path(&self) -> &str {
        &self.slave_path
    }

    /// Gives the guest's console the size of our terminal (foreground on a terminal).
    pub fn resize_from_terminal(&self) {
        if let Some(terminal) = &self.terminal {
            if let Some(size) = sys::window_size(terminal.fd.as_fd()) {
                let _ = sys::set_window_size(self.master.as_fd(), &size);
            }
        }
    }

    /// Adds the descriptors the console waits on to `fds`.
    pub fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) -> Slots {
        let mut add = |fd: BorrowedFd<'a>, events: PollFlags| {
            fds.push(PollFd::new(fd, events));
            fds.len() - 1
        };
        Slots {
            master: add(self.master.as_fd(), PollFlags::POLLIN),
            stdout: self
                .stdout
                .as_ref()
                .filter(|s| s.behind(&self.ring))
                .map(|s| add(s.out.as_fd(), PollFlags::POLLOUT)),
            stdin: self
                .terminal
                .as_ref()
                .map(|t| add(t.fd.as_fd(), PollFlags::POLLIN)),
            listener: self
                .listener
                .as_ref()
                .map(|(l, _)| add(l.as_fd(), PollFlags::POLLIN)),
            client: self.client.as_ref().map(|c| {
                let mut events = PollFlags::POLLIN;
                if c.sink.behind(&self.ring) {
                    events |= PollFlags::POLLOUT;
                }
                add(c.sink.out.as_fd(), events)
            }),
        }
    }

    /// Which of the console's `slots` poll(2) found ready (`ready`: every descriptor's).
    pub fn ready(ready: &[bool], slots: &Slots) -> Ready {
        let is = |i: Option<usize>| i.is_some_and(|i| ready[i]);
        Ready {
            master: is(Some(slots.master)),
            stdout: is(slots.stdout),
            stdin: is(slots.stdin),
            listener: is(slots.listener),
            client: is(slots.client),
        }
    }

    /// Does what `ready` calls for: never blocks.
    pub fn service(&mut self, ready: &Ready) -> Option<Event> {
        if ready.master {
            self.read_guest(RING);
        }
        if ready.listener {
            self.accept();
        }
        if ready.client {
            self.read_client();
        }
        let mut event = None;
        if ready.stdin {
            event = self.read_terminal();
        }
        if ready.stdout || ready.master || ready.client || ready.listener {
            self.flush();
        }
        event
    }

    /// Reads what the guest wrote, until there is nothing more to read right now, and
    /// sends it on: the last call before a boot's end, when the guest writes no more.
    pub fn drain(&mut self) {
        self.read_guest(usize::MAX);
        self.flush();
        self.catch_up_stdout();
    }

    /// Gives our standard output, when it is behind (a slow reader of a pipe or a
    /// terminal), what it has not taken yet of what the guest printed, before the
    /// launcher says anything of the boot's end there: for as long as it takes more within
    /// [`CATCH_UP_QUIET_MS`] each time, [`CATCH_UP_MOST`] in all. A reader that stalls is
    /// left behind, as ever; the guest is down, so there is at most one ring to send.
    fn catch_up_stdout(&mut self) {
        let deadline = Instant::now() + CATCH_UP_MOST;
        while let Some(stdout) = &mut self.stdout {
            if !stdout.behind(&self.ring) || Instant::now() >= deadline {
                return;
            }
            let mut fds = [PollFd::new(stdout.out.as_fd(), PollFlags::POLLOUT)];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(CATCH_UP_QUIET_MS)) {
                Ok(1..) => {}
                Err(Errno::EINTR) => continue,
                Ok(_) | Err(_) => {
                    log::debug!("standard output takes no more; the rest of the console is left");
                    return;
                }
            }
            let sent = stdout.sent;
            if !stdout.flush(&self.ring, &self.storage) {
                log::debug!("standard output is gone; the console is no longer relayed there");
                self.stdout = None;
            } else if stdout.sent == sent {
                // ready, yet it took nothing (an error that is not "would block" did not
                // come either): no progress to wait for
                return;
            }
        }
    }

    /// Reads at most about `budget` bytes of what the guest wrote, or what there is: a
    /// guest that writes without end gets one ring's worth per turn of the launcher's
    /// loop, which then sees to its signals, the shim and the rest before more.
    fn read_guest(&mut self, budget: usize) {
        let mut buf = [0u8; 8192];
        let mut taken = 0;
        while taken < budget {
            match read(&self.master, &mut buf) {
                Ok(0) | Err(Errno::EAGAIN) | Err(Errno::EIO) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::debug!("reading the console: {e}");
                    break;
                }
                Ok(n) => {
                    self.ring.push(&mut self.storage, &buf[..n]);
                    taken += n;
                }
            }
        }
    }

    fn flush(&mut self) {
        if let Some(stdout) = &mut self.stdout {
            if !stdout.flush(&self.ring, &self.storage) {
                log::debug!("standard output is gone; the console is no longer relayed there");
                self.stdout = None;
            }
        }
        if let Some(client) = &mut self.client {
            if !client.sink.flush(&self.ring, &self.storage) {
                log::debug!("the console's client is gone");
                self.client = None;
            }
        }
    }

    /// Input for the guest: what the pty takes now (a guest that does not read its
    /// console does not make us wait; the rest is dropped, as a serial line drops it).
    fn to_guest(&self, input: &[u8]) {
        match write(&self.master, input) {
            Ok(n) if n < input.len() => {
                log::debug!("console input: {} bytes dropped", input.len() - n)
            }
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(e) => log::debug!("console input: {e}"),
        }
    }

    fn read_terminal(&mut self) -> Option<Event> {
        let Some(terminal) = &self.terminal else {
            return None;
        };
        let mut buf = [0u8; 1024];
        match read(&terminal.fd, &mut buf) {
            Ok(0) | Err(_) => {
                // end of input: the guest keeps running, with no more of it
                self.terminal = None;
                None
            }
            Ok(n) => {
                let escape = self.escape.feed(&buf[..n]);
                self.to_guest(&buf[..n]);
                escape.then_some(Event::PowerOff)
            }
        }
    }

    fn accept(&mut self) {
        let Some((listener, _)) = &self.listener else {
            return;
        };
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        if let Some(mut old) = self.client.take() {
            let _ = old
                .sink
                .out
                .write(b"\r\n[cradle: another console attached; detached]\r\n");
        }
        // the newcomer gets what the ring holds first
        self.client = Some(Client {
            sink: Sink {
                out: stream,
                sent: self.ring.oldest(),
            },
            frames: Frames::default(),
        });
    }

    fn read_client(&mut self) {
        let Some(client) = &mut self.client else {
            return;
        };
        let mut buf = [0u8; 4096];
        let n = match client.sink.out.read(&mut buf) {
            Ok(0) => {
                self.client = None;
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                self.client = None;
                return;
            }
        };
        let mut input = Vec::new();
        let mut resize = None;
        let read = client.frames.feed(&buf[..n], |frame| match frame {
            Frame::Input(bytes) => input.extend_from_slice(bytes),
            Frame::WindowSize(rows, cols) => resize = Some((rows, cols)),
        });
        if read.is_err() {
            // not a client of ours: drop it
            self.client = None;
            return;
        }
        if let Some((rows, cols)) = resize {
            let size = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let _ = sys::set_window_size(self.master.as_fd(), &size);
        }
        if !input.is_empty() {
            self.to_guest(&input);
        }
    }
}

impl Console {
    /// True when nothing of the console is our own terminal or standard output: all of it
    /// can pass to a monitor (see `handoff`).
    pub fn is_detached(&self) -> bool {
        self.stdout.is_none() && self.terminal.is_none() && self.listener.is_some()
    }

    /// The console's descriptors and where it stands, for a monitor: the ring's bytes are
    /// written to a memfd (made once) that passes with them. The descriptors stay ours
    /// (and the socket file in place) until the exec.
    pub fn hand_over(&mut self) -> Result<(ConsoleFds, ConsoleState)> {
        let Some((listener, listener_path)) = &self.listener else {
            return Err(Error::host(
                "console handoff",
                io::Error::other("no socket"),
            ));
        };
        if self.ring_memfd.is_none() {
            let fd = memfd_create(c"cradle-console", MFdFlags::MFD_CLOEXEC)
                .map_err(|e| Error::host("memfd for the console", e))?;
            let file = File::from(fd);
            file.set_len(RING as u64)
                .map_err(|e| Error::host("memfd for the console", e))?;
            self.ring_memfd = Some(file);
        }
        let memfd = self.ring_memfd.as_ref().expect("made above");
        memfd
            .write_all_at(&self.storage[..self.ring.used()], 0)
            .map_err(|e| Error::host("memfd for the console", e))?;
        let fds = ConsoleFds {
            master: self.master.as_raw_fd(),
            slave: self._slave.as_raw_fd(),
            slave_path: self.slave_path.clone(),
            listener: listener.as_raw_fd(),
            listener_path: listener_path.clone(),
            ring: memfd.as_raw_fd(),
        };
        let state = ConsoleState {
            client: self.client.as_ref().map(|c| c.sink.out.as_raw_fd()),
            ring: self.ring,
            sent: self.client.as_ref().map_or(0, |c| c.sink.sent),
            frames: self
                .client
                .as_ref()
                .map_or_else(Frames::default, |c| c.frames),
        };
        Ok((fds, state))
    }

    /// The descriptors [`Console::hand_over`] gave, as the monitor leaves them: a
    /// detached console again.
    pub fn take_back(fds: &ConsoleFds, state: ConsoleState, taken: &mut Taken) -> Result<Self> {
        let master = taken.take(fds.master, "console master")?;
        let slave = taken.take(fds.slave, "console slave")?;
        let listener = UnixListener::from(taken.take(fds.listener, "console socket")?);
        let memfd = File::from(taken.take(fds.ring, "console ring")?);
        let client = match state.client {
            Some(fd) => Some(Client {
                sink: Sink {
                    out: UnixStream::from(taken.take(fd, "console client")?),
                    sent: state.sent,
                },
                frames: state.frames,
            }),
            None => None,
        };
        let mut storage = vec![0; RING];
        memfd
            .read_exact_at(&mut storage[..state.ring.used()], 0)
            .map_err(|e| Error::host("the console's ring", e))?;
        Ok(Console {
            master,
            _slave: slave,
            slave_path: fds.slave_path.clone(),
            ring: state.ring,
            storage,
            stdout: None,
            terminal: None,
            escape: Escape::default(),
            listener: Some((listener, fds.listener_path.clone())),
            client,
            ring_memfd: Some(memfd),
        })
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some((_, path)) = &self.listener {
            let _ = std::fs::remove_file(path);
        }
        // our stdout's last bytes, if it takes them now
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ctrl_brackets_within_a_second_are_the_escape() {
        let mut escape = Escape::default();
        assert!(!escape.feed(&[ESCAPE_KEY, ESCAPE_KEY]));
        assert!(escape.feed(&[ESCAPE_KEY]));
        // something else in between starts over
        assert!(!escape.feed(&[ESCAPE_KEY, ESCAPE_KEY, b'a', ESCAPE_KEY]));
        assert!(!escape.feed(&[ESCAPE_KEY]));
        assert!(escape.feed(&[ESCAPE_KEY]));
    }

    /// A guest that writes without end gets a bounded share of each turn: one read of the
    /// console takes about its budget and leaves the rest for the next turn.
    #[test]
    fn one_turn_reads_the_console_up_to_its_budget() {
        let mut console = Console::open(None, false).unwrap();
        // a guest writing more than one turn's budget, as fast as the pty takes it
        const WRITTEN: usize = 64 * 1024;
        let slave = console._slave.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = [b'x'; 1024];
            for _ in 0..WRITTEN / chunk.len() {
                let mut sent = 0;
                while sent < chunk.len() {
                    sent += write(&slave, &chunk[sent..]).unwrap();
                }
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        console.read_guest(4096);
        let first = console.ring.total;
        assert!(
            (4096..=4096 + 8192).contains(&first),
            "one turn took {first} bytes"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while console.ring.total < WRITTEN as u64 && Instant::now() < deadline {
            console.drain();
            std::thread::sleep(Duration::from_millis(5));
        }
        writer.join().unwrap();
        assert_eq!(console.ring.total, WRITTEN as u64);
    }
}
