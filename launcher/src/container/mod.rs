//! One container: what `start` makes at every boot of a guest and `run` makes once, in the
//! order the design needs (see `plan` for the child's side). The caller holds the things
//! that outlive a container (the root directory, the user-namespace range, the compiled
//! filter, the loaded device policy, the shim); [`Blueprint::spawn`] makes the rest: the
//! cgroup (with its limits, in the v1 hierarchies too on a hybrid host; delegated; with
//! the device policy), the user namespace and the namespaces it
//! owns, the detached root tree and device binds, the plan, and the container's first
//! process.

pub mod mountattr;
pub mod mountinfo;
pub mod ownership;
pub mod plan;
pub mod rootfs;
pub mod runhost;
pub mod spawn;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use crate::cgroups::container::Cgroup;
use crate::cgroups::limits::Limits;
use crate::cgroups::v1::{self, Host};
use crate::container::runhost::RunHost;
use crate::error::{Error, Result};
use crate::net::{self, Network};
use crate::security::caps::CapSet;
use crate::security::devices;
use crate::security::seccomp::Filter;
use crate::security::userns::{Namespaces, PendingNamespaces};
use crate::sys::SingleThreaded;
use plan::Purpose;
use rootfs::RootDir;
use spawn::{Container, ShimBinary, Spawn};

/// What every container of a guest is made of.
pub struct Blueprint<'a> {
    pub threads: &'a SingleThreaded,
    pub name: &'a str,
    /// The container's state directory (its name lock is held).
    pub state: &'a std::path::Path,
    pub root: &'a RootDir,
    pub hostname: &'a str,
    pub shim: &'a ShimBinary,
    /// The host uid (and gid) of the guest's root, when it has a user namespace.
    pub owner: Option<u32>,
    /// Whether the root's mounts are id-mapped through the user namespace (`ownership`:
    /// not for a tree whose owners are shifted).
    pub id_map: bool,
    pub devices: &'a devices::Policy,
    pub caps: CapSet,
    pub seccomp: Option<&'a Filter>,
    /// The host's cgroup hierarchies, and the limits to set in them.
    pub host: &'a Host,
    pub limits: &'a Limits,
    /// The guest's network, as it holds it (`net::setup::hold`).
    pub network: &'a Network,
    /// Its namespaces, when the caller began them already (for `owner`, and with a network
    /// namespace of their own when the network is private), to run alongside its own work
    /// (see [`Namespaces::begin`]).
    pub begun: Option<PendingNamespaces>,
    /// The root's tree, when the caller has it already: id-mapped through `begun`'s user
    /// namespace (`ownership::Prepared::tree`).
    pub tree: Option<OwnedFd>,
}

/// What the container is for.
pub enum Kind<'a> {
    /// Boot the guest's init, with `console` (the host's path of the pty slave) on
    /// /dev/console, `env` as its environment (the shim passes on its own), and `host` in
    /// /run/host.
    Boot {
        console: &'a str,
        env: &'a [String],
        host: &'a RunHost,
        /// The launcher's notify socket, for /run/host/notify (a systemd guest).
        notify: Option<&'a Path>,
    },
    /// Run a command: the shim's arguments (`-- CMD...`) and the command's environment.
    Run {
        shim_args: &'a [String],
        env: &'a [String],
    },
}

