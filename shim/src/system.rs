//! System mode (`--system`): what cradle-oci runs for a container whose process is an init
//! (systemd, sysvinit, busybox's...), so that it boots, halts and reboots as a cradle
//! guest does under a runtime whose caller (podman, containerd) only sends signals.
//!
//! As in boot mode, the init is PID 1 of a nested PID namespace with a mount namespace
//! (a slave of ours, so its mounts stay in it) and a /proc of its own; it gets our
//! environment and standard streams and the command line it was given. Unlike boot mode,
//! the shim here keeps the privileges it needs to make that namespace again at each boot,
//! so the restrictions of the container's process (its bounding set, no_new_privs, its
//! seccomp filter, and the masked and read-only paths of its /proc) are taken on by the
//! init's process itself, before it execs; we are undumpable, so none of the container's
//! processes may trace us or reach our descriptors.
//!
//! - The init killed by SIGHUP (a reboot, see `cradle_common::outcome`): whatever it left
//!   is killed, and it is booted again, in place.
//! - SIGTERM, SIGPWR and SIGRTMIN+3 (what `podman stop`, containerd and Kubernetes send
//!   to stop a container, and systemd's own halt signal) halt the guest: its `halt` runs
//!   in it, or `init 0` where there is none (as `cradle stop` does), with the init's
//!   restrictions; when neither can run, the init is killed. Every other signal is passed
//!   on to the init.
//! - The init killed by SIGINT (a halt or power-off): we exit 0. The init exiting or
//!   killed otherwise: we exit with its status (128+N for signal N).

use core::ffi::c_int;

use alloc::vec::Vec;
use cradle_common::errpipe::Failure;
use cradle_common::outcome::{Outcome, Status};
use cradle_common::stage::Stage;

use crate::args::System;
use crate::command::exec_failure_code;
use crate::log::{Strerror, error, info, warning};
use crate::report::Reporter;
use crate::signals::Signals;
use crate::supervise::{self, Supervisor};
use crate::sys::{self, Errno, Fd, Pid, SigSet};

/// The container's process's restrictions, which its init (and its halt) take on.
struct Restrictions<'a> {
    how: &'a System<'a>,
    /// The seccomp filter: its flags and instructions.
    filter: Option<(u32, Vec<u8>)>,
}

impl Restrictions<'_> {
    /// In the init's (or the halt's) process: the AppArmor profile of its exec,
    /// no_new_privs, the filter, the bounding set and the capabilities. Without no_new_privs the filter goes in first, while
    /// CAP_SYS_ADMIN allows it (runc's order: it must then allow capset and prctl).
    fn apply(&self) -> Result<(), Failure> {
        let fail = |detail, e: Errno| Failure::new(Stage::Restrict, detail, e.0);
        if let Some(profile) = self.how.apparmor {
            apparmor_on_exec(profile).map_err(|e| fail(4, e))?;
        }
        if self.how.no_new_privs {
            sys::set_no_new_privs().map_err(|e| fail(0, e))?;
        }
        let install = || match &self.filter {
            Some((flags, program)) => sys::install_seccomp(program, *flags).map_err(|e| fail(1, e)),
            None => Ok(()),
        };
        if !self.how.no_new_privs {
            install()?;
        }
        let keep = self.how.caps.unwrap_or(u64::MAX);
        sys::drop_bounding_set(keep).map_err(|e| fail(2, e))?;
        sys::limit_capabilities(keep).map_err(|e| fail(3, e))?;
        if self.how.no_new_privs {
            install()?;
        }
        Ok(())
    }
}

/// Has the next exec take on AppArmor profile `profile`: `exec PROFILE` written to our own
/// `attr/apparmor/exec` (`attr/exec` on a kernel without the stacking interface), through
/// the init's /proc, as runc applies a container's profile.
fn apparmor_on_exec(profile: &core::ffi::CStr) -> Result<(), Errno> {
    let flags = libc::O_WRONLY | libc::O_CLOEXEC;
    let fd = match sys::open(c"/proc/thread-self/attr/apparmor/exec", flags) {
        Err(Errno(libc::ENOENT)) => sys::open(c"/proc/thread-self/attr/exec", flags)?,
        other => other?,
    };
    // one write: the kernel reads the attribute from each write whole
    let mut text = [0u8; 512];
    let name = profile.to_bytes();
    let len = 5 + name.len();
    let written = match text.get_mut(..len) {
        Some(buf) => {
            buf[..5].copy_from_slice(b"exec ");
            buf[5..].copy_from_slice(name);
            sys::write_all(fd, buf)
        }
        None => Err(Errno(libc::ENAMETOOLONG)),
    };
    sys::close(fd);
    written
}

