//! The spec's `linux.seccomp` in the core's terms (`security::profile`), with runc's
//! defaults: an errno action without `errnoRet` answers EPERM; SCMP_ACT_KILL is the
//! thread's kill; the architectures this build has no ABI for are left out, as
//! libseccomp leaves out an arch it is not running on.

use std::os::fd::{AsRawFd, OwnedFd};

use cradle_common::arch::{Abi, SECCOMP_ABIS};
use cradle_core::error::{Error, Result};
use cradle_core::security::profile::{Action, Condition, Op, Profile, Rule};
use cradle_core::security::seccomp::Filter;

use crate::spec::{Seccomp, SyscallRule};

/// The actions a profile may name (SCMP_ACT_KILL is the thread's kill); [`action`] takes
/// each.
const ACTIONS: [&str; 9] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// The comparisons of a condition, by name.
const OPERATORS: [(&str, Op); 7] = [
    ("SCMP_CMP_EQ", Op::EqualTo),
    ("SCMP_CMP_GE", Op::GreaterEqual),
    ("SCMP_CMP_GT", Op::GreaterThan),
    ("SCMP_CMP_LE", Op::LessEqual),
    ("SCMP_CMP_LT", Op::LessThan),
    ("SCMP_CMP_MASKED_EQ", Op::MaskedEqual),
    ("SCMP_CMP_NE", Op::NotEqual),
];

/// The architectures cradle compiles filters for, by name (those of this build are
/// `SECCOMP_ABIS`).
const ARCHITECTURES: [(&str, Abi); 4] = [
    ("SCMP_ARCH_X86_64", Abi::X86_64),
    ("SCMP_ARCH_X86", Abi::I386),
    ("SCMP_ARCH_AARCH64", Abi::Aarch64),
    ("SCMP_ARCH_ARM", Abi::Arm),
];

/// The flags a profile may give, and the SECCOMP_FILTER_FLAG_* bits they set: TSYNC none,
/// since one thread does the setup and there is nothing to synchronise.
const FLAGS: [(&str, u32); 3] = [
    ("SECCOMP_FILTER_FLAG_TSYNC", 0),
    (
        "SECCOMP_FILTER_FLAG_LOG",
        libc::SECCOMP_FILTER_FLAG_LOG as u32,
    ),
    (
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32,
    ),
];

fn action(name: &str, errno: Option<u32>) -> Result<Action> {
    let errno = || u16::try_from(errno.unwrap_or(libc::EPERM as u32)).unwrap_or(u16::MAX);
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_ERRNO" => Action::Errno(errno()),
        "SCMP_ACT_TRACE" => Action::Trace(errno()),
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_NOTIFY" => Action::Notify,
        other => {
            return Err(Error::Usage(format!(
                "linux.seccomp: unknown action {other:?}"
            )));
        }
    })
}

fn op(name: &str) -> Result<Op> {
    OPERATORS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, op)| op)
        .ok_or_else(|| Error::Usage(format!("linux.seccomp: unknown operator {name:?}")))
}

fn abi(name: &str) -> Option<Abi> {
    ARCHITECTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, abi)| abi)
        .filter(|abi| SECCOMP_ABIS.contains(abi))
}

/// What `features` says of seccomp: the actions, operators, architectures (this build's)
/// and flags a profile may use.
pub fn features() -> serde_json::Value {
    let flags: Vec<&str> = FLAGS.iter().map(|(name, _)| *name).collect();
    serde_json::json!({
        "enabled": true,
        "actions": ACTIONS,
        "operators": OPERATORS.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "archs": ARCHITECTURES
            .iter()
            .filter(|(_, abi)| SECCOMP_ABIS.contains(abi))
            .map(|(name, _)| *name)
            .collect::<Vec<_>>(),
        "knownFlags": flags,
        "supportedFlags": flags,
    })
}

