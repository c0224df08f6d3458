//! `exec`: another process in a running container, as runc's `exec` makes it (what
//! podman's `exec` and containerd's exec'd tasks run). Its process is the container's
//! spec's, changed by the options, or `--process FILE` whole.
//!
//! We make ourselves undumpable first (the child is born so, and stays so until it execs:
//! a process of the container cannot ptrace it, read its memory or reach its root while
//! it is still the host's), join the container's PID namespace (for the child), and clone
//! the child into the container's cgroup. The child joins every other namespace of the
//! container's first process at once (setns with its pidfd), and then takes the
//! process's rlimits, terminal, bounding set, user, capabilities and directory, and execs
//! `cradle-shim`, which runs the command as its child, reaps and forwards signals. With
//! `--detach` we return once the command runs, the shim re-parented to our caller;
//! otherwise we wait for it and exit with its status.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use cradle_common::outcome::Status;
use cradle_core::container::plan::Step;
use cradle_core::container::spawn::{self, Report, ShimBinary, Spawn};
use cradle_core::error::{Error, Result};
use cradle_core::guest::ns_inode;
use cradle_core::process::signals::Signals;
use cradle_core::sys::{self, SingleThreaded};
use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use crate::commands;
use crate::create::{self, write_pid_file};
use crate::spec::{self, Process};
use crate::state::{Root, Status as State};

/// What `exec` is given.
pub struct Options<'a> {
    pub id: &'a str,
    pub process_file: Option<&'a Path>,
    pub args: &'a [String],
    pub tty: bool,
    pub console_socket: Option<&'a Path>,
    pub pid_file: Option<&'a Path>,
    pub detach: bool,
    pub user: Option<&'a str>,
    pub env: &'a [String],
    pub cwd: Option<&'a str>,
    pub caps: &'a [String],
    pub no_new_privs: bool,
    pub additional_gids: &'a [u32],
}

