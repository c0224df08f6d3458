//! What differs between the architectures cradle is built for (x86_64, aarch64, armv7),
//! and what the `libc` crate lacks: the one module that chooses by `target_arch`, so that
//! a port starts here. (The tests of the i386 ABI through `int $0x80` are x86's by
//! nature and say so where they are, and the shim's `main.rs` stubs 32-bit ARM's
//! unwinding personality routines as it stubs `_Unwind_Resume`.)
//!
//! What was checked, architecture by architecture, and needs no choice:
//!
//! - **System call numbers.** Every call the launcher and the shim make is named by the
//!   `libc` crate's `SYS_*` for the target, clone3, pidfd_open, the new mount API,
//!   close_range and mount_setattr included (Linux gives them the same numbers on every
//!   architecture but alpha). Only the seccomp filter needs numbers of *other* ABIs: its
//!   table in the launcher's `seccomp.rs` has a column per [`Abi`].
//! - **clone3.** The launcher and the shim need it for `CLONE_INTO_CGROUP`, which no
//!   other call has, and every kernel cradle runs on has it (5.12 and later); there is no
//!   fallback to clone(2), because there would be nothing to fall back to. Without a
//!   cgroup the shim spawns the command with clone(2) (`CLONE_VM | CLONE_VFORK`, the
//!   posix_spawn way), which musl has on every architecture. qemu-user (7.2) answers
//!   clone3 with ENOSYS, so under emulation only the shim's command mode runs.
//! - **Struct layouts** the kernel reads: the kernel's `struct sigaction` is
//!   [`KernelSigaction`] (20 bytes on 32-bit ARM, 32 on the 64-bit architectures);
//!   [`CloneArgs`] (which the `libc` crate lacks for 32-bit ARM), `mount_attr`,
//!   `open_how`, `seccomp_data` and the BPF attributes are made of 64-bit fields on every
//!   architecture. 32-bit ARM's setresuid, setresgid and setgroups take 16-bit ids: the
//!   shim names the 32-bit ones ([`SYS_SETRESUID`] and the others).
//! - **glibc's declarations, musl's library.** The shim is built for the `-gnu` target
//!   (the only Rust standard library Debian ships) and linked against musl, so the `libc`
//!   crate describes glibc's functions while musl's run. On the 64-bit targets the two
//!   agree on every type the shim passes. On 32-bit ARM they do not for `off_t` (always
//!   64-bit in musl), `struct stat` and `time_t` (musl 1.2 keeps the 32-bit `time_t`
//!   functions under the old names): the shim passes none of those to musl. It makes
//!   those system calls itself (`statx`, `mmap` through [`SYS_MMAP`], `rt_sigtimedwait`
//!   with the kernel's own timespec).
//! - **Signal sets.** The kernel's is 64 bits on every architecture; `sigset_t` is 128
//!   bytes in glibc and musl alike, aligned to 4 bytes on 32-bit ARM.

/// A system call ABI, as seccomp tells them apart (`seccomp_data.arch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    X86_64,
    /// 32-bit x86 programs on an x86_64 kernel (`int $0x80`, sysenter).
    I386,
    Aarch64,
    /// 32-bit ARM (EABI) programs: on an ARM kernel, or on an aarch64 kernel that runs them.
    Arm,
}

impl Abi {
    /// Every ABI cradle knows.
    pub const ALL: [Abi; 4] = [Abi::X86_64, Abi::I386, Abi::Aarch64, Abi::Arm];

    /// AUDIT_ARCH_* of linux/audit.h: EM_* | 64-bit flag | little-endian flag.
    pub const fn audit_arch(self) -> u32 {
        const BITS_64: u32 = 0x8000_0000;
        const LITTLE_ENDIAN: u32 = 0x4000_0000;
        match self {
            Abi::X86_64 => 62 | BITS_64 | LITTLE_ENDIAN,
            Abi::I386 => 3 | LITTLE_ENDIAN,
            Abi::Aarch64 => 183 | BITS_64 | LITTLE_ENDIAN,
            Abi::Arm => 40 | LITTLE_ENDIAN,
        }
    }
}

/// The ABIs a guest of this build may make system calls with, for its seccomp filter:
/// this build's own first, then the other one its kernel may run. On x86_64, 32-bit x86
/// programs; on aarch64, 32-bit ARM programs (where the CPU and kernel run them). An armv7
/// `cradle` may run on an aarch64 kernel, where its guests can run aarch64 programs: so
/// it filters those too (on a 32-bit kernel that branch of the filter is never taken).
#[cfg(target_arch = "x86_64")]
pub const SECCOMP_ABIS: [Abi; 2] = [Abi::X86_64, Abi::I386];
#[cfg(target_arch = "aarch64")]
pub const SECCOMP_ABIS: [Abi; 2] = [Abi::Aarch64, Abi::Arm];
#[cfg(target_arch = "arm")]
pub const SECCOMP_ABIS: [Abi; 2] = [Abi::Arm, Abi::Aarch64];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")))]
compile_error!("cradle is built for x86_64, aarch64 and armv7: see common/src/arch.rs for a port");

