//! The standard streams of a command run in a guest (`cradle exec`): the command never gets
//! a descriptor of ours. Each of our standard streams that is a terminal becomes one side
//! of a new pty (the command's controlling terminal, as `lxc-attach`, `runc exec -t` and
//! `machinectl shell` give); every other one becomes a pipe. The launcher relays between
//! them while the command runs, and closes its ends when it has ended.
//!
//! So nothing the guest runs can read what is typed at the operator's terminal after the
//! command is gone (a process it left behind holds only the pty's slave, which hangs up),
//! hold the caller's pipe open (a `$(cradle exec ...)` waits for no process of the
//! guest's), or reach the host's file behind a redirection (a directory given as standard
//! input would otherwise be a way out of the guest's root).
//!
//! What goes to the guest is written without blocking (a guest that never reads its
//! input stalls only that input); what comes from it is written to the descriptor we were
//! given, a terminal, a pipe or a file, as the command's own writes would have been.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags};
use nix::sys::stat::{SFlag, fstat};
use nix::unistd::{isatty, pipe2, read, write};

use crate::console::{self, RawTerminal};
use crate::error::{Error, Result};
use crate::sys;

/// How much is read from one side at a time.
const CHUNK: usize = 64 * 1024;

/// The command's side of its standard streams, for the child to put on 0, 1 and 2.
pub struct CommandSide {
    pub fds: [OwnedFd; 3],
    /// One of them is a pty's slave: the command takes it as controlling terminal.
    pub tty: bool,
}

/// Where what the command writes goes.
#[derive(Clone, Copy)]
enum Out {
    Stdout,
    Stderr,
}

impl Out {
    fn write_all(self, bytes: &[u8]) {
        // the descriptor we were given; a reader gone away is no error of ours
        let _ = match self {
            Out::Stdout => io::stdout().lock().write_all(bytes),
            Out::Stderr => io::stderr().lock().write_all(bytes),
        };
    }
}

/// A flow from the command to one of our outputs.
struct Output {
    from: OwnedFd,
    to: Out,
    open: bool,
}

/// The flow from our standard input to the command.
struct Input {
    to: OwnedFd,
    /// Read from our standard input, not yet written to the command.
    pending: Vec<u8>,
    /// Our standard input has more to give.
    open: bool,
}

pub struct Relay {
    input: Option<Input>,
    outputs: Vec<Output>,
    /// The pty's master, when there is one (also among `outputs`, or `input`'s target).
    pty: Option<OwnedFd>,
    /// Our standard input's terminal, in raw mode while we relay.
    _terminal: Option<RawTerminal>,
}

fn is_terminal(fd: i32) -> bool {
    isatty(sys::std_stream(fd)).unwrap_or(false)
}

fn nonblocking(fd: &OwnedFd) -> Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::host("F_GETFL", e))?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|e| Error::host("O_NONBLOCK", e))?;
    Ok(())
}

/// A pipe, close-on-exec both ends.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::host("pipe for the command's streams", e))
}

/// Whether our standard stream `fd` is open; a directory is refused (it cannot be read
/// or written, so it is a mistake; passed on, it would have been a way out of the
/// guest's root).
fn check_stream(fd: i32, name: &str) -> Result<bool> {
    match fstat(sys::std_stream(fd)) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
            Err(Error::Usage(format!("standard {name} is a directory")))
        }
        Ok(_) => Ok(true),
        // closed: the command gets an empty pipe (input) or one nobody reads (output)
        Err(Errno::EBADF) => Ok(false),
        Err(e) => Err(Error::host(format!("standard {name}"), e)),
    }
}

impl Relay {
    /// Sets up the command's streams as the module says: `owner` is the host uid of the
    /// guest's root (the pty's slave is given to it), if it has a user namespace.
    pub fn new(owner: Option<u32>) -> Result<(Relay, CommandSide)> {
        let present = [
            check_stream(0, "input")?,
            check_stream(1, "output")?,
            check_stream(2, "error")?,
        ];
        let terminal = [0, 1, 2].map(|fd| present[fd as usize] && is_terminal(fd));
        let pty = match terminal.contains(&true) {
            true => Some(console::open_pty(owner)?),
            false => None,
        };
        let slave = |pty: &Option<(OwnedFd, OwnedFd)>| -> Result<OwnedFd> {
            let (_, slave) = pty.as_ref().expect("a pty when a stream is a terminal");
            slave
                .try_clone()
                .map_err(|e| Error::host("the pty's slave", e))
        };
        let mut outputs = Vec::new();
        // standard input
        let (stdin_side, input) = if terminal[0] {
            let (master, _) = pty.as_ref().expect("a pty");
            let to = master
                .try_clone()
                .map_err(|e| Error::host("the pty's master", e))?;
            (slave(&pty)?, Some(to))
        } else {
            let (read_end, write_end) = pipe()?;
            nonblocking(&write_end)?;
            (read_end, Some(write_end).filter(|_| present[0]))
        };
        // standard output and error: the pty's, or pipes of their own
        let side = |fd: usize, to: Out, outputs: &mut Vec<Output>| -> Result<OwnedFd> {
            if terminal[fd] {
                return slave(&pty);
            }
            let (read_end, write_end) = pipe()?;
            nonblocking(&read_end)?;
            // read even where our stream is closed, so the command never blocks on it
            outputs.push(Output {
                from: read_end,
                to,
                open: true,
            });
            Ok(write_end)
        };
        let stdout_side = side(1, Out::Stdout, &mut outputs)?;
        let stderr_side = side(2, Out::Stderr, &mut outputs)?;
        let mut master = None;
        if let Some((m, _)) = pty {
            // what the pty prints goes to the first of our outputs that is a terminal
            let to = if terminal[1] || !terminal[2] {
                Out::Stdout
            } else {
                Out::Stderr
            };
            let reader = m
                .try_clone()
                .map_err(|e| Error::host("the pty's master", e))?;
            outputs.push(Output {
                from: reader,
                to,
                open: true,
            });
            master = Some(m);
        }
        let raw = if terminal[0] {
            RawTerminal::stdin()
        } else {
            None
        };
        let relay = Relay {
            input: input.map(|to| Input {
                to,
                pending: Vec::new(),
                open: present[0],
            }),
            outputs,
            pty: master,
            _terminal: raw,
        };
        relay.resize();
        let tty = terminal.contains(&true);
        Ok((
            relay,
            CommandSide {
                fds: [stdin_side, stdout_side, stderr_side],
                tty,
            },
        ))
    }

