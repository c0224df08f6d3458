//! The state directory of a container: `/run/cradle/NAME/` (or `--state-dir BASE` + NAME).
//!
//! ```text
//! lock       write-locked (an OFD lock) by the launcher for as long as it runs; holds its
//!            pid
//! console    the socket `cradle console` connects to (see `console`)
//! notify     the socket a systemd guest says READY=1 on (see `notify`)
//! init.pid   "PID BOOT": host pid of the running guest init and the boot number;
//!            there only while a guest init runs (written whole, by rename)
//! env        the guest's environment, one VAR=value per line, for `cradle exec`
//! security   the capability bounding set and the seccomp choice (`caps HEX`,
//!            `seccomp on|off`), which `exec` and the halt helpers apply too
//! shim       the path of the cradle-shim the guest runs, which `exec` and `stop` run too
//! info       what `status` shows that does not change while the launcher runs (JSON: the
//!            root, hostname, user-namespace base, start time, the container's cgroups),
//!            and the guest's timeout, `stop`'s default
//! limits     the container's limits (JSON), which every boot applies and `set` changes;
//!            read and written under an flock of `limits.lock`, so that a `set` and a boot
//!            never interleave
//! stopping   there while a halt or power-off asked by `stop` or a signal is under way
//! net        what the guest holds of the network (JSON, `net::Network`): its mode, link,
//!            addresses, forwards; every boot sets up from it, `status` shows it, the
//!            sweep removes what it names
//! ```
//! The launcher removes the directory when it exits. A launcher that was killed leaves it
//! behind unlocked; the next `start` of the same NAME takes it over.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, Flock, fcntl};
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::unistd::Pid;

use serde::{Deserialize, Serialize};

use crate::cgroups::limits::Limits;
use crate::cgroups::v1::V1Dir;
use crate::error::{Error, Result};
use crate::net::Network;
use crate::security::Security;
use crate::sys::{self, Deadline};

/// Where state directories live unless `--state-dir` or `$CRADLE_STATE_DIR` says otherwise.
pub const DEFAULT_BASE: &str = "/run/cradle";

const LOCK: &str = "lock";
const INIT_PID: &str = "init.pid";
const ENV: &str = "env";
const SECURITY: &str = "security";
const SHIM: &str = "shim";
const INFO: &str = "info";
const LIMITS: &str = "limits";
const LIMITS_LOCK: &str = "limits.lock";
const STOPPING: &str = "stopping";
const NET: &str = "net";
/// The socket `cradle console` connects to.
pub const CONSOLE: &str = "console";
/// The socket a systemd guest says it is up on (see `notify`).
pub const NOTIFY: &str = "notify";
/// Every file the launcher writes in the directory besides the lock.
const FILES: [&str; 11] = [
    NET,
    INIT_PID,
    ENV,
    SECURITY,
    SHIM,
    INFO,
    LIMITS,
    LIMITS_LOCK,
    STOPPING,
    CONSOLE,
    NOTIFY,
];

/// What `status` shows of a container that stays as it is while its launcher runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Info {
    pub root: PathBuf,
    pub hostname: String,
    /// The host uid and gid of the guest's root; `None` without a user namespace.
    pub userns_base: Option<u32>,
    /// When `cradle start` began, in seconds since the epoch.
    pub started_at: u64,
    /// The container's cgroup in the v2 hierarchy.
    pub cgroup: PathBuf,
    /// Its cgroups in the v1 hierarchies (a hybrid host), made for a guest with limits.
    pub cgroups_v1: Vec<V1Dir>,
    /// The seconds a halt may take before the guest is powered off, which `stop` takes
    /// by default.
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// Holds the limits' lock (an flock of `limits.lock`) while alive.
pub struct LimitsLock {
    _lock: Flock<File>,
}

fn lock_limits(dir: &Path) -> Result<LimitsLock> {
    Ok(LimitsLock {
        _lock: sys::flock_exclusive(&dir.join(LIMITS_LOCK))?,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = fs::read(path).map_err(|e| Error::host(format!("read {}", path.display()), e))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::host(format!("read {}", path.display()), io::Error::other(e)))
}

/// A running guest as the state directory describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    pub init: Pid,
    pub boot: u32,
}

/// The guest's environment in state directory `dir`, as `start` recorded it.
fn read_env(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(ENV);
    let text = fs::read_to_string(&path)
        .map_err(|e| Error::host(format!("read {}", path.display()), e))?;
    Ok(text.lines().map(str::to_owned).collect())
}

fn parse_running(text: &str) -> Option<Running> {
    let mut words = text.split_whitespace();
    let init = words.next()?.parse().ok().filter(|pid| *pid > 0)?;
    let boot = words.next()?.parse().ok()?;
    Some(Running {
        init: Pid::from_raw(init),
        boot,
    })
}

