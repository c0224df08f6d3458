//! The device policy: the device nodes a guest may create (mknod) and open, as one table,
//! and a BPF_PROG_TYPE_CGROUP_DEVICE program made from it, attached to the container's
//! cgroup `cradle.NAME`, which every process of the container is born below.
//!
//! One mechanism for both host shapes: on every mknod or open of a device node the kernel
//! (security/device_cgroup.c, `devcgroup_check_permission`) first runs the device programs
//! of the task's cgroup in the *default* hierarchy, cgroup v2, and of its ancestors
//! (kernel/bpf/cgroup.c, `task_dfl_cgroup(current)`), then, where the kernel has the v1
//! `devices` controller, checks the task's v1 devices cgroup. So on a hybrid host such as
//! these machines the program on `cradle.NAME` in the `unified` mount is enforced as on a
//! pure v2 host, and the v1 check, with the container at the v1 root, allows everything
//! the program does. No process is ever moved into a v1 cgroup.
//!
//! The program is attached with BPF_F_ALLOW_MULTI, so that a guest's own systemd may still
//! attach device programs to the cgroups it makes below. The kernel runs every program
//! from the task's cgroup up to the root (a MULTI program is never left out) and allows
//! an access only when all of them do: nothing attached below can widen this policy.
//!
//! The program is built the way runc (`libcontainer/cgroups/devices/devicefilter.go`) and
//! crun (`src/libcrun/ebpf.c`) build theirs: load the request into registers, then one
//! block per rule whose tests jump to the next block on a mismatch and which otherwise
//! returns 1 (allow); after the last block, return 0 (deny).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::process::child::Child;
use crate::sys::{self, SingleThreaded};

/// What kind of node a rule is about (`BPF_DEVCG_DEV_*`; `All` is both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceType {
    Char,
    Block,
    All,
}

/// A set of accesses to a device (`BPF_DEVCG_ACC_*`, the bits of the upper half of the
/// program's `access_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access(u8);

impl Access {
    pub const MKNOD: Access = Access(1);
    pub const READ: Access = Access(2);
    pub const WRITE: Access = Access(4);
    /// Create, read and write: `rwm`.
    pub const ALL: Access = Access::MKNOD.union(Access::READ).union(Access::WRITE);

    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn from_bits(bits: u8) -> Access {
        Access(bits & Access::ALL.0)
    }

    pub const fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }
}

/// Device numbers from `first` to `last`, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub first: u32,
    pub last: u32,
}

impl Span {
    pub const fn one(n: u32) -> Span {
        Span { first: n, last: n }
    }

    pub const fn from_to(first: u32, last: u32) -> Span {
        Span { first, last }
    }
}

/// One allow rule: nodes of `device_type` with a major and a minor in `major` and `minor`
/// (`None`: any), for the accesses in `access`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub device_type: DeviceType,
    pub major: Option<Span>,
    pub minor: Option<Span>,
    pub access: Access,
}

/// A device of the policy, and the node the host must have for the guest to get it.
struct Allowed {
    rule: Rule,
    only_if_host_has: Option<&'static str>,
}

/// Character devices the guest may create, read and write: majors `major`, minors `minor`
/// (`None`: any).
const fn char_devices(major: Span, minor: Option<Span>) -> Allowed {
    Allowed {
        rule: Rule {
            device_type: DeviceType::Char,
            major: Some(major),
            minor,
            access: Access::ALL,
        },
        only_if_host_has: None,
    }
}

/// As [`char_devices`] for one device, only where the host has the node `host_node`.
const fn host_char_device(major: u32, minor: u32, host_node: &'static str) -> Allowed {
    let mut allowed = char_devices(Span::one(major), Some(Span::one(minor)));
    allowed.only_if_host_has = Some(host_node);
    allowed
}

