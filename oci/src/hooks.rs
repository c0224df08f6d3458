//! The spec's hooks: each gets the container's state on its standard input, runs with its
//! own arguments and environment (nothing of ours), its output discarded and its errors on
//! our standard error, and is killed after its timeout (120 s when the spec gives none).
//!
//! Where they run, as runc runs them:
//! - `prestart` and `createRuntime`: in our namespaces, once the container's namespaces
//!   and mounts are made and before it switches to its root (the setup's pause);
//! - `createContainer`: at the same pause, in the container's namespaces (its mount
//!   namespace not yet switched to its root, so the path is the host's);
//! - `startContainer`: on `start`, before the container's process runs, in its namespaces
//!   and root (the path is the container's), as the container's root;
//! - `poststart` (after `start`) and `poststop` (on `delete`): in ours, failures only
//!   logged.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use cradle_core::error::{Error, Result};
use cradle_core::process::child::Child;
use cradle_core::sys::{self, SingleThreaded};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, dup2_stdin, dup2_stdout, execve, pipe2, setresgid, setresuid, write};

use crate::spec::Hook;
use crate::state::{Record, Status};

/// Where hooks run: in our namespaces, or in those of the container's process (`pid`,
/// behind `pidfd`).
#[derive(Clone, Copy)]
pub enum Place<'a> {
    Runtime,
    Container { pid: i32, pidfd: BorrowedFd<'a> },
}

/// Runs `hooks` of `kind` in order at `place`, `state` (the spec's state JSON) on each
/// one's input; the first that fails fails the call.
pub fn run_all(
    threads: &SingleThreaded,
    kind: &str,
    hooks: &[Hook],
    state: &serde_json::Value,
    place: Place,
) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let state = serde_json::to_vec(state).expect("a JSON value");
    for (i, hook) in hooks.iter().enumerate() {
        run(threads, hook, &state, place).map_err(|e| failed(kind, i, hook, &e))?;
    }
    Ok(())
}

fn failed(kind: &str, i: usize, hook: &Hook, why: &str) -> Error {
    Error::Usage(format!("{kind} hook #{i} {}: {why}", hook.path))
}

/// The poststop hooks of the container `record`, with its state "stopped", in our
/// namespaces: each that fails is logged, and the rest run (the spec's rule).
pub fn run_poststop(threads: &SingleThreaded, record: &Record) {
    let state = serde_json::to_vec(&record.state_json(Status::Stopped)).expect("a JSON value");
    for (i, hook) in record.poststop.iter().enumerate() {
        if let Err(e) = run(threads, hook, &state, Place::Runtime) {
            log::warn!("{}", failed("poststop", i, hook, &e));
        }
    }
}

/// What a hook's process is given, made before the fork.
struct Prepared<'a> {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    input: OwnedFd,
    null: OwnedFd,
    /// The container's process and the namespaces of it to join.
    join: Option<(BorrowedFd<'a>, CloneFlags)>,
    /// The container's root, for one that shares our mount namespace.
    root: Option<OwnedFd>,
}

fn cstring(text: &str, what: &str) -> std::result::Result<CString, String> {
    CString::new(text).map_err(|_| format!("its {what} {text:?} holds a NUL byte"))
}

