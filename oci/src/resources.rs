//! The spec's `linux.resources` in the container's cgroups: the memory and pids limits
//! in the core's terms ([`limits_of`], which `Limits` applies), and the rest written into
//! the cgroup files as runc writes them ([`resource_files`]: CPU, cpuset, the memory
//! settings the core does not cover, block I/O, huge pages, network classes and
//! priorities, RDMA, and cgroup v2's `unified` files), into the v2 cgroup or the v1 one
//! of each file's controller ([`write_files`]).

use std::fs;
use std::io;
use std::path::Path;

use cradle_core::cgroups::limits::Limits;
use cradle_core::cgroups::v1::{Host, Provider, V1Dir};
use cradle_core::error::{Error, Result};

use crate::spec;

/// One file of the resources written as given: its controller, name and text; and where
/// the kernel may lack the file (the BFQ scheduler's weights, or the older ones), the
/// file and text to write instead.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceFile {
    pub controller: &'static str,
    pub name: String,
    pub text: String,
    pub instead: Option<(String, String)>,
}

/// Where a controller is on this host: on cgroup v2, a v1 hierarchy, or nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    V2,
    V1,
    Absent,
}

impl Hierarchy {
    /// Where `host` has the controller named `name`.
    pub fn of(host: &Host, name: &str) -> Hierarchy {
        match host.provider_named(name) {
            Some(Provider::V2) => Hierarchy::V2,
            Some(Provider::V1(_)) => Hierarchy::V1,
            None => Hierarchy::Absent,
        }
    }
}

/// The spec's CPU settings as runc writes them: the exact values into a v1 hierarchy's
/// files (the period before the quota, the realtime period before its runtime), their
/// equivalents into cgroup v2's (`cpu.max`, `cpu.weight` from the shares by runc's
/// conversion, `cpuset.*`). `on_v2` says whether v2 provides a controller.
pub fn cpu_files(cpu: &spec::Cpu, on_v2: impl Fn(&str) -> bool) -> Result<Vec<ResourceFile>> {
    let mut files = Vec::new();
    let v2 = on_v2("cpu");
    if let Some(shares) = cpu.shares.filter(|&s| s > 0) {
        files.push(if v2 {
            // runc's conversion of v1 shares (2–262144) to a v2 weight (1–10000)
            let shares = shares.clamp(2, 262_144);
            file(
                "cpu",
                "cpu.weight",
                (1 + ((shares - 2) * 9999) / 262_142).to_string(),
            )
        } else {
            file("cpu", "cpu.shares", shares.to_string())
        });
    }
    if cpu.quota.is_some() || cpu.period.is_some() {
        if cpu.period == Some(0) {
            return Err(Error::Usage("linux.resources.cpu.period is 0".into()));
        }
        let quota = cpu.quota.filter(|&q| q > 0);
        if v2 {
            let quota = quota.map_or_else(|| "max".to_owned(), |q| q.to_string());
            let period = cpu
                .period
                .unwrap_or(cradle_core::cgroups::limits::CPU_PERIOD_US);
            files.push(file("cpu", "cpu.max", format!("{quota} {period}")));
        } else {
            if let Some(period) = cpu.period {
                files.push(file("cpu", "cpu.cfs_period_us", period.to_string()));
            }
            if cpu.quota.is_some() {
                let quota = quota.map_or_else(|| "-1".to_owned(), |q| q.to_string());
                files.push(file("cpu", "cpu.cfs_quota_us", quota));
            }
        }
    }
    if cpu.realtime_runtime.is_some() || cpu.realtime_period.is_some() {
        if v2 {
            return Err(Error::Usage(
                "linux.resources.cpu.realtimeRuntime/realtimePeriod: cgroup v2 has no \
                 realtime CPU settings"
                    .into(),
            ));
        }
        if let Some(period) = cpu.realtime_period {
            files.push(file("cpu", "cpu.rt_period_us", period.to_string()));
        }
        if let Some(runtime) = cpu.realtime_runtime {
            files.push(file("cpu", "cpu.rt_runtime_us", runtime.to_string()));
        }
    }
    for (value, name) in [(&cpu.cpus, "cpuset.cpus"), (&cpu.mems, "cpuset.mems")] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            files.push(file("cpuset", name, value.to_owned()));
        }
    }
    Ok(files)
}

fn file(controller: &'static str, name: impl Into<String>, text: String) -> ResourceFile {
    ResourceFile {
        controller,
        name: name.into(),
        text,
        instead: None,
    }
}

