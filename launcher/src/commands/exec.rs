//! `cradle exec NAME -- CMD`: runs a command inside a running guest, in all of its
//! namespaces, its root, its cgroup and its environment, with the guest's bounding set and
//! seccomp filter, on our standard streams; exits with the command's status.
//!
//! The command is started by the shim (see `guest`): the launcher never enters the guest.
//! It is in a session of its own there, so the terminal's signals reach it through us.

use std::path::Path;
use std::time::Duration;

use cradle_core::config;
use cradle_core::console::relay::Relay;
use cradle_core::container::spawn::ShimBinary;
use cradle_core::error::{Error, Result};
use cradle_core::guest::state::{Observed, validate_name};
use cradle_core::guest::{Enter, Guest};
use cradle_core::process::signals::{FORWARDED, Signals};
use cradle_core::sys::{Deadline, SingleThreaded};

/// How long exec waits for a guest that is still booting, and then for the command to
/// start in it, unless `--timeout` says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub fn exec(
    threads: &SingleThreaded,
    state_base: &Path,
    name: &str,
    env: &[String],
    timeout: Option<Duration>,
    command: &[String],
) -> Result<u8> {
    validate_name(name)?;
    config::check_env(env)?;
    if command.is_empty() {
        return Err(Error::Usage("exec needs a command after --".into()));
    }
    let state = Observed::open(state_base, name)?;
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
    let guest = Guest::find(&state, name, timeout)?;
    let shim = ShimBinary::sealed(Some(&state.shim()?))?;
    let mut signals = Signals::catch(&FORWARDED)?;
    let (mut relay, streams) = Relay::new(guest.root_uid())?;
    let what = Enter::Command {
        argv: command,
        env,
        streams: Some(streams),
    };
    let status = guest
        .enter(threads, &shim, what)?
        .supervise(
            Some(&mut signals),
            &command[0],
            Some(Deadline::after(timeout)),
            Some(&mut relay),
        )
        .map_err(|e| match e {
            Error::Timeout(why) => Error::Timeout(format!("{name}: {why}")),
            other => other,
        })?;
    Ok(status.shell_code())
}
