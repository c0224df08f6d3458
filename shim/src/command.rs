//! Command mode: the shim as the PID 1 of a container image, a drop-in for tini and
//! dumb-init (`cradle-shim -- CMD`), and what `cradle run` uses.
//!
//! - The child gets a session of its own and, when our standard input is a terminal, takes
//!   it as its controlling terminal (dumb-init); with `-c` it gets a process group in our
//!   session instead and is made the terminal's foreground group (tini). Either way an
//!   interactive shell gets Ctrl-C and job control.
//! - Every signal but SIGCHLD and the faults is forwarded, after `-r` rewrites, to the
//!   child, or with `-g` to its process group.
//! - Job control (dumb-init): after forwarding SIGTSTP, SIGTTIN or SIGTTOU the shim stops
//!   itself, and when the child stops by itself the shim stops too, so the shell that
//!   started us gets its prompt back instead of waiting on a shim that still runs. On
//!   SIGCONT the child is continued and, in a process group of ours, given the terminal
//!   back. PID 1 never stops.
//! - Exit status: the child's, 128+N when it died of signal N, then `-e` remaps.

use core::ffi::{CStr, c_int};

use cradle_common::errpipe::Failure;
use cradle_common::outcome::Status;
use cradle_common::stage::Stage;

use crate::args::Options;
use crate::log::{Lossy, Strerror, debug, error, warning};
use crate::report::Reporter;
use crate::signals::Signals;
use crate::supervise::{self, Supervisor};
use crate::sys::{self, Errno, Pid, SigSet};

/// The shell's exit code for a command that could not be executed: 127 when it was not
/// found, 126 when it was found but could not run.
pub fn exec_failure_code(errno: i32) -> u8 {
    if errno == libc::ENOENT { 127 } else { 126 }
}

/// Before forking, in a session of its own for the child: a session leader holding the
/// terminal gives it up, so that the child's session can take it (docker run -it makes
/// PID 1 such a leader). The kernel then sends the terminal's foreground group, which is
/// us, SIGHUP and SIGCONT: they are not for the child, and are dropped here.
fn release_terminal(pid: Pid) {
    // no terminal on stdin (the common case in a container): nothing to give up
    let Ok(foreground_group) = sys::tcgetpgrp(0) else {
        return;
    };
    let foreground = foreground_group == sys::getpgrp();
    if sys::getsid() != pid || sys::release_controlling_tty(0).is_err() {
        return;
    }
    debug!("released the controlling terminal for the child");
    if foreground {
        let mut hangup = SigSet::empty();
        hangup.add(libc::SIGHUP);
        hangup.add(libc::SIGCONT);
        sys::discard_pending(&hangup);
    }
}

/// In the child: a session (or process group) of its own with the terminal, the original
/// signal mask, then the command. Returns only if a step failed.
fn exec_command(signals: &Signals, setsid: bool, argv: &mut sys::ExecArgv) -> Failure {
    // signals are still blocked here, so tcsetpgrp from a background group is not stopped
    // by SIGTTOU; a missing terminal is fine
    if setsid {
        if sys::setsid().is_ok() {
            let _ = sys::set_controlling_tty(0);
        }
    } else {
        if let Err(e) = sys::setpgid_self() {
            return Failure::new(Stage::SpawnCommand, 0, e.0);
        }
        let _ = sys::tcsetpgrp(0, sys::getpgrp());
    }
    if let Err(e) = sys::set_sigmask(signals.original()) {
        return Failure::new(Stage::SpawnCommand, 0, e.0);
    }
    Failure::new(Stage::ExecCommand, 0, sys::execvp(argv).0)
}