/// The block I/O settings as runc writes them. On a v1 hierarchy (`blkio`): the weights
/// into `blkio.weight` and `blkio.weight_device` (BFQ's `blkio.bfq.*` where the kernel
/// has no others), the leaf weights into `blkio.leaf_weight*`, each throttle into
/// `blkio.throttle.*_device`, one device a write. On cgroup v2 (`io`): the weight into
/// `io.bfq.weight`, or `io.weight` by runc's conversion (10–1000 to 1–10000), the device
/// weights into `io.bfq.weight`, the throttles into `io.max` (`rbps`, `wbps`, `riops`,
/// `wiops`); v2 has no leaf weights.
fn block_io_files(io: &spec::BlockIo, v2: bool) -> Result<Vec<ResourceFile>> {
    let mut files = Vec::new();
    let device = |major: i64, minor: i64| -> Result<String> {
        match (u32::try_from(major), u32::try_from(minor)) {
            (Ok(major), Ok(minor)) => Ok(format!("{major}:{minor}")),
            _ => Err(Error::Usage(format!(
                "linux.resources.blockIO: bad device {major}:{minor}"
            ))),
        }
    };
    let no_leaf =
        || Error::Usage("linux.resources.blockIO.leafWeight: cgroup v2 has no leaf weights".into());
    if v2 {
        if let Some(weight) = io.weight.filter(|&w| w != 0) {
            let converted = 1 + (u64::from(weight).saturating_sub(10)) * 9999 / 990;
            files.push(ResourceFile {
                instead: Some(("io.weight".into(), converted.to_string())),
                ..file("io", "io.bfq.weight", weight.to_string())
            });
        }
        if io.leaf_weight.is_some() {
            return Err(no_leaf());
        }
        for wd in &io.weight_device {
            if wd.leaf_weight.is_some() {
                return Err(no_leaf());
            }
            if let Some(weight) = wd.weight {
                let dev = device(wd.major, wd.minor)?;
                files.push(file("io", "io.bfq.weight", format!("{dev} {weight}")));
            }
        }
    } else {
        if let Some(weight) = io.weight.filter(|&w| w != 0) {
            files.push(ResourceFile {
                instead: Some(("blkio.bfq.weight".into(), weight.to_string())),
                ..file("blkio", "blkio.weight", weight.to_string())
            });
        }
        if let Some(weight) = io.leaf_weight.filter(|&w| w != 0) {
            files.push(file("blkio", "blkio.leaf_weight", weight.to_string()));
        }
        for wd in &io.weight_device {
            let dev = device(wd.major, wd.minor)?;
            if let Some(weight) = wd.weight {
                let text = format!("{dev} {weight}");
                files.push(ResourceFile {
                    instead: Some(("blkio.bfq.weight_device".into(), text.clone())),
                    ..file("blkio", "blkio.weight_device", text)
                });
            }
            if let Some(weight) = wd.leaf_weight {
                files.push(file(
                    "blkio",
                    "blkio.leaf_weight_device",
                    format!("{dev} {weight}"),
                ));
            }
        }
    }
    for (devices, v1_name, v2_key) in [
        (
            &io.throttle_read_bps_device,
            "blkio.throttle.read_bps_device",
            "rbps",
        ),
        (
            &io.throttle_write_bps_device,
            "blkio.throttle.write_bps_device",
            "wbps",
        ),
        (
            &io.throttle_read_iops_device,
            "blkio.throttle.read_iops_device",
            "riops",
        ),
        (
            &io.throttle_write_iops_device,
            "blkio.throttle.write_iops_device",
            "wiops",
        ),
    ] {
        for td in devices {
            let dev = device(td.major, td.minor)?;
            files.push(match v2 {
                true => file("io", "io.max", format!("{dev} {v2_key}={}", td.rate)),
                false => file("blkio", v1_name, format!("{dev} {}", td.rate)),
            });
        }
    }
    Ok(files)
}

/// A huge page size as the spec and the cgroup files name it (`2MB`, `1GB`, `64KB`).
fn page_size(text: &str) -> Result<&str> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    match (digits.parse::<u64>(), unit) {
        (Ok(n), "KB" | "MB" | "GB") if n > 0 => Ok(text),
        _ => Err(Error::Usage(format!(
            "linux.resources.hugepageLimits: bad page size {text:?} (2MB, 1GB, ...)"
        ))),
    }
}

