//! `create`: a bundle's configuration turned into the container core's setup plan, and the
//! container made of it, its first process (the shim) left waiting on `exec.fifo` for
//! `start`, re-parented to our caller when we exit.
//!
//! The order of the plan, as runc's: the cgroup (clone3 puts the process in it), the
//! namespaces joined by path, the root tree attached, the bundle's mounts in their order,
//! the devices, a pause for the hooks of `create` (when it has any), the switch to the
//! root, sysctls, masked and read-only paths, the root read-only, hostname and
//! domainname; then, with a user namespace, entering it (the mounts locked); the OOM
//! score, rlimits, the terminal, the bounding set, the user and its capabilities, the
//! working directory, the executable looked up, `create` told we are ready; then the wait
//! for `start`, and exec of the shim, which runs the process and says so on exec.fifo.
//! A system container's init (see [`boots_as_system`]) is booted by the shim's system
//! mode, which keeps what it needs to boot it again: the bounding set, capabilities,
//! no_new_privs and seccomp filter are then the init's to take on, not the plan's.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cradle_common::arch;
use cradle_core::cgroups::container::Cgroup;
use cradle_core::cgroups::v1::{self, Host, V1Dir};
use cradle_core::container::mountinfo::{self, RootSwitch};
use cradle_core::container::plan::{
    Capabilities, Filesystem, GuestPath, Identity, Namespace, PAUSED, Source, Step,
};
use cradle_core::container::rootfs::RootDir;
use cradle_core::container::spawn::{self, Container, Report, ShimBinary, Spawn};
use cradle_core::error::{Error, Result};
use cradle_core::guest::ns_inode;
use cradle_core::security::caps::{self, CapSet};
use cradle_core::security::devices;
use cradle_core::security::userns;
use cradle_core::sys::{self, SingleThreaded};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::MsFlags;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, read};

use crate::hooks::{self, Place};
use crate::resources::{
    Hierarchy, controllers, inherit_cpuset, limits_of, resource_files, write_files,
};
use crate::spec::{self, Spec};
use crate::state::{self, Record, Root, Status};

/// What `create` (and `run`) are given besides the bundle.
pub struct Options<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub no_pivot: bool,
    pub systemd_cgroup: bool,
    /// `--preserve-fds`: our descriptors 3 and up that the process gets as they are.
    pub preserved: &'a [OwnedFd],
}

/// How long the container may take to be ready (its setup done, waiting for `start`).
const READY_TIMEOUT_MS: i32 = 60_000;

/// Makes the container; on success its record is saved and the pid file written.
pub fn create(threads: &SingleThreaded, root: &Root, opts: &Options) -> Result<Record> {
    check_id(opts.id)?;
    let bundle = fs::canonicalize(opts.bundle)
        .map_err(|e| Error::Usage(format!("bundle {}: {e}", opts.bundle.display())))?;
    let spec = spec::load(&bundle).map_err(Error::Usage)?;
    let dir = root.make_dir(opts.id).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => Error::Conflict(format!("container {} exists", opts.id)),
        _ => Error::host(
            format!("state directory {}", root.dir(opts.id).display()),
            e,
        ),
    })?;
    match make(threads, &spec, &bundle, &dir, opts) {
        Ok(record) => Ok(record),
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// The root of a container whose spec has no mount namespace, attached in ours. runc
/// sets such a container up in its own mount namespace and leaves its mounts there; here
/// its root tree is a private copy of the rootfs's mounts (`clone_tree`), attached on the
/// rootfs (its attachment alone propagates, as any mount there would), with the spec's
/// mounts made below it, where nothing propagates, and the container chroots into it.
/// Its mount id is kept in the record, and `delete` detaches it, with all below it
/// ([`detach_root`]); a `create` that fails detaches it on the way out (this guard's drop).
struct AttachedRoot {
    at: state::Attached,
    kept: bool,
}

impl AttachedRoot {
    fn new(tree: &OwnedFd, path: &Path) -> Result<Self> {
        let mount_id = sys::mount_id(tree.as_fd())
            .map_err(|e| Error::setup("read the mount id of the root tree (statx)", e))?;
        // as mountinfo will name its mount point
        let path = fs::canonicalize(path)
            .map_err(|e| Error::host(format!("resolve {}", path.display()), e))?;
        Ok(AttachedRoot {
            at: state::Attached { mount_id, path },
            kept: false,
        })
    }

    /// Recorded: from now on `delete` detaches it.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for AttachedRoot {
    fn drop(&mut self) {
        if !self.kept {
            let _ = mountinfo::detach(&self.at.path, self.at.mount_id);
        }
    }
}

/// Detaches the root a container without a mount namespace of its own had attached in
/// ours (see [`AttachedRoot`]); a warning when it cannot.
pub fn detach_root(record: &Record) {
    let Some(at) = &record.root_attached else {
        return;
    };
    match mountinfo::detach(&at.path, at.mount_id) {
        Ok(true) => {}
        Ok(false) => log::warn!(
            "the root of container {} (mount {}) is not on {} in this mount namespace; \
             if it is in the one `create` ran in, it stays there",
            record.id,
            at.mount_id,
            at.path.display()
        ),
        Err(e) => log::warn!(
            "detach the root of container {} from {}: {e}",
            record.id,
            at.path.display()
        ),
    }
}

/// A sysctl is written only in a namespace of the container's own, new or joined by path
/// (not ours), that the setting belongs to, as runc's validation has it: the IPC ones in
/// an IPC namespace, `net.*` in a network namespace, the host and domain name in a UTS
/// namespace; any other would be the host's.
fn check_sysctl(spec: &Spec, name: &str) -> Result<()> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let (kind, proc_name) = if IPC.contains(&name) || name.starts_with("fs.mqueue.") {
        ("ipc", "ipc")
    } else if name.starts_with("net.") {
        ("network", "net")
    } else if name == "kernel.hostname" || name == "kernel.domainname" {
        ("uts", "uts")
    } else {
        return Err(Error::Usage(format!(
            "sysctl {name} is not in a namespace of the container's own: it would be the host's"
        )));
    };
    let own = spec.namespace(kind).is_some_and(|ns| {
        ns.path.is_empty() || ns_inode(&ns.path) != ns_inode(&format!("/proc/self/ns/{proc_name}"))
    });
    match own {
        true => Ok(()),
        false => Err(Error::Usage(format!(
            "sysctl {name} needs a {kind} namespace of the container's own: in the host's, \
             it would be the host's"
        ))),
    }
}

/// An id as runc takes them: letters, digits, `_+-.`, not `.` or `..`.
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "bad container id {id:?}: use letters, digits and _+-."
        )))
    }
}

fn cstring(text: &str, what: &str) -> Result<CString> {
    CString::new(text).map_err(|_| Error::Usage(format!("{what} {text:?} contains a NUL byte")))
}

