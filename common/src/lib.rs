//! What the launcher (`cradle`) and the shim (`cradle-shim`) agree on.
//!
//! Both binaries build this crate, the shim among them, so it is `no_std` (and has no
//! `std` feature: see Cargo.toml). Nothing here makes a system call: it is the protocol
//! between the two processes, written once.
//!
//! - [`outcome`]: the shim's exit code in boot mode, and how the launcher reads it.
//! - [`errpipe`]: the record a child writes on the close-on-exec error pipe when a setup
//!   step fails before `execve`.
//! - [`stage`]: every step that can fail before the guest runs, by name.
//! - [`guest`]: how a guest init is found and started (OpenVZ's `exec_init`).
//! - [`console`]: the console's ring of output and the frames its client sends.
//! - [`caps`]: the capability sets of capget(2) and capset(2), and how they are cut.
//! - [`arch`]: what differs between the architectures, and what the `libc` crate lacks.
//! - [`path`]: paths with a number in them, built without allocating.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod arch;
pub mod caps;
pub mod console;
pub mod errpipe;
pub mod guest;
pub mod outcome;
pub mod path;
pub mod stage;
