//! OCI runtime-spec seccomp profiles (`linux.seccomp`), compiled to the classic BPF program
//! a [`Filter`] installs. runc and crun hand a profile to libseccomp; cradle is static and
//! carries no libseccomp, so the compiler is here, and gives a profile the meaning runc
//! gives it. The names become each ABI's numbers from the `syscalls` crate's tables (the
//! kernel's, kept up to date there), and the rules a linear program:
//!
//! ```text
//!     ld  arch
//!     jeq ABI₁ → body₁ …                   one per ABI of the profile
//!     ret KILL_PROCESS                      an ABI the profile does not name
//! body:
//!     ld  nr                                (x86_64: the x32 guard, see below)
//!     jeq NR, else past the block  ┐
//!     the conditions, a failing    │        a block per call of a rule
//!       one jumps past the block   │
//!     ret ACTION                   ┘
//!     …
//!     ret DEFAULT
//! ```
//!
//! What runc and libseccomp do with a profile, and so this module:
//!
//! - A rule whose action is the default one is dropped (runc skips it: libseccomp refuses
//!   it). A name an ABI's table does not have is skipped on that ABI, as runc skips a call
//!   the kernel does not know, and an empty name is an error, as it is there.
//! - A call with a rule without conditions gets that rule's action, whatever its
//!   arguments and wherever its conditional rules stand in the profile: libseccomp keeps
//!   the shortest chain for a call, so the first unconditional rule wins and the others
//!   are dropped (libseccomp 2.5.4's `seccomp_export_pfc` shows it, either order).
//! - The conditions of a rule must all hold, unless two of them name the same argument:
//!   then, as runc does, each becomes a rule of its own, and any one of them is enough
//!   (`personality` in Docker's profile: one of three values).
//! - Arguments are compared as unsigned 64-bit numbers on the 64-bit ABIs, and by their
//!   low 32 bits on the 32-bit ones, where libseccomp also drops the high half of the
//!   value. MASKED_EQ is `arg & value == value_two & value`: libseccomp masks the
//!   expected value too, and leaves out a MASKED_EQ whose mask has no bit in the words
//!   compared, so a rule left without conditions that way is an unconditional one.
//! - An arch the profile does not name gets KILL_PROCESS: libseccomp's bad-arch answer
//!   kills (runc leaves it at the thread), here the whole process, never half of one.
//! - x32 calls (arch x86_64, numbers with bit 0x40000000) are a foreign ABI too, as in
//!   libseccomp when the profile does not name SCMP_ARCH_X32, which cradle has no [`Abi`]
//!   for; -1, a tracer skipping a call, goes on to the rules and so to the default.
//!
//! Where a linear program differs: the conditional rules of one call are tried in the
//! profile's order, where libseccomp's tree looks at the higher argument first; only two
//! conditional rules with different actions that both match can tell. libseccomp also
//! repeats an i386 rule on a socket call (socket, bind, …) or a System V IPC call (semop,
//! msgget, …) as a rule on socketcall(2) or ipc(2) with that call's number in the first
//! argument; here a profile names those multiplexers itself (Docker's does). And runc's
//! ENOSYS for numbers past the profile's highest is runc's own, not libseccomp's, and
//! not done here.
//!
//! This was checked against libseccomp 2.5.4 on a few thousand random profiles, every
//! ABI: the same answers wherever a call has one conditional rule. Where a call has
//! several, that version's BPF is sometimes wrong (it compares a word it no longer has
//! loaded, or mixes two rules' conditions), and its `seccomp_export_pfc` output, which
//! this module agrees with, was the reference.

use std::collections::{BTreeMap, BTreeSet};

use cradle_common::arch::{Abi, SECCOMP_ABIS};

use crate::error::{Error, Result};
use crate::security::seccomp::{
    ALU_AND_K, ARCH_OFFSET, Filter, JA, JEQ_K, JGE_K, JGT_K, LD_W_ABS, MAX_INSNS, NR_OFFSET, RET_K,
    X32_SYSCALL_BIT, insn,
};

/// What the kernel does with a call a rule (or the default) matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// SCMP_ACT_KILL_THREAD (and runc's SCMP_ACT_KILL): the calling thread dies.
    KillThread,
    /// SCMP_ACT_KILL_PROCESS: the whole process dies, with SIGSYS.
    KillProcess,
    /// SCMP_ACT_TRAP: SIGSYS to the thread, which may handle it.
    Trap,
    /// SCMP_ACT_ERRNO: the call fails with this errno, without running.
    Errno(u16),
    /// SCMP_ACT_TRACE: a ptrace tracer is told, with this value; without one, ENOSYS.
    Trace(u16),
    /// SCMP_ACT_ALLOW: the call runs.
    Allow,
    /// SCMP_ACT_LOG: the call runs and is logged.
    Log,
    /// SCMP_ACT_NOTIFY: the call waits for the seccomp agent holding the filter's
    /// listener, which answers for it (the filter is installed with
    /// SECCOMP_FILTER_FLAG_NEW_LISTENER).
    Notify,
}

impl Action {
    /// The SECCOMP_RET_* value of linux/seccomp.h the program returns.
    const fn ret(self) -> u32 {
        match self {
            Action::KillThread => 0x0000_0000,
            Action::KillProcess => 0x8000_0000,
            Action::Trap => 0x0003_0000,
            Action::Errno(errno) => 0x0005_0000 | errno as u32,
            Action::Trace(data) => 0x7ff0_0000 | data as u32,
            Action::Log => 0x7ffc_0000,
            Action::Notify => 0x7fc0_0000,
            Action::Allow => 0x7fff_0000,
        }
    }
}

/// How an argument is compared with a condition's value (SCMP_CMP_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    NotEqual,
    LessThan,
    LessEqual,
    EqualTo,
    GreaterEqual,
    GreaterThan,
    /// `arg & value == value_two & value` (libseccomp masks the expected value too).
    MaskedEqual,
}

