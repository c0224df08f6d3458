//! How a guest is started, as OpenVZ's libvzctl does it (`exec_init` in lib/env.c), and the
//! /proc a PID namespace's init gets.

use core::ffi::{CStr, c_ulong};

/// Where the guest's init is looked for, in this order. The first that is an executable
/// file wins (a symlink counts when it resolves inside the guest). libvzctl's own check
/// tests `/ertc/init`, a typo; its execs use the right path.
pub const INIT_PATHS: [&CStr; 3] = [c"/sbin/init", c"/etc/init", c"/bin/init"];

/// The init's argv. Six spaces leave sysvinit room to rewrite its process title in place;
/// `-z` is a flag sysvinit and systemd (as PID 1) accept and ignore.
pub const INIT_ARGV: [&CStr; 3] = [c"init", c"-z", c"      "];

/// The start of the guest's environment; `container=<id>` and the user's variables follow.
pub const BASE_ENV: [&CStr; 2] = [c"HOME=/", c"TERM=linux"];

/// The prefix of the variable that names the container (systemd reads it to know it runs
/// in one).
pub const CONTAINER_VAR: &str = "container=";

/// The cgroup v2 tree a guest is booted in: the container's cgroup (`cradle.NAME`) holds
/// two leaves, [`CGROUP_SHIM_DIR`] for the shim and [`CGROUP_GUEST_DIR`] for the guest. The
/// launcher clones the shim into the first and hands it a descriptor of the second
/// (`--cgroup-fd`); the shim clones the guest init straight into it, and the init's child
/// makes its cgroup namespace there. Nobody is ever moved between cgroups: a move waits for
/// an RCU grace period (cgroup_threadgroup_rwsem), milliseconds per boot. The guest never
/// sees the shim, and the container's cgroup holds no process of its own, so controllers
/// can be delegated to the guest (cgroup v2 allows processes only in leaves once they are).
pub const CGROUP_SHIM_DIR: &str = "shim";
/// See [`CGROUP_SHIM_DIR`].
pub const CGROUP_GUEST_DIR: &str = "guest";
/// The guest's cgroup2 mount, rooted at its own cgroup once it has its cgroup namespace.
pub const CGROUP2: MountCall = MountCall {
    source: Some(c"cgroup2"),
    target: c"sys/fs/cgroup",
    fstype: Some(c"cgroup2"),
    flags: NOSUID_NODEV_NOEXEC,
    data: None,
};

/// One mount(2) call, with paths relative to the guest's root (the caller's working
/// directory is the root when it makes the call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountCall {
    pub source: Option<&'static CStr>,
    pub target: &'static CStr,
    pub fstype: Option<&'static CStr>,
    pub flags: c_ulong,
    pub data: Option<&'static CStr>,
}

const NOSUID_NODEV_NOEXEC: c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// A fresh proc for the PID namespace of the process that mounts it.
pub const PROC: MountCall = MountCall {
    source: Some(c"proc"),
    target: c"proc",
    fstype: Some(c"proc"),
    flags: NOSUID_NODEV_NOEXEC,
    data: None,
};

/// Paths of /proc bound on themselves after [`PROC`], as runc and systemd-nspawn do: the
/// kernel's global knobs and views read-only, and the network knobs, which belong to the
/// guest's own network namespace, writable again. A path the kernel does not have (no
/// `CONFIG_MAGIC_SYSRQ`, say) is skipped. `true` means read-only.
pub const PROC_BINDS: [(&CStr, bool); 6] = [
    (c"proc/bus", true),
    (c"proc/fs", true),
    (c"proc/irq", true),
    (c"proc/sys", true),
    (c"proc/sys/net", false),
    (c"proc/sysrq-trigger", true),
];

/// What a masked path is covered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// A file: the guest's /dev/null is bound on it.
    File,
    /// A directory: an empty read-only tmpfs is mounted on it.
    Dir,
}

/// Paths of /proc masked after [`PROC_BINDS`], as runc and Docker mask them: what shows
/// the host's memory, hardware, keys or timers. A path the kernel does not have is skipped.
pub const PROC_MASKS: [(&CStr, Mask); 9] = [
    (c"proc/acpi", Mask::Dir),
    (c"proc/asound", Mask::Dir),
    (c"proc/kcore", Mask::File),
    (c"proc/keys", Mask::File),
    (c"proc/latency_stats", Mask::File),
    (c"proc/timer_list", Mask::File),
    (c"proc/timer_stats", Mask::File),
    (c"proc/sched_debug", Mask::File),
    (c"proc/scsi", Mask::Dir),
];

/// Paths of /sys masked after it is mounted (read-only), as runc and Docker mask them.
pub const SYS_MASKS: [(&CStr, Mask); 2] = [
    (c"sys/firmware", Mask::Dir),
    (c"sys/devices/virtual/powercap", Mask::Dir),
];

