//! The capability bounding set of a system container: which capabilities the guest may
//! ever hold, whatever it execs.
//!
//! [`CapSet::DEFAULT`] starts from systemd-nspawn's retained set (`arg_caps_retain` in
//! `src/nspawn/nspawn.c`) with two deviations, each explained there. `--capability NAME` adds
//! to it and `--drop-capability NAME` takes away; [`resolve`] turns both into the set
//! to keep, built before fork, and `sys::drop_bounding_set` applies it in the child.

use std::fmt;

use crate::error::{Error, Result};

/// Every capability the kernel knows (linux/capability.h), by number, without the `CAP_`
/// prefix. A kernel newer than this table may know more: those are dropped by default and
/// kept only by `--capability all`.
pub const NAMES: [&str; 41] = [
    "CHOWN",              // 0
    "DAC_OVERRIDE",       // 1
    "DAC_READ_SEARCH",    // 2
    "FOWNER",             // 3
    "FSETID",             // 4
    "KILL",               // 5
    "SETGID",             // 6
    "SETUID",             // 7
    "SETPCAP",            // 8
    "LINUX_IMMUTABLE",    // 9
    "NET_BIND_SERVICE",   // 10
    "NET_BROADCAST",      // 11
    "NET_ADMIN",          // 12
    "NET_RAW",            // 13
    "IPC_LOCK",           // 14
    "IPC_OWNER",          // 15
    "SYS_MODULE",         // 16
    "SYS_RAWIO",          // 17
    "SYS_CHROOT",         // 18
    "SYS_PTRACE",         // 19
    "SYS_PACCT",          // 20
    "SYS_ADMIN",          // 21
    "SYS_BOOT",           // 22
    "SYS_NICE",           // 23
    "SYS_RESOURCE",       // 24
    "SYS_TIME",           // 25
    "SYS_TTY_CONFIG",     // 26
    "MKNOD",              // 27
    "LEASE",              // 28
    "AUDIT_WRITE",        // 29
    "AUDIT_CONTROL",      // 30
    "SETFCAP",            // 31
    "MAC_OVERRIDE",       // 32
    "MAC_ADMIN",          // 33
    "SYSLOG",             // 34
    "WAKE_ALARM",         // 35
    "BLOCK_SUSPEND",      // 36
    "AUDIT_READ",         // 37
    "PERFMON",            // 38
    "BPF",                // 39
    "CHECKPOINT_RESTORE", // 40
];

/// A set of capabilities, bit N for capability N (the kernel's own encoding).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    /// The set with bit N for capability N.
    pub const fn from_bits(bits: u64) -> CapSet {
        CapSet(bits)
    }

    /// Every capability, including those newer than [`NAMES`] (`--capability all`).
    pub const ALL: CapSet = CapSet(u64::MAX);

    /// What a system container keeps. systemd-nspawn's retained set, except:
    /// - `NET_ADMIN` is kept: the guest always has a network namespace of its own, and
    ///   nspawn keeps it too whenever it gives one (`--private-network`);
    /// - `AUDIT_CONTROL` is dropped: the audit subsystem is not namespaced, so it would let
    ///   the guest change the host's audit rules or turn auditing off (Docker's default
    ///   set leaves it out too). `AUDIT_WRITE` stays, as in nspawn and Docker, so that
    ///   login and su keep working where they insist on writing audit records.
    ///
    /// Dropped among others: SYS_MODULE, SYS_RAWIO, SYS_TIME, SYSLOG, MAC_ADMIN,
    /// MAC_OVERRIDE, WAKE_ALARM, BLOCK_SUSPEND, BPF, PERFMON, SYS_PACCT, AUDIT_READ,
    /// IPC_LOCK, CHECKPOINT_RESTORE: each reaches state the host shares.
    pub const DEFAULT: CapSet = CapSet::named(&[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_NICE",
        "SYS_PTRACE",
        "SYS_RESOURCE",
        "SYS_TTY_CONFIG",
        "AUDIT_WRITE",
    ]);

    /// The set of the capabilities named (without `CAP_`, upper case, as in [`NAMES`]); a
    /// name that is not there fails the build.
    const fn named(names: &[&str]) -> CapSet {
        let mut bits = 0u64;
        let mut i = 0;
        while i < names.len() {
            match number_of(names[i].as_bytes()) {
                Some(n) => bits |= 1 << n,
                None => panic!("a name that is not in caps::NAMES"),
            }
            i += 1;
        }
        CapSet(bits)
    }

    /// The kernel's encoding: bit N for capability N.
    pub const fn bits(self) -> u64 {
        self.0
    }

    pub const fn contains(self, number: u32) -> bool {
        number < 64 && self.0 & (1 << number) != 0
    }

    pub const fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    pub const fn difference(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    /// Drops every other capability from the calling thread's bounding set
    /// (`sys::drop_bounding_set`), and from its permitted and effective sets, with the
    /// inheritable and ambient ones emptied (`sys::limit_capabilities`). Allocation-free:
    /// for the container's first process, before it execs.
    pub fn restrict(self) -> nix::Result<()> {
        crate::sys::drop_bounding_set(self.0)?;
        crate::sys::limit_capabilities(self.0)
    }
}

