//! `cradle-shim`: PID 1 of a cradle container, and a drop-in PID 1 for container images.
//!
//! It is `no_std` on the `libc` crate so that `scripts/build` can link it statically
//! against musl into a binary of a few tens of KiB that runs in any guest, whatever its
//! libc. The launcher never copies it into the guest: it opens it on the host and execs it
//! by file descriptor after the root switch.
//!
//! What it does not do, on purpose: configuration files, logging anywhere but stderr,
//! restarting the command, anything a guest's own init does.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

mod log;

pub mod args;
mod boot;
mod command;
mod enter;
mod monitor;
mod report;
mod signals;
mod supervise;
mod sys;
mod system;

use core::ffi::CStr;

use cradle_common::outcome::Outcome;

use args::{Mode, Parsed};
use log::{Strerror, error};
use report::Reporter;
use signals::Signals;

/// Exit code for a command line the shim cannot act on.
pub const EXIT_USAGE: u8 = 2;

/// Names the process after `argv0`'s last component: run from a memfd (as the launcher
/// runs it), the kernel would name it after the memfd (`memfd:cradle-sh`).
pub fn name_process(argv0: &CStr) {
    let bytes = argv0.to_bytes_with_nul();
    let start = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    if let Ok(name) = CStr::from_bytes_with_nul(&bytes[start..]) {
        sys::set_name(name);
    }
}

/// The environment the kernel gave us, as C's `main` receives it: a null-terminated array
/// of NUL-terminated strings, alive for the whole process.
#[derive(Clone, Copy)]
pub struct Environment(pub *const *const core::ffi::c_char);

/// The whole program: `args` is argv without argv\[0\]. Returns the exit code.
pub fn main(args: &[&CStr], environment: Environment) -> u8 {
    if let Some((first, rest)) = args.split_first() {
        if first.to_bytes() == b"--monitor" {
            return monitor::run(rest, environment);
        }
    }
    // in boot mode the launcher reads our exit code as what became of the guest: our own
    // failures get a code of their own, never one the init could have exited with
    let boot = args.iter().any(|a| a.to_bytes() == b"--boot");
    let own_failure = |code: u8| {
        if boot {
            Outcome::ShimFailed.encode()
        } else {
            code
        }
    };
    let config = match args::parse(args, sys::getenv) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Help) => {
            let _ = sys::write_all(1, args::USAGE.as_bytes());
            return 0;
        }
        Ok(Parsed::Version) => {
            let _ = sys::write_all(
                1,
                concat!("cradle-shim ", env!("CARGO_PKG_VERSION"), "\n").as_bytes(),
            );
            return 0;
        }
        Err(e) => {
            error!("{}", e);
            let _ = sys::write_all(2, args::USAGE.as_bytes());
            return own_failure(EXIT_USAGE);
        }
    };
    log::set_max_level(config.verbosity);
    // signals first, before anything else can arrive and be lost
    let signals = match Signals::block() {
        Ok(signals) => signals,
        Err(e) => {
            error!("blocking signals: {}", Strerror(e.0));
            return own_failure(1);
        }
    };
    let mut reporter = match Reporter::new(config.report_fd, config.started_fd) {
        Ok(reporter) => reporter,
        Err(e) => {
            error!("--report-fd: {}", Strerror(e.0));
            return own_failure(EXIT_USAGE);
        }
    };
    match config.mode {
        Mode::Boot { cgroup } => boot::run(&signals, &mut reporter, environment, cgroup),
        Mode::Command { argv, options } => command::run(&signals, &mut reporter, argv, options),
        Mode::Enter(how) => enter::run(&signals, &mut reporter, how),
        Mode::System(how) => system::run(&signals, &mut reporter, how),
    }
}
