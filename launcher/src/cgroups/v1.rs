//! Where this host keeps the controllers of the limits (memory, pids, cpu), and the files
//! cradle writes and reads there.
//!
//! On a pure cgroup v2 host every controller is in the v2 hierarchy: the limits are files
//! of the container's cgroup (`cradle.NAME`, see `cgroups`), once the controller is enabled
//! in the root's `cgroup.subtree_control`. On a hybrid host (these machines) the unified
//! hierarchy has no controller; each is a v1 hierarchy of its own (`/sys/fs/cgroup/memory`,
//! ...). A container with limits there also gets a `cradle.NAME` cgroup in each v1
//! hierarchy of the three controllers, below the launcher's own cgroup in it (cgroup v1 has
//! no rule against processes in inner cgroups, so a limit the launcher runs under, a unit's
//! or a session's, still holds its guests). Cgroup v1 has no `CLONE_INTO_CGROUP`: the
//! container's first process writes itself into each, "0" into the cgroup's `tasks`
//! ([`open_to_join`]).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::Serialize;

use crate::cgroups;
use crate::cgroups::limits::{Controller, Knob, Limits};
use crate::error::{Error, Result};

/// The file a process writes "0" into to join a v1 cgroup: `tasks`, which moves the
/// writing thread, not `cgroup.procs`, which moves its whole thread group. The processes
/// that join are single-threaded (a launcher's child, before it runs anything), so both
/// move the same; but a thread group's move takes the kernel's `cgroup_threadgroup_rwsem`
/// for writing, which waits for an RCU grace period unless another move ended less than
/// one ago (11 to 16 ms measured here, cold), and the writer's own thread is moved
/// without it (80 us). The permission check is the same (the opener's credentials).
const JOIN_FILE: &str = "tasks";

/// The file a process writes "0" into to join the v1 cgroup `dir` ([`JOIN_FILE`]), open
/// for writing (inherited by the process that joins, as a plan's step).
pub fn open_to_join(dir: &Path) -> Result<OwnedFd> {
    let path = dir.join(JOIN_FILE);
    nix::fcntl::open(&path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::host(format!("open {}", path.display()), e))
}

/// A cgroup v1 hierarchy: where it is mounted, which controllers it has, and the launcher's
/// own cgroup in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// As /proc/self/cgroup names it: "memory", "cpu,cpuacct".
    pub controllers: String,
    pub mount: PathBuf,
    /// The launcher's cgroup in it, relative to the mount ("" for the root).
    pub own: PathBuf,
}

/// Which hierarchy provides a controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider<'a> {
    V2,
    V1(&'a V1Hierarchy),
}

/// The cgroup hierarchies of this host.
#[derive(Clone, Debug)]
pub struct Host {
    pub v2: PathBuf,
    /// The v2 root's `cgroup.controllers`.
    v2_controllers: Vec<String>,
    v1: Vec<V1Hierarchy>,
    /// The named v1 hierarchies (`name=systemd`), which have no controller.
    named: Vec<V1Hierarchy>,
}

/// A container's cgroup in a v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct V1Dir {
    pub controllers: String,
    pub path: PathBuf,
}

impl V1Dir {
    fn has(&self, controller: Controller) -> bool {
        self.controllers.split(',').any(|c| c == controller.name())
    }
}

/// The v1 cgroup mounts in `mountinfo` (/proc/self/mountinfo): each one's mount point
/// and super options.
fn cgroup_mounts(mountinfo: &str) -> impl Iterator<Item = (&str, &str)> {
    mountinfo.lines().filter_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        let mut tail = tail.split_whitespace();
        if tail.next() != Some("cgroup") {
            return None;
        }
        Some((head.split_whitespace().nth(4)?, tail.nth(1)?))
    })
}