/// `CAP_CHOWN,CAP_KILL,...`, in number order; capabilities newer than [`NAMES`] by number.
impl fmt::Display for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut first = true;
        for number in (0..64).filter(|&n| self.contains(n)) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match NAMES.get(number as usize) {
                Some(name) => write!(f, "CAP_{name}")?,
                None => write!(f, "{number}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CapSet({self})")
    }
}

/// ASCII case-insensitive equality, for const fns.
const fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if !a[i].eq_ignore_ascii_case(&b[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// The number of a capability named as in [`NAMES`], in any case.
const fn number_of(name: &[u8]) -> Option<u32> {
    let mut n = 0;
    while n < NAMES.len() {
        if eq_ignore_case(name, NAMES[n].as_bytes()) {
            return Some(n as u32);
        }
        n += 1;
    }
    None
}

/// One word of `--capability`/`--drop-capability`: a capability as `CAP_NET_ADMIN`,
/// `NET_ADMIN` or `net_admin` (any case), or `all`.
pub fn parse(word: &str) -> Option<CapSet> {
    if word.eq_ignore_ascii_case("all") {
        return Some(CapSet::ALL);
    }
    let name = match word.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("cap_") => &word[4..],
        _ => word,
    };
    number_of(name.as_bytes()).map(|n| CapSet(1 << n))
}

/// The union of the capabilities `values` name; each value may be a comma-separated list,
/// as nspawn's are. `option` names the option for the error.
/// The capabilities `values` name (each a name, a comma-separated list of them, or `all`);
/// an unknown one is a usage error naming `option` (the option or config key).
pub fn parse_all(option: &str, values: &[String]) -> Result<CapSet> {
    let mut set = CapSet::EMPTY;
    for word in values.iter().flat_map(|v| v.split(',')) {
        let caps = parse(word).ok_or_else(|| {
            Error::Usage(format!(
                "{option}: unknown capability {word:?} (give a name such as CAP_NET_ADMIN or net_admin, or all)"
            ))
        })?;
        set = set.union(caps);
    }
    Ok(set)
}

/// The bounding set to keep: [`CapSet::DEFAULT`] plus every `--capability`, minus every
/// `--drop-capability`. Drop wins, whatever the order on the command line, as in nspawn
/// (whose `--drop-capability` applies after `--capability`): `--drop-capability all
/// --capability CAP_KILL` keeps nothing, so a `--drop-capability` never has to be read
/// against what follows it.
pub fn resolve(add: &[String], drop: &[String]) -> Result<CapSet> {
    resolve_over(CapSet::DEFAULT, add, drop)
}

/// [`resolve`] from `base` instead of the default set: a config file's set is the base
/// the command line's options apply to, so a `--capability` gives back what the file
/// drops, and a `--drop-capability` takes what it keeps.
pub fn resolve_over(base: CapSet, add: &[String], drop: &[String]) -> Result<CapSet> {
    let add = parse_all("--capability", add)?;
    let drop = parse_all("--drop-capability", drop)?;
    Ok(base.union(add).difference(drop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;
    use crate::testing::{in_child, require_root};

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    fn number(name: &str) -> u32 {
        number_of(name.as_bytes()).unwrap()
    }

    #[test]
    fn numbers_are_the_kernel_s() {
        // linux/capability.h
        for (name, n) in [
            ("CHOWN", 0),
            ("KILL", 5),
            ("SETPCAP", 8),
            ("NET_ADMIN", 12),
            ("SYS_MODULE", 16),
            ("SYS_ADMIN", 21),
            ("SYS_TIME", 25),
            ("MKNOD", 27),
            ("AUDIT_WRITE", 29),
            ("SETFCAP", 31),
            ("SYSLOG", 34),
            ("AUDIT_READ", 37),
            ("BPF", 39),
            ("CHECKPOINT_RESTORE", 40),
        ] {
            assert_eq!(number(name), n, "{name}");
        }
        let mut sorted = NAMES.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), NAMES.len(), "a name twice");
    }

    #[test]
    fn default_is_nspawn_s_with_net_admin_and_without_audit_control() {
        let nspawn = CapSet::named(&[
            "AUDIT_CONTROL",
            "AUDIT_WRITE",
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "FSETID",
            "IPC_OWNER",
            "KILL",
            "LEASE",
            "LINUX_IMMUTABLE",
            "MKNOD",
            "NET_BIND_SERVICE",
            "NET_BROADCAST",
            "NET_RAW",
            "SETFCAP",
            "SETGID",
            "SETPCAP",
            "SETUID",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_CHROOT",
            "SYS_NICE",
            "SYS_PTRACE",
            "SYS_RESOURCE",
            "SYS_TTY_CONFIG",
        ]);
        let expected = nspawn
            .union(CapSet::named(&["NET_ADMIN"]))
            .difference(CapSet::named(&["AUDIT_CONTROL"]));
        assert_eq!(CapSet::DEFAULT, expected);
        assert_eq!(CapSet::DEFAULT.bits().count_ones(), 26);
    }

    #[test]
    fn default_drops_what_reaches_the_host() {
        for name in [
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_TIME",
            "SYSLOG",
            "MAC_ADMIN",
            "MAC_OVERRIDE",
            "WAKE_ALARM",
            "BLOCK_SUSPEND",
            "BPF",
            "PERFMON",
            "SYS_PACCT",
            "AUDIT_CONTROL",
            "AUDIT_READ",
            "IPC_LOCK",
            "CHECKPOINT_RESTORE",
        ] {
            assert!(!CapSet::DEFAULT.contains(number(name)), "{name}");
        }
        // nothing newer than the table
        assert_eq!(CapSet::DEFAULT.bits() >> NAMES.len(), 0);
    }

    #[test]
    fn names_in_every_spelling() {
        let net_admin = CapSet(1 << 12);
        for word in [
            "CAP_NET_ADMIN",
            "cap_net_admin",
            "NET_ADMIN",
            "net_admin",
            "Cap_Net_Admin",
        ] {
            assert_eq!(parse(word), Some(net_admin), "{word}");
        }
        assert_eq!(parse("all"), Some(CapSet::ALL));
        assert_eq!(parse("ALL"), Some(CapSet::ALL));
        for word in [
            "",
            "CAP_",
            "cap_all",
            "net-admin",
            "NET_ADMINX",
            "12",
            "CAP_NET_ADMIN ",
        ] {
            assert_eq!(parse(word), None, "{word:?}");
        }
    }

    #[test]
    fn add_and_drop_around_the_default() {
        let kept = resolve(&words(&["sys_time"]), &words(&["CAP_NET_RAW"])).unwrap();
        assert!(kept.contains(number("SYS_TIME")));
        assert!(!kept.contains(number("NET_RAW")));
        assert!(kept.contains(number("SYS_ADMIN")));
        assert_eq!(resolve(&[], &[]).unwrap(), CapSet::DEFAULT);
        // comma-separated lists, as nspawn takes them
        let kept = resolve(&words(&["SYSLOG,bpf"]), &[]).unwrap();
        assert!(kept.contains(number("SYSLOG")) && kept.contains(number("BPF")));
    }

    #[test]
    fn drop_wins_over_add() {
        let kept = resolve(
            &words(&["NET_RAW", "SYS_TIME"]),
            &words(&["net_raw", "sys_time"]),
        );
        let kept = kept.unwrap();
        assert!(!kept.contains(number("NET_RAW")) && !kept.contains(number("SYS_TIME")));
        assert_eq!(
            resolve(&words(&["KILL"]), &words(&["all"])).unwrap(),
            CapSet::EMPTY
        );
        assert_eq!(
            resolve(&words(&["all"]), &words(&["SYS_MODULE"])).unwrap(),
            CapSet::ALL.difference(CapSet(1 << 16))
        );
    }

    #[test]
    fn unknown_name_is_a_one_line_usage_error_naming_it() {
        let err = resolve(&words(&["CAP_NET_ADMIN,cap_frobnicate"]), &[]).unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
        let text = err.to_string();
        assert!(text.contains("\"cap_frobnicate\""), "{text}");
        assert!(text.starts_with("--capability:"), "{text}");
        assert!(!text.contains('\n'));
        let err = resolve(&[], &words(&["nope"])).unwrap_err().to_string();
        assert!(
            err.starts_with("--drop-capability:") && err.contains("\"nope\""),
            "{err}"
        );
        // an empty element of a list is a name too
        assert!(resolve(&words(&["KILL,"]), &[]).is_err());
    }

    #[test]
    fn display_names_each_capability() {
        let set = CapSet::named(&["CHOWN", "KILL"]).union(CapSet(1 << 45));
        assert_eq!(set.to_string(), "CAP_CHOWN,CAP_KILL,45");
        assert_eq!(CapSet::EMPTY.to_string(), "");
    }

    /// Root: the bounding, effective and permitted sets after the drop are the kept set,
    /// cut to what the kernel knows and the test process had (a machine may run everything
    /// without some capability); the inheritable set is empty, whatever it was.
    #[test]
    fn restrict_keeps_exactly_the_kept_set() {
        require_root();
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let known = u64::MAX >> (63 - last.min(63));
        let had = sys::bounding_set().unwrap();
        assert_eq!(had & !known, 0, "capabilities past cap_last_cap");
        assert!(had & CapSet::DEFAULT.bits() != 0);
        for keep in [CapSet::DEFAULT, CapSet::EMPTY, CapSet::ALL] {
            let after = in_child(|| match keep.restrict() {
                Ok(()) => sys::bounding_set().map_or(-1, |set| set as i64),
                Err(errno) => -1000 - errno as i64,
            });
            assert_eq!(after as u64, keep.bits() & had, "keep {keep}");
            // what the sets hold, one bit of them per child: the effective, the permitted,
            // and whether the inheritable one is empty (given SYS_MODULE to begin with)
            for (which, want) in [(0, keep.bits() & had), (1, keep.bits() & had), (2, 0)] {
                let got = in_child(|| {
                    let _ = sys::inherit_for_tests(1 << 16);
                    match keep.restrict().and_then(|()| sys::capabilities()) {
                        Ok(sets) => sets[which] as i64,
                        Err(errno) => -1000 - errno as i64,
                    }
                });
                assert_eq!(got as u64, want, "keep {keep}: set {which}");
            }
        }
    }
}
