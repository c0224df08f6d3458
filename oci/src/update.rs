//! `update`: new resources for a container that has not stopped, as runc's `update` takes
//! them (`--resources FILE`, `-` for standard input, or the flags), written where `create`
//! writes them. A limit on a v1 controller for a container whose processes were not in
//! its v1 cgroups yet (it had no such limit) moves them there first, as `cradle set` does.

use std::fs;
use std::io::Read;
use std::path::Path;

use cradle_core::cgroups::limits::{self, Setting};
use cradle_core::cgroups::v1::{self, Host, Provider};
use cradle_core::error::{Error, Result};

use crate::commands;
use crate::resources::{
    Hierarchy, controllers, inherit_cpuset, limits_of, resource_files, write_files,
};
use crate::spec::{Cpu, Memory, Pids, Resources};
use crate::state::{Root, Status};

/// The flags of `update`, each None when not given.
#[derive(Default)]
pub struct Flags<'a> {
    pub resources: Option<&'a Path>,
    pub memory: Option<&'a str>,
    pub memory_swap: Option<&'a str>,
    pub memory_reservation: Option<&'a str>,
    pub pids_limit: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_share: Option<u64>,
    pub cpuset_cpus: Option<&'a str>,
    pub cpuset_mems: Option<&'a str>,
}

/// A size flag: bytes, or with a K, M, G or T suffix; -1 or `max` for none.
fn size(label: &str, text: &str) -> Result<i64> {
    if text == "-1" {
        return Ok(-1);
    }
    match limits::parse_swap(label, text)? {
        Setting::Max => Ok(-1),
        Setting::To(bytes) => {
            i64::try_from(bytes).map_err(|_| Error::Usage(format!("{label} {text}: too large")))
        }
    }
}

/// The resources the flags give.
fn from_flags(flags: &Flags) -> Result<Resources> {
    let mut resources = Resources::default();
    if flags.memory.is_some() || flags.memory_swap.is_some() || flags.memory_reservation.is_some() {
        resources.memory = Some(Memory {
            limit: flags.memory.map(|m| size("--memory", m)).transpose()?,
            swap: flags
                .memory_swap
                .map(|m| size("--memory-swap", m))
                .transpose()?,
            reservation: flags
                .memory_reservation
                .map(|m| size("--memory-reservation", m))
                .transpose()?,
            ..Memory::default()
        });
    }
    if let Some(limit) = flags.pids_limit {
        resources.pids = Some(Pids { limit });
    }
    let cpu = Cpu {
        shares: flags.cpu_share,
        quota: flags.cpu_quota,
        period: flags.cpu_period,
        cpus: flags.cpuset_cpus.map(str::to_owned),
        mems: flags.cpuset_mems.map(str::to_owned),
        ..Cpu::default()
    };
    if cpu.shares.is_some()
        || cpu.quota.is_some()
        || cpu.period.is_some()
        || cpu.cpus.is_some()
        || cpu.mems.is_some()
    {
        resources.cpu = Some(cpu);
    }
    Ok(resources)
}

pub fn update(root: &Root, id: &str, flags: &Flags) -> Result<()> {
    let record = commands::load(root, id)?;
    if record.status(&root.dir(id)) == Status::Stopped {
        return Err(Error::Conflict(format!(
            "container {id} is stopped: there is nothing to update"
        )));
    }
    let resources = match flags.resources {
        Some(path) => {
            let text = if path == Path::new("-") {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| Error::Usage(format!("--resources -: {e}")))?;
                text
            } else {
                fs::read_to_string(path)
                    .map_err(|e| Error::Usage(format!("--resources {}: {e}", path.display())))?
            };
            serde_json::from_str(&text)
                .map_err(|e| Error::Usage(format!("--resources {}: {e}", path.display())))?
        }
        None => from_flags(flags)?,
    };
    let host = Host::probe()?;
    let limits = limits_of(Some(&resources))?;
    let files = resource_files(&resources, |name| Hierarchy::of(&host, name))?;
    let on_v1 = |name: &str| matches!(host.provider_named(name), Some(Provider::V1(_)));
    for file in &files {
        if on_v1(file.controller)
            && !record
                .cgroups_v1
                .iter()
                .any(|d| d.controllers.split(',').any(|c| c == file.controller))
        {
            return Err(Error::Usage(format!(
                "{}: the container has no {} cgroup (it had no such setting at create)",
                file.name, file.controller
            )));
        }
    }
    // a container that had no v1 limit has not joined its v1 cgroups yet
    if host.needs_v1(&limits) || files.iter().any(|f| on_v1(f.controller)) {
        v1::ensure_v1(&record.cgroups_v1)?;
        if let Some(cpuset) = record
            .cgroups_v1
            .iter()
            .find(|d| d.controllers.split(',').any(|c| c == "cpuset"))
        {
            inherit_cpuset(&cpuset.path)?;
        }
        v1::migrate(&record.cgroup, &record.cgroups_v1)?;
    }
    let relative = record
        .cgroup
        .strip_prefix(&host.v2)
        .unwrap_or(&record.cgroup)
        .to_owned();
    host.enable_v2_down_to(&relative, &controllers(&limits, &files))?;
    v1::apply(
        &host,
        &record.cgroup,
        &record.cgroups_v1,
        &limits,
        &limits.set_knobs(),
    )?;
    write_files(&host, &record.cgroup, &record.cgroups_v1, &files)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_become_the_specs_resources() {
        let flags = Flags {
            memory: Some("64M"),
            pids_limit: Some(20),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            ..Flags::default()
        };
        let r = from_flags(&flags).unwrap();
        assert_eq!(r.memory.unwrap().limit, Some(64 << 20));
        assert_eq!(r.pids.unwrap().limit, 20);
        assert_eq!(r.cpu.as_ref().unwrap().quota, Some(50_000));
        assert!(from_flags(&Flags::default()).unwrap().memory.is_none());
        let bad = Flags {
            memory: Some("lots"),
            ..Flags::default()
        };
        assert!(from_flags(&bad).is_err());
    }
}