fn run(
    threads: &SingleThreaded,
    hook: &Hook,
    state: &[u8],
    place: Place,
) -> std::result::Result<(), String> {
    if !hook.path.starts_with('/') {
        return Err("the path is not absolute".into());
    }
    let path = cstring(&hook.path, "path")?;
    let argv = match hook.args.is_empty() {
        true => vec![path.clone()],
        false => (hook.args.iter())
            .map(|a| cstring(a, "argument"))
            .collect::<std::result::Result<_, _>>()?,
    };
    let env = (hook.env.iter())
        .map(|e| cstring(e, "variable"))
        .collect::<std::result::Result<_, _>>()?;
    let (input, feed) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let null = open(
        c"/dev/null",
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open /dev/null: {e}"))?;
    let timeout = Duration::from_secs(hook.timeout.filter(|&t| t > 0).unwrap_or(120));
    let deadline = Instant::now() + timeout;
    let mut prepared = Prepared {
        path,
        argv,
        env,
        input,
        null,
        join: None,
        root: None,
    };
    let mut child = match place {
        Place::Runtime => fork(threads, prepared)?,
        Place::Container { pid, pidfd } => {
            let (flags, other_pid_ns) = crate::exec::namespaces_of(pid);
            prepared.join = Some((pidfd, flags));
            prepared.root = crate::exec::root_to_enter(pid, flags).map_err(|e| e.to_string())?;
            if other_pid_ns {
                in_pid_namespace(pidfd, || fork(threads, prepared))?
            } else {
                fork(threads, prepared)?
            }
        }
    };
    feed_input(feed, state, &child, deadline);
    let left = deadline.saturating_duration_since(Instant::now());
    match child.wait_for(left) {
        Some(cradle_common::outcome::Status::Exited(0)) => Ok(()),
        Some(status) => Err(format!("ended with {status}")),
        None => Err(format!("timed out after {} s", timeout.as_secs())),
    }
}

/// Runs `then` with the PID namespace of the process behind `pidfd` as the one our
/// children are born in, and puts ours back after.
fn in_pid_namespace<T>(
    pidfd: BorrowedFd,
    then: impl FnOnce() -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    let ours = open(
        c"/proc/self/ns/pid",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open our PID namespace: {e}"))?;
    setns(pidfd, CloneFlags::CLONE_NEWPID)
        .map_err(|e| format!("join the container's PID namespace: {e}"))?;
    let result = then();
    // our own active namespace may always be joined again; were it not, what we fork
    // next would be born in the container's
    setns(&ours, CloneFlags::CLONE_NEWPID)
        .map_err(|e| format!("rejoin our own PID namespace: {e}"))?;
    result
}

fn fork(threads: &SingleThreaded, prepared: Prepared) -> std::result::Result<Child, String> {
    Child::fork(threads, move || {
        let error = exec(prepared);
        eprintln!("cradle-oci: hook: {error}");
        127
    })
    .map_err(|e| format!("fork: {e}"))
}

/// In the hook's process: its input and output, the container's namespaces (as its root),
/// and exec. Returns only on failure.
fn exec(prepared: Prepared) -> String {
    if let Err(e) = dup2_stdin(&prepared.input).and_then(|()| dup2_stdout(&prepared.null)) {
        return format!("standard streams: {e}");
    }
    if let Some((pidfd, flags)) = prepared.join {
        if !flags.is_empty() {
            if let Err(e) = setns(pidfd, flags) {
                return format!("join the container's namespaces: {e}");
            }
        }
        if flags.contains(CloneFlags::CLONE_NEWUSER) {
            let root = (Gid::from_raw(0), Uid::from_raw(0));
            if let Err(e) =
                setresgid(root.0, root.0, root.0).and_then(|()| setresuid(root.1, root.1, root.1))
            {
                return format!("become the container's root: {e}");
            }
        }
    }
    if let Some(root) = &prepared.root {
        if let Err(e) = cradle_core::sys::enter_root(root.as_fd()) {
            return format!("enter the container's root: {e}");
        }
    }
    let e = execve(&prepared.path, &prepared.argv, &prepared.env).unwrap_err();
    format!("exec {}: {e}", prepared.path.to_string_lossy())
}

/// Writes `state` to the hook's input and closes it; gives up when the hook ends or the
/// deadline passes (a hook need not read its input).
fn feed_input(feed: OwnedFd, state: &[u8], child: &Child, deadline: Instant) {
    if fcntl(&feed, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_err() {
        return;
    }
    let mut left = state;
    while !left.is_empty() {
        match write(&feed, left) {
            Ok(n) => left = &left[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return;
                }
                let mut fds = [
                    PollFd::new(feed.as_fd(), PollFlags::POLLOUT),
                    PollFd::new(child.pidfd(), PollFlags::POLLIN),
                ];
                let ms = remaining.as_millis().min(60_000) as u16;
                match sys::poll_ready(&mut fds, PollTimeout::from(ms)) {
                    Ok(ready) if ready[1] => return,
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
            // the hook closed its input: no error
            Err(_) => return,
        }
    }
}
