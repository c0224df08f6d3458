//! The bundle's `config.json`, as the OCI runtime specification (1.0 to 1.2) writes it:
//! the fields cradle-oci reads. Unknown fields are ignored, as runc ignores them; a field
//! of the wrong type is an error naming it.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub oci_version: String,
    pub root: Option<Root>,
    pub process: Option<Process>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub domainname: Option<String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub hooks: Option<Hooks>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub linux: Option<Linux>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Root {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    pub console_size: Option<ConsoleSize>,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    #[serde(default)]
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
    pub apparmor_profile: Option<String>,
    pub selinux_label: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct ConsoleSize {
    pub height: u16,
    pub width: u16,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    pub umask: Option<u32>,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub bounding: Vec<String>,
    #[serde(default)]
    pub effective: Vec<String>,
    #[serde(default)]
    pub inheritable: Vec<String>,
    #[serde(default)]
    pub permitted: Vec<String>,
    #[serde(default)]
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(rename = "uidMappings", default)]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(rename = "gidMappings", default)]
    pub gid_mappings: Vec<IdMapping>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Hooks {
    #[serde(default)]
    pub prestart: Vec<Hook>,
    #[serde(default, rename = "createRuntime")]
    pub create_runtime: Vec<Hook>,
    #[serde(default, rename = "createContainer")]
    pub create_container: Vec<Hook>,
    #[serde(default, rename = "startContainer")]
    pub start_container: Vec<Hook>,
    #[serde(default)]
    pub poststart: Vec<Hook>,
    #[serde(default)]
    pub poststop: Vec<Hook>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Hook {
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    #[serde(default)]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(default)]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(default)]
    pub devices: Vec<Device>,
    pub cgroups_path: Option<String>,
    pub resources: Option<Resources>,
    #[serde(default)]
    pub sysctl: BTreeMap<String, String>,
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    #[serde(default)]
    pub rootfs_propagation: String,
    pub seccomp: Option<Seccomp>,
    #[serde(default)]
    pub mount_label: String,
}

/// `linux.seccomp`, as runc reads it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    pub default_action: String,
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub listener_path: String,
    #[serde(default)]
    pub listener_metadata: String,
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    #[serde(default)]
    pub names: Vec<String>,
    pub action: String,
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<SyscallArg>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallArg {
    pub index: u32,
    #[serde(default)]
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: String,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    #[serde(rename = "blockIO", default, skip_serializing_if = "Option::is_none")]
    pub block_io: Option<BlockIo>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hugepage_limits: Vec<HugepageLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Device name -> its limits.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub rdma: BTreeMap<String, Rdma>,
    /// cgroup v2 file -> its contents.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub unified: BTreeMap<String, String>,
}

/// A field given as `null` is its default, as Go's JSON reads it.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockIo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_weight: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<WeightDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle_read_bps_device: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle_write_bps_device: Vec<ThrottleDevice>,
    #[serde(
        rename = "throttleReadIOPSDevice",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub throttle_read_iops_device: Vec<ThrottleDevice>,
    #[serde(
        rename = "throttleWriteIOPSDevice",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub throttle_write_iops_device: Vec<ThrottleDevice>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightDevice {
    pub major: i64,
    pub minor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_weight: Option<u16>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct ThrottleDevice {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HugepageLimit {
    pub page_size: String,
    pub limit: u64,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    #[serde(rename = "classID", default, skip_serializing_if = "Option::is_none")]
    pub class_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priorities: Vec<InterfacePriority>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct InterfacePriority {
    pub name: String,
    pub priority: u32,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rdma {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hca_handles: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hca_objects: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct DeviceRule {
    #[serde(default)]
    pub allow: bool,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller", skip_serializing_if = "Option::is_none")]
    pub disable_oom_killer: Option<bool>,
    /// Kernel memory limits: gone from the kernels cradle runs on; ignored with a warning,
    /// as runc ignores them.
    #[serde(default, skip_serializing)]
    pub kernel: Option<i64>,
    #[serde(rename = "kernelTCP", default, skip_serializing)]
    pub kernel_tcp: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mems: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime_runtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime_period: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
pub struct Pids {
    pub limit: i64,
}

/// The bundle's `config.json`, read and checked: a one-line error naming what is wrong.
pub fn load(bundle: &Path) -> Result<Spec, String> {
    let path = bundle.join("config.json");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec: Spec = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    check(&spec).map_err(|why| format!("{}: {why}", path.display()))?;
    Ok(spec)
}

/// What a spec must have for a container to be made of it.
fn check(spec: &Spec) -> Result<(), String> {
    if spec.oci_version.is_empty() {
        return Err("no ociVersion".into());
    }
    if !spec.oci_version.starts_with("1.") {
        return Err(format!(
            "ociVersion {} is not 1.x, which this runtime speaks",
            spec.oci_version
        ));
    }
    if spec.root.as_ref().is_none_or(|r| r.path.is_empty()) {
        return Err("no root.path".into());
    }
    let Some(process) = &spec.process else {
        return Err("no process".into());
    };
    if process.args.is_empty() {
        return Err("process.args is empty".into());
    }
    if !process.cwd.starts_with('/') {
        return Err(format!("process.cwd {:?} is not absolute", process.cwd));
    }
    for mount in &spec.mounts {
        if !mount.destination.starts_with('/') {
            return Err(format!(
                "mount destination {:?} is not absolute",
                mount.destination
            ));
        }
    }
    let Some(linux) = &spec.linux else {
        return Err("no linux section".into());
    };
    let mut seen = Vec::new();
    for ns in &linux.namespaces {
        if !NAMESPACES.contains(&ns.kind.as_str()) {
            return Err(format!("unknown namespace type {:?}", ns.kind));
        }
        if seen.contains(&ns.kind.as_str()) {
            return Err(format!("namespace {:?} is given twice", ns.kind));
        }
        seen.push(&ns.kind);
    }
    let has_user = linux.namespaces.iter().any(|n| n.kind == "user");
    if (!linux.uid_mappings.is_empty() || !linux.gid_mappings.is_empty()) && !has_user {
        return Err("uidMappings or gidMappings without a user namespace".into());
    }
    if has_user
        && linux
            .namespaces
            .iter()
            .any(|n| n.kind == "user" && n.path.is_empty())
        && (linux.uid_mappings.is_empty() || linux.gid_mappings.is_empty())
    {
        return Err("a new user namespace needs uidMappings and gidMappings".into());
    }
    for name in linux.sysctl.keys() {
        if name.contains('/') || name.starts_with('.') || name.contains("..") {
            return Err(format!("bad sysctl name {name:?}"));
        }
    }
    Ok(())
}

/// The namespace types of the spec.
pub const NAMESPACES: [&str; 8] = [
    "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time",
];

impl Spec {
    pub fn process(&self) -> &Process {
        self.process.as_ref().expect("checked by load")
    }

    pub fn linux(&self) -> &Linux {
        self.linux.as_ref().expect("checked by load")
    }

    pub fn root(&self) -> &Root {
        self.root.as_ref().expect("checked by load")
    }

    /// The namespace of this type, if the spec has one (new, or joined when its path is
    /// not empty).
    pub fn namespace(&self, kind: &str) -> Option<&Namespace> {
        self.linux().namespaces.iter().find(|n| n.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec, String> {
        let spec: Spec = serde_json::from_str(text).map_err(|e| e.to_string())?;
        check(&spec)?;
        Ok(spec)
    }

    const MINIMAL: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"args":["sh"],"cwd":"/"},
        "linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#;

    #[test]
    fn a_minimal_spec_is_read_with_defaults() {
        let spec = parse(MINIMAL).unwrap();
        assert_eq!(spec.root().path, "rootfs");
        assert!(!spec.root().readonly);
        assert_eq!(spec.process().user.uid, 0);
        assert!(spec.namespace("pid").is_some());
        assert!(spec.namespace("network").is_none());
    }

    #[test]
    fn runcs_example_spec_is_read_whole() {
        let spec = parse(crate::commands::EXAMPLE_SPEC).unwrap();
        let process = spec.process();
        assert!(process.terminal);
        assert_eq!(process.args, ["sh"]);
        assert_eq!(process.rlimits[0].kind, "RLIMIT_NOFILE");
        let caps = process.capabilities.as_ref().unwrap();
        assert!(caps.bounding.contains(&"CAP_KILL".to_owned()));
        assert_eq!(spec.mounts[0].destination, "/proc");
        assert!(!spec.linux().masked_paths.is_empty());
    }

    #[test]
    fn what_a_spec_must_have_is_named_when_missing() {
        let cases = [
            (r#"{"root":{"path":"r"}}"#, "no ociVersion"),
            (r#"{"ociVersion":"2.0.0"}"#, "not 1.x"),
            (r#"{"ociVersion":"1.0.0"}"#, "no root.path"),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"r"}}"#,
                "no process",
            ),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"r"},"process":{"args":[],"cwd":"/"}}"#,
                "process.args is empty",
            ),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"r"},"process":{"args":["a"],"cwd":"x"}}"#,
                "not absolute",
            ),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"r"},"process":{"args":["a"],"cwd":"/"},
                    "linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]}}"#,
                "given twice",
            ),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"r"},"process":{"args":["a"],"cwd":"/"},
                    "linux":{"namespaces":[{"type":"pdi"}]}}"#,
                "unknown namespace",
            ),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"r"},"process":{"args":["a"],"cwd":"/"},
                    "linux":{"namespaces":[{"type":"user"}]}}"#,
                "needs uidMappings",
            ),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"r"},"process":{"args":["a"],"cwd":"/"},
                    "linux":{"sysctl":{"../../etc/x":"1"}}}"#,
                "bad sysctl",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let err = parse(r#"{"ociVersion":"1.0.0","process":{"args":"sh"}}"#).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
    }
}