fn make(
    threads: &SingleThreaded,
    spec: &Spec,
    bundle: &Path,
    dir: &Path,
    opts: &Options,
) -> Result<Record> {
    let linux = spec.linux();
    let process = spec.process();
    refuse_unsupported(spec)?;
    let rootfs = bundle.join(&spec.root().path);
    let root = RootDir::open_as_given(&rootfs)?;
    let shim = ShimBinary::sealed(None)?;

    // the cgroup, with its limits
    let host = Host::probe()?;
    let limits = limits_of(linux.resources.as_ref())?;
    let (relative, below_own) =
        cgroup_path(linux.cgroups_path.as_deref(), opts.id, opts.systemd_cgroup)?;
    let v2_root = cradle_core::cgroups::v2_root().ok_or_else(cradle_core::cgroups::no_v2)?;
    let v2_path = if below_own {
        cradle_core::cgroups::own_v2().join(&relative)
    } else {
        relative.clone()
    };
    let files = match linux.resources.as_ref() {
        Some(r) => resource_files(r, |name| Hierarchy::of(&host, name))?,
        None => Vec::new(),
    };
    host.enable_v2_down_to(&v2_path, &controllers(&limits, &files))?;
    let mut v1_dirs = host.v1_dirs_at(&relative, below_own);
    // the v1 cgroups of the files' controllers that the limits have none in (cpuset,
    // blkio, hugetlb, net_cls, ...)
    for f in &files {
        let has = |d: &V1Dir| d.controllers.split(',').any(|c| c == f.controller);
        if !v1_dirs.iter().any(has) {
            v1_dirs.extend(host.v1_dir_named(f.controller, &relative, below_own));
        }
    }
    let cpuset_v1 = v1_dirs
        .iter()
        .find(|d| d.controllers.split(',').any(|c| c == "cpuset"))
        .filter(|_| files.iter().any(|f| f.controller == "cpuset"))
        .cloned();
    let mut join_v1 = host.needs_v1(&limits)
        || files
            .iter()
            .any(|f| Hierarchy::of(&host, f.controller) == Hierarchy::V1);
    // a spec that mounts the cgroup tree on a v1 or hybrid host gets a cgroup of its own
    // in every hierarchy, mounted as runc mounts them (see `cgroup_tree_steps`)
    let mounts_tree = spec.mounts.iter().any(|m| m.kind == "cgroup");
    let every_v1 = match mounts_tree && !host.is_pure_v2() {
        true => host.every_v1_dir_at(&relative, below_own),
        false => Vec::new(),
    };
    if !every_v1.is_empty() {
        v1_dirs = every_v1.iter().map(|(dir, _)| dir.clone()).collect();
        join_v1 = true;
    }
    let cgroup =
        Cgroup::create_at(v2_root.join(&v2_path), false, dir)?.with_v1(v1_dirs, join_v1)?;
    v1::apply(
        &host,
        cgroup.path(),
        cgroup.v1(),
        &limits,
        &limits.set_knobs(),
    )?;
    // a new v1 cpuset cgroup has no CPUs and nodes, and takes no process until it has
    let cpuset_dirs = (cpuset_v1.iter())
        .chain(cgroup.v1().iter())
        .filter(|d| d.controllers.split(',').any(|c| c == "cpuset"));
    let mut inherited = Vec::new();
    for dir in cpuset_dirs {
        if !inherited.contains(&dir.path) {
            inherit_cpuset(&dir.path)?;
            inherited.push(dir.path.clone());
        }
    }
    write_files(&host, cgroup.path(), cgroup.v1(), &files)?;
    // before any process is born in it
    devices::Policy::load(&device_rules(spec)?)?.attach(cgroup.dir())?;

    // namespaces: new ones by clone (or made with a new user namespace, owned by it),
    // joined ones by path
    let mut clone_flags = CloneFlags::empty();
    let mut early = Vec::new();
    let mut late = Vec::new();
    let new_user = spec.namespace("user").is_some_and(|n| n.path.is_empty());
    let mut owned_kinds = Vec::new();
    let mut join_pid = None;
    let mut joined_mount = false;
    for ns in &linux.namespaces {
        let (flag, proc_name, kind) = match ns.kind.as_str() {
            "pid" => (CloneFlags::CLONE_NEWPID, "pid", None),
            "network" => (CloneFlags::CLONE_NEWNET, "net", Some(Namespace::Network)),
            "mount" => (CloneFlags::CLONE_NEWNS, "mnt", Some(Namespace::Mount)),
            "ipc" => (CloneFlags::CLONE_NEWIPC, "ipc", Some(Namespace::Ipc)),
            "uts" => (CloneFlags::CLONE_NEWUTS, "uts", Some(Namespace::Uts)),
            "user" => (CloneFlags::CLONE_NEWUSER, "user", Some(Namespace::User)),
            "cgroup" => (
                CloneFlags::CLONE_NEWCGROUP,
                "cgroup",
                Some(Namespace::Cgroup),
            ),
            other => {
                return Err(Error::Usage(format!(
                    "the {other} namespace is not supported by this runtime"
                )));
            }
        };
        // a mount namespace given by path that is ours: shared, as if none were given
        let ours = || ns_inode(&ns.path) == ns_inode("/proc/self/ns/mnt");
        if kind == Some(Namespace::Mount) && !ns.path.is_empty() && ours() {
            continue;
        }
        if !ns.path.is_empty() {
            let fd = open(
                Path::new(&ns.path),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::setup(format!("open the {} namespace {}", ns.kind, ns.path), e))?;
            match kind {
                None => join_pid = Some(fd),
                // joined first: the root is set up in it, as runc does
                Some(Namespace::Mount) => {
                    joined_mount = true;
                    early.insert(0, Step::Join(Namespace::Mount, fd));
                }
                Some(Namespace::User) => late.push(Step::Join(Namespace::User, fd)),
                Some(kind) => early.push(Step::Join(kind, fd)),
            }
            continue;
        }
        match kind {
            // made with the user namespace, owned by it
            Some(k @ (Namespace::Network | Namespace::Ipc | Namespace::Uts)) if new_user => {
                owned_kinds.push((flag, proc_name, k))
            }
            Some(Namespace::User) => {}
            // in its cgroup already (clone3): a cgroup namespace rooted there
            Some(Namespace::Cgroup) => early.push(Step::Unshare(Namespace::Cgroup)),
            _ => clone_flags |= flag,
        }
    }
    // no mount namespace, new or by path: the container is set up in ours, as runc sets
    // it up (see `AttachedRoot`)
    let shares_mounts = !clone_flags.contains(CloneFlags::CLONE_NEWNS) && !joined_mount;
    if shares_mounts && new_user {
        return Err(Error::Usage(
            "a user namespace without a mount namespace: the container's mounts would be \
             made in the runtime's mount namespace by a process of another user namespace"
                .into(),
        ));
    }
    let mut userns_fd = None;
    if new_user {
        let kinds: Vec<(CloneFlags, &str)> = owned_kinds.iter().map(|(f, n, _)| (*f, *n)).collect();
        let (user, owned) = userns::create_owned(
            threads,
            &id_map(&linux.uid_mappings),
            &id_map(&linux.gid_mappings),
            &kinds,
        )?;
        for ((_, _, kind), fd) in owned_kinds.iter().zip(owned) {
            early.push(Step::Join(*kind, fd));
        }
        userns_fd = Some(user);
    }

    // the v1 cgroups of the limits (a hybrid host's), which clone3 cannot put it in
    let mut steps: Vec<Step> = cgroup
        .open_v1_tasks()?
        .into_iter()
        .map(|(hierarchy, tasks)| Step::JoinCgroup { hierarchy, tasks })
        .collect();
    steps.push(Step::NewSession);
    steps.extend(early);
    // in a mount namespace of its own, the mounts it inherits become private: nothing it
    // mounts propagates to ours; in ours, only its root tree is made private
    if !shares_mounts {
        steps.push(Step::MakePrivate);
    }
    let tree = root.clone_tree(None)?;
    let attached = match shares_mounts {
        true => Some(AttachedRoot::new(&tree, root.path())?),
        false => None,
    };
    steps.push(Step::AttachRoot(tree));
    let mut dev_is_tmpfs = false;
    for mount in &spec.mounts {
        if mount.destination == "/dev" && mount.kind == "tmpfs" {
            dev_is_tmpfs = true;
        }
        let maps = (&linux.uid_mappings[..], &linux.gid_mappings[..]);
        let new_userns = userns_fd.as_ref().map(|fd| (fd, maps));
        if mount.kind == "cgroup" && !every_v1.is_empty() {
            cgroup_tree_steps(&mut steps, mount, &every_v1)?;
            continue;
        }
        mount_steps(threads, &mut steps, mount, bundle, new_userns)?;
    }
    device_steps(&mut steps, spec, userns_fd.is_some(), dev_is_tmpfs)?;
    // the pause where the hooks of `create` run, with its mounts made and before the
    // switch to its root (runc's place for them)
    let hooks = spec.hooks.clone().unwrap_or_default();
    let (ready_read, ready_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::host("ready pipe", e))?;
    let mut pause = None;
    if !(hooks.prestart.is_empty()
        && hooks.create_runtime.is_empty()
        && hooks.create_container.is_empty())
    {
        let (resume_read, resume_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::host("resume pipe", e))?;
        steps.push(Step::Pause {
            tell: ready_write
                .try_clone()
                .map_err(|e| Error::host("ready pipe", e))?,
            resume: resume_read,
        });
        pause = Some(resume_write);
    }
    match (shares_mounts, opts.no_pivot, root.switch()?) {
        // its root stays attached below ours: it cannot be pivoted into, nor moved over
        // our own
        (true, _, _) => steps.push(Step::Chroot),
        (false, false, RootSwitch::Pivot) => steps.push(Step::PivotRoot),
        (false, _, RootSwitch::Move { detach }) => {
            steps.extend(detach.into_iter().map(Step::DetachHost));
            steps.push(Step::MoveRoot);
        }
        (false, true, RootSwitch::Pivot) => steps.push(Step::MoveRoot),
    }
    for (name, value) in &linux.sysctl {
        check_sysctl(spec, name)?;
        steps.push(Step::WriteExisting {
            path: cstring(&format!("/proc/sys/{}", name.replace('.', "/")), "sysctl")?,
            contents: value.as_bytes().to_vec(),
        });
    }
    for path in &linux.masked_paths {
        if let Some(path) = GuestPath::following(path) {
            steps.push(Step::MaskAny(path));
        }
    }
    for path in &linux.readonly_paths {
        if let Some(target) = GuestPath::following(path) {
            steps.push(Step::Rebind {
                target,
                read_only: true,
            });
        }
    }
    if spec.root().readonly {
        steps.push(Step::ReadOnlyRoot);
    }
    if let Some(flags) = propagation(&linux.rootfs_propagation)? {
        steps.push(Step::RootPropagation(flags));
    }
    let has_uts = spec.namespace("uts").is_some();
    if let Some(name) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        if !has_uts {
            return Err(Error::Usage(
                "a hostname is given without a UTS namespace".into(),
            ));
        }
        steps.push(Step::Hostname(cstring(name, "hostname")?));
    }
    if let Some(name) = spec.domainname.as_deref().filter(|h| !h.is_empty()) {
        steps.push(Step::Domainname(cstring(name, "domainname")?));
    }
    steps.extend(late);
    if let Some(user) = userns_fd {
        steps.push(Step::Join(Namespace::User, user));
        steps.push(Step::Unshare(Namespace::Mount));
    }
    // a system container's shim keeps what it needs to boot its init again at each
    // reboot: the init's process takes on the restrictions itself (see the shim's
    // system mode)
    let system = boots_as_system(spec)?;
    if system && shares_mounts {
        return Err(Error::Usage(
            "a system container needs a mount namespace: its init's /proc is mounted there at \
             each boot"
                .into(),
        ));
    }
    let made = match system {
        true => process_steps(process, opts.console_socket, None, false)?,
        false => process_steps(process, opts.console_socket, linux.seccomp.as_ref(), true)?,
    };
    let (late_filter, listener) = (made.late_filter, made.listener);
    steps.extend(made.steps);

    // the fifo `start` opens, and the pipe that says the setup is done
    let fifo_path = dir.join(state::FIFO);
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::host(format!("mkfifo {}", fifo_path.display()), e))?;
    fs::set_permissions(&fifo_path, fs::Permissions::from_mode(0o622))
        .map_err(|e| Error::host(format!("chmod {}", fifo_path.display()), e))?;
    let fifo = open(&fifo_path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::host(format!("open {}", fifo_path.display()), e))?;
    // the number the fifo's write end takes once `start` opens it (see the step)
    let started_fd = ready_write.as_raw_fd();
    steps.push(Step::AwaitStart {
        ready: ready_write,
        fifo,
    });
    steps.extend(late_filter);

    // the shim runs the process: PID 1 of a new PID namespace, a subreaper otherwise; a
    // system container's init it boots
    let mut args = vec![format!("--started-fd={started_fd}")];
    let mut keep: Vec<_> = opts.preserved.iter().map(|fd| fd.as_fd()).collect();
    let filter_fd;
    if system {
        // the init may reboot(2), which ends its own PID namespace (see
        // `seccomp::for_system_init`)
        let caps = process.capabilities.clone().unwrap_or_default();
        let boot = caps::parse("SYS_BOOT").expect("a capability");
        let bounding = cap_set(&caps.bounding)?.bits() | boot.bits();
        args.push("--system".to_owned());
        args.push(format!("--caps={bounding:x}"));
        if process.no_new_privileges {
            args.push("--no-new-privs".to_owned());
        }
        if let Some(profile) = apparmor_profile(process)? {
            args.push(format!("--apparmor={}", profile.to_string_lossy()));
        }
        if let Some(given) = &linux.seccomp {
            if crate::seccomp::profile(given)?.notifies() {
                return Err(Error::Usage(
                    "linux.seccomp: SCMP_ACT_NOTIFY in a system container: its init is \
                     started again at each boot, with no agent to hand a listener to"
                        .into(),
                ));
            }
        }
        let profile = crate::seccomp::for_system_init(linux.seccomp.as_ref());
        filter_fd = filter_memfd(&crate::seccomp::filter(&profile)?)?;
        args.push(format!("--seccomp-fd={}", filter_fd.as_raw_fd()));
        keep.push(filter_fd.as_fd());
        let below_proc = |p: &&String| p.starts_with("/proc/") && !p.contains("/../");
        for path in linux.masked_paths.iter().filter(below_proc) {
            args.push(format!("--proc-mask={path}"));
        }
        for path in linux.readonly_paths.iter().filter(below_proc) {
            args.push(format!("--proc-ro={path}"));
        }
    } else if join_pid.is_some() || !clone_flags.contains(CloneFlags::CLONE_NEWPID) {
        args.push("-s".to_owned());
    }
    args.push("--".to_owned());
    args.extend(process.args.iter().cloned());
    if let Some(fd) = &join_pid {
        setns(fd, CloneFlags::CLONE_NEWPID)
            .map_err(|e| Error::setup("join the PID namespace given by path", e))?;
    }
    let container = spawn::spawn(
        &Spawn {
            threads,
            shim: &shim,
            cwd: Some(root.fd()),
            namespaces: clone_flags,
            cgroup: Some(cgroup.first_process_dir()),
            keep: &keep,
            args: &args,
            env: &process.env,
            outlives_launcher: true,
        },
        steps,
    )?;
    let mut record = Record {
        id: opts.id.to_owned(),
        pid: container.handoff_ids().0.as_raw(),
        started: 0,
        bundle: bundle.to_owned(),
        rootfs: root.path().to_owned(),
        created: state::now_rfc3339(),
        annotations: spec.annotations.clone(),
        cgroup: cgroup.path().to_owned(),
        cgroups_v1: Vec::new(),
        start_container: hooks.start_container,
        poststart: hooks.poststart,
        poststop: hooks.poststop,
        oci_version: spec.oci_version.clone(),
        root_attached: None,
    };
    // prestart and createRuntime in our namespaces, createContainer in the container's;
    // when one fails, the spec's lifecycle goes on at `delete`: the poststop hooks run
    let at_pause = |container: &Container| {
        let state = record.state_json(Status::Creating);
        let place = Place::Container {
            pid: record.pid,
            pidfd: container.pidfd(),
        };
        let ran = hooks::run_all(threads, "prestart", &hooks.prestart, &state, Place::Runtime)
            .and_then(|()| {
                hooks::run_all(
                    threads,
                    "createRuntime",
                    &hooks.create_runtime,
                    &state,
                    Place::Runtime,
                )
            })
            .and_then(|()| {
                hooks::run_all(
                    threads,
                    "createContainer",
                    &hooks.create_container,
                    &state,
                    place,
                )
            });
        if ran.is_err() {
            hooks::run_poststop(threads, &record);
        }
        ran
    };
    // the filter's listener, to the seccomp agent, once the process sends it
    let seccomp = linux.seccomp.as_ref();
    let to_agent = |socket: &OwnedFd| match seccomp {
        Some(given) => crate::seccomp::pass_listener(
            socket,
            given,
            record.pid,
            record.state_json(Status::Creating),
        ),
        None => Ok(()),
    };
    let pid = wait_ready(
        container,
        ready_read,
        pause.map(|resume| (resume, at_pause)),
        listener.map(|socket| (socket, to_agent)),
    )?;
    record.started = state::start_time(pid)
        .ok_or_else(|| Error::setup("the container's first process", Errno::ESRCH))?;
    let (cgroup_path, cgroups_v1) = cgroup.keep();
    record.cgroup = cgroup_path;
    record.cgroups_v1 = cgroups_v1;
    record.root_attached = attached.as_ref().map(|a| a.at.clone());
    record
        .save(dir)
        .map_err(|e| Error::host(format!("write the state in {}", dir.display()), e))?;
    if let Some(attached) = attached {
        attached.keep();
    }
    if let Some(path) = opts.pid_file {
        write_pid_file(path, pid)?;
    }
    Ok(record)
}

