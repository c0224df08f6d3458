//! Boot mode: the guest's init as PID 1 of a nested PID namespace.
//!
//! systemd and sysvinit act as the system manager only when they are PID 1, and the shim
//! must stay PID 1 of the container to see the init die. So the init gets a PID namespace
//! (and a mount namespace, for its own /proc) of its own, below the shim's. When it calls
//! reboot(2) the kernel kills it with SIGHUP (restart) or SIGINT (halt); the shim kills what
//! is left and exits with the [`Outcome`] code the launcher reads.

use cradle_common::errpipe::Failure;
use cradle_common::guest::{
    CGROUP2, INIT_ARGV, INIT_PATHS, PROC, PROC_BINDS, PROC_MASKS, mask_call, proc_bind,
};
use cradle_common::outcome::Outcome;
use cradle_common::stage::Stage;

use crate::Environment;
use crate::log::{Lossy, Strerror, error, info};
use crate::report::Reporter;
use crate::signals::Signals;
use crate::supervise;
use crate::sys::{self, SigSet};

/// The index in [`INIT_PATHS`] of the first executable init.
fn find_init() -> Option<usize> {
    INIT_PATHS
        .iter()
        .position(|path| sys::is_executable_file(path))
}

/// In the nested child: its cgroup namespace (when it was born in a cgroup of its own), its
/// /proc, a session of its own, the console as standard streams, then the init. Returns
/// only if a step failed.
///
/// The console is not made the init's controlling terminal: the kernel does not do that
/// for PID 1 either, and an init's children (a getty, a console shell) must be able to.
fn exec_guest(init: usize, environment: Environment, own_cgroup: bool) -> Failure {
    let fail =
        |stage, detail: usize, errno: sys::Errno| Failure::new(stage, detail as u32, errno.0);
    // a fresh start: nothing blocked or ignored, whatever the host had
    let _ = sys::set_sigmask(&SigSet::empty());
    sys::reset_signal_dispositions();
    if own_cgroup {
        if let Err(e) = sys::unshare(libc::CLONE_NEWCGROUP) {
            return fail(Stage::GuestCgroup, 0, e);
        }
        if let Err(e) = sys::mount(&CGROUP2) {
            return fail(Stage::GuestCgroup, 1, e);
        }
    }
    if let Err(e) = sys::mount(&PROC) {
        return fail(Stage::GuestProc, 0, e);
    }
    // the read-only and masked paths, on this proc only: the one below it (the shim's,
    // which the launcher mounted) stays fully visible, so that the kernel lets the guest
    // mount more procs in its user namespace (systemd does, for its services)
    for (i, (path, read_only)) in PROC_BINDS.into_iter().enumerate() {
        let [bind, remount] = proc_bind(path, read_only);
        match sys::mount(&bind).and_then(|()| sys::mount(&remount)) {
            Ok(()) | Err(sys::Errno(libc::ENOENT)) => {}
            Err(e) => return fail(Stage::GuestProc, i + 1, e),
        }
    }
    for (i, (path, mask)) in PROC_MASKS.into_iter().enumerate() {
        match sys::mount(&mask_call(path, mask)) {
            Ok(()) | Err(sys::Errno(libc::ENOENT)) => {}
            Err(e) => return fail(Stage::GuestProc, 1 + PROC_BINDS.len() + i, e),
        }
    }
    if let Err(e) = sys::setsid() {
        return fail(Stage::GuestConsole, 0, e);
    }
    let console = match sys::open(c"/dev/console", libc::O_RDWR | libc::O_NOCTTY) {
        Ok(fd) => fd,
        Err(e) => return fail(Stage::GuestConsole, 0, e),
    };
    for fd in 0..3 {
        if let Err(e) = sys::dup2(console, fd) {
            return fail(Stage::GuestConsole, 0, e);
        }
    }
    if console > 2 {
        sys::close(console);
    }
    let argv = [
        INIT_ARGV[0].as_ptr(),
        INIT_ARGV[1].as_ptr(),
        INIT_ARGV[2].as_ptr(),
        core::ptr::null(),
    ];
    let errno = sys::execve(INIT_PATHS[init], &argv, environment);
    fail(Stage::ExecInit, init, errno)
}

/// The guest init, as the supervision loop sees it: every signal is passed on (what
/// it means is the launcher's business).
struct Guest {
    init: sys::Pid,
}

impl supervise::Supervisor for Guest {
    fn forward(&mut self, sig: core::ffi::c_int) {
        let _ = sys::kill(self.init, sig);
    }
}

/// Starts `child` as PID 1 of a new PID namespace, with a mount namespace of its own (in
/// the cgroup open on `cgroup`, if any): its pid once it has exec'd, or the step that
/// failed (a child that failed is reaped).
pub fn spawn_nested(
    cgroup: Option<sys::Fd>,
    child: impl FnOnce() -> Failure,
) -> Result<sys::Pid, Failure> {
    match sys::spawn(libc::CLONE_NEWPID | libc::CLONE_NEWNS, cgroup, child) {
        Ok((pid, None)) => Ok(pid),
        Ok((_, Some(failure))) => {
            supervise::reap_all();
            Err(failure)
        }
        Err(errno) => Err(Failure::new(Stage::SpawnGuest, 0, errno.0)),
    }
}

/// Passes on a failure to start the guest; returns the shim's exit code for it.
fn setup_failed(reporter: &mut Reporter, failure: Failure) -> u8 {
    if !reporter.is_connected() {
        error!("{}: {}", failure.stage.describe(), Strerror(failure.errno));
    }
    reporter.failure(failure);
    Outcome::SetupFailed.encode()
}

/// Boots the guest in `/` with `environment` (the launcher built it: `HOME=/`,
/// `TERM=linux`, `container=NAME`, the user's) and returns the shim's exit code (an
/// [`Outcome`]).
pub fn run(
    signals: &Signals,
    reporter: &mut Reporter,
    environment: Environment,
    cgroup: Option<sys::Fd>,
) -> u8 {
    let Some(init) = find_init() else {
        if !reporter.is_connected() {
            error!("bad template: none of /sbin/init, /etc/init, /bin/init is an executable file");
        }
        reporter.failure(Failure::new(Stage::FindInit, 0, libc::ENOENT));
        return Outcome::BadTemplate.encode();
    };
    // the guest's cgroup is for its child to be born in, not for the init to inherit
    if let Some(fd) = cgroup {
        if let Err(e) = sys::set_cloexec(fd) {
            return setup_failed(reporter, Failure::new(Stage::SpawnGuest, 0, e.0));
        }
    }
    // every path below is relative to the guest's root
    if let Err(e) = sys::chdir(c"/") {
        return setup_failed(reporter, Failure::new(Stage::SpawnGuest, 0, e.0));
    }
    let spawned = spawn_nested(cgroup, || exec_guest(init, environment, cgroup.is_some()));
    if let Some(fd) = cgroup {
        sys::close(fd);
    }
    let init_pid = match spawned {
        Ok(pid) => pid,
        Err(failure) => return setup_failed(reporter, failure),
    };
    reporter.success();
    info!("guest init {} is running", Lossy(INIT_PATHS[init]));
    let status = supervise::until_exit(signals, init_pid, &mut Guest { init: init_pid });
    let outcome = Outcome::from_init(status);
    info!("guest init ended: {}", status);
    // whatever the init left behind in our namespace goes with it
    let _ = sys::kill(-1, libc::SIGKILL);
    supervise::reap_all();
    outcome.encode()
}
