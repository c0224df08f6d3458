//! What the launcher's child does between clone and exec of the shim, as data.
//!
//! [`build`] is a pure function from the container's configuration (with the descriptors
//! the launcher prepared: the detached root tree, the host's device nodes, the guest's
//! namespaces) to a list of [`Step`]s; [`apply`] runs them in the child with no allocation,
//! and on failure returns the index of the step, which the parent turns back into words
//! with the step's `Display`. The order is the design:
//!
//! 1. a session of its own; with a user namespace, the guest's network, UTS and IPC
//!    namespaces (owned by it) are joined now, while the child is still the host's root;
//!    in run mode the cgroup namespace, rooted at the container's cgroup;
//! 2. the inherited mounts private, then the root tree attached on the working directory
//!    (the root directory, which the launcher made our working directory) and entered;
//! 3. below it, every path resolved from the root's descriptor (`openat2` with
//!    `RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS`: a symlink the guest planted is refused, never
//!    followed out of the root) and mounted onto the descriptor (`move_mount`): /dev (a
//!    tmpfs, the host's device nodes bound, its own devpts and /dev/shm, the console in
//!    boot mode), /proc (with read-only and masked paths in run mode; in boot mode the
//!    guest's nested PID namespace mounts its own on top, see the shim), /sys read-only with
//!    masks, the cgroup2 tree in run mode; in boot mode /run (a tmpfs) with /run/host
//!    read-only in it (`runhost`: systemd's container interface);
//! 4. pivot_root into it and detach the host's root (where the host's root is the
//!    initramfs, which pivot_root refuses: detach the host's other mounts, move the root
//!    over `/` and chroot, see `mountinfo`); hostname; loopback up; on a hybrid host, for
//!    a container with limits, its cgroups in the v1 hierarchies, which clone3 cannot put
//!    it in (a write of "0" into each `tasks`, see `cgroups::v1`);
//! 5. with a user namespace: join it, then unshare the mount namespace — the copy, owned
//!    by the user namespace, has every mount made above **locked**: the guest's root can
//!    neither unmount nor remount them (read-only /sys stays read-only) — and become its
//!    root (container uid 0, host uid BASE);
//! 6. the console as standard streams (boot mode), the capability bounding set, and the
//!    seccomp filter last, just before the shim runs.

use std::ffi::{CStr, CString, NulError};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use cradle_common::guest::{Mask, PROC_BINDS, PROC_MASKS, SYS_MASKS};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::fcntl::{AtFlags, renameat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::{Mode, fstatat, mkdirat, umask};
use nix::unistd::{
    Gid, Uid, chdir, chroot, dup2_stderr, dup2_stdin, dup2_stdout, fchdir, fchown, pivot_root,
    setgroups, sethostname, setresgid, setresuid, setsid, symlinkat, write,
};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::container::mountattr::{self, Target};
use crate::container::mountinfo::RootSwitch;
use crate::container::runhost::{self, RunHost};
use crate::security::caps::CapSet;
use crate::security::seccomp::Filter;
use crate::security::userns::Namespaces;
use crate::sys::{self, InChild};

/// What the shim will be asked to do; it decides a few mounts.
pub enum Purpose {
    /// Boot the guest's init, with the console pty (a detached bind of its slave) on
    /// /dev/console and as standard streams, and `host` in /run/host.
    Boot {
        console: OwnedFd,
        host: RunHost,
        /// A detached bind of the launcher's notify socket, for /run/host/notify.
        notify: Option<OwnedFd>,
    },
    /// Run a command with the launcher's own standard streams.
    Run,
}

pub struct Config<'a> {
    /// The root's mount tree, detached (`rootfs::RootDir::clone_tree`).
    pub tree: OwnedFd,
    pub hostname: &'a str,
    pub purpose: Purpose,
    /// Detached binds of the host's device nodes, by their path below /dev.
    pub devices: Vec<(&'static CStr, OwnedFd)>,
    /// The guest's user namespace and the namespaces it owns.
    pub userns: Option<Namespaces>,
    /// The capabilities kept in the bounding set.
    pub caps: CapSet,
    /// The seccomp filter, when there is one.
    pub seccomp: Option<Filter>,
    /// The `tasks` files of the v1 cgroups to join, by their hierarchies' names.
    pub join_v1: Vec<(String, OwnedFd)>,
    /// How the child switches to the root (`mountinfo::root_switch`).
    pub switch: RootSwitch,
    /// Without a user namespace: a network namespace made beforehand (for the guest's
    /// link, see `net`), joined instead of a new one.
    pub netns: Option<OwnedFd>,
    /// The guest's /etc/resolv.conf, when cradle writes it (`--dns`, `--net nat`).
    pub resolv_conf: Option<Vec<u8>>,
}

/// A path below the guest's root, with its parent and last component apart for the steps
/// that create it. Shown from the guest's side (`/dev/null`).
#[derive(Debug, PartialEq, Eq)]
pub struct GuestPath {
    path: CString,
    parent: CString,
    name: CString,
    /// Symlinks on the way are followed (inside the root, never out of it): for the paths
    /// an OCI bundle names, as runc resolves them. cradle's own paths never follow one.
    follow: bool,
}

impl GuestPath {
    fn new(path: &str) -> Self {
        let (parent, name) = path.rsplit_once('/').unwrap_or((".", path));
        GuestPath {
            path: c(path),
            parent: c(parent),
            name: c(name),
            follow: false,
        }
    }

    /// `path` (relative to the root, or absolute in the guest's terms), resolved as runc
    /// resolves a bundle's paths: symlinks followed, inside the root. None when it holds a
    /// NUL byte, or names the root itself.
    pub fn following(path: &str) -> Option<Self> {
        let path = path.trim_start_matches('/').trim_end_matches('/');
        if path.is_empty() || path.contains('\0') {
            return None;
        }
        Some(GuestPath {
            follow: true,
            ..GuestPath::new(path)
        })
    }

    /// The path's prefixes, shortest first, ending with the path itself: the directories
    /// to make, one step each, for `mkdir -p`.
    pub fn ancestry(&self) -> Vec<GuestPath> {
        let text = self.path.to_string_lossy();
        let mut all = Vec::new();
        for (i, _) in text.match_indices('/') {
            all.push(GuestPath {
                follow: self.follow,
                ..GuestPath::new(&text[..i])
            });
        }
        all.push(GuestPath {
            follow: self.follow,
            ..GuestPath::new(&text)
        });
        all
    }
}

impl fmt::Display for GuestPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "/{}", self.path.to_string_lossy())
    }
}

/// A file system to mount: its type, its options for fsconfig, its `MOUNT_ATTR_*` flags.
#[derive(Debug, PartialEq, Eq)]
pub struct Filesystem {
    fstype: CString,
    options: Vec<(CString, Option<CString>)>,
    attrs: u64,
}

impl Filesystem {
    /// A file system of type `fstype`, with `options` for fsconfig (`("mode", Some("755"))`,
    /// `("newinstance", None)`) and `MOUNT_ATTR_*` flags `attrs`.
    pub fn new(fstype: CString, options: Vec<(CString, Option<CString>)>, attrs: u64) -> Self {
        Filesystem {
            fstype,
            options,
            attrs,
        }
    }
}

/// A detached bind the launcher made on the host (`name` for messages).
#[derive(Debug)]
pub struct Source {
    name: String,
    tree: OwnedFd,
}

impl Source {
    pub fn new(name: String, tree: OwnedFd) -> Self {
        Source { name, tree }
    }
}