/// The steps that make the container's first process, or a process `exec` adds, what
/// `process` says: its OOM score, rlimits, terminal (over `console_socket`), bounding
/// set, user, capabilities, no_new_privs, working directory, the lookup of its
/// executable, its umask. Run as the container's root, in all its namespaces.
///
/// The seccomp filter, if any, comes as late as it can: with `noNewPrivileges` after
/// everything (`late_filter`, for the caller to put last), else just before the user
/// changes, while CAP_SYS_ADMIN still allows the install (runc's order). A filter with a
/// listener goes in no later than the end of these steps, before the process says it is
/// ready: its listener must reach the agent by then.
pub fn process_steps(
    process: &spec::Process,
    console_socket: Option<&Path>,
    seccomp: Option<&spec::Seccomp>,
    restrict: bool,
) -> Result<ProcessSteps> {
    let mut steps = Vec::new();
    let filter = seccomp.map(crate::seccomp::filter).transpose()?;
    // a filter with a listener (SCMP_ACT_NOTIFY) sends it back over a socket, and goes in
    // before the process says it is ready, for the runtime to hand it to the agent then
    let mut listener = None;
    let filter = match filter {
        Some(filter) if filter.has_listener() => {
            let (ours, theirs) = socketpair(
                AddressFamily::Unix,
                SockType::SeqPacket,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| Error::host("socketpair for the seccomp listener", e))?;
            listener = Some(ours);
            Some(Step::SeccompListener { filter, to: theirs })
        }
        Some(filter) => Some(Step::Seccomp(filter)),
        None => None,
    };
    let last_of_all = listener.is_none() && process.no_new_privileges;
    let (early_filter, late_filter, last_filter) = match filter {
        Some(f) if last_of_all => (None, Some(f), None),
        Some(f) if process.no_new_privileges => (None, None, Some(f)),
        Some(f) => (Some(f), None, None),
        None => (None, None, None),
    };
    if let Some(adj) = process.oom_score_adj {
        steps.push(Step::WriteExisting {
            path: c"/proc/self/oom_score_adj".to_owned(),
            contents: adj.to_string().into_bytes(),
        });
    }
    for rlimit in &process.rlimits {
        let (name, resource) = rlimit_resource(&rlimit.kind)?;
        steps.push(Step::Rlimit {
            name,
            resource,
            soft: rlimit.soft,
            hard: rlimit.hard,
        });
    }
    if process.terminal {
        let socket = console_socket.ok_or_else(|| {
            Error::Usage("process.terminal is true but no --console-socket was given".into())
        })?;
        let stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
            Error::host(
                format!("connect to the console socket {}", socket.display()),
                e,
            )
        })?;
        steps.push(Step::Terminal {
            socket: OwnedFd::from(stream),
            size: process.console_size.map(|s| (s.height, s.width)),
        });
    }
    let capabilities = process.capabilities.clone().unwrap_or_default();
    if restrict {
        steps.push(Step::Bounding(cap_set(&capabilities.bounding)?));
    }
    steps.extend(early_filter);
    steps.push(Step::Identity(Identity {
        uid: process.user.uid,
        gid: process.user.gid,
        groups: process
            .user
            .additional_gids
            .iter()
            .map(|&g| Gid::from_raw(g))
            .collect(),
    }));
    if restrict {
        steps.push(Step::SetCapabilities(Capabilities {
            effective: cap_set(&capabilities.effective)?.bits(),
            permitted: cap_set(&capabilities.permitted)?.bits(),
            inheritable: cap_set(&capabilities.inheritable)?.bits(),
            ambient: cap_set(&capabilities.ambient)?.bits(),
        }));
        if process.no_new_privileges {
            steps.push(Step::NoNewPrivileges);
        }
        if let Some(profile) = apparmor_profile(process)? {
            steps.push(Step::AppArmorOnExec(profile));
        }
    }
    steps.push(Step::Chdir(cstring(&process.cwd, "process.cwd")?));
    steps.push(Step::FindExecutable {
        name: cstring(&process.args[0], "process.args[0]")?,
        candidates: candidates(&process.args[0], &process.env)?,
    });
    steps.push(Step::Umask(process.user.umask.unwrap_or(0o022)));
    steps.extend(last_filter);
    Ok(ProcessSteps {
        steps,
        late_filter,
        listener,
    })
}

