//! Command mode: the shim as a container's PID 1 for one command, as tini does.

use alloc::vec::Vec;
use core::ffi::{CStr, c_char};

use cradle_common::errpipe::Failure;
use cradle_common::stage::Stage;

use crate::log::{Lossy, Strerror, error};
use crate::report::{self, Reporter};
use crate::signals::Signals;
use crate::supervise;
use crate::sys::{self, Errno, Fd, Forked};

/// The shell's exit code for a command that could not be executed: 127 when it was not
/// found, 126 when it was found but could not run.
pub fn exec_failure_code(errno: i32) -> u8 {
    if errno == libc::ENOENT { 127 } else { 126 }
}

/// In the child: its own session, the original signal mask, then the command.
fn exec_command(err_fd: Fd, signals: &Signals, argv: &[*const c_char]) -> ! {
    let fail = |stage, errno: Errno| -> ! {
        report::fail_child(
            err_fd,
            Failure::new(stage, 0, errno.0),
            exec_failure_code(errno.0),
        )
    };
    if let Err(e) = sys::set_sigmask(signals.original()) {
        fail(Stage::SpawnCommand, e);
    }
    // a session and process group of its own, with the terminal if stdin is one
    if sys::setsid().is_ok() {
        let _ = sys::set_controlling_tty(0);
    }
    let errno = sys::execvp(argv);
    fail(Stage::ExecCommand, errno)
}

/// Runs `argv` and returns the shim's exit code: the command's, or 128+N when it died of
/// signal N; 126/127 when it could not be executed.
pub fn run(signals: &Signals, reporter: &mut Reporter, argv: &[&CStr]) -> u8 {
    let mut ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(core::ptr::null());
    let spawned = sys::pipe_cloexec().and_then(|(read_fd, write_fd)| {
        // the child only makes system calls on memory prepared above, then execs or exits
        match sys::clone_fork(0)? {
            Forked::Child => exec_command(write_fd, signals, &ptrs),
            Forked::Parent(pid) => {
                sys::close(write_fd);
                Ok((pid, read_fd))
            }
        }
    });
    let (child, read_fd) = match spawned {
        Ok(spawned) => spawned,
        Err(errno) => {
            if !reporter.is_connected() {
                error!("fork: {}", Strerror(errno.0));
            }
            reporter.failure(Failure::new(Stage::SpawnCommand, 0, errno.0));
            return 126;
        }
    };
    if let Some(failure) = report::wait_for_exec(read_fd) {
        if !reporter.is_connected() {
            error!(
                "exec {} failed: {}",
                Lossy(argv[0]),
                Strerror(failure.errno)
            );
        }
        reporter.failure(failure);
        supervise::reap_all();
        return exec_failure_code(failure.errno);
    }
    reporter.success();
    let status = supervise::until_exit(signals, child, |sig| {
        let _ = sys::kill(child, sig);
    });
    status.shell_code()
}