/// A condition on one argument of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The argument, 0 to 5.
    pub index: u8,
    pub value: u64,
    /// MASKED_EQ's expected value; the other operators ignore it.
    pub value_two: u64,
    pub op: Op,
}

/// The action for the calls named, when the conditions hold (always, without any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    pub conditions: Vec<Condition>,
}

/// A seccomp profile as the OCI runtime spec has it, its names already read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The action for every call no rule matches.
    pub default: Action,
    /// The ABIs the profile names (SCMP_ARCH_*); empty means the build's native ABI and its
    /// compat one (`SECCOMP_ABIS`).
    pub abis: Vec<Abi>,
    pub rules: Vec<Rule>,
    /// SECCOMP_FILTER_FLAG_* bits to install it with (LOG, SPEC_ALLOW).
    pub flags: u32,
}

/// The flags a profile may ask for: the others are the caller's business (TSYNC), or hand
/// back a descriptor nobody would hold (NEW_LISTENER).
const FLAGS: u32 = (libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW) as u32;

/// The calls a rule may not have SCMP_ACT_NOTIFY for: runc refuses `write`, and the
/// listener is handed over with `sendmsg`.
const UNNOTIFIABLE: [&str; 2] = ["write", "sendmsg"];

impl Profile {
    /// True when a rule's action is SCMP_ACT_NOTIFY: the filter then has a listener, for
    /// a seccomp agent.
    pub fn notifies(&self) -> bool {
        self.default == Action::Notify || self.rules.iter().any(|r| r.action == Action::Notify)
    }

    /// The profile as one program for all its ABIs (see the module documentation),
    /// wrapped with its flags. Fails on a condition past the sixth argument, an empty
    /// name, a flag other than LOG and SPEC_ALLOW, or a program longer than the kernel
    /// takes.
    pub fn compile(&self) -> Result<Filter> {
        self.check()?;
        let mut abis: Vec<Abi> = Vec::new();
        let named = if self.abis.is_empty() {
            &SECCOMP_ABIS[..]
        } else {
            &self.abis[..]
        };
        for &abi in named {
            if !abis.contains(&abi) {
                abis.push(abi);
            }
        }
        let bodies = abis
            .iter()
            .map(|&abi| self.body(abi))
            .collect::<Result<Vec<_>>>()?;
        let program = dispatch(&abis, &bodies);
        if program.len() > MAX_INSNS {
            return Err(invalid(format!(
                "it compiles to {} instructions, more than the kernel's {MAX_INSNS}",
                program.len()
            )));
        }
        let listener = match self.notifies() {
            true => libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32,
            false => 0,
        };
        Ok(Filter::from_program(program, self.flags | listener))
    }

    fn check(&self) -> Result<()> {
        if self.flags & !FLAGS != 0 {
            return Err(invalid(format!(
                "flags {:#x}: only SECCOMP_FILTER_FLAG_LOG and SPEC_ALLOW are taken",
                self.flags
            )));
        }
        // every call would wait for an agent that has not got the listener yet
        if self.default == Action::Notify {
            return Err(invalid(
                "SCMP_ACT_NOTIFY as the default action (as libseccomp, refused)".into(),
            ));
        }
        for rule in &self.rules {
            // the calls that hand the listener over (and say the setup is done) may not
            // wait for the agent it is handed to
            if rule.action == Action::Notify {
                if let Some(name) = rule
                    .names
                    .iter()
                    .find(|n| UNNOTIFIABLE.contains(&n.as_str()))
                {
                    return Err(invalid(format!(
                        "SCMP_ACT_NOTIFY for {name}: the runtime hands the listener to the \
                         agent with it"
                    )));
                }
            }
            if rule.names.iter().any(String::is_empty) {
                return Err(invalid("a rule names the empty string".into()));
            }
            if let Some(c) = rule.conditions.iter().find(|c| c.index >= ARGS) {
                return Err(invalid(format!(
                    "{}: argument {} (system calls have 6, 0 to 5)",
                    rule.names.join(","),
                    c.index
                )));
            }
        }
        Ok(())
    }

    /// `abi`'s blocks, in order: the rules with the default's action dropped, each call
    /// with an unconditional rule reduced to the first such rule, and each rule whose
    /// conditions repeat an argument split into one rule per condition. A condition that
    /// always holds on `abi` (a MASKED_EQ whose mask is 0 in the words compared) is left
    /// out, as libseccomp leaves it: a rule left without any is unconditional.
    fn blocks(&self, abi: Abi, wide: bool) -> Vec<Block> {
        let rules: Vec<(Vec<u32>, Action, Vec<Vec<Condition>>)> = self
            .rules
            .iter()
            .filter(|rule| rule.action != self.default)
            .map(|rule| {
                let numbers = rule.names.iter().filter_map(|n| number(abi, n)).collect();
                let alternatives = alternatives(&rule.conditions)
                    .into_iter()
                    .map(|all| {
                        let all = all.iter().filter(|c| !always_holds(c, wide));
                        all.copied().collect()
                    })
                    .collect();
                (numbers, rule.action, alternatives)
            })
            .collect();
        let mut unconditional: BTreeMap<u32, Action> = BTreeMap::new();
        for (numbers, action, alternatives) in &rules {
            if alternatives.iter().any(Vec::is_empty) {
                for &nr in numbers {
                    unconditional.entry(nr).or_insert(*action);
                }
            }
        }
        let mut placed = BTreeSet::new();
        let mut blocks = Vec::new();
        for (numbers, action, alternatives) in rules {
            for nr in numbers {
                if let Some(&action) = unconditional.get(&nr) {
                    if placed.insert(nr) {
                        blocks.push(Block {
                            nr,
                            conditions: Vec::new(),
                            action,
                        });
                    }
                    continue;
                }
                for conditions in &alternatives {
                    blocks.push(Block {
                        nr,
                        conditions: conditions.clone(),
                        action,
                    });
                }
            }
        }
        blocks
    }