impl Blueprint<'_> {
    /// Makes the container: its cgroup (with the shim's and guest's leaves in boot mode),
    /// its network's link, then its first process, which sets it up and execs the shim.
    /// The cgroup is returned with it: dropping it (after the container) removes
    /// everything the container left (its link goes with its network namespace).
    pub fn spawn(mut self, kind: Kind) -> Result<(Container, Cgroup)> {
        let boot = matches!(kind, Kind::Boot { .. });
        let private_net = self.network.mode.private();
        // made alongside the cgroup at least (a network namespace is the kernel's slowest
        // part)
        let namespaces = match self.begun.take() {
            begun @ Some(_) => begun,
            None => Namespaces::begin_for(self.threads, self.owner, private_net)?,
        };
        let cgroup = Cgroup::create(self.name, boot, self.state)?.with_v1(
            self.host.v1_dirs(self.name),
            self.host.needs_v1(self.limits),
        )?;
        v1::apply(
            self.host,
            cgroup.path(),
            cgroup.v1(),
            self.limits,
            &self.limits.set_knobs(),
        )?;
        // before any process is born in it
        self.devices.attach(cgroup.dir())?;
        if let Some(owner) = self.owner {
            cgroup.delegate(owner)?;
        }
        // again for every container: the guest may have changed its root since the last
        self.root.check_mount_points(boot)?;
        let namespaces = namespaces.map(PendingNamespaces::finish).transpose()?;
        // the guest's link, made in its network namespace before anything of it runs
        let made_netns = match (&namespaces, self.network.mode.linked()) {
            (None, true) => Some(net::setup::new_netns(self.threads)?),
            _ => None,
        };
        let netns = namespaces
            .as_ref()
            .and_then(|ns| ns.net.as_ref())
            .or(made_netns.as_ref());
        if let Some(fd) = netns {
            net::setup::attach(self.threads, self.network, fd.as_fd())?;
        }
        let resolv_conf =
            (!self.network.dns.is_empty()).then(|| net::setup::resolv_conf(&self.network.dns));
        let tree = match self.tree.take() {
            Some(tree) => tree,
            None => self.root.clone_tree(
                namespaces
                    .as_ref()
                    .filter(|_| self.id_map)
                    .map(Namespaces::user),
            )?,
        };
        let boot_args = ["--boot".to_owned()];
        let (purpose, shim_args, env) = match kind {
            Kind::Boot {
                console,
                env,
                host,
                notify,
            } => {
                let console = host_bind(Path::new(console), "the console pty")?;
                let notify = notify
                    .map(|path| host_bind(path, "the notify socket"))
                    .transpose()?;
                let host = host.clone();
                let purpose = Purpose::Boot {
                    console,
                    host,
                    notify,
                };
                (purpose, &boot_args[..], env)
            }
            Kind::Run { shim_args, env } => (Purpose::Run, shim_args, env),
        };
        let steps = plan::build(plan::Config {
            tree,
            hostname: self.hostname,
            purpose,
            devices: rootfs::host_devices()?,
            userns: namespaces,
            caps: self.caps,
            seccomp: self.seccomp.cloned(),
            join_v1: cgroup.open_v1_tasks()?,
            switch: self.root.switch()?,
            netns: made_netns,
            resolv_conf,
        })
        .map_err(|_| Error::Usage("the hostname contains a NUL byte".into()))?;
        // in boot mode the shim clones the guest init into the guest's leaf
        let guest_leaf = cgroup.guest_dir();
        let mut args = Vec::new();
        if let Some(fd) = guest_leaf {
            args.extend(["--cgroup-fd".to_owned(), fd.as_raw_fd().to_string()]);
        }
        args.extend_from_slice(shim_args);
        let container = spawn::spawn(
            &Spawn {
                threads: self.threads,
                shim: self.shim,
                cwd: Some(self.root.fd()),
                namespaces: spawn::namespaces(
                    self.owner.is_some(),
                    private_net && !self.network.mode.linked(),
                ),
                cgroup: Some(cgroup.first_process_dir()),
                keep: guest_leaf.as_slice(),
                args: &args,
                env,
                outlives_launcher: false,
            },
            steps,
        )?;
        Ok((container, cgroup))
    }
}

/// A detached bind of a host file the guest gets (the console pty's slave for its
/// /dev/console, the notify socket for /run/host/notify).
fn host_bind(path: &Path, what: &str) -> Result<OwnedFd> {
    let bytes = path.as_os_str().as_encoded_bytes();
    let path = std::ffi::CString::new(bytes)
        .map_err(|_| Error::Usage(format!("{} contains a NUL byte", path.display())))?;
    rootfs::clone_host_file(&path)
        .map_err(|e| Error::setup(format!("bind {what} for the guest"), e))
}
