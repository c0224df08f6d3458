//! The container core of `cradle`: everything that builds, runs and reaches a container,
//! shared by the front ends (the `cradle` command line; an OCI runtime's next). Folders
//! by concern, each depending only on those listed before it:
//!
//! - [`sys`]: the only `unsafe`, system calls nix lacks; [`error`]: errors and exit codes;
//!   [`process`]: children behind pidfds, signals; [`handoff`]: what a launcher hands
//!   the shim's monitor and takes back; [`config`]: checks of names, environments,
//!   hostnames.
//! - [`cgroups`]: the v2 hierarchy and its walks, the v1 hierarchies of a hybrid host, the
//!   limits, a container's cgroup.
//! - [`security`]: capabilities, the seccomp filter, the device policy, the user
//!   namespace and its ranges.
//! - [`console`]: the console's pty and ring, the relay of `exec`'s streams, systemd's
//!   notify socket.
//! - [`net`]: a guest's network: its options, its record, its addresses' leases, the
//!   links, routes and nftables rules each boot makes and removes.
//! - [`container`]: one container: its first process's setup as data (`plan`), the root
//!   and its switch, `/run/host`, the spawn of the shim.
//! - [`guest`]: a guest's state directory, the sweep of what killed launchers left, a
//!   running guest reached from outside.
//!
//! No module imports one that imports it back, and no folder one that depends on it.
#![deny(unsafe_code)]

pub mod cgroups;
pub mod config;
pub mod console;
pub mod container;
pub mod error;
pub mod guest;
pub mod handoff;
pub mod net;
pub mod process;
pub mod security;
pub mod sys;
#[cfg(test)]
mod testing;
