//! `cradle start --detach`: the launcher goes on in the background as the guest's monitor
//! (the shim's small monitor mode while the guest is up and nothing happens: `handoff`),
//! and the command returns once the guest is up (exit 0), or with the one-line error and
//! exit code of what stopped it first, as a foreground start would have.
//!
//! The command forks before anything is made: the child is the monitor (a session of its
//! own, standard input and output on /dev/null, its log appended to `--log-file`, by
//! default `NAME.log` in $CRADLE_LOG_DIR or /var/log/cradle as LXC keeps one, unless
//! `--syslog`); the parent
//! waits on a close-on-exec pipe for one report: a 0 byte when the guest is up, or an exit
//! code and the error's words. End of file with nothing means the monitor died first.
//!
//! "Up" means the guest init runs, or, for a systemd guest, that it said `READY=1` (see
//! `notify`). Where the launcher itself runs under systemd with `Type=notify`
//! (`$NOTIFY_SOCKET` set: see dist-files/cradle@.service), the same moment is reported to
//! systemd as `READY=1`, with `MAINPID` the monitor.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, pipe2, setsid};

use cradle_core::error::{Code, Error};
use cradle_core::sys::{self, SingleThreaded};

/// The monitor's end of the report pipe: says once whether the guest came up.
pub struct Readiness {
    pipe: Option<OwnedFd>,
    /// Said once: a reboot is no new start.
    told: bool,
}

impl Readiness {
    /// For a launcher that is not detached: nobody waits, but systemd may.
    pub fn foreground() -> Self {
        Readiness {
            pipe: None,
            told: false,
        }
    }

    /// For a launcher that took a guest back from its monitor (see `handoff`): whoever
    /// waited was told long ago.
    pub fn resumed() -> Self {
        Readiness {
            pipe: None,
            told: true,
        }
    }

    /// The guest is up: tell whoever waits (the command that started us, systemd).
    pub fn up(&mut self) {
        if std::mem::replace(&mut self.told, true) {
            return;
        }
        if let Some(pipe) = self.pipe.take() {
            let _ = nix::unistd::write(&pipe, &[0]);
        }
        notify_systemd(&format!("READY=1\nMAINPID={}\n", std::process::id()));
    }

    /// Something stopped the launcher before the guest was up: the command that started
    /// us says it. True when somebody was told (so the monitor need not say it again).
    pub fn failed(&mut self, error: &Error) -> bool {
        match self.pipe.take() {
            Some(pipe) => {
                let mut report = vec![error.code() as u8];
                report.extend_from_slice(error.to_string().as_bytes());
                report.truncate(REPORT_MAX);
                let _ = nix::unistd::write(&pipe, &report);
                true
            }
            None => false,
        }
    }
}

/// Sends `state` to the service manager that started us, if one waits for it
/// (`$NOTIFY_SOCKET`, a path or an abstract socket `@name`; sd_notify(3)).
pub fn notify_systemd(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(socket.as_os_str());
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(std::path::Path::new(&socket)),
    };
    let sent = address.and_then(|address| {
        let datagram = UnixDatagram::unbound()?;
        datagram.send_to_addr(state.as_bytes(), &address)
    });
    if let Err(e) = sent {
        log::debug!("NOTIFY_SOCKET {socket:?}: {e}");
    }
}

/// What [`fork`] made of us.
pub enum Forked {
    /// The command: exit with this code (the report has been printed).
    Command(u8),
    /// The monitor: go on, and report through this.
    Monitor(Readiness),
}

/// The longest report: one write(2) of at most PIPE_BUF bytes is atomic, so the command
/// reads it whole in one read(2) and need not wait for the end of the pipe (which a
/// process the monitor made may hold open for as long as the guest runs).
const REPORT_MAX: usize = 4096;

/// Forks the monitor off (see the module documentation). The monitor's standard error (its
/// log) goes to `log`, appended to, or nowhere (`None`: it logs to syslog).
pub fn fork(threads: &SingleThreaded, log: Option<&Path>) -> Result<Forked, Error> {
    let (read_end, write_end) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::host("detach: pipe", e))?;
    let log = match log {
        Some(path) => OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::host(format!("log file {}", path.display()), e))?,
        None => OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/null")
            .map_err(|e| Error::host("/dev/null", e))?,
    };
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map_err(|e| Error::host("/dev/null", e))?;
    match sys::fork(threads).map_err(|e| Error::host("detach: fork", e))? {
        None => {
            // the monitor: a session of its own (the terminal's hang-up and Ctrl-C are not
            // for it), nothing of the terminal left open
            drop(read_end);
            let _ = setsid();
            let _ = dup2_stdin(&null);
            let _ = dup2_stdout(&null);
            let _ = dup2_stderr(&log);
            Ok(Forked::Monitor(Readiness {
                pipe: Some(write_end),
                told: false,
            }))
        }
        Some(_) => {
            drop(write_end);
            Ok(Forked::Command(await_report(read_end)))
        }
    }
}

/// The command's side: the report, printed, as an exit code.
fn await_report(pipe: OwnedFd) -> u8 {
    let mut report = [0u8; REPORT_MAX];
    let n = loop {
        match nix::unistd::read(&pipe, &mut report) {
            Err(Errno::EINTR) => continue,
            Ok(n) => break n,
            Err(_) => break 0,
        }
    };
    match report[..n].split_first() {
        Some((0, _)) => Code::Ok as u8,
        Some((code, words)) => {
            eprintln!("cradle: error: {}", String::from_utf8_lossy(words));
            *code
        }
        None => {
            eprintln!("cradle: error: the launcher ended before the guest was up (see its log)");
            Code::Setup as u8
        }
    }
}