/// What [`process_steps`] makes.
pub struct ProcessSteps {
    pub steps: Vec<Step>,
    /// The filter with `noNewPrivileges`, for the caller to put last of all.
    pub late_filter: Option<Step>,
    /// Our side of the socket the process sends its filter's listener over, when the
    /// profile has SCMP_ACT_NOTIFY rules (see `seccomp::receive_listener`).
    pub listener: Option<OwnedFd>,
}

/// The annotation that says whether the container's process boots as a system's init.
pub const SYSTEM_ANNOTATION: &str = "run.cradle.system";

/// The commands taken for a system's init, as podman takes them for its systemd mode.
const INITS: [&str; 3] = ["/sbin/init", "/usr/sbin/init", "/usr/local/sbin/init"];

/// Whether the container's process boots as a system's init, under `cradle-shim
/// --system`: the annotation [`SYSTEM_ANNOTATION`] says so (`true` or `false`), or else
/// its command is an init by podman's rule (one of [`INITS`], or a `systemd`), run as
/// root in a PID namespace of its own. One that cannot (asked for, but not root, or in
/// the runtime's PID namespace) is refused.
fn boots_as_system(spec: &Spec) -> Result<bool> {
    let process = spec.process();
    let own_pid_ns = spec.namespace("pid").is_some_and(|n| n.path.is_empty());
    let can = own_pid_ns && process.user.uid == 0;
    let command = process.args[0].as_str();
    let is_init = INITS.contains(&command) || command.rsplit('/').next() == Some("systemd");
    match spec.annotations.get(SYSTEM_ANNOTATION).map(String::as_str) {
        Some("true") if !can => Err(Error::Usage(format!(
            "{SYSTEM_ANNOTATION}: a system container's init runs as root (uid 0) in a PID \
             namespace of its own"
        ))),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(Error::Usage(format!(
            "{SYSTEM_ANNOTATION}: {other:?} is neither true nor false"
        ))),
        None => Ok(is_init && can),
    }
}