/// What the guest whose state directory is `dir` holds of the network, as recorded.
pub fn network_in(dir: &Path) -> Result<Network> {
    read_json(&dir.join(NET))
}

/// Writes `path` whole: a temporary file renamed over it, so readers never see half.
/// Readable by all, as `status` is.
fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, contents, 0o644)
}

/// [`write_atomic`] with the file mode `mode` (through `PATH.tmp`, renamed over `path`).
pub fn write_atomic_mode(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    // a left-over temporary file would keep its own mode
    let _ = fs::remove_file(&tmp);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?
        .write_all(contents)?;
    fs::rename(&tmp, path)
}

/// Takes the name lock on `file` without waiting; EAGAIN when another launcher has it.
fn take_name_lock(file: &File) -> nix::Result<()> {
    fcntl(
        file,
        FcntlArg::F_OFD_SETLK(&sys::whole_file(libc::F_WRLCK as libc::c_short)),
    )
    .map(drop)
}

/// The state directory as its launcher holds it. Dropping it removes it.
pub struct StateDir {
    dir: PathBuf,
    /// The lock file, open with the name lock taken (held by being open).
    _lock: File,
    /// A killed launcher's, taken to be removed: what cannot go is no business of the
    /// command that swept it (said at debug level only).
    leftover: bool,
}

impl StateDir {
    /// The state directory `dir` as a launcher that exec'd itself holds it (see
    /// `handoff`): `lock` must be its lock file.
    pub fn take_back(dir: PathBuf, lock: OwnedFd) -> Result<Self> {
        let lock = File::from(lock);
        let path = dir.join(LOCK);
        if !sys::is_at(&lock, &path) {
            return Err(Error::Usage(format!(
                "the lock handed over is not {}",
                path.display()
            )));
        }
        Ok(StateDir {
            dir,
            _lock: lock,
            leftover: false,
        })
    }

    /// The guest's environment, as [`StateDir::set_env`] recorded it.
    pub fn env(&self) -> Result<Vec<String>> {
        read_env(&self.dir)
    }

