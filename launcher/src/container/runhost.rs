//! systemd's container interface, as systemd-nspawn provides it to a booted guest:
//!
//! - `$container_uuid` in the guest init's environment, and the same in
//!   `/run/host/container-uuid`: the guest's own machine id when its `/etc/machine-id` has
//!   one (so the two agree), else a random one per `cradle start` (systemd in a guest with
//!   an empty machine id then takes it as its machine id);
//! - `/run/host/container-manager`: `cradle`;
//! - `/run/host/os-release`: the host's `/etc/os-release` (or `/usr/lib/os-release`);
//!
//! while `$container` stays the guest's name, as OpenVZ sets it. `/run` is a tmpfs the
//! launcher mounts (owned by the guest's root), so systemd in the guest, which mounts one
//! only where `/run` is no mount point yet, leaves it and its `/run/host` in place;
//! `/run/host` is a tmpfs of its own, read-only (and, with a user namespace, locked so).
//! Inits that mount their own tmpfs on `/run` (busybox's rcS, say) hide it, and boot as
//! before. `plan` makes the mounts and files from a [`RunHost`].

use std::ffi::CStr;
use std::fs;
use std::io::Read;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use crate::container::rootfs::RootDir;

/// What `/run/host/container-manager` says.
pub const MANAGER: &str = "cradle";

/// The most of a host's os-release (or a guest's machine-id) read.
const MAX_FILE: u64 = 64 * 1024;

/// What a booted guest finds in `/run/host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunHost {
    /// The host's os-release, when it has one.
    pub os_release: Option<Vec<u8>>,
    /// The container's UUID, as `$container_uuid` has it.
    pub uuid: String,
}

/// The host's os-release (os-release(5): `/etc/os-release`, else `/usr/lib/os-release`).
pub fn host_os_release() -> Option<Vec<u8>> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|path| {
            let mut text = Vec::new();
            fs::File::open(path)
                .and_then(|f| f.take(MAX_FILE).read_to_end(&mut text))
                .ok()
                .map(|_| text)
        })
}

/// The UUID of a guest: its machine id, when its root has one, else a random one.
pub fn container_uuid(root: &RootDir) -> String {
    let bytes = read_below(root, c"etc/machine-id")
        .and_then(|text| parse_machine_id(&text))
        .unwrap_or_else(random_id);
    format_uuid(bytes)
}

/// A file below the guest's root, resolved from its descriptor (no symlink followed, no
/// way out of the root: the guest's files are the guest's).
fn read_below(root: &RootDir, path: &CStr) -> Option<Vec<u8>> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let fd = openat2(root.fd(), path, how).ok()?;
    let file = fs::File::from(fd);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut text).ok()?;
    Some(text)
}

/// A machine id (machine-id(5): 32 lowercase hex digits and a newline; all zeros and
/// "uninitialized" are none).
fn parse_machine_id(text: &[u8]) -> Option<[u8; 16]> {
    let text = std::str::from_utf8(text).ok()?.trim();
    if text.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    (id != [0; 16]).then_some(id)
}

/// 16 random bytes as a version 4 UUID (RFC 9562).
fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let got = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut id));
    if got.is_err() {
        // no /dev/urandom: the time and pid, unique enough for a name
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        id.copy_from_slice(&(now ^ u128::from(std::process::id()) << 96).to_le_bytes());
    }
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// `8-4-4-4-12` lowercase hex, as systemd writes an id as a UUID.
fn format_uuid(id: [u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_id_is_the_uuid() {
        let id = parse_machine_id(b"0b5f5ffa6e3a4c4f9a8e1d2a3b4c5d6e\n").unwrap();
        assert_eq!(format_uuid(id), "0b5f5ffa-6e3a-4c4f-9a8e-1d2a3b4c5d6e");
        for none in [
            &b""[..],
            b"uninitialized\n",
            b"00000000000000000000000000000000\n",
            b"0b5f5ffa6e3a4c4f9a8e1d2a3b4c5d6",
            b"zz5f5ffa6e3a4c4f9a8e1d2a3b4c5d6e",
        ] {
            assert_eq!(parse_machine_id(none), None, "{none:?}");
        }
    }

    #[test]
    fn random_ids_are_version_4_uuids() {
        let a = format_uuid(random_id());
        let b = format_uuid(random_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]), "{a}");
    }

    #[test]
    fn a_guest_s_machine_id_is_read_below_its_root_only() {
        let dir = crate::container::rootfs::tests::closed_dir("runhost");
        fs::create_dir_all(dir.join("etc")).unwrap();
        let root = RootDir::open(&dir).unwrap();
        // a symlink out of the root is not followed: a random id instead
        std::os::unix::fs::symlink("/etc/machine-id", dir.join("etc/machine-id")).unwrap();
        assert_eq!(read_below(&root, c"etc/machine-id"), None);
        fs::remove_file(dir.join("etc/machine-id")).unwrap();
        fs::write(
            dir.join("etc/machine-id"),
            "0b5f5ffa6e3a4c4f9a8e1d2a3b4c5d6e\n",
        )
        .unwrap();
        assert_eq!(
            container_uuid(&root),
            "0b5f5ffa-6e3a-4c4f-9a8e-1d2a3b4c5d6e"
        );
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