/// The seccomp filter in a memfd for the shim to read (`--seccomp-fd`).
fn filter_memfd(filter: &cradle_core::security::seccomp::Filter) -> Result<OwnedFd> {
    use std::io::{Seek, Write};
    let fd =
        nix::sys::memfd::memfd_create(c"cradle-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::host("memfd for the seccomp filter", e))?;
    let mut file = fs::File::from(fd);
    file.write_all(&filter.to_bytes())
        .and_then(|()| file.rewind())
        .map_err(|e| Error::host("memfd for the seccomp filter", e))?;
    Ok(OwnedFd::from(file))
}

/// What the spec asks that this runtime does not do, refused by name rather than ignored;
/// and what this host cannot do, handled as runc handles it there.
fn refuse_unsupported(spec: &Spec) -> Result<()> {
    let process = spec.process();
    let linux = spec.linux();
    apparmor_profile(process)?;
    // as runc (go-selinux): labels are no-ops where SELinux is not enabled
    let selinux = Path::new("/sys/fs/selinux/enforce").exists();
    let labels = [
        process.selinux_label.as_deref(),
        Some(linux.mount_label.as_str()),
    ];
    if selinux && labels.iter().flatten().any(|l| !l.is_empty()) {
        return Err(Error::Usage(
            "SELinux labels are not supported by cradle-oci yet".into(),
        ));
    }
    Ok(())
}

/// True when the kernel's AppArmor is on (as runc and podman test it).
pub fn apparmor_enabled() -> bool {
    fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.starts_with(b"Y"))
}

/// The process's AppArmor profile, if it names one: what its exec takes on, as runc
/// applies it. Where AppArmor is off, a profile is refused, as runc fails to apply it.
pub fn apparmor_profile(process: &spec::Process) -> Result<Option<CString>> {
    let Some(profile) = process
        .apparmor_profile
        .as_deref()
        .filter(|p| !p.is_empty())
    else {
        return Ok(None);
    };
    if !apparmor_enabled() {
        return Err(Error::Usage(format!(
            "process.apparmorProfile {profile:?}: AppArmor is not enabled on this host"
        )));
    }
    cstring(profile, "process.apparmorProfile").map(Some)
}

/// The device cgroup's allow list, as runc makes it: the spec's rules in order (a rule
/// that denies every device clears what was allowed before it; the program denies what
/// no rule allows), then the devices every container gets, its pty slaves, and the
/// spec's own device nodes. A narrower deny after an allow is refused: the program the
/// core builds only allows.
pub fn device_rules(spec: &Spec) -> Result<Vec<devices::Rule>> {
    use devices::{Access, DeviceType, Rule, Span};
    let span = |n: Option<i64>| n.filter(|&n| n >= 0).map(|n| Span::one(n as u32));
    let kind = |t: Option<&str>| match t {
        None | Some("a") => Ok(DeviceType::All),
        Some("c") => Ok(DeviceType::Char),
        Some("b") => Ok(DeviceType::Block),
        Some(other) => Err(Error::Usage(format!("device rule: unknown type {other:?}"))),
    };
    let mut allowed: Vec<Rule> = Vec::new();
    let rules = spec
        .linux()
        .resources
        .as_ref()
        .map_or(&[][..], |r| &r.devices[..]);
    for rule in rules {
        let mut access = Access::from_bits(0);
        for c in rule.access.as_deref().unwrap_or("rwm").chars() {
            access = access.union(match c {
                'r' => Access::READ,
                'w' => Access::WRITE,
                'm' => Access::MKNOD,
                other => {
                    return Err(Error::Usage(format!(
                        "device rule: unknown access {other:?}"
                    )));
                }
            });
        }
        let this = Rule {
            device_type: kind(rule.kind.as_deref())?,
            major: span(rule.major),
            minor: span(rule.minor),
            access,
        };
        if rule.allow {
            allowed.push(this);
        } else if this.device_type == DeviceType::All
            && this.major.is_none()
            && this.minor.is_none()
            && this.access == Access::ALL
        {
            allowed.clear();
        } else if !allowed.is_empty() {
            return Err(Error::Usage(
                "device rules: a deny rule narrower than every device, after an allow rule, \
                 is not supported by cradle-oci yet"
                    .into(),
            ));
        }
    }
    let char_rule = |major: u32, minor: Option<Span>| Rule {
        device_type: DeviceType::Char,
        major: Some(Span::one(major)),
        minor,
        access: Access::ALL,
    };
    for (_, major, minor) in DEFAULT_DEVICES {
        allowed.push(char_rule(major as u32, Some(Span::one(minor as u32))));
    }
    allowed.push(char_rule(5, Some(Span::from_to(1, 2)))); // console, ptmx
    allowed.push(Rule {
        device_type: DeviceType::Char,
        major: Some(Span::from_to(136, 143)),
        minor: None,
        access: Access::ALL,
    });
    for device in &spec.linux().devices {
        allowed.push(Rule {
            device_type: if device.kind == "b" {
                DeviceType::Block
            } else {
                DeviceType::Char
            },
            major: Some(Span::one(device.major as u32)),
            minor: Some(Span::one(device.minor as u32)),
            access: Access::ALL,
        });
    }
    Ok(allowed)
}

/// Waits until the container says it is ready (its setup done, waiting for `start`), or
/// fails; then lets it go on without us. Its first process's pid.
/// Waits until the container is ready (its setup done, waiting for `start`); runs `pause`'s
/// work when its setup pauses (`Step::Pause`), and lets it go on through `pause`'s
/// descriptor. Its first process's pid, released to outlive us.
fn wait_ready(
    mut container: Container,
    ready: OwnedFd,
    mut pause: Option<(OwnedFd, impl FnOnce(&Container) -> Result<()>)>,
    mut listener: Option<(OwnedFd, impl FnOnce(&OwnedFd) -> Result<()>)>,
) -> Result<i32> {
    let errpipe_failure = |container: &mut Container| match container.read_report() {
        Report::Failed(failure) => Some(container.failure_error(failure, "the container")),
        _ => None,
    };
    loop {
        let mut fds = vec![PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
        // the seccomp listener, which comes before the process is ready: handed to the
        // agent at once, since the process's next calls may wait for it
        if let Some((socket, _)) = &listener {
            fds.push(PollFd::new(socket.as_fd(), PollFlags::POLLIN));
        }
        if let Some(errpipe) = container.errpipe() {
            fds.push(PollFd::new(errpipe, PollFlags::POLLIN));
        }
        let mut ready_now = sys::poll_ready(&mut fds, PollTimeout::from(READY_TIMEOUT_MS as u16))
            .map_err(|e| Error::host("poll", e))?;
        drop(fds);
        if ready_now.iter().all(|r| !r) {
            return Err(Error::Timeout(
                "the container did not finish its setup in 60 s".into(),
            ));
        }
        // the listener's entry out of the way: then the error pipe's is the second
        if listener.is_some() && ready_now.remove(1) {
            let (socket, hand_over) = listener.take().expect("checked");
            hand_over(&socket)?;
            continue;
        }
        if ready_now.get(1).copied().unwrap_or(false) {
            if let Some(error) = errpipe_failure(&mut container) {
                return Err(error);
            }
        }
        if ready_now[0] {
            let mut byte = [0u8];
            match read(&ready, &mut byte) {
                Ok(1) if byte[0] == PAUSED => {
                    let (resume, work) = pause
                        .take()
                        .ok_or_else(|| Error::setup("set up the container", Errno::EPROTO))?;
                    work(&container)?;
                    if nix::unistd::write(&resume, b"1") != Ok(1) {
                        return Err(Error::setup("resume the container's setup", Errno::EPIPE));
                    }
                }
                Ok(1) => return Ok(container.release().as_raw()),
                Ok(_) => {
                    // the container ended before it was ready: its report says why
                    let _ = container.wait();
                    return Err(errpipe_failure(&mut container)
                        .unwrap_or_else(|| Error::setup("set up the container", Errno::ECHILD)));
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::host("ready pipe", e)),
            }
        }
    }
}

pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    cradle_core::guest::state::write_atomic_mode(path, pid.to_string().as_bytes(), 0o644)
        .map_err(|e| Error::host(format!("write the pid file {}", path.display()), e))
}

