//! The default seccomp filter of a system container: a deny list, everything else up to
//! the last reviewed system call allowed, in the spirit of LXC's
//! `config/templates/common.seccomp`, systemd-nspawn's `src/nspawn/nspawn-seccomp.c` and
//! Docker's default profile. The capability bounding set (`caps`) does most of the
//! containing; this list removes what a kept capability (CAP_SYS_ADMIN,
//! CAP_DAC_READ_SEARCH) or no capability at all still reaches of the host's kernel, and
//! the interfaces with the worst record. The answers:
//!
//! - EPERM for the rows of [`DENIED`] (modules, kexec, open_by_handle_at, bpf, perf,
//!   fanotify, swap, raw I/O, syslog, acct, clock setting, quotas, io_uring, TIOCSTI,
//!   MNT_FORCE, kernel-mode userfaultfd, the obsolete calls);
//! - ENOSYS, as if the kernel did not have them, for the keyring (nested runc and
//!   systemd take that for "no keyring"), ustat and sysfs, and for every number past
//!   [`LAST_REVIEWED`]: a call a newer kernel adds is closed until it is reviewed, and
//!   glibc and systemd fall back from it as they do on an older kernel (they do so on
//!   ENOSYS only, which is why a deny list answering EPERM must not cover them);
//! - EAFNOSUPPORT for socket(AF_VSOCK) (the hypervisor's and the host's vsock services,
//!   not namespaced) and socket(AF_ALG) (the kernel's crypto API), as Docker refuses
//!   them. On i386, socketcall(2) passes the family behind a pointer, which a filter
//!   cannot read: that way stays open for 32-bit programs, as in Docker's profile;
//! - EPERM for a personality(2) other than the query, PER_LINUX, PER_LINUX32, UNAME26
//!   and ADDR_NO_RANDOMIZE (systemd, setarch/linux32, gdb): the old exec domains,
//!   READ_IMPLIES_EXEC, MMAP_PAGE_ZERO and ADDR_LIMIT_* are refused.
//!
//! Not denied, on purpose, because an init and its services need them (the reason is
//! given where it is not obvious):
//! - mount, umount2 (without MNT_FORCE), pivot_root, chroot, the new mount API: the
//!   guest mounts its own file systems, in its own mount namespace;
//! - unshare, setns, clone, clone3, also with namespace flags: systemd sandboxes its
//!   services that way, and containers nest;
//! - reboot (in a PID namespace it ends the guest's init, which the shim reads), ptrace,
//!   process_vm_*, sethostname, setdomainname, mknod (the device policy decides which
//!   devices work), vhangup, kcmp, name_to_handle_at;
//! - adjtimex and clock_adjtime: glibc's adjtimex() *is* clock_adjtime(CLOCK_REALTIME),
//!   and a read (modes 0) is how systemd and chrony ask whether the clock is in sync;
//!   setting the clock that way needs CAP_SYS_TIME, which the bounding set drops, so
//!   only the calls that can do nothing but set it are denied;
//! - modify_ldt: Wine and other 32-bit code; pkey_*: protection keys of the caller's own
//!   memory;
//! - socket(AF_NETLINK, NETLINK_AUDIT), which nspawn refuses with EAFNOSUPPORT: this
//!   filter has one answer, and an EPERM there makes shadow's useradd and su abort (they
//!   accept only the errnos of a kernel without audit). Inside a user namespace the kernel
//!   itself answers ECONNREFUSED, which PAM reads as "no audit".
//!
//! ## One program, every ABI the kernel accepts
//!
//! seccompiler compiles a filter for one architecture and starts it with an arch check
//! that *kills the process* when `seccomp_data.arch` is another. On x86_64 a process may
//! also make i386 system calls (`int $0x80`; arch AUDIT_ARCH_I386, i386 numbers): a guest
//! running a 32-bit program would be killed, and a filter that simply let other arches
//! through would be a way around the list. And filters stack with the strictest answer
//! winning, so a second filter cannot undo a first one's kill. So [`Filter`] compiles the
//! deny list once per ABI of the build's architecture ([`ABIS`]: x86_64 and i386, or
//! aarch64 and arm), each with that ABI's numbers, removes the arch check at the start of
//! each body (after checking it is exactly the three instructions seccompiler emits) and
//! puts one dispatch on `seccomp_data.arch` in front:
//!
//! ```text
//!     ld  arch
//!     jeq native  → native body            (x86_64 first: x32 guard, see below)
//!     jeq compat  → compat body
//!     ret ERRNO(EPERM)                      any other ABI is refused whole, never killed
//! ```
//!
//! **x32** (x86_64 arch, numbers with bit 0x40000000) is denied outright with EPERM,
//! before the native body: mapping it would mean a third table (its own 512-547 range for
//! half of the calls), for an ABI this host's kernel does not even configure (it answers
//! ENOSYS there anyway). The number -1 is let through to the body and so reaches the
//! kernel (ENOSYS): that is how a tracer skips a call, as libseccomp also allows.
//!
//! Every rule but five (ioctl, umount2, userfaultfd, socket, personality) depends on the
//! number and arch alone, so the kernel's seccomp action cache answers the other allowed
//! calls without running the program at all.
//!
//! ## A short path for every call
//!
//! seccompiler compares the number with each listed call in turn, so an allowed call
//! walks the whole list; and the kernel builds its action cache, when the filter is
//! installed, by running the program for every number of every ABI (with interrupts off):
//! over 400 instructions that cost a third of a millisecond per container. So each ABI's
//! body starts with the calls denied whatever their arguments, as a binary search per
//! answer ([`membership`]: log2(n) comparisons, the answer on a match), then the cut-off
//! ([`unreviewed`]) and the two rules with answers of their own ([`by_argument`]); only
//! the calls refused with EPERM for some arguments are left to seccompiler's rules.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::OwnedFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use cradle_common::arch::{Abi, SECCOMP_ABIS};

use crate::error::{Error, Result};
use crate::sys;

/// The ABIs of this build's filter (`common::arch`, which chooses by architecture): its
/// own first, then the other one its kernel may run.
pub const ABIS: [Abi; 2] = SECCOMP_ABIS;

/// seccompiler's name for the architecture it compiles for. seccompiler knows x86_64,
/// aarch64 and riscv64 only, and uses the name for nothing but the arch check at the start
/// of its program, which [`body`] replaces: every ABI's body is compiled as x86_64's.
const SECCOMPILER_ARCH: TargetArch = TargetArch::x86_64;

/// The x32 ABI's bit in the system call number (arch stays AUDIT_ARCH_X86_64).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// No such call on that ABI (in [`Denied::numbers`]).
const NA: i32 = -1;

/// When a denied call is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// Only when argument `arg` (its low 32 bits, which is all the kernel reads of an
    /// `int` argument: comparing 64 would let high garbage bits through) masked with
    /// `mask` equals `value`.
    Arg {
        arg: u8,
        mask: u32,
        value: u32,
    },
}

/// A system call the guest may not make.
#[derive(Debug)]
pub struct Denied {
    pub name: &'static str,
    /// The errno it is answered with: EPERM, or ENOSYS where callers must take the call
    /// for one the kernel does not have (glibc, systemd and runc fall back only then).
    pub errno: i32,
    /// On x86_64, i386, aarch64, arm; [`NA`] where the ABI has no such call. From the
    /// kernel's syscall tables (arch/x86/entry/syscalls/syscall_{64,32}.tbl,
    /// include/uapi/asm-generic/unistd.h, arch/arm/tools/syscall.tbl).
    numbers: [i32; 4],
    pub when: When,
    #[cfg_attr(not(test), allow(dead_code))] // the table's documentation; the tests check it
    pub why: &'static str,
}

impl Denied {
    /// Its number on `abi`, if `abi` has the call.
    pub fn number(&self, abi: Abi) -> Option<u32> {
        let n = match abi {
            Abi::X86_64 => self.numbers[0],
            Abi::I386 => self.numbers[1],
            Abi::Aarch64 => self.numbers[2],
            Abi::Arm => self.numbers[3],
        };
        u32::try_from(n).ok()
    }
}

const fn always(name: &'static str, numbers: [i32; 4], why: &'static str) -> Denied {
    Denied {
        name,
        errno: libc::EPERM,
        numbers,
        when: When::Always,
        why,
    }
}

