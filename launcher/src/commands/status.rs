//! `cradle status NAME [--json]` and `cradle list [--json]`: what a running guest is and
//! uses, as `vzlist` and `machinectl status` show it. Everything comes from the state
//! directory (what the launcher recorded) and the container's cgroup files, whichever
//! kind of host this is; nothing enters the guest.
//!
//! The JSON field names are stable (the README documents them); a figure the host does
//! not keep is `null`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use cradle_core::cgroups::limits::{Limits, human_size};
use cradle_core::cgroups::v1::{self, Usage};
use cradle_core::error::{Error, Result};
use cradle_core::guest::state::{Observed, validate_name};
use cradle_core::net::Network;
use cradle_core::security::userns::RANGE;

/// Where a guest is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The launcher runs, no guest init yet (the first boot, or between two).
    Booting,
    /// A guest init runs.
    Running,
    /// A halt or power-off is under way.
    Stopping,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Booting => "booting",
            State::Running => "running",
            State::Stopping => "stopping",
        }
    }
}

/// The guest's user-namespace range: host ids `base` to `base + size - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    pub base: u32,
    pub size: u32,
}

/// Everything `status` says about one guest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    pub name: String,
    pub state: State,
    /// The pid of `cradle start`.
    pub launcher_pid: Option<u32>,
    /// The host pid of the running guest init.
    pub init_pid: Option<i32>,
    /// The running boot's number: 1, then one more at every reboot.
    pub boot: Option<u32>,
    /// When `cradle start` began, in seconds since the epoch.
    pub started_at: u64,
    /// Seconds since the running guest init started.
    pub uptime_seconds: Option<f64>,
    pub root: PathBuf,
    pub hostname: String,
    pub userns: Option<Range>,
    pub limits: Limits,
    pub usage: Usage,
    /// The container's cgroup v2 directory.
    pub cgroup: PathBuf,
    /// Its cgroups in the v1 hierarchies (a hybrid host, a guest with limits), by hierarchy.
    pub cgroups_v1: BTreeMap<String, String>,
    /// Its network: mode, host-side link, addresses, forwards.
    pub network: Option<Network>,
}

/// Seconds since process `pid` started: the system's uptime less its start time
/// (/proc/PID/stat field 22, in clock ticks since boot).
fn uptime_of(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the fields after the command's name, which is in parentheses and may hold anything
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)? as f64;
    let system: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // to the clock tick it is known to
    Some(((system - ticks / hz).max(0.0) * 100.0).round() / 100.0)
}

/// The status of the guest whose state directory is `state`.
fn status_of(name: &str, state: &Observed) -> Result<Status> {
    let info = state.info()?;
    let running = state.running();
    let usage = v1::usage(&info.cgroup, &info.cgroups_v1);
    let cgroups_v1 = info
        .cgroups_v1
        .iter()
        .filter(|d| d.path.is_dir())
        .map(|d| (d.controllers.clone(), d.path.display().to_string()))
        .collect();
    let status = if state.is_stopping() {
        State::Stopping
    } else if running.is_some() {
        State::Running
    } else {
        State::Booting
    };
    Ok(Status {
        name: name.to_owned(),
        state: status,
        launcher_pid: state.launcher(),
        init_pid: running.map(|r| r.init.as_raw()),
        boot: running.map(|r| r.boot),
        started_at: info.started_at,
        uptime_seconds: running.and_then(|r| uptime_of(r.init.as_raw())),
        root: info.root,
        hostname: info.hostname,
        userns: info.userns_base.map(|base| Range { base, size: RANGE }),
        limits: state.limits()?,
        usage,
        cgroup: info.cgroup,
        cgroups_v1,
        network: state.network().ok(),
    })
}

/// `cradle status NAME`: the text or the JSON.
pub fn status(state_base: &Path, name: &str, json: bool) -> Result<String> {
    validate_name(name)?;
    let state = Observed::open(state_base, name)?;
    let status = status_of(name, &state).map_err(|e| gone_or(e, &state, name))?;
    if json {
        to_json(&status)
    } else {
        Ok(describe(&status))
    }
}