/// cgroup v2's `unified` files, as runc writes them: each a file of the container's v2
/// cgroup (a name without `/`, of the `cgroup` core or of a controller the v2 hierarchy
/// provides), written as given.
fn unified_files(
    unified: &std::collections::BTreeMap<String, String>,
    place: &impl Fn(&str) -> Hierarchy,
) -> Result<Vec<ResourceFile>> {
    let mut files = Vec::new();
    for (name, text) in unified {
        let bad = |why: &str| Error::Usage(format!("linux.resources.unified {name:?}: {why}"));
        let Some((prefix, rest)) = name.split_once('.') else {
            return Err(bad("not a cgroup file (CONTROLLER.FILE)"));
        };
        if rest.is_empty() || name.contains('/') || name.contains('\0') {
            return Err(bad("not a cgroup file (CONTROLLER.FILE)"));
        }
        let controller = match prefix {
            "cgroup" => "cgroup",
            other => match CONTROLLERS.iter().find(|c| **c == other) {
                Some(c) if place(c) == Hierarchy::V2 => c,
                Some(_) => return Err(bad("its controller is not on cgroup v2 here")),
                None => return Err(bad("no such controller")),
            },
        };
        files.push(file(controller, name.as_str(), text.clone()));
    }
    Ok(files)
}

/// The controllers a `unified` file may belong to (besides the `cgroup` core's files).
const CONTROLLERS: [&str; 9] = [
    "cpu", "cpuset", "io", "memory", "hugetlb", "pids", "rdma", "misc", "freezer",
];

/// The files of the resources that the core's limits do not cover, written as given: the
/// CPU's ([`cpu_files`]), and of the memory's, the reservation (`memory.soft_limit_in_bytes`,
/// v2's `memory.low`), the swappiness and the OOM killer's switch (cgroup v1 only).
pub fn resource_files(
    resources: &spec::Resources,
    place: impl Fn(&str) -> Hierarchy,
) -> Result<Vec<ResourceFile>> {
    let on_v2 = |name: &str| place(name) == Hierarchy::V2;
    let mut files = match &resources.cpu {
        Some(cpu) => cpu_files(cpu, on_v2)?,
        None => Vec::new(),
    };
    if let Some(io) = &resources.block_io {
        let v2 = match (place("io"), place("blkio")) {
            (Hierarchy::V2, _) => true,
            (_, Hierarchy::V1) => false,
            _ => {
                return Err(Error::Usage(
                    "linux.resources.blockIO: this host has no io (or blkio) controller".into(),
                ));
            }
        };
        files.extend(block_io_files(io, v2)?);
    }
    // a setting of a controller this host does not have is refused, as runc refuses it
    // ("container could not join or create cgroup"), never left unenforced
    let absent = |what: &str, controller: &str| {
        Err(Error::Usage(format!(
            "linux.resources.{what}: this host has no {controller} controller"
        )))
    };
    for limit in &resources.hugepage_limits {
        let size = page_size(&limit.page_size)?;
        match place("hugetlb") {
            Hierarchy::V2 => files.push(file(
                "hugetlb",
                format!("hugetlb.{size}.max"),
                limit.limit.to_string(),
            )),
            Hierarchy::V1 => files.push(file(
                "hugetlb",
                format!("hugetlb.{size}.limit_in_bytes"),
                limit.limit.to_string(),
            )),
            Hierarchy::Absent => return absent("hugepageLimits", "hugetlb"),
        }
    }
    if let Some(network) = &resources.network {
        if let Some(id) = network.class_id {
            match place("net_cls") {
                Hierarchy::Absent => return absent("network.classID", "net_cls"),
                _ => files.push(file("net_cls", "net_cls.classid", id.to_string())),
            }
        }
        for prio in &network.priorities {
            if prio.name.is_empty() || prio.name.contains(char::is_whitespace) {
                return Err(Error::Usage(format!(
                    "linux.resources.network.priorities: bad interface name {:?}",
                    prio.name
                )));
            }
            match place("net_prio") {
                Hierarchy::Absent => return absent("network.priorities", "net_prio"),
                _ => files.push(file(
                    "net_prio",
                    "net_prio.ifpriomap",
                    format!("{} {}", prio.name, prio.priority),
                )),
            }
        }
    }
    for (device, limits) in &resources.rdma {
        if device.is_empty() || device.contains(char::is_whitespace) {
            return Err(Error::Usage(format!(
                "linux.resources.rdma: bad device name {device:?}"
            )));
        }
        let mut text = device.clone();
        if let Some(n) = limits.hca_handles {
            text.push_str(&format!(" hca_handle={n}"));
        }
        if let Some(n) = limits.hca_objects {
            text.push_str(&format!(" hca_object={n}"));
        }
        match place("rdma") {
            Hierarchy::Absent => return absent("rdma", "rdma"),
            _ => files.push(file("rdma", "rdma.max", text)),
        }
    }
    if !resources.unified.is_empty() {
        if place("memory") == Hierarchy::V1 || place("pids") == Hierarchy::V1 {
            return Err(Error::Usage(
                "linux.resources.unified: this host's controllers are on cgroup v1 (a hybrid \
                 host), as runc refuses it there"
                    .into(),
            ));
        }
        files.extend(unified_files(&resources.unified, &place)?);
    }
    let Some(memory) = &resources.memory else {
        return Ok(files);
    };
    let v2 = on_v2("memory");
    let v1_only = |what: &str| {
        Error::Usage(format!(
            "linux.resources.memory.{what}: cgroup v2 has no such setting"
        ))
    };
    if let Some(reservation) = memory.reservation.filter(|&r| r != 0) {
        let text = if reservation < 0 {
            if v2 {
                "max".to_owned()
            } else {
                "-1".to_owned()
            }
        } else {
            reservation.to_string()
        };
        let name = if v2 {
            "memory.low"
        } else {
            "memory.soft_limit_in_bytes"
        };
        files.push(file("memory", name, text));
    }
    if let Some(swappiness) = memory.swappiness {
        if v2 {
            return Err(v1_only("swappiness"));
        }
        if swappiness > 100 {
            return Err(Error::Usage(format!(
                "linux.resources.memory.swappiness {swappiness} is over 100"
            )));
        }
        files.push(file("memory", "memory.swappiness", swappiness.to_string()));
    }
    if memory.disable_oom_killer == Some(true) {
        if v2 {
            return Err(v1_only("disableOOMKiller"));
        }
        files.push(file("memory", "memory.oom_control", "1".to_owned()));
    }
    Ok(files)
}

