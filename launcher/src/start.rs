//! `cradle start`: boot a guest and stay with it, in the foreground, until it halts;
//! boot it again, in fresh isolation, every time it reboots.
//!
//! One boot is one container: a cgroup, a clone into new namespaces, the shim as PID 1,
//! the guest init below it. The launcher waits in a single poll(2) on the shim's pidfd,
//! the error pipe, the console, its signals and a halt helper; nothing polls on a timer
//! except the deadline of a halt in progress.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cradle_common::outcome::{Outcome, Status, Unexpected, decode};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::cgroups::Cgroup;
use crate::config;
use crate::console::Console;
use crate::devices;
use crate::error::{Error, Result, signal_name};
use crate::guest::{self, Guest, Helper};
use crate::plan::{self, Purpose};
use crate::rootfs::{self, RootDir};
use crate::seccomp::Filter;
use crate::security::Security;
use crate::signals::Signals;
use crate::spawn::{self, Container, Report, ShimBinary, Spawn};
use crate::state::{Running, StateDir, validate_name};
use crate::sys::SingleThreaded;
use crate::userns::{self, Lease, Namespaces, UsernsMode};

pub struct Options {
    pub name: String,
    pub root: PathBuf,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    pub shim: Option<PathBuf>,
    /// How long a graceful halt (on SIGTERM) may take before the guest is powered off.
    pub timeout: Duration,
    pub state_base: PathBuf,
    pub userns: UsernsMode,
    pub security: Security,
}

/// Signals that ask the launcher to stop the guest: the first one halts it gracefully
/// (as `cradle stop`), a second one powers it off at once.
const STOP_SIGNALS: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// How long a guest may take to go down after a power-off before the shim is killed.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Where a stop requested of the launcher stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopping {
    No,
    /// `halt` was run in the guest; power it off at the deadline.
    Halting {
        deadline: Instant,
    },
    /// The guest was powered off (reboot(2)); kill the shim at the deadline.
    PoweringOff {
        deadline: Instant,
    },
    /// The shim was killed outright.
    Killed,
}

impl Stopping {
    fn deadline(self) -> Option<Instant> {
        match self {
            Stopping::Halting { deadline } | Stopping::PoweringOff { deadline } => Some(deadline),
            Stopping::No | Stopping::Killed => None,
        }
    }
}

/// What poll(2) found ready.
#[derive(Default)]
struct Ready {
    signals: bool,
    shim: bool,
    errpipe: bool,
    console: bool,
    helper: bool,
}

struct Launcher<'a> {
    opts: &'a Options,
    threads: &'a SingleThreaded,
    root: RootDir,
    /// The guest's user-namespace range, held for the launcher's whole life (every boot of
    /// the guest gets the same one).
    lease: Option<Lease>,
    hostname: String,
    state: &'a StateDir,
    shim: ShimBinary,
    console: Console,
    signals: Signals,
    guest_env: Vec<String>,
    shim_args: Vec<String>,
    /// The seccomp filter, compiled once.
    seccomp: Option<Filter>,
    /// The device policy, loaded once.
    devices: devices::Policy,
    stopping: Stopping,
}

/// A boot that ended: how, and the failure the error pipe reported, if any.
struct BootEnd {
    outcome: std::result::Result<Outcome, Unexpected>,
    failure: Option<Error>,
}

pub fn start(threads: &SingleThreaded, opts: &Options) -> Result<()> {
    validate_name(&opts.name)?;
    config::check_env(&opts.env)?;
    let hostname = opts.hostname.clone().unwrap_or_else(|| opts.name.clone());
    config::check_hostname(&hostname)?;
    let root = RootDir::open(&opts.root)?;
    // first taken, last released: the state directory outlives everything below
    let state = StateDir::acquire(&opts.state_base, &opts.name)?;
    let lease = userns::acquire(&opts.name, opts.userns)?;
    let guest_env = config::guest_env(&opts.name, &opts.env);
    state.set_env(&guest_env)?;
    state.set_security(&opts.security)?;
    let shim = ShimBinary::locate(opts.shim.as_deref())?;
    state.set_shim(shim.path())?;
    let mut shim_args = vec!["--boot".to_owned(), "--ctid".to_owned(), opts.name.clone()];
    for var in &opts.env {
        shim_args.extend(["--env".to_owned(), var.clone()]);
    }
    let owner = lease.as_ref().map(|l| l.base);
    let mut launcher = Launcher {
        opts,
        threads,
        root,
        lease,
        hostname,
        state: &state,
        shim,
        console: Console::open(owner)?,
        signals: Signals::catch(&STOP_SIGNALS)?,
        guest_env,
        shim_args,
        seccomp: opts.security.filter(owner.is_some())?,
        devices: devices::Policy::for_guest()?,
        stopping: Stopping::No,
    };
    let mut number = 1;
    loop {
        let end = launcher.boot(number)?;
        if let Some(failure) = end.failure {
            return Err(failure);
        }
        match end.outcome {
            Ok(Outcome::Halt) => {
                log::info!("{}: the guest halted", opts.name);
                return Ok(());
            }
            Ok(Outcome::Restart) if launcher.stopping == Stopping::No => {
                number += 1;
                log::info!(
                    "{}: the guest rebooted; booting it again (boot {number})",
                    opts.name
                );
            }
            Ok(Outcome::Restart) => return Ok(()),
            Ok(Outcome::BadTemplate) => return Err(Error::BadTemplate),
            Ok(Outcome::SetupFailed) => {
                return Err(Error::setup(
                    "the shim could not start the guest init",
                    Errno::EIO,
                ));
            }
            other => return Err(Error::GuestEnded(other)),
        }
    }
}

