//! A detached guest's monitor, small while nothing happens to the guest.
//!
//! The launcher is a big program (std, glibc, the setup of a whole container); a host runs
//! one per guest, for the guest's whole life. So once a detached guest is up, the launcher
//! execs the shim's monitor mode (`cradle-shim --monitor`: no std, nothing that grows; see
//! the shim's `monitor`), handing over by descriptor everything it holds, and the
//! description of it below ([`Handoff`]). The monitor serves the console. When the container's first process
//! ends (a halt, a reboot) or a signal asks the guest to stop, it execs the launcher again
//! (`cradle __resume HANDOFF CONSOLE`), which takes everything back ([`Taken`]) and goes on
//! where it left off: same process, so the shim is still its child, its locks still held,
//! the pending signal still pending.
//!
//! Every descriptor passes by number; each is checked open and taken once. `__resume` is
//! for the monitor alone, and not in `--help`.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use cradle_common::console::{Frames, Ring};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys;

/// The first word of the launcher's command line when the monitor execs it.
pub const RESUME: &str = "__resume";

/// What the launcher hands over, as JSON in one word of the command line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handoff {
    pub verbosity: i8,
    pub syslog: bool,
    pub name: String,
    pub state_base: PathBuf,
    /// The state directory and its lock (the name lock: held by this open file).
    pub state_dir: PathBuf,
    pub state_lock: RawFd,
    pub root: PathBuf,
    pub root_fd: RawFd,
    /// Whether the root's mounts are id-mapped at every boot (else its owners were shifted:
    /// see `container::ownership`).
    pub id_map: bool,
    /// The user-namespace range and its locks.
    pub lease: Option<LeaseFds>,
    pub hostname: String,
    pub shim: PathBuf,
    pub shim_fd: RawFd,
    pub timeout: u64,
    pub caps: u64,
    pub seccomp: bool,
    /// The container's uuid, for /run/host (the guest's environment, which may hold
    /// secrets, stays in the state directory's `env`, for the host's root alone: a command
    /// line is anyone's to read).
    pub uuid: String,
    pub console: ConsoleFds,
    /// The readiness socket and its path.
    pub notify: Option<(RawFd, PathBuf)>,
    /// The container's first process (the shim) and its pidfd.
    pub shim_pid: i32,
    pub shim_pidfd: RawFd,
    /// The guest init, when it runs.
    pub init: Option<i32>,
    /// Which boot of the guest this is.
    pub boot: u32,
}

/// The user-namespace range: its base, and its lock files, open and locked (see `userns`).
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseFds {
    pub base: u32,
    /// Cradle's lock.
    pub lock: RawFd,
    /// systemd-nspawn's lock of the range, taken on a host with systemd.
    pub nspawn_lock: Option<RawFd>,
}

/// The console's descriptors (see `console`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ConsoleFds {
    pub master: RawFd,
    pub slave: RawFd,
    pub slave_path: String,
    pub listener: RawFd,
    pub listener_path: PathBuf,
    /// The memfd the ring's bytes pass in.
    pub ring: RawFd,
}

/// Where the console stands, as the monitor leaves it: the attached client, the ring, how
/// much of it the client has had, the client's frame in progress.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConsoleState {
    pub client: Option<RawFd>,
    pub ring: Ring,
    pub sent: u64,
    pub frames: Frames,
}

impl ConsoleState {
    /// `CLIENT,TOTAL,SENT,FRAMES` (`-1`: no client), as the monitor writes it.
    pub fn parse(word: &str) -> Option<Self> {
        let fields: Vec<&str> = word.split(',').collect();
        let [client, total, sent, frames] = fields.as_slice() else {
            return None;
        };
        Some(ConsoleState {
            client: match *client {
                "-1" => None,
                fd => Some(fd.parse().ok()?),
            },
            ring: Ring {
                total: total.parse().ok()?,
            },
            sent: sent.parse().ok()?,
            frames: Frames::from_u64(frames.parse().ok()?)?,
        })
    }

    /// The monitor's word for this state.
    pub fn word(&self) -> String {
        let client = self.client.map_or(-1, i64::from);
        format!(
            "{client},{},{},{}",
            self.ring.total,
            self.sent,
            self.frames.to_u64()
        )
    }
}

/// Descriptors taken back by number: each one once, each one open.
#[derive(Default)]
pub struct Taken {
    seen: HashSet<RawFd>,
}

impl Taken {
    pub fn new() -> Self {
        Taken::default()
    }

    /// The descriptor `fd`, ours from now on (close-on-exec again).
    pub fn take(&mut self, fd: RawFd, what: &str) -> Result<OwnedFd> {
        let bad = |why: &str| Error::Usage(format!("{RESUME}: {what} (descriptor {fd}) {why}"));
        if fd < 3 || !self.seen.insert(fd) {
            return Err(bad("is not one to take"));
        }
        sys::adopt_fd(fd).map_err(|e| bad(e.desc()))
    }
}

/// The monitor's command line: the descriptors it serves, where the console stands, and
/// the launcher's own command line to exec again.
pub fn monitor_argv(
    handoff: &Handoff,
    console: &ConsoleState,
    launcher: BorrowedFd,
) -> Result<Vec<CString>> {
    // the console's state last, as the monitor gives it back
    let fds = format!(
        "{},{},{},{},{},{},{}",
        handoff.shim_pidfd,
        handoff.console.master,
        handoff.console.listener,
        handoff.notify.as_ref().map_or(-1, |(fd, _)| i64::from(*fd)),
        handoff.console.ring,
        launcher.as_raw_fd(),
        console.word(),
    );
    let json = serde_json::to_string(handoff).map_err(|e| Error::host("handoff", e))?;
    ["cradle", "--monitor", &fds, "--", "cradle", RESUME, &json]
        .into_iter()
        .map(|w| CString::new(w).map_err(|_| Error::Usage(format!("{w:?} contains a NUL byte"))))
        .collect()
}

/// Our environment, for the monitor (which passes it back to us).
pub fn environment() -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    std::env::vars_os()
        .filter_map(|(key, value)| {
            let mut pair = key.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            CString::new(pair).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_word_reads_back_as_written() {
        let mut frames = Frames::default();
        frames
            .feed(&[cradle_common::console::FRAME_INPUT, 0, 9, b'x'], |_| {})
            .unwrap();
        for state in [
            ConsoleState::default(),
            ConsoleState {
                client: Some(17),
                ring: Ring { total: 1 << 40 },
                sent: 99,
                frames,
            },
        ] {
            assert_eq!(ConsoleState::parse(&state.word()), Some(state));
        }
        for bad in ["", "1,2,3", "x,1,2,0", "-1,1,2,0,5", "-1,-5,0,0"] {
            assert_eq!(ConsoleState::parse(bad), None, "{bad}");
        }
    }
}
