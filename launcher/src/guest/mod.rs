//! A running guest, reached from outside: `cradle exec`, `cradle stop`, and the launcher's
//! own graceful halt. Everything goes through a pidfd of the guest init, checked to be the
//! process the state directory names, so a recycled pid can never be acted on.
//!
//! Nothing of the host enters the guest, and nothing of the host is within the guest's
//! reach on the way in (the shim's `enter.rs` has the order of the steps). The launcher
//! runs the shim (its sealed memfd copy, `cradle-shim --enter`) from a child that never
//! leaves the host's PID namespace, born in the container's `shim` leaf, a cgroup the guest
//! cannot see or freeze, with the guest's seccomp filter (installed by our child before
//! it execs the shim), the init's pidfd, and for a command a detached mount of the init's
//! cgroup directory (a clone of that directory alone: `..` at its root stays there). The
//! shim makes itself undumpable, takes the guest's root's credentials and capabilities,
//! and only then clones the command into the guest's PID namespace and cgroup. The
//! launcher's own binary is never in the guest's PID namespace.

pub mod state;
pub mod sweep;

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::Duration;

use cradle_common::guest::CGROUP_SHIM_DIR;
use cradle_common::outcome::Status;
use nix::errno::Errno;
use nix::fcntl::AT_FDCWD;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::cgroups;
use crate::cgroups::v1::{self, V1Dir};
use crate::config;
use crate::console::relay::CommandSide;
use crate::container::plan::Step;
use crate::container::spawn::{self, Container, ShimBinary, Spawn};
use crate::error::{Error, Result};
use crate::guest::state::Observed;
use crate::process::child::Child;
use crate::security::Security;
use crate::sys::{self, Deadline, SingleThreaded};

/// How long the process that powers a guest off may take to start (it is out of the
/// guest's reach: this bounds only a host too busy to run it).
const POWER_OFF_START: Duration = Duration::from_secs(10);
/// How long the guest's init may take to end once its power-off killed the caller.
const POWER_OFF_END: Duration = Duration::from_secs(10);

/// How long a halt or reboot request that failed waits before it is made again.
const REQUEST_RETRY: Duration = Duration::from_secs(1);

/// The commands that ask a guest init to halt: the first that exists (OpenVZ's halt mode:
/// `halt`, else `init 0`).
pub const HALT: &[&[&str]] = &[&["halt"], &["init", "0"]];
/// The command that asks a guest init to reboot.
pub const REBOOT: &[&[&str]] = &[&["reboot"]];
/// How a helper ends when none of its commands exists in the guest.
pub const NO_COMMAND: u8 = 127;

/// PATH for commands run in the guest when the guest's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Guest {
    name: String,
    init: Pid,
    pidfd: OwnedFd,
    /// The guest init's cgroup directory, where what we start in the guest is born: a
    /// detached mount of that directory alone.
    cgroup: OwnedFd,
    /// The container's `shim` leaf, where the shim that enters the guest is born.
    shim_leaf: OwnedFd,
    /// Whether the guest has a user namespace of its own (the shim then joins it).
    userns: bool,
    env: Vec<String>,
    security: Security,
    /// The container's v1 cgroups as its launcher recorded them (`Info::cgroups_v1`).
    v1: Vec<V1Dir>,
    /// The guest init's /proc/PID/cgroup, as [`Guest::open`] read it.
    proc_cgroup: String,
}

/// The inode of the namespace file at `path` (`/proc/PID/ns/net`): two are the same
/// namespace when their inodes are.
pub fn ns_inode(path: &str) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

/// The cgroup v2 path in `proc_cgroup` (a process's /proc/PID/cgroup), when it is
/// container `name`'s cgroup or below it.
fn container_cgroup_in(proc_cgroup: &str, name: &str) -> Option<String> {
    let wanted = format!("/{}", cgroups::name_for(name));
    let below = format!("{wanted}/");
    proc_cgroup
        .lines()
        .filter_map(|line| line.strip_prefix("0::"))
        .find(|path| *path == wanted || path.starts_with(&below))
        .map(str::to_owned)
}