/// Reads the filter on `fd`: its flags (u32, native order), then its instructions.
fn read_filter(fd: Fd) -> Result<(u32, Vec<u8>), Errno> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sys::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
    sys::close(fd);
    if bytes.len() < 12 || bytes.len() % 8 != 4 {
        return Err(Errno(libc::EINVAL));
    }
    let flags = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    bytes.drain(..4);
    Ok((flags, bytes))
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// In the init's process, first in its namespaces: its mounts kept to itself, its /proc
/// with the container's masked and read-only paths. Paths the kernel does not have are
/// skipped.
fn mount_proc(how: &System) -> Result<(), Failure> {
    let fail = |detail: usize, e: Errno| Failure::new(Stage::GuestProc, detail as u32, e.0);
    sys::mount_with(None, c"/", None, libc::MS_REC | libc::MS_SLAVE, None)
        .map_err(|e| fail(0, e))?;
    sys::mount_with(
        Some(c"proc"),
        c"/proc",
        Some(c"proc"),
        NOSUID_NODEV_NOEXEC,
        None,
    )
    .map_err(|e| fail(0, e))?;
    for path in &how.proc_read_only {
        let bind = sys::mount_with(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None);
        let remount = || {
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID_NODEV_NOEXEC;
            sys::mount_with(None, path, None, flags, None)
        };
        match bind.and_then(|()| remount()) {
            Ok(()) | Err(Errno(libc::ENOENT)) => {}
            Err(e) => return Err(fail(0, e)),
        }
    }
    for path in &how.proc_masks {
        let masked = match sys::file_type(path) {
            Ok(libc::S_IFDIR) => sys::mount_with(
                Some(c"tmpfs"),
                path,
                Some(c"tmpfs"),
                NOSUID_NODEV_NOEXEC | libc::MS_RDONLY,
                Some(c"mode=0555"),
            ),
            Ok(_) => sys::mount_with(Some(c"/dev/null"), path, None, libc::MS_BIND, None),
            Err(e) => Err(e),
        };
        match masked {
            Ok(()) | Err(Errno(libc::ENOENT)) => {}
            Err(e) => return Err(fail(0, e)),
        }
    }
    Ok(())
}

/// In the init's process, born as PID 1 of its namespace: a fresh start for signals, its
/// /proc, a session of its own, its restrictions, then the init. Returns only on failure.
fn exec_init(how: &System, rules: &Restrictions, argv: &mut sys::ExecArgv) -> Failure {
    let _ = sys::set_sigmask(&SigSet::empty());
    sys::reset_signal_dispositions();
    if let Err(failure) = mount_proc(how) {
        return failure;
    }
    let _ = sys::setsid();
    if let Err(failure) = rules.apply() {
        return failure;
    }
    Failure::new(Stage::ExecCommand, 0, sys::execvp(argv).0)
}

/// `halt`, and `init 0` where there is none, ready to exec (nothing is allocated in the
/// halt's process).
struct HaltCommands {
    halt: sys::ExecArgv,
    init_0: sys::ExecArgv,
}

impl HaltCommands {
    fn new() -> Self {
        HaltCommands {
            halt: sys::ExecArgv::new(&[c"halt"]),
            init_0: sys::ExecArgv::new(&[c"init", c"0"]),
        }
    }
}

/// In the halt's process, born in the init's PID namespace: its mount namespace, the
/// init's restrictions, then `halt`, else `init 0`. Returns only if neither could run.
fn exec_halt(init: Fd, rules: &Restrictions, commands: &mut HaltCommands) -> Failure {
    let _ = sys::set_sigmask(&SigSet::empty());
    sys::reset_signal_dispositions();
    if let Err(e) = sys::setns(init, libc::CLONE_NEWNS) {
        return Failure::new(Stage::SpawnCommand, 0, e.0);
    }
    if let Err(failure) = rules.apply() {
        return failure;
    }
    let errno = sys::execvp(&mut commands.halt);
    if errno.0 != libc::ENOENT {
        return Failure::new(Stage::ExecCommand, 0, errno.0);
    }
    Failure::new(Stage::ExecCommand, 1, sys::execvp(&mut commands.init_0).0)
}

/// SIGRTMIN+3: systemd's halt.
fn is_stop_signal(sig: c_int) -> bool {
    sig == libc::SIGTERM || sig == libc::SIGPWR || sig == libc::SIGRTMIN() + 3
}