/// The v1 hierarchies in `mountinfo` (/proc/self/mountinfo) with the launcher's cgroup in
/// each from `cgroup` (/proc/self/cgroup): one per hierarchy, the first mount of it.
fn v1_hierarchies(mountinfo: &str, cgroup: &str) -> Vec<V1Hierarchy> {
    let mut found: Vec<V1Hierarchy> = Vec::new();
    for (mount, options) in cgroup_mounts(mountinfo) {
        let names: BTreeSet<&str> = options.split(',').collect();
        // the line of /proc/self/cgroup whose controller list is this mount's
        let own = cgroup.lines().find_map(|l| {
            let mut fields = l.splitn(3, ':');
            let (_, list, path) = (fields.next()?, fields.next()?, fields.next()?);
            let set: BTreeSet<&str> = list.split(',').collect();
            (!list.is_empty() && set.is_subset(&names) && !set.contains("name=systemd"))
                .then(|| (list.to_owned(), path.trim_start_matches('/').to_owned()))
        });
        if let Some((controllers, own)) = own {
            if !found.iter().any(|h| h.controllers == controllers) {
                found.push(V1Hierarchy {
                    controllers,
                    mount: PathBuf::from(mount),
                    own: PathBuf::from(own),
                });
            }
        }
    }
    found
}

/// The named v1 hierarchies in `mountinfo` (`name=systemd`: no controller, one a
/// systemd of a v1 or hybrid host keeps its own tree in), with our cgroup in each from
/// `cgroup`.
fn named_hierarchies(mountinfo: &str, cgroup: &str) -> Vec<V1Hierarchy> {
    let mut found: Vec<V1Hierarchy> = Vec::new();
    for (mount, options) in cgroup_mounts(mountinfo) {
        let Some(name) = options.split(',').find(|o| o.starts_with("name=")) else {
            continue;
        };
        let own = cgroup.lines().find_map(|l| {
            let mut fields = l.splitn(3, ':');
            let (_, list, path) = (fields.next()?, fields.next()?, fields.next()?);
            (list == name).then(|| path.trim_start_matches('/').to_owned())
        });
        if let Some(own) = own {
            if !found.iter().any(|h| h.controllers == name) {
                found.push(V1Hierarchy {
                    controllers: name.to_owned(),
                    mount: PathBuf::from(mount),
                    own: PathBuf::from(own),
                });
            }
        }
    }
    found
}

/// The v1 lines of `proc_cgroup` (a `/proc/PID/cgroup`) whose path ends in `dir_name`, as
/// (controllers, path).
fn v1_lines_naming<'a>(
    proc_cgroup: &'a str,
    dir_name: &'a str,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    proc_cgroup.lines().filter_map(move |line| {
        let mut fields = line.splitn(3, ':');
        let (_, list, path) = (fields.next()?, fields.next()?, fields.next()?);
        (!list.is_empty() && Path::new(path).file_name().is_some_and(|n| n == dir_name))
            .then_some((list, path))
    })
}

/// The cgroups named `dir_name` in the v1 hierarchies of the process whose
/// `/proc/PID/cgroup` is `proc_cgroup`, as paths on this host, by hierarchy (none on a
/// pure v2 host, or for a container without limits). `known` are the directories its
/// launcher recorded (`Info::cgroups_v1`): when they name every such cgroup, the mount
/// table, which the kernel is slow to make, is not read (`exec` asks this every time).
pub fn v1_cgroups_of(
    proc_cgroup: &str,
    dir_name: &str,
    known: &[V1Dir],
) -> Result<Vec<(String, PathBuf)>> {
    let recorded: Option<Vec<(String, PathBuf)>> = v1_lines_naming(proc_cgroup, dir_name)
        .map(|(list, path)| {
            known
                .iter()
                .find(|d| d.controllers == list && d.path.ends_with(path.trim_start_matches('/')))
                .map(|d| (d.controllers.clone(), d.path.clone()))
        })
        .collect();
    if let Some(found) = recorded {
        return Ok(found);
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::host("read /proc/self/mountinfo", e))?;
    Ok(v1_hierarchies(&mountinfo, proc_cgroup)
        .into_iter()
        .filter(|h| h.own.file_name().is_some_and(|n| n == dir_name))
        .map(|h| (h.controllers, h.mount.join(h.own)))
        .collect())
}

/// Reads a cgroup file as trimmed text.
fn read(path: &Path) -> io::Result<String> {
    fs::read_to_string(path).map(|t| t.trim().to_owned())
}