/// The namespaces `exec` (and a hook in the container) joins, with their names under
/// /proc/PID/ns; the PID namespace is joined apart (only children are born in it).
const JOINED: [(CloneFlags, &str); 6] = [
    (CloneFlags::CLONE_NEWUSER, "user"),
    (CloneFlags::CLONE_NEWNS, "mnt"),
    (CloneFlags::CLONE_NEWNET, "net"),
    (CloneFlags::CLONE_NEWIPC, "ipc"),
    (CloneFlags::CLONE_NEWUTS, "uts"),
    (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
];

/// Runs the process; its exit code (ours to exit with), 0 with `--detach`.
pub fn exec(threads: &SingleThreaded, root: &Root, opts: &Options) -> Result<u8> {
    // before anything else: the child inherits it (see the module's comment)
    nix::sys::prctl::set_dumpable(false).map_err(|e| Error::host("PR_SET_DUMPABLE", e))?;
    let record = commands::load(root, opts.id)?;
    match record.status(&root.dir(opts.id)) {
        State::Running => {}
        other => {
            return Err(Error::Conflict(format!(
                "container {} is {}: exec needs it running",
                opts.id,
                other.name()
            )));
        }
    }
    // the container's spec: the process to change (unless --process gives one whole), and
    // the seccomp profile every process of the container gets
    let mut spec = spec::load(&record.bundle).map_err(Error::Usage)?;
    let base = spec.process.take().expect("checked by load");
    let seccomp = spec.linux.take().and_then(|linux| linux.seccomp);
    let process = process_of(base, opts)?;
    // in a system container, its init's namespaces (its PID and mount ones are below the
    // shim's, and change at each reboot)
    let pid = Pid::from_raw(system_init(record.pid).unwrap_or(record.pid));
    let pidfd = sys::pidfd_open(pid)
        .map_err(|_| Error::Missing(format!("container {} is not running", opts.id)))?;
    if !record.alive() {
        return Err(Error::Missing(format!(
            "container {} is not running",
            opts.id
        )));
    }
    let (flags, other_pid_ns) = namespaces_of(pid.as_raw());
    if other_pid_ns {
        setns(&pidfd, CloneFlags::CLONE_NEWPID)
            .map_err(|e| Error::setup("join the container's PID namespace", e))?;
    }
    let cgroup = open(
        &record.cgroup,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::host(format!("open cgroup {}", record.cgroup.display()), e))?;
    let mut steps = vec![Step::NewSession];
    if !flags.is_empty() {
        steps.push(Step::JoinProcess {
            pidfd: pidfd
                .try_clone()
                .map_err(|e| Error::host("duplicate a pidfd", e))?,
            flags,
        });
    }
    if let Some(root) = root_to_enter(pid.as_raw(), flags)? {
        steps.push(Step::EnterRoot(root));
    }
    let made = create::process_steps(&process, opts.console_socket, seccomp.as_ref(), true)?;
    steps.extend(made.steps);
    steps.extend(made.late_filter);
    let shim = ShimBinary::sealed(None)?;
    let mut args = vec!["-s".to_owned(), "--".to_owned()];
    args.extend(process.args.iter().cloned());
    let signals = if opts.detach {
        None
    } else {
        Some(Signals::catch(&[
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
        ])?)
    };
    let mut container = spawn::spawn(
        &Spawn {
            threads,
            shim: &shim,
            cwd: None,
            namespaces: CloneFlags::empty(),
            cgroup: Some(cgroup.as_fd()),
            keep: &[],
            args: &args,
            env: &process.env,
            outlives_launcher: opts.detach,
        },
        steps,
    )?;
    // the filter's listener (SCMP_ACT_NOTIFY), to the seccomp agent, as runc hands it
    // over for a process exec adds: sent before the process goes on, or never if it failed
    if let (Some(socket), Some(given)) = (&made.listener, &seccomp) {
        let pid = container.handoff_ids().0.as_raw();
        crate::seccomp::pass_listener(socket, given, pid, record.state_json(State::Running))?;
    }
    if opts.detach {
        // the command runs once the report pipe closes without a record
        loop {
            let mut fds = vec![nix::poll::PollFd::new(
                container.errpipe().expect("just spawned"),
                nix::poll::PollFlags::POLLIN,
            )];
            sys::poll_ready(&mut fds, nix::poll::PollTimeout::NONE)
                .map_err(|e| Error::host("poll", e))?;
            drop(fds);
            match container.read_report() {
                Report::Pending => continue,
                Report::Started => break,
                Report::Failed(failure) => {
                    return Err(container.failure_error(failure, &process.args[0]));
                }
            }
        }
        let pid = container.release().as_raw();
        if let Some(path) = opts.pid_file {
            write_pid_file(path, pid)?;
        }
        return Ok(0);
    }
    if let Some(path) = opts.pid_file {
        let (pid, _) = container.handoff_ids();
        write_pid_file(path, pid.as_raw())?;
    }
    let mut signals = signals;
    let status = container.supervise(signals.as_mut(), &process.args[0], None, None)?;
    Ok(match status {
        Status::Exited(code) => code,
        Status::Signaled(sig) => 128u8.wrapping_add(sig as u8),
    })
}

/// The root directory of the container's process `pid`, open, when the namespaces it
/// has of its own (`flags`, [`namespaces_of`]) leave out the mount namespace: a container
/// whose spec had none is a chroot in ours, which a process joining it enters.
pub fn root_to_enter(pid: i32, flags: CloneFlags) -> Result<Option<OwnedFd>> {
    if flags.contains(CloneFlags::CLONE_NEWNS) {
        return Ok(None);
    }
    let path = format!("/proc/{pid}/root");
    open(
        path.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(Some)
    .map_err(|e| Error::host(format!("open {path}"), e))
}

/// The namespaces of [`JOINED`] process `pid` has of its own (a user namespace equal to
/// ours cannot be joined), and whether its PID namespace is another than ours.
pub fn namespaces_of(pid: i32) -> (CloneFlags, bool) {
    let differs = |name: &str| {
        let ours = ns_inode(&format!("/proc/self/ns/{name}"));
        let theirs = ns_inode(&format!("/proc/{pid}/ns/{name}"));
        matches!((ours, theirs), (Some(a), Some(b)) if a != b)
    };
    let flags = JOINED
        .iter()
        .filter(|(_, name)| differs(name))
        .fold(CloneFlags::empty(), |all, (flag, _)| all | *flag);
    (flags, differs("pid"))
}

/// The init a system container's shim (`shim`) booted: its child in a PID namespace of
/// its own. None for any other container.
pub fn system_init(shim: i32) -> Option<i32> {
    let shim_ns = ns_inode(&format!("/proc/{shim}/ns/pid"))?;
    let children = fs::read_to_string(format!("/proc/{shim}/task/{shim}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
        .find(|c| ns_inode(&format!("/proc/{c}/ns/pid")).is_some_and(|ns| ns != shim_ns))
}

/// The process to run: `--process FILE` whole, or the container's spec's process with
/// the options' arguments, environment, directory, user, capabilities and terminal.
fn process_of(base: Process, opts: &Options) -> Result<Process> {
    let mut process: Process = match opts.process_file {
        Some(path) => {
            let text = fs::read_to_string(path)
                .map_err(|e| Error::Usage(format!("--process {}: {e}", path.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| Error::Usage(format!("--process {}: {e}", path.display())))?
        }
        None => {
            if opts.args.is_empty() {
                return Err(Error::Usage(
                    "exec: give the command to run, or --process FILE".into(),
                ));
            }
            let mut process = base;
            process.args = opts.args.to_vec();
            process.terminal = opts.tty;
            process
        }
    };
    if opts.process_file.is_some() && process.args.is_empty() {
        return Err(Error::Usage("--process: args is empty".into()));
    }
    process.env.extend(opts.env.iter().cloned());
    if let Some(cwd) = opts.cwd {
        process.cwd = cwd.to_owned();
    }
    if process.cwd.is_empty() {
        process.cwd = "/".to_owned();
    }
    if let Some(user) = opts.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user, None),
        };
        let number = |text: &str| {
            text.parse::<u32>()
                .map_err(|_| Error::Usage(format!("--user {user:?}: give numeric ids, UID[:GID]")))
        };
        process.user.uid = number(uid)?;
        process.user.gid = gid.map(number).transpose()?.unwrap_or(0);
    }
    process
        .user
        .additional_gids
        .extend_from_slice(opts.additional_gids);
    if !opts.caps.is_empty() {
        let caps = process.capabilities.get_or_insert_with(Default::default);
        for cap in opts.caps {
            for set in [
                &mut caps.bounding,
                &mut caps.effective,
                &mut caps.permitted,
                &mut caps.inheritable,
                &mut caps.ambient,
            ] {
                if !set.contains(cap) {
                    set.push(cap.clone());
                }
            }
        }
    }
    if opts.no_new_privs {
        process.no_new_privileges = true;
    }
    if opts.tty {
        process.terminal = true;
    }
    if process.terminal && opts.console_socket.is_none() {
        return Err(Error::Usage(
            "a terminal needs --console-socket (cradle-oci gives the pty to its caller)".into(),
        ));
    }
    Ok(process)
}