/// A launcher that exits while we read its files leaves an error about a file: say the
/// guest is not running instead.
fn gone_or(error: Error, state: &Observed, name: &str) -> Error {
    if state.is_alive() {
        error
    } else {
        Error::NotRunning(name.to_owned())
    }
}

/// `cradle list`: every running guest under `state_base`, by name.
pub fn list(state_base: &Path, json: bool) -> Result<String> {
    let mut names: Vec<String> = match fs::read_dir(state_base) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| validate_name(n).is_ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::host(format!("read {}", state_base.display()), e)),
    };
    names.sort();
    let mut all = Vec::new();
    for name in names {
        let Ok(state) = Observed::open(state_base, &name) else {
            continue;
        };
        match status_of(&name, &state) {
            Ok(status) => all.push(status),
            // starting (its files are not all written yet) or ending while we looked:
            // `status NAME` says what is wrong, if anything is
            Err(e) => log::debug!("{name}: {e}"),
        }
    }
    if json { to_json(&all) } else { Ok(table(&all)) }
}

fn to_json(value: &impl Serialize) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|mut text| {
            text.push('\n');
            text
        })
        .map_err(|e| Error::host("write JSON", std::io::Error::other(e)))
}

fn or_dash<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), show)
}

/// 3725 seconds as "1h 2m 5s".
fn duration(seconds: f64) -> String {
    let s = seconds as u64;
    match (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, s) => format!("{m}m {s}s"),
        (0, h, m, s) => format!("{h}h {m}m {s}s"),
        (d, h, m, _) => format!("{d}d {h}h {m}m"),
    }
}

fn limit<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "none".to_owned(), show)
}

/// The status as text, one "what: value" line each.
fn describe(s: &Status) -> String {
    let (u, l) = (&s.usage, &s.limits);
    let lines = [
        ("name", s.name.clone()),
        ("state", s.state.word().to_owned()),
        ("init pid", or_dash(s.init_pid, |p| p.to_string())),
        ("launcher pid", or_dash(s.launcher_pid, |p| p.to_string())),
        ("boot", or_dash(s.boot, |b| b.to_string())),
        ("uptime", or_dash(s.uptime_seconds, duration)),
        ("root", s.root.display().to_string()),
        ("hostname", s.hostname.clone()),
        (
            "user namespace",
            s.userns.map_or_else(
                || "none (the guest's root is the host's)".to_owned(),
                |r| format!("host ids {}-{}", r.base, r.base + (r.size - 1)),
            ),
        ),
        (
            "memory",
            format!(
                "{} (peak {}), limit {}, swap limit {}, OOM kills {}",
                or_dash(u.memory, human_size),
                or_dash(u.memory_peak, human_size),
                limit(l.memory, human_size),
                limit(l.swap, human_size),
                or_dash(u.oom_kills, |n| n.to_string()),
            ),
        ),
        (
            "pids",
            format!(
                "{}, limit {}",
                or_dash(u.pids, |n| n.to_string()),
                limit(l.pids, |n| n.to_string())
            ),
        ),
        (
            "cpu",
            format!(
                "{} used, limit {}, weight {}",
                or_dash(u.cpu_seconds, |c| format!("{c:.2}s")),
                limit(l.cpus, |c| format!("{c} CPUs")),
                l.cpu_weight.unwrap_or(100)
            ),
        ),
        ("network", network_text(s.network.as_ref())),
        ("cgroup", s.cgroup.display().to_string()),
    ];
    let mut text = String::new();
    for (what, value) in lines {
        text.push_str(&format!("{:<15} {value}\n", format!("{what}:")));
    }
    for (hierarchy, path) in &s.cgroups_v1 {
        text.push_str(&format!("{:<15} {path}\n", format!("cgroup {hierarchy}:")));
    }
    text
}