/// The profile in the core's terms.
pub fn profile(seccomp: &Seccomp) -> Result<Profile> {
    let mut flags = 0;
    for flag in &seccomp.flags {
        flags |= FLAGS
            .iter()
            .find(|(name, _)| name == flag)
            .map(|&(_, bits)| bits)
            .ok_or_else(|| {
                Error::Usage(format!("linux.seccomp: flag {flag:?} is not supported"))
            })?;
    }
    let mut abis: Vec<Abi> = seccomp
        .architectures
        .iter()
        .filter_map(|a| abi(a))
        .collect();
    abis.dedup();
    if !seccomp.architectures.is_empty() && abis.is_empty() {
        return Err(Error::Usage(format!(
            "linux.seccomp: none of the architectures {:?} is this machine's",
            seccomp.architectures
        )));
    }
    let rules = seccomp
        .syscalls
        .iter()
        .map(|rule| {
            Ok(Rule {
                names: rule.names.clone(),
                action: action(&rule.action, rule.errno_ret)?,
                conditions: rule
                    .args
                    .iter()
                    .map(|arg| {
                        Ok(Condition {
                            index: u8::try_from(arg.index).map_err(|_| {
                                Error::Usage(format!(
                                    "linux.seccomp: argument index {} is out of range",
                                    arg.index
                                ))
                            })?,
                            value: arg.value,
                            value_two: arg.value_two,
                            op: op(&arg.op)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let profile = Profile {
        default: action(&seccomp.default_action, seccomp.default_errno_ret)?,
        abis,
        rules,
        flags,
    };
    if profile.notifies() && seccomp.listener_path.is_empty() {
        return Err(Error::Usage(
            "linux.seccomp: SCMP_ACT_NOTIFY needs a listenerPath (the seccomp agent's socket)"
                .into(),
        ));
    }
    Ok(profile)
}

/// Hands a seccomp filter's listener to the agent at `seccomp.listenerPath`, as runc does:
/// one message on a new connection to its socket, the listener in SCM_RIGHTS, the
/// payload the spec's container process state (JSON: `ociVersion`, `fds` naming the
/// descriptor `seccompFd`, the process's `pid`, the `listenerMetadata` as `metadata`,
/// and the container's `state`).
fn hand_to_agent(
    seccomp: &Seccomp,
    listener: OwnedFd,
    pid: i32,
    state: serde_json::Value,
) -> Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let message = serde_json::json!({
        "ociVersion": state["ociVersion"].clone(),
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": seccomp.listener_metadata,
        "state": state,
    });
    let path = &seccomp.listener_path;
    let agent = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| Error::host(format!("connect to the seccomp agent at {path}"), e))?;
    let payload = serde_json::to_vec(&message).expect("JSON of values");
    let fds = [listener.as_raw_fd()];
    let sent = sendmsg::<()>(
        agent.as_raw_fd(),
        &[std::io::IoSlice::new(&payload)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
    match sent {
        Ok(n) if n == payload.len() => Ok(()),
        Ok(_) => Err(Error::setup(
            format!("send the seccomp listener to the agent at {path}"),
            nix::errno::Errno::EMSGSIZE,
        )),
        Err(e) => Err(Error::setup(
            format!("send the seccomp listener to the agent at {path}"),
            e,
        )),
    }
}

/// Passes the listener process `pid` sends over `socket` (`Step::SeccompListener`) on to
/// the agent ([`hand_to_agent`]) with the container's `state`; nothing when the process
/// ended without sending one (its report says why).
pub fn pass_listener(
    socket: &OwnedFd,
    seccomp: &Seccomp,
    pid: i32,
    state: serde_json::Value,
) -> Result<()> {
    match receive_listener(socket)? {
        Some(listener) => hand_to_agent(seccomp, listener, pid, state),
        None => Ok(()),
    }
}

/// Receives the listener a container's process sent over `socket`
/// (`Step::SeccompListener`); None when the process ended without sending one.
fn receive_listener(socket: &OwnedFd) -> Result<Option<OwnedFd>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut payload = [0u8; 16];
    let mut iov = [std::io::IoSliceMut::new(&mut payload)];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let message = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(|e| Error::host("receive the seccomp listener", e))?,
        }
    };
    let mut received = None;
    for cmsg in message
        .cmsgs()
        .map_err(|e| Error::host("receive the seccomp listener", e))?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                let owned = cradle_core::sys::own_new_fd(fd)
                    .map_err(|e| Error::host("receive the seccomp listener", e))?;
                received.get_or_insert(owned);
            }
        }
    }
    Ok(received)
}

/// The spec's profile compiled, ready to install.
pub fn filter(seccomp: &Seccomp) -> Result<Filter> {
    profile(seccomp)?.compile()
}

/// The calls CAP_SYS_BOOT allows: reboot(2), and loading a kernel to boot into.
const BOOT_CALLS: [&str; 3] = ["reboot", "kexec_load", "kexec_file_load"];

/// A system container's init's profile: the spec's (or one that allows everything), with
/// reboot(2) allowed and kexec_load and kexec_file_load refused (EPERM). The init is
/// given CAP_SYS_BOOT for reboot(2), which in its own PID namespace (the shim's system
/// mode) only ends that namespace: it is how the guest halts and reboots. The capability
/// would also let a container without a user namespace load a new kernel into the host:
/// that is what the rule keeps out, whatever the spec's profile said of those calls.
pub fn for_system_init(given: Option<&Seccomp>) -> Seccomp {
    let mut profile = given.cloned().unwrap_or_else(|| Seccomp {
        default_action: "SCMP_ACT_ALLOW".into(),
        ..Seccomp::default()
    });
    for rule in &mut profile.syscalls {
        rule.names
            .retain(|name| !BOOT_CALLS.contains(&name.as_str()));
    }
    profile.syscalls.retain(|rule| !rule.names.is_empty());
    profile.syscalls.push(SyscallRule {
        names: vec!["reboot".into()],
        action: "SCMP_ACT_ALLOW".into(),
        ..SyscallRule::default()
    });
    profile.syscalls.push(SyscallRule {
        names: vec!["kexec_load".into(), "kexec_file_load".into()],
        action: "SCMP_ACT_ERRNO".into(),
        errno_ret: Some(libc::EPERM as u32),
        ..SyscallRule::default()
    });
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile> {
        profile(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn a_system_init_may_reboot_and_never_load_a_kernel() {
        let given: Seccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO",
                "syscalls":[{"names":["getpid","kexec_load"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["reboot"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let names = |p: &Seccomp| {
            (p.syscalls.iter())
                .map(|r| (r.names.join(","), r.action.clone()))
                .collect::<Vec<_>>()
        };
        let system = for_system_init(Some(&given));
        assert_eq!(system.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(
            names(&system),
            [
                ("getpid".into(), "SCMP_ACT_ALLOW".into()),
                ("reboot".into(), "SCMP_ACT_ALLOW".into()),
                ("kexec_load,kexec_file_load".into(), "SCMP_ACT_ERRNO".into()),
            ]
        );
        assert!(filter(&system).is_ok());
        let none = for_system_init(None);
        assert_eq!(none.default_action, "SCMP_ACT_ALLOW");
        assert_eq!(names(&none).len(), 2);
        assert!(filter(&none).is_ok());
    }

    #[test]
    fn runcs_defaults_are_kept() {
        let p = parse(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32","SCMP_ARCH_AARCH64","SCMP_ARCH_ARM"],
                "flags":["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["personality"],"action":"SCMP_ACT_ALLOW",
                             "args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
                            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
        )
        .unwrap();
        assert_eq!(p.default, Action::Errno(libc::EPERM as u16));
        assert_eq!(p.flags, libc::SECCOMP_FILTER_FLAG_LOG as u32);
        assert_eq!(p.abis, SECCOMP_ABIS.to_vec());
        assert_eq!(p.rules[1].conditions[0].op, Op::EqualTo);
        assert_eq!(p.rules[2].action, Action::Errno(38));
        assert!(p.compile().is_ok());
    }

    #[test]
    fn every_name_features_lists_is_taken() {
        for name in ACTIONS {
            assert!(action(name, None).is_ok(), "{name}");
        }
        let doc = features();
        for name in doc["operators"].as_array().unwrap() {
            assert!(op(name.as_str().unwrap()).is_ok(), "{name}");
        }
        for name in doc["archs"].as_array().unwrap() {
            assert!(abi(name.as_str().unwrap()).is_some(), "{name}");
        }
        assert_eq!(doc["archs"].as_array().unwrap().len(), SECCOMP_ABIS.len());
        let all_flags = r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#;
        assert!(parse(all_flags).is_ok());
    }

    #[test]
    fn what_cannot_be_honoured_is_named() {
        for (text, want) in [
            (r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#, "SCMP_ACT_BOGUS"),
            (r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#, "NOTIFY"),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "listenerPath",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_MIPS"]}"#,
                "MIPS",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"op":"SCMP_CMP_LIKE"}]}]}"#,
                "SCMP_CMP_LIKE",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