/// The controllers of `limits` and `files`, by name.
pub fn controllers<'a>(limits: &Limits, files: &'a [ResourceFile]) -> Vec<&'a str> {
    let mut names: Vec<&str> = limits
        .set_knobs()
        .iter()
        .map(|k| k.controller().name())
        .collect();
    names.extend(files.iter().map(|f| f.controller));
    names
}

/// Writes `files` into the container's cgroups: `v2`, or the v1 one of the file's
/// controller (`v1`).
pub fn write_files(host: &Host, v2: &Path, v1: &[V1Dir], files: &[ResourceFile]) -> Result<()> {
    for file in files {
        let provider = match file.controller {
            "cgroup" => Some(Provider::V2),
            name => host.provider_named(name),
        };
        let dir = match provider {
            Some(Provider::V2) => v2.to_owned(),
            Some(Provider::V1(_)) => v1
                .iter()
                .find(|d| d.controllers.split(',').any(|c| c == file.controller))
                .map(|d| d.path.clone())
                .ok_or_else(|| {
                    Error::host(
                        format!("the {} cgroup", file.controller),
                        io::Error::other("the container has none in its v1 hierarchy"),
                    )
                })?,
            None => {
                return Err(Error::Usage(format!(
                    "linux.resources: this host has no {} controller",
                    file.controller
                )));
            }
        };
        let mut path = dir.join(&file.name);
        let mut text = &file.text;
        if let Some((name, instead)) = &file.instead {
            if !path.exists() {
                path = dir.join(name);
                text = instead;
            }
        }
        fs::write(&path, text).map_err(|e| {
            Error::host(
                format!("linux.resources: write {text} to {}", path.display()),
                e,
            )
        })?;
    }
    Ok(())
}

/// A v1 cpuset cgroup takes tasks only once it has CPUs and memory nodes: the cgroups on
/// the way down to `dir` that have none (those just made) get their parent's, as runc
/// gives them.
pub fn inherit_cpuset(dir: &Path) -> Result<()> {
    let mut chain = vec![dir.to_owned()];
    while let Some(parent) = chain.last().and_then(|d| d.parent()) {
        if !parent.join("cpuset.cpus").exists() {
            break;
        }
        chain.push(parent.to_owned());
    }
    for pair in chain.iter().rev().collect::<Vec<_>>().windows(2) {
        let (parent, child) = (pair[0], pair[1]);
        for name in ["cpuset.cpus", "cpuset.mems"] {
            let own = fs::read_to_string(child.join(name)).unwrap_or_default();
            if own.trim().is_empty() {
                let theirs = fs::read_to_string(parent.join(name))
                    .map_err(|e| Error::host(format!("read {}", parent.join(name).display()), e))?;
                fs::write(child.join(name), theirs.trim())
                    .map_err(|e| Error::host(format!("write {}", child.join(name).display()), e))?;
            }
        }
    }
    Ok(())
}

