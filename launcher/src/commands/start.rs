//! `cradle start`: boot a guest and stay with it until it halts (in the foreground, or
//! detached: see `detach`); boot it again, in fresh isolation, every time it reboots.
//!
//! One boot is one container: a cgroup, a clone into new namespaces, the shim as PID 1,
//! the guest init below it. The launcher waits in a single poll(2) on the shim's pidfd,
//! the error pipe, the console, its signals and a halt helper; nothing polls on a timer
//! except the deadline of a halt in progress.
//!
//! A detached guest that is up, with nothing in progress, is handed to the shim's small
//! monitor mode (`handoff`: same process, an exec), which gives it back to [`resume`] for
//! whatever ends or stops a boot.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::Duration;

use cradle_common::outcome::{Outcome, Status, Unexpected, decode};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use crate::cli::{LimitOptions, NetOptions, Switch};
use crate::commands::detach::Readiness;
use crate::configfile::{DEFAULT_TIMEOUT, GuestConfig};
use crate::logging;
use cradle_core::cgroups::limits::{Changes, Limits};
use cradle_core::cgroups::v1::Host;
use cradle_core::cgroups::{self, container::Cgroup};
use cradle_core::config;
use cradle_core::console::notify::{self, NotifySocket};
use cradle_core::console::{self, Console, Event};
use cradle_core::container::ownership::{self, Ownership};
use cradle_core::container::rootfs::{self, RootDir};
use cradle_core::container::runhost::{self, RunHost};
use cradle_core::container::spawn::{Container, Report, ShimBinary, pointers};
use cradle_core::container::{Blueprint, Kind};
use cradle_core::error::{Error, Result, signal_name};
use cradle_core::guest::state::{self, Info, Running, StateDir, validate_name};
use cradle_core::guest::sweep::Sweep;
use cradle_core::guest::{self, Guest, Helper};
use cradle_core::handoff::{self, ConsoleState, Handoff, Taken};
use cradle_core::net::lease::Holder;
use cradle_core::net::setup as net_setup;
use cradle_core::net::{Network, Request};
use cradle_core::process::signals::Signals;
use cradle_core::security::Security;
use cradle_core::security::caps::{self, CapSet};
use cradle_core::security::devices;
use cradle_core::security::seccomp::Filter;
use cradle_core::security::userns::{Lease, PendingNamespaces, UsernsMode};
use cradle_core::sys::{self, Deadline, SingleThreaded};

pub struct Options {
    pub name: String,
    pub root: PathBuf,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    pub shim: Option<PathBuf>,
    /// How long a graceful halt (on SIGTERM) may take before the guest is powered off.
    pub timeout: Duration,
    pub state_base: PathBuf,
    /// Detached (`start --detach`): no terminal; the console is for `cradle console` alone.
    pub detached: bool,
    pub userns: UsernsMode,
    /// Who owns the root's files on disk (see `ownership`).
    pub ownership: Ownership,
    pub security: Security,
    pub limits: Limits,
    pub net: Request,
}

/// Signals that ask the launcher to stop the guest: the first one halts it gracefully
/// (as `cradle stop`), a second one powers it off at once.
const STOP_SIGNALS: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// The signals the launcher catches: the stop signals, and our terminal's change of size.
const SIGNALS: [i32; 5] = [
    STOP_SIGNALS[0],
    STOP_SIGNALS[1],
    STOP_SIGNALS[2],
    STOP_SIGNALS[3],
    libc::SIGWINCH,
];

/// How long a guest may take to go down after a power-off before the shim is killed.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Where a stop requested of the launcher stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopping {
    No,
    /// `halt` was run in the guest; power it off at the deadline.
    Halting {
        deadline: Deadline,
    },
    /// The guest was powered off (reboot(2)); kill the shim at the deadline.
    PoweringOff {
        deadline: Deadline,
    },
    /// The shim was killed outright.
    Killed,
}

impl Stopping {
    fn deadline(self) -> Option<Deadline> {
        match self {
            Stopping::Halting { deadline } | Stopping::PoweringOff { deadline } => Some(deadline),
            Stopping::No | Stopping::Killed => None,
        }
    }
}