/// Denied with ENOSYS, as if the kernel did not have it.
const fn absent(name: &'static str, numbers: [i32; 4], why: &'static str) -> Denied {
    Denied {
        name,
        errno: libc::ENOSYS,
        numbers,
        when: When::Always,
        why,
    }
}

const fn when_arg(
    name: &'static str,
    numbers: [i32; 4],
    (arg, mask, value): (u8, u32, u32),
    why: &'static str,
) -> Denied {
    Denied {
        name,
        errno: libc::EPERM,
        numbers,
        when: When::Arg { arg, mask, value },
        why,
    }
}

const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;
const MNT_FORCE: u32 = 1;
const UFFD_USER_MODE_ONLY: u32 = 1;

/// The deny list: every call refused with EPERM, on every ABI that has it.
#[rustfmt::skip]
pub const DENIED: &[Denied] = &[
    //      name                 x86_64 i386 aarch64 arm
    always("init_module",       [175, 128, 105, 128], "loads code into the kernel the host runs (CAP_SYS_MODULE is dropped too; LXC, nspawn, Docker)"),
    always("finit_module",      [313, 350, 273, 379], "the same, from a file descriptor"),
    always("delete_module",     [176, 129, 106, 129], "unloads modules the host uses"),
    always("create_module",     [174, 127, NA, NA],   "the pre-2.6 module interface; old kernels only"),
    always("get_kernel_syms",   [177, 130, NA, NA],   "the pre-2.6 module interface: kernel symbols"),
    always("query_module",      [178, 167, NA, NA],   "the pre-2.6 module interface"),
    always("kexec_load",        [246, 283, 104, 347], "replaces the host's running kernel"),
    always("kexec_file_load",   [320, NA, 294, 401],  "the same, from a file (no i386 entry)"),
    always("open_by_handle_at", [304, 342, 265, 371], "opens any inode of a file system by handle, around the guest's root (the 'shocker' escape; CAP_DAC_READ_SEARCH is kept)"),
    always("bpf",               [321, 357, 280, 386], "the verifier and maps are kernel attack surface, and not namespaced (nspawn, Docker); systemd in the guest does without"),
    always("perf_event_open",   [298, 336, 241, 364], "host-wide performance data, and a long record of kernel bugs (CAP_PERFMON is dropped)"),
    always("fanotify_init",     [300, 338, 262, 367], "marks on a whole file system watch, or with permission events block, the host's accesses to it (nspawn)"),
    always("fanotify_mark",     [301, 339, 263, 368], "the same"),
    always("swapon",            [167, 87, 224, 87],   "swap is the host's, not namespaced"),
    always("swapoff",           [168, 115, 225, 115], "the same"),
    absent("add_key",           [248, 286, 217, 309], "the kernel keyring is not namespaced, and request_key's upcalls run on the host (nspawn, Docker); ENOSYS, which systemd and a runc nested in the guest take for no keyring, as LXD answers"),
    absent("request_key",       [249, 287, 218, 310], "the same"),
    absent("keyctl",            [250, 288, 219, 311], "the same"),
    always("iopl",              [172, 110, NA, NA],   "raw I/O ports of the host's hardware (CAP_SYS_RAWIO is dropped too)"),
    always("ioperm",            [173, 101, NA, NA],   "the same"),
    always("syslog",            [103, 103, 116, 103], "reads and clears the host's kernel log, which is not namespaced and shows kernel addresses"),
    always("acct",              [163, 51, 89, 51],    "process accounting to a file of the guest's choosing (CAP_SYS_PACCT is dropped; nspawn, Docker)"),
    always("settimeofday",      [164, 79, 170, 79],   "sets the host's clock: CLOCK_REALTIME is not namespaced"),
    always("stime",             [NA, 25, NA, NA],     "the same (i386 only)"),
    always("clock_settime",     [227, 264, 112, 262], "the same"),
    always("clock_settime64",   [NA, 404, NA, 404],   "the same, 32-bit ABIs' 64-bit time"),
    always("lookup_dcookie",    [212, 253, 18, 249],  "oprofile's, gone from current kernels; it leaked kernel paths (Docker)"),
    always("nfsservctl",        [180, 169, 42, 169],  "the host's NFS server, on kernels before 3.1"),
    always("quotactl",          [179, 131, 60, 131],  "quotas of file systems the host shares (nspawn, Docker)"),
    always("quotactl_fd",       [443, 443, 443, 443], "the same, by descriptor"),
    when_arg("userfaultfd",     [323, 374, 282, 388], (0, UFFD_USER_MODE_ONLY, 0),
             "without UFFD_USER_MODE_ONLY it stalls the kernel in the middle of a copy, the usual way to win kernel races; user-mode-only is what unprivileged users get"),
    always("vm86old",           [NA, 113, NA, NA],    "virtual 8086 mode; no 64-bit kernel has it (Docker)"),
    always("vm86",              [NA, 166, NA, NA],    "the same"),
    always("uselib",            [134, 86, NA, 86],    "a.out shared libraries, long obsolete (Docker)"),
    always("_sysctl",           [156, 149, NA, 149],  "the binary sysctl interface, removed in Linux 5.5 (Docker)"),
    absent("ustat",             [136, 62, NA, 62],    "statfs of any superblock by device number, the host's too (Docker, nspawn); glibc has no wrapper"),
    absent("sysfs",             [139, 135, NA, 135],  "lists the kernel's file system types (Docker, nspawn refuse it; /proc/filesystems says the same)"),
    always("io_uring_setup",    [425, 425, 425, 425], "most kernel exploits sent to Google's kCTF in 2022 went through it (Docker refuses it); programs fall back, as where kernel.io_uring_disabled is set"),
    always("io_uring_enter",    [426, 426, 426, 426], "the same"),
    always("io_uring_register", [427, 427, 427, 427], "the same"),
    when_arg("ioctl",           [16, 54, 29, 54],     (1, u32::MAX, TIOCSTI),
             "TIOCSTI types into a terminal: a guest given a host terminal (run, exec) could queue commands for the host's shell (Linux 6.2 can turn it off, legacy_tiocsti)"),
    when_arg("ioctl",           [16, 54, 29, 54],     (1, u32::MAX, TIOCLINUX),
             "TIOCLINUX pastes a virtual console's selection into it: the same (bubblewrap, flatpak)"),
    when_arg("umount2",         [166, 52, 39, 52],    (1, MNT_FORCE, MNT_FORCE),
             "MNT_FORCE aborts the I/O in flight on a whole superblock the host shares (NFS, FUSE), even when the unmount then fails as busy (LXC's reject_force_umount)"),
];

const MS_REMOUNT: u32 = libc::MS_REMOUNT as u32;
const MS_BIND: u32 = libc::MS_BIND as u32;

/// Denied besides [`DENIED`] when the guest has no user namespace of its own: its root
/// then has CAP_SYS_ADMIN over the host's own superblocks, and a stock guest's scripts
/// reconfigure the one its root directory is on (Debian's checkroot.sh remounts "/" at
/// boot, umountroot remounts it read-only at halt: the host's file system with it). In a
/// user namespace the kernel refuses that by itself, and the guest may reconfigure the
/// file systems it mounted.
#[rustfmt::skip]
pub const DENIED_WITHOUT_USERNS: &[Denied] = &[
    when_arg("mount",           [165, 21, 40, 21],    (3, MS_REMOUNT | MS_BIND, MS_REMOUNT),
             "MS_REMOUNT without MS_BIND reconfigures the superblock, which is the host's (a bind remount changes only the guest's mount; LXC's AppArmor profile denies the same)"),
    always("fspick",            [433, 433, 433, 433], "picks a superblock to reconfigure with fsconfig: the same, by the new mount API"),
];

/// The compiled filter: one classic BPF program for every ABI in [`ABIS`], built once
/// before fork and installed in the child.
#[derive(Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    /// SECCOMP_FILTER_FLAG_* to install it with: none for cradle's own filter.
    flags: u32,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Filter({} instructions, flags {:#x})",
            self.program.len(),
            self.flags
        )
    }
}

