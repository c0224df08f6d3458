//! The host's mounts as /proc/self/mountinfo lists them, and what follows from them for
//! the root switch of the container's first process ([`RootSwitch`]).
//!
//! pivot_root(2) refuses a root that is the mount namespace's first mount: the initramfs
//! (rootfs), on hosts that run from it without switching to a disk (boards, installers,
//! a busybox initramfs). There the root is
//! switched as switch_root(8) and runc's `--no-pivot` do it: the root tree is moved over
//! `/` and the process chroots into it. The old root stays below it, covered; so that
//! nothing else of the host stays in the guest's mount namespace, every mount of the host
//! that the root directory does not sit on is detached first (runc detaches the host's
//! /proc and /sys there, which would otherwise let the guest mount new ones: the kernel
//! allows that in a user namespace while a fully visible one exists).
//!
//! Only there: `..` at the moved root stays at it because the root is mounted on the
//! namespace's first mount, which has no parent to climb to. A launcher in a chroot,
//! whose `/` is no mount at all, is left to pivot_root, which refuses it as before: moved
//! over a plain directory, the root would let `..` (from a chroot below it, which the
//! guest's root may make) climb into the file system around it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One line of mountinfo: what the root switch needs of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    pub parent: u64,
    /// Where it is mounted, as seen from the caller's root, unescaped.
    pub mount_point: Vec<u8>,
    pub fs_type: String,
}

/// The mounts of a mountinfo text; lines that do not parse are left out.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let mut fields = left.split(' ');
    let id = fields.next()?.parse().ok()?;
    let parent = fields.next()?.parse().ok()?;
    let _device = fields.next()?;
    let _root = fields.next()?;
    let mount_point = unescape(fields.next()?);
    let fs_type = right.split(' ').next()?.to_owned();
    Some(Mount {
        id,
        parent,
        mount_point,
        fs_type,
    })
}

/// The mount points strictly below `dir` (an absolute path without symlinks), relative to
/// it, in the order of `mounts` (a mount after the one it is mounted on).
pub fn below(mounts: &[Mount], dir: &Path) -> Vec<CString> {
    let mut prefix = dir.as_os_str().as_bytes().to_vec();
    if prefix.last() != Some(&b'/') {
        prefix.push(b'/');
    }
    mounts
        .iter()
        .filter_map(|m| m.mount_point.strip_prefix(prefix.as_slice()))
        .filter(|rel| !rel.is_empty())
        .filter_map(|rel| CString::new(rel).ok())
        .collect()
}

/// Detaches mount `id` from `path` in the caller's mount namespace, with everything mounted
/// below it and on top of it: the root a container that shares the runtime's mount
/// namespace (an OCI spec without one) had attached there. False when no such mount is at
/// `path` (detached already, or the caller is in another mount namespace).
pub fn detach(path: &Path, id: u64) -> std::io::Result<bool> {
    let at = path.as_os_str().as_bytes();
    let target = CString::new(at).map_err(std::io::Error::other)?;
    let mut found = false;
    // whatever the container stacked on its own root comes off first, one a turn
    for _ in 0..64 {
        let mounts = parse(&std::fs::read_to_string("/proc/self/mountinfo")?);
        if !mounts.iter().any(|m| m.id == id && m.mount_point == at) {
            return Ok(found);
        }
        found = true;
        nix::mount::umount2(target.as_c_str(), nix::mount::MntFlags::MNT_DETACH)?;
    }
    Err(std::io::Error::other(format!(
        "{} still has mounts stacked on it",
        path.display()
    )))
}

