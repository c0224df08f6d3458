//! Enter mode (`--enter PIDFD`): a process in a running guest, for `cradle exec` and the
//! launcher's halt and power-off requests.
//!
//! A guest's root is hostile: anything of the host's that a process of the guest can reach
//! (a descriptor, memory, credentials) is a way out, as runc's CVE-2019-5736 and
//! CVE-2024-21626 were. The order of the steps is what keeps it out of reach:
//!
//! 1. The launcher runs this shim from a sealed memfd, in the host's PID namespace and in
//!    the container's `shim` leaf (a cgroup the guest can neither see nor freeze), with
//!    the guest init's pidfd, for a command a detached mount of the init's cgroup
//!    directory alone (whose `..` climbs nowhere), the error pipe and its standard streams.
//!    The launcher's own binary never enters the guest.
//! 2. We make ourselves undumpable first. Our memory belongs to the host's user namespace
//!    (we were exec'd there), so from now on no process of the guest, its root included,
//!    may trace us, take our descriptors, read or write our memory or follow our /proc
//!    links, whatever our credentials become; what we clone inherits that.
//! 3. A command: still out of the guest's sight, we join the init's user namespace (when
//!    it has one) and its other namespaces but the cgroup one, become its root, and cut
//!    our capabilities to the guest's (bounding, permitted, effective; inheritable and
//!    ambient emptied), keeping CAP_SYS_ADMIN for one more step. Only then is the
//!    command's process cloned into the init's PID namespace and cgroup: it is the
//!    guest's from birth (its root's credentials), undumpable, and holds nothing of the
//!    host's file systems. It joins the init's cgroup namespace (a clone into a cgroup
//!    outside the cloner's cgroup namespace is refused where the hierarchy delegates by
//!    namespace), drops CAP_SYS_ADMIN unless the guest has it, closes every descriptor
//!    above 2, dies with us, takes a session of its own (with `--tty`, the launcher's pty
//!    as its controlling terminal: the operator's own streams never reach the guest, see
//!    the launcher's `relay`) and execs the command, which is then an ordinary process
//!    of the guest. A guest that freezes its cgroup or stops the process stalls only
//!    itself: the launcher gives up on a command that has not started by its deadline.
//! 4. A power-off: reboot(2) must be called from the guest's PID namespace, with
//!    CAP_SYS_BOOT in its owner, whatever the guest's bounding set says. That process
//!    alone enters with the host's credentials: born in our cgroup, not the guest's (it
//!    needs no room under the guest's limits, and cannot be frozen), undumpable, it can
//!    be neither signalled nor traced by the guest (its credentials are not the guest's).
//!    It joins the guest's other namespaces but the user one, keeps CAP_SYS_BOOT alone,
//!    holds only /dev/null, and its one system call there is reboot(2): so even the root
//!    of a guest without a user namespace, who may trace it, finds nothing of the host's
//!    in it.
//!
//! The seccomp filter was installed before we were exec'd, and is inherited.

use core::ffi::c_int;

use cradle_common::errpipe::Failure;
use cradle_common::stage::Stage;

use crate::args::Enter;
use crate::command::exec_failure_code;
use crate::log::{Lossy, Strerror, error};
use crate::report::Reporter;
use crate::signals::Signals;
use crate::supervise::{self, Supervisor};
use crate::sys::{self, Errno};

/// The namespaces we join for a command besides the user namespace; the command's process
/// joins the cgroup namespace (see the module documentation).
const JOINED: c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID;

/// The namespaces the power-off's process joins (its PID namespace it is born in): all
/// but the user namespace, whose credentials it does not take.
const JOINED_FOR_POWER_OFF: c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP;

/// CAP_SYS_ADMIN, which setns(2) into the cgroup namespace needs.
const CAP_SYS_ADMIN: u64 = 1 << 21;
/// CAP_SYS_BOOT, which reboot(2) needs.
const CAP_SYS_BOOT: u64 = 1 << 22;

/// A failure of step `detail` of common::stage::ENTER_STEPS.
fn failed(detail: u32, errno: Errno) -> Failure {
    Failure::new(Stage::EnterGuest, detail, errno.0)
}

/// Step 3 in us: the guest's namespaces (but its cgroup one), its root, its capabilities.
fn become_guest(how: &Enter) -> Result<(), Failure> {
    let parent = sys::getppid();
    let user = if how.userns { libc::CLONE_NEWUSER } else { 0 };
    sys::setns(how.init, JOINED | user).map_err(|e| failed(1, e))?;
    sys::become_root().map_err(|e| failed(2, e))?;
    // the change of credentials cleared the parent-death signal the launcher's child set;
    // a launcher gone before it is set again finds us gone too
    let _ = sys::set_pdeathsig(libc::SIGKILL);
    if sys::getppid() != parent {
        return Err(failed(2, Errno(libc::ESRCH)));
    }
    let keep = how.caps.unwrap_or(u64::MAX);
    sys::drop_bounding_set(keep).map_err(|e| failed(3, e))?;
    sys::limit_capabilities(keep | CAP_SYS_ADMIN).map_err(|e| failed(6, e))
}