impl Host {
    /// This host's hierarchies.
    pub fn probe() -> Result<Self> {
        let v2 = cgroups::v2_root().ok_or_else(cgroups::no_v2)?;
        let controllers = read(&v2.join("cgroup.controllers"))
            .map_err(|e| Error::host(format!("read {}/cgroup.controllers", v2.display()), e))?;
        let proc = |file: &str| {
            fs::read_to_string(file).map_err(|e| Error::host(format!("read {file}"), e))
        };
        let cgroup = proc("/proc/self/cgroup")?;
        // where the v1 hierarchies are mounted; a process is in every hierarchy mounted,
        // so with the v2 line alone there is none to look for (a pure v2 host): the mount
        // table, which the kernel takes some 60 us to make, is not read then
        let mountinfo = match cgroup.lines().any(|l| !l.starts_with("0::")) {
            true => proc("/proc/self/mountinfo")?,
            false => String::new(),
        };
        Ok(Host {
            v2,
            v2_controllers: controllers.split_whitespace().map(str::to_owned).collect(),
            v1: v1_hierarchies(&mountinfo, &cgroup),
            named: named_hierarchies(&mountinfo, &cgroup),
        })
    }

    /// The cgroups at `path` in every v1 hierarchy, the named ones too, as
    /// [`Host::v1_dirs_at`] places them, each with the name its hierarchy is mounted under
    /// (`cpu,cpuacct`, `systemd`): what an OCI container whose spec mounts the cgroup
    /// tree is given on a v1 or hybrid host, as runc gives it.
    pub fn every_v1_dir_at(&self, path: &Path, below_own: bool) -> Vec<(V1Dir, String)> {
        (self.v1.iter().chain(&self.named))
            .filter_map(|h| {
                let name = h.mount.file_name()?.to_string_lossy().into_owned();
                let path = if below_own {
                    h.mount.join(&h.own).join(path)
                } else {
                    h.mount.join(path)
                };
                Some((
                    V1Dir {
                        controllers: h.controllers.clone(),
                        path,
                    },
                    name,
                ))
            })
            .collect()
    }

    /// True when the cgroup v2 hierarchy is the host's only one (not hybrid or v1).
    pub fn is_pure_v2(&self) -> bool {
        self.v1.is_empty() && self.named.is_empty()
    }