/// mmap(2) by system call number: `mmap` on the 64-bit architectures, `mmap2` (offset in
/// pages) on 32-bit ARM, which has no `mmap`. Only for offset 0.
#[cfg(target_pointer_width = "64")]
pub const SYS_MMAP: libc::c_long = libc::SYS_mmap;
#[cfg(target_pointer_width = "32")]
pub const SYS_MMAP: libc::c_long = libc::SYS_mmap2;

/// setresuid(2), setresgid(2), setgroups(2) by system call number, with 32-bit ids:
/// 32-bit ARM's calls of those names take 16-bit ones (its `*32` calls are the real ones).
#[cfg(not(target_arch = "arm"))]
pub const SYS_SETRESUID: libc::c_long = libc::SYS_setresuid;
#[cfg(not(target_arch = "arm"))]
pub const SYS_SETRESGID: libc::c_long = libc::SYS_setresgid;
#[cfg(not(target_arch = "arm"))]
pub const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups;
#[cfg(target_arch = "arm")]
pub const SYS_SETRESUID: libc::c_long = libc::SYS_setresuid32;
#[cfg(target_arch = "arm")]
pub const SYS_SETRESGID: libc::c_long = libc::SYS_setresgid32;
#[cfg(target_arch = "arm")]
pub const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups32;

/// `MS_PRIVATE` (and the other propagations) for `mount_attr.propagation`, which is 64
/// bits wide where the `libc` crate's `MS_*` are `c_ulong`: 32 bits on 32-bit ARM.
#[allow(clippy::unnecessary_cast)]
pub const MS_PRIVATE: u64 = libc::MS_PRIVATE as u64;
#[allow(clippy::unnecessary_cast)]
pub const MS_SHARED: u64 = libc::MS_SHARED as u64;
#[allow(clippy::unnecessary_cast)]
pub const MS_SLAVE: u64 = libc::MS_SLAVE as u64;
#[allow(clippy::unnecessary_cast)]
pub const MS_UNBINDABLE: u64 = libc::MS_UNBINDABLE as u64;

/// `CLONE_INTO_CGROUP` (linux/sched.h, Linux 5.7), the same on every architecture; the
/// `libc` crate does not have it.
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args` (linux/sched.h), as clone3(2) reads it: 64-bit fields
/// on every architecture. The `libc` crate has it for the 64-bit ones only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// The kernel's `struct sigaction`, as rt_sigaction(2) reads it (not libc's, which
/// differs by library and architecture): handler, flags, restorer (every architecture
/// cradle builds for has `SA_RESTORER`), then the kernel's 64-bit signal set, as two
/// 32-bit words so that it adds no padding on 32-bit ARM.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelSigaction {
    pub handler: usize,
    pub flags: libc::c_ulong,
    pub restorer: usize,
    pub mask: [u32; 2],
}

/// The size of the kernel's signal set, which rt_sigaction, rt_sigprocmask and
/// rt_sigtimedwait take as their last argument.
pub const KERNEL_SIGSET_SIZE: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_sigaction_is_four_words_with_a_64_bit_mask() {
        let word = core::mem::size_of::<usize>();
        assert_eq!(core::mem::size_of::<KernelSigaction>(), 3 * word + 8);
        assert_eq!(core::mem::offset_of!(KernelSigaction, mask), 3 * word);
    }

    #[test]
    fn audit_arches_are_the_kernel_s() {
        assert_eq!(Abi::X86_64.audit_arch(), 0xC000_003E);
        assert_eq!(Abi::I386.audit_arch(), 0x4000_0003);
        assert_eq!(Abi::Aarch64.audit_arch(), 0xC000_00B7);
        assert_eq!(Abi::Arm.audit_arch(), 0x4000_0028);
    }

    #[test]
    fn the_build_s_own_abi_comes_first() {
        let own = if cfg!(target_arch = "x86_64") {
            Abi::X86_64
        } else if cfg!(target_arch = "aarch64") {
            Abi::Aarch64
        } else {
            Abi::Arm
        };
        assert_eq!(SECCOMP_ABIS[0], own);
        assert_ne!(SECCOMP_ABIS[1], own);
    }
}