    /// `abi`'s part of the program: load the number, the blocks, the default.
    fn body(&self, abi: Abi) -> Result<Vec<libc::sock_filter>> {
        let wide = matches!(abi, Abi::X86_64 | Abi::Aarch64);
        let mut body = vec![insn(LD_W_ABS, 0, 0, NR_OFFSET)];
        if abi == Abi::X86_64 {
            body.extend_from_slice(&X32_GUARD);
        }
        // a block that compares arguments leaves one in the accumulator
        let mut nr_loaded = true;
        for block in self.blocks(abi, wide) {
            body.extend(block.compile(wide, !nr_loaded)?);
            nr_loaded = block.conditions.is_empty();
        }
        body.push(insn(RET_K, 0, 0, self.default.ret()));
        Ok(body)
    }
}

fn invalid(why: String) -> Error {
    Error::Usage(format!("seccomp profile: {why}"))
}

/// The number of `name` on `abi`, if that ABI has the call.
fn number(abi: Abi, name: &str) -> Option<u32> {
    use syscalls::{aarch64, arm, x86, x86_64};
    let nr = match abi {
        Abi::X86_64 => name.parse::<x86_64::Sysno>().ok()?.id(),
        Abi::I386 => name.parse::<x86::Sysno>().ok()?.id(),
        Abi::Aarch64 => {
            // the kernel's (and libseccomp's) name; the crate calls it fstatat
            let name = if name == "newfstatat" {
                "fstatat"
            } else {
                name
            };
            let nr = name.parse::<aarch64::Sysno>().ok()?.id();
            // the crate lists the 32-bit ABIs' *_time64 calls for aarch64 too, where
            // asm-generic leaves 403-423 empty
            if AARCH64_HOLE.contains(&nr) {
                return None;
            }
            nr
        }
        Abi::Arm => match ARM_PRIVATE.iter().find(|(n, _)| *n == name) {
            Some(&(_, nr)) => return Some(nr),
            None => name.parse::<arm::Sysno>().ok()?.id(),
        },
    };
    u32::try_from(nr).ok()
}

/// Numbers the 64-bit ABIs of asm-generic leave unused: the 32-bit ones' time64 calls.
const AARCH64_HOLE: std::ops::RangeInclusive<i32> = 403..=423;

/// 32-bit ARM's private calls (`__ARM_NR_BASE` + n, arch/arm/include/uapi/asm/unistd.h),
/// which the crate's table lacks and libseccomp has: glibc sets its thread pointer with
/// set_tls, and Docker's profile allows breakpoint, cacheflush and set_tls on ARM.
const ARM_PRIVATE: [(&str, u32); 6] = [
    ("breakpoint", 0x0f_0001),
    ("cacheflush", 0x0f_0002),
    ("usr26", 0x0f_0003),
    ("usr32", 0x0f_0004),
    ("set_tls", 0x0f_0005),
    ("get_tls", 0x0f_0006),
];

/// The conditions of a rule as alternatives, any one of which is enough: all of them
/// together, or (when two name the same argument, as runc splits them) each alone.
fn alternatives(conditions: &[Condition]) -> Vec<&[Condition]> {
    let repeated = conditions
        .iter()
        .enumerate()
        .any(|(i, c)| conditions[..i].iter().any(|d| d.index == c.index));
    if repeated {
        conditions.chunks(1).collect()
    } else {
        vec![conditions]
    }
}

/// Whether `condition` holds for every argument on an ABI `wide` or not: a MASKED_EQ
/// with no bit of the mask in the words compared.
fn always_holds(condition: &Condition, wide: bool) -> bool {
    let compared = if wide { u64::MAX } else { 0xffff_ffff };
    condition.op == Op::MaskedEqual && condition.value & compared == 0
}

/// One call of one rule: `action` when the number is `nr` and every condition holds.
struct Block {
    nr: u32,
    conditions: Vec<Condition>,
    action: Action,
}

/// Where a jump of a block goes, before offsets are known.
#[derive(Clone, Copy)]
enum Target {
    /// The next instruction.
    Next,
    /// Past the condition being compared: it holds (or, negated, fails to).
    Pass,
    /// An instruction of the block, by index.
    At(usize),
    /// Past the block's return: the block does not apply.
    Fail,
}

/// An instruction of a block, with symbolic targets.
struct Insn {
    code: u16,
    k: u32,
    jt: Target,
    jf: Target,
}

impl Block {
    /// The block's instructions, each jump within the block; `reload` when the
    /// accumulator no longer holds the number.
    fn compile(&self, wide: bool, reload: bool) -> Result<Vec<libc::sock_filter>> {
        let mut insns = Vec::new();
        if reload {
            insns.push(plain(LD_W_ABS, NR_OFFSET));
        }
        insns.push(jump(JEQ_K, self.nr, Target::Next, Target::Fail));
        for condition in &self.conditions {
            let compare = compare(condition, wide);
            let pass = insns.len() + compare.len();
            insns.extend(compare.into_iter().map(|mut insn| {
                for target in [&mut insn.jt, &mut insn.jf] {
                    if let Target::Pass = target {
                        *target = Target::At(pass);
                    }
                }
                insn
            }));
        }
        insns.push(plain(RET_K, self.action.ret()));
        let end = insns.len();
        let offset = |from: usize, target: Target| -> Result<u8> {
            let to = match target {
                Target::Next => from + 1,
                Target::At(to) => to,
                Target::Fail => end,
                Target::Pass => unreachable!("resolved above"),
            };
            u8::try_from(to - from - 1)
                .map_err(|_| invalid(format!("a jump of {} instructions", to - from)))
        };
        insns
            .iter()
            .enumerate()
            .map(|(i, insn)| Ok(insn_of(insn, offset(i, insn.jt)?, offset(i, insn.jf)?)))
            .collect()
    }
}