/// What poll(2) found ready.
struct Ready {
    signals: bool,
    shim: bool,
    errpipe: bool,
    console: console::Ready,
    helper: bool,
    notify: bool,
}

struct Launcher<'a> {
    opts: &'a Options,
    threads: &'a SingleThreaded,
    root: RootDir,
    /// Whether every boot's copy of the root's mounts is id-mapped (`ownership`).
    id_map: bool,
    /// The guest's user-namespace range, held for the launcher's whole life (every boot of
    /// the guest gets the same one).
    lease: Option<Lease>,
    hostname: String,
    state: &'a StateDir,
    /// The shim of every boot's PID 1 and of the monitor ([`ShimBinary::shared`]); the
    /// helpers that halt the guest get a sealed copy each.
    shim: ShimBinary,
    console: Console,
    readiness: &'a mut Readiness,
    /// Where a systemd guest says it is up (see `notify`); other guests are up once their
    /// init runs.
    notify: Option<NotifySocket>,
    signals: Signals,
    /// The guest's environment, built once (config::guest_env): `exec`'s, and the init's
    /// with $NOTIFY_SOCKET besides for a systemd guest.
    guest_env: Vec<String>,
    init_env: Vec<String>,
    /// What the guest finds in /run/host, made once.
    run_host: RunHost,
    /// The seccomp filter, compiled once.
    seccomp: Option<Filter>,
    /// The device policy, loaded once.
    devices: devices::Policy,
    /// The host's cgroup hierarchies.
    host: Host,
    /// What the guest holds of the network; its leases go back when the launcher ends.
    network: Network,
    _net_hold: NetHold,
    stopping: Stopping,
    /// The first boot's namespaces, begun as the launcher started.
    begun: Option<PendingNamespaces>,
    /// The first boot's tree, when `ownership` made it already.
    first_tree: Option<std::os::fd::OwnedFd>,
    /// A monitor could not take over once (see `handoff`): the launcher stays.
    monitor_failed: bool,
    /// What killed launchers left (once per launcher).
    sweep: Sweep,
}

/// A boot in progress: the container, its cgroup, the guest init once it runs, and
/// whether the guest is up.
struct Booted {
    container: Container,
    cgroup: Cgroup,
    guest: Option<Guest>,
    up: bool,
}

/// A boot that ended: how, and the failure the error pipe reported, if any.
struct BootEnd {
    outcome: std::result::Result<Outcome, Unexpected>,
    failure: Option<Error>,
}