/// Starts the child; returns its pid once it has exec'd, or the shim's exit code.
fn spawn(
    signals: &Signals,
    reporter: &mut Reporter,
    argv: &[&CStr],
    setsid: bool,
    pid: Pid,
) -> Result<Pid, u8> {
    let mut exec_argv = sys::ExecArgv::new(argv);
    if setsid {
        release_terminal(pid);
    }
    let failure = match sys::spawn(0, None, || exec_command(signals, setsid, &mut exec_argv)) {
        Ok((child, None)) => {
            reporter.success();
            return Ok(child);
        }
        Ok((_, Some(failure))) => {
            supervise::reap_all();
            failure
        }
        Err(errno) => Failure::new(Stage::SpawnCommand, 0, errno.0),
    };
    if !reporter.is_connected() {
        match failure.stage {
            Stage::ExecCommand => error!(
                "exec {} failed: {}",
                Lossy(argv[0]),
                Strerror(failure.errno)
            ),
            stage => error!("{}: {}", stage.describe(), Strerror(failure.errno)),
        }
    }
    reporter.failure(failure);
    Err(exec_failure_code(failure.errno))
}

/// What command mode does with signals and stops.
struct Command {
    child: Pid,
    options: Options,
    pid1: bool,
    /// We stopped the child (a forwarded suspend signal) or followed it into a stop:
    /// its next stop report is not news, and SIGCONT ends the state.
    suspended: bool,
}

impl Command {
    fn send(&self, sig: c_int) {
        let target = if self.options.group {
            -self.child
        } else {
            self.child
        };
        match sys::kill(target, sig) {
            Ok(()) => {}
            Err(Errno(libc::ESRCH)) => debug!("the child is gone; signal {} not forwarded", sig),
            Err(Errno(e)) => warning!("forwarding signal {}: {}", sig, Strerror(e)),
        }
    }

    /// Stops the shim itself, so that its parent sees the job stop (not as PID 1).
    fn stop_self(&mut self) {
        self.suspended = true;
        if !self.pid1 {
            debug!("stopping with the child");
            let _ = sys::kill(sys::getpid(), libc::SIGSTOP);
        }
    }
}

impl Supervisor for Command {
    fn forward(&mut self, sig: c_int) {
        match self.options.rewrite.apply(sig) {
            0 => debug!("signal {} dropped (-r)", sig),
            to => self.send(to),
        }
        match sig {
            libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => self.stop_self(),
            libc::SIGCONT if self.suspended => {
                self.suspended = false;
                // in our session, the child had the terminal: give it back if it is ours
                if !self.options.setsid && sys::tcgetpgrp(0).is_ok_and(|fg| fg == sys::getpgrp()) {
                    let _ = sys::tcsetpgrp(0, self.child);
                }
            }
            _ => {}
        }
    }

    fn child_stopped(&mut self) {
        if !self.suspended {
            self.stop_self();
        }
    }

    fn reaped(&mut self, pid: Pid, status: Status) {
        if self.options.warn_on_reap {
            warning!("reaped zombie process with pid={} ({})", pid, status);
        } else {
            debug!("reaped {} ({})", pid, status);
        }
    }
}

/// Registers as subreaper and parent-death signal as asked, and warns when orphans will
/// not come to us. Returns false on a failure that must end the shim.
fn prepare(options: &Options, pid: Pid) -> bool {
    if let Some(sig) = options.pdeathsig {
        if let Err(e) = sys::set_pdeathsig(sig) {
            error!("-p: {}", Strerror(e.0));
            return false;
        }
    }
    if options.subreaper {
        if let Err(e) = sys::set_subreaper() {
            error!("cannot become a child subreaper: {}", Strerror(e.0));
            return false;
        }
    }
    if pid != 1 && !sys::is_subreaper() {
        warning!(
            "not PID 1 and not a child subreaper: orphans will not be reaped by us (use -s or TINI_SUBREAPER)"
        );
    }
    true
}

/// Runs `argv` and returns the shim's exit code.
pub fn run(signals: &Signals, reporter: &mut Reporter, argv: &[&CStr], options: Options) -> u8 {
    let pid = sys::getpid();
    if !prepare(&options, pid) {
        return 1;
    }
    let child = match spawn(signals, reporter, argv, options.setsid, pid) {
        Ok(child) => child,
        Err(code) => return code,
    };
    // do not pin the mount we were started in (dumb-init, catatonit)
    let _ = sys::chdir(c"/");
    let mut command = Command {
        child,
        options,
        pid1: pid == 1,
        suspended: false,
    };
    let status = supervise::until_exit(signals, child, &mut command);
    options.remap.apply(status.shell_code())
}