    pub fn provider(&self, controller: Controller) -> Option<Provider<'_>> {
        self.provider_named(controller.name())
    }

    /// A limit this host cannot enforce is an error, never a no-op.
    pub fn check(&self, limits: &Limits) -> Result<()> {
        for knob in limits.set_knobs() {
            let controller = knob.controller();
            match self.provider(controller) {
                None => {
                    return Err(Error::host(
                        knob.option(),
                        io::Error::other(format!(
                            "this host has no {} controller (neither in its cgroup v2 \
                             hierarchy nor as a v1 one): the limit cannot be enforced",
                            controller.name()
                        )),
                    ));
                }
                Some(Provider::V1(h)) if knob == Knob::Swap => {
                    if !h.mount.join("memory.memsw.limit_in_bytes").exists() {
                        return Err(Error::host(
                            "--swap",
                            io::Error::other(
                                "this host does not account swap (no memory.memsw.limit_in_bytes: \
                                 boot it with swapaccount=1)",
                            ),
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// True when some controller of the limits is a v1 hierarchy here.
    pub fn needs_v1(&self, limits: &Limits) -> bool {
        limits
            .set_knobs()
            .iter()
            .any(|k| matches!(self.provider(k.controller()), Some(Provider::V1(_))))
    }

    /// Container `name`'s cgroups in the v1 hierarchies of the limits' controllers (none on
    /// a pure v2 host).
    pub fn v1_dirs(&self, name: &str) -> Vec<V1Dir> {
        self.v1_dirs_where(|h| h.mount.join(&h.own).join(cgroups::name_for(name)))
    }

    /// The cgroups at `path` (an OCI bundle's `cgroupsPath`) in the v1 hierarchies of the
    /// limits' controllers: relative to each hierarchy's root, or with `below_own`, to the
    /// launcher's own cgroup there (runc's reading of a relative path).
    pub fn v1_dirs_at(&self, path: &Path, below_own: bool) -> Vec<V1Dir> {
        self.v1_dirs_where(|h| {
            if below_own {
                h.mount.join(&h.own).join(path)
            } else {
                h.mount.join(path)
            }
        })
    }

    /// One cgroup per v1 hierarchy that provides a controller of the limits, where
    /// `place` puts it.
    fn v1_dirs_where(&self, place: impl Fn(&V1Hierarchy) -> PathBuf) -> Vec<V1Dir> {
        let mut dirs: Vec<V1Dir> = Vec::new();
        for controller in Controller::ALL {
            if let Some(Provider::V1(h)) = self.provider(controller) {
                if !dirs.iter().any(|d| d.controllers == h.controllers) {
                    dirs.push(V1Dir {
                        controllers: h.controllers.clone(),
                        path: place(h),
                    });
                }
            }
        }
        dirs
    }

    /// Enables the controllers named (`memory`, `cpuset`, ...) that the v2 hierarchy
    /// provides in the `cgroup.subtree_control` of the v2 root and of every cgroup on the
    /// way down to `path` (relative to the root), so that the cgroup at `path` has their
    /// files. A cgroup on the way that is not there yet is made (a caller's parent, such
    /// as podman's `libpod_parent`, as runc makes it), each before its controllers are
    /// enabled, so that it gets them from its parent.
    pub fn enable_v2_down_to(&self, path: &Path, controllers: &[&str]) -> Result<()> {
        let mut dir = self.v2.clone();
        self.enable_v2_in(&dir, controllers)?;
        let parts: Vec<_> = path.components().collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            dir.push(part);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::host(format!("create cgroup {}", dir.display()), e)),
            }
            self.enable_v2_in(&dir, controllers)?;
        }
        Ok(())
    }

    /// Enables, in the v2 root's `cgroup.subtree_control`, the controllers of `knobs` that
    /// the v2 hierarchy provides, so that the container's cgroup has their files.
    pub fn enable_v2(&self, knobs: &[Knob]) -> Result<()> {
        let names: Vec<&str> = knobs.iter().map(|k| k.controller().name()).collect();
        self.enable_v2_in(&self.v2, &names)
    }

    /// The hierarchy that provides the controller named `name` (`cpuset`, say, which
    /// the limits do not use), if any.
    pub fn provider_named(&self, name: &str) -> Option<Provider<'_>> {
        if self.v2_controllers.iter().any(|c| c == name) {
            return Some(Provider::V2);
        }
        self.v1
            .iter()
            .find(|h| h.controllers.split(',').any(|c| c == name))
            .map(Provider::V1)
    }

    /// The cgroup at `path` in the v1 hierarchy of the controller named `name`, as
    /// [`Host::v1_dirs_at`] places it; None where v2 provides it, or nothing does.
    pub fn v1_dir_named(&self, name: &str, path: &Path, below_own: bool) -> Option<V1Dir> {
        match self.provider_named(name)? {
            Provider::V2 => None,
            Provider::V1(h) => Some(V1Dir {
                controllers: h.controllers.clone(),
                path: if below_own {
                    h.mount.join(&h.own).join(path)
                } else {
                    h.mount.join(path)
                },
            }),
        }
    }

    fn enable_v2_in(&self, dir: &Path, controllers: &[&str]) -> Result<()> {
        let file = dir.join("cgroup.subtree_control");
        let enabled = read(&file).unwrap_or_default();
        let mut wanted: Vec<&str> = Vec::new();
        for &name in controllers {
            if self.provider_named(name) == Some(Provider::V2)
                && !enabled.split_whitespace().any(|c| c == name)
                && !wanted.contains(&name)
            {
                wanted.push(name);
            }
        }
        for name in wanted {
            fs::write(&file, format!("+{name}")).map_err(|e| {
                Error::host(
                    format!("enable the {name} controller in {}", file.display()),
                    e,
                )
            })?;
        }
        Ok(())
    }
}

/// Writes `text` to `dir/file` for `knob`'s option.
fn write_limit(knob: Knob, dir: &Path, file: &str, text: &str) -> Result<()> {
    let path = dir.join(file);
    fs::write(&path, text).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::host(
            knob.option(),
            io::Error::other(format!(
                "this host has no {} (its controller is not enabled there)",
                path.display()
            )),
        ),
        _ => Error::host(
            format!("{}: write {text} to {}", knob.option(), path.display()),
            e,
        ),
    })
}