/// Boots the guest and stays with it until it halts; `readiness` hears when it is up.
pub fn start(threads: &SingleThreaded, opts: &Options, readiness: &mut Readiness) -> Result<()> {
    validate_name(&opts.name)?;
    config::check_env(&opts.env)?;
    let hostname = opts.hostname.clone().unwrap_or_else(|| opts.name.clone());
    config::check_hostname(&hostname)?;
    let mut root = RootDir::open(&opts.root)?;
    let host = Host::probe()?;
    host.check(&opts.limits)?;
    let devices = devices::Policy::begin_for_guest(threads);
    // first taken, last released: the state directory outlives everything below
    let state = StateDir::acquire(&opts.state_base, &opts.name)?;
    let sweep = Sweep::begin(&host, opts.net.mode.linked());
    // the first boot's namespaces are made alongside what follows
    let (lease, begun, prepared) = ownership::lease_and_prepare(
        threads,
        &mut root,
        &opts.name,
        opts.userns,
        opts.ownership,
        opts.net.mode.private(),
    )?;
    let holder = Holder {
        name: opts.name.clone(),
        lock: state.lock_path(),
    };
    let network = net_setup::hold(&opts.name, &opts.net, &holder)?;
    let net_hold = NetHold {
        network: network.clone(),
        holder,
        dir: state.path().to_owned(),
    };
    state.set_network(&network)?;
    state.set_limits(&opts.limits)?;
    state.set_info(&Info {
        root: root.path().to_owned(),
        hostname: hostname.clone(),
        userns_base: lease.as_ref().map(|l| l.base),
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        cgroup: host.v2.join(cgroups::name_for(&opts.name)),
        cgroups_v1: host.v1_dirs(&opts.name),
        timeout: Some(opts.timeout.as_secs()),
    })?;
    let uuid = runhost::container_uuid(&root);
    let guest_env = config::guest_env(&opts.name, &uuid, &opts.env);
    state.set_env(&guest_env)?;
    let owner = lease.as_ref().map(|l| l.base);
    // a systemd guest says when it is up; its init finds where in $NOTIFY_SOCKET. When
    // --env sets that itself, the user's value wins and the guest is up once its init
    // runs, as any other (nothing would ever tell us otherwise)
    let notify_set = config::env_value(&guest_env, &format!("{}=", notify::VAR)).is_some();
    let notify = (!notify_set && rootfs::init_is_systemd(&root))
        .then(|| NotifySocket::bind(&state.path().join(state::NOTIFY), owner))
        .transpose()?;
    let init_env = init_env(&guest_env, notify.is_some());
    let run_host = RunHost {
        os_release: runhost::host_os_release(),
        // the environment's, which --env may have set
        uuid: config::env_value(&guest_env, config::UUID_VAR)
            .unwrap_or(&uuid)
            .to_owned(),
    };
    state.set_security(&opts.security)?;
    let shim = ShimBinary::shared(opts.shim.as_deref(), &opts.state_base)?;
    state.set_shim(shim.path())?;
    let mut console = Console::open(owner, !opts.detached)?;
    console.listen(&state.path().join(state::CONSOLE))?;
    let mut launcher = Launcher {
        opts,
        threads,
        root,
        id_map: prepared.id_map,
        lease,
        hostname,
        state: &state,
        shim,
        console,
        readiness,
        signals: Signals::catch(&SIGNALS)?,
        guest_env,
        init_env,
        notify,
        run_host,
        seccomp: opts.security.filter(owner.is_some())?,
        devices: devices.finish()?,
        host,
        network: network.clone(),
        _net_hold: net_hold,
        stopping: Stopping::No,
        monitor_failed: false,
        begun,
        first_tree: prepared.tree,
        sweep,
    };
    launcher.run(1, None)
}

/// Takes back what the launcher handed to the monitor before it exec'd it (see `handoff`),
/// and goes on with the boot in progress as if it had never left.
pub fn resume(threads: &SingleThreaded, handoff: Handoff, console: ConsoleState) -> Result<()> {
    let mut taken = Taken::new();
    // first taken, last released, as in `start`
    let lock = taken.take(handoff.state_lock, "state lock")?;
    let state = StateDir::take_back(handoff.state_dir.clone(), lock)?;
    let lease = match &handoff.lease {
        Some(fds) => Some(Lease::take_back(fds, &mut taken)?),
        None => None,
    };
    let pidfd = taken.take(handoff.shim_pidfd, "the shim's pidfd")?;
    let container =
        Container::take_back(Pid::from_raw(handoff.shim_pid), pidfd, handoff.shim.clone());
    let mut root = RootDir::take_back(taken.take(handoff.root_fd, "root")?, handoff.root.clone());
    let shim = ShimBinary::take_back(taken.take(handoff.shim_fd, "shim")?, handoff.shim.clone());
    let console = Console::take_back(&handoff.console, console, &mut taken)?;
    let notify = match &handoff.notify {
        Some((fd, path)) => Some(NotifySocket::take_back(
            taken.take(*fd, "notify socket")?,
            path.clone(),
        )),
        None => None,
    };
    let host = Host::probe()?;
    let cgroup = Cgroup::take_back(&handoff.name, host.v1_dirs(&handoff.name))?;
    let network = state.network()?;
    let net_hold = NetHold {
        network: network.clone(),
        holder: Holder {
            name: handoff.name.clone(),
            lock: state.lock_path(),
        },
        dir: state.path().to_owned(),
    };
    let owner = lease.as_ref().map(|l| l.base);
    if let (Some(owner), false) = (owner, handoff.id_map) {
        root.set_dirs_owner(owner);
    }
    // what the options were for is done (the environment and limits are the state
    // directory's, read at each boot); these are the ones the launcher goes on using
    let opts = Options {
        name: handoff.name,
        root: handoff.root,
        hostname: Some(handoff.hostname.clone()),
        env: Vec::new(),
        shim: Some(handoff.shim),
        timeout: Duration::from_secs(handoff.timeout),
        state_base: handoff.state_base,
        detached: true,
        userns: owner.map_or(UsernsMode::Off, UsernsMode::Base),
        ownership: if handoff.id_map {
            Ownership::Map
        } else {
            Ownership::Chown
        },
        security: Security {
            caps: CapSet::from_bits(handoff.caps),
            seccomp: handoff.seccomp,
        },
        limits: Limits::default(),
        net: Request::none(),
    };
    let signals = Signals::catch(&SIGNALS)?;
    // what the monitor left pending arrives now
    handoff_signals()
        .thread_unblock()
        .map_err(|e| Error::host("unblock signals", e))?;
    let guest_env = state.env()?;
    let guest = handoff.init.and_then(|init| {
        Guest::open(
            &opts.name,
            Pid::from_raw(init),
            guest_env.clone(),
            opts.security.clone(),
            host.v1_dirs(&opts.name),
        )
        .ok()
    });
    let mut readiness = Readiness::resumed();
    let mut launcher = Launcher {
        opts: &opts,
        threads,
        root,
        id_map: handoff.id_map,
        lease,
        hostname: handoff.hostname,
        state: &state,
        shim,
        console,
        readiness: &mut readiness,
        signals,
        init_env: init_env(&guest_env, notify.is_some()),
        guest_env,
        notify,
        run_host: RunHost {
            os_release: runhost::host_os_release(),
            uuid: handoff.uuid,
        },
        seccomp: opts.security.filter(owner.is_some())?,
        devices: devices::Policy::for_guest()?,
        host,
        network: network.clone(),
        _net_hold: net_hold,
        stopping: Stopping::No,
        monitor_failed: false,
        begun: None,
        first_tree: None,
        // by the launcher that handed over
        sweep: Sweep::done(),
    };
    let booted = Booted {
        container,
        cgroup,
        guest,
        up: true,
    };
    launcher.run(handoff.boot, Some(booted))
}

