//! `cradle stop NAME`: from another terminal, as OpenVZ's stop modes do.
//!
//! - halt: runs `halt` in the guest (`init 0` where there is no halt), waits for the
//!   launcher to finish, and powers the guest off when the timeout passes;
//! - reboot: runs `reboot` in the guest and waits until the next boot's init runs;
//! - kill: reboot(2) POWER_OFF inside the guest's PID namespace.
//!
//! "Down" means the launcher has exited and removed its state directory, which it does
//! only after the container's processes, mounts and cgroup are gone.

use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;

use crate::cli::Mode;
use cradle_core::container::spawn::ShimBinary;
use cradle_core::error::{Error, Result};
use cradle_core::guest::state::{Observed, validate_name};
use cradle_core::guest::{self, Guest};
use cradle_core::sys::{Deadline, SingleThreaded};

/// The timeout of a guest whose `start` recorded none (an older launcher's).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a guest may take to go down after a power-off.
const KILL_GRACE: Duration = Duration::from_secs(10);

fn is_down(state: &Observed) -> bool {
    !state.is_alive()
}

/// What the helpers of `stop` need: our fork token and the guest's shim.
struct Tools<'a> {
    threads: &'a SingleThreaded,
    shim: ShimBinary,
}

/// Powers the guest off and waits for the launcher to finish.
fn kill(tools: &Tools, state: &Observed, guest: &Guest, name: &str) -> Result<()> {
    guest.power_off(tools.threads, &tools.shim)?;
    if state.wait_until(KILL_GRACE, is_down)? {
        Ok(())
    } else {
        Err(Error::Timeout(format!(
            "{name} was powered off but is still up after {}s",
            KILL_GRACE.as_secs()
        )))
    }
}

pub fn stop(
    threads: &SingleThreaded,
    state_base: &Path,
    name: &str,
    mode: Mode,
    timeout: Option<Duration>,
) -> Result<()> {
    validate_name(name)?;
    let state = Observed::open(state_base, name)?;
    // by default, the guest's own: what its `start` had (from its config file or not)
    let timeout = timeout.unwrap_or_else(|| {
        let own = state.info().ok().and_then(|info| info.timeout);
        Duration::from_secs(own.unwrap_or(DEFAULT_TIMEOUT.as_secs()))
    });
    let guest = Guest::find(&state, name, timeout)?;
    let tools = Tools {
        threads,
        shim: ShimBinary::sealed(Some(&state.shim()?))?,
    };
    if mode == Mode::Reboot {
        return reboot(&tools, &state, &guest, name, timeout);
    }
    state.set_stopping(true);
    let stopped = match mode {
        Mode::Halt => halt(&tools, &state, &guest, name, timeout),
        Mode::Kill | Mode::Reboot => kill(&tools, &state, &guest, name),
    };
    if stopped.is_err() {
        state.set_stopping(false);
    }
    stopped
}

/// Halts the guest, powering it off after `timeout`.
fn halt(
    tools: &Tools,
    state: &Observed,
    guest: &Guest,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Deadline::after(timeout);
    let mut helper = guest.spawn_helper(tools.threads, &tools.shim, guest::HALT)?;
    if helper.found_no_command(deadline.left()) {
        log::warn!("{name}: the guest has neither halt nor init; powering it off");
        return kill(tools, state, guest, name);
    }
    if state.wait_until(deadline.left(), is_down)? {
        return Ok(());
    }
    log::warn!(
        "{name}: the guest did not halt within {}s; powering it off",
        timeout.as_secs()
    );
    // the guest we found may have rebooted meanwhile: act on the one running now
    match Guest::find(state, name, Duration::ZERO) {
        Ok(current) => kill(tools, state, &current, name),
        Err(Error::NotRunning(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reboots the guest and waits until its next boot's init runs.
fn reboot(
    tools: &Tools,
    state: &Observed,
    guest: &Guest,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Deadline::after(timeout);
    let before = state.running().map_or(0, |r| r.boot);
    let mut helper = guest.spawn_helper(tools.threads, &tools.shim, guest::REBOOT)?;
    if helper.found_no_command(deadline.left()) {
        return Err(Error::setup(
            format!("{name}: reboot in the guest"),
            Errno::ENOENT,
        ));
    }
    let back = |s: &Observed| s.running().is_some_and(|r| r.boot > before) || is_down(s);
    if !state.wait_until(deadline.left(), back)? {
        return Err(Error::Timeout(format!(
            "{name} did not come back within {}s",
            timeout.as_secs()
        )));
    }
    if is_down(state) {
        return Err(Error::NotRunning(format!(
            "{name} (it went down instead of rebooting)"
        )));
    }
    Ok(())
}
