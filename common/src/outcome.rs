//! The boot-mode exit protocol between the shim and the launcher.
//!
//! In boot mode the shim is PID 1 of the container and runs the guest's init as PID 1 of a
//! nested PID namespace. When that init dies, the shim kills what is left and exits with
//! [`Outcome::encode`]; the launcher reads the shim's wait status with [`decode`].
//!
//! The guest asks for a restart or a halt with reboot(2). In a PID namespace other than the
//! initial one the kernel does not reboot anything: it kills the namespace's init, and the
//! init's parent sees it **killed by SIGHUP** for `LINUX_REBOOT_CMD_RESTART` and **killed by
//! SIGINT** for `HALT` and `POWER_OFF` (pid_namespace.c, `reboot_pid_ns`). The shim sees that
//! for the guest init; the launcher sees it for the shim itself when reboot(2) was called in
//! the shim's own namespace. Both mean the same here.
//!
//! # Exit codes of the shim in boot mode
//!
//! | code      | outcome                                                             |
//! |-----------|---------------------------------------------------------------------|
//! | 0–127     | [`Outcome::Exited`]: the guest init exited by itself with that code |
//! | 129–192   | [`Outcome::Killed`]: the guest init was killed by signal code−128   |
//! | 240       | [`Outcome::ExitedHigh`]: the init exited by itself with a code ≥ 128 |
//! | 241       | [`Outcome::Halt`]                                                   |
//! | 242       | [`Outcome::Restart`]                                                |
//! | 243       | [`Outcome::BadTemplate`]: none of the init paths is an executable   |
//! | 244       | [`Outcome::SetupFailed`]: the error pipe says which step            |
//! | 245       | [`Outcome::ShimFailed`]: the shim could not do its own part (say, a  |
//! |           | command line it does not understand); it said why on the console     |
//!
//! The reserved codes (240–244) sit clear of the shell's 126/127 and of 128+signal. An init
//! that exits by itself with 128 or more is reported as [`Outcome::ExitedHigh`]: its exact
//! code is lost, so that it can never be mistaken for a signal or a reserved outcome.

/// How a child process ended, as wait(2) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It called exit with this code.
    Exited(u8),
    /// It was killed by this signal.
    Signaled(i32),
}

/// In log lines, without Debug's machinery (which the shim, under 64 KiB, cannot afford).
impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Status::Exited(code) => write!(f, "exit status {code}"),
            Status::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

impl Status {
    /// Reads the `wstatus` integer that wait(2) fills in. `None` for a stopped or continued
    /// child, which has not ended.
    pub fn from_raw(wstatus: i32) -> Option<Self> {
        if libc::WIFEXITED(wstatus) {
            Some(Status::Exited(libc::WEXITSTATUS(wstatus) as u8))
        } else if libc::WIFSIGNALED(wstatus) {
            Some(Status::Signaled(libc::WTERMSIG(wstatus)))
        } else {
            None
        }
    }

    /// The shell's convention for a command's exit status: the code, or 128+N for signal N.
    pub fn shell_code(self) -> u8 {
        match self {
            Status::Exited(code) => code,
            Status::Signaled(sig) => 128u8.wrapping_add(sig as u8),
        }
    }
}

/// What became of a booted guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest halted or powered off: reboot(2) HALT or POWER_OFF.
    Halt,
    /// The guest asked to be booted again: reboot(2) RESTART.
    Restart,
    /// The guest init exited by itself with this code (< 128). Not a halt.
    Exited(u8),
    /// The guest init exited by itself with a code of 128 or more. Not a halt.
    ExitedHigh,
    /// The guest init was killed by this signal (not SIGHUP or SIGINT). Not a halt.
    Killed(u8),
    /// None of the init paths is an executable file: OpenVZ's "bad template".
    BadTemplate,
    /// The shim could not start the guest init; the error pipe carries the step and errno.
    SetupFailed,
    /// The shim failed before it could start the guest init, at something of its own (its
    /// command line, its signal mask, the error pipe): it said why on its standard error,
    /// the guest's console. Kept apart from the init's own exit codes, which it could
    /// otherwise pass for.
    ShimFailed,
}