/// The guest's forwards and leases, given back when the launcher ends (not when it execs
/// its monitor: the resumed launcher holds them again).
struct NetHold {
    network: Network,
    holder: Holder,
    /// The state directory, whose record is the network as it is at the end.
    dir: PathBuf,
}

impl Drop for NetHold {
    fn drop(&mut self) {
        // the record as it is now: `set --port` may have changed the forwards
        let network = state::network_in(&self.dir).unwrap_or_else(|_| self.network.clone());
        net_setup::finish(&network);
        net_setup::release(&network, &self.holder);
    }
}

/// The guest init's environment: the guest's, with `$NOTIFY_SOCKET` when the launcher
/// listens there.
fn init_env(guest_env: &[String], notify: bool) -> Vec<String> {
    if notify {
        config::merge_env(
            guest_env,
            &[format!("{}={}", notify::VAR, notify::GUEST_PATH)],
        )
    } else {
        guest_env.to_vec()
    }
}

/// The signals blocked across the execs of a handoff (the launcher's own).
fn handoff_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in SIGNALS {
        if let Ok(sig) = Signal::try_from(sig) {
            set.add(sig);
        }
    }
    set
}

impl Launcher<'_> {
    /// Boots the guest (from boot `number`, or goes on with a boot in progress) until it
    /// halts.
    fn run(&mut self, mut number: u32, mut resumed: Option<Booted>) -> Result<()> {
        let opts = self.opts;
        loop {
            let end = match resumed.take() {
                Some(booted) => self.supervise(booted, number)?,
                None => self.boot(number)?,
            };
            if let Some(failure) = end.failure {
                return Err(failure);
            }
            match end.outcome {
                Ok(Outcome::Halt) => {
                    log::info!("{}: the guest halted", opts.name);
                    return Ok(());
                }
                Ok(Outcome::Restart) if self.stopping == Stopping::No => {
                    number += 1;
                    log::info!(
                        "{}: the guest rebooted; booting it again (boot {number})",
                        opts.name
                    );
                }
                Ok(Outcome::Restart) => return Ok(()),
                Ok(Outcome::BadTemplate) => return Err(Error::BadTemplate),
                Ok(Outcome::SetupFailed) => {
                    return Err(Error::ShimFailed(
                        "cradle-shim could not start the guest init, and its record of why was lost",
                    ));
                }
                Ok(Outcome::ShimFailed) => {
                    return Err(Error::ShimFailed(
                        "cradle-shim failed before it started the guest init; it said why on the guest's console",
                    ));
                }
                other => return Err(Error::GuestEnded(other)),
            }
        }
    }

    /// Boots the guest once and supervises it until the shim is gone.
    fn boot(&mut self, number: u32) -> Result<BootEnd> {
        // the limits as they are now (`cradle set` may have changed them), applied to the
        // new cgroups before `set` can change them again
        let limits_lock = self.state.lock_limits()?;
        let limits = self.state.limits()?;
        // and the network as it is now (`cradle set --port`)
        self.network = self.state.network()?;
        let blueprint = Blueprint {
            threads: self.threads,
            name: &self.opts.name,
            state: self.state.path(),
            root: &self.root,
            hostname: &self.hostname,
            shim: &self.shim,
            owner: self.lease.as_ref().map(|l| l.base),
            id_map: self.id_map,
            devices: &self.devices,
            caps: self.opts.security.caps,
            seccomp: self.seccomp.as_ref(),
            host: &self.host,
            limits: &limits,
            network: &self.network,
            begun: self.begun.take(),
            tree: self.first_tree.take(),
        };
        let (container, cgroup) = blueprint.spawn(Kind::Boot {
            console: self.console.slave_path(),
            env: &self.init_env,
            host: &self.run_host,
            notify: self.notify.as_ref().map(NotifySocket::path),
        })?;
        drop(limits_lock);
        self.sweep.after_clone(&self.host);
        let booted = Booted {
            container,
            cgroup,
            guest: None,
            up: false,
        };
        self.supervise(booted, number)
    }

    /// Supervises a boot until the shim is gone; hands the guest over to a monitor while
    /// it is up and nothing else happens (see `handoff`).
    fn supervise(&mut self, booted: Booted, number: u32) -> Result<BootEnd> {
        let Booted {
            mut container,
            cgroup,
            mut guest,
            mut up,
        } = booted;
        let mut helper = None;
        let mut failure = None;
        let status = loop {
            let ready = self.wait(&container, helper.as_ref());
            // the report first: what the guest printed once its init ran is relayed after
            // the init is on record (init.pid), so that what the console shows, `status` knows
            if ready.errpipe {
                match container.read_report() {
                    Report::Started => {
                        guest = self.started(&container, number);
                        if self.notify.is_none() {
                            self.readiness.up();
                            up = true;
                        }
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
            if let Some(Event::PowerOff) = self.console.service(&ready.console) {
                log::info!(
                    "{}: Ctrl-] three times: powering the guest off",
                    self.opts.name
                );
                self.power_off(&container, guest.as_ref());
            }
            if ready.signals {
                for sig in self.signals.pending() {
                    if sig == libc::SIGWINCH {
                        self.console.resize_from_terminal();
                    } else {
                        self.on_signal(sig, &container, guest.as_ref(), &mut helper);
                    }
                }
            }
            if ready.helper {
                self.on_helper_exit(&container, guest.as_ref(), &mut helper);
            }
            if ready.notify && self.notify.as_ref().is_some_and(NotifySocket::ready) {
                log::debug!("{}: the guest says it is up (READY=1)", self.opts.name);
                self.readiness.up();
                up = true;
            }
            if self.stopping.deadline().is_some_and(Deadline::passed) {
                self.escalate(&container, guest.as_ref());
            }
            if ready.shim {
                if let Some(status) = container.try_wait() {
                    break status;
                }
            }
            let quiet = self.stopping == Stopping::No
                && helper.is_none()
                && failure.is_none()
                && container.errpipe().is_none();
            if up && quiet && self.opts.detached && !self.monitor_failed {
                // returns only when the monitor could not take over
                self.hand_off(&container, guest.as_ref(), number);
            }
        };
        self.console.drain();
        self.state.clear_running();
        // in this order: the helper, the guest's pidfd, the cgroup (which waits for it to
        // be empty and removes it, with v1 cgroups a `cradle set` may be making: so under
        // the limits' lock)
        drop((helper, guest));
        let limits_lock = self.state.lock_limits();
        drop(cgroup);
        drop(limits_lock);
        Ok(BootEnd {
            outcome: self.outcome(status),
            failure,
        })
    }

    /// Execs the monitor (see `handoff`). Returns when it could not, or when a signal came
    /// first: then the launcher goes on as before (and, after a failure, stays).
    fn hand_off(&mut self, container: &Container, guest: Option<&Guest>, number: u32) {
        if !self.console.is_detached() {
            return;
        }
        let blocked = handoff_signals();
        if let Err(e) = blocked.thread_block() {
            log::debug!("{}: block signals: {e}", self.opts.name);
            return;
        }
        // a signal caught before they were blocked is in our pipe: that first
        let mut fds = [PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
        let caught = sys::poll_ready(&mut fds, PollTimeout::ZERO).map_or(true, |r| r[0]);
        if !caught {
            let Err(e) = self.exec_monitor(container, guest, number);
            log::warn!(
                "{}: the monitor could not take over ({e}); the launcher stays",
                self.opts.name
            );
            self.monitor_failed = true;
        }
        if let Err(e) = blocked.thread_unblock() {
            log::warn!("{}: unblock signals: {e}", self.opts.name);
        }
    }

    /// Everything the monitor serves and the launcher takes back, passed by descriptor;
    /// returns only on failure.
    fn exec_monitor(
        &mut self,
        container: &Container,
        guest: Option<&Guest>,
        number: u32,
    ) -> std::result::Result<std::convert::Infallible, Error> {
        let (console_fds, console) = self.console.hand_over()?;
        let (shim_pid, shim_pidfd) = container.handoff_ids();
        let (verbosity, syslog) = logging::settings();
        let handoff = Handoff {
            verbosity,
            syslog,
            name: self.opts.name.clone(),
            state_base: self.opts.state_base.clone(),
            state_dir: self.state.path().to_owned(),
            state_lock: self.state.lock_fd(),
            root: self.root.path().to_owned(),
            root_fd: self.root.fd().as_raw_fd(),
            id_map: self.id_map,
            lease: self.lease.as_ref().map(Lease::handoff),
            hostname: self.hostname.clone(),
            shim: self.shim.path().to_owned(),
            shim_fd: self.shim.fd().as_raw_fd(),
            timeout: self.opts.timeout.as_secs(),
            caps: self.opts.security.caps.bits(),
            seccomp: self.opts.security.seccomp,
            uuid: self.run_host.uuid.clone(),
            console: console_fds,
            notify: self
                .notify
                .as_ref()
                .map(|n| (n.fd().as_raw_fd(), n.path().to_owned())),
            shim_pid: shim_pid.as_raw(),
            shim_pidfd,
            init: guest.map(|g| g.init().as_raw()),
            boot: number,
        };
        let launcher = nix::fcntl::open(
            c"/proc/self/exe",
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::host("open /proc/self/exe", e))?;
        let argv = handoff::monitor_argv(&handoff, &console, launcher.as_fd())?;
        let envp = handoff::environment();
        let mut passed = vec![
            handoff.state_lock,
            handoff.root_fd,
            handoff.shim_fd,
            handoff.console.master,
            handoff.console.slave,
            handoff.console.listener,
            handoff.console.ring,
            handoff.shim_pidfd,
            launcher.as_raw_fd(),
        ];
        passed.extend(handoff.lease.iter().flat_map(Lease::fds));
        passed.extend(handoff.notify.as_ref().map(|(fd, _)| *fd));
        passed.extend(console.client);
        let kept = passed
            .iter()
            .try_for_each(|fd| sys::set_cloexec(*fd, false));
        let errno = match kept {
            Ok(()) => {
                log::debug!("{}: the monitor takes over", self.opts.name);
                sys::exec_fd(self.shim.fd(), &pointers(&argv), &pointers(&envp))
            }
            Err(errno) => errno,
        };
        for fd in passed {
            let _ = sys::set_cloexec(fd, true);
        }
        Err(Error::host("exec the monitor", errno))
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
        ];
        let console = self.console.poll_fds(&mut fds);
        let errpipe = container.errpipe().map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        let helper_at = helper.map(|h| {
            fds.push(PollFd::new(h.pidfd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let notify_at = self.notify.as_ref().map(|n| {
            fds.push(PollFd::new(n.fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let timeout = match self.stopping.deadline() {
            Some(deadline) => deadline.poll_timeout(),
            None => PollTimeout::NONE,
        };
        let ready = sys::poll_ready(&mut fds, timeout).unwrap_or_else(|e| {
            log::warn!("poll: {e}");
            vec![false; fds.len()]
        });
        let is_ready = |i: usize| ready[i];
        Ready {
            signals: is_ready(0),
            shim: is_ready(1),
            console: Console::ready(&ready, &console),
            errpipe: errpipe.is_some_and(is_ready),
            helper: helper_at.is_some_and(is_ready),
            notify: notify_at.is_some_and(is_ready),
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
            self.host.v1_dirs(&self.opts.name),
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
            self.state.set_stopping();
            if container.errpipe().is_some() {
                // still being set up: halt it as soon as its init runs
                self.stopping = Stopping::Halting {
                    deadline: Deadline::after(self.opts.timeout),
                };
            } else {
                // no init to ask: nothing runs that could shut down gracefully
                container.signal(libc::SIGKILL);
                self.stopping = Stopping::Killed;
            }
            return;
        };
        let spawned = ShimBinary::sealed(Some(self.shim.path()))
            .and_then(|shim| guest.spawn_helper(self.threads, &shim, guest::HALT));
        match spawned {
            Ok(h) => *helper = Some(h),
            Err(e) => log::warn!("{}: running halt in the guest: {e}", self.opts.name),
        }
        self.state.set_stopping();
        self.stopping = Stopping::Halting {
            deadline: Deadline::after(self.opts.timeout),
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
        let powered_off = guest.map(|g| {
            ShimBinary::sealed(Some(self.shim.path()))
                .and_then(|shim| g.power_off(self.threads, &shim))
        });
        match powered_off {
            Some(Ok(())) => {
                self.stopping = Stopping::PoweringOff {
                    deadline: Deadline::after(KILL_GRACE),
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

/// The options of a `start` of guest `name`: those of the file `file` (when the command
/// line gave no `--root`), with those of the command line `cli` on top of them. A value
/// given on the command line replaces the file's; `--env` variables come after the
/// file's `env` (a variable set in both keeps the command line's value); `--capability`
/// and `--drop-capability` apply to the set the file's `capability` and
/// `drop-capability` made (so the command line can give back what the file drops); each
/// limit is the command line's if given there, else the file's.
pub fn start_options(
    cli: &crate::cli::Start,
    file: Option<GuestConfig>,
    state_base: PathBuf,
) -> Result<Options> {
    let file = file.unwrap_or_default();
    let caps = caps::resolve_over(file.caps()?, &cli.capability, &cli.drop_capability)?;
    // with --net, the command line's network options replace all of the file's
    let net = if cli.net.is_some() {
        Request::parse(&NetOptions::net_given(cli))?
    } else {
        file.network()?
    };
    let limits = Changes::parse(LimitOptions::given(cli))?
        .over(file.changes())
        .apply_to(Limits::DEFAULT)?;
    let root = cli.root.clone().or(file.root).ok_or_else(|| {
        Error::Usage(format!(
            "{}: the config file gives no root: add root = \"/path\" to it, or give --root",
            cli.name
        ))
    })?;
    let seccomp = cli.seccomp.or(file.seccomp).unwrap_or(Switch::On);
    Ok(Options {
        name: cli.name.clone(),
        root,
        hostname: cli.hostname.clone().or(file.hostname),
        env: [file.env, cli.env.clone()].concat(),
        shim: cli.shim.clone().or(file.shim),
        timeout: cli
            .timeout
            .or(file.timeout)
            .unwrap_or(DEFAULT_TIMEOUT)
            .duration(),
        state_base,
        detached: cli.detach,
        userns: cli.userns.or(file.userns).unwrap_or(UsernsMode::Pick),
        ownership: cli.ownership.or(file.ownership).unwrap_or_default(),
        security: Security {
            caps,
            seccomp: seccomp == Switch::On,
        },
        limits,
        net,
    })
}