/// What `Step::Identity` makes the process: its user, group and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<Gid>,
}

/// The five capability sets of a process (OCI's `process.capabilities`), bit N for
/// capability N. The bounding set is cut by `Step::Bounding` while the process is still
/// root; these are set after `Step::Identity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// The namespaces the child joins or unshares, by what they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    User,
    Mount,
    Network,
    Uts,
    Ipc,
    Cgroup,
}

impl Namespace {
    pub fn flag(self) -> CloneFlags {
        match self {
            Namespace::User => CloneFlags::CLONE_NEWUSER,
            Namespace::Mount => CloneFlags::CLONE_NEWNS,
            Namespace::Network => CloneFlags::CLONE_NEWNET,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Namespace::User => "user",
            Namespace::Mount => "mount",
            Namespace::Network => "network",
            Namespace::Uts => "UTS",
            Namespace::Ipc => "IPC",
            Namespace::Cgroup => "cgroup",
        }
    }
}

/// One step of the child's setup.
#[derive(Debug)]
pub enum Step {
    /// Writes "0" (ourselves: the one thread the child has) into a v1 hierarchy's `tasks`
    /// open on the descriptor (see `cgroups::v1`).
    JoinCgroup {
        hierarchy: String,
        tasks: OwnedFd,
    },
    NewSession,
    Join(Namespace, OwnedFd),
    /// Joins the namespaces `flags` of the process behind `pidfd` at once (setns with a
    /// pidfd, Linux 5.8): how a process enters a running container (`cradle-oci exec`).
    JoinProcess {
        pidfd: OwnedFd,
        flags: CloneFlags,
    },
    Unshare(Namespace),
    /// Every mount inherited from the host private, recursively (pivot_root needs it).
    MakePrivate,
    /// Attaches the detached root tree on the working directory and enters it.
    AttachRoot(OwnedFd),
    /// mkdir, where nothing exists at the path yet (an existing directory, or file, is
    /// kept).
    Mkdir(GuestPath),
    /// An empty regular file (a mount point for a file).
    EmptyFile(GuestPath),
    /// A new regular file (mode 0644) with these contents, owned by this host uid and gid.
    WriteFile {
        path: GuestPath,
        contents: Vec<u8>,
        owner: u32,
    },
    Symlink {
        target: CString,
        path: GuestPath,
    },
    /// Replaces a file of the guest's with these contents (mode 0644), as the guest's
    /// root (the id-mapped root takes no file of the host's root): a new file `tmp` beside
    /// it, renamed over it; never through a symlink, and not at all where the guest made
    /// the file a symlink (it manages it itself).
    ReplaceFile {
        path: GuestPath,
        tmp: CString,
        contents: Vec<u8>,
    },
    Mount {
        target: GuestPath,
        fs: Filesystem,
    },
    Bind {
        target: GuestPath,
        source: Source,
    },
    /// Binds a path on itself with `MOUNT_ATTR_RDONLY` set (or cleared); skipped when the
    /// kernel does not have the path.
    Rebind {
        target: GuestPath,
        read_only: bool,
    },
    /// Masks a path (common::guest::Mask); skipped when the kernel does not have it.
    Mask(GuestPath, Mask),
    /// pivot_root into the working directory and detach the old root.
    PivotRoot,
    /// Detaches the host's mount at this path, with everything mounted below it.
    DetachHost(CString),
    /// Moves the working directory's mount over `/` and chroots into it.
    MoveRoot,
    /// Chroots into the working directory, moving no mount: the switch of a container
    /// that shares the runtime's mount namespace (an OCI spec without one), whose root
    /// stays where it was attached, below the runtime's own.
    Chroot,
    /// Chroots into the directory open on the descriptor: how a process added to such a
    /// container (`cradle-oci exec`) enters its root, `/proc/PID/root` of its first process.
    EnterRoot(OwnedFd),
    Hostname(CString),
    LoopbackUp,
    /// setgroups([]), setresgid(0), setresuid(0): in a user namespace, its root.
    BecomeRoot,
    /// Opens this path as standard input, output and error.
    Stdio(CString),
    /// Puts these descriptors on standard input, output and error (`relay`).
    Streams([OwnedFd; 3]),
    /// Drops every capability not in the set from the bounding, permitted and effective
    /// sets, and empties the inheritable and ambient ones.
    DropCapabilities(CapSet),
    Seccomp(Filter),
    /// Installs a filter with a listener (SCMP_ACT_NOTIFY rules) and sends the listener
    /// over the socket (SCM_RIGHTS, with the payload "seccompFd"), for the runtime to
    /// hand to the seccomp agent.
    SeccompListener {
        filter: Filter,
        to: OwnedFd,
    },
    // The steps an OCI bundle's configuration adds (cradle-oci); each as runc does it.
    /// A regular file, where nothing exists at the path yet (a mount point for a file).
    EnsureFile(GuestPath),
    /// A device node: `mode` with its type bits (`S_IFCHR`), `dev` its number; owned by
    /// `owner` (uid, gid). An existing node is kept.
    Mknod {
        path: GuestPath,
        mode: u32,
        dev: u64,
        owner: (u32, u32),
    },
    /// Covers a path with /dev/null (a file) or an empty read-only tmpfs (a directory),
    /// whichever it is; skipped when absent.
    MaskAny(GuestPath),
    /// Writes `contents` into the existing file at this absolute path, after the switch
    /// (a sysctl below /proc/sys, /proc/self/oom_score_adj).
    WriteExisting {
        path: CString,
        contents: Vec<u8>,
    },
    Domainname(CString),
    /// The root's mount read-only (its submounts keep their own flags).
    ReadOnlyRoot,
    /// Binds the host's path `source` (absolute; resolved in the child's copy of the
    /// host's mounts, before the switch) on `target`, with what is mounted below it when
    /// `recursive`, `MOUNT_ATTR_*` flags `set` and `clear`, id-mapped through the user
    /// namespace `idmap` if given. Made in the child, in its turn, so that the container's
    /// mount table lists its mounts in the order the bundle gives them.
    BindPath {
        source: CString,
        target: GuestPath,
        recursive: bool,
        set: u64,
        clear: u64,
        idmap: Option<OwnedFd>,
        /// The mounts below `source` (paths relative to it, parents first), for a
        /// recursive bind on a kernel without mount_setattr (before 5.12), where the
        /// flags are set mount by mount (`mountinfo::below`); empty otherwise.
        below: Vec<CString>,
    },
    /// The propagation (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE`) of the
    /// mount at a path, with the mounts below it when `recursive`: set once the mount is
    /// attached, as mount(8) sets it.
    Propagation {
        target: GuestPath,
        flags: u64,
        recursive: bool,
    },
    /// Makes the mount at a path read-only where it is, the mounts below it untouched
    /// (a tree of mounts made on a writable file system first).
    MountReadOnly(GuestPath),
    /// The propagation of every mount from the root down (`MS_SHARED`, `MS_SLAVE`,
    /// `MS_PRIVATE`, `MS_UNBINDABLE`).
    RootPropagation(MsFlags),
    /// Drops every capability not in the set from the bounding set (while still root).
    Bounding(CapSet),
    /// Sets the process's uid, gid and supplementary groups, keeping its capabilities
    /// for `Step::SetCapabilities` to cut.
    Identity(Identity),
    SetCapabilities(Capabilities),
    /// setrlimit(resource, soft, hard); `name` for messages (`RLIMIT_NOFILE`).
    Rlimit {
        name: &'static str,
        resource: i32,
        soft: u64,
        hard: u64,
    },
    NoNewPrivileges,
    /// The AppArmor profile the next exec takes on (`exec PROFILE` written to the
    /// process's own `attr/apparmor/exec`, through the container's /proc).
    AppArmorOnExec(CString),
    /// chdir, in the guest's terms, as the process's own user.
    Chdir(CString),
    /// The umask the shim and the command start with (instead of 022).
    Umask(u32),
    /// Succeeds when one of `candidates` (the command `name`'s paths along $PATH) is an
    /// executable file: runc's lookup before the container waits to be started, so a
    /// missing command fails `create`, not the later `start`.
    FindExecutable {
        name: CString,
        candidates: Vec<CString>,
    },
    /// The pty of an OCI terminal: opened on the container's /dev/ptmx, its main side
    /// sent with its name over the console socket (SCM_RIGHTS), its other side made the
    /// standard streams and the controlling terminal, with the window size if given.
    Terminal {
        socket: OwnedFd,
        size: Option<(u16, u16)>,
    },
    /// Says "ready" on `ready` (one byte, for `cradle-oci create`), then waits until the
    /// fifo open on `fifo` (an O_PATH descriptor) is opened by `cradle-oci start`
    /// (reopened for writing through /proc/self/fd, as runc's exec.fifo), whose write end
    /// then takes `ready`'s number, kept across exec: the shim says "started" on it
    /// (`--started-fd`) once the command runs, which is when `start` returns.
    AwaitStart {
        ready: OwnedFd,
        fifo: OwnedFd,
    },
    /// Says "paused" on `tell` (one byte, `PAUSED`), then waits for one byte on `resume`:
    /// the caller's turn in the middle of the setup (an OCI runtime runs its hooks there).
    /// `resume` closed without a byte fails the step (ECANCELED).
    Pause {
        tell: OwnedFd,
        resume: OwnedFd,
    },
}

