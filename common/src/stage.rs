//! Every step that can fail before the guest (or the command) runs.
//!
//! A child that fails between fork and exec cannot log: it writes a [`crate::errpipe::Failure`]
//! naming its stage, and the process that reads the pipe says what went wrong.

/// A step before `execve` of the guest init or the command, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// The launcher's child runs its setup plan (namespaces, mounts, devices, pivot_root):
    /// the failure's `detail` is the index of the step in that plan, which only the
    /// launcher knows how to describe.
    Setup = 1,
    /// The launcher's child could not exec the shim.
    ExecShim = 2,
    /// The shim found no executable init in the guest: OpenVZ's "bad template".
    FindInit = 3,
    /// The shim could not create the guest's nested PID and mount namespaces.
    SpawnGuest = 4,
    /// The guest's child could not make its cgroup namespace (`detail` 0) or mount its
    /// /sys/fs/cgroup (`detail` 1).
    GuestCgroup = 10,
    /// The guest's child could not mount its /proc; `detail` is the step, as
    /// [`crate::guest::proc_step_target`] numbers them.
    GuestProc = 5,
    /// The guest's child could not put /dev/console on its standard streams.
    GuestConsole = 6,
    /// execve of the guest init failed; `detail` indexes [`crate::guest::INIT_PATHS`].
    ExecInit = 7,
    /// The shim could not fork the command's process.
    SpawnCommand = 8,
    /// execve of the command failed.
    ExecCommand = 9,
    /// `cradle-shim --enter` could not enter a running guest; `detail` is the step:
    /// [`ENTER_STEPS`] names them.
    EnterGuest = 11,
    /// A system container's init could not take on its process's restrictions
    /// (`cradle-shim --system`): no_new_privs (`detail` 0), the seccomp filter (1), the
    /// bounding set (2), the capabilities (3).
    Restrict = 12,
}

/// The steps of entering a running guest, by the `detail` of a [`Stage::EnterGuest`]
/// failure.
pub const ENTER_STEPS: [&str; 8] = [
    "join the guest's PID namespace",
    "join the guest init's namespaces",
    "become the guest's root",
    "drop capabilities from the bounding set",
    "reboot(2) POWER_OFF in the guest's PID namespace",
    "make the helper undumpable",
    "limit the capabilities to the guest's",
    "join the guest init's cgroup namespace",
];

impl Stage {
    const ALL: [Stage; 12] = [
        Stage::Setup,
        Stage::ExecShim,
        Stage::FindInit,
        Stage::SpawnGuest,
        Stage::GuestCgroup,
        Stage::GuestProc,
        Stage::GuestConsole,
        Stage::ExecInit,
        Stage::SpawnCommand,
        Stage::ExecCommand,
        Stage::EnterGuest,
        Stage::Restrict,
    ];

    /// The stage with this wire number, if there is one.
    pub fn from_u32(n: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|stage| *stage as u32 == n)
    }

    /// What the step does, in words a user can act on.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Setup => "set up the container",
            Stage::ExecShim => "exec the shim",
            Stage::FindInit => "find the guest's init",
            Stage::SpawnGuest => "create the guest's PID namespace",
            Stage::GuestCgroup => "give the guest its cgroup namespace",
            Stage::GuestProc => "mount the guest's /proc",
            Stage::GuestConsole => "open /dev/console for the guest init",
            Stage::ExecInit => "exec the guest init",
            Stage::SpawnCommand => "fork the command",
            Stage::ExecCommand => "exec the command",
            Stage::EnterGuest => "enter the guest",
            Stage::Restrict => "restrict the init (AppArmor, no_new_privs, seccomp, capabilities)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_its_own_wire_number() {
        for stage in Stage::ALL {
            assert_eq!(Stage::from_u32(stage as u32), Some(stage));
        }
        assert_eq!(Stage::from_u32(0), None);
        assert_eq!(Stage::from_u32(Stage::ALL.len() as u32 + 1), None);
        let mut numbers: Vec<u32> = Stage::ALL.iter().map(|s| *s as u32).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(numbers.len(), Stage::ALL.len());
    }
}