    /// Its lock file, open, for a handoff.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self._lock)
    }

    /// Creates (or takes over) `base/name` and locks it; `AlreadyRunning` when another
    /// launcher holds it.
    pub fn acquire(base: &Path, name: &str) -> Result<Self> {
        let dir = base.join(name);
        let ctx = |what: &str| format!("state directory {}: {what}", dir.display());
        loop {
            fs::create_dir_all(&dir).map_err(|e| Error::host(ctx("create"), e))?;
            let path = dir.join(LOCK);
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&path)
            {
                Ok(file) => file,
                // removed by a launcher that was exiting: start over
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::host(ctx("open lock"), e)),
            };
            match take_name_lock(&file) {
                Ok(()) => {}
                Err(Errno::EAGAIN | Errno::EACCES) => {
                    return Err(Error::AlreadyRunning(name.to_owned()));
                }
                Err(errno) => return Err(Error::host(ctx("lock"), errno)),
            }
            let lock = file;
            // the file may have been unlinked by its exiting owner between open and flock
            if !sys::is_at(&lock, &path) {
                continue;
            }
            // a launcher that was killed leaves its files: they describe nothing now, but
            // for the network it held, which goes first (its rules, its leases)
            if let Ok(network) = network_in(&dir) {
                crate::net::setup::detach(&network);
                let holder = crate::net::lease::Holder {
                    name: name.to_owned(),
                    lock: path.clone(),
                };
                crate::net::setup::release(&network, &holder);
            }
            for file in FILES {
                let _ = fs::remove_file(dir.join(file));
            }
            lock.set_len(0)
                .and_then(|()| writeln!(&lock, "{}", std::process::id()))
                .map_err(|e| Error::host(ctx("write lock"), e))?;
            return Ok(StateDir {
                dir,
                _lock: lock,
                leftover: false,
            });
        }
    }

    /// Takes the state directory `base/name` a killed launcher left, to remove it when
    /// dropped (what this cradle does not know stays): `AlreadyRunning` when a launcher
    /// holds it, `None` when `base` itself is gone (then nobody can hold it, and it is not
    /// made again only to be removed).
    pub fn claim_leftover(base: &Path, name: &str) -> Result<Option<Self>> {
        if !base.is_dir() {
            return Ok(None);
        }
        let mut claimed = StateDir::acquire(base, name)?;
        claimed.leftover = true;
        Ok(Some(claimed))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Records the guest's environment for `cradle exec`.
    pub fn set_env(&self, env: &[String]) -> Result<()> {
        let mut text = String::new();
        for var in env {
            text.push_str(var);
            text.push('\n');
        }
        // the guest's variables may be secrets: the host's root alone reads them
        let path = self.dir.join(ENV);
        write_atomic_mode(&path, text.as_bytes(), 0o600)
            .map_err(|e| Error::host(format!("write {}", path.display()), e))
    }

    /// Records the bounding set and filter of the guest, for `cradle exec`.
    pub fn set_security(&self, security: &Security) -> Result<()> {
        self.write(SECURITY, security.to_string().as_bytes())
    }

    /// Records the shim the guest runs, for `cradle exec` and `cradle stop`.
    pub fn set_shim(&self, shim: &Path) -> Result<()> {
        self.write(SHIM, shim.as_os_str().as_bytes())
    }

    /// Records what `status` shows.
    pub fn set_info(&self, info: &Info) -> Result<()> {
        self.write_json(INFO, info)
    }

    /// Records the limits (under [`StateDir::lock_limits`]).
    pub fn set_limits(&self, limits: &Limits) -> Result<()> {
        self.write_json(LIMITS, limits)
    }

    /// The limits as recorded now (under [`StateDir::lock_limits`]): `cradle set` may have
    /// changed them since the last boot.
    pub fn limits(&self) -> Result<Limits> {
        read_json(&self.dir.join(LIMITS))
    }

    /// Records what the guest holds of the network.
    pub fn set_network(&self, network: &Network) -> Result<()> {
        self.write_json(NET, network)
    }

    /// What the guest holds of the network, as recorded.
    pub fn network(&self) -> Result<Network> {
        read_json(&self.dir.join(NET))
    }

    /// The lock file, whose lock says the guest's launcher runs (`net::lease`).
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK)
    }

    /// Takes the limits' lock, waiting for a `cradle set` that holds it.
    pub fn lock_limits(&self) -> Result<LimitsLock> {
        lock_limits(&self.dir)
    }

    /// Records that the guest is being stopped.
    pub fn set_stopping(&self) {
        let _ = self.write(STOPPING, b"");
    }

    fn write_json(&self, file: &str, value: &impl Serialize) -> Result<()> {
        let text = serde_json::to_vec(value)
            .map_err(|e| Error::host(format!("write {file}"), io::Error::other(e)))?;
        self.write(file, &text)
    }

    fn write(&self, file: &str, contents: &[u8]) -> Result<()> {
        let path = self.dir.join(file);
        write_atomic(&path, contents)
            .map_err(|e| Error::host(format!("write {}", path.display()), e))
    }

    /// Records that guest init `init` runs, in boot number `boot`.
    pub fn set_running(&self, running: Running) -> Result<()> {
        let text = format!("{} {}\n", running.init, running.boot);
        self.write(INIT_PID, text.as_bytes())
    }

    /// Records that no guest init runs (between boots, and at the end).
    pub fn clear_running(&self) {
        let _ = fs::remove_file(self.dir.join(INIT_PID));
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        for file in FILES.iter().chain(&[LOCK]) {
            let _ = fs::remove_file(self.dir.join(file));
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            let what = format!("cannot remove state directory {}: {e}", self.dir.display());
            if self.leftover {
                log::debug!("{what}");
            } else {
                log::warn!("{what}");
            }
        }
    }
}

/// A state directory seen from another process (`stop`, `exec`).
pub struct Observed {
    dir: PathBuf,
}