/// What [`Step::Pause`] says on its `tell` descriptor (`AwaitStart` says `1`).
pub const PAUSED: u8 = b'p';

fn c(s: &str) -> CString {
    CString::new(s).expect("literal without NUL")
}

fn path_of(path: &CStr) -> GuestPath {
    GuestPath::new(&path.to_string_lossy())
}

const NOSUID_NODEV_NOEXEC: u64 =
    libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC;

fn mount_fs(
    target: &str,
    fstype: &'static CStr,
    options: &[(&str, Option<&str>)],
    attrs: u64,
) -> Step {
    Step::Mount {
        target: GuestPath::new(target),
        fs: Filesystem {
            fstype: fstype.to_owned(),
            options: options.iter().map(|(k, v)| (c(k), v.map(c))).collect(),
            attrs,
        },
    }
}

/// Symlinks every guest gets in /dev: (name, target).
const DEV_LINKS: [(&str, &str); 5] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// The steps for `config`. Fails only when the hostname holds a NUL byte.
pub fn build(config: Config) -> Result<Vec<Step>, NulError> {
    let run = matches!(config.purpose, Purpose::Run);
    // in a user namespace the setup runs as the host's root: what it creates for the guest
    // to own (the /dev tmpfs, the ptys' group) names the guest's ids on the host
    let (base, userns) = match config.userns {
        Some(ns) => (ns.base, Some(ns)),
        None => (0, None),
    };
    let owner = base.to_string();
    let tty_group = (base + 5).to_string();
    let join_v1: Vec<Step> = config
        .join_v1
        .into_iter()
        .map(|(hierarchy, tasks)| Step::JoinCgroup { hierarchy, tasks })
        .collect();
    let mut steps = vec![Step::NewSession];
    let mut later = Vec::new();
    if let Some(net) = config.netns {
        steps.push(Step::Join(Namespace::Network, net));
    }
    if let Some(ns) = userns {
        if let Some(net) = ns.net {
            steps.push(Step::Join(Namespace::Network, net));
        }
        steps.push(Step::Join(Namespace::Uts, ns.uts));
        steps.push(Step::Join(Namespace::Ipc, ns.ipc));
        later.push(Step::Join(Namespace::User, ns.user));
        later.push(Step::Unshare(Namespace::Mount));
    }
    if run {
        steps.push(Step::Unshare(Namespace::Cgroup));
    }
    steps.extend([Step::MakePrivate, Step::AttachRoot(config.tree)]);

    // /dev
    steps.push(mount_fs(
        "dev",
        c"tmpfs",
        &[
            ("mode", Some("755")),
            ("size", Some("4m")),
            ("nr_inodes", Some("64k")),
            ("uid", Some(&owner)),
            ("gid", Some(&owner)),
        ],
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_STRICTATIME,
    ));
    for (name, tree) in config.devices {
        let name = name.to_string_lossy();
        if let Some((dir, _)) = name.rsplit_once('/') {
            steps.push(Step::Mkdir(GuestPath::new(&format!("dev/{dir}"))));
        }
        let target = format!("dev/{name}");
        steps.push(Step::EmptyFile(GuestPath::new(&target)));
        steps.push(Step::Bind {
            target: GuestPath::new(&target),
            source: Source {
                name: format!("/dev/{name}"),
                tree,
            },
        });
    }
    steps.extend([
        Step::Mkdir(GuestPath::new("dev/pts")),
        mount_fs(
            "dev/pts",
            c"devpts",
            &[
                ("newinstance", None),
                ("ptmxmode", Some("0666")),
                ("mode", Some("620")),
                ("gid", Some(&tty_group)),
            ],
            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC,
        ),
        Step::Mkdir(GuestPath::new("dev/shm")),
        // nspawn's size limits for a tmpfs in a container: without them it would be the
        // kernel's default, half of the host's memory
        mount_fs(
            "dev/shm",
            c"tmpfs",
            &[
                ("mode", Some("1777")),
                ("size", Some("10%")),
                ("nr_inodes", Some("400k")),
                ("uid", Some(&owner)),
                ("gid", Some(&owner)),
            ],
            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        ),
    ]);
    steps.extend(DEV_LINKS.iter().map(|&(name, target)| Step::Symlink {
        target: c(target),
        path: GuestPath::new(&format!("dev/{name}")),
    }));
    let (console, run_host) = match config.purpose {
        Purpose::Boot {
            console,
            host,
            notify,
        } => {
            steps.push(Step::EmptyFile(GuestPath::new("dev/console")));
            steps.push(Step::Bind {
                target: GuestPath::new("dev/console"),
                source: Source {
                    name: "the console pty".into(),
                    tree: console,
                },
            });
            (true, Some((host, notify)))
        }
        Purpose::Run => (false, None),
    };

    // /proc: in boot mode one for the shim's PID namespace, with nothing on it, so that
    // the guest's own (on top, made in the user namespace) is allowed: the kernel refuses a
    // new proc in a user namespace unless one is already fully visible there
    steps.push(mount_fs("proc", c"proc", &[], NOSUID_NODEV_NOEXEC));
    if run {
        steps.extend(PROC_BINDS.iter().map(|&(path, read_only)| Step::Rebind {
            target: path_of(path),
            read_only,
        }));
        steps.extend(
            PROC_MASKS
                .iter()
                .map(|&(path, mask)| Step::Mask(path_of(path), mask)),
        );
    }

    // /sys, read-only, for the guest's own network namespace
    steps.push(mount_fs(
        "sys",
        c"sysfs",
        &[],
        libc::MOUNT_ATTR_RDONLY | NOSUID_NODEV_NOEXEC,
    ));
    steps.extend(
        SYS_MASKS
            .iter()
            .map(|&(path, mask)| Step::Mask(path_of(path), mask)),
    );
    if run {
        steps.push(mount_fs(
            "sys/fs/cgroup",
            c"cgroup2",
            &[],
            NOSUID_NODEV_NOEXEC,
        ));
    }
    if let Some((host, notify)) = run_host {
        steps.extend(run_steps(host, notify, base, &owner));
    }

    match config.switch {
        RootSwitch::Pivot => steps.push(Step::PivotRoot),
        RootSwitch::Move { detach } => {
            steps.extend(detach.into_iter().map(Step::DetachHost));
            steps.push(Step::MoveRoot);
        }
    }
    steps.extend([
        Step::Hostname(CString::new(config.hostname)?),
        Step::LoopbackUp,
    ]);
    // still the host's root (before the user namespace), and before anything is born
    steps.extend(join_v1);
    steps.extend(later);
    steps.push(Step::BecomeRoot);
    if let Some(contents) = config.resolv_conf {
        steps.push(Step::ReplaceFile {
            path: GuestPath::new("etc/resolv.conf"),
            tmp: c(".resolv.conf.cradle"),
            contents,
        });
    }
    if console {
        steps.push(Step::Stdio(c("/dev/console")));
    }
    steps.push(Step::DropCapabilities(config.caps));
    if let Some(filter) = config.seccomp {
        steps.push(Step::Seccomp(filter));
    }
    Ok(steps)
}