/// The kernel's id map text for the spec's mappings.
fn id_map(mappings: &[spec::IdMapping]) -> String {
    mappings
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// The cgroup's path, and whether it is below our own cgroup (true) or the hierarchy's
/// root: the spec's `cgroupsPath` as runc reads it without systemd (an absolute path
/// from the root, a relative one from our own cgroup), or `cradle-oci/ID` from the root;
/// with `--systemd-cgroup`, `slice:prefix:name` as systemd lays it out
/// (`machine.slice/prefix-name.scope`), made by us in the hierarchy (no unit is made).
pub fn cgroup_path(given: Option<&str>, id: &str, systemd: bool) -> Result<(PathBuf, bool)> {
    let bad = |why: &str| Error::Usage(format!("bad cgroupsPath {given:?}: {why}"));
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return Ok((
            if systemd {
                PathBuf::from(format!("system.slice/cradle-oci-{id}.scope"))
            } else {
                PathBuf::from(format!("cradle-oci/{id}"))
            },
            false,
        ));
    };
    let below_own = !systemd && !given.starts_with('/');
    let path = if systemd {
        let parts: Vec<&str> = given.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(bad("--systemd-cgroup wants slice:prefix:name"));
        };
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        if !slice.ends_with(".slice") || slice.contains('/') {
            return Err(bad("the slice must be a name ending in .slice"));
        }
        // "a-b-c.slice" lives in a.slice/a-b.slice/a-b-c.slice
        let stem = slice.trim_end_matches(".slice");
        let mut dirs = PathBuf::new();
        if slice != "-.slice" {
            let words: Vec<&str> = stem.split('-').collect();
            for i in 1..=words.len() {
                dirs.push(format!("{}.slice", words[..i].join("-")));
            }
        }
        let unit = if name.ends_with(".slice") {
            name.to_owned()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        dirs.join(unit)
    } else {
        PathBuf::from(given.trim_start_matches('/'))
    };
    if path
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
        || path.as_os_str().is_empty()
    {
        return Err(bad("it must name a cgroup below the root, without .."));
    }
    Ok((path, below_own))
}

/// A capability list of the spec as a set; an unknown name is an error naming it.
fn cap_set(names: &[String]) -> Result<CapSet> {
    names.iter().try_fold(CapSet::EMPTY, |set, name| {
        if !name
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("CAP_"))
        {
            return Err(Error::Usage(format!("unknown capability {name:?}")));
        }
        caps::parse(name)
            .map(|cap| CapSet::from_bits(set.bits() | cap.bits()))
            .ok_or_else(|| Error::Usage(format!("unknown capability {name:?}")))
    })
}

fn rlimit_resource(name: &str) -> Result<(&'static str, i32)> {
    // i32: glibc types them u32, musl i32 (setrlimit takes either as its own type)
    const RLIMITS: [(&str, i32); 16] = [
        ("RLIMIT_CPU", libc::RLIMIT_CPU as i32),
        ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE as i32),
        ("RLIMIT_DATA", libc::RLIMIT_DATA as i32),
        ("RLIMIT_STACK", libc::RLIMIT_STACK as i32),
        ("RLIMIT_CORE", libc::RLIMIT_CORE as i32),
        ("RLIMIT_RSS", libc::RLIMIT_RSS as i32),
        ("RLIMIT_NPROC", libc::RLIMIT_NPROC as i32),
        ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as i32),
        ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK as i32),
        ("RLIMIT_AS", libc::RLIMIT_AS as i32),
        ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS as i32),
        ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING as i32),
        ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE as i32),
        ("RLIMIT_NICE", libc::RLIMIT_NICE as i32),
        ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO as i32),
        ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME as i32),
    ];
    RLIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .copied()
        .ok_or_else(|| Error::Usage(format!("unknown rlimit {name:?}")))
}

fn propagation(name: &str) -> Result<Option<MsFlags>> {
    Ok(Some(match name {
        "" => return Ok(None),
        "shared" | "rshared" => MsFlags::MS_SHARED,
        "slave" | "rslave" => MsFlags::MS_SLAVE,
        "private" | "rprivate" => MsFlags::MS_PRIVATE,
        "unbindable" | "runbindable" => MsFlags::MS_UNBINDABLE,
        other => {
            return Err(Error::Usage(format!("unknown rootfsPropagation {other:?}")));
        }
    }))
}

/// Where the shim will find `command` (runc's lookup along the process's $PATH).
fn candidates(command: &str, env: &[String]) -> Result<Vec<CString>> {
    if command.contains('/') {
        return Ok(vec![cstring(command, "process.args[0]")?]);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| cstring(&format!("{dir}/{command}"), "process.args[0]"))
        .collect()
}

/// What one mount option does.
enum MountOption {
    /// `MOUNT_ATTR_*` bits to set and to clear.
    Attr(u64, u64),
    Bind {
        recursive: bool,
    },
    Propagation(u64),
    /// Handled elsewhere or meaningless here (`defaults`, `rw`, `sync`, ...).
    Nothing,
    IdMap {
        recursive: bool,
    },
    /// For the file system itself (fsconfig): `key` or `key=value`.
    Data(String),
}

fn mount_option(option: &str) -> MountOption {
    use MountOption::*;
    const ATIME: u64 = libc::MOUNT_ATTR__ATIME;
    match option {
        "defaults" | "rw" | "suid" | "dev" | "exec" | "async" | "nomand" | "norelatime"
        | "nostrictatime" | "nodiratime_off" | "remount" | "sync" | "dirsync" | "mand"
        | "atime" | "diratime" | "loud" | "silent" | "iversion" | "noiversion" | "tmpcopyup"
        | "lazytime" | "nolazytime" => Nothing,
        "ro" => Attr(libc::MOUNT_ATTR_RDONLY, 0),
        "nosuid" => Attr(libc::MOUNT_ATTR_NOSUID, 0),
        "nodev" => Attr(libc::MOUNT_ATTR_NODEV, 0),
        "noexec" => Attr(libc::MOUNT_ATTR_NOEXEC, 0),
        "noatime" => Attr(libc::MOUNT_ATTR_NOATIME, ATIME),
        "relatime" => Attr(libc::MOUNT_ATTR_RELATIME, ATIME),
        "strictatime" => Attr(libc::MOUNT_ATTR_STRICTATIME, ATIME),
        "nodiratime" => Attr(libc::MOUNT_ATTR_NODIRATIME, 0),
        "bind" => Bind { recursive: false },
        "rbind" => Bind { recursive: true },
        "private" | "rprivate" => Propagation(arch::MS_PRIVATE),
        "shared" | "rshared" => Propagation(arch::MS_SHARED),
        "slave" | "rslave" => Propagation(arch::MS_SLAVE),
        "unbindable" | "runbindable" => Propagation(arch::MS_UNBINDABLE),
        "idmap" => IdMap { recursive: false },
        "ridmap" => IdMap { recursive: true },
        other => Data(other.to_owned()),
    }
}