/// mountinfo writes space, tab, newline and backslash in a path as `\OOO` (octal).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// True when `path` is `dir` or below it (by components).
fn is_at_or_below(path: &[u8], dir: &[u8]) -> bool {
    let dir = if dir.len() > 1 {
        dir.strip_suffix(b"/").unwrap_or(dir)
    } else {
        dir
    };
    dir == b"/" || path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

/// How the container's first process can switch to the root directory `root_path`,
/// which is on the mount `root_mount` (its `mnt_id`), given the host's `mounts`.
pub fn root_switch(mounts: &[Mount], root_mount: u64, root_path: &Path) -> RootSwitch {
    // the visible root: the last mount on "/" (a later one is stacked on an earlier one);
    // the namespace's first mount is its own parent in mountinfo
    let root = mounts.iter().rev().find(|m| m.mount_point == b"/");
    if root.is_none_or(|m| m.parent != m.id) {
        return RootSwitch::Pivot;
    }
    // the mounts the root directory sits on, from its own to the namespace's first
    let mut chain = Vec::new();
    let mut next = Some(root_mount);
    while let Some(id) = next.filter(|id| !chain.contains(id)) {
        chain.push(id);
        next = mounts
            .iter()
            .find(|m| m.id == id && m.parent != m.id)
            .map(|m| m.parent);
    }
    let root_path = root_path.as_os_str().as_bytes();
    let detach = mounts
        .iter()
        .filter(|m| chain.contains(&m.parent) && !chain.contains(&m.id))
        .filter(|m| !is_at_or_below(&m.mount_point, root_path))
        .filter_map(|m| CString::new(m.mount_point.clone()).ok())
        .collect();
    RootSwitch::Move { detach }
}

/// How the container's first process makes the root tree its root.
#[derive(Debug, PartialEq, Eq)]
pub enum RootSwitch {
    /// pivot_root(".", "."), then detach the old root: nothing of the host stays.
    Pivot,
    /// The host's root is the initramfs, which pivot_root refuses: detach these mounts of
    /// the host (by their path on the host), then move the root over `/` and chroot.
    Move { detach: Vec<CString> },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busybox initramfs as the host's root, as on the arm64 VM: rootfs is mount 1 and
    /// its own parent; the guest's root directory is on an ext4 disk at /mnt/disk.
    const INITRAMFS: &str = "\
1 1 0:2 / / rw - rootfs rootfs rw,size=498016k,nr_inodes=124504
22 1 0:20 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
24 23 0:22 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
25 1 0:5 / /dev rw,relatime - devtmpfs devtmpfs rw,size=4k
26 1 254:0 / /mnt/disk rw,relatime - ext4 /dev/vda rw
27 26 0:23 / /mnt/disk/scratch rw,relatime - tmpfs tmpfs rw
28 26 0:24 / /mnt/disk/guest/run rw,relatime - tmpfs tmpfs rw
29 1 0:25 / /mnt/with\\040space rw,relatime - tmpfs tmpfs rw
";

    /// A host booted from a disk: its root has a parent (the rootfs below it, not listed).
    const DISK: &str = "\
21 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
22 21 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
";

    #[test]
    fn mountinfo_lines_parse_and_paths_unescape() {
        let mounts = parse(INITRAMFS);
        assert_eq!(mounts.len(), 9);
        assert_eq!(
            mounts[0],
            Mount {
                id: 1,
                parent: 1,
                mount_point: b"/".to_vec(),
                fs_type: "rootfs".into()
            }
        );
        assert_eq!(mounts[8].mount_point, b"/mnt/with space");
        assert_eq!(unescape(r"a\134b\011"), b"a\\b\t");
        assert_eq!(unescape(r"a\9"), b"a\\9");
    }

    #[test]
    fn the_mounts_below_a_directory_are_its_own_parents_first() {
        let mounts = parse(INITRAMFS);
        assert_eq!(
            below(&mounts, Path::new("/mnt/disk")),
            [c"scratch", c"guest/run"]
        );
        assert!(below(&mounts, Path::new("/mnt/disk/guest/run")).is_empty());
        assert!(
            below(&mounts, Path::new("/mnt/with")).is_empty(),
            "a prefix alone"
        );
        assert_eq!(below(&mounts, Path::new("/sys/")), [c"fs/cgroup"]);
    }

    #[test]
    fn a_root_with_a_parent_is_pivoted() {
        let switch = root_switch(&parse(DISK), 21, Path::new("/srv/guest"));
        assert_eq!(switch, RootSwitch::Pivot);
    }

    #[test]
    fn on_the_initramfs_every_host_mount_off_the_root_s_path_is_detached() {
        let mounts = parse(INITRAMFS);
        let switch = root_switch(&mounts, 26, Path::new("/mnt/disk/guest"));
        let detach = |paths: &[&str]| RootSwitch::Move {
            detach: paths.iter().map(|p| CString::new(*p).unwrap()).collect(),
        };
        // not /mnt/disk (the root is on it), nor what is mounted inside the root; /sys's
        // cgroup2 goes with /sys
        assert_eq!(
            switch,
            detach(&[
                "/proc",
                "/sys",
                "/dev",
                "/mnt/disk/scratch",
                "/mnt/with space"
            ])
        );
        // a root directory on the initramfs itself: every other mount goes
        let switch = root_switch(&mounts, 1, Path::new("/srv/guest"));
        assert_eq!(
            switch,
            detach(&["/proc", "/sys", "/dev", "/mnt/disk", "/mnt/with space"])
        );
    }

    #[test]
    fn a_chroot_without_a_mount_on_its_root_is_left_to_pivot_root() {
        let chrooted = "30 29 8:1 /srv /srv rw - ext4 /dev/sda1 rw\n";
        let switch = root_switch(&parse(chrooted), 30, Path::new("/srv/guest"));
        assert_eq!(switch, RootSwitch::Pivot);
    }

    #[test]
    fn paths_below_a_directory_go_by_components() {
        assert!(is_at_or_below(b"/mnt/disk/guest/run", b"/mnt/disk/guest"));
        assert!(is_at_or_below(b"/mnt/disk/guest", b"/mnt/disk/guest/"));
        assert!(!is_at_or_below(b"/mnt/disk/guest2", b"/mnt/disk/guest"));
        assert!(is_at_or_below(b"/anything", b"/"));
    }
}