/// First in the process we clone (`shim` is our pidfd): it dies with us. A guest that
/// froze its cgroup may hold the process before its first instruction until after the
/// launcher gave up and killed us: it then ends at once instead of running the command.
fn die_with_the_shim(shim: sys::Fd) -> Result<(), Failure> {
    // our credentials do not change any more, so this stays
    let _ = sys::set_pdeathsig(libc::SIGKILL);
    if sys::has_ended(shim) {
        return Err(Failure::new(Stage::SpawnCommand, 0, libc::ESRCH));
    }
    Ok(())
}

/// In the command's process, born in the guest's PID namespace and cgroup: its cgroup
/// namespace, the guest's capabilities, nothing of ours, then the command. Returns only if
/// a step failed.
fn exec_in_guest(
    how: &Enter,
    shim: sys::Fd,
    signals: &Signals,
    argv: &mut sys::ExecArgv,
) -> Failure {
    if let Err(failure) = die_with_the_shim(shim) {
        return failure;
    }
    if let Err(e) = sys::setns(how.init, libc::CLONE_NEWCGROUP) {
        return failed(7, e);
    }
    if let Err(e) = sys::limit_capabilities(how.caps.unwrap_or(u64::MAX)) {
        return failed(6, e);
    }
    sys::close_from(3);
    // a session of its own; with --tty, the launcher's pty (never the operator's own
    // terminal, which the command does not get) as its controlling terminal
    if sys::setsid().is_ok() && how.tty {
        let _ = (0..3).find(|&fd| sys::set_controlling_tty(fd).is_ok());
    }
    if let Err(e) = sys::set_sigmask(signals.original()) {
        return Failure::new(Stage::SpawnCommand, 0, e.0);
    }
    Failure::new(Stage::ExecCommand, 0, sys::execvp(argv).0)
}

/// In the power-off's process, born in the guest's PID namespace: reboot(2). Returns only
/// if it failed.
fn power_off_in_guest(how: &Enter, shim: sys::Fd) -> Failure {
    if let Err(failure) = die_with_the_shim(shim) {
        return failure;
    }
    // nothing of the host's in reach even for a guest without a user namespace, whose
    // root could trace us: its mount namespace (so not the host's files, which our uid 0
    // owns), and CAP_SYS_BOOT alone
    if let Err(e) = sys::setns(how.init, JOINED_FOR_POWER_OFF) {
        return failed(1, e);
    }
    if let Err(e) = sys::limit_capabilities(CAP_SYS_BOOT) {
        return failed(6, e);
    }
    sys::close_from(3);
    failed(4, sys::power_off())
}

/// Steps 2 to 4: the command's or the power-off's process, started.
fn spawn(
    how: &Enter,
    signals: &Signals,
    argv: Option<&mut sys::ExecArgv>,
) -> Result<(sys::Pid, Option<Failure>), Failure> {
    sys::set_undumpable().map_err(|e| failed(5, e))?;
    let spawn_failed = |e: Errno| Failure::new(Stage::SpawnCommand, 0, e.0);
    let shim = sys::pidfd_open(sys::getpid()).map_err(spawn_failed)?;
    let spawned = match argv {
        Some(argv) => become_guest(how).and_then(|()| {
            sys::spawn(0, how.cgroup, || exec_in_guest(how, shim, signals, argv))
                .map_err(spawn_failed)
        }),
        None => sys::setns(how.init, libc::CLONE_NEWPID)
            .map_err(|e| failed(0, e))
            .and_then(|()| {
                sys::spawn(0, None, || power_off_in_guest(how, shim)).map_err(spawn_failed)
            }),
    };
    sys::close(shim);
    spawned
}

/// The child in the guest: signals are passed on to it.
struct Entered {
    child: sys::Pid,
}

impl Supervisor for Entered {
    fn forward(&mut self, sig: c_int) {
        let _ = sys::kill(self.child, sig);
    }
}

/// Enters the guest as `how` says; returns the shim's exit code: the command's status
/// (128+N for signal N), 0 once the guest was powered off, 127 or 126 when the command
/// could not be run, 1 when the guest could not be entered.
pub fn run(signals: &Signals, reporter: &mut Reporter, how: Enter) -> u8 {
    let mut argv = how.argv.map(sys::ExecArgv::new);
    let spawned = spawn(&how, signals, argv.as_mut());
    let child = match spawned {
        Ok((child, None)) => child,
        Ok((_, Some(failure))) | Err(failure) => {
            supervise::reap_all();
            if !reporter.is_connected() {
                match how.argv {
                    Some(argv) if failure.stage == Stage::ExecCommand => error!(
                        "exec {} failed: {}",
                        Lossy(argv[0]),
                        Strerror(failure.errno)
                    ),
                    _ => error!("{}: {}", failure.stage.describe(), Strerror(failure.errno)),
                }
            }
            reporter.failure(failure);
            return match failure.stage {
                Stage::ExecCommand => exec_failure_code(failure.errno),
                _ => 1,
            };
        }
    };
    reporter.success();
    // the command's process has what it needed of them
    if let Some(fd) = how.cgroup {
        sys::close(fd);
    }
    sys::close(how.init);
    let _ = sys::chdir(c"/");
    supervise::until_exit(signals, child, &mut Entered { child }).shell_code()
}