/// Writes `knobs` of `limits` into the container's cgroups: `v2` (its `cradle.NAME`), and
/// the `v1` ones that provide a controller the v2 hierarchy does not.
pub fn apply(host: &Host, v2: &Path, v1: &[V1Dir], limits: &Limits, knobs: &[Knob]) -> Result<()> {
    host.enable_v2(knobs)?;
    let mut memory_done = false;
    for &knob in knobs {
        let controller = knob.controller();
        match host.provider(controller) {
            Some(Provider::V2) => {
                let (file, text) = limits.v2_file(knob);
                write_limit(knob, v2, file, &text)?;
            }
            Some(Provider::V1(_)) => {
                // memory and swap are written together
                if controller == Controller::Memory && std::mem::replace(&mut memory_done, true) {
                    continue;
                }
                let Some(dir) = v1.iter().find(|d| d.has(controller)) else {
                    return Err(Error::host(
                        knob.option(),
                        io::Error::other("the container has no cgroup in its v1 hierarchy"),
                    ));
                };
                let memsw = dir.path.join("memory.memsw.limit_in_bytes").exists();
                for (file, text) in limits.v1_files(knob, memsw) {
                    write_limit(knob, &dir.path, file, &text)?;
                }
            }
            None => host.check(limits)?,
        }
    }
    Ok(())
}

/// Creates the container's v1 cgroups, owned by the host's root (the guest never writes
/// there). One left behind by a launcher that was killed is made anew, with no limit of
/// its own left, unless a process is still in it.
pub fn create_v1(dirs: &[V1Dir]) -> Result<()> {
    for dir in dirs {
        // an OCI bundle's cgroupsPath may name cgroups below ones that do not exist yet
        if let Some(parent) = dir.path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::host(format!("create cgroup {}", parent.display()), e))?;
        }
        let made = fs::create_dir(&dir.path).or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                fs::remove_dir(&dir.path).and_then(|()| fs::create_dir(&dir.path))
            }
            _ => Err(e),
        });
        made.map_err(|e| Error::host(format!("create cgroup {}", dir.path.display()), e))?;
    }
    Ok(())
}