/// Exit code for [`Outcome::ExitedHigh`].
pub const EXIT_HIGH: u8 = 240;
/// Exit code for [`Outcome::Halt`].
pub const EXIT_HALT: u8 = 241;
/// Exit code for [`Outcome::Restart`].
pub const EXIT_RESTART: u8 = 242;
/// Exit code for [`Outcome::BadTemplate`].
pub const EXIT_BAD_TEMPLATE: u8 = 243;
/// Exit code for [`Outcome::SetupFailed`].
pub const EXIT_SETUP_FAILED: u8 = 244;
/// Exit code for [`Outcome::ShimFailed`].
pub const EXIT_SHIM_FAILED: u8 = 245;

impl Outcome {
    /// What the death of the guest init means. This is the kernel's reboot(2) convention in
    /// a PID namespace: killed by SIGHUP is a restart, killed by SIGINT is a halt.
    pub fn from_init(status: Status) -> Self {
        match status {
            Status::Signaled(libc::SIGHUP) => Outcome::Restart,
            Status::Signaled(libc::SIGINT) => Outcome::Halt,
            Status::Signaled(sig) => Outcome::Killed(sig as u8),
            Status::Exited(code) if code < 128 => Outcome::Exited(code),
            Status::Exited(_) => Outcome::ExitedHigh,
        }
    }

    /// The shim's exit code for this outcome (see the table in the module documentation).
    pub fn encode(self) -> u8 {
        match self {
            Outcome::Exited(code) if code < 128 => code,
            Outcome::Exited(_) | Outcome::ExitedHigh => EXIT_HIGH,
            Outcome::Killed(sig) => 128u8.wrapping_add(sig),
            Outcome::Halt => EXIT_HALT,
            Outcome::Restart => EXIT_RESTART,
            Outcome::BadTemplate => EXIT_BAD_TEMPLATE,
            Outcome::SetupFailed => EXIT_SETUP_FAILED,
            Outcome::ShimFailed => EXIT_SHIM_FAILED,
        }
    }
}

/// What the launcher saw that is outside the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unexpected {
    /// The shim itself was killed by this signal (neither SIGHUP nor SIGINT): it crashed, or
    /// somebody killed it.
    ShimKilled(i32),
    /// The shim exited with a code no outcome has.
    Code(u8),
}