impl Observed {
    /// The state of `name`; `NotRunning` unless a launcher holds it.
    pub fn open(base: &Path, name: &str) -> Result<Self> {
        let observed = Observed {
            dir: base.join(name),
        };
        if observed.is_alive() {
            Ok(observed)
        } else {
            Err(Error::NotRunning(name.to_owned()))
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// True while a launcher holds the name lock (tested, never taken).
    pub fn is_alive(&self) -> bool {
        File::open(self.dir.join(LOCK)).is_ok_and(|file| sys::write_locked(&file))
    }

    /// The launcher's pid, as its lock file says.
    pub fn launcher(&self) -> Option<u32> {
        fs::read_to_string(self.dir.join(LOCK))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// What `start` recorded for `status`.
    pub fn info(&self) -> Result<Info> {
        read_json(&self.dir.join(INFO))
    }

    /// The limits as recorded now.
    pub fn limits(&self) -> Result<Limits> {
        read_json(&self.dir.join(LIMITS))
    }

    /// What the guest holds of the network.
    pub fn network(&self) -> Result<Network> {
        read_json(&self.dir.join(NET))
    }

    /// Records what the guest holds of the network (under [`Observed::lock_limits`],
    /// which keeps a change and a boot apart).
    pub fn set_network(&self, network: &Network) -> Result<()> {
        let path = self.dir.join(NET);
        let text = serde_json::to_vec(network)
            .map_err(|e| Error::host(format!("write {}", path.display()), io::Error::other(e)))?;
        write_atomic(&path, &text).map_err(|e| Error::host(format!("write {}", path.display()), e))
    }

    /// Records the limits (under [`Observed::lock_limits`]).
    pub fn set_limits(&self, limits: &Limits) -> Result<()> {
        let path = self.dir.join(LIMITS);
        let text = serde_json::to_vec(limits)
            .map_err(|e| Error::host(format!("write {}", path.display()), io::Error::other(e)))?;
        write_atomic(&path, &text).map_err(|e| Error::host(format!("write {}", path.display()), e))
    }

    /// Takes the limits' lock, waiting for the launcher or another `cradle set`.
    pub fn lock_limits(&self) -> Result<LimitsLock> {
        lock_limits(&self.dir)
    }

    /// True while a halt or power-off is under way.
    pub fn is_stopping(&self) -> bool {
        self.dir.join(STOPPING).exists()
    }

    /// Records that `cradle stop` is stopping the guest (or no longer is).
    pub fn set_stopping(&self, stopping: bool) {
        let path = self.dir.join(STOPPING);
        if stopping {
            // only while the launcher holds the directory: never make one it removed
            if self.is_alive() {
                let _ = write_atomic(&path, b"");
            }
        } else {
            let _ = fs::remove_file(path);
        }
    }

    /// The running guest init, if one runs now.
    pub fn running(&self) -> Option<Running> {
        parse_running(&fs::read_to_string(self.dir.join(INIT_PID)).ok()?)
    }

    /// The guest's environment, as `start` recorded it.
    pub fn env(&self) -> Result<Vec<String>> {
        read_env(&self.dir)
    }

    /// The guest's bounding set and filter, as `start` recorded them.
    pub fn security(&self) -> Result<Security> {
        let path = self.dir.join(SECURITY);
        let text = fs::read_to_string(&path)
            .map_err(|e| Error::host(format!("read {}", path.display()), e))?;
        Security::parse(&text).ok_or_else(|| {
            Error::host(
                format!("read {}", path.display()),
                io::Error::other("malformed"),
            )
        })
    }

    /// The shim the guest runs, as `start` recorded it.
    pub fn shim(&self) -> Result<PathBuf> {
        let path = self.dir.join(SHIM);
        fs::read(&path)
            .map(|bytes| PathBuf::from(std::ffi::OsString::from_vec(bytes)))
            .map_err(|e| Error::host(format!("read {}", path.display()), e))
    }

    /// Waits until `done` is true, re-checking whenever something in the directory changes
    /// (inotify: no polling). False when `timeout` passed first.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<bool> {
        // the common case first, without an inotify instance: closing one waits for an
        // SRCU grace period (fsnotify_destroy_group), 10 to 15 ms here, which was most of
        // what `cradle exec` took
        if done(self) {
            return Ok(true);
        }
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(|e| Error::host("inotify", e))?;
        let watched = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_CLOSE_WRITE;
        // a directory already gone is simply checked below
        let _ = inotify.add_watch(&self.dir, watched);
        let deadline = Deadline::after(timeout);
        loop {
            if done(self) {
                return Ok(true);
            }
            if deadline.passed() {
                return Ok(false);
            }
            let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, deadline.poll_timeout()) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::host("poll inotify", e)),
            }
            while let Ok(events) = inotify.read_events() {
                if events.is_empty() {
                    break;
                }
            }
        }
    }
}

/// Checks a container name: it becomes a directory and a cgroup name.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "bad name {name:?}: use up to 64 letters, digits, '_', '.', '-', starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_reads_pid_and_boot() {
        assert_eq!(
            parse_running("1234 2\n"),
            Some(Running {
                init: Pid::from_raw(1234),
                boot: 2
            })
        );
        assert_eq!(parse_running(""), None);
        assert_eq!(parse_running("0 1"), None);
        assert_eq!(parse_running("12"), None);
        assert_eq!(parse_running("x 1"), None);
    }

    #[test]
    fn names_that_are_paths_or_odd_are_refused() {
        for good in ["web1", "a", "db.prod-2", "A_b"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(65);
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "-x",
            ".hidden",
            "a b",
            "ü",
            long.as_str(),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_second_acquire_is_refused_while_the_first_holds() {
        let base = std::env::temp_dir().join(format!("cradle-state-test-{}", std::process::id()));
        let first = StateDir::acquire(&base, "one").unwrap();
        assert!(matches!(
            StateDir::acquire(&base, "one"),
            Err(Error::AlreadyRunning(_))
        ));
        assert!(Observed::open(&base, "one").is_ok());
        drop(first);
        assert!(!base.join("one").exists());
        assert!(matches!(
            Observed::open(&base, "one"),
            Err(Error::NotRunning(_))
        ));
        let again = StateDir::acquire(&base, "one").unwrap();
        drop(again);
        fs::remove_dir(&base).unwrap();
    }
}