/// The network in a line: the mode, the host's side, the addresses, the forwards.
fn network_text(network: Option<&Network>) -> String {
    let Some(n) = network else {
        return "-".to_owned();
    };
    let mut text = n.mode.to_string();
    if let Some(link) = &n.host_link {
        text.push_str(&format!(" on {link}"));
    }
    if let Some(mac) = n.mac {
        text.push_str(&format!(", {mac}"));
    }
    if !n.addresses.is_empty() {
        let addrs: Vec<String> = n.addresses.iter().map(ToString::to_string).collect();
        text.push_str(&format!(", {}", addrs.join(" ")));
    }
    if !n.ports.is_empty() {
        let ports: Vec<String> = n.ports.iter().map(ToString::to_string).collect();
        text.push_str(&format!(", ports {}", ports.join(" ")));
    }
    text
}

/// The network's mode and first address, for the table.
fn network_cell(network: Option<&Network>) -> String {
    match network {
        None => "-".to_owned(),
        Some(n) => match n.addresses.first() {
            Some(first) => format!("{}:{}", n.mode, first.addr),
            None => n.mode.to_string(),
        },
    }
}

/// The guests as a table, one line each.
fn table(all: &[Status]) -> String {
    let mut rows = vec![
        [
            "NAME", "STATE", "INIT", "BOOT", "UPTIME", "MEMORY", "PIDS", "CPU", "NET", "ROOT",
        ]
        .map(str::to_owned),
    ];
    for s in all {
        rows.push([
            s.name.clone(),
            s.state.word().to_owned(),
            or_dash(s.init_pid, |p| p.to_string()),
            or_dash(s.boot, |b| b.to_string()),
            or_dash(s.uptime_seconds, duration).replace(' ', ""),
            or_dash(s.usage.memory, human_size),
            or_dash(s.usage.pids, |n| n.to_string()),
            or_dash(s.usage.cpu_seconds, |c| format!("{c:.2}s")),
            network_cell(s.network.as_ref()),
            s.root.display().to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..10)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            name: "web1".into(),
            state: State::Running,
            launcher_pid: Some(4242),
            init_pid: Some(4250),
            boot: Some(2),
            started_at: 1_764_158_400,
            uptime_seconds: Some(3725.5),
            root: "/srv/web1".into(),
            hostname: "web1".into(),
            userns: Some(Range {
                base: 524_288,
                size: 65_536,
            }),
            limits: Limits {
                memory: Some(256 << 20),
                pids: Some(512),
                cpus: Some(1.5),
                ..Limits::default()
            },
            usage: Usage {
                memory: Some(3 << 20),
                memory_peak: Some(4 << 20),
                pids: Some(3),
                cpu_seconds: Some(0.25),
                oom_kills: Some(0),
            },
            cgroup: "/sys/fs/cgroup/cradle.web1".into(),
            cgroups_v1: BTreeMap::new(),
            network: None,
        }
    }

    #[test]
    fn the_json_field_names_are_the_documented_ones() {
        let value: serde_json::Value = serde_json::from_str(&to_json(&sample()).unwrap()).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        let mut documented = [
            "name",
            "state",
            "launcher_pid",
            "init_pid",
            "boot",
            "started_at",
            "uptime_seconds",
            "root",
            "hostname",
            "userns",
            "limits",
            "usage",
            "cgroup",
            "cgroups_v1",
            "network",
        ];
        documented.sort();
        assert_eq!(keys, documented);
        assert_eq!(value["state"], "running");
        assert_eq!(value["limits"]["memory"], 268_435_456);
        assert_eq!(value["limits"]["swap"], serde_json::Value::Null);
        assert_eq!(value["limits"]["cpus"], 1.5);
        assert_eq!(value["usage"]["oom_kills"], 0);
        assert_eq!(value["userns"]["size"], 65_536);
    }

    #[test]
    fn the_text_says_what_each_value_is() {
        let text = describe(&sample());
        assert!(text.contains("state:          running\n"), "{text}");
        assert!(text.contains("uptime:         1h 2m 5s\n"), "{text}");
        assert!(
            text.contains("memory:         3M (peak 4M), limit 256M, swap limit none, OOM kills 0"),
            "{text}"
        );
        assert!(
            text.contains("user namespace: host ids 524288-589823"),
            "{text}"
        );
        let table = table(&[sample()]);
        assert!(table.starts_with("NAME  STATE    INIT  BOOT"), "{table}");
        assert!(
            table.contains("web1  running  4250  2     1h2m5s"),
            "{table}"
        );
    }
}