/// Reads the shim's wait status as an outcome.
///
/// Besides the shim's own exit codes, this decodes the kernel's reboot path for the shim
/// itself: killed by SIGHUP is a restart and killed by SIGINT a halt, as for the guest init.
pub fn decode(status: Status) -> Result<Outcome, Unexpected> {
    match status {
        Status::Signaled(libc::SIGHUP) => Ok(Outcome::Restart),
        Status::Signaled(libc::SIGINT) => Ok(Outcome::Halt),
        Status::Signaled(sig) => Err(Unexpected::ShimKilled(sig)),
        Status::Exited(code) => match code {
            0..=127 => Ok(Outcome::Exited(code)),
            129..=192 => Ok(Outcome::Killed(code - 128)),
            EXIT_HIGH => Ok(Outcome::ExitedHigh),
            EXIT_HALT => Ok(Outcome::Halt),
            EXIT_RESTART => Ok(Outcome::Restart),
            EXIT_BAD_TEMPLATE => Ok(Outcome::BadTemplate),
            EXIT_SETUP_FAILED => Ok(Outcome::SetupFailed),
            EXIT_SHIM_FAILED => Ok(Outcome::ShimFailed),
            _ => Err(Unexpected::Code(code)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every outcome the shim can produce, with every payload it can carry.
    fn every_outcome() -> impl Iterator<Item = Outcome> {
        let fixed = [
            Outcome::Halt,
            Outcome::Restart,
            Outcome::ExitedHigh,
            Outcome::BadTemplate,
            Outcome::SetupFailed,
            Outcome::ShimFailed,
        ];
        fixed
            .into_iter()
            .chain((0..128).map(Outcome::Exited))
            .chain((3..=64).map(Outcome::Killed))
    }

    #[test]
    fn every_outcome_survives_encode_then_decode() {
        for outcome in every_outcome() {
            let code = outcome.encode();
            assert_eq!(decode(Status::Exited(code)), Ok(outcome), "code {code}");
        }
    }

    #[test]
    fn every_code_decodes_to_at_most_one_outcome() {
        for code in 0..=255u8 {
            if let Ok(outcome) = decode(Status::Exited(code)) {
                assert_eq!(outcome.encode(), code, "{outcome:?}");
            }
        }
    }

    #[test]
    fn reserved_codes_stay_clear_of_exit_codes_and_signals() {
        for code in [
            EXIT_HIGH,
            EXIT_HALT,
            EXIT_RESTART,
            EXIT_BAD_TEMPLATE,
            EXIT_SETUP_FAILED,
            EXIT_SHIM_FAILED,
        ] {
            assert!(code > 128 + 64, "{code} collides with 128+signal");
        }
    }

    #[test]
    fn init_killed_by_sighup_is_a_restart_and_by_sigint_a_halt() {
        assert_eq!(
            Outcome::from_init(Status::Signaled(libc::SIGHUP)),
            Outcome::Restart
        );
        assert_eq!(
            Outcome::from_init(Status::Signaled(libc::SIGINT)),
            Outcome::Halt
        );
    }

    #[test]
    fn init_that_exits_or_dies_otherwise_is_not_a_halt() {
        assert_eq!(Outcome::from_init(Status::Exited(0)), Outcome::Exited(0));
        assert_eq!(Outcome::from_init(Status::Exited(3)), Outcome::Exited(3));
        assert_eq!(Outcome::from_init(Status::Exited(200)), Outcome::ExitedHigh);
        assert_eq!(
            Outcome::from_init(Status::Signaled(libc::SIGKILL)),
            Outcome::Killed(9)
        );
        assert_eq!(
            Outcome::from_init(Status::Signaled(libc::SIGSEGV)),
            Outcome::Killed(11)
        );
    }

    #[test]
    fn shim_killed_by_the_reboot_path_decodes_like_the_init() {
        assert_eq!(decode(Status::Signaled(libc::SIGHUP)), Ok(Outcome::Restart));
        assert_eq!(decode(Status::Signaled(libc::SIGINT)), Ok(Outcome::Halt));
        assert_eq!(
            decode(Status::Signaled(libc::SIGKILL)),
            Err(Unexpected::ShimKilled(libc::SIGKILL))
        );
    }

    #[test]
    fn unassigned_codes_are_unexpected() {
        for code in [128u8, 193, 239, 246, 255] {
            assert_eq!(decode(Status::Exited(code)), Err(Unexpected::Code(code)));
        }
    }

    #[test]
    fn raw_wait_status_is_read_as_exit_or_signal() {
        assert_eq!(Status::from_raw(3 << 8), Some(Status::Exited(3)));
        assert_eq!(Status::from_raw(libc::SIGKILL), Some(Status::Signaled(9)));
        // stopped by SIGSTOP: 0x7f in the low byte, the signal above it
        assert_eq!(Status::from_raw((libc::SIGSTOP << 8) | 0x7f), None);
    }

    #[test]
    fn shell_code_is_the_code_or_128_plus_the_signal() {
        assert_eq!(Status::Exited(3).shell_code(), 3);
        assert_eq!(Status::Signaled(9).shell_code(), 137);
        assert_eq!(Status::Signaled(15).shell_code(), 143);
    }
}
