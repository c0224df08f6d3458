//! What holds a guest in with or without a user namespace: the capability bounding set and
//! the seccomp filter, as the command line chose them. The guest init gets them, and so
//! does every process `cradle exec` and the halt helpers start in the guest (`start`
//! records them in the state directory for those), so entering from the host is no way
//! around them.

pub mod caps;
pub mod devices;
pub mod profile;
pub mod seccomp;
pub mod userns;

use std::fmt;

use crate::error::Result;
use crate::security::caps::CapSet;
use crate::security::seccomp::Filter;

/// The chosen bounding set and filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Security {
    /// Capabilities kept in the bounding set.
    pub caps: CapSet,
    /// Whether the default seccomp filter is installed.
    pub seccomp: bool,
}

impl Security {
    /// The filter for a guest with or without a user namespace of its own, compiled now
    /// (before any fork), when there is one.
    pub fn filter(&self, userns: bool) -> Result<Option<Filter>> {
        self.seccomp
            .then(|| Filter::default_for_guest(userns))
            .transpose()
    }

    /// Reads what [`Display`](fmt::Display) wrote: `caps HEX` and `seccomp on|off` lines.
    pub fn parse(text: &str) -> Option<Self> {
        let mut keep_caps = None;
        let mut seccomp = None;
        for line in text.lines() {
            match line.split_once(' ')? {
                ("caps", hex) => {
                    keep_caps = u64::from_str_radix(hex, 16).ok().map(CapSet::from_bits)
                }
                ("seccomp", "on") => seccomp = Some(true),
                ("seccomp", "off") => seccomp = Some(false),
                _ => return None,
            }
        }
        Some(Security {
            caps: keep_caps?,
            seccomp: seccomp?,
        })
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let seccomp = if self.seccomp { "on" } else { "off" };
        writeln!(f, "caps {:x}", self.caps.bits())?;
        writeln!(f, "seccomp {seccomp}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_start_records_exec_reads_back() {
        let security = Security {
            caps: CapSet::from_bits(0x1_0000_00ff),
            seccomp: true,
        };
        assert_eq!(Security::parse(&security.to_string()), Some(security));
        assert_eq!(Security::parse("caps zz\nseccomp on\n"), None);
        assert_eq!(Security::parse("caps 1\n"), None);
    }
}
