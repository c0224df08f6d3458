//! Enter mode (`--enter PIDFD`): a process in a running guest, for `cradle exec` and the
//! launcher's halt and power-off requests.
//!
//! The launcher never enters a guest itself: its image would be in the guest's PID
//! namespace, where `/proc/PID/exe` and `/proc/PID/fd` show a host binary and host
//! descriptors (runc's CVE-2019-5736 and CVE-2024-21626). It runs this shim instead, from a
//! sealed memfd, in the host's PID namespace; only the shim's child is in the guest: born in
//! the init's PID namespace and cgroup, it joins the init's other namespaces, becomes the
//! guest's root, drops the bounding set to what the guest has, dies with us, closes every
//! descriptor above 2, takes a session of its own (so no terminal of the operator is its
//! controlling terminal), and execs the command. The seccomp filter was installed before we
//! were exec'd, and is inherited.

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

/// The namespaces the child joins besides its PID namespace (it is born in that one).
const JOINED: c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP;

/// A failure of step `detail` of common::stage::ENTER_STEPS.
fn failed(detail: u32, errno: Errno) -> Failure {
    Failure::new(Stage::EnterGuest, detail, errno.0)
}

/// In the child: the guest's namespaces, its root, its bounding set, then the command.
/// Returns only if a step failed.
fn exec_in_guest(how: &Enter, signals: &Signals, argv: &mut sys::ExecArgv) -> Failure {
    let user = if how.userns { libc::CLONE_NEWUSER } else { 0 };
    if let Err(e) = sys::setns(how.init, JOINED | user) {
        return failed(1, e);
    }
    if let Err(e) = sys::become_root() {
        return failed(2, e);
    }
    if let Some(keep) = how.caps {
        if let Err(e) = sys::drop_bounding_set(keep) {
            return failed(3, e);
        }
    }
    // after the change of credentials, which clears it
    let _ = sys::set_pdeathsig(libc::SIGKILL);
    sys::close_from(3);
    let _ = sys::setsid();
    if let Err(e) = sys::set_sigmask(signals.original()) {
        return Failure::new(Stage::SpawnCommand, 0, e.0);
    }
    Failure::new(Stage::ExecCommand, 0, sys::execvp(argv).0)
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
    let spawned = sys::setns(how.init, libc::CLONE_NEWPID)
        .map_err(|e| failed(0, e))
        .and_then(|()| {
            sys::spawn(0, how.cgroup, || match &mut argv {
                Some(argv) => exec_in_guest(&how, signals, argv),
                None => failed(4, sys::power_off()),
            })
            .map_err(|e| Failure::new(Stage::SpawnCommand, 0, e.0))
        });
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
    let _ = sys::chdir(c"/");
    supervise::until_exit(signals, child, &mut Entered { child }).shell_code()
}
