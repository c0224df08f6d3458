//! The spec's hooks that run in the runtime's namespaces: each gets the container's state
//! on its standard input, runs with its own arguments and environment, and is killed
//! after its timeout.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use cradle_core::error::{Error, Result};
use cradle_core::process::child::Child;

use crate::spec::Hook;
use crate::state::{Record, Status};

/// Runs `hooks` of `kind` in order with the state of `record` as `status`. A failing hook
/// fails the call, unless `warn_only` (poststart and poststop: the spec says to log and go
/// on).
pub fn run_all(
    kind: &str,
    hooks: &[Hook],
    record: &Record,
    status: Status,
    warn_only: bool,
) -> Result<()> {
    let state = serde_json::to_vec(&record.state_json(status)).expect("a JSON value");
    for hook in hooks {
        if let Err(e) = run(hook, &state) {
            let error = Error::Usage(format!("{kind} hook {}: {e}", hook.path));
            if !warn_only {
                return Err(error);
            }
            log::warn!("{error}");
        }
    }
    Ok(())
}

fn run(hook: &Hook, state: &[u8]) -> std::result::Result<(), String> {
    let mut command = Command::new(&hook.path);
    if let Some((first, rest)) = hook.args.split_first() {
        std::os::unix::process::CommandExt::arg0(&mut command, first);
        command.args(rest);
    }
    command
        .env_clear()
        .envs(hook.env.iter().filter_map(|e| e.split_once('=')))
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut spawned = command.spawn().map_err(|e| e.to_string())?;
    let input = spawned.stdin.take();
    let mut child = Child::spawn_from(spawned).map_err(|e| e.to_string())?;
    if let Some(mut input) = input {
        // a hook that does not read its input is no error
        let _ = input.write_all(state);
    }
    let timeout = Duration::from_secs(hook.timeout.filter(|&t| t > 0).unwrap_or(120));
    match child.wait_for(timeout) {
        Some(cradle_common::outcome::Status::Exited(0)) => Ok(()),
        Some(status) => Err(format!("ended with {status}")),
        None => Err(format!("timed out after {} s", timeout.as_secs())),
    }
}