/// Every device a guest may have (the issue "Contain the guest"); nothing else. Neighbours
/// share a rule: the kernel's verifier walks every path of the program when it is loaded,
/// and eighteen one-device rules cost it twice the time these seven do. The pty slaves are
/// the Unix98 ones, majors 136 to 143 (`UNIX98_PTY_SLAVE_MAJOR`, eight majors of
/// `UNIX98_PTY_MAJOR_COUNT`): the guest's own devpts, and its /dev/console, a slave of the
/// launcher's pty.
const ALLOWED: [Allowed; 7] = [
    char_devices(Span::one(1), Some(Span::one(3))), // null
    char_devices(Span::one(1), Some(Span::one(5))), // zero
    char_devices(Span::one(1), Some(Span::from_to(7, 9))), // full, random, urandom
    char_devices(Span::one(5), Some(Span::from_to(0, 2))), // tty, console, ptmx
    char_devices(Span::from_to(136, 143), None),    // pts/*
    host_char_device(10, 229, "/dev/fuse"),
    host_char_device(10, 200, "/dev/net/tun"),
];

/// The rules for a host that has the nodes for which `host_has` is true: every device of
/// the table, those that need a node of the host's only where it has it.
pub fn rules(host_has: impl Fn(&Path) -> bool) -> Vec<Rule> {
    ALLOWED
        .iter()
        .filter(|allowed| {
            allowed
                .only_if_host_has
                .is_none_or(|node| host_has(Path::new(node)))
        })
        .map(|allowed| allowed.rule)
        .collect()
}

// Opcodes (linux/bpf_common.h, linux/bpf.h): class | size/operation | source.
const LDX_MEM_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W (0)
const ALU32_AND_K: u8 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x04 | 0x70; // BPF_ALU | BPF_RSH | BPF_K
const ALU64_MOV_K: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP32_JNE_K: u8 = 0x06 | 0x50; // BPF_JMP32 | BPF_JNE | BPF_K
const JMP32_JSET_K: u8 = 0x06 | 0x40; // BPF_JMP32 | BPF_JSET | BPF_K
const JMP32_JLT_K: u8 = 0x06 | 0xa0; // BPF_JMP32 | BPF_JLT | BPF_K (unsigned)
const JMP32_JGT_K: u8 = 0x06 | 0x20; // BPF_JMP32 | BPF_JGT | BPF_K (unsigned)
const JMP_EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT

/// The registers: R0 returns, R1 points to the `struct bpf_cgroup_dev_ctx`, and the
/// program loads the request into R2 to R5.
const R0: u8 = 0;
const R_CTX: u8 = 1;
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

/// `BPF_DEVCG_DEV_BLOCK`, `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;

/// One eBPF instruction, `struct bpf_insn`: opcode, destination and source registers, a
/// jump offset (in instructions, from the next one) and an immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// `dst = *(u32 *)(src + off)`
    pub const fn load_word(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(LDX_MEM_W, dst, src, off, 0)
    }

    /// `dst = (u32)dst & imm`
    pub const fn and32(dst: u8, imm: i32) -> Insn {
        Insn::new(ALU32_AND_K, dst, 0, 0, imm)
    }

    /// `dst = (u32)dst >> imm`
    pub const fn rsh32(dst: u8, imm: i32) -> Insn {
        Insn::new(ALU32_RSH_K, dst, 0, 0, imm)
    }

    /// `dst = imm`
    pub const fn mov64(dst: u8, imm: i32) -> Insn {
        Insn::new(ALU64_MOV_K, dst, 0, 0, imm)
    }

    /// `if (u32)dst != (u32)imm goto +off`. The 32-bit jump compares a major or minor
    /// loaded from the context with all 32 bits of the immediate, never sign-extended.
    pub const fn jne32(dst: u8, imm: u32, off: i16) -> Insn {
        Insn::new(JMP32_JNE_K, dst, 0, off, imm as i32)
    }

    /// `if (u32)dst < imm goto +off`, unsigned
    pub const fn jlt32(dst: u8, imm: u32, off: i16) -> Insn {
        Insn::new(JMP32_JLT_K, dst, 0, off, imm as i32)
    }

    /// `if (u32)dst > imm goto +off`, unsigned
    pub const fn jgt32(dst: u8, imm: u32, off: i16) -> Insn {
        Insn::new(JMP32_JGT_K, dst, 0, off, imm as i32)
    }

    /// `if (u32)dst & imm goto +off`
    pub const fn jset32(dst: u8, imm: u32, off: i16) -> Insn {
        Insn::new(JMP32_JSET_K, dst, 0, off, imm as i32)
    }

    /// `return R0`
    pub const fn exit() -> Insn {
        Insn::new(JMP_EXIT, 0, 0, 0, 0)
    }

    /// The 8 bytes the kernel reads. The registers share a byte as two 4-bit fields,
    /// `dst_reg` first, whose order in the byte follows the machine's byte order.
    pub fn encode(self) -> [u8; 8] {
        let regs = if cfg!(target_endian = "little") {
            (self.src << 4) | (self.dst & 0xf)
        } else {
            (self.dst << 4) | (self.src & 0xf)
        };
        let [o0, o1] = self.off.to_ne_bytes();
        let [i0, i1, i2, i3] = self.imm.to_ne_bytes();
        [self.code, regs, o0, o1, i0, i1, i2, i3]
    }
}