/// The kernel memory limits, which no kernel cradle runs on has any more, ignored with a
/// warning as runc ignores them.
fn check_resources(resources: &spec::Resources) {
    if let Some(memory) = &resources.memory {
        if memory.kernel.is_some() || memory.kernel_tcp.is_some() {
            log::warn!(
                "linux.resources.memory.kernel and kernelTCP are ignored, as runc ignores them"
            );
        }
    }
}

/// The memory and pids limits of the spec's resources, in the core's terms (the CPU's
/// are written as given: [`cpu_files`]).
pub fn limits_of(resources: Option<&spec::Resources>) -> Result<Limits> {
    let mut limits = Limits::default();
    let Some(r) = resources else {
        return Ok(limits);
    };
    check_resources(r);
    let positive = |v: Option<i64>| v.filter(|&v| v > 0).map(|v| v as u64);
    if let Some(memory) = &r.memory {
        limits.memory = positive(memory.limit);
        // OCI's swap is memory and swap together; cgroup v2's is swap alone
        limits.swap = match (positive(memory.swap), limits.memory) {
            (Some(total), Some(memory)) => Some(total.saturating_sub(memory)),
            _ => None,
        };
    }
    if let Some(pids) = &r.pids {
        limits.pids = positive(Some(pids.limit));
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_become_limits_with_swap_apart_from_memory() {
        let resources: spec::Resources = serde_json::from_str(
            r#"{"memory":{"limit":1048576,"swap":3145728},"pids":{"limit":10},
                "cpu":{"quota":50000,"period":100000,"shares":1024}}"#,
        )
        .unwrap();
        let limits = limits_of(Some(&resources)).unwrap();
        assert_eq!(limits.memory, Some(1 << 20));
        assert_eq!(limits.swap, Some(2 << 20));
        assert_eq!(limits.pids, Some(10));
        assert_eq!(limits.cpus, None, "written as given, see cpu_files");
        let cpu = resources.cpu.as_ref().unwrap();
        let v1 = cpu_files(cpu, |_| false).unwrap();
        let names: Vec<(&str, &str)> = v1
            .iter()
            .map(|f| (f.name.as_str(), f.text.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("cpu.shares", "1024"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000")
            ]
        );
        let v2 = cpu_files(cpu, |_| true).unwrap();
        let names: Vec<(&str, &str)> = v2
            .iter()
            .map(|f| (f.name.as_str(), f.text.as_str()))
            .collect();
        assert_eq!(names, [("cpu.weight", "39"), ("cpu.max", "50000 100000")]);
        let rt: spec::Cpu = serde_json::from_str(r#"{"realtimeRuntime":950000}"#).unwrap();
        assert!(cpu_files(&rt, |_| true).is_err());
        assert_eq!(
            cpu_files(&rt, |_| false).unwrap()[0].name,
            "cpu.rt_runtime_us"
        );
        let empty: spec::Resources = serde_json::from_str(
            r#"{"blockIO":{},"unified":null,"hugepageLimits":null,"rdma":null}"#,
        )
        .unwrap();
        assert!(limits_of(Some(&empty)).is_ok());
        assert_eq!(resource_files(&empty, |_| Hierarchy::V1).unwrap(), []);
        let unlimited: spec::Resources =
            serde_json::from_str(r#"{"memory":{"limit":-1},"pids":{"limit":0}}"#).unwrap();
        assert_eq!(limits_of(Some(&unlimited)).unwrap(), Limits::default());
    }

    /// A file, its text, and the file and text it falls back to.
    type Written = (String, String, Option<(String, String)>);

    /// What `files` writes.
    fn written(files: &[ResourceFile]) -> Vec<Written> {
        files
            .iter()
            .map(|f| (f.name.clone(), f.text.clone(), f.instead.clone()))
            .collect()
    }

    fn pair(name: &str, text: &str) -> Written {
        (name.into(), text.into(), None)
    }

    #[test]
    fn block_io_is_written_as_runc_writes_it_on_v1_and_on_v2() {
        let r: spec::Resources = serde_json::from_str(
            r#"{"blockIO":{"weight":500,"weightDevice":[{"major":8,"minor":0,"weight":300}],
                "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
                "throttleWriteIOPSDevice":[{"major":8,"minor":16,"rate":100}]}}"#,
        )
        .unwrap();
        let v1 = resource_files(&r, |_| Hierarchy::V1).unwrap();
        assert_eq!(
            written(&v1),
            [
                (
                    "blkio.weight".into(),
                    "500".into(),
                    Some(("blkio.bfq.weight".into(), "500".into()))
                ),
                (
                    "blkio.weight_device".into(),
                    "8:0 300".into(),
                    Some(("blkio.bfq.weight_device".into(), "8:0 300".into()))
                ),
                pair("blkio.throttle.read_bps_device", "8:0 1048576"),
                pair("blkio.throttle.write_iops_device", "8:16 100"),
            ]
        );
        let v2 = resource_files(&r, |_| Hierarchy::V2).unwrap();
        assert_eq!(
            written(&v2),
            [
                // runc's conversion: 1 + (500 - 10) * 9999 / 990
                (
                    "io.bfq.weight".into(),
                    "500".into(),
                    Some(("io.weight".into(), "4950".into()))
                ),
                pair("io.bfq.weight", "8:0 300"),
                pair("io.max", "8:0 rbps=1048576"),
                pair("io.max", "8:16 wiops=100"),
            ]
        );
        let leaf: spec::Resources =
            serde_json::from_str(r#"{"blockIO":{"leafWeight":100}}"#).unwrap();
        assert!(resource_files(&leaf, |_| Hierarchy::V2).is_err());
        assert_eq!(
            written(&resource_files(&leaf, |_| Hierarchy::V1).unwrap()),
            [pair("blkio.leaf_weight", "100")]
        );
        let nothing = |_: &str| Hierarchy::Absent;
        assert!(resource_files(&r, nothing).is_err());
    }

    #[test]
    fn huge_pages_network_rdma_and_unified_files() {
        let r: spec::Resources = serde_json::from_str(
            r#"{"hugepageLimits":[{"pageSize":"2MB","limit":0},{"pageSize":"1GB","limit":1073741824}],
                "network":{"classID":1048577,"priorities":[{"name":"eth0","priority":5}]},
                "rdma":{"mlx5_1":{"hcaHandles":3,"hcaObjects":10000}}}"#,
        )
        .unwrap();
        assert_eq!(
            written(&resource_files(&r, |_| Hierarchy::V1).unwrap()),
            [
                pair("hugetlb.2MB.limit_in_bytes", "0"),
                pair("hugetlb.1GB.limit_in_bytes", "1073741824"),
                pair("net_cls.classid", "1048577"),
                pair("net_prio.ifpriomap", "eth0 5"),
                pair("rdma.max", "mlx5_1 hca_handle=3 hca_object=10000"),
            ]
        );
        let v2 = resource_files(&r, |_| Hierarchy::V2).unwrap();
        assert_eq!(
            written(&v2)[..2],
            [
                pair("hugetlb.2MB.max", "0"),
                pair("hugetlb.1GB.max", "1073741824")
            ]
        );
        // a setting of a controller the host lacks: refused, as runc refuses it
        let lacking = |c: &str| match c {
            "net_cls" => Hierarchy::Absent,
            _ => Hierarchy::V2,
        };
        let err = resource_files(&r, lacking).unwrap_err().to_string();
        assert!(err.contains("net_cls"), "{err}");
        let bad: spec::Resources =
            serde_json::from_str(r#"{"hugepageLimits":[{"pageSize":"../x","limit":0}]}"#).unwrap();
        assert!(resource_files(&bad, |_| Hierarchy::V2).is_err());

        let unified: spec::Resources = serde_json::from_str(
            r#"{"unified":{"memory.high":"1073741824","cgroup.max.depth":"4"}}"#,
        )
        .unwrap();
        assert_eq!(
            written(&resource_files(&unified, |_| Hierarchy::V2).unwrap()),
            [
                pair("cgroup.max.depth", "4"),
                pair("memory.high", "1073741824")
            ]
        );
        assert!(
            resource_files(&unified, |_| Hierarchy::V1).is_err(),
            "hybrid: refused"
        );
        for name in ["memory", "../memory.high", "memory.x/y", "nosuch.file"] {
            let r: spec::Resources =
                serde_json::from_str(&format!(r#"{{"unified":{{"{name}":"1"}}}}"#)).unwrap();
            assert!(resource_files(&r, |_| Hierarchy::V2).is_err(), "{name}");
        }
    }
}