/// What to run in the guest.
pub enum Enter<'a> {
    /// A command with the guest's environment plus `env`, on `streams` (a relay's, see
    /// `relay`), or on /dev/null (`None`: the halt helpers).
    Command {
        argv: &'a [String],
        env: &'a [String],
        streams: Option<CommandSide>,
    },
    /// reboot(2) POWER_OFF in the guest's PID namespace (OpenVZ's kill mode).
    PowerOff,
}

impl Guest {
    /// The host uid of the guest's root, when it has a user namespace (from its init's
    /// `uid_map`, whose first line maps uid 0).
    pub fn root_uid(&self) -> Option<u32> {
        if !self.userns {
            return None;
        }
        let map = fs::read_to_string(format!("/proc/{}/uid_map", self.init)).ok()?;
        let mut fields = map.lines().next()?.split_whitespace();
        (fields.next()? == "0").then_some(())?;
        fields.next()?.parse().ok()
    }

    /// The guest init's pid (in our PID namespace).
    pub fn init(&self) -> Pid {
        self.init
    }

    /// The guest init `init` of container `name`, after checking that it is one: in the
    /// container's cgroup, in a PID namespace other than ours, and still that process.
    /// `v1` are the container's v1 cgroups as its launcher recorded them.
    pub fn open(
        name: &str,
        init: Pid,
        env: Vec<String>,
        security: Security,
        v1: Vec<V1Dir>,
    ) -> Result<Self> {
        let gone = || Error::NotRunning(name.to_owned());
        let pidfd = sys::pidfd_open(init).map_err(|_| gone())?;
        let other_ns = ns_inode(&format!("/proc/{init}/ns/pid")) != ns_inode("/proc/self/ns/pid");
        let proc_cgroup = fs::read_to_string(format!("/proc/{init}/cgroup")).map_err(|_| gone())?;
        let cgroup = container_cgroup_in(&proc_cgroup, name)
            .filter(|_| other_ns)
            .ok_or_else(gone)?;
        let userns = ns_inode(&format!("/proc/{init}/ns/user")) != ns_inode("/proc/self/ns/user");
        // still alive now, so the checks above were about this very process
        sys::pidfd_send_signal(pidfd.as_fd(), 0).map_err(|_| gone())?;
        let root = cgroups::v2_root().ok_or_else(gone)?;
        let dir = root.join(cgroup.trim_start_matches('/'));
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| Error::host("cgroup path", std::io::Error::other("NUL byte")))?;
        let cgroup = sys::open_tree(AT_FDCWD, &path, libc::OPEN_TREE_CLONE)
            .map_err(|e| Error::host(format!("open cgroup {}", dir.display()), e))?;
        let leaf = root.join(cgroups::name_for(name)).join(CGROUP_SHIM_DIR);
        let shim_leaf = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&leaf)
            .map_err(|e| Error::host(format!("open cgroup {}", leaf.display()), e))?;
        Ok(Guest {
            name: name.to_owned(),
            init,
            pidfd,
            cgroup,
            shim_leaf: shim_leaf.into(),
            userns,
            env,
            security,
            v1,
            proc_cgroup,
        })
    }

    /// The running guest of `name`, waiting up to `wait` while it is still booting.
    pub fn find(state: &Observed, name: &str, wait: Duration) -> Result<Self> {
        let deadline = Deadline::after(wait);
        loop {
            state.wait_until(deadline.left(), |s| s.running().is_some() || !s.is_alive())?;
            if !state.is_alive() {
                return Err(Error::NotRunning(name.to_owned()));
            }
            let Some(running) = state.running() else {
                return Err(Error::Timeout(format!(
                    "{name} has no running guest init (still booting?) after {}s",
                    wait.as_secs()
                )));
            };
            // an older launcher's record, or none: the mount table says
            let v1 = state.info().map(|i| i.cgroups_v1).unwrap_or_default();
            match Guest::open(name, running.init, state.env()?, state.security()?, v1) {
                // the guest init may have just ended (a reboot): look again
                Err(Error::NotRunning(_)) if !deadline.passed() => {
                    state
                        .wait_until(Duration::from_millis(100), |s| s.running() != Some(running))?;
                }
                other => return other,
            }
        }
    }

    /// The `tasks` of the guest init's cgroups in a hybrid host's v1 hierarchies, open for
    /// writing, by hierarchy: the container's own (`cradle.NAME`), which a guest with
    /// limits has (why `tasks`, see `cgroups::v1`).
    fn v1_tasks(&self) -> Result<Vec<(String, OwnedFd)>> {
        let mut tasks = Vec::new();
        let name = cgroups::name_for(&self.name);
        for (hierarchy, dir) in v1::v1_cgroups_of(&self.proc_cgroup, &name, &self.v1)? {
            tasks.push((hierarchy, v1::open_to_join(&dir)?));
        }
        Ok(tasks)
    }

    /// Starts `what` in the guest through the shim (see the module documentation). The
    /// returned container is the shim, in the host's PID namespace; it exits with the
    /// command's status.
    ///
    /// A command is born in the guest init's cgroup, and the shim that starts it in the
    /// container's `shim` leaf (and in the guest's v1 cgroups, on a hybrid host), so both
    /// are under the container's limits.
    /// A power-off is not: the process that calls reboot(2) in the guest's PID namespace is
    /// born in ours, so that it needs no room under the guest's `--pids` or `--memory`
    /// (a guest in a fork storm has none) and the power-off always works.
    pub fn enter(
        &self,
        threads: &SingleThreaded,
        shim: &ShimBinary,
        what: Enter,
    ) -> Result<Container> {
        let fd = |fd: &OwnedFd| fd.as_raw_fd().to_string();
        let mut args = vec!["--enter".to_owned(), fd(&self.pidfd)];
        if self.userns {
            args.push("--userns".to_owned());
        }
        let mut keep = vec![self.pidfd.as_fd()];
        let mut steps = Vec::new();
        let mut cgroup = None;
        if let Enter::Command { .. } = what {
            cgroup = Some(self.shim_leaf.as_fd());
            args.extend(["--cgroup-fd".to_owned(), fd(&self.cgroup)]);
            keep.push(self.cgroup.as_fd());
            // on a hybrid host, the shim joins the guest's v1 cgroups before it clones the
            // command, which is then born there (and refused at --pids, as on a v2 host)
            for (hierarchy, tasks) in self.v1_tasks()? {
                steps.push(Step::JoinCgroup { hierarchy, tasks });
            }
        }
        args.extend([
            "--caps".to_owned(),
            format!("{:x}", self.security.caps.bits()),
        ]);
        let env = match what {
            Enter::Command { argv, env, streams } => {
                match streams {
                    Some(CommandSide { fds, tty }) => {
                        steps.push(Step::Streams(fds));
                        if tty {
                            args.push("--tty".to_owned());
                        }
                    }
                    None => steps.push(Step::Stdio(c"/dev/null".into())),
                }
                args.push("--".to_owned());
                args.extend_from_slice(argv);
                let mut all = config::merge_env(&self.env, env);
                if !all.iter().any(|v| v.starts_with("PATH=")) {
                    all.push(format!("PATH={DEFAULT_PATH}"));
                }
                all
            }
            Enter::PowerOff => {
                steps.push(Step::Stdio(c"/dev/null".into()));
                args.push("--power-off".to_owned());
                Vec::new()
            }
        };
        if let Some(filter) = self.security.filter(self.userns)? {
            steps.push(Step::Seccomp(filter));
        }
        spawn::spawn(
            &Spawn {
                threads,
                shim,
                cwd: None,
                namespaces: CloneFlags::empty(),
                cgroup,
                keep: &keep,
                args: &args,
                env: &env,
                outlives_launcher: false,
            },
            steps,
        )
    }

    /// Asks the guest init to halt or reboot: runs the first of `candidates` that exists in
    /// the guest, from a helper process of ours (on the host) that enters it through the
    /// shim. A request that fails is made again every second (an init that is still
    /// starting may not take it yet: systemd before its control socket is up) until it
    /// succeeds or the helper is dropped. The helper exits 0 once a request succeeded,
    /// [`NO_COMMAND`] when no candidate exists, 125 when it could not enter.
    pub fn spawn_helper(
        &self,
        threads: &SingleThreaded,
        shim: &ShimBinary,
        candidates: &[&[&str]],
    ) -> Result<Helper> {
        let child = Child::fork(threads, || {
            loop {
                // the first candidate that exists, and how its run went
                let tried = candidates.iter().find_map(|argv| {
                    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
                    let what = Enter::Command {
                        argv: &argv,
                        env: &[],
                        streams: None,
                    };
                    match self.enter(threads, shim, what).map(|mut c| c.wait()) {
                        Ok(Err(Error::Exec {
                            errno: Errno::ENOENT,
                            ..
                        })) => None,
                        tried => Some(tried),
                    }
                });
                match tried {
                    None => return NO_COMMAND,
                    Some(Ok(Ok(Status::Exited(0)))) => return 0,
                    Some(Ok(Ok(_))) => std::thread::sleep(REQUEST_RETRY),
                    // no room in the guest for the request now (its --pids or --memory
                    // is used up): another process may end
                    Some(Ok(Err(Error::Setup {
                        errno: Errno::EAGAIN | Errno::ENOMEM,
                        ..
                    }))) => std::thread::sleep(REQUEST_RETRY),
                    Some(_) => return 125,
                }
            }
        })
        .map_err(|e| Error::host("fork a helper", e))?;
        Ok(Helper { child })
    }

    /// Powers the guest off at once, as OpenVZ's kill mode does: reboot(2) POWER_OFF from
    /// inside the guest's PID namespace, which makes the kernel kill the guest init (its
    /// parent sees it killed by SIGINT, a halt).
    pub fn power_off(&self, threads: &SingleThreaded, shim: &ShimBinary) -> Result<()> {
        let started_by = Some(Deadline::after(POWER_OFF_START));
        match self.enter(threads, shim, Enter::PowerOff)?.supervise(
            None,
            "reboot(2)",
            started_by,
            None,
        )? {
            Status::Exited(0) => Ok(()),
            // killed by SIGKILL: the end of the namespace's init kills every process in
            // it, and on some kernels (Debian 11's 5.10) that is seen before the caller of
            // reboot(2) exits 0; what was asked happened if the init ends
            Status::Exited(137) if self.init_ends_within(POWER_OFF_END) => Ok(()),
            other => Err(Error::host(
                "power off the guest",
                std::io::Error::other(format!(
                    "reboot(2) in its PID namespace ended with {other:?}"
                )),
            )),
        }
    }

    /// Whether the guest's init has ended, or ends within `wait`.
    fn init_ends_within(&self, wait: Duration) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let timeout = Deadline::after(wait).poll_timeout();
        sys::poll_ready(&mut fds, timeout).is_ok_and(|ready| ready[0])
    }
}

/// A helper process asking the guest to halt or reboot.
pub struct Helper {
    child: Child,
}

impl Helper {
    /// Readable when the helper has ended.
    pub fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.child.pidfd()
    }

    /// The helper's status once it has ended.
    pub fn try_wait(&mut self) -> Option<Status> {
        self.child.try_wait()
    }

    /// True when the helper found none of its commands in the guest. It learns that at
    /// once, while a request being retried keeps it running: so this waits no longer than
    /// one retry period, nor than `limit`.
    pub fn found_no_command(&mut self, limit: Duration) -> bool {
        self.child.wait_for(limit.min(REQUEST_RETRY)) == Some(Status::Exited(NO_COMMAND))
    }
}