/// The booted init, as the supervision loop sees it.
struct Booted<'a> {
    init: Pid,
    /// Its pidfd, and our own PID namespace (to be born in again after the halt's
    /// process was born in the init's).
    init_fd: Fd,
    own_pid_ns: Fd,
    rules: &'a Restrictions<'a>,
    commands: &'a mut HaltCommands,
    /// The halt's process, once started.
    halt: Option<Pid>,
}

impl Booted<'_> {
    fn start_halt(&mut self) {
        if self.halt.is_some() {
            return;
        }
        let (init_fd, rules, commands) = (self.init_fd, self.rules, &mut *self.commands);
        let spawned = sys::setns(init_fd, libc::CLONE_NEWPID)
            .and_then(|()| sys::spawn(0, None, || exec_halt(init_fd, rules, commands)));
        // born in our own namespace again: the next boot's init is born below it
        let _ = sys::setns(self.own_pid_ns, libc::CLONE_NEWPID);
        match spawned {
            Ok((pid, None)) => self.halt = Some(pid),
            _ => self.kill_init(),
        }
    }

    /// What stops a guest that cannot halt.
    fn kill_init(&self) {
        warning!("the guest cannot halt: killing its init");
        let _ = sys::kill(self.init, libc::SIGKILL);
    }
}

impl Supervisor for Booted<'_> {
    fn forward(&mut self, sig: c_int) {
        if is_stop_signal(sig) {
            self.start_halt();
        } else {
            let _ = sys::kill(self.init, sig);
        }
    }

    /// The halt that could not run (exit 127 or 126 from the shell's rule, or any code
    /// but 0) leaves the guest to be killed; one killed by a signal was most likely
    /// killed by the shutdown it started (an init's SIGTERM to every process).
    fn reaped(&mut self, pid: Pid, status: Status) {
        if self.halt == Some(pid) && matches!(status, Status::Exited(code) if code != 0) {
            self.kill_init();
        }
    }
}

/// Boots `how.argv` until it halts or ends; returns our exit code (see the module's).
pub fn run(signals: &Signals, reporter: &mut Reporter, how: System) -> u8 {
    // said on our standard error whether or not the report reaches anyone: an OCI
    // runtime's `create` is gone by the time `start` lets us run
    let setup_failed = |reporter: &mut Reporter, failure: Failure| {
        error!("{}: {}", failure.stage.describe(), Strerror(failure.errno));
        reporter.failure(failure);
        match failure.stage {
            Stage::ExecCommand => exec_failure_code(failure.errno),
            _ => 1,
        }
    };
    let filter = match how.seccomp.map(read_filter).transpose() {
        Ok(filter) => filter,
        Err(e) => return setup_failed(reporter, Failure::new(Stage::Restrict, 1, e.0)),
    };
    let rules = Restrictions { how: &how, filter };
    let prepared = sys::set_undumpable()
        .and_then(|()| sys::open(c"/proc/self/ns/pid", libc::O_RDONLY | libc::O_CLOEXEC));
    let own_pid_ns = match prepared {
        Ok(fd) => fd,
        Err(e) => return setup_failed(reporter, Failure::new(Stage::SpawnGuest, 0, e.0)),
    };
    let mut argv = sys::ExecArgv::new(how.argv);
    let mut commands = HaltCommands::new();
    let mut boots = 0u32;
    loop {
        let spawned = crate::boot::spawn_nested(None, || exec_init(&how, &rules, &mut argv));
        let init = match spawned {
            Ok(pid) => pid,
            Err(failure) => return setup_failed(reporter, failure),
        };
        if boots == 0 {
            reporter.success();
        }
        boots += 1;
        let init_fd = match sys::pidfd_open(init) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = sys::kill(init, libc::SIGKILL);
                supervise::reap_all();
                return setup_failed(reporter, Failure::new(Stage::SpawnGuest, 0, e.0));
            }
        };
        let mut booted = Booted {
            init,
            init_fd,
            own_pid_ns,
            rules: &rules,
            commands: &mut commands,
            halt: None,
        };
        let status = supervise::until_exit(signals, init, &mut booted);
        sys::close(init_fd);
        // whatever the guest left in our namespace goes with it
        let _ = sys::kill(-1, libc::SIGKILL);
        supervise::reap_all();
        info!("the init ended: {}", status);
        match Outcome::from_init(status) {
            Outcome::Restart => {}
            Outcome::Halt => return 0,
            _ => return status.shell_code(),
        }
    }
}
