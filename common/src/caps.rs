//! The capability sets as capget(2) and capset(2) take them (linux/capability.h), which
//! the `libc` crate lacks, and how the launcher and the shim cut them to what a guest
//! keeps. Each binary makes the two system calls itself.

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
pub const VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`, for the calling thread (`pid` 0).
#[repr(C)]
#[derive(Debug)]
pub struct CapHeader {
    pub version: u32,
    pub pid: i32,
}

impl CapHeader {
    pub const fn current() -> Self {
        CapHeader {
            version: VERSION_3,
            pid: 0,
        }
    }
}

/// `struct __user_cap_data_struct`, one per 32 capabilities.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

/// The sets of `data` cut to `keep` (bit N for capability N): the permitted and effective
/// ones only shrink, the inheritable one is emptied, so that nothing outside `keep` is
/// held, nor survives an exec (a root exec keeps the inheritable set whole).
pub fn limit(data: &mut [CapData; 2], keep: u64) {
    for (i, set) in data.iter_mut().enumerate() {
        let word = (keep >> (32 * i)) as u32;
        set.effective &= word;
        set.permitted &= word;
        set.inheritable = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_cuts_the_sets_to_what_is_kept_and_empties_the_inheritable_one() {
        let all = CapData {
            effective: u32::MAX,
            permitted: u32::MAX,
            inheritable: u32::MAX,
        };
        let mut data = [all, all];
        limit(&mut data, 1 << 21 | 1 << 40);
        assert_eq!(
            data,
            [
                CapData {
                    effective: 1 << 21,
                    permitted: 1 << 21,
                    inheritable: 0
                },
                CapData {
                    effective: 1 << 8,
                    permitted: 1 << 8,
                    inheritable: 0
                },
            ]
        );
    }
}