/// Creates those of the container's v1 cgroups that do not exist yet.
pub fn ensure_v1(dirs: &[V1Dir]) -> Result<()> {
    for dir in dirs {
        match fs::create_dir(&dir.path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(Error::host(
                    format!("create cgroup {}", dir.path.display()),
                    e,
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes the container's v1 cgroups once no process is in them (an exiting task may
/// keep one busy for a moment: EBUSY is tried again for up to a second).
pub fn remove_v1(dirs: &[V1Dir]) {
    for dir in dirs {
        for attempt in 0.. {
            // with what the container made below it (an OCI system container's systemd
            // keeps its tree in the `name=systemd` hierarchy)
            match cgroups::remove_tree(&dir.path) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 100 => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    log::warn!("cannot remove cgroup {}: {e}", dir.path.display());
                    break;
                }
            }
        }
    }
}

/// A cgroup directory, for a walk of its tree (`cgroups::tree`).
fn open_tree_dir(dir: &Path) -> Option<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    nix::fcntl::open(dir, flags, Mode::empty()).ok()
}

/// Every process (pid) in the v2 cgroup `dir` and below.
pub fn processes_below(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(fd) = open_tree_dir(dir) {
        let _ = cgroups::tree::visit(fd.as_fd(), &mut |cgroup| {
            if let Ok(text) = cgroups::tree::read(cgroup, c"cgroup.procs") {
                found.extend(text.lines().map(str::to_owned));
            }
        });
    }
    found
}

/// Moves every process of the container (its v2 cgroup `v2`, and below) into its v1
/// cgroups `v1`, for a limit given to a running guest that had none (`cradle set`). A
/// process may fork while this runs: its child is born where the parent was, so passes
/// are made until one finds nothing left to move.
pub fn migrate(v2: &Path, v1: &[V1Dir]) -> Result<()> {
    for _ in 0..100 {
        let mut moved = false;
        for dir in v1 {
            let procs = dir.path.join("cgroup.procs");
            let inside: BTreeSet<String> = read(&procs)
                .map(|t| t.lines().map(str::to_owned).collect())
                .unwrap_or_default();
            for pid in processes_below(v2) {
                if inside.contains(&pid) {
                    continue;
                }
                match fs::write(&procs, &pid) {
                    Ok(()) => moved = true,
                    // it ended meanwhile
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => {
                        return Err(Error::host(format!("move {pid} to {}", procs.display()), e));
                    }
                }
            }
        }
        if !moved {
            return Ok(());
        }
    }
    Err(Error::host(
        format!("move the processes of {} to their v1 cgroups", v2.display()),
        io::Error::other("they kept forking faster than they could be moved"),
    ))
}

/// What a container uses, from whichever files this host has; `None` where it has none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Bytes of memory now (`memory.current`; v1 `memory.usage_in_bytes`).
    pub memory: Option<u64>,
    /// The most it used (`memory.peak`; v1 `memory.max_usage_in_bytes`).
    pub memory_peak: Option<u64>,
    /// Processes and threads now (`pids.current`, or counted in `cgroup.threads`).
    pub pids: Option<u64>,
    /// CPU time used, in seconds (`cpu.stat` `usage_usec`).
    pub cpu_seconds: Option<f64>,
    /// Processes the OOM killer killed (`memory.events` `oom_kill`; v1
    /// `memory.oom_control`).
    pub oom_kills: Option<u64>,
}

fn number(path: &Path) -> Option<u64> {
    read(path).ok()?.parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` lines).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    read(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Threads in `dir` and below.
fn count_threads(dir: &Path) -> Option<u64> {
    let fd = open_tree_dir(dir)?;
    let mut count = 0;
    cgroups::tree::visit(fd.as_fd(), &mut |cgroup| {
        if let Ok(text) = cgroups::tree::read(cgroup, c"cgroup.threads") {
            count += text.lines().count() as u64;
        }
    })
    .ok()?;
    Some(count)
}

/// The container's use, from its v2 cgroup `v2` and v1 cgroups `v1`.
pub fn usage(v2: &Path, v1: &[V1Dir]) -> Usage {
    if !v2.is_dir() {
        return Usage::default();
    }
    let v1_of = |c: Controller| {
        v1.iter()
            .find(|d| d.has(c) && d.path.is_dir())
            .map(|d| d.path.as_path())
    };
    let memory = v1_of(Controller::Memory);
    let either = |v2_file: &str, v1_file: &str| {
        number(&v2.join(v2_file)).or_else(|| memory.and_then(|m| number(&m.join(v1_file))))
    };
    Usage {
        memory: either("memory.current", "memory.usage_in_bytes"),
        memory_peak: either("memory.peak", "memory.max_usage_in_bytes"),
        pids: number(&v2.join("pids.current"))
            .or_else(|| v1_of(Controller::Pids).and_then(|p| number(&p.join("pids.current"))))
            .or_else(|| count_threads(v2)),
        cpu_seconds: keyed(&v2.join("cpu.stat"), "usage_usec").map(|us| us as f64 / 1e6),
        oom_kills: keyed(&v2.join("memory.events"), "oom_kill")
            .or_else(|| memory.and_then(|m| keyed(&m.join("memory.oom_control"), "oom_kill"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // as these machines show them
    const MOUNTINFO: &str = "\
35 25 0:30 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
36 35 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
37 35 0:32 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
38 35 0:33 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
39 35 0:34 / /sys/fs/cgroup/pids rw,relatime shared:13 - cgroup cgroup rw,pids
40 35 0:35 / /sys/fs/cgroup/systemd rw,relatime shared:14 - cgroup cgroup rw,name=systemd
41 35 0:36 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw
";
    const CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/outer/job
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn the_recorded_v1_cgroups_answer_without_the_mount_table() {
        let memory = V1Dir {
            controllers: "memory".into(),
            path: "/sys/fs/cgroup/memory/outer/job/cradle.web1".into(),
        };
        let cpu = V1Dir {
            controllers: "cpu".into(),
            path: "/sys/fs/cgroup/cpu/cradle.web1".into(),
        };
        let known = [memory.clone(), cpu.clone()];
        let of = |text: &str| v1_cgroups_of(text, "cradle.web1", &known).unwrap();
        // no v1 line names the container: none, whatever is recorded
        assert_eq!(of(CGROUP), []);
        assert_eq!(of("1:cpu:/\n0::/cradle.web1\n"), []);
        assert_eq!(of("4:memory:/outer/cradle.web10\n"), []);
        // every line that does is recorded: the recorded directories
        assert_eq!(
            of("4:memory:/outer/job/cradle.web1\n1:cpu:/cradle.web1\n0::/cradle.web1/guest\n"),
            [
                (memory.controllers.clone(), memory.path.clone()),
                (cpu.controllers.clone(), cpu.path.clone()),
            ]
        );
        // a line the record does not match (another place in the hierarchy) is not
        // answered from it: the mount table (this process's) is read, and gives
        // another directory or none
        assert!(
            !of("4:memory:/elsewhere/cradle.web1\n")
                .iter()
                .any(|(_, path)| *path == memory.path)
        );
    }

    #[test]
    fn v1_hierarchies_and_our_place_in_them() {
        let found = v1_hierarchies(MOUNTINFO, CGROUP);
        let names: Vec<&str> = found.iter().map(|h| h.controllers.as_str()).collect();
        assert_eq!(names, ["cpu", "cpuacct", "memory", "pids"]);
        let memory = &found[2];
        assert_eq!(memory.mount, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(memory.own, Path::new("outer/job"));
        let host = Host {
            v2: "/sys/fs/cgroup/unified".into(),
            v2_controllers: vec![],
            v1: found,
            named: named_hierarchies(MOUNTINFO, CGROUP),
        };
        // every hierarchy, the named one too, for a container that mounts the tree
        let every: Vec<(String, String)> = host
            .every_v1_dir_at(Path::new("c/x"), true)
            .into_iter()
            .map(|(d, name)| (d.path.to_string_lossy().into_owned(), name))
            .collect();
        assert_eq!(
            every,
            [
                ("/sys/fs/cgroup/cpu/c/x".into(), "cpu".into()),
                ("/sys/fs/cgroup/cpuacct/c/x".into(), "cpuacct".into()),
                (
                    "/sys/fs/cgroup/memory/outer/job/c/x".into(),
                    "memory".into()
                ),
                ("/sys/fs/cgroup/pids/c/x".into(), "pids".into()),
                ("/sys/fs/cgroup/systemd/c/x".into(), "systemd".into()),
            ]
        );
        assert!(!host.is_pure_v2());
        let dirs = host.v1_dirs("web1");
        assert_eq!(
            dirs.iter().map(|d| d.path.clone()).collect::<Vec<_>>(),
            [
                PathBuf::from("/sys/fs/cgroup/memory/outer/job/cradle.web1"),
                PathBuf::from("/sys/fs/cgroup/pids/cradle.web1"),
                PathBuf::from("/sys/fs/cgroup/cpu/cradle.web1"),
            ]
        );
        assert!(host.needs_v1(&Limits {
            pids: Some(10),
            ..Limits::default()
        }));
        assert!(!host.needs_v1(&Limits::default()));
    }

    #[test]
    fn co_mounted_controllers_are_one_hierarchy() {
        let mountinfo =
            "36 35 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let found = v1_hierarchies(mountinfo, "3:cpu,cpuacct:/system.slice\n0::/\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].controllers, "cpu,cpuacct");
        assert!(found[0].controllers.split(',').any(|c| c == "cpu"));
    }

    #[test]
    fn a_pure_v2_host_provides_everything_in_v2_and_a_missing_controller_is_an_error() {
        let host = Host {
            v2: "/sys/fs/cgroup".into(),
            v2_controllers: vec!["memory".into(), "pids".into()],
            v1: vec![],
            named: vec![],
        };
        assert!(host.is_pure_v2());
        assert_eq!(host.provider(Controller::Memory), Some(Provider::V2));
        assert!(host.v1_dirs("x").is_empty());
        let cpus = Limits {
            cpus: Some(1.0),
            ..Limits::default()
        };
        let err = host.check(&cpus).unwrap_err();
        assert_eq!(err.code() as u8, 7);
        let text = err.to_string();
        assert!(
            text.starts_with("--cpus: ") && text.contains("cpu controller"),
            "{text}"
        );
        assert!(
            host.check(&Limits {
                memory: Some(1 << 30),
                pids: Some(5),
                ..Limits::default()
            })
            .is_ok()
        );
    }
}