/// /run, a tmpfs the guest's root owns (nspawn's size limits), and in it /run/host, a
/// small tmpfs with systemd's container interface, read-only.
fn run_steps(host: RunHost, notify: Option<OwnedFd>, base: u32, owner: &str) -> Vec<Step> {
    let file = |name: &str, contents: Vec<u8>| Step::WriteFile {
        path: GuestPath::new(&format!("run/host/{name}")),
        contents,
        owner: base,
    };
    let mut steps = vec![
        mount_fs(
            "run",
            c"tmpfs",
            &[
                ("mode", Some("755")),
                ("size", Some("20%")),
                ("nr_inodes", Some("800k")),
                ("uid", Some(owner)),
                ("gid", Some(owner)),
            ],
            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_STRICTATIME,
        ),
        Step::Mkdir(GuestPath::new("run/host")),
        mount_fs(
            "run/host",
            c"tmpfs",
            &[
                ("mode", Some("755")),
                ("size", Some("1m")),
                ("nr_inodes", Some("64")),
                ("uid", Some(owner)),
                ("gid", Some(owner)),
            ],
            NOSUID_NODEV_NOEXEC,
        ),
        file(
            "container-manager",
            format!("{}\n", runhost::MANAGER).into_bytes(),
        ),
        file("container-uuid", format!("{}\n", host.uuid).into_bytes()),
    ];
    if let Some(os_release) = host.os_release {
        steps.push(file("os-release", os_release));
    }
    if let Some(tree) = notify {
        let target = || GuestPath::new("run/host/notify");
        steps.push(Step::EmptyFile(target()));
        steps.push(Step::Bind {
            target: target(),
            source: Source {
                name: "the notify socket".into(),
                tree,
            },
        });
    }
    steps.push(Step::Rebind {
        target: GuestPath::new("run/host"),
        read_only: true,
    });
    steps
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Step::JoinCgroup { hierarchy, .. } => {
                write!(
                    f,
                    "join the container's cgroup in the v1 {hierarchy} hierarchy"
                )
            }
            Step::NewSession => f.write_str("setsid"),
            Step::JoinProcess { .. } => f.write_str("join the container's namespaces"),
            Step::Join(ns, _) => write!(f, "join the guest's {} namespace", ns.name()),
            Step::Unshare(Namespace::Mount) => {
                f.write_str("lock the guest's mounts (a mount namespace in its user namespace)")
            }
            Step::Unshare(ns) => write!(f, "unshare the {} namespace", ns.name()),
            Step::MakePrivate => f.write_str("make the inherited mounts private"),
            Step::AttachRoot(_) => f.write_str("attach the root directory"),
            Step::Mkdir(path) => write!(f, "create directory {path}"),
            Step::EmptyFile(path) | Step::WriteFile { path, .. } => write!(f, "create {path}"),
            Step::ReplaceFile { path, .. } => write!(f, "write {path}"),
            Step::Symlink { path, .. } => write!(f, "create symlink {path}"),
            Step::Mount { target, fs } => {
                write!(f, "mount {} on {target}", fs.fstype.to_string_lossy())
            }
            Step::Bind { target, source } => write!(f, "bind {} on {target}", source.name),
            Step::Rebind { target, read_only } => {
                let how = if *read_only { "read-only" } else { "writable" };
                write!(f, "bind {target} {how}")
            }
            Step::Mask(path, _) => write!(f, "mask {path}"),
            Step::PivotRoot => f.write_str("pivot_root into the root directory"),
            Step::DetachHost(path) => write!(
                f,
                "detach the host's mount on {} (the host's root is the initramfs)",
                path.to_string_lossy()
            ),
            Step::MoveRoot => {
                f.write_str("move the root directory over the initramfs and chroot into it")
            }
            Step::Chroot => f.write_str("chroot into the root directory"),
            Step::EnterRoot(_) => f.write_str("chroot into the container's root"),
            Step::Hostname(name) => write!(f, "set hostname {}", name.to_string_lossy()),
            Step::LoopbackUp => f.write_str("bring up the loopback interface"),
            Step::BecomeRoot => f.write_str("become the guest's root (setresuid 0)"),
            Step::Stdio(path) => write!(f, "open {} as standard streams", path.to_string_lossy()),
            Step::DropCapabilities(_) => f.write_str("limit the capabilities to the guest's"),
            Step::Streams(_) => f.write_str("connect the command's standard streams"),
            Step::Seccomp(_) => f.write_str("install the seccomp filter"),
            Step::SeccompListener { .. } => {
                f.write_str("install the seccomp filter and hand over its listener")
            }
            Step::EnsureFile(path) => write!(f, "create file {path}"),
            Step::Mknod { path, .. } => write!(f, "create device {path}"),
            Step::MaskAny(path) => write!(f, "mask {path}"),
            Step::WriteExisting { path, .. } => write!(f, "write {}", path.to_string_lossy()),
            Step::Domainname(name) => write!(f, "set domainname {}", name.to_string_lossy()),
            Step::ReadOnlyRoot => f.write_str("make the root read-only"),
            Step::RootPropagation(_) => f.write_str("set the root's propagation"),
            Step::Propagation { target, .. } => write!(f, "set the propagation of {target}"),
            Step::BindPath { source, target, .. } => {
                write!(f, "bind {} on {target}", source.to_string_lossy())
            }
            Step::MountReadOnly(path) => write!(f, "make the mount on {path} read-only"),
            Step::Bounding(_) => f.write_str("cut the capability bounding set"),
            Step::Identity(id) => write!(
                f,
                "become uid {} gid {} (groups {:?})",
                id.uid, id.gid, id.groups
            ),
            Step::SetCapabilities(_) => f.write_str("set the process's capabilities"),
            Step::Rlimit {
                name, soft, hard, ..
            } => write!(f, "set {name} to {soft}:{hard}"),
            Step::NoNewPrivileges => f.write_str("set no_new_privs"),
            Step::AppArmorOnExec(profile) => {
                write!(
                    f,
                    "take AppArmor profile {} on exec",
                    profile.to_string_lossy()
                )
            }
            Step::Chdir(dir) => write!(f, "chdir to {}", dir.to_string_lossy()),
            Step::Umask(mask) => write!(f, "set umask {mask:04o}"),
            Step::FindExecutable { name, .. } => {
                write!(f, "{FIND_EXECUTABLE}{}", name.to_string_lossy())
            }
            Step::Terminal { .. } => f.write_str("set up the terminal (console socket)"),
            Step::AwaitStart { .. } => f.write_str("wait to be started"),
            Step::Pause { .. } => f.write_str("wait for the runtime's hooks"),
        }
    }
}

