//! The ids the host has given out, which no guest's range may hold: the users of
//! `/etc/passwd` (their uids, and the gids of their primary groups), the groups of
//! `/etc/group`, and the ranges `/etc/subuid` and `/etc/subgid` give the host's users (for
//! their rootless containers). A guest whose range held one would have, as its root or
//! another of its users, a user of the host, owning that user's files.
//!
//! The files are read once per start, as bytes (a name need not be UTF-8), and anything
//! that does not parse is skipped, as glibc's files module skips it: a bad line never fails
//! a start, and never hides the lines after it. Users that only NSS knows (LDAP, sssd,
//! systemd's userdb) are not seen; systemd-nspawn's own are, through its locks (see
//! `locks`).

use std::fs;
use std::io;
use std::ops::Range;

use crate::error::{Error, Result};

use super::RANGE;

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";
const SUBUID: &str = "/etc/subuid";
const SUBGID: &str = "/etc/subgid";

/// Ids the host has given out, and what they are.
#[derive(Debug)]
pub struct Claim {
    pub ids: Range<u64>,
    /// For a message: `uid 1000 (alice) of /etc/passwd`.
    pub what: String,
}

/// Everything the host has given out.
#[derive(Debug, Default)]
pub struct HostIds {
    claims: Vec<Claim>,
}

impl HostIds {
    /// The host's, from its four files (a file that is not there gives nothing).
    pub fn read() -> Result<Self> {
        let mut ids = HostIds::default();
        ids.add_users(PASSWD, &read_db(PASSWD)?);
        ids.add_groups(GROUP, &read_db(GROUP)?);
        for file in [SUBUID, SUBGID] {
            ids.add_subordinate(file, &read_db(file)?);
        }
        Ok(ids)
    }

    /// What of the host's the range at `base` would hold, if anything.
    pub fn conflict(&self, base: u32) -> Option<&Claim> {
        let range = u64::from(base)..u64::from(base) + u64::from(RANGE);
        self.claims
            .iter()
            .find(|c| c.ids.start < range.end && range.start < c.ids.end)
    }

    /// Each user's uid and primary gid: `NAME:PASSWORD:UID:GID:GECOS:HOME:SHELL`.
    pub fn add_users(&mut self, file: &str, text: &[u8]) {
        for fields in records(text) {
            let name = printable(fields[0]);
            if let Some(uid) = id(fields.get(2)) {
                self.add_id(uid, format!("uid {uid} ({name}) of {file}"));
            }
            if let Some(gid) = id(fields.get(3)) {
                self.add_id(gid, format!("gid {gid} (the group of {name}) of {file}"));
            }
        }
    }

    /// Each group's gid: `NAME:PASSWORD:GID:MEMBERS`.
    pub fn add_groups(&mut self, file: &str, text: &[u8]) {
        for fields in records(text) {
            if let Some(gid) = id(fields.get(2)) {
                let name = printable(fields[0]);
                self.add_id(gid, format!("gid {gid} ({name}) of {file}"));
            }
        }
    }

    /// Each range given to a user: `NAME:START:COUNT`.
    pub fn add_subordinate(&mut self, file: &str, text: &[u8]) {
        for fields in records(text) {
            let (Some(start), Some(count)) = (number(fields.get(1)), number(fields.get(2))) else {
                continue;
            };
            if count == 0 {
                continue;
            }
            let end = start.saturating_add(count);
            let name = printable(fields[0]);
            let what = format!("{name}'s ids {start}-{} in {file}", end - 1);
            self.claims.push(Claim {
                ids: start..end,
                what,
            });
        }
    }

    fn add_id(&mut self, id: u32, what: String) {
        let id = u64::from(id);
        self.claims.push(Claim {
            ids: id..id + 1,
            what,
        });
    }
}

/// A host database, empty when the host has none.
fn read_db(path: &str) -> Result<Vec<u8>> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::host(format!("read {path}"), e)),
    }
}

/// The records of a colon-separated host database, each as its fields (at least one).
/// Blank lines and `#` comments are skipped, as glibc skips them.
fn records(text: &[u8]) -> impl Iterator<Item = Vec<&[u8]>> {
    text.split(|&b| b == b'\n')
        .filter(|line| !matches!(line.trim_ascii_start().first(), None | Some(b'#')))
        .map(|line| line.split(|&b| b == b':').collect())
}