impl Filter {
    /// [`DENIED`] (and, for a guest without a user namespace, [`DENIED_WITHOUT_USERNS`]),
    /// compiled for this build's architecture (see the module documentation).
    pub fn default_for_guest(userns: bool) -> Result<Filter> {
        Self::for_abis(ABIS, userns)
    }

    /// The same for the ABIs `abis` (this build's own first): the tests compile the
    /// filter of every build on any one.
    fn for_abis(abis: [Abi; 2], userns: bool) -> Result<Filter> {
        let extra: &[Denied] = if userns { &[] } else { DENIED_WITHOUT_USERNS };
        let [native, compat] = abis.map(|abi| body(abi, extra));
        let program = assemble(abis, &native?, &compat?)
            .map_err(|why| Error::host("compile the seccomp filter", io::Error::other(why)))?;
        Ok(Filter { program, flags: 0 })
    }

    /// A filter compiled elsewhere (`profile`: an OCI runtime-spec profile), installed
    /// with the SECCOMP_FILTER_FLAG_* bits `flags`. The kernel checks the program when
    /// [`install`](Self::install) hands it over, and refuses a bad one with EINVAL.
    pub fn from_program(program: Vec<libc::sock_filter>, flags: u32) -> Filter {
        Filter { program, flags }
    }

    #[cfg(test)]
    pub fn program(&self) -> &[libc::sock_filter] {
        &self.program
    }

    /// Installs the filter on the calling thread, with its flags (`sys::install_seccomp`:
    /// no no_new_privs, so it needs CAP_SYS_ADMIN in the caller's user namespace).
    /// Allocation-free: for the container's first process, before it execs.
    pub fn install(&self) -> nix::Result<()> {
        sys::install_seccomp(&self.program, self.flags).map(drop)
    }

    /// True when installing it hands back a listener (SECCOMP_FILTER_FLAG_NEW_LISTENER:
    /// its profile has SCMP_ACT_NOTIFY rules).
    pub fn has_listener(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32 != 0
    }

    /// Installs a filter that has a listener ([`has_listener`](Self::has_listener)) and
    /// returns it: the descriptor a seccomp agent reads the calls it answers for from.
    pub fn install_with_listener(&self) -> nix::Result<OwnedFd> {
        let fd = sys::install_seccomp(&self.program, self.flags)?;
        sys::own_new_fd(fd)
    }

    /// The filter as data for another program to install (`cradle-shim --seccomp-fd`):
    /// its flags (u32), then its instructions as the kernel lays them out, in this
    /// machine's byte order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(4 + 8 * self.program.len());
        bytes.extend_from_slice(&self.flags.to_ne_bytes());
        for insn in &self.program {
            bytes.extend_from_slice(&insn.code.to_ne_bytes());
            bytes.extend_from_slice(&[insn.jt, insn.jf]);
            bytes.extend_from_slice(&insn.k.to_ne_bytes());
        }
        bytes
    }
}

/// The rows of the deny list: [`DENIED`], then `extra`.
fn denied(extra: &'static [Denied]) -> impl Iterator<Item = &'static Denied> {
    DENIED.iter().chain(extra)
}

/// The numbers of `abi`'s calls refused whatever their arguments, in order.
fn always_denied(abi: Abi, extra: &'static [Denied]) -> BTreeSet<u32> {
    denied(extra)
        .filter(|d| d.when == When::Always)
        .filter_map(|d| d.number(abi))
        .collect()
}

/// [`always_denied`] by the errno each is answered with.
fn always_denied_by_errno(abi: Abi, extra: &'static [Denied]) -> BTreeMap<i32, BTreeSet<u32>> {
    let mut by_errno: BTreeMap<i32, BTreeSet<u32>> = BTreeMap::new();
    for denied in denied(extra).filter(|d| d.when == When::Always) {
        if let Some(nr) = denied.number(abi) {
            by_errno.entry(denied.errno).or_default().insert(nr);
        }
    }
    by_errno
}

/// The rules of `abi` for the calls refused only for some arguments, as seccompiler takes
/// them: number → the conditions under which it is refused. A call refused always (in
/// [`always_denied`]) ignores its conditional rows.
fn rules(
    abi: Abi,
    extra: &'static [Denied],
) -> std::result::Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let always = always_denied(abi, extra);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for denied in denied(extra) {
        let Some(nr) = denied.number(abi) else {
            continue;
        };
        let When::Arg { arg, mask, value } = denied.when else {
            continue;
        };
        if always.contains(&nr) {
            continue;
        }
        let chain = rules.entry(nr.into()).or_default();
        let rule = SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(mask.into()),
            value.into(),
        )
        .and_then(|condition| SeccompRule::new(vec![condition]))
        .map_err(|e| format!("{}: {e}", denied.name))?;
        chain.push(rule);
    }
    Ok(rules)
}

/// Where a jump of [`membership`] goes, before offsets are known.
#[derive(Clone, Copy)]
enum Target {
    /// The next instruction.
    Next,
    /// The answer EPERM, after the search.
    Deny,
    /// Past the search: the call is not in the set.
    Miss,
    /// An instruction of the search, by index.
    At(usize),
}

/// A comparison of the search, with symbolic targets.
struct Node {
    code: u16,
    k: u32,
    jt: Target,
    jf: Target,
}

fn search(numbers: &[u32], out: &mut Vec<Node>) {
    // a few left: compare each; a match is denied, the last miss leaves the search
    if numbers.len() <= 3 {
        for (i, &n) in numbers.iter().enumerate() {
            let last = i + 1 == numbers.len();
            let jf = if last { Target::Miss } else { Target::Next };
            out.push(Node {
                code: JEQ_K,
                k: n,
                jt: Target::Deny,
                jf,
            });
        }
        return;
    }
    // more: below the middle one, or from it on
    let mid = numbers.len() / 2;
    let at = out.len();
    out.push(Node {
        code: JGE_K,
        k: numbers[mid],
        jt: Target::Next,
        jf: Target::Next,
    });
    search(&numbers[..mid], out);
    out[at].jt = Target::At(out.len());
    search(&numbers[mid..], out);
}

/// A binary search of the loaded system call number in `numbers`: `answer` when it is one
/// of them, else on to the instruction that follows. Every jump is forward, as classic
/// BPF wants, and within its 255 instructions.
fn membership(
    numbers: &BTreeSet<u32>,
    answer: u32,
) -> std::result::Result<Vec<libc::sock_filter>, String> {
    let numbers: Vec<u32> = numbers.iter().copied().collect();
    let mut nodes = Vec::new();
    search(&numbers, &mut nodes);
    // after the search: the miss skips the deny
    let miss = nodes.len();
    let deny = miss + 1;
    let offset = |from: usize, target: Target| -> std::result::Result<u8, String> {
        let to = match target {
            Target::Next => from + 1,
            Target::Deny => deny,
            Target::Miss => miss,
            Target::At(i) => i,
        };
        u8::try_from(to - from - 1).map_err(|_| format!("a jump of {} instructions", to - from))
    };
    let mut program = Vec::with_capacity(nodes.len() + 2);
    for (i, node) in nodes.iter().enumerate() {
        program.push(insn(
            node.code,
            offset(i, node.jt)?,
            offset(i, node.jf)?,
            node.k,
        ));
    }
    program.push(insn(JA, 0, 0, 1));
    program.push(insn(RET_K, 0, 0, answer));
    Ok(program)
}