/// The instructions that go on when `condition` holds and jump past the block when it
/// does not. NE, LT and LE are EQ, GE and GT with their outcome swapped, as libseccomp
/// writes them.
fn compare(condition: &Condition, wide: bool) -> Vec<Insn> {
    let (op, negated) = match condition.op {
        Op::NotEqual => (Op::EqualTo, true),
        Op::LessThan => (Op::GreaterEqual, true),
        Op::LessEqual => (Op::GreaterThan, true),
        op => (op, false),
    };
    let (yes, no) = if negated {
        (Target::Fail, Target::Pass)
    } else {
        (Target::Pass, Target::Fail)
    };
    let arg = u32::from(condition.index);
    let (lo_offset, hi_offset) = (ARGS_OFFSET + 8 * arg, ARGS_OFFSET + 8 * arg + 4);
    // libseccomp masks MASKED_EQ's expected value too: bits outside the mask never count
    let (value, value_two) = (condition.value, condition.value_two & condition.value);
    let (hi, lo) = ((value >> 32) as u32, value as u32);
    let last = match op {
        Op::GreaterThan => JGT_K,
        Op::GreaterEqual => JGE_K,
        _ => JEQ_K,
    };
    let mut out = Vec::new();
    match op {
        Op::MaskedEqual => {
            let halves = [
                (hi_offset, hi, (value_two >> 32) as u32),
                (lo_offset, lo, value_two as u32),
            ];
            // a word the mask has no bit of is left out (both, `always_holds`)
            let halves: Vec<_> = halves[if wide { 0 } else { 1 }..]
                .iter()
                .filter(|(_, mask, _)| *mask != 0)
                .collect();
            for (i, &&(offset, mask, expected)) in halves.iter().enumerate() {
                let on = if i + 1 == halves.len() {
                    yes
                } else {
                    Target::Next
                };
                out.push(plain(LD_W_ABS, offset));
                out.push(plain(ALU_AND_K, mask));
                out.push(jump(JEQ_K, expected, on, no));
            }
        }
        Op::EqualTo if wide => {
            // the high words differ: not equal; else the low words decide
            out.push(plain(LD_W_ABS, hi_offset));
            out.push(jump(JEQ_K, hi, Target::Next, no));
        }
        _ if wide => {
            // the high words decide, unless they are equal: then the low words do
            out.push(plain(LD_W_ABS, hi_offset));
            out.push(jump(JGT_K, hi, yes, Target::Next));
            out.push(jump(JEQ_K, hi, Target::Next, no));
        }
        _ => {}
    }
    if op != Op::MaskedEqual {
        out.push(plain(LD_W_ABS, lo_offset));
        out.push(jump(last, lo, yes, no));
    }
    out
}

/// The arch dispatch in front of the bodies: each ABI's jump to its own, KILL_PROCESS for
/// any other arch. The bodies end in returns on every path, so they sit one after the
/// other; `ja` takes a 32-bit offset, so the jumps to them have no 255 limit.
fn dispatch(abis: &[Abi], bodies: &[Vec<libc::sock_filter>]) -> Vec<libc::sock_filter> {
    let head = 1 + 2 * abis.len() + 1;
    let mut program = vec![insn(LD_W_ABS, 0, 0, ARCH_OFFSET)];
    let mut at = head;
    for (abi, body) in abis.iter().zip(bodies) {
        program.push(insn(JEQ_K, 0, 1, abi.audit_arch()));
        let next = program.len() + 1;
        program.push(insn(JA, 0, 0, (at - next) as u32));
        at += body.len();
    }
    program.push(insn(RET_K, 0, 0, Action::KillProcess.ret()));
    for body in bodies {
        program.extend_from_slice(body);
    }
    program
}

/// After the number is loaded on x86_64: an x32 call (but -1) is a foreign ABI's.
const X32_GUARD: [libc::sock_filter; 3] = [
    insn(JGE_K, 0, 2, X32_SYSCALL_BIT),
    insn(JEQ_K, 1, 0, u32::MAX),
    insn(RET_K, 0, 0, Action::KillProcess.ret()),
];

/// The offset of the first argument in struct seccomp_data (each argument 64 bits, the
/// low word first on the little-endian ABIs cradle knows).
const ARGS_OFFSET: u32 = 16;
/// A system call's arguments.
const ARGS: u8 = 6;

fn insn_of(insn: &Insn, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: insn.code,
        jt,
        jf,
        k: insn.k,
    }
}

const fn plain(code: u16, k: u32) -> Insn {
    Insn {
        code,
        k,
        jt: Target::Next,
        jf: Target::Next,
    }
}