/// The tests of a rule's block, jumps with their offsets still 0: a request that makes
/// one of the jumps is not the rule's.
fn tests_of(rule: &Rule) -> Vec<Insn> {
    let mut tests = Vec::with_capacity(4);
    match rule.device_type {
        DeviceType::Char => tests.push(Insn::jne32(R_TYPE, DEV_CHAR, 0)),
        DeviceType::Block => tests.push(Insn::jne32(R_TYPE, DEV_BLOCK, 0)),
        DeviceType::All => {}
    }
    // a request with an access the rule does not give
    let refused = Access::ALL.bits() & !rule.access.bits();
    if refused != 0 {
        tests.push(Insn::jset32(R_ACCESS, u32::from(refused), 0));
    }
    for (reg, span) in [(R_MAJOR, rule.major), (R_MINOR, rule.minor)] {
        match span {
            None => {}
            Some(Span { first, last }) if first == last => tests.push(Insn::jne32(reg, first, 0)),
            Some(Span { first, last }) => {
                tests.push(Insn::jlt32(reg, first, 0));
                tests.push(Insn::jgt32(reg, last, 0));
            }
        }
    }
    tests
}

/// The BPF_PROG_TYPE_CGROUP_DEVICE program that allows exactly what `rules` allow. The
/// context is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`,
/// `access_type` being `(access << 16) | type`; the program returns 1 to allow, 0 to deny.
/// A rule that matches everything ends the program (the verifier refuses code that
/// cannot be reached).
///
/// When every rule is for the same type of node (the guest's policy: character devices
/// only), that test comes once, first, instead of in every block: the verifier, which
/// walks every path when the program is loaded, then has half the work.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut prog = vec![
        Insn::load_word(R_TYPE, R_CTX, 0),
        Insn::and32(R_TYPE, 0xffff),
        Insn::load_word(R_ACCESS, R_CTX, 0),
        Insn::rsh32(R_ACCESS, 16),
        Insn::load_word(R_MAJOR, R_CTX, 4),
        Insn::load_word(R_MINOR, R_CTX, 8),
    ];
    let common_type = match rules.first().map(|r| r.device_type) {
        Some(t) if t != DeviceType::All && rules.iter().all(|r| r.device_type == t) => Some(t),
        _ => None,
    };
    let mut blocks = Vec::new();
    // whether a request can get past the last block
    let mut open_ended = true;
    for rule in rules {
        let tests: Vec<Insn> = tests_of(rule)
            .into_iter()
            .filter(|test| common_type.is_none() || test.dst != R_TYPE)
            .collect();
        let count = tests.len();
        // each test skips the tests after it and the block's two allowing instructions
        blocks.extend(tests.into_iter().enumerate().map(|(i, test)| Insn {
            off: (count - 1 - i + 2) as i16,
            ..test
        }));
        blocks.extend([Insn::mov64(R0, 1), Insn::exit()]);
        if count == 0 {
            open_ended = false;
            break;
        }
    }
    // the final deny, unless nothing can reach it
    if open_ended || common_type.is_some() {
        blocks.extend([Insn::mov64(R0, 0), Insn::exit()]);
    }
    if let Some(device_type) = common_type {
        let code = match device_type {
            DeviceType::Block => DEV_BLOCK,
            _ => DEV_CHAR,
        };
        // another type of node: straight to the final deny
        prog.push(Insn::jne32(R_TYPE, code, (blocks.len() - 2) as i16));
    }
    prog.extend(blocks);
    prog
}