/// `abi`'s part of the program: the search of the calls denied always, then seccompiler's
/// program for the rest, without the arch check it starts with.
fn body(abi: Abi, extra: &'static [Denied]) -> Result<Vec<libc::sock_filter>> {
    let fail = |why: String| {
        Error::host(
            format!("compile the seccomp filter for {abi:?}"),
            io::Error::other(why),
        )
    };
    let filter = SeccompFilter::new(
        rules(abi, extra).map_err(fail)?,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        SECCOMPILER_ARCH,
    )
    .map_err(|e| fail(e.to_string()))?;
    let program = BpfProgram::try_from(filter).map_err(|e| fail(e.to_string()))?;
    let program: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    // seccompiler 0.5: load arch; jeq ITS_ARCH, skip 1; return KILL_PROCESS
    let arch_check = [
        (LD_W_ABS, 0, 0, ARCH_OFFSET),
        (JEQ_K, 1, 0, Abi::X86_64.audit_arch()),
        (RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    if program.len() <= arch_check.len()
        || program[..3]
            .iter()
            .zip(arch_check)
            .any(|(i, (code, jt, jf, k))| (i.code, i.jt, i.jf, i.k) != (code, jt, jf, k))
    {
        return Err(fail(
            "seccompiler's program does not start with the arch check this module replaces".into(),
        ));
    }
    let mut body = vec![insn(LD_W_ABS, 0, 0, NR_OFFSET)];
    for (errno, numbers) in always_denied_by_errno(abi, extra) {
        body.extend(membership(&numbers, errno_answer(errno)).map_err(fail)?);
    }
    body.extend(unreviewed(abi));
    body.extend(by_argument(abi));
    // seccompiler's program loads what it compares itself
    body.extend_from_slice(&program[3..]);
    Ok(body)
}

/// The seccomp answer for `errno`.
const fn errno_answer(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | errno as u32
}

/// The highest system call number reviewed for this filter, on every ABI (the numbers
/// from 424 up are the same everywhere; below that each ABI's table ends earlier):
/// file_setattr, Linux 6.17. A kernel's newer calls are answered ENOSYS, as if it did not
/// have them, until they are reviewed and this is raised: so a guest never reaches a
/// call nobody has looked at, and glibc and systemd, which fall back to older calls on
/// ENOSYS only, keep working (runc answers the same past its profile).
pub const LAST_REVIEWED: u32 = 469;

/// 32-bit ARM's private calls (`__ARM_NR_BASE` + 1 to 5: breakpoint, cacheflush, usr26,
/// usr32, set_tls, get_tls), which glibc and libgcc use: past [`LAST_REVIEWED`] by
/// number, and allowed.
const ARM_PRIVATE: std::ops::Range<u32> = 0x0f_0000..0x0f_0800;

/// After the searches: a number past [`LAST_REVIEWED`] gets ENOSYS, but -1 (a tracer
/// skipping the call, which must reach the kernel) and ARM's private calls.
fn unreviewed(abi: Abi) -> Vec<libc::sock_filter> {
    let enosys = errno_answer(libc::ENOSYS);
    if abi == Abi::Arm {
        vec![
            insn(JGT_K, 0, 4, LAST_REVIEWED),
            insn(JEQ_K, 3, 0, u32::MAX),
            insn(JGE_K, 0, 1, ARM_PRIVATE.start),
            insn(JGE_K, 0, 1, ARM_PRIVATE.end),
            insn(RET_K, 0, 0, enosys),
        ]
    } else {
        vec![
            insn(JGT_K, 0, 2, LAST_REVIEWED),
            insn(JEQ_K, 1, 0, u32::MAX),
            insn(RET_K, 0, 0, enosys),
        ]
    }
}

/// socket(2)'s number on each ABI (x86_64, i386, aarch64, arm).
const SOCKET: [u32; 4] = [41, 359, 198, 281];
/// personality(2)'s.
const PERSONALITY: [u32; 4] = [135, 136, 92, 136];
/// The address families refused: AF_VSOCK talks to the hypervisor and to the host's
/// vsock services, and is not namespaced; AF_ALG is the kernel's crypto API, with a long
/// record of bugs (Docker refuses both). EAFNOSUPPORT, as a kernel without them answers.
const REFUSED_FAMILIES: [u32; 2] = [40, 38];
/// personality(2) values allowed besides the query (0xffffffff): PER_LINUX (0),
/// PER_LINUX32 (8), UNAME26 (0x20000) and ADDR_NO_RANDOMIZE (0x40000), as systemd,
/// setarch/linux32 and gdb use them (Docker's list, with gdb's flag). Refused: the old
/// exec domains, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_LIMIT_* and the rest.
const PERSONALITY_ALLOWED: u32 = 0x0000_0008 | 0x0002_0000 | 0x0004_0000;
/// The low 32 bits of the first argument in struct seccomp_data (on the little-endian
/// ABIs this filter is built for): all that the kernel reads of an `int`.
const ARG0_OFFSET: u32 = 16;

/// The rules that look at an argument with an answer of their own, which seccompiler (one
/// answer per filter) cannot give: socket(2)'s family, personality(2)'s value. Each
/// block starts by loading the number again.
fn by_argument(abi: Abi) -> Vec<libc::sock_filter> {
    let i = match abi {
        Abi::X86_64 => 0,
        Abi::I386 => 1,
        Abi::Aarch64 => 2,
        Abi::Arm => 3,
    };
    vec![
        // socket: a refused family gets EAFNOSUPPORT
        insn(LD_W_ABS, 0, 0, NR_OFFSET),
        insn(JEQ_K, 0, 5, SOCKET[i]),
        insn(LD_W_ABS, 0, 0, ARG0_OFFSET),
        insn(JEQ_K, 2, 0, REFUSED_FAMILIES[0]),
        insn(JEQ_K, 1, 0, REFUSED_FAMILIES[1]),
        insn(JA, 0, 0, 1),
        insn(RET_K, 0, 0, errno_answer(libc::EAFNOSUPPORT)),
        // personality: the query, or a value within the allowed flags
        insn(LD_W_ABS, 0, 0, NR_OFFSET),
        insn(JEQ_K, 0, 6, PERSONALITY[i]),
        insn(LD_W_ABS, 0, 0, ARG0_OFFSET),
        insn(JEQ_K, 3, 0, u32::MAX),
        insn(ALU_AND_K, 0, 0, !PERSONALITY_ALLOWED),
        insn(JEQ_K, 1, 0, 0),
        insn(RET_K, 0, 0, RET_EPERM),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

// Classic BPF as seccomp runs it (linux/filter.h, linux/seccomp.h), for this filter and
// for the OCI profiles' (`profile`).
pub(crate) const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
pub(crate) const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
pub(crate) const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
pub(crate) const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
pub(crate) const ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
pub(crate) const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
pub(crate) const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// Offsets in struct seccomp_data.
pub(crate) const NR_OFFSET: u32 = 0;
pub(crate) const ARCH_OFFSET: u32 = 4;
/// The kernel's limit on a filter's length (BPF_MAXINSNS).
pub(crate) const MAX_INSNS: usize = 4096;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

pub(crate) const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The x32 guard in front of the x86_64 body: numbers with the x32 bit get EPERM, except
/// -1 (a tracer skipping the call), which goes on to the body and the kernel.
const X32_GUARD: [libc::sock_filter; 4] = [
    insn(LD_W_ABS, 0, 0, NR_OFFSET),
    insn(JGE_K, 0, 2, X32_SYSCALL_BIT),
    insn(JEQ_K, 1, 0, u32::MAX),
    insn(RET_K, 0, 0, RET_EPERM),
];

/// One program: a dispatch on the arch, then the body of `abis[0]` (behind the x32 guard
/// when that is x86_64) and that of `abis[1]`. Each body ends in returns on every path, so
/// they can sit one after the other.
fn assemble(
    abis: [Abi; 2],
    native: &[libc::sock_filter],
    compat: &[libc::sock_filter],
) -> std::result::Result<Vec<libc::sock_filter>, String> {
    let guard: &[libc::sock_filter] = if abis[0] == Abi::X86_64 {
        &X32_GUARD
    } else {
        &[]
    };
    // 0 ld arch; 1 jeq native; 2 ja native; 3 jeq compat; 4 ja compat; 5 ret EPERM
    let native_at = 6;
    let compat_at = native_at + guard.len() + native.len();
    let mut program = vec![
        insn(LD_W_ABS, 0, 0, ARCH_OFFSET),
        insn(JEQ_K, 0, 1, abis[0].audit_arch()),
        insn(JA, 0, 0, (native_at - 3) as u32),
        insn(JEQ_K, 0, 1, abis[1].audit_arch()),
        insn(JA, 0, 0, (compat_at - 5) as u32),
        insn(RET_K, 0, 0, RET_EPERM),
    ];
    program.extend_from_slice(guard);
    program.extend_from_slice(native);
    program.extend_from_slice(compat);
    if program.len() > MAX_INSNS {
        return Err(format!(
            "{} instructions, more than the kernel's {MAX_INSNS}",
            program.len()
        ));
    }
    Ok(program)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::{in_child, require_root};
    use nix::errno::Errno;

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const RET_ENOSYS: u32 = errno_answer(libc::ENOSYS);
    const RET_EAFNOSUPPORT: u32 = errno_answer(libc::EAFNOSUPPORT);

    /// This build's own ABI.
    const NATIVE: Abi = ABIS[0];

    /// The ABIs of each build's filter (`common::arch::SECCOMP_ABIS` on x86_64, aarch64,
    /// armv7): every build's program is checked here, whatever the host.
    const BUILDS: [[Abi; 2]; 3] = [
        [Abi::X86_64, Abi::I386],
        [Abi::Aarch64, Abi::Arm],
        [Abi::Arm, Abi::Aarch64],
    ];

    fn compiled() -> Vec<libc::sock_filter> {
        Filter::default_for_guest(true).unwrap().program().to_vec()
    }

    /// Each build's program (with a user namespace, or without), with its ABIs.
    fn every_build(userns: bool) -> Vec<([Abi; 2], Vec<libc::sock_filter>)> {
        assert!(BUILDS.contains(&ABIS), "this build's ABIs are among BUILDS");
        BUILDS
            .iter()
            .map(|&abis| (abis, Filter::for_abis(abis, userns).unwrap().program))
            .collect()
    }

    /// What the kernel would answer: a classic BPF interpreter for the instructions
    /// seccompiler and [`assemble`] emit (and `profile`'s), over a seccomp_data of
    /// `arch`, `nr`, `args`.
    pub(crate) fn run(program: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u32; 16];
        data[0] = nr;
        data[1] = arch;
        for (i, arg) in args.iter().enumerate() {
            data[4 + 2 * i] = *arg as u32;
            data[5 + 2 * i] = (*arg >> 32) as u32;
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = program[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match i.code {
                LD_W_ABS => acc = data[i.k as usize / 4],
                ALU_AND_K => acc &= i.k,
                JA => pc += i.k as usize,
                JEQ_K => pc += jump(acc == i.k),
                JGE_K => pc += jump(acc >= i.k),
                JGT_K => pc += jump(acc > i.k),
                RET_K => return i.k,
                code => panic!(
                    "instruction {code:#x} at {} is not one this test knows",
                    pc - 1
                ),
            }
        }
    }

    /// Arguments that make `denied` match its rule, and that the kernel refuses cheaply
    /// without the filter (bad descriptors, addresses, flags): -1 everywhere, except
    /// where the rule looks at an argument, and bpf(BPF_MAP_CREATE) with an empty attr.
    fn probe(denied: &Denied) -> [u64; 6] {
        let mut args = [u64::MAX; 6];
        match (denied.name, denied.when) {
            ("bpf", _) => args[..3].copy_from_slice(&[0, u64::MAX, 0]),
            (_, When::Arg { arg, value, .. }) => args[usize::from(arg)] = value.into(),
            (_, When::Always) => {}
        }
        args
    }

    #[test]
    fn every_row_has_a_reason_and_a_number() {
        for denied in DENIED {
            assert!(
                !denied.why.is_empty() && !denied.why.contains('\n'),
                "{denied:?}"
            );
            assert!(
                Abi::ALL.iter().any(|&abi| denied.number(abi).is_some()),
                "{denied:?}"
            );
        }
        // two names never share a number on one ABI
        for abi in Abi::ALL {
            let mut seen = BTreeMap::new();
            for denied in DENIED {
                if let Some(nr) = denied.number(abi) {
                    let name = *seen.entry(nr).or_insert(denied.name);
                    assert_eq!(name, denied.name, "{abi:?} {nr}");
                }
            }
        }
    }

    #[test]
    fn the_list_has_what_the_brief_and_lxc_deny() {
        for name in [
            "init_module",
            "finit_module",
            "delete_module",
            "create_module",
            "kexec_load",
            "kexec_file_load",
            "open_by_handle_at",
            "bpf",
            "perf_event_open",
            "swapon",
            "swapoff",
            "add_key",
            "request_key",
            "keyctl",
            "iopl",
            "ioperm",
            "syslog",
            "acct",
            "settimeofday",
            "clock_settime",
            "lookup_dcookie",
            "nfsservctl",
            "vm86",
            "vm86old",
            "uselib",
            "_sysctl",
        ] {
            assert!(
                DENIED
                    .iter()
                    .any(|d| d.name == name && d.when == When::Always),
                "{name}"
            );
        }
    }

    /// The numbers are the kernel's: x86_64 and i386 against this machine's uapi headers,
    /// aarch64 against asm-generic's (arm has no header here: arch/arm/tools/syscall.tbl).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn numbers_match_the_kernel_headers() {
        fn header(name: &str) -> BTreeMap<String, u32> {
            let text = [
                format!("/usr/include/x86_64-linux-gnu/asm/{name}"),
                format!("/usr/include/asm/{name}"),
                format!("/usr/include/{name}"),
            ]
            .iter()
            .find_map(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_else(|| {
                panic!("{name}: install the kernel's uapi headers (linux-libc-dev)")
            });
            text.lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    (words.next() == Some("#define"))
                        .then(|| Some((words.next()?.strip_prefix("__NR_")?, words.next()?)))
                        .flatten()
                        .and_then(|(n, v)| Some((n.to_owned(), v.parse().ok()?)))
                })
                .collect()
        }
        let x86_64 = header("unistd_64.h");
        let i386 = header("unistd_32.h");
        let generic = header("asm-generic/unistd.h");
        assert!(x86_64.len() > 300 && i386.len() > 400 && generic.len() > 250);
        for denied in DENIED {
            let name = denied.name;
            assert_eq!(
                denied.number(Abi::X86_64),
                x86_64.get(name).copied(),
                "{name}"
            );
            assert_eq!(denied.number(Abi::I386), i386.get(name).copied(), "{name}");
            // asm-generic also lists the 32-bit-only calls, so only the ones aarch64 has
            if let Some(nr) = denied.number(Abi::Aarch64) {
                assert_eq!(Some(nr), generic.get(name).copied(), "{name}");
            }
        }
        for name in ["iopl", "ioperm", "uselib", "_sysctl", "clock_settime64"] {
            let row = DENIED.iter().find(|d| d.name == name).unwrap();
            assert_eq!(row.number(Abi::Aarch64), None, "{name}");
        }
    }

    /// What an init and its services need, by this build's native numbers.
    fn needed() -> Vec<(&'static str, libc::c_long)> {
        vec![
            ("mount", libc::SYS_mount),
            ("umount2", libc::SYS_umount2),
            ("pivot_root", libc::SYS_pivot_root),
            ("unshare", libc::SYS_unshare),
            ("setns", libc::SYS_setns),
            ("clone", libc::SYS_clone),
            ("clone3", libc::SYS_clone3),
            ("reboot", libc::SYS_reboot),
            ("ptrace", libc::SYS_ptrace),
            ("chroot", libc::SYS_chroot),
            ("sethostname", libc::SYS_sethostname),
            ("mknodat", libc::SYS_mknodat),
            ("execve", libc::SYS_execve),
            ("adjtimex", libc::SYS_adjtimex),
            ("clock_adjtime", libc::SYS_clock_adjtime),
            ("personality", libc::SYS_personality),
            ("open_tree", libc::SYS_open_tree),
            ("move_mount", libc::SYS_move_mount),
            ("fsopen", libc::SYS_fsopen),
            ("mount_setattr", libc::SYS_mount_setattr),
            ("name_to_handle_at", libc::SYS_name_to_handle_at),
            ("process_vm_readv", libc::SYS_process_vm_readv),
            ("seccomp", libc::SYS_seccomp),
            ("prctl", libc::SYS_prctl),
            ("getpid", libc::SYS_getpid),
        ]
    }

    #[test]
    fn calls_an_init_needs_are_allowed() {
        let program = compiled();
        let arch = NATIVE.audit_arch();
        for (name, nr) in needed() {
            assert!(
                DENIED
                    .iter()
                    .all(|d| d.name != name || d.when != When::Always)
            );
            // plain arguments, and the ones a conditional rule looks for in another call
            for args in [[0; 6], [u64::MAX; 6], [3, 0, 0, 0, 0, 0]] {
                // umount2's and personality's own arguments decide: the tests below
                let args = match name {
                    "umount2" => [0; 6],
                    "personality" => [args[0] & 8, 0, 0, 0, 0, 0],
                    _ => args,
                };
                assert_eq!(
                    run(&program, arch, nr as u32, args),
                    ALLOW,
                    "{name} {args:?}"
                );
            }
        }
        #[cfg(target_arch = "x86_64")]
        for (name, nr) in [
            ("mknod", libc::SYS_mknod),
            ("modify_ldt", libc::SYS_modify_ldt),
        ] {
            assert_eq!(run(&program, arch, nr as u32, [0; 6]), ALLOW, "{name}");
        }
    }

    #[test]
    fn every_denied_call_is_refused_on_every_abi() {
        for (abis, program) in every_build(true) {
            for abi in abis {
                for denied in DENIED {
                    if let Some(nr) = denied.number(abi) {
                        let answer = run(&program, abi.audit_arch(), nr, probe(denied));
                        assert_eq!(
                            answer,
                            errno_answer(denied.errno),
                            "{abis:?}: {abi:?} {}",
                            denied.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_number_is_denied_exactly_when_it_is_listed() {
        for (abi, program) in every_build(true)
            .into_iter()
            .flat_map(|(abis, program)| abis.map(|abi| (abi, program.clone())))
        {
            let listed: BTreeMap<u32, i32> = DENIED
                .iter()
                .filter_map(|d| Some((d.number(abi)?, d.errno)))
                .collect();
            let always = always_denied(abi, &[]);
            for nr in 0..1024 {
                let answer = run(&program, abi.audit_arch(), nr, [0; 6]);
                if listed.contains_key(&nr) && !always.contains(&nr) {
                    continue; // their arguments decide; the test below
                }
                let expected = match listed.get(&nr) {
                    Some(&errno) => errno_answer(errno),
                    None if nr > LAST_REVIEWED => RET_ENOSYS,
                    None => ALLOW,
                };
                assert_eq!(answer, expected, "{abi:?} number {nr}");
            }
            // -1 (a tracer's skip) reaches the kernel; ARM's private calls are allowed
            assert_eq!(run(&program, abi.audit_arch(), u32::MAX, [0; 6]), ALLOW);
            let set_tls = 0x0f_0005;
            let expected = if abi == Abi::Arm { ALLOW } else { RET_ENOSYS };
            assert_eq!(run(&program, abi.audit_arch(), set_tls, [0; 6]), expected);
            assert_eq!(
                run(&program, abi.audit_arch(), 0x0f_0800, [0; 6]),
                RET_ENOSYS
            );
        }
    }

    #[test]
    fn without_a_user_namespace_superblocks_cannot_be_reconfigured() {
        let mount_nr = |abi: Abi| DENIED_WITHOUT_USERNS[0].number(abi).unwrap();
        let fspick_nr = |abi: Abi| DENIED_WITHOUT_USERNS[1].number(abi).unwrap();
        let remount = u64::from(MS_REMOUNT);
        let bind_remount = u64::from(MS_REMOUNT | MS_BIND | libc::MS_RDONLY as u32);
        for (userns, refused) in [(false, RET_EPERM), (true, ALLOW)] {
            for (abi, program) in every_build(userns)
                .into_iter()
                .flat_map(|(abis, program)| abis.map(|abi| (abi, program.clone())))
            {
                let arch = abi.audit_arch();
                let mount = |flags: u64| run(&program, arch, mount_nr(abi), [0, 0, 0, flags, 0, 0]);
                assert_eq!(mount(remount), refused, "{abi:?} userns {userns}");
                assert_eq!(mount(remount | u64::from(libc::MS_RDONLY as u32)), refused);
                assert_eq!(
                    mount(bind_remount),
                    ALLOW,
                    "a bind remount is the guest's own"
                );
                assert_eq!(mount(0), ALLOW, "a new mount");
                assert_eq!(run(&program, arch, fspick_nr(abi), [0; 6]), refused);
            }
        }
    }

    #[test]
    fn the_search_takes_a_few_comparisons_and_every_set_size_works() {
        for size in 0..80u32 {
            let set: BTreeSet<u32> = (0..size).map(|i| i * 7 + 3).collect();
            let mut program = vec![insn(LD_W_ABS, 0, 0, NR_OFFSET)];
            program.extend(membership(&set, RET_EPERM).unwrap());
            program.push(insn(RET_K, 0, 0, ALLOW));
            for nr in 0..(size * 7 + 10) {
                let expected = if set.contains(&nr) { RET_EPERM } else { ALLOW };
                assert_eq!(run(&program, 0, nr, [0; 6]), expected, "size {size}, {nr}");
            }
        }
        for (abis, program) in every_build(false) {
            assert!(
                program.len() < 250,
                "{abis:?}: {} instructions",
                program.len()
            );
        }
    }

    #[test]
    fn conditional_rules_look_at_32_bits_of_one_argument() {
        for (abi, program) in every_build(true)
            .into_iter()
            .flat_map(|(abis, program)| abis.map(|abi| (abi, program.clone())))
        {
            let (arch, nr) = (abi.audit_arch(), |name: &str| {
                DENIED
                    .iter()
                    .find(|d| d.name == name)
                    .unwrap()
                    .number(abi)
                    .unwrap()
            });
            let ioctl = |cmd: u64| run(&program, arch, nr("ioctl"), [1, cmd, 0, 0, 0, 0]);
            assert_eq!(ioctl(TIOCSTI.into()), RET_EPERM);
            assert_eq!(ioctl(TIOCLINUX.into()), RET_EPERM);
            // the kernel reads an unsigned int: high bits do not get around the rule
            assert_eq!(ioctl(0xdead_0000_0000_0000 | u64::from(TIOCSTI)), RET_EPERM);
            assert_eq!(ioctl(libc::TCGETS), ALLOW);
            assert_eq!(ioctl(libc::TIOCSCTTY), ALLOW);
            let umount2 = |flags: u64| run(&program, arch, nr("umount2"), [0, flags, 0, 0, 0, 0]);
            assert_eq!(umount2(0), ALLOW);
            assert_eq!(umount2(libc::MNT_DETACH as u64), ALLOW);
            assert_eq!(
                umount2((libc::MNT_DETACH | libc::MNT_FORCE) as u64),
                RET_EPERM
            );
            let uffd = |flags: u64| run(&program, arch, nr("userfaultfd"), [flags, 0, 0, 0, 0, 0]);
            assert_eq!(uffd(libc::O_CLOEXEC as u64), RET_EPERM);
            assert_eq!(uffd((libc::O_CLOEXEC as u64) | 1), ALLOW);
        }
    }

    #[test]
    fn socket_families_and_personality_values_are_looked_at_on_every_abi() {
        for (abis, program) in every_build(true) {
            for (i, abi) in abis.into_iter().enumerate() {
                let row = match abi {
                    Abi::X86_64 => 0,
                    Abi::I386 => 1,
                    Abi::Aarch64 => 2,
                    Abi::Arm => 3,
                };
                let arch = abi.audit_arch();
                let socket =
                    |family: u64| run(&program, arch, SOCKET[row], [family, 1, 0, 0, 0, 0]);
                assert_eq!(socket(40), RET_EAFNOSUPPORT, "{abis:?} {i}: AF_VSOCK");
                assert_eq!(socket(38), RET_EAFNOSUPPORT, "AF_ALG");
                // the kernel reads an int: high bits do not get around the rule
                assert_eq!(socket(0x1_0000_0028), RET_EAFNOSUPPORT);
                for family in [
                    libc::AF_UNIX,
                    libc::AF_INET,
                    libc::AF_INET6,
                    libc::AF_NETLINK,
                ] {
                    assert_eq!(socket(family as u64), ALLOW, "family {family}");
                }
                let personality =
                    |value: u64| run(&program, arch, PERSONALITY[row], [value, 0, 0, 0, 0, 0]);
                for allowed in [0xffff_ffff, 0, 8, 0x2_0000, 0x4_0000, 0x6_0008] {
                    assert_eq!(personality(allowed), ALLOW, "{abi:?} {allowed:#x}");
                }
                for refused in [0x40_0000, 0x10_0000, 0x1, 0x0800_0000] {
                    assert_eq!(personality(refused), RET_EPERM, "{abi:?} {refused:#x}");
                }
            }
        }
    }

    #[test]
    fn other_abis_are_refused_whole_and_never_killed() {
        for (abis, program) in every_build(true) {
            let others = Abi::ALL.into_iter().filter(|abi| !abis.contains(abi));
            let others: Vec<u32> = others.map(Abi::audit_arch).collect();
            for arch in [0, Abi::Arm.audit_arch() ^ 1, 0xC000_00F3 /* riscv64 */]
                .into_iter()
                .chain(others)
            {
                assert_eq!(
                    run(&program, arch, 20, [0; 6]),
                    RET_EPERM,
                    "{abis:?} {arch:#x}"
                );
            }
            for (i, insn) in program.iter().enumerate() {
                assert!(
                    !(insn.code == RET_K && insn.k & 0xffff_0000 < libc::SECCOMP_RET_ERRNO),
                    "{abis:?}: instruction {i} kills or traps: {:#x}",
                    insn.k
                );
            }
        }
    }

    #[test]
    fn x32_is_refused_and_minus_one_goes_through() {
        let program = Filter::for_abis(BUILDS[0], true).unwrap().program;
        let arch = Abi::X86_64.audit_arch();
        for nr in [
            X32_SYSCALL_BIT,
            X32_SYSCALL_BIT | 39,
            X32_SYSCALL_BIT | 528,
            u32::MAX - 1,
        ] {
            assert_eq!(run(&program, arch, nr, [0; 6]), RET_EPERM, "{nr:#x}");
        }
        assert_eq!(run(&program, arch, u32::MAX, [0; 6]), ALLOW);
        // i386 has no x32 bit to guard: its numbers go to its own body
        assert_eq!(run(&program, Abi::I386.audit_arch(), 20, [0; 6]), ALLOW);
    }

    #[test]
    fn the_program_starts_with_the_arch_dispatch() {
        for (abis, program) in every_build(true) {
            assert!(program.len() < MAX_INSNS);
            let head: Vec<_> = program[..6]
                .iter()
                .map(|i| (i.code, i.jt, i.jf, i.k))
                .collect();
            assert_eq!(head[0], (LD_W_ABS, 0, 0, ARCH_OFFSET));
            assert_eq!(head[1], (JEQ_K, 0, 1, abis[0].audit_arch()));
            assert_eq!(head[3], (JEQ_K, 0, 1, abis[1].audit_arch()));
            assert_eq!(head[5], (RET_K, 0, 0, RET_EPERM));
            // both jumps land on a load of the number: the start of a body (or of the guard)
            for ja in [2, 4] {
                assert_eq!(head[ja].0, JA);
                let target = &program[ja + 1 + head[ja].3 as usize];
                assert_eq!((target.code, target.k), (LD_W_ABS, NR_OFFSET), "ja at {ja}");
            }
            // and seccompiler's kill on a foreign arch is gone
            assert!(
                program
                    .iter()
                    .all(|i| i.k != libc::SECCOMP_RET_KILL_PROCESS)
            );
        }
    }

    // ---- as root: the filter installed in a child, against the real kernel ----

    /// `call` in a child without the filter and in one with it: (before, after), each
    /// as the call's result or -errno.
    fn before_and_after(call: impl Fn() -> nix::Result<i64> + Copy) -> (i64, i64) {
        let filter = Filter::default_for_guest(true).unwrap();
        let code = |r: nix::Result<i64>| r.unwrap_or_else(|e| -(e as i64));
        let before = in_child(move || code(call()));
        let after = in_child(|| match filter.install() {
            Ok(()) => code(call()),
            Err(e) => -1000 - e as i64,
        });
        (before, after)
    }

    const EPERM: i64 = -(Errno::EPERM as i64);

    #[test]
    fn denied_calls_get_their_errno_from_the_filter() {
        require_root();
        for denied in DENIED {
            let Some(nr) = denied.number(NATIVE) else {
                continue;
            };
            let args = probe(denied);
            let (before, after) = before_and_after(|| sys::raw_syscall(nr.into(), args));
            let errno = -i64::from(denied.errno);
            assert_eq!(after, errno, "{} with the filter", denied.name);
            assert_ne!(
                before, errno,
                "{} without it: the kernel refused it by itself",
                denied.name
            );
        }
    }

    #[test]
    fn vsock_and_alg_sockets_are_refused_and_others_made() {
        require_root();
        let socket = |family: u64| {
            move || {
                let fd = sys::raw_syscall(
                    libc::SYS_socket,
                    [family, libc::SOCK_STREAM as u64, 0, 0, 0, 0],
                )?;
                let _ = sys::raw_syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]);
                Ok(0)
            }
        };
        let refused = -(Errno::EAFNOSUPPORT as i64);
        // AF_ALG sockets are SOCK_SEQPACKET; a stream one is refused after the family check
        for family in [libc::AF_VSOCK as u64, libc::AF_ALG as u64, 0x1_0000_0028] {
            let (_, after) = before_and_after(socket(family));
            assert_eq!(after, refused, "family {family:#x}");
        }
        assert_eq!(before_and_after(socket(libc::AF_UNIX as u64)), (0, 0));
    }

    #[test]
    fn personality_is_limited_to_the_query_and_linux_s_own_flags() {
        require_root();
        let set = |value: u64| {
            move || {
                let old =
                    sys::raw_syscall(libc::SYS_personality, [u64::from(u32::MAX), 0, 0, 0, 0, 0])?;
                sys::raw_syscall(libc::SYS_personality, [value, 0, 0, 0, 0, 0])?;
                sys::raw_syscall(libc::SYS_personality, [old as u64, 0, 0, 0, 0, 0])?;
                Ok(0)
            }
        };
        for allowed in [0xffff_ffff, 0, 8, 0x2_0000, 0x4_0000, 0x4_0008] {
            assert_eq!(before_and_after(set(allowed)), (0, 0), "{allowed:#x}");
        }
        // READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, PER_SVR4
        for refused in [0x40_0000, 0x10_0000, 0x0068_0001] {
            assert_eq!(before_and_after(set(refused)), (0, EPERM), "{refused:#x}");
        }
    }

    #[test]
    fn a_call_past_the_last_reviewed_number_is_enosys() {
        require_root();
        let enosys = -(Errno::ENOSYS as i64);
        // a number no kernel has yet: the filter answers as the kernel does
        let (before, after) = before_and_after(|| sys::raw_syscall(1000, [0; 6]));
        assert_eq!((before, after), (enosys, enosys));
        // one this kernel may have that nobody has reviewed: ENOSYS all the same
        let (_, after) =
            before_and_after(|| sys::raw_syscall(i64::from(LAST_REVIEWED + 1), [0; 6]));
        assert_eq!(after, enosys);
        // and the last one reviewed is the kernel's to answer (file_setattr, bad fd)
        let (before, after) = before_and_after(|| {
            sys::raw_syscall(i64::from(LAST_REVIEWED), [u64::MAX, 0, 0, 0, 0, 0])
        });
        assert_eq!(before, after);
        assert_ne!(after, enosys, "the kernel has file_setattr (Linux 6.17)");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn denied_calls_get_their_errno_through_int_0x80() {
        require_root();
        for denied in DENIED {
            let Some(nr) = denied.number(Abi::I386) else {
                continue;
            };
            let wide = probe(denied);
            let args = [0, 1, 2, 3, 4].map(|i| wide[i] as u32);
            let (before, after) =
                before_and_after(|| sys::raw_syscall_i386(nr, args).map(i64::from));
            let errno = -i64::from(denied.errno);
            assert_eq!(after, errno, "i386 {} with the filter", denied.name);
            assert_ne!(before, errno, "i386 {} without it", denied.name);
        }
    }

    /// One allowed call made for real, and the answer expected with and without the
    /// filter: `None` for success, or the errno of arguments the kernel refuses.
    struct Check {
        what: &'static str,
        nr: libc::c_long,
        args: [u64; 6],
        errno: Option<Errno>,
    }

    #[test]
    fn calls_an_init_needs_still_work() {
        require_root();
        let missing = c"/nonexistent/cradle-seccomp-test".as_ptr() as u64;
        let tmpfs = c"tmpfs".as_ptr() as u64;
        let root = c"/".as_ptr() as u64;
        // a struct timex of zeros (modes 0: read only), with room to spare
        let mut timex = [0u64; 64];
        let timex = timex.as_mut_ptr() as u64;
        let check = |what, nr, args: &[u64], errno| {
            let mut all = [0; 6];
            all[..args.len()].copy_from_slice(args);
            Check {
                what,
                nr,
                args: all,
                errno,
            }
        };
        use libc::*;
        let checks = [
            check(
                "mount onto a missing path",
                SYS_mount,
                &[tmpfs, missing, tmpfs],
                Some(Errno::ENOENT),
            ),
            check(
                "umount2 of a missing path",
                SYS_umount2,
                &[missing],
                Some(Errno::ENOENT),
            ),
            check(
                "pivot_root to a missing path",
                SYS_pivot_root,
                &[missing, missing],
                Some(Errno::ENOENT),
            ),
            check(
                "mknodat in a missing directory",
                SYS_mknodat,
                &[AT_FDCWD as u64, missing, u64::from(S_IFIFO | 0o600)],
                Some(Errno::ENOENT),
            ),
            check(
                "unshare a UTS namespace",
                SYS_unshare,
                &[CLONE_NEWUTS as u64],
                None,
            ),
            check(
                "setns to a bad descriptor",
                SYS_setns,
                &[u64::MAX],
                Some(Errno::EBADF),
            ),
            check("chroot to /", SYS_chroot, &[root], None),
            check(
                "reboot with a wrong magic",
                SYS_reboot,
                &[],
                Some(Errno::EINVAL),
            ),
            check(
                "ptrace a process not traced",
                SYS_ptrace,
                &[PTRACE_PEEKDATA as u64, 1],
                Some(Errno::ESRCH),
            ),
            check("adjtimex, reading", SYS_adjtimex, &[timex], None),
            check("personality, asking", SYS_personality, &[0xffff_ffff], None),
            check(
                "userfaultfd, user mode only",
                SYS_userfaultfd,
                &[1 | O_CLOEXEC as u64],
                None,
            ),
            check(
                "ioctl TCGETS on a bad descriptor",
                SYS_ioctl,
                &[u64::MAX, TCGETS],
                Some(Errno::EBADF),
            ),
        ];
        for Check {
            what,
            nr,
            args,
            errno,
        } in checks
        {
            let expected = |r: i64| match errno {
                None => r >= 0,
                Some(e) => r == -(e as i64),
            };
            let (before, after) = before_and_after(|| sys::raw_syscall(nr, args));
            assert!(expected(before), "{what} without the filter: {before}");
            assert!(expected(after), "{what} with the filter: {after}");
        }
    }

    #[test]
    fn getpid_clone3_and_sethostname_work_under_the_filter() {
        require_root();
        let filter = Filter::default_for_guest(true).unwrap();
        let outcome = in_child(|| {
            if filter.install().is_err() {
                return 1;
            }
            if sys::raw_syscall(libc::SYS_getpid, [0; 6]) != Ok(i64::from(std::process::id())) {
                return 2;
            }
            // clone3, as the launcher and the shim make their children
            let Ok((_, pidfd)) = sys::fork_into(
                &sys::SingleThreaded::for_tests(),
                nix::sched::CloneFlags::CLONE_NEWUTS,
                None,
                |_| {
                    let ok = nix::unistd::sethostname("cradle-test").is_ok();
                    sys::exit_now(if ok { 42 } else { 43 })
                },
            ) else {
                return 3;
            };
            use std::os::fd::AsFd;
            match nix::sys::wait::waitid(
                nix::sys::wait::Id::PIDFd(pidfd.as_fd()),
                nix::sys::wait::WaitPidFlag::WEXITED,
            ) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 42)) => 0,
                _ => 4,
            }
        });
        assert_eq!(outcome, 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_calls_outside_the_list_still_run() {
        require_root();
        let efault = -(Errno::EFAULT as i64);
        let checks: [(&str, u32, [u32; 5], i64); 4] = [
            ("mount", 21, [u32::MAX; 5], efault),
            ("umount2", 52, [u32::MAX, 0, 0, 0, 0], efault),
            (
                "ioctl TCGETS",
                54,
                [u32::MAX, libc::TCGETS as u32, 0, 0, 0],
                -(Errno::EBADF as i64),
            ),
            (
                "reboot with a wrong magic",
                88,
                [0; 5],
                -(Errno::EINVAL as i64),
            ),
        ];
        for (what, nr, args, expected) in checks {
            let (before, after) =
                before_and_after(|| sys::raw_syscall_i386(nr, args).map(i64::from));
            assert_eq!((before, after), (expected, expected), "i386 {what}");
        }
        let pid = i64::from(std::process::id());
        let (_, after) = before_and_after(|| {
            let mine = sys::raw_syscall(libc::SYS_getpid, [0; 6])?;
            let theirs = sys::raw_syscall_i386(20, [0; 5])?;
            Ok(if i64::from(theirs) == mine { 1 } else { 0 })
        });
        assert_eq!(after, 1, "i386 getpid under the filter (parent {pid})");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_calls_get_eperm_and_minus_one_reaches_the_kernel() {
        require_root();
        let x32_getpid = i64::from(X32_SYSCALL_BIT | 39);
        let (before, after) = before_and_after(|| sys::raw_syscall(x32_getpid, [0; 6]));
        assert_eq!(
            before,
            -(Errno::ENOSYS as i64),
            "x32 is not configured on this kernel"
        );
        assert_eq!(after, EPERM);
        let (before, after) = before_and_after(|| sys::raw_syscall(-1, [0; 6]));
        assert_eq!(
            (before, after),
            (-(Errno::ENOSYS as i64), -(Errno::ENOSYS as i64))
        );
    }

    /// su, passwd and sudo in the guest: a set-user-ID root copy of id(1), run as nobody
    /// under the filter, still runs with effective uid 0.
    #[test]
    fn a_set_user_id_program_still_gains_its_owner() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;

        require_root();
        let dir = std::env::temp_dir().join(format!("cradle-setuid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let id = dir.join("id");
        std::fs::copy("/usr/bin/id", &id).unwrap();
        std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let path = std::ffi::CString::new(id.as_os_str().as_bytes()).unwrap();
        let filter = Filter::default_for_guest(true).unwrap();
        let nobody = 65534;
        let mut outputs = Vec::new();
        for with_filter in [false, true] {
            let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
            let (_, pidfd) = sys::fork_helper(&sys::SingleThreaded::for_tests(), || {
                if with_filter && filter.install().is_err() {
                    return 1;
                }
                let gid = nix::unistd::Gid::from_raw(nobody);
                let uid = nix::unistd::Uid::from_raw(nobody);
                if nix::unistd::setgroups(&[]).is_err()
                    || nix::unistd::setresgid(gid, gid, gid).is_err()
                    || nix::unistd::setresuid(uid, uid, uid).is_err()
                    || nix::unistd::dup2_stdout(&write_end).is_err()
                {
                    return 2;
                }
                let _ = nix::unistd::execv(&path, &[c"id", c"-u"]);
                3
            })
            .unwrap();
            drop(write_end);
            let mut output = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(read_end), &mut output).unwrap();
            let status = nix::sys::wait::waitid(
                nix::sys::wait::Id::PIDFd(std::os::fd::AsFd::as_fd(&pidfd)),
                nix::sys::wait::WaitPidFlag::WEXITED,
            );
            outputs.push((with_filter, status.ok(), output));
        }
        std::fs::remove_dir_all(&dir).unwrap();
        for (with_filter, status, output) in outputs {
            assert!(
                matches!(status, Some(nix::sys::wait::WaitStatus::Exited(_, 0))),
                "with the filter: {with_filter}: {status:?}"
            );
            assert_eq!(
                output, "0\n",
                "effective uid, with the filter: {with_filter}"
            );
        }
    }

    #[test]
    fn no_new_privs_stays_off() {
        require_root();
        let filter = Filter::default_for_guest(true).unwrap();
        let flag = in_child(|| match filter.install() {
            Ok(()) => nix::sys::prctl::get_no_new_privs().map_or(-1, i64::from),
            Err(e) => -1000 - e as i64,
        });
        assert_eq!(flag, 0);
    }
}