/// The steps of one of the bundle's mounts: its mount point made (a directory, or a
/// file for a bind of a file), then the mount.
fn mount_steps(
    threads: &SingleThreaded,
    steps: &mut Vec<Step>,
    mount: &spec::Mount,
    bundle: &Path,
    new_userns: Option<(&OwnedFd, IdMaps)>,
) -> Result<()> {
    let userns = new_userns.map(|(fd, _)| fd);
    let target = GuestPath::following(&mount.destination)
        .ok_or_else(|| Error::Usage(format!("bad mount destination {:?}", mount.destination)))?;
    let (mut set, mut clear, mut bind, mut propagation, mut idmap) = (0, 0, None, 0, None);
    let mut data = Vec::new();
    for option in &mount.options {
        match mount_option(option) {
            MountOption::Attr(s, c) => {
                set |= s;
                clear |= c;
            }
            MountOption::Bind { recursive } => bind = Some(recursive || bind == Some(true)),
            MountOption::Propagation(p) => propagation = p,
            MountOption::IdMap { recursive } => idmap = Some(recursive),
            MountOption::Nothing => {}
            MountOption::Data(d) => data.push(d),
        }
    }
    if mount.kind == "bind" && bind.is_none() {
        bind = Some(false);
    }
    let mut ancestry = target.ancestry();
    let last = ancestry.pop().expect("a path has itself");
    steps.extend(ancestry.into_iter().map(Step::Mkdir));
    match bind {
        Some(recursive) => {
            let source = if Path::new(&mount.source).is_absolute() {
                PathBuf::from(&mount.source)
            } else {
                bundle.join(&mount.source)
            };
            let meta = fs::metadata(&source)
                .map_err(|e| Error::host(format!("bind source {}", source.display()), e))?;
            // a mount's own id maps (an idmapped mount), in a user namespace of their own
            let own_userns = if mount.uid_mappings.is_empty() && mount.gid_mappings.is_empty() {
                None
            } else {
                let (user, _) = userns::create_owned(
                    threads,
                    &id_map(&mount.uid_mappings),
                    &id_map(&mount.gid_mappings),
                    &[],
                )?;
                Some(user)
            };
            let idmap =
                match (own_userns, idmap.is_some(), userns) {
                    (Some(own), _, _) => Some(own),
                    (None, true, Some(userns)) => Some(userns.try_clone().map_err(|e| {
                        Error::host("duplicate the user namespace's descriptor", e)
                    })?),
                    (None, true, None) => {
                        return Err(Error::Usage(format!(
                            "{}: an idmap mount needs a new user namespace or its own id maps",
                            mount.destination
                        )));
                    }
                    (None, false, _) => None,
                };
            if idmap.is_some() && !cradle_core::container::mountattr::kernel_has_mount_setattr() {
                return Err(Error::Usage(format!(
                    "{}: {}",
                    mount.destination,
                    cradle_core::container::rootfs::NO_IDMAP_KERNEL
                )));
            }
            steps.push(if meta.is_dir() {
                Step::Mkdir(last)
            } else {
                Step::EnsureFile(last)
            });
            // before Linux 5.12 the flags of a recursive bind are set mount by mount
            let below = if recursive
                && (set != 0 || clear != 0)
                && !cradle_core::container::mountattr::kernel_has_mount_setattr()
            {
                let real = fs::canonicalize(&source)
                    .map_err(|e| Error::host(format!("bind source {}", source.display()), e))?;
                let table = fs::read_to_string("/proc/self/mountinfo")
                    .map_err(|e| Error::host("read /proc/self/mountinfo", e))?;
                mountinfo::below(&mountinfo::parse(&table), &real)
            } else {
                Vec::new()
            };
            steps.push(Step::BindPath {
                source: cstring(&source.to_string_lossy(), "bind source")?,
                target: GuestPath::following(&mount.destination).expect("checked above"),
                recursive,
                set,
                clear,
                idmap,
                below,
            });
            if propagation != 0 {
                steps.push(Step::Propagation {
                    target: GuestPath::following(&mount.destination).expect("checked above"),
                    flags: propagation,
                    recursive,
                });
            }
        }
        None => {
            let fstype = match mount.kind.as_str() {
                // the v2 hierarchy, as runc mounts it on a unified host
                "cgroup" | "cgroup2" => "cgroup2",
                "" => {
                    return Err(Error::Usage(format!(
                        "mount {} has no type",
                        mount.destination
                    )));
                }
                other => other,
            };
            // cgroup2 takes none of the v1 options a spec may carry
            let data = if fstype == "cgroup2" {
                Vec::new()
            } else if let Some((_, maps)) = new_userns {
                owners_in_host_terms(fstype, &mount.destination, data, maps)?
            } else {
                data
            };
            let options = data
                .iter()
                .map(|d| {
                    let (key, value) = match d.split_once('=') {
                        Some((k, v)) => (k, Some(v)),
                        None => (d.as_str(), None),
                    };
                    Ok((
                        cstring(key, "mount option")?,
                        value.map(|v| cstring(v, "mount option")).transpose()?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut options = options;
            if !mount.source.is_empty() {
                // what mountinfo shows as the mount's source, as mount(8) would have it
                options.insert(
                    0,
                    (
                        c"source".to_owned(),
                        Some(cstring(&mount.source, "mount source")?),
                    ),
                );
            }
            steps.push(Step::Mkdir(last));
            steps.push(Step::Mount {
                target: GuestPath::following(&mount.destination).expect("checked above"),
                fs: Filesystem::new(cstring(fstype, "mount type")?, options, set),
            });
            if propagation != 0 {
                steps.push(Step::Propagation {
                    target: GuestPath::following(&mount.destination).expect("checked above"),
                    flags: propagation,
                    recursive: false,
                });
            }
        }
    }
    Ok(())
}

/// A `cgroup` mount on a v1 or hybrid host, as runc makes it: a tmpfs, and in it the
/// container's cgroup of each hierarchy bound under the name the host mounts that
/// hierarchy under (`cpu,cpuacct`, `memory`, `systemd`), a symlink for each controller of
/// a co-mounted one (`cpu` -> `cpu,cpuacct`); the binds read-only when the mount is, and
/// the tmpfs then too. A hybrid host's cgroup v2 hierarchy is left out, as runc leaves
/// it: a systemd in the container then keeps its tree in the `systemd` hierarchy (which
/// podman binds from the host for it), not in a v2 directory it could not reach.
fn cgroup_tree_steps(
    steps: &mut Vec<Step>,
    mount: &spec::Mount,
    every_v1: &[(V1Dir, String)],
) -> Result<()> {
    let read_only = mount.options.iter().any(|o| o == "ro");
    let attrs = |extra: u64| {
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC | extra
    };
    let target = |below: &str| {
        let path = format!("{}/{below}", mount.destination.trim_end_matches('/'));
        GuestPath::following(path.trim_end_matches('/'))
            .ok_or_else(|| Error::Usage(format!("bad mount destination {:?}", mount.destination)))
    };
    let mut ancestry = target("")?.ancestry();
    ancestry.pop();
    steps.extend(ancestry.into_iter().map(Step::Mkdir));
    steps.push(Step::Mkdir(target("")?));
    steps.push(Step::Mount {
        target: target("")?,
        fs: Filesystem::new(
            c"tmpfs".to_owned(),
            vec![(c"mode".to_owned(), Some(c"755".to_owned()))],
            attrs(0),
        ),
    });
    let ro = if read_only {
        libc::MOUNT_ATTR_RDONLY
    } else {
        0
    };
    let mut named: Vec<&str> = Vec::new();
    let binds = every_v1
        .iter()
        .map(|(dir, name)| (dir.path.as_path(), name.as_str()));
    for (source, name) in binds {
        steps.push(Step::Mkdir(target(name)?));
        steps.push(Step::BindPath {
            source: cstring(&source.to_string_lossy(), "cgroup")?,
            target: target(name)?,
            recursive: false,
            set: attrs(ro),
            clear: 0,
            idmap: None,
            below: Vec::new(),
        });
        named.push(name);
    }
    for (_, name) in every_v1.iter().filter(|(_, name)| name.contains(',')) {
        for controller in name.split(',') {
            if !named.contains(&controller) {
                steps.push(Step::Symlink {
                    target: cstring(name, "cgroup")?,
                    path: target(controller)?,
                });
            }
        }
    }
    if read_only {
        steps.push(Step::MountReadOnly(target("")?));
    }
    Ok(())
}

/// The spec's uid and gid maps, of a user namespace the container gets.
type IdMaps<'a> = (&'a [spec::IdMapping], &'a [spec::IdMapping]);

/// The host's id for the container's `id` in `maps`.
fn host_id(maps: &[spec::IdMapping], id: u32) -> Option<u32> {
    maps.iter()
        .find(|m| id >= m.container_id && id - m.container_id < m.size)
        .map(|m| m.host_id + (id - m.container_id))
}

/// A file system's options as the container means them, for a mount made (as ours are)
/// before the container enters its new user namespace: the owners a tmpfs or devpts is
/// given (`uid=`, `gid=`) are the container's ids, so they become the host's through the
/// maps, and a tmpfs given none belongs to the container's root, as one its root mounted
/// in its namespace would (runc's).
fn owners_in_host_terms(
    fstype: &str,
    destination: &str,
    data: Vec<String>,
    (uids, gids): IdMaps,
) -> Result<Vec<String>> {
    if !matches!(fstype, "tmpfs" | "devpts") {
        return Ok(data);
    }
    let mut out = Vec::with_capacity(data.len() + 2);
    let (mut uid_given, mut gid_given) = (false, false);
    for option in data {
        let (key, maps) = match option.split_once('=') {
            Some(("uid", _)) => ("uid", uids),
            Some(("gid", _)) => ("gid", gids),
            _ => {
                out.push(option);
                continue;
            }
        };
        let value = &option[key.len() + 1..];
        let id: u32 = value
            .parse()
            .map_err(|_| Error::Usage(format!("mount {destination}: bad option {option:?}")))?;
        let host = host_id(maps, id).ok_or_else(|| {
            Error::Usage(format!(
                "mount {destination}: {key} {id} is not mapped in the user namespace"
            ))
        })?;
        uid_given |= key == "uid";
        gid_given |= key == "gid";
        out.push(format!("{key}={host}"));
    }
    if fstype == "tmpfs" {
        for (given, key, maps) in [(uid_given, "uid", uids), (gid_given, "gid", gids)] {
            if let (false, Some(root)) = (given, host_id(maps, 0)) {
                out.push(format!("{key}={root}"));
            }
        }
    }
    Ok(out)
}

/// The devices every container gets (runc's default list), with their numbers.
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The symlinks of /dev, made when the bundle mounts a tmpfs there.
const DEV_LINKS: [(&str, &str); 5] = [
    ("dev/fd", "/proc/self/fd"),
    ("dev/stdin", "/proc/self/fd/0"),
    ("dev/stdout", "/proc/self/fd/1"),
    ("dev/stderr", "/proc/self/fd/2"),
    ("dev/ptmx", "pts/ptmx"),
];

/// The default devices and the spec's: created with mknod, or, in a new user namespace
/// (where mknod is refused), bound from the host's nodes of the same path.
fn device_steps(
    steps: &mut Vec<Step>,
    spec: &Spec,
    userns: bool,
    dev_is_tmpfs: bool,
) -> Result<()> {
    let mut nodes: Vec<(String, u32, u64, u32, u32)> = Vec::new();
    for (path, major, minor) in DEFAULT_DEVICES {
        nodes.push((
            path.to_owned(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major as u32, minor as u32),
            0,
            0,
        ));
    }
    for device in &spec.linux().devices {
        let kind = match device.kind.as_str() {
            "c" | "u" => libc::S_IFCHR,
            "b" => libc::S_IFBLK,
            "p" => libc::S_IFIFO,
            other => {
                return Err(Error::Usage(format!(
                    "device {}: unknown type {other:?}",
                    device.path
                )));
            }
        };
        let mode = kind | device.file_mode.unwrap_or(0o666) & 0o7777;
        let dev = libc::makedev(device.major as u32, device.minor as u32);
        nodes.retain(|n| n.0 != device.path);
        nodes.push((
            device.path.clone(),
            mode,
            dev,
            device.uid.unwrap_or(0),
            device.gid.unwrap_or(0),
        ));
    }
    for (path, mode, dev, uid, gid) in nodes {
        let target = GuestPath::following(&path)
            .ok_or_else(|| Error::Usage(format!("bad device path {path:?}")))?;
        let mut ancestry = target.ancestry();
        let last = ancestry.pop().expect("a path has itself");
        steps.extend(ancestry.into_iter().map(Step::Mkdir));
        if userns {
            let host = cstring(&path, "device path")?;
            let meta = fs::metadata(&path);
            let same = meta.as_ref().is_ok_and(|m| {
                (m.file_type().is_char_device() || m.file_type().is_block_device())
                    && m.rdev() == dev
            });
            if !same {
                return Err(Error::Usage(format!(
                    "device {path}: in a user namespace devices are bound from the host's, \
                     and the host has no such node there"
                )));
            }
            let tree = cradle_core::container::rootfs::clone_host_file(&host)
                .map_err(|e| Error::setup(format!("bind {path}"), e))?;
            steps.push(Step::EnsureFile(last));
            steps.push(Step::Bind {
                target: GuestPath::following(&path).expect("checked above"),
                source: Source::new(path.clone(), tree),
            });
        } else {
            steps.push(Step::Mknod {
                path: last,
                mode,
                dev,
                owner: (uid, gid),
            });
        }
    }
    if dev_is_tmpfs {
        for (path, target) in DEV_LINKS {
            steps.push(Step::Symlink {
                target: cstring(target, "link")?,
                path: GuestPath::following(path).expect("a fixed path"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tmpfs_or_devpts_made_before_the_user_namespace_gets_its_owners_in_host_terms() {
        let map = |c, h, size| spec::IdMapping {
            container_id: c,
            host_id: h,
            size,
        };
        let uids = [map(0, 100_000, 1000), map(1000, 5000, 1)];
        let gids = [map(0, 200_000, 65536)];
        let opts = |fstype, given: &[&str]| {
            let given = given.iter().map(|s| s.to_string()).collect();
            owners_in_host_terms(fstype, "/x", given, (&uids, &gids))
        };
        assert_eq!(
            opts("tmpfs", &["mode=755"]).unwrap(),
            ["mode=755", "uid=100000", "gid=200000"]
        );
        assert_eq!(
            opts("tmpfs", &["uid=1000", "size=1m"]).unwrap(),
            ["uid=5000", "size=1m", "gid=200000"]
        );
        assert_eq!(
            opts("devpts", &["newinstance", "gid=5", "mode=620"]).unwrap(),
            ["newinstance", "gid=200005", "mode=620"]
        );
        assert_eq!(opts("mqueue", &["uid=7"]).unwrap(), ["uid=7"]);
        let unmapped = opts("tmpfs", &["uid=1001"]).unwrap_err().to_string();
        assert!(unmapped.contains("uid 1001 is not mapped"), "{unmapped}");
        assert!(opts("devpts", &["gid=x"]).is_err());
    }

    #[test]
    fn cgroup_paths_are_below_the_root_and_systemds_are_laid_out_as_systemd_does() {
        let path = |given, id, systemd| {
            let (path, below_own) = cgroup_path(given, id, systemd).unwrap();
            (path.to_string_lossy().into_owned(), below_own)
        };
        assert_eq!(path(None, "a", false), ("cradle-oci/a".into(), false));
        assert_eq!(path(Some("/x/y"), "a", false), ("x/y".into(), false));
        assert_eq!(path(Some("x/y"), "a", false), ("x/y".into(), true));
        assert_eq!(
            path(Some("machine.slice:libpod:abc"), "a", true),
            ("machine.slice/libpod-abc.scope".into(), false)
        );
        assert_eq!(
            path(Some("a-b.slice:p:n"), "x", true),
            ("a.slice/a-b.slice/p-n.scope".into(), false)
        );
        for bad in ["/x/../../etc", "..", "/"] {
            assert!(cgroup_path(Some(bad), "a", false).is_err(), "{bad}");
        }
        assert!(cgroup_path(Some("x/y"), "a", true).is_err());
    }

    #[test]
    fn capability_and_rlimit_names_are_checked() {
        assert!(cap_set(&["CAP_KILL".into(), "CAP_CHOWN".into()]).is_ok());
        assert!(cap_set(&["CAP_TEST".into()]).is_err());
        assert!(cap_set(&["KILL".into()]).is_err());
        assert_eq!(
            rlimit_resource("RLIMIT_NOFILE").unwrap(),
            ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as i32)
        );
        assert!(rlimit_resource("RLIMIT_BOGUS").is_err());
    }

    #[test]
    fn the_command_is_looked_up_along_the_process_path() {
        let env = ["PATH=/bin:/usr/bin".to_owned()];
        assert_eq!(
            candidates("sh", &env).unwrap(),
            [c"/bin/sh".to_owned(), c"/usr/bin/sh".to_owned()]
        );
        assert_eq!(candidates("/x/y", &env).unwrap(), [c"/x/y".to_owned()]);
        assert_eq!(candidates("sh", &[]).unwrap().len(), 6);
    }

    #[test]
    fn ids_are_checked_as_runc_checks_them() {
        for good in ["a", "abc-1_2+3.4"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