/// The mount(2) call that masks `path` (relative to the root, like the rest of this
/// module): the guest's /dev/null bound on a file, an empty read-only tmpfs on a directory.
pub const fn mask_call(path: &'static CStr, mask: Mask) -> MountCall {
    match mask {
        Mask::File => MountCall {
            source: Some(c"dev/null"),
            target: path,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        },
        Mask::Dir => MountCall {
            source: Some(c"tmpfs"),
            target: path,
            fstype: Some(c"tmpfs"),
            flags: NOSUID_NODEV_NOEXEC | libc::MS_RDONLY,
            data: Some(c"mode=0555"),
        },
    }
}

/// Character devices every guest gets in /dev, bound from the host's own nodes (mknod is
/// refused in a user namespace, and a bind keeps the host's device): path below /dev,
/// major, minor.
pub const DEVICES: [(&CStr, u32, u32); 6] = [
    (c"null", 1, 3),
    (c"zero", 1, 5),
    (c"full", 1, 7),
    (c"random", 1, 8),
    (c"urandom", 1, 9),
    (c"tty", 5, 0),
];

/// Devices a guest gets too when the host has them.
pub const OPTIONAL_DEVICES: [(&CStr, u32, u32); 2] = [(c"fuse", 10, 229), (c"net/tun", 10, 200)];

/// The two calls that re-bind `path` on itself: a bind (which copies the flags of the mount
/// below, read-only included) and a remount that sets them. A remount keeps the flags the
/// kernel locks on a proc mount.
pub const fn proc_bind(path: &'static CStr, read_only: bool) -> [MountCall; 2] {
    let bind = MountCall {
        source: Some(path),
        target: path,
        fstype: None,
        flags: libc::MS_BIND,
        data: None,
    };
    let flags = libc::MS_BIND | libc::MS_REMOUNT | NOSUID_NODEV_NOEXEC;
    let remount = MountCall {
        source: None,
        target: path,
        fstype: None,
        flags: if read_only {
            flags | libc::MS_RDONLY
        } else {
            flags
        },
        data: None,
    };
    [bind, remount]
}

/// The target of step `index` of a guest's /proc setup: 0 is [`PROC`], `1 + i` is
/// `PROC_BINDS[i]`, then `PROC_MASKS` in order. For messages about a failed step.
pub fn proc_step_target(index: usize) -> Option<&'static CStr> {
    let binds = PROC_BINDS.iter().map(|(path, _)| *path);
    let masks = PROC_MASKS.iter().map(|(path, _)| *path);
    core::iter::once(PROC.target)
        .chain(binds)
        .chain(masks)
        .nth(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_openvz_s_with_six_spaces() {
        assert_eq!(INIT_ARGV[0].to_bytes(), b"init");
        assert_eq!(INIT_ARGV[1].to_bytes(), b"-z");
        assert_eq!(INIT_ARGV[2].to_bytes(), b"      ");
    }

    #[test]
    fn init_paths_are_the_three_openvz_tries_in_order() {
        let paths: [&[u8]; 3] = INIT_PATHS.map(|p| p.to_bytes());
        assert_eq!(paths, [&b"/sbin/init"[..], b"/etc/init", b"/bin/init"]);
    }

    #[test]
    fn proc_paths_are_relative_and_remounts_keep_the_locked_flags() {
        assert!(!PROC.target.to_bytes().starts_with(b"/"));
        for (path, read_only) in PROC_BINDS {
            assert!(!path.to_bytes().starts_with(b"/"));
            let [bind, remount] = proc_bind(path, read_only);
            assert_eq!(bind.flags, libc::MS_BIND);
            assert_eq!(remount.flags & NOSUID_NODEV_NOEXEC, NOSUID_NODEV_NOEXEC);
            assert_eq!(remount.flags & libc::MS_RDONLY != 0, read_only);
        }
    }

    #[test]
    fn proc_steps_are_named_by_their_target() {
        assert_eq!(proc_step_target(0), Some(c"proc"));
        assert_eq!(proc_step_target(1), Some(c"proc/bus"));
        assert_eq!(proc_step_target(PROC_BINDS.len() + 1), Some(c"proc/acpi"));
        assert_eq!(
            proc_step_target(PROC_BINDS.len() + PROC_MASKS.len() + 1),
            None
        );
    }

    #[test]
    fn masks_are_relative_and_read_only_or_null() {
        for (path, mask) in PROC_MASKS.iter().chain(SYS_MASKS.iter()) {
            assert!(!path.to_bytes().starts_with(b"/"));
            let call = mask_call(path, *mask);
            match mask {
                Mask::File => assert_eq!(call.source, Some(c"dev/null")),
                Mask::Dir => assert!(call.flags & libc::MS_RDONLY != 0),
            }
        }
    }
}