const fn jump(code: u16, k: u32, jt: Target, jf: Target) -> Insn {
    Insn { code, k, jt, jf }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::seccomp::tests::run;
    use crate::sys;
    use crate::testing::{in_child, require_root};
    use nix::errno::Errno;

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;

    const fn errno(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | e as u32
    }

    fn rule(names: &[&str], action: Action, conditions: &[Condition]) -> Rule {
        Rule {
            names: names.iter().map(|n| n.to_string()).collect(),
            action,
            conditions: conditions.to_vec(),
        }
    }

    fn on(index: u8, op: Op, value: u64) -> Condition {
        Condition {
            index,
            value,
            value_two: 0,
            op,
        }
    }

    fn profile(default: Action, abis: &[Abi], rules: Vec<Rule>) -> Profile {
        Profile {
            default,
            abis: abis.to_vec(),
            rules,
            flags: 0,
        }
    }

    fn compiled(profile: &Profile) -> Vec<libc::sock_filter> {
        profile.compile().unwrap().program().to_vec()
    }

    #[test]
    fn a_notify_rule_gives_the_filter_a_listener_and_is_refused_where_it_would_deadlock() {
        let plain = profile(
            Action::Allow,
            &[],
            vec![rule(&["getpid"], Action::Errno(1), &[])],
        );
        assert!(!plain.notifies());
        assert!(!plain.compile().unwrap().has_listener());
        let notify = profile(
            Action::Allow,
            &[],
            vec![rule(&["mkdir"], Action::Notify, &[])],
        );
        assert!(notify.notifies());
        assert!(notify.compile().unwrap().has_listener());
        assert!(
            compiled(&notify)
                .iter()
                .any(|i| i.code == RET_K && i.k == 0x7fc0_0000)
        );
        let by_default = profile(Action::Notify, &[], vec![]);
        assert!(by_default.compile().is_err());
        for call in ["write", "sendmsg"] {
            let handing_over =
                profile(Action::Allow, &[], vec![rule(&[call], Action::Notify, &[])]);
            assert!(handing_over.compile().is_err(), "{call}");
        }
    }

    /// getpid(2)'s number on each ABI, and getppid(2)'s.
    fn getpid(abi: Abi) -> u32 {
        match abi {
            Abi::X86_64 => 39,
            Abi::I386 | Abi::Arm => 20,
            Abi::Aarch64 => 172,
        }
    }
    fn getppid(abi: Abi) -> u32 {
        match abi {
            Abi::X86_64 => 110,
            Abi::I386 | Abi::Arm => 64,
            Abi::Aarch64 => 173,
        }
    }

    #[test]
    fn allow_by_default_with_one_call_refused() {
        let p = profile(
            Action::Allow,
            &Abi::ALL,
            vec![rule(&["getppid"], Action::Errno(1), &[])],
        );
        let program = compiled(&p);
        for abi in Abi::ALL {
            let arch = abi.audit_arch();
            assert_eq!(
                run(&program, arch, getppid(abi), [0; 6]),
                errno(1),
                "{abi:?}"
            );
            assert_eq!(run(&program, arch, getpid(abi), [0; 6]), ALLOW, "{abi:?}");
            assert_eq!(run(&program, arch, 0, [0; 6]), ALLOW, "{abi:?}");
        }
    }

    #[test]
    fn deny_by_default_with_an_allow_list() {
        let p = profile(
            Action::Errno(libc::EPERM as u16),
            &[],
            vec![
                rule(&["getpid", "getppid"], Action::Allow, &[]),
                rule(&["exit_group"], Action::Log, &[]),
            ],
        );
        let program = compiled(&p);
        for abi in SECCOMP_ABIS {
            let arch = abi.audit_arch();
            assert_eq!(run(&program, arch, getpid(abi), [0; 6]), ALLOW);
            assert_eq!(run(&program, arch, getppid(abi), [0; 6]), ALLOW);
            let exit_group = number(abi, "exit_group").unwrap();
            assert_eq!(run(&program, arch, exit_group, [0; 6]), 0x7ffc_0000);
            for nr in [0, 1, 2, 200, 435, u32::MAX] {
                assert_eq!(run(&program, arch, nr, [0; 6]), errno(libc::EPERM));
            }
        }
    }

    /// Whether `op` holds for `arg` and `value` (and `value_two`), on an ABI `wide` or not.
    fn holds(op: Op, arg: u64, value: u64, value_two: u64, wide: bool) -> bool {
        let cut = |v: u64| if wide { v } else { v & 0xffff_ffff };
        let (arg, value, value_two) = (cut(arg), cut(value), cut(value_two));
        match op {
            Op::NotEqual => arg != value,
            Op::LessThan => arg < value,
            Op::LessEqual => arg <= value,
            Op::EqualTo => arg == value,
            Op::GreaterEqual => arg >= value,
            Op::GreaterThan => arg > value,
            Op::MaskedEqual => arg & value == value_two,
        }
    }

    const OPS: [Op; 7] = [
        Op::NotEqual,
        Op::LessThan,
        Op::LessEqual,
        Op::EqualTo,
        Op::GreaterEqual,
        Op::GreaterThan,
        Op::MaskedEqual,
    ];

    /// Values on both sides of each word's edges.
    const VALUES: [u64; 9] = [
        0,
        1,
        5,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        0x2_0000_0004,
        0xffff_ffff_0000_0000,
        u64::MAX,
    ];

    /// Arguments around `value`: itself, one off, and one off in either word alone.
    fn around(value: u64) -> impl Iterator<Item = u64> {
        let near = [
            value,
            value.wrapping_add(1),
            value.wrapping_sub(1),
            value ^ (1 << 32),
            value.wrapping_add(1 << 32),
            value.wrapping_sub(1 << 32),
        ];
        near.into_iter().chain(VALUES)
    }

    #[test]
    fn every_operator_compares_64_bits_on_64_bit_abis_and_32_on_the_others() {
        for op in OPS {
            for value in VALUES {
                for index in [0, 3, 5] {
                    let condition = Condition {
                        index,
                        value,
                        value_two: value & 0x0000_00ff_0000_00f0,
                        op,
                    };
                    let p = profile(
                        Action::Allow,
                        &Abi::ALL,
                        vec![rule(&["getpid"], Action::Errno(7), &[condition])],
                    );
                    let program = compiled(&p);
                    for abi in Abi::ALL {
                        let wide = matches!(abi, Abi::X86_64 | Abi::Aarch64);
                        for arg in around(value) {
                            let mut args = [0x5555_5555_5555_5555; 6];
                            args[usize::from(index)] = arg;
                            let answer = run(&program, abi.audit_arch(), getpid(abi), args);
                            let expected = if holds(op, arg, value, condition.value_two, wide) {
                                errno(7)
                            } else {
                                ALLOW
                            };
                            assert_eq!(
                                answer, expected,
                                "{abi:?} arg{index} {arg:#x} {op:?} {value:#x}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn masked_equal_looks_at_the_masked_bits_only() {
        // clone without namespace flags, as Docker's profile allows it
        let no_namespaces = Condition {
            index: 0,
            value: 0x7e02_0000,
            value_two: 0,
            op: Op::MaskedEqual,
        };
        // a mask and a value in the high word
        let high = Condition {
            index: 1,
            value: 0xff00_0000_0000,
            value_two: 0x1200_0000_0000,
            op: Op::MaskedEqual,
        };
        let p = profile(
            Action::Errno(1),
            &[Abi::X86_64],
            vec![
                rule(&["clone"], Action::Allow, &[no_namespaces]),
                rule(&["getpid"], Action::Allow, &[high]),
            ],
        );
        let program = compiled(&p);
        let arch = Abi::X86_64.audit_arch();
        let clone = |flags: u64| run(&program, arch, 56, [flags, 0, 0, 0, 0, 0]);
        assert_eq!(clone(libc::SIGCHLD as u64), ALLOW);
        assert_eq!(clone(0x1_0000_0000 | libc::CLONE_VM as u64), ALLOW);
        assert_eq!(clone(libc::CLONE_NEWNS as u64), errno(1));
        assert_eq!(clone(libc::CLONE_NEWUSER as u64 | 0x11), errno(1));
        let getpid = |arg: u64| run(&program, arch, 39, [0, arg, 0, 0, 0, 0]);
        assert_eq!(getpid(0x1200_0000_0000), ALLOW);
        assert_eq!(getpid(0xab00_12ff_ffff_ffff), ALLOW);
        assert_eq!(getpid(0x1300_0000_0000), errno(1));
        assert_eq!(getpid(0x12), errno(1));
    }

    #[test]
    fn masked_equal_is_as_libseccomp_reads_it() {
        // the expected value is masked too: bits outside the mask never count
        let outside = Condition {
            index: 0,
            value: 0xff,
            value_two: 0x1_0000_0112,
            op: Op::MaskedEqual,
        };
        // a mask with no bit in the high word alone: always true where only the low
        // word is compared, so an unconditional rule there
        let high_only = Condition {
            index: 1,
            value: 0x1_0000_0000,
            value_two: 0,
            op: Op::MaskedEqual,
        };
        let p = profile(
            Action::Errno(1),
            &[Abi::X86_64, Abi::I386],
            vec![
                rule(&["getpid"], Action::Allow, &[outside]),
                rule(&["getppid"], Action::Log, &[high_only]),
                rule(&["getppid"], Action::Trap, &[]),
            ],
        );
        let program = compiled(&p);
        let call = |abi: Abi, nr: u32, a0: u64, a1: u64| {
            run(&program, abi.audit_arch(), nr, [a0, a1, 0, 0, 0, 0])
        };
        for abi in [Abi::X86_64, Abi::I386] {
            assert_eq!(call(abi, getpid(abi), 0x312, 0), ALLOW, "{abi:?}");
            assert_eq!(call(abi, getpid(abi), 0x313, 0), errno(1), "{abi:?}");
        }
        // x86_64: the first unconditional rule of getppid wins, the masked one is dropped
        assert_eq!(call(Abi::X86_64, 110, 0, 0), 0x0003_0000);
        // i386: the masked rule is unconditional, and first
        assert_eq!(call(Abi::I386, 64, 0, 0), 0x7ffc_0000);
        assert_eq!(call(Abi::I386, 64, 0, 0x1_0000_0000), 0x7ffc_0000);
    }

    #[test]
    fn conditions_on_one_argument_are_alternatives_on_several_all_must_hold() {
        // personality in Docker's profile: one of three values
        let p = profile(
            Action::Errno(1),
            &[Abi::X86_64, Abi::I386],
            vec![
                rule(
                    &["personality"],
                    Action::Allow,
                    &[
                        on(0, Op::EqualTo, 0),
                        on(0, Op::EqualTo, 8),
                        on(0, Op::EqualTo, 0xffff_ffff),
                    ],
                ),
                rule(
                    &["getpid"],
                    Action::Allow,
                    &[on(0, Op::EqualTo, 1), on(2, Op::GreaterThan, 10)],
                ),
            ],
        );
        let program = compiled(&p);
        for (abi, personality) in [(Abi::X86_64, 135), (Abi::I386, 136)] {
            let arch = abi.audit_arch();
            let call = |nr: u32, a0: u64, a2: u64| run(&program, arch, nr, [a0, 0, a2, 0, 0, 0]);
            for value in [0, 8, 0xffff_ffff] {
                assert_eq!(call(personality, value, 0), ALLOW, "{abi:?} {value:#x}");
            }
            assert_eq!(call(personality, 1, 0), errno(1));
            assert_eq!(call(personality, 0x40_0000, 0), errno(1));
            let getpid = getpid(abi);
            assert_eq!(call(getpid, 1, 11), ALLOW);
            assert_eq!(call(getpid, 1, 10), errno(1));
            assert_eq!(call(getpid, 0, 11), errno(1));
        }
    }

    #[test]
    fn each_abi_has_its_own_numbers() {
        let p = profile(
            Action::Allow,
            &[],
            vec![rule(&["getpid"], Action::Errno(3), &[])],
        );
        let program = compiled(&p);
        assert_eq!(number(Abi::I386, "getpid"), Some(20));
        assert_eq!(number(Abi::X86_64, "getpid"), Some(39));
        assert_eq!(number(Abi::Aarch64, "getpid"), Some(172));
        assert_eq!(number(Abi::Arm, "getpid"), Some(20));
        let [native, compat] = SECCOMP_ABIS;
        let (native_arch, compat_arch) = (native.audit_arch(), compat.audit_arch());
        assert_eq!(run(&program, native_arch, getpid(native), [0; 6]), errno(3));
        assert_eq!(run(&program, compat_arch, getpid(compat), [0; 6]), errno(3));
        if getpid(native) != getpid(compat) {
            assert_eq!(run(&program, native_arch, getpid(compat), [0; 6]), ALLOW);
            assert_eq!(run(&program, compat_arch, getpid(native), [0; 6]), ALLOW);
        }
        // x86_64 and i386 explicitly, whatever the build
        let p = profile(Action::Allow, &[Abi::X86_64, Abi::I386], p.rules.clone());
        let program = compiled(&p);
        let (x86_64, i386) = (Abi::X86_64.audit_arch(), Abi::I386.audit_arch());
        assert_eq!(run(&program, i386, 20, [0; 6]), errno(3));
        assert_eq!(run(&program, x86_64, 39, [0; 6]), errno(3));
        assert_eq!(run(&program, x86_64, 20, [0; 6]), ALLOW, "x86_64's pause");
        assert_eq!(run(&program, i386, 39, [0; 6]), ALLOW, "i386's mkdir");
    }

    #[test]
    fn an_arch_the_profile_does_not_name_is_killed() {
        let p = profile(Action::Allow, &[Abi::X86_64], vec![]);
        let program = compiled(&p);
        for arch in [
            Abi::I386.audit_arch(),
            Abi::Aarch64.audit_arch(),
            0,
            0xC000_00F3, // riscv64
        ] {
            assert_eq!(run(&program, arch, 39, [0; 6]), KILL_PROCESS, "{arch:#x}");
        }
        assert_eq!(run(&program, Abi::X86_64.audit_arch(), 39, [0; 6]), ALLOW);
    }

    #[test]
    fn x32_calls_are_a_foreign_abi_s_and_minus_one_gets_the_default() {
        let p = profile(
            Action::Errno(1),
            &[Abi::X86_64],
            vec![rule(&["getpid"], Action::Allow, &[])],
        );
        let program = compiled(&p);
        let arch = Abi::X86_64.audit_arch();
        for nr in [X32_SYSCALL_BIT, X32_SYSCALL_BIT | 39, u32::MAX - 1] {
            assert_eq!(run(&program, arch, nr, [0; 6]), KILL_PROCESS, "{nr:#x}");
        }
        assert_eq!(run(&program, arch, u32::MAX, [0; 6]), errno(1));
        assert_eq!(run(&program, arch, 39, [0; 6]), ALLOW);
    }

    #[test]
    fn names_an_abi_lacks_are_skipped_there() {
        let p = profile(
            Action::Errno(1),
            &Abi::ALL,
            vec![rule(
                &[
                    "no_such_call",
                    "socketcall",
                    "getpid",
                    "newfstatat",
                    "set_tls",
                ],
                Action::Allow,
                &[],
            )],
        );
        let program = compiled(&p);
        let allowed = |abi: Abi, nr: u32| run(&program, abi.audit_arch(), nr, [0; 6]) == ALLOW;
        for abi in Abi::ALL {
            assert!(allowed(abi, getpid(abi)), "{abi:?}");
        }
        // socketcall is i386's (102); ARM's EABI and the 64-bit ABIs have none
        assert!(allowed(Abi::I386, 102));
        assert!(
            !allowed(Abi::Arm, 102),
            "ARM's 102 is the old ABI's socketcall"
        );
        assert!(!allowed(Abi::X86_64, 102), "x86_64's 102 is getuid");
        assert!(!allowed(Abi::Aarch64, 102), "aarch64's 102 is getitimer");
        // newfstatat: x86_64's 262, aarch64's 79 (the crate calls it fstatat)
        assert!(allowed(Abi::X86_64, 262));
        assert!(allowed(Abi::Aarch64, 79));
        // ARM's private set_tls, which the crate's table lacks
        assert!(allowed(Abi::Arm, 0x0f_0005));
        // aarch64 has no time64 calls, whatever the crate's table says
        assert_eq!(number(Abi::Aarch64, "clock_gettime64"), None);
        assert_eq!(number(Abi::Arm, "clock_gettime64"), Some(403));
        assert_eq!(number(Abi::X86_64, "no_such_call"), None);
    }

    #[test]
    fn an_unconditional_rule_wins_over_the_call_s_conditional_ones_either_way() {
        let conditional = rule(&["getpid"], Action::Errno(2), &[on(0, Op::EqualTo, 1)]);
        let unconditional = rule(&["getpid"], Action::Allow, &[]);
        for rules in [
            vec![conditional.clone(), unconditional.clone()],
            vec![unconditional.clone(), conditional.clone()],
        ] {
            let p = profile(Action::KillProcess, &[Abi::X86_64], rules);
            let program = compiled(&p);
            let arch = Abi::X86_64.audit_arch();
            assert_eq!(run(&program, arch, 39, [1, 0, 0, 0, 0, 0]), ALLOW);
            assert_eq!(run(&program, arch, 39, [0; 6]), ALLOW);
        }
        // the first unconditional rule of a call wins; other calls are left alone
        let p = profile(
            Action::KillProcess,
            &[Abi::X86_64],
            vec![
                rule(&["getpid"], Action::Errno(5), &[]),
                rule(&["getppid", "getpid"], Action::Allow, &[]),
                conditional,
            ],
        );
        let program = compiled(&p);
        let arch = Abi::X86_64.audit_arch();
        assert_eq!(run(&program, arch, 39, [1, 0, 0, 0, 0, 0]), errno(5));
        assert_eq!(run(&program, arch, 110, [0; 6]), ALLOW);
    }

    #[test]
    fn a_rule_with_the_default_action_is_dropped_and_conditional_ones_keep_their_order() {
        // as runc: the unconditional EPERM rule is the default's, so the allow with a
        // condition is what is left of getpid
        let p = profile(
            Action::Errno(1),
            &[Abi::X86_64],
            vec![
                rule(&["getpid"], Action::Errno(1), &[]),
                rule(&["getpid"], Action::Allow, &[on(0, Op::EqualTo, 1)]),
                rule(&["getpid"], Action::Errno(2), &[on(1, Op::EqualTo, 2)]),
                rule(&["getpid"], Action::Trap, &[on(1, Op::EqualTo, 3)]),
            ],
        );
        let program = compiled(&p);
        let arch = Abi::X86_64.audit_arch();
        let getpid = |a0: u64, a1: u64| run(&program, arch, 39, [a0, a1, 0, 0, 0, 0]);
        assert_eq!(getpid(1, 0), ALLOW);
        assert_eq!(getpid(1, 2), ALLOW, "the first of two that match");
        assert_eq!(getpid(0, 2), errno(2));
        assert_eq!(getpid(0, 3), 0x0003_0000);
        assert_eq!(getpid(0, 0), errno(1));
    }

    #[test]
    fn every_action_is_the_kernel_s() {
        let actions = [
            (Action::KillThread, 0x0000_0000),
            (Action::KillProcess, 0x8000_0000),
            (Action::Trap, 0x0003_0000),
            (Action::Errno(38), 0x0005_0026),
            (Action::Trace(0x1234), 0x7ff0_1234),
            (Action::Log, 0x7ffc_0000),
            (Action::Allow, 0x7fff_0000),
        ];
        for (action, ret) in actions {
            assert_eq!(action.ret(), ret, "{action:?}");
            let p = profile(
                Action::Errno(99),
                &[Abi::Aarch64],
                vec![rule(&["getpid"], action, &[])],
            );
            let program = compiled(&p);
            assert_eq!(run(&program, Abi::Aarch64.audit_arch(), 172, [0; 6]), ret);
        }
        assert_eq!(Action::KillProcess.ret(), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(Action::Trace(0).ret(), libc::SECCOMP_RET_TRACE);
        assert_eq!(Action::Log.ret(), libc::SECCOMP_RET_LOG);
    }

    #[test]
    fn bad_profiles_are_refused_with_what_is_wrong() {
        let message = |p: Profile| p.compile().unwrap_err().to_string();
        let past_five = profile(
            Action::Allow,
            &[],
            vec![rule(
                &["getpid"],
                Action::Errno(1),
                &[on(6, Op::EqualTo, 0)],
            )],
        );
        assert!(message(past_five).contains("argument 6"));
        let empty = profile(Action::Allow, &[], vec![rule(&[""], Action::Errno(1), &[])]);
        assert!(message(empty).contains("empty"));
        let mut listener = profile(Action::Allow, &[], vec![]);
        listener.flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
        assert!(message(listener).contains("flags 0x8"));
        // 600 values of one argument: 600 blocks of 7 instructions on each of two ABIs
        let many: Vec<Condition> = (0..600).map(|v| on(0, Op::EqualTo, v)).collect();
        let long = profile(
            Action::Allow,
            &[Abi::X86_64, Abi::I386],
            vec![rule(&["getpid"], Action::Errno(1), &many)],
        );
        let text = message(long);
        assert!(text.contains("4096"), "{text}");
    }

    #[test]
    fn a_profile_of_a_few_hundred_calls_fits() {
        // about what Docker's default profile allows
        let calls: Vec<syscalls::x86_64::Sysno> =
            (0..360).filter_map(syscalls::x86_64::Sysno::new).collect();
        assert!(calls.len() > 300);
        let names: Vec<String> = calls.iter().map(|s| s.name().to_owned()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let p = profile(
            Action::Errno(1),
            &[Abi::X86_64, Abi::I386],
            vec![rule(&names, Action::Allow, &[])],
        );
        let program = compiled(&p);
        assert!(program.len() < MAX_INSNS, "{}", program.len());
        let arch = Abi::X86_64.audit_arch();
        for call in calls {
            let nr = call.id() as u32;
            assert_eq!(run(&program, arch, nr, [0; 6]), ALLOW, "{nr}");
        }
        assert_eq!(run(&program, arch, 400, [0; 6]), errno(1));
    }

    #[test]
    fn no_rules_is_the_default_for_every_call() {
        let p = profile(Action::Log, &[Abi::Arm, Abi::Arm], vec![]);
        let program = compiled(&p);
        assert_eq!(program.len(), 1 + 2 + 1 + 2, "one dispatch, one body");
        for nr in [0, 20, 0x0f_0005, u32::MAX] {
            assert_eq!(
                run(&program, Abi::Arm.audit_arch(), nr, [0; 6]),
                0x7ffc_0000
            );
        }
    }

    // ---- as root: a compiled profile installed in a child, against the real kernel ----

    #[test]
    fn a_compiled_profile_answers_with_its_errno_in_the_kernel() {
        require_root();
        let filter = Profile {
            default: Action::Allow,
            abis: vec![],
            rules: vec![
                rule(&["getppid"], Action::Errno(libc::EXDEV as u16), &[]),
                // close(2) of a descriptor with a high word the kernel then drops
                rule(
                    &["close"],
                    Action::Errno(libc::ETXTBSY as u16),
                    &[on(0, Op::EqualTo, 0x1_0000_7fff)],
                ),
            ],
            flags: libc::SECCOMP_FILTER_FLAG_LOG as u32,
        }
        .compile()
        .unwrap();
        let outcome = in_child(|| {
            if filter.install().is_err() {
                return 1;
            }
            if sys::raw_syscall(libc::SYS_getppid, [0; 6]) != Err(Errno::EXDEV) {
                return 2;
            }
            if sys::raw_syscall(libc::SYS_getpid, [0; 6]) != Ok(i64::from(std::process::id())) {
                return 3;
            }
            let close = |fd: u64| sys::raw_syscall(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
            if close(0x1_0000_7fff) != Err(Errno::ETXTBSY) {
                return 4;
            }
            if close(0x7fff) != Err(Errno::EBADF) {
                return 5;
            }
            #[cfg(target_arch = "x86_64")]
            if sys::raw_syscall_i386(64, [0; 5]) != Err(Errno::EXDEV) {
                return 6;
            }
            0
        });
        assert_eq!(outcome, 0);
    }

    #[test]
    fn the_filter_s_flags_reach_the_kernel() {
        require_root();
        let allow_all = vec![insn(RET_K, 0, 0, ALLOW)];
        let install = |flags: u32| {
            let filter = Filter::from_program(allow_all.clone(), flags);
            in_child(move || match filter.install() {
                Ok(()) => 0,
                Err(e) => e as i64,
            })
        };
        assert_eq!(install(libc::SECCOMP_FILTER_FLAG_LOG as u32), 0);
        assert_eq!(install(0), 0);
        // a flag no kernel knows: refused, so the flags were passed
        assert_eq!(install(1 << 30), Errno::EINVAL as i64);
    }
}