    /// Gives the pty the size of our terminal.
    pub fn resize(&self) {
        let Some(master) = &self.pty else {
            return;
        };
        let size = [0, 1, 2]
            .into_iter()
            .filter(|&fd| is_terminal(fd))
            .find_map(|fd| sys::window_size(sys::std_stream(fd)));
        if let Some(size) = size {
            let _ = sys::set_window_size(master.as_fd(), &size);
        }
    }

    /// Whether the relay takes `signal` itself (a change of our terminal's size, which
    /// the pty passes on to the command as the kernel does) instead of its being passed on.
    pub fn takes_signal(&self, signal: i32) -> bool {
        if signal == libc::SIGWINCH && self.pty.is_some() {
            self.resize();
            return true;
        }
        false
    }

    /// Adds what the relay waits on to `fds`; returns how many it added.
    pub fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) -> usize {
        let before = fds.len();
        for output in self.outputs.iter().filter(|o| o.open) {
            fds.push(PollFd::new(output.from.as_fd(), PollFlags::POLLIN));
        }
        if let Some(input) = &self.input {
            if !input.pending.is_empty() {
                fds.push(PollFd::new(input.to.as_fd(), PollFlags::POLLOUT));
            } else if input.open {
                fds.push(PollFd::new(sys::std_stream(0), PollFlags::POLLIN));
            }
        }
        fds.len() - before
    }

    /// Moves what `ready` (the readiness of what [`Relay::poll_fds`] added, in its order)
    /// says can move, once each.
    pub fn service(&mut self, ready: &[bool]) {
        let mut ready = ready.iter().copied();
        for output in self.outputs.iter_mut().filter(|o| o.open) {
            if ready.next() == Some(true) {
                pump(output);
            }
        }
        if let Some(input) = &mut self.input {
            if ready.next() == Some(true) {
                if input.pending.is_empty() {
                    let mut buf = [0u8; CHUNK];
                    match read(sys::std_stream(0), &mut buf) {
                        Ok(0) => input.open = false,
                        Ok(n) => input.pending.extend_from_slice(&buf[..n]),
                        Err(Errno::EINTR | Errno::EAGAIN) => {}
                        Err(_) => input.open = false,
                    }
                }
                feed(input);
            }
            if !input.open && input.pending.is_empty() && self.pty.is_none() {
                // end of our input: the command's reads see end of file
                self.input = None;
            }
        }
    }

    /// Once the command has ended: what its streams still hold goes out, and the relay
    /// closes its ends (what the guest left running gets a hang-up or a broken pipe). A
    /// pty passes on what was written to its slave a moment later, so each stream is
    /// read until its end, or until it has been quiet for [`QUIET_MS`] (a process the
    /// guest left holding it).
    pub fn finish(&mut self) {
        self.input = None;
        for output in &mut self.outputs {
            while output.open && has_more(&output.from) {
                pump(output);
            }
        }
    }
}

/// How long (ms) [`Relay::finish`] waits for more from a stream that has not ended.
const QUIET_MS: u8 = 100;

/// Whether `from` has something to read (or its end) within [`QUIET_MS`].
fn has_more(from: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
    matches!(
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(QUIET_MS)),
        Ok(1..) | Err(Errno::EINTR)
    )
}

/// One read from the command's side and its write to ours; false once nothing more comes
/// now (end of file, a hang-up, nothing to read).
fn pump(output: &mut Output) -> bool {
    let mut buf = [0u8; CHUNK];
    match read(output.from.as_fd(), &mut buf) {
        Ok(0) => {
            output.open = false;
            false
        }
        Ok(n) => {
            output.to.write_all(&buf[..n]);
            true
        }
        Err(Errno::EINTR) => true,
        Err(Errno::EAGAIN) => false,
        // EIO: the pty's slave is closed by everyone
        Err(_) => {
            output.open = false;
            false
        }
    }
}

/// Writes what it can of `input.pending` to the command, without blocking.
fn feed(input: &mut Input) {
    match write(&input.to, &input.pending) {
        Ok(n) => {
            input.pending.drain(..n);
        }
        Err(Errno::EAGAIN | Errno::EINTR) => {}
        // the command closed its input: nothing more goes there
        Err(_) => {
            input.pending.clear();
            input.open = false;
        }
    }
}