/// How [`Step::FindExecutable`] names itself, before the command: `spawn` reports its
/// failure as the command's (exit codes 127 and 126), not as a setup step's.
pub const FIND_EXECUTABLE: &str = "find the executable ";

/// Where paths below the root are resolved from, once it is attached.
struct Root<'a>(BorrowedFd<'a>);

impl Root<'_> {
    /// `path` below the root, as an `O_PATH` descriptor: never out of the root, never
    /// through a symlink (ELOOP), never through /proc's magic links.
    fn resolve(&self, path: &CStr) -> nix::Result<OwnedFd> {
        self.resolve_as(path, false)
    }

    /// As [`Root::resolve`], or, with `follow`, through symlinks (resolved inside the
    /// root, never out of it).
    fn resolve_as(&self, path: &CStr, follow: bool) -> nix::Result<OwnedFd> {
        let mut resolve = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if !follow {
            resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
        }
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(resolve);
        openat2(self.0, path, how)
    }

    /// The parent directory of `path`, as its resolution asks.
    fn parent(&self, path: &GuestPath) -> nix::Result<OwnedFd> {
        self.resolve_as(&path.parent, path.follow)
    }

    /// `path` itself, as its resolution asks.
    fn path(&self, path: &GuestPath) -> nix::Result<OwnedFd> {
        self.resolve_as(&path.path, path.follow)
    }
}