impl Launcher<'_> {
    /// Boots the guest once and supervises it until the shim is gone.
    fn boot(&mut self, number: u32) -> Result<BootEnd> {
        let cgroup = Cgroup::create(&self.opts.name, true)?;
        self.devices.attach(cgroup.dir())?;
        let base = self.lease.as_ref().map(|l| l.base);
        if let Some(base) = base {
            cgroup.delegate(base)?;
        }
        // again at every boot: the guest may have changed its root since the last one
        self.root.check_mount_points()?;
        let namespaces = base
            .map(|base| Namespaces::create(self.threads, base))
            .transpose()?;
        let console = rootfs::clone_host_file(&console_path(&self.console))
            .map_err(|e| Error::setup("bind the console pty for the guest", e))?;
        let steps = plan::build(plan::Config {
            tree: self
                .root
                .clone_tree(namespaces.as_ref().map(Namespaces::user))?,
            hostname: &self.hostname,
            purpose: Purpose::Boot { console },
            devices: rootfs::host_devices()?,
            userns: namespaces,
            caps: self.opts.security.caps,
            seccomp: self.seccomp.clone(),
            switch: self.root.switch()?,
        })
        .map_err(|_| Error::Usage("the hostname contains a NUL byte".into()))?;
        let guest_leaf = cgroup.guest_dir();
        let mut args = Vec::new();
        if let Some(fd) = guest_leaf {
            args.extend(["--cgroup-fd".to_owned(), fd.as_raw_fd().to_string()]);
        }
        args.extend_from_slice(&self.shim_args);
        let mut container = spawn::spawn(
            &Spawn {
                threads: self.threads,
                shim: &self.shim,
                cwd: Some(self.root.fd()),
                namespaces: spawn::namespaces(base.is_some()),
                cgroup: Some(cgroup.first_process_dir()),
                keep: guest_leaf.as_slice(),
                args: &args,
                env: &[],
            },
            steps,
        )?;
        let mut guest = None;
        let mut helper = None;
        let mut failure = None;
        let status = loop {
            let ready = self.wait(&container, helper.as_ref());
            if ready.console {
                self.console.relay();
            }
            if ready.errpipe {
                match container.read_report() {
                    Report::Started => {
                        guest = self.started(&container, number);
                        if self.stopping != Stopping::No {
                            // asked to stop while it was booting: now it can be halted
                            self.stopping = Stopping::No;
                            self.begin_halt(&container, guest.as_ref(), &mut helper);
                        }
                    }
                    Report::Failed(f) => failure = Some(container.failure_error(f, "")),
                    Report::Pending => {}
                }
            }
            if ready.signals {
                for sig in self.signals.pending() {
                    self.on_signal(sig, &container, guest.as_ref(), &mut helper);
                }
            }
            if ready.helper {
                self.on_helper_exit(&container, guest.as_ref(), &mut helper);
            }
            if self
                .stopping
                .deadline()
                .is_some_and(|d| Instant::now() >= d)
            {
                self.escalate(&container, guest.as_ref());
            }
            if ready.shim {
                if let Some(status) = container.try_wait() {
                    break status;
                }
            }
        };
        self.console.relay();
        self.state.clear_running();
        // in this order: the helper, the guest's pidfd, the cgroup (which waits for it to
        // be empty and removes it)
        drop((helper, guest));
        drop(cgroup);
        Ok(BootEnd {
            outcome: self.outcome(status),
            failure,
        })
    }

    fn outcome(&self, status: Status) -> std::result::Result<Outcome, Unexpected> {
        if self.stopping == Stopping::Killed {
            // we killed the shim ourselves: the guest was stopped, on request
            return Ok(Outcome::Halt);
        }
        decode(status)
    }

    /// Waits in poll(2) for anything to happen, or for the stop deadline.
    fn wait(&self, container: &Container, helper: Option<&Helper>) -> Ready {
        let mut fds = vec![
            PollFd::new(self.signals.fd(), PollFlags::POLLIN),
            PollFd::new(container.pidfd(), PollFlags::POLLIN),
            PollFd::new(self.console.master(), PollFlags::POLLIN),
        ];
        let errpipe = container.errpipe().map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        let helper_at = helper.map(|h| {
            fds.push(PollFd::new(h.pidfd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let timeout = match self.stopping.deadline() {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32 + 1)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => log::warn!("poll: {e}"),
        }
        let is_ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        Ready {
            signals: is_ready(0),
            shim: is_ready(1),
            console: is_ready(2),
            errpipe: errpipe.is_some_and(is_ready),
            helper: helper_at.is_some_and(is_ready),
        }
    }

    /// The guest init runs: record it, and keep a handle on it for halting.
    fn started(&self, container: &Container, number: u32) -> Option<Guest> {
        let Some(init) = container.guest_init() else {
            log::debug!("{}: the guest init ended as it started", self.opts.name);
            return None;
        };
        log::debug!(
            "{}: guest init running as pid {init} (boot {number})",
            self.opts.name
        );
        if let Err(e) = self.state.set_running(Running { init, boot: number }) {
            log::warn!("{}: {e}", self.opts.name);
        }
        match Guest::open(
            &self.opts.name,
            init,
            self.guest_env.clone(),
            self.opts.security.clone(),
        ) {
            Ok(guest) => Some(guest),
            Err(e) => {
                log::debug!("{}: guest init {init}: {e}", self.opts.name);
                None
            }
        }
    }

    fn on_signal(
        &mut self,
        sig: i32,
        container: &Container,
        guest: Option<&Guest>,
        helper: &mut Option<Helper>,
    ) {
        let name = &self.opts.name;
        match self.stopping {
            Stopping::No => {
                log::info!(
                    "{name}: {}: halting the guest (powering it off after {}s)",
                    signal_name(sig),
                    self.opts.timeout.as_secs()
                );
                self.begin_halt(container, guest, helper);
            }
            Stopping::Halting { .. } => {
                log::info!(
                    "{name}: {} again: powering the guest off now",
                    signal_name(sig)
                );
                self.power_off(container, guest);
            }
            Stopping::PoweringOff { .. } | Stopping::Killed => {
                container.signal(libc::SIGKILL);
                self.stopping = Stopping::Killed;
            }
        }
    }

    /// Runs `halt` in the guest (or `init 0` where there is no halt), as OpenVZ does.
    fn begin_halt(
        &mut self,
        container: &Container,
        guest: Option<&Guest>,
        helper: &mut Option<Helper>,
    ) {
        let Some(guest) = guest else {
            if container.errpipe().is_some() {
                // still being set up: halt it as soon as its init runs
                self.stopping = Stopping::Halting {
                    deadline: Instant::now() + self.opts.timeout,
                };
            } else {
                // no init to ask: nothing runs that could shut down gracefully
                container.signal(libc::SIGKILL);
                self.stopping = Stopping::Killed;
            }
            return;
        };
        match guest.spawn_helper(self.threads, &self.shim, guest::HALT) {
            Ok(h) => *helper = Some(h),
            Err(e) => log::warn!("{}: running halt in the guest: {e}", self.opts.name),
        }
        self.stopping = Stopping::Halting {
            deadline: Instant::now() + self.opts.timeout,
        };
    }

    fn on_helper_exit(
        &mut self,
        container: &Container,
        guest: Option<&Guest>,
        helper: &mut Option<Helper>,
    ) {
        let Some(status) = helper.as_mut().and_then(Helper::try_wait) else {
            return;
        };
        *helper = None;
        match status {
            Status::Exited(0) => {}
            Status::Exited(guest::NO_COMMAND) => {
                log::warn!(
                    "{}: the guest has neither halt nor init; powering it off",
                    self.opts.name
                );
                self.power_off(container, guest);
            }
            other => log::warn!("{}: halt in the guest ended with {other:?}", self.opts.name),
        }
    }

    /// OpenVZ's kill mode: reboot(2) POWER_OFF inside the guest's PID namespace.
    fn power_off(&mut self, container: &Container, guest: Option<&Guest>) {
        match guest.map(|g| g.power_off(self.threads, &self.shim)) {
            Some(Ok(())) => {
                self.stopping = Stopping::PoweringOff {
                    deadline: Instant::now() + KILL_GRACE,
                };
            }
            other => {
                if let Some(Err(e)) = other {
                    log::warn!("{}: {e}; killing the container", self.opts.name);
                }
                container.signal(libc::SIGKILL);
                self.stopping = Stopping::Killed;
            }
        }
    }

    /// A stop deadline passed: go one step harder.
    fn escalate(&mut self, container: &Container, guest: Option<&Guest>) {
        let name = &self.opts.name;
        match self.stopping {
            Stopping::Halting { .. } => {
                log::warn!(
                    "{name}: the guest did not halt within {}s; powering it off",
                    self.opts.timeout.as_secs()
                );
                self.power_off(container, guest);
            }
            Stopping::PoweringOff { .. } => {
                log::warn!("{name}: the guest is still up after power-off; killing it");
                container.signal(libc::SIGKILL);
                self.stopping = Stopping::Killed;
            }
            Stopping::No | Stopping::Killed => {}
        }
    }
}

/// The console's slave path as a C string (it comes from ptsname: no NUL inside).
fn console_path(console: &Console) -> CString {
    CString::new(console.slave_path()).expect("a pty path has no NUL")
}