/// A decimal field; blanks around it (a `\r` of a file edited elsewhere) are allowed, so
/// that such a line still counts: a stricter reading could only let more ids through.
fn number(field: Option<&&[u8]>) -> Option<u64> {
    let text = std::str::from_utf8(field?).ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A uid or gid field (ids are 32 bits).
fn id(field: Option<&&[u8]>) -> Option<u32> {
    number(field).and_then(|n| u32::try_from(n).ok())
}

/// A name of a host database, printable on one line.
fn printable(name: &[u8]) -> String {
    String::from_utf8_lossy(name).escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(host: &HostIds) -> Vec<(u64, u64)> {
        host.claims
            .iter()
            .map(|c| (c.ids.start, c.ids.end))
            .collect()
    }

    #[test]
    fn users_and_their_primary_groups_are_read_from_passwd() {
        let mut host = HostIds::default();
        host.add_users(
            PASSWD,
            b"root:x:0:0:root:/root:/bin/bash\n\
              \n\
              # a comment:x:5:5\n\
              bob:x:1050000:1050001:Bob:/home/bob:/bin/sh\r\n\
              caf\xe9:x: 2000 :2001\n\
              short:x\n\
              +::::::\n\
              nis:x:abc:-1\n\
              huge:x:99999999999:\n\
              last:x:3000:3000",
        );
        assert_eq!(
            ids(&host),
            [
                (0, 1),
                (0, 1),
                (1_050_000, 1_050_001),
                (1_050_001, 1_050_002),
                (2000, 2001),
                (2001, 2002),
                (3000, 3001),
                (3000, 3001),
            ]
        );
        let bob = host.conflict(0x0010_0000).unwrap();
        assert_eq!(bob.what, "uid 1050000 (bob) of /etc/passwd");
        assert_eq!(
            host.claims[4].what, "uid 2000 (caf\u{fffd}) of /etc/passwd",
            "a name that is not UTF-8 is still named"
        );
    }

    #[test]
    fn groups_are_read_from_group() {
        let mut host = HostIds::default();
        host.add_groups(
            GROUP,
            b"root:x:0:\nstaff:x:1114111:bob,alice\n#x:x:7:\nbroken\nodd:x::\n",
        );
        assert_eq!(ids(&host), [(0, 1), (1_114_111, 1_114_112)]);
        let staff = host.conflict(0x0010_0000).unwrap();
        assert_eq!(staff.what, "gid 1114111 (staff) of /etc/group");
        assert!(host.conflict(0x0011_0000).is_none());
    }

    #[test]
    fn subordinate_ranges_are_read_from_subuid_and_subgid() {
        let mut host = HostIds::default();
        host.add_subordinate(
            SUBUID,
            b"alice:100000:65536\nbob:600000:10\nnone:700000:0\n# junk\nbad:x:1\nbig:4294967290:100\n",
        );
        assert_eq!(
            ids(&host),
            [
                (100_000, 165_536),
                (600_000, 600_010),
                (4_294_967_290, 4_294_967_390)
            ]
        );
        assert!(host.conflict(131_072).is_some());
        assert!(host.conflict(589_824).is_some());
        assert!(
            host.conflict(655_360).is_none(),
            "an empty range holds nothing"
        );
        assert_eq!(
            host.conflict(65_536).unwrap().what,
            "alice's ids 100000-165535 in /etc/subuid"
        );
        assert!(host.conflict(0xFFFF_0000).is_some());
    }

    #[test]
    fn the_host_s_own_files_are_read() {
        let host = HostIds::read().unwrap();
        assert!(
            host.claims.iter().any(|c| c.ids == (0..1)),
            "root is a host user"
        );
    }

    #[test]
    fn a_range_holding_no_host_id_has_no_conflict() {
        let mut host = HostIds::default();
        host.add_users(PASSWD, b"a:x:524287:524287\nb:x:589824:1\n");
        // 524288-589823 lies between the two
        assert!(host.conflict(524_288).is_none());
        assert!(host.conflict(589_824).is_some());
        assert!(host.conflict(458_752).is_some());
    }
}