/// The program's license. It calls no helper, so the kernel does not require a GPL one.
const LICENSE: &CStr = c"MIT OR Apache-2.0";
/// Its name, as `bpftool prog` shows it.
const PROG_NAME: &CStr = c"cradle_devices";
/// Room for the verifier's log when a load fails (it keeps the end, Linux 6.4+).
const VERIFIER_LOG_SIZE: usize = 256 * 1024;
/// How many lines of the verifier's log an error quotes (where it says why).
const VERIFIER_LOG_LINES: usize = 4;

/// The last lines of a verifier log (a NUL-terminated buffer), on one line.
fn log_tail(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(VERIFIER_LOG_LINES)..].join("; ")
}

/// The path of the directory open on `dir`, for an error message.
fn describe(dir: BorrowedFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).map_or_else(
        |_| "the container's cgroup".to_owned(),
        |path| format!("cgroup {}", path.display()),
    )
}

/// Loads `prog` as a device program; when the kernel refuses it, the error quotes the end
/// of the verifier's log.
fn load(prog: &[Insn]) -> Result<OwnedFd> {
    load_code(&encode(prog))
}

/// The program as the kernel reads it.
fn encode(prog: &[Insn]) -> Vec<[u8; 8]> {
    prog.iter().map(|insn| insn.encode()).collect()
}

/// [`load`] for a program encoded already.
fn load_code(code: &[[u8; 8]]) -> Result<OwnedFd> {
    if let Ok(fd) = sys::bpf_load_cgroup_device(code, LICENSE, PROG_NAME, None) {
        return Ok(fd);
    }
    // again, for the verifier's log
    let mut log = vec![0u8; VERIFIER_LOG_SIZE];
    sys::bpf_load_cgroup_device(code, LICENSE, PROG_NAME, Some(&mut log)).map_err(|errno| {
        let tail = log_tail(&log);
        let err = if tail.is_empty() {
            io::Error::from(errno)
        } else {
            io::Error::other(format!("{}; verifier: {tail}", errno.desc()))
        };
        Error::host(
            format!(
                "load the device policy program ({} instructions)",
                code.len()
            ),
            err,
        )
    })
}

/// A device policy, loaded in the kernel (the verifier runs once), to attach to the
/// cgroup of every boot.
pub struct Policy {
    prog: OwnedFd,
}

impl Policy {
    /// The program that allows exactly `rules`.
    pub fn load(rules: &[Rule]) -> Result<Self> {
        Ok(Policy {
            prog: load(&program(rules))?,
        })
    }

    /// The policy of this host for a guest: fuse and net/tun where the host has them.
    pub fn for_guest() -> Result<Self> {
        Policy::load(&rules(Path::exists))
    }

    /// [`Policy::for_guest`], loaded by a process of its own while the caller goes on:
    /// the kernel's verifier and JIT take 0.2 to 0.35 ms of a CPU, which a start or a run
    /// then does not wait for in line (see [`PendingPolicy`]).
    pub fn begin_for_guest(threads: &SingleThreaded) -> PendingPolicy {
        let code = encode(&program(&rules(Path::exists)));
        PendingPolicy {
            loader: Loader::fork(threads, &code).ok(),
            code,
        }
    }

    /// Attaches the policy to the cgroup v2 directory `cgroup_dir` (for it and every cgroup
    /// below it, now and later): call it before a process is cloned into the cgroup. The
    /// program stays attached until the cgroup is removed.
    pub fn attach(&self, cgroup_dir: BorrowedFd) -> Result<()> {
        sys::bpf_attach_cgroup_device(cgroup_dir, self.prog.as_fd(), sys::BPF_F_ALLOW_MULTI)
            .map_err(|errno: Errno| {
                Error::host(
                    format!("attach the device policy to {}", describe(cgroup_dir)),
                    errno,
                )
            })
    }
}

/// A device policy being loaded ([`Policy::begin_for_guest`]).
pub struct PendingPolicy {
    /// The process loading it; `None` where it could not be forked.
    loader: Option<Loader>,
    /// The program, encoded.
    code: Vec<[u8; 8]>,
}

impl PendingPolicy {
    /// The loaded policy: the loader's program, taken from it (pidfd_getfd); where that
    /// fails, loaded here, so that a refusal names its cause as [`Policy::load`]'s does.
    pub fn finish(self) -> Result<Policy> {
        if let Some(prog) = self.loader.and_then(Loader::take) {
            return Ok(Policy { prog });
        }
        Ok(Policy {
            prog: load_code(&self.code)?,
        })
    }
}

