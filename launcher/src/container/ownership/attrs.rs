//! The ids kept inside extended attributes, which chown(2) leaves alone: the uids and gids
//! of POSIX ACL entries (`system.posix_acl_access`, `system.posix_acl_default`) and the
//! root id of a file capability (`security.capability`), shifted as the owners are.
//! Pure functions on the attributes' bytes, as the kernel reads and writes them for a
//! process of the host's user namespace (`include/uapi/linux/posix_acl_xattr.h`,
//! `include/uapi/linux/capability.h`).

use super::Shift;

/// The ACL attributes' header: version 2.
const ACL_VERSION: u32 = 2;
/// The tags of the entries whose id is a uid (ACL_USER) or a gid (ACL_GROUP); the others
/// (owner, owning group, mask, other) carry none.
const ACL_USER: u16 = 0x02;
const ACL_GROUP: u16 = 0x08;

/// `value` (an ACL attribute) with the ids of its named user and group entries shifted;
/// `None` when nothing changes, or when it is not an ACL of this format (left as it is).
pub fn shift_acl(value: &[u8], shift: Shift) -> Option<Vec<u8>> {
    let version = u32::from_le_bytes(value.get(..4)?.try_into().ok()?);
    if version != ACL_VERSION || (value.len() - 4) % 8 != 0 {
        return None;
    }
    let mut out = value.to_vec();
    let mut changed = false;
    for entry in out[4..].chunks_exact_mut(8) {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        if tag != ACL_USER && tag != ACL_GROUP {
            continue;
        }
        let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        let new = shift.id(id);
        if new != id {
            entry[4..8].copy_from_slice(&new.to_le_bytes());
            changed = true;
        }
    }
    changed.then_some(out)
}

/// `magic_etc` of a file capability: the revision in the high byte.
const REVISION_MASK: u32 = 0xFF00_0000;
/// Revision 2 (20 bytes): no root id, which means the host's root.
const REVISION_2: u32 = 0x0200_0000;
/// Revision 3 (24 bytes): a root id after revision 2's fields, the uid that is root in the
/// user namespace the capability is for.
const REVISION_3: u32 = 0x0300_0000;
const SIZE_2: usize = 20;
const SIZE_3: usize = 24;

/// The root id of a file capability: 0 for revision 2 (the kernel shows a revision 3 whose
/// root id is the reader's root as a revision 2); `None` for another revision.
pub fn caps_root(value: &[u8]) -> Option<u32> {
    let magic = u32::from_le_bytes(value.get(..4)?.try_into().ok()?);
    match (magic & REVISION_MASK, value.len()) {
        (REVISION_2, SIZE_2) => Some(0),
        (REVISION_3, SIZE_3) => Some(u32::from_le_bytes(value[20..24].try_into().ok()?)),
        _ => None,
    }
}

/// `value` (a file capability) with its root id shifted: a revision 3 naming the guest's
/// root on the host (so that it gives nothing to a process of the host's), or a revision 2
/// when the root id becomes 0 (the host's root, as `setcap` writes it); `None` when
/// nothing changes or it is of another revision (revision 1: left as it is).
pub fn shift_caps(value: &[u8], shift: Shift) -> Option<Vec<u8>> {
    let root = caps_root(value)?;
    let new = shift.id(root);
    if new == root {
        return None;
    }
    let magic = u32::from_le_bytes(value[..4].try_into().ok()?);
    let flags = magic & !REVISION_MASK;
    let mut out = value[..SIZE_2].to_vec();
    if new == 0 {
        out[..4].copy_from_slice(&(REVISION_2 | flags).to_le_bytes());
    } else {
        out[..4].copy_from_slice(&(REVISION_3 | flags).to_le_bytes());
        out.extend_from_slice(&new.to_le_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u32 = 0x0020_0000;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = ACL_VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn named_entries_move_and_the_others_keep_their_undefined_id() {
        let shift = Shift { from: 0, to: B };
        let none = u32::MAX;
        let before = acl(&[
            (0x01, 6, none),
            (ACL_USER, 6, 1000),
            (0x04, 4, none),
            (ACL_GROUP, 4, 50),
            (0x10, 6, none),
            (0x20, 4, none),
        ]);
        let after = shift_acl(&before, shift).unwrap();
        let want = acl(&[
            (0x01, 6, none),
            (ACL_USER, 6, B + 1000),
            (0x04, 4, none),
            (ACL_GROUP, 4, B + 50),
            (0x10, 6, none),
            (0x20, 4, none),
        ]);
        assert_eq!(after, want);
        // once shifted, nothing changes: a resumed shift may meet it again
        assert_eq!(shift_acl(&after, shift), None);
        // malformed: left alone
        assert_eq!(shift_acl(&before[..7], shift), None);
        assert_eq!(shift_acl(b"", shift), None);
    }

    #[test]
    fn a_capability_of_the_host_s_root_becomes_the_guest_root_s_and_back() {
        let v2 = {
            let mut v = (REVISION_2 | 1).to_le_bytes().to_vec();
            v.extend_from_slice(&[0x00, 0x20, 0, 0, 0, 0, 0, 0]); // cap_net_bind_service
            v.extend_from_slice(&[0; 8]);
            v
        };
        assert_eq!(caps_root(&v2), Some(0));
        let v3 = shift_caps(&v2, Shift { from: 0, to: B }).unwrap();
        assert_eq!(v3.len(), SIZE_3);
        assert_eq!(caps_root(&v3), Some(B));
        assert_eq!(&v3[4..20], &v2[4..20], "the sets stay");
        assert_eq!(u32::from_le_bytes(v3[..4].try_into().unwrap()) & 1, 1);
        assert_eq!(shift_caps(&v3, Shift { from: 0, to: B }), None);
        let other = shift_caps(&v3, Shift { from: B, to: 2 * B }).unwrap();
        assert_eq!(caps_root(&other), Some(2 * B));
        assert_eq!(shift_caps(&other, Shift { from: 2 * B, to: 0 }), Some(v2));
        assert_eq!(shift_caps(&[1, 0, 0, 1], Shift { from: 0, to: B }), None);
    }
}