/// Attaches the detached mount `tree` onto `target`.
fn attach(tree: BorrowedFd, target: BorrowedFd) -> nix::Result<()> {
    sys::move_mount(
        tree,
        c"",
        target,
        c"",
        libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// A detached bind of the mount at `source`, with what is mounted below it (a bind made
/// before, such as /run/host/notify, stays visible).
fn clone_mount(source: BorrowedFd) -> nix::Result<OwnedFd> {
    sys::open_tree(
        source,
        c"",
        libc::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as u32 | libc::AT_RECURSIVE as u32,
    )
}

/// Sets `MOUNT_ATTR_RDONLY` (with `read_only`, or clears it) and nosuid, nodev, noexec on
/// the attached mount `mount` alone (not on what is mounted below it).
fn set_read_only(mount: BorrowedFd, read_only: bool) -> nix::Result<()> {
    let attr = libc::mount_attr {
        attr_set: if read_only {
            libc::MOUNT_ATTR_RDONLY | NOSUID_NODEV_NOEXEC
        } else {
            NOSUID_NODEV_NOEXEC
        },
        attr_clr: if read_only {
            0
        } else {
            libc::MOUNT_ATTR_RDONLY
        },
        propagation: 0,
        userns_fd: 0,
    };
    mountattr::set(Target::Fd(mount), false, &attr)
}

/// A new file `name` in the directory `parent` (never an existing one, never through a
/// symlink), open for writing.
fn create_new(parent: &OwnedFd, name: &CStr, mode: u32) -> nix::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
}

/// Writes all of `contents` to `file`.
fn write_all(file: &OwnedFd, contents: &[u8]) -> nix::Result<()> {
    let mut left = contents;
    while !left.is_empty() {
        match write(file, left) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => left = &left[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A missing path is no error for the steps that say "skipped when the kernel does not
/// have the path".
fn unless_absent(result: nix::Result<()>) -> nix::Result<()> {
    match result {
        Err(Errno::ENOENT) => Ok(()),
        other => other,
    }
}

/// Runs one step. Called in the freshly cloned child: no allocation, no locks. `root` is
/// the attached root tree once [`Step::AttachRoot`] has run.
fn apply_step<'s>(step: &'s Step, root: &mut Option<BorrowedFd<'s>>) -> nix::Result<()> {
    let in_root = |root: &Option<BorrowedFd<'s>>| root.map(Root).ok_or(Errno::EINVAL);
    match step {
        Step::JoinCgroup { tasks, .. } => {
            write(tasks, b"0").and_then(|n| if n == 1 { Ok(()) } else { Err(Errno::EIO) })
        }
        Step::NewSession => setsid().map(drop),
        Step::Join(ns, fd) => setns(fd, ns.flag()),
        Step::JoinProcess { pidfd, flags } => setns(pidfd, *flags),
        Step::Unshare(ns) => unshare(ns.flag()),
        Step::MakePrivate => mount(
            None::<&CStr>,
            c"/",
            None::<&CStr>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&CStr>,
        ),
        Step::AttachRoot(tree) => {
            // the launcher made the root directory our working directory before the clone;
            // the clone's new mount namespace moved it to its own copy of the mount
            sys::move_mount(
                tree.as_fd(),
                c"",
                AT_FDCWD,
                c".",
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )?;
            fchdir(tree)?;
            *root = Some(tree.as_fd());
            // private already where the kernel has mount_setattr (rootfs::clone_tree);
            // before 5.12 only mount(2) can make it so, and only now it is attached
            mountattr::make_private(Target::Path(c"."), true)
        }
        Step::Mkdir(path) => {
            let parent = in_root(root)?.parent(path)?;
            match mkdirat(
                &parent,
                path.name.as_c_str(),
                Mode::from_bits_truncate(0o755),
            ) {
                Err(Errno::EEXIST) => Ok(()),
                other => other,
            }
        }
        Step::EmptyFile(path) => {
            let parent = in_root(root)?.resolve(&path.parent)?;
            create_new(&parent, &path.name, 0o600).map(drop)
        }
        Step::WriteFile {
            path,
            contents,
            owner,
        } => {
            let parent = in_root(root)?.resolve(&path.parent)?;
            let file = create_new(&parent, &path.name, 0o644)?;
            write_all(&file, contents)?;
            let id = Some(*owner);
            fchown(&file, id.map(Uid::from_raw), id.map(Gid::from_raw))
        }
        Step::ReplaceFile {
            path,
            tmp,
            contents,
        } => unless_absent((|| {
            let parent = in_root(root)?.resolve(&path.parent)?;
            match fstatat(&parent, path.name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => return Ok(()),
                Ok(_) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
            match unlinkat(&parent, tmp.as_c_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
            let file = create_new(&parent, tmp, 0o644)?;
            write_all(&file, contents)?;
            renameat(&parent, tmp.as_c_str(), &parent, path.name.as_c_str())
        })()),
        Step::Symlink { target, path } => {
            let parent = in_root(root)?.resolve(&path.parent)?;
            symlinkat(target.as_c_str(), &parent, path.name.as_c_str())
        }
        Step::Mount { target, fs } => {
            let target = in_root(root)?.path(target)?;
            let context = sys::fsopen(&fs.fstype)?;
            for (key, value) in &fs.options {
                sys::fsconfig_set(context.as_fd(), key, value.as_deref())?;
            }
            let mount = sys::fsmount(context.as_fd(), fs.attrs)?;
            attach(mount.as_fd(), target.as_fd())
        }
        Step::Bind { target, source } => {
            let target = in_root(root)?.path(target)?;
            attach(source.tree.as_fd(), target.as_fd())?;
            // as for AttachRoot: private from birth on kernels with mount_setattr
            // (rootfs::clone_host_file), from here on older ones
            mountattr::make_private(Target::Fd(source.tree.as_fd()), false)
        }
        Step::Rebind { target, read_only } => unless_absent((|| {
            let target = in_root(root)?.path(target)?;
            let tree = clone_mount(target.as_fd())?;
            attach(tree.as_fd(), target.as_fd())?;
            set_read_only(tree.as_fd(), *read_only)
        })()),
        Step::Mask(path, mask) => unless_absent((|| {
            let root = in_root(root)?;
            let target = root.resolve(&path.path)?;
            let cover = match mask {
                Mask::File => clone_mount(root.resolve(c"dev/null")?.as_fd())?,
                Mask::Dir => {
                    let context = sys::fsopen(c"tmpfs")?;
                    sys::fsconfig_set(context.as_fd(), c"mode", Some(c"0555"))?;
                    sys::fsmount(
                        context.as_fd(),
                        libc::MOUNT_ATTR_RDONLY | NOSUID_NODEV_NOEXEC,
                    )?
                }
            };
            attach(cover.as_fd(), target.as_fd())
        })()),
        Step::PivotRoot => {
            // pivot_root(".", "."): the old root ends up mounted on top of the new one,
            // where a lazy unmount detaches it (pivot_root(2), "NOTES")
            pivot_root(c".", c".")?;
            umount2(c".", MntFlags::MNT_DETACH)?;
            chdir(c"/")
        }
        // the inherited mounts are private (MakePrivate): nothing propagates to the host
        Step::DetachHost(path) => umount2(path.as_c_str(), MntFlags::MNT_DETACH),
        // as switch_root(8) does; ".." at the new root stays there (the old root is below
        // the mount, not above it), and once the user namespace has its own mount
        // namespace, the root's mount is locked over the old root
        Step::MoveRoot => {
            mount(
                Some(c"."),
                c"/",
                None::<&CStr>,
                MsFlags::MS_MOVE,
                None::<&CStr>,
            )?;
            chroot(c".")?;
            chdir(c"/")
        }
        Step::Chroot => {
            chroot(c".")?;
            chdir(c"/")
        }
        Step::EnterRoot(dir) => sys::enter_root(dir.as_fd()),
        Step::Hostname(name) => sethostname(std::ffi::OsStr::from_bytes(name.as_bytes())),
        Step::LoopbackUp => sys::interface_up(c"lo"),
        Step::BecomeRoot => {
            setgroups(&[])?;
            setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
            setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        }
        Step::Stdio(path) => {
            let fd = open(
                path.as_c_str(),
                OFlag::O_RDWR | OFlag::O_NOCTTY,
                Mode::empty(),
            )?;
            dup2_stdin(&fd)?;
            dup2_stdout(&fd)?;
            dup2_stderr(&fd)
            // fd is above 2 (0–2 were open), and closes here
        }
        Step::Streams([input, output, error]) => {
            dup2_stdin(input)?;
            dup2_stdout(output)?;
            dup2_stderr(error)
        }
        Step::DropCapabilities(keep) => keep.restrict(),
        Step::Seccomp(filter) => filter.install(),
        Step::SeccompListener { filter, to } => {
            let listener = filter.install_with_listener()?;
            sys::send_fd(to.as_fd(), b"seccompFd", listener.as_fd())
        }
        Step::EnsureFile(path) => {
            let parent = in_root(root)?.parent(path)?;
            match create_new(&parent, &path.name, 0o644) {
                Err(Errno::EEXIST) => Ok(()),
                other => other.map(drop),
            }
        }
        Step::Mknod {
            path,
            mode,
            dev,
            owner,
        } => {
            let parent = in_root(root)?.parent(path)?;
            match sys::mknodat(parent.as_fd(), &path.name, *mode, *dev) {
                Err(Errno::EEXIST) => Ok(()),
                Err(e) => Err(e),
                Ok(()) => nix::unistd::fchownat(
                    &parent,
                    path.name.as_c_str(),
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ),
            }
        }
        Step::MaskAny(path) => unless_absent((|| {
            let root = in_root(root)?;
            let target = root.path(path)?;
            let is_dir = nix::sys::stat::fstat(&target)?.st_mode & libc::S_IFMT == libc::S_IFDIR;
            let cover = if is_dir {
                let context = sys::fsopen(c"tmpfs")?;
                sys::fsconfig_set(context.as_fd(), c"mode", Some(c"0555"))?;
                sys::fsmount(
                    context.as_fd(),
                    libc::MOUNT_ATTR_RDONLY | NOSUID_NODEV_NOEXEC,
                )?
            } else {
                clone_mount(root.resolve(c"dev/null")?.as_fd())?
            };
            attach(cover.as_fd(), target.as_fd())
        })()),
        Step::WriteExisting { path, contents } => {
            let file = open(
                path.as_c_str(),
                OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )?;
            write_all(&file, contents)
        }
        Step::Domainname(name) => sys::set_domainname(name),
        Step::ReadOnlyRoot => {
            let attr = libc::mount_attr {
                attr_set: libc::MOUNT_ATTR_RDONLY,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            mountattr::set(Target::Path(c"/"), false, &attr)
        }
        Step::RootPropagation(flags) => mount(
            None::<&CStr>,
            c"/",
            None::<&CStr>,
            MsFlags::MS_REC | *flags,
            None::<&CStr>,
        ),
        Step::BindPath {
            source,
            target,
            recursive,
            set,
            clear,
            idmap,
            below,
        } => {
            let target = in_root(root)?.path(target)?;
            let (clone_flags, at_flags) = if *recursive {
                (libc::AT_RECURSIVE as u32, libc::AT_RECURSIVE as u32)
            } else {
                (0, 0)
            };
            let tree = sys::open_tree(
                AT_FDCWD,
                source,
                libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | clone_flags,
            )?;
            let attr = libc::mount_attr {
                attr_set: *set,
                attr_clr: *clear,
                propagation: cradle_common::arch::MS_PRIVATE,
                userns_fd: 0,
            };
            let empty = libc::AT_EMPTY_PATH as u32;
            match sys::mount_setattr(tree.as_fd(), c"", empty | at_flags, &attr) {
                // before Linux 5.12: attached, then changed with mount(2) (an id mapping
                // has no such form; `cradle-oci create` refuses one before it gets here),
                // the flags of a recursive bind mount by mount
                Err(Errno::ENOSYS) if idmap.is_none() => {
                    attach(tree.as_fd(), target.as_fd())?;
                    if !*recursive || (*set == 0 && *clear == 0) {
                        return mountattr::set(Target::Fd(tree.as_fd()), *recursive, &attr);
                    }
                    mountattr::make_private(Target::Fd(tree.as_fd()), true)?;
                    let flags = libc::mount_attr {
                        propagation: 0,
                        ..attr
                    };
                    mountattr::set(Target::Fd(tree.as_fd()), false, &flags)?;
                    for path in below {
                        let sub = Root(tree.as_fd()).resolve(path)?;
                        mountattr::set(Target::Fd(sub.as_fd()), false, &flags)?;
                    }
                    return Ok(());
                }
                other => other?,
            }
            if let Some(userns) = idmap {
                let attr = libc::mount_attr {
                    attr_set: libc::MOUNT_ATTR_IDMAP,
                    attr_clr: 0,
                    propagation: 0,
                    userns_fd: userns.as_raw_fd() as u64,
                };
                sys::mount_setattr(tree.as_fd(), c"", empty | at_flags, &attr)?;
            }
            attach(tree.as_fd(), target.as_fd())
        }
        Step::Propagation {
            target,
            flags,
            recursive,
        } => {
            let target = in_root(root)?.path(target)?;
            let attr = libc::mount_attr {
                attr_set: 0,
                attr_clr: 0,
                propagation: *flags,
                userns_fd: 0,
            };
            mountattr::set(Target::Fd(target.as_fd()), *recursive, &attr)
        }
        Step::MountReadOnly(target) => {
            let target = in_root(root)?.path(target)?;
            let attr = libc::mount_attr {
                attr_set: libc::MOUNT_ATTR_RDONLY,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            mountattr::set(Target::Fd(target.as_fd()), false, &attr)
        }
        Step::Bounding(keep) => sys::drop_bounding_set(keep.bits()),
        Step::Identity(id) => {
            nix::sys::prctl::set_keepcaps(true)?;
            setgroups(&id.groups)?;
            setresgid(
                Gid::from_raw(id.gid),
                Gid::from_raw(id.gid),
                Gid::from_raw(id.gid),
            )?;
            setresuid(
                Uid::from_raw(id.uid),
                Uid::from_raw(id.uid),
                Uid::from_raw(id.uid),
            )?;
            nix::sys::prctl::set_keepcaps(false)
        }
        Step::SetCapabilities(caps) => sys::set_capabilities(
            caps.effective,
            caps.permitted,
            caps.inheritable,
            caps.ambient,
        ),
        Step::Rlimit {
            resource,
            soft,
            hard,
            ..
        } => sys::set_rlimit(*resource, *soft, *hard),
        Step::NoNewPrivileges => nix::sys::prctl::set_no_new_privs(),
        Step::AppArmorOnExec(profile) => {
            // the file of the LSM-stacking interface (Linux 5.1), else the older one
            let file = match open(
                c"/proc/thread-self/attr/apparmor/exec",
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Err(Errno::ENOENT) => open(
                    c"/proc/thread-self/attr/exec",
                    OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?,
                other => other?,
            };
            let mut text = b"exec ".to_vec();
            text.extend_from_slice(profile.as_bytes());
            write_all(&file, &text)
        }
        Step::Chdir(dir) => chdir(dir.as_c_str()),
        Step::Umask(_) => Ok(()),
        Step::FindExecutable { candidates, .. } => {
            let mut seen = Errno::ENOENT;
            for candidate in candidates {
                match nix::sys::stat::stat(candidate.as_c_str()) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {
                        match nix::unistd::access(
                            candidate.as_c_str(),
                            nix::unistd::AccessFlags::X_OK,
                        ) {
                            Ok(()) => return Ok(()),
                            Err(_) => seen = Errno::EACCES,
                        }
                    }
                    Ok(_) => seen = Errno::EACCES,
                    Err(_) => {}
                }
            }
            Err(seen)
        }
        Step::Terminal { socket, size } => sys::open_terminal(socket.as_fd(), *size),
        Step::AwaitStart { ready, fifo } => {
            if write(ready, b"1")? != 1 {
                return Err(Errno::EIO);
            }
            sys::await_fifo_reader(fifo.as_fd(), ready.as_fd())
        }
        Step::Pause { tell, resume } => {
            if write(tell, &[PAUSED])? != 1 {
                return Err(Errno::EIO);
            }
            let mut byte = [0u8];
            loop {
                match nix::unistd::read(resume, &mut byte) {
                    Ok(1) => return Ok(()),
                    Ok(_) => return Err(Errno::ECANCELED),
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Runs the steps in order with umask 0, then leaves umask 022 for the shim and the
/// guest. On failure: the index of the step and its errno. Only the child of
/// `sys::fork_into` may call it (it changes the calling process for good).
pub fn apply(_: InChild, steps: &[Step]) -> Result<(), (usize, Errno)> {
    umask(Mode::empty());
    let mut root = None;
    let mut left = 0o022;
    let result = steps.iter().enumerate().try_for_each(|(i, step)| {
        if let Step::Umask(mask) = step {
            left = *mask;
        }
        apply_step(step, &mut root).map_err(|e| (i, e))
    });
    umask(Mode::from_bits_truncate(left));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        open(c"/", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
    }

    fn plan(boot: bool, userns: bool) -> Vec<Step> {
        plan_with(boot, userns, vec![], RootSwitch::Pivot)
    }

    fn plan_joining(boot: bool, userns: bool, join_v1: Vec<(String, OwnedFd)>) -> Vec<Step> {
        plan_with(boot, userns, join_v1, RootSwitch::Pivot)
    }

    fn plan_switching(boot: bool, userns: bool, switch: RootSwitch) -> Vec<Step> {
        plan_with(boot, userns, vec![], switch)
    }

    fn plan_with(
        boot: bool,
        userns: bool,
        join_v1: Vec<(String, OwnedFd)>,
        switch: RootSwitch,
    ) -> Vec<Step> {
        build(Config {
            tree: fd(),
            hostname: "web1",
            purpose: if boot {
                Purpose::Boot {
                    console: fd(),
                    host: RunHost {
                        os_release: Some(b"ID=debian\n".to_vec()),
                        uuid: "0b5f5ffa-6e3a-4c4f-9a8e-1d2a3b4c5d6e".into(),
                    },
                    notify: Some(fd()),
                }
            } else {
                Purpose::Run
            },
            devices: vec![(c"null", fd()), (c"net/tun", fd())],
            userns: userns.then(|| Namespaces {
                base: 0x80000,
                user: fd(),
                net: Some(fd()),
                uts: fd(),
                ipc: fd(),
            }),
            caps: CapSet::DEFAULT,
            seccomp: Some(Filter::default_for_guest(true).unwrap()),
            join_v1,
            switch,
            netns: None,
            resolv_conf: None,
        })
        .unwrap()
    }

    fn texts(steps: &[Step]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    fn position(steps: &[Step], text: &str) -> usize {
        texts(steps)
            .iter()
            .position(|t| t == text)
            .unwrap_or_else(|| panic!("{text:?} in {:?}", texts(steps)))
    }

    #[test]
    fn mounts_happen_between_attaching_the_root_and_pivoting_into_it() {
        for (boot, userns) in [(true, true), (true, false), (false, true), (false, false)] {
            let steps = plan(boot, userns);
            let private = position(&steps, "make the inherited mounts private");
            let attach = position(&steps, "attach the root directory");
            let pivot = position(&steps, "pivot_root into the root directory");
            assert!(private < attach && attach < pivot);
            for (i, step) in steps.iter().enumerate() {
                if matches!(
                    step,
                    Step::Mount { .. } | Step::Bind { .. } | Step::Mask(..) | Step::Rebind { .. }
                ) {
                    assert!(attach < i && i < pivot, "{step}");
                }
            }
        }
    }

    #[test]
    fn with_a_user_namespace_the_mounts_are_locked_before_the_guest_s_root_exists() {
        let steps = plan(true, true);
        let join_net = position(&steps, "join the guest's network namespace");
        let sysfs = position(&steps, "mount sysfs on /sys");
        assert!(
            join_net < sysfs,
            "sysfs shows the guest's own network namespace"
        );
        let pivot = position(&steps, "pivot_root into the root directory");
        let join_user = position(&steps, "join the guest's user namespace");
        let lock = position(
            &steps,
            "lock the guest's mounts (a mount namespace in its user namespace)",
        );
        let root = position(&steps, "become the guest's root (setresuid 0)");
        assert!(pivot < join_user && join_user < lock && lock < root);
        let plain = plan(true, false);
        assert!(
            !texts(&plain)
                .iter()
                .any(|t| t.contains("user namespace") || t.starts_with("join"))
        );
    }

    #[test]
    fn on_the_initramfs_the_host_s_mounts_go_before_the_root_moves_and_is_locked() {
        let detach = vec![c("/proc"), c("/sys")];
        let steps = plan_switching(true, true, RootSwitch::Move { detach });
        assert!(!texts(&steps).iter().any(|t| t.contains("pivot_root")));
        let last_mount = steps
            .iter()
            .rposition(|s| matches!(s, Step::Mount { .. } | Step::Bind { .. } | Step::Mask(..)))
            .unwrap();
        let proc = position(
            &steps,
            "detach the host's mount on /proc (the host's root is the initramfs)",
        );
        let sys = position(
            &steps,
            "detach the host's mount on /sys (the host's root is the initramfs)",
        );
        let moved = position(
            &steps,
            "move the root directory over the initramfs and chroot into it",
        );
        let lock = position(
            &steps,
            "lock the guest's mounts (a mount namespace in its user namespace)",
        );
        assert!(last_mount < proc && proc < sys && sys < moved && moved < lock);
        let hostname = position(&steps, "set hostname web1");
        assert_eq!(hostname, moved + 1, "then as after pivot_root");
    }

    #[test]
    fn the_filter_comes_last_after_the_bounding_set() {
        for (boot, userns) in [(true, true), (false, false)] {
            let steps = plan(boot, userns);
            let n = steps.len();
            assert_eq!(steps[n - 1].to_string(), "install the seccomp filter");
            assert_eq!(
                steps[n - 2].to_string(),
                "limit the capabilities to the guest's"
            );
        }
    }

    #[test]
    fn boot_mode_leaves_the_guest_s_proc_to_the_guest_and_binds_the_console() {
        let boot = texts(&plan(true, true));
        assert!(boot.contains(&"mount proc on /proc".to_owned()));
        assert!(
            !boot
                .iter()
                .any(|t| t.starts_with("mask /proc") || t.starts_with("bind /proc"))
        );
        assert!(boot.contains(&"bind the console pty on /dev/console".to_owned()));
        assert!(boot.contains(&"open /dev/console as standard streams".to_owned()));
        assert!(!boot.iter().any(|t| t.contains("cgroup")));
        let run = texts(&plan(false, true));
        for text in [
            "unshare the cgroup namespace",
            "mount cgroup2 on /sys/fs/cgroup",
            "bind /proc/sys read-only",
            "bind /proc/sys/net writable",
            "mask /proc/kcore",
        ] {
            assert!(run.contains(&text.to_owned()), "{text}: {run:?}");
        }
        assert!(!run.iter().any(|t| t.contains("console")));
        // masks go on after /dev/null, which they bind
        let run = plan(false, false);
        assert!(position(&run, "bind /dev/null on /dev/null") < position(&run, "mask /proc/kcore"));
    }

    #[test]
    fn boot_mode_has_a_run_of_its_own_with_a_read_only_run_host() {
        let steps = plan(true, true);
        let run = position(&steps, "mount tmpfs on /run");
        let host = position(&steps, "mount tmpfs on /run/host");
        let read_only = position(&steps, "bind /run/host read-only");
        assert!(run < host && host < read_only);
        assert!(read_only < position(&steps, "pivot_root into the root directory"));
        for name in ["container-manager", "container-uuid", "os-release"] {
            let file = position(&steps, &format!("create /run/host/{name}"));
            assert!(host < file && file < read_only, "{name}");
        }
        let notify = position(&steps, "bind the notify socket on /run/host/notify");
        assert!(host < notify && notify < read_only);
        let uuid = steps.iter().find_map(|s| match s {
            Step::WriteFile {
                path,
                contents,
                owner,
            } if path.to_string().ends_with("uuid") => Some((contents.clone(), *owner)),
            _ => None,
        });
        assert_eq!(
            uuid,
            Some((b"0b5f5ffa-6e3a-4c4f-9a8e-1d2a3b4c5d6e\n".to_vec(), 0x80000))
        );
        // run mode keeps the root's own /run
        assert!(!texts(&plan(false, true)).iter().any(|t| t.contains("/run")));
    }

    #[test]
    fn devices_are_bound_from_the_host_on_files_made_for_them() {
        let steps = plan(true, false);
        let file = position(&steps, "create /dev/net/tun");
        assert!(position(&steps, "create directory /dev/net") < file);
        assert_eq!(
            position(&steps, "bind /dev/net/tun on /dev/net/tun"),
            file + 1
        );
        assert!(!texts(&steps).iter().any(|t| t.contains("mknod")));
    }

    #[test]
    fn the_guest_owns_its_dev_in_a_user_namespace() {
        let steps = plan(true, true);
        let options = |target: &str| {
            steps
                .iter()
                .find_map(|s| match s {
                    Step::Mount { target: t, fs } if t.to_string() == target => Some(&fs.options),
                    _ => None,
                })
                .unwrap()
        };
        assert!(options("/dev").contains(&(c("uid"), Some(c("524288")))));
        assert!(options("/dev/pts").contains(&(c("gid"), Some(c("524293")))));
        let plain = plan(true, false);
        let _ = plain;
    }

    #[test]
    fn the_v1_cgroups_are_joined_after_the_mounts_before_the_user_namespace() {
        for (boot, userns) in [(true, true), (false, false)] {
            let steps = plan_joining(boot, userns, vec![("memory".into(), fd())]);
            let names: Vec<String> = steps.iter().map(ToString::to_string).collect();
            let join = names
                .iter()
                .position(|s| s == "join the container's cgroup in the v1 memory hierarchy")
                .unwrap();
            assert_eq!(
                names[join - 1],
                "bring up the loopback interface",
                "{names:?}"
            );
            let next = if userns {
                "join the guest's user namespace"
            } else {
                "become the guest's root"
            };
            assert!(names[join + 1].starts_with(next), "{names:?}");
        }
    }

    #[test]
    fn guest_paths_split_into_parent_and_name() {
        let p = GuestPath::new("dev/net/tun");
        assert_eq!(
            (p.parent.to_bytes(), p.name.to_bytes()),
            (&b"dev/net"[..], &b"tun"[..])
        );
        let p = GuestPath::new("dev");
        assert_eq!(
            (p.parent.to_bytes(), p.name.to_bytes()),
            (&b"."[..], &b"dev"[..])
        );
        assert_eq!(p.to_string(), "/dev");
    }

    #[test]
    fn a_nul_in_the_hostname_is_refused() {
        let config = Config {
            tree: fd(),
            hostname: "a\0b",
            purpose: Purpose::Run,
            devices: vec![],
            userns: None,
            caps: CapSet::EMPTY,
            seccomp: None,
            join_v1: vec![],
            switch: RootSwitch::Pivot,
            netns: None,
            resolv_conf: None,
        };
        assert!(build(config).is_err());
    }

    #[test]
    fn a_bundles_path_follows_links_and_its_ancestry_is_each_prefix() {
        let p = GuestPath::following("/var/run/app/").unwrap();
        assert!(p.follow);
        assert_eq!(p.to_string(), "/var/run/app");
        let prefixes: Vec<String> = p.ancestry().iter().map(ToString::to_string).collect();
        assert_eq!(prefixes, ["/var", "/var/run", "/var/run/app"]);
        assert!(p.ancestry().iter().all(|a| a.follow));
        assert!(GuestPath::following("/").is_none());
        assert!(GuestPath::following("a\0b").is_none());
        assert!(!GuestPath::new("dev/null").follow);
    }
}