/// A process that loads a device program, says its descriptor's number on a pipe, and
/// holds it until the launcher took a copy (pidfd_getfd) and said so with a byte on
/// another pipe: a byte, not end of file, since the launcher's later children inherit
/// that pipe's end too. It dies with the launcher. Dropped, it is killed and reaped
/// (`Child`).
struct Loader {
    child: Child,
    /// Its report: the descriptor's number, or minus the errno of the load.
    report: OwnedFd,
    /// Where the launcher says it took the program.
    taken: OwnedFd,
}

impl Loader {
    fn fork(threads: &SingleThreaded, code: &[[u8; 8]]) -> nix::Result<Self> {
        let (report, report_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let (taken_read, taken) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let parent = nix::unistd::getpid();
        let child = Child::fork(threads, || {
            if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err()
                || nix::unistd::getppid() != parent
            {
                return 1;
            }
            let mut keep = [report_write.as_raw_fd(), taken_read.as_raw_fd()];
            keep.sort_unstable();
            sys::close_all_but(&keep);
            let word = match sys::bpf_load_cgroup_device(code, LICENSE, PROG_NAME, None) {
                // held until we exit
                Ok(prog) => std::os::fd::IntoRawFd::into_raw_fd(prog),
                Err(e) => -(e as i32),
            };
            let _ = nix::unistd::write(&report_write, &word.to_ne_bytes());
            let _ = nix::unistd::read(&taken_read, &mut [0u8]);
            0
        })?;
        Ok(Loader {
            child,
            report,
            taken,
        })
    }

    /// The program, once loaded; `None` when the load or the copy failed.
    fn take(mut self) -> Option<OwnedFd> {
        // its report, or its end (it wrote none)
        let mut fds = [
            PollFd::new(self.report.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.child.pidfd(), PollFlags::POLLIN),
        ];
        while let Err(Errno::EINTR) = poll(&mut fds, PollTimeout::NONE) {}
        let mut word = [0u8; 4];
        let _ = fcntl(&self.report, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        let prog = match nix::unistd::read(&self.report, &mut word) {
            Ok(4) => match i32::from_ne_bytes(word) {
                fd if fd >= 0 => sys::pidfd_getfd(self.child.pidfd(), fd).ok(),
                _ => None,
            },
            _ => None,
        };
        // it exits on the byte; reaped now
        let _ = nix::unistd::write(&self.taken, &[1]);
        self.child.wait();
        prog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        // the bytes as llvm-objdump and bpftool show them
        assert_eq!(Insn::exit().encode(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Insn::mov64(0, 1).encode(), [0xb7, 0x00, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            Insn::load_word(2, 1, 0).encode(),
            [0x61, 0x12, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Insn::load_word(5, 1, 8).encode(),
            [0x61, 0x15, 8, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Insn::and32(2, 0xffff).encode(),
            [0x54, 0x02, 0, 0, 0xff, 0xff, 0, 0]
        );
        assert_eq!(Insn::rsh32(3, 16).encode(), [0x74, 0x03, 0, 0, 16, 0, 0, 0]);
        assert_eq!(
            Insn::jne32(4, 136, 3).encode(),
            [0x56, 0x04, 3, 0, 136, 0, 0, 0]
        );
        assert_eq!(
            Insn::jset32(3, 6, 1).encode(),
            [0x46, 0x03, 1, 0, 6, 0, 0, 0]
        );
        // a jump backwards and an immediate with the top bit set
        assert_eq!(
            Insn::jne32(5, u32::MAX, -2).encode(),
            [0x56, 0x05, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    /// Runs `prog` as the kernel would for a request, for the instructions `program`
    /// emits; panics on anything else, on a jump out of the program, or if it runs off
    /// its end.
    fn run(prog: &[Insn], dev_type: u32, access: Access, major: u32, minor: u32) -> u64 {
        let ctx = [(u32::from(access.bits()) << 16) | dev_type, major, minor];
        let mut regs = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let insn = prog[pc];
            let (dst, imm) = (insn.dst as usize, insn.imm);
            let mut next = pc + 1;
            let jump = || (pc as isize + 1 + insn.off as isize) as usize;
            match insn.code {
                LDX_MEM_W => {
                    assert_eq!(insn.src, R_CTX);
                    regs[dst] = u64::from(ctx[insn.off as usize / 4]);
                }
                ALU32_AND_K => regs[dst] = u64::from(regs[dst] as u32 & imm as u32),
                ALU32_RSH_K => regs[dst] = u64::from((regs[dst] as u32) >> imm),
                ALU64_MOV_K => regs[dst] = imm as i64 as u64,
                JMP32_JNE_K if regs[dst] as u32 != imm as u32 => next = jump(),
                JMP32_JSET_K if regs[dst] as u32 & imm as u32 != 0 => next = jump(),
                JMP32_JLT_K if (regs[dst] as u32) < imm as u32 => next = jump(),
                JMP32_JGT_K if regs[dst] as u32 > imm as u32 => next = jump(),
                JMP32_JNE_K | JMP32_JSET_K | JMP32_JLT_K | JMP32_JGT_K => {}
                JMP_EXIT => return regs[0],
                code => panic!("opcode {code:#x} at {pc}"),
            }
            assert!(next < prog.len(), "jump out of the program at {pc}");
            pc = next;
        }
    }

    /// Every instruction can be reached and every jump lands in the program, forwards (the
    /// verifier's first checks).
    fn assert_well_formed(prog: &[Insn]) {
        let mut reached = vec![false; prog.len()];
        reached[0] = true;
        for (pc, insn) in prog.iter().enumerate() {
            if !reached[pc] {
                panic!("instruction {pc} cannot be reached: {prog:?}");
            }
            assert!(insn.off >= 0, "backward jump at {pc}");
            let target = pc + 1 + insn.off as usize;
            match insn.code {
                JMP_EXIT => {}
                JMP32_JNE_K | JMP32_JSET_K | JMP32_JLT_K | JMP32_JGT_K => {
                    assert!(target < prog.len(), "jump out of the program at {pc}");
                    reached[target] = true;
                    reached[pc + 1] = true;
                }
                _ => reached[pc + 1] = true,
            }
        }
        assert_eq!(prog.last(), Some(&Insn::exit()));
    }

    const CHAR: u32 = DEV_CHAR;
    const BLOCK: u32 = DEV_BLOCK;
    const RW: Access = Access::READ.union(Access::WRITE);

    fn host_with_everything(_: &Path) -> bool {
        true
    }

    #[test]
    fn the_default_policy_allows_the_listed_devices_for_every_access() {
        let prog = program(&rules(host_with_everything));
        assert_well_formed(&prog);
        let listed = [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
            (136, 0),
            (136, 4095),
            (143, 7),
            (10, 229),
            (10, 200),
        ];
        for (major, minor) in listed {
            for access in [Access::READ, Access::WRITE, Access::MKNOD, RW, Access::ALL] {
                assert_eq!(
                    run(&prog, CHAR, access, major, minor),
                    1,
                    "c {major}:{minor} {access:?}"
                );
            }
        }
    }

    #[test]
    fn the_default_policy_denies_everything_else() {
        let prog = program(&rules(host_with_everything));
        // kmsg, mem, tty1, loop-control, uinput, a pty master, beyond the pty majors
        let others = [
            (1, 11),
            (1, 1),
            (4, 1),
            (10, 237),
            (10, 223),
            (128, 0),
            (135, 0),
            (144, 0),
            (0, 3),
        ];
        for (major, minor) in others {
            for access in [Access::READ, Access::WRITE, Access::MKNOD] {
                assert_eq!(
                    run(&prog, CHAR, access, major, minor),
                    0,
                    "c {major}:{minor} {access:?}"
                );
            }
        }
        // no block device at all, not even with a listed character device's numbers
        for (major, minor) in [(7, 0), (253, 0), (8, 0), (1, 3), (136, 0)] {
            for access in [Access::READ, Access::WRITE, Access::MKNOD] {
                assert_eq!(
                    run(&prog, BLOCK, access, major, minor),
                    0,
                    "b {major}:{minor}"
                );
            }
        }
    }

    #[test]
    fn fuse_and_tun_only_where_the_host_has_them() {
        let has = |wanted: &'static str| move |node: &Path| node == Path::new(wanted);
        let nothing = rules(|_: &Path| false);
        assert_eq!(nothing.len(), ALLOWED.len() - 2);
        let fuse = rules(has("/dev/fuse"));
        let tun = rules(has("/dev/net/tun"));
        let allows = |rules: &[Rule], minor| run(&program(rules), CHAR, RW, 10, minor) == 1;
        assert!(!allows(&nothing, 229) && !allows(&nothing, 200));
        assert!(allows(&fuse, 229) && !allows(&fuse, 200));
        assert!(!allows(&tun, 229) && allows(&tun, 200));
        assert_eq!(rules(host_with_everything).len(), ALLOWED.len());
    }

    #[test]
    fn a_rule_gives_only_its_accesses() {
        let read_only = Rule {
            device_type: DeviceType::Char,
            major: Some(Span::one(1)),
            minor: Some(Span::one(3)),
            access: Access::READ,
        };
        let prog = program(&[read_only]);
        assert_well_formed(&prog);
        assert_eq!(run(&prog, CHAR, Access::READ, 1, 3), 1);
        assert_eq!(run(&prog, CHAR, Access::WRITE, 1, 3), 0);
        assert_eq!(run(&prog, CHAR, RW, 1, 3), 0);
        assert_eq!(run(&prog, CHAR, Access::MKNOD, 1, 3), 0);
    }

    #[test]
    fn a_block_device_rule_is_not_for_character_devices() {
        let loops = Rule {
            device_type: DeviceType::Block,
            major: Some(Span::one(7)),
            minor: None,
            access: Access::ALL,
        };
        let prog = program(&[loops]);
        assert_well_formed(&prog);
        assert_eq!(run(&prog, BLOCK, Access::MKNOD, 7, 3), 1);
        assert_eq!(run(&prog, CHAR, Access::MKNOD, 7, 3), 0);
        assert_eq!(run(&prog, BLOCK, Access::READ, 8, 0), 0);
    }

    #[test]
    fn a_block_is_its_tests_then_allow() {
        let rule = Rule {
            device_type: DeviceType::Char,
            major: Some(Span::one(136)),
            minor: None,
            access: RW,
        };
        let prog = program(&[rule]);
        // the six loads of the request, one block, the final deny
        assert_eq!(prog.len(), 6 + 5 + 2);
        assert_eq!(
            prog[6..],
            [
                Insn::jne32(R_TYPE, CHAR, 4),
                Insn::jset32(R_ACCESS, u32::from(Access::MKNOD.bits()), 3),
                Insn::jne32(R_MAJOR, 136, 2),
                Insn::mov64(R0, 1),
                Insn::exit(),
                Insn::mov64(R0, 0),
                Insn::exit(),
            ]
        );
        // the default policy: character devices only, tested once, first; a rwm rule has no
        // access test; a span of numbers is two tests
        let prog = program(&rules(host_with_everything));
        assert_eq!(prog.len(), 6 + 1 + 4 * 4 + 2 * 5 + 4 + 2);
        assert_eq!(
            prog[6],
            Insn::jne32(R_TYPE, CHAR, (prog.len() - 6 - 3) as i16)
        );
        assert!(!prog.iter().any(|insn| insn.code == JMP32_JSET_K));
    }

    #[test]
    fn a_rule_for_everything_ends_the_program() {
        let everything = Rule {
            device_type: DeviceType::All,
            major: None,
            minor: None,
            access: Access::ALL,
        };
        let null = rules(host_with_everything)[0];
        let prog = program(&[null, everything, null]);
        assert_well_formed(&prog);
        assert_eq!(prog.len(), 6 + 5 + 2);
        assert_eq!(run(&prog, BLOCK, Access::ALL, 7, 0), 1);
        let none = program(&[]);
        assert_well_formed(&none);
        assert_eq!(run(&none, CHAR, Access::READ, 1, 3), 0);
    }

    #[test]
    fn a_verifier_log_is_quoted_by_its_last_lines() {
        let mut log = b"0: (61) r2 = *(u32 *)(r1 +0)\n1: (b7) r0 = 1\n\nR0 !read_ok\n\
                        invalid access\nprocessed 2 insns\n\0garbage"
            .to_vec();
        log.extend([0; 16]);
        assert_eq!(
            log_tail(&log),
            "1: (b7) r0 = 1; R0 !read_ok; invalid access; processed 2 insns"
        );
        assert_eq!(log_tail(&[0; 8]), "");
    }
}

/// Root tests, apart from the unit tests above: they load programs and make cgroups.
#[cfg(test)]
mod root_tests;
