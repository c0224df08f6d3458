//! Resource limits: what `--memory`, `--swap`, `--pids`, `--cpus` and `--cpu-weight` mean,
//! how their values are read, and which cgroup file holds each on either kind of host.
//!
//! | option         | cgroup v2 (the container's cgroup) | cgroup v1 (a hybrid host)                 |
//! |----------------|------------------------------------|-------------------------------------------|
//! | `--memory`     | `memory.max`                       | `memory.limit_in_bytes`                   |
//! | `--swap`       | `memory.swap.max`                  | `memory.memsw.limit_in_bytes` (mem + swap) |
//! | `--pids`       | `pids.max`                         | `pids.max`                                |
//! | `--cpus`       | `cpu.max` (quota per 100 ms)       | `cpu.cfs_quota_us`, `cpu.cfs_period_us`   |
//! | `--cpu-weight` | `cpu.weight`                       | `cpu.shares` (weight × 1024 / 100)        |
//!
//! Everything here is pure: parsing and the text each file gets. `cgroups` writes them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The CFS period cradle uses for `--cpus`: 100 ms, the kernel's default.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The least `--memory` (smaller cannot hold a shim and an init).
const MIN_MEMORY: u64 = 1 << 20;
/// The least `--cpus`: the kernel's least quota is 1 ms per period.
const MIN_CPUS: f64 = 0.01;
/// The most `--cpus` taken (more than any host has).
const MAX_CPUS: f64 = 4096.0;

/// The limits of a container; `None` is no limit (the cgroup's `max`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of memory (`memory.max`).
    pub memory: Option<u64>,
    /// Bytes of swap besides the memory (`memory.swap.max`).
    pub swap: Option<u64>,
    /// Processes and threads, the shim included (`pids.max`).
    pub pids: Option<u64>,
    /// CPUs' worth of time per period (`cpu.max`), to a thousandth.
    pub cpus: Option<f64>,
    /// The share of CPU time under contention, 1 to 10000, 100 by default (`cpu.weight`).
    pub cpu_weight: Option<u32>,
}

/// The processes and threads a guest may have unless `--pids` says otherwise
/// (`--pids max`: none), as `systemd-nspawn@.service`'s `TasksMax=16384`: a fork storm in a
/// guest stops there, not at the host's `pid_max`. The guest's cgroup is outside every
/// systemd slice, so the host's `DefaultTasksMax` does not hold it.
pub const DEFAULT_PIDS: u64 = 16384;

impl Limits {
    /// What a guest gets when its options say nothing: [`DEFAULT_PIDS`], and no other
    /// limit (memory, CPU: any figure would be wrong for some guest).
    pub const DEFAULT: Limits = Limits {
        memory: None,
        swap: None,
        pids: Some(DEFAULT_PIDS),
        cpus: None,
        cpu_weight: None,
    };
}

/// One limit, by what it limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    Memory,
    Swap,
    Pids,
    Cpus,
    CpuWeight,
}

/// The cgroup controllers of the limits. (CPU time needs none: cgroup v2 counts it in
/// every cgroup's `cpu.stat`, a hybrid host's unified hierarchy too.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

impl Knob {
    pub const ALL: [Knob; 5] = [
        Knob::Memory,
        Knob::Swap,
        Knob::Pids,
        Knob::Cpus,
        Knob::CpuWeight,
    ];

    /// The option that sets it.
    pub fn option(self) -> &'static str {
        match self {
            Knob::Memory => "--memory",
            Knob::Swap => "--swap",
            Knob::Pids => "--pids",
            Knob::Cpus => "--cpus",
            Knob::CpuWeight => "--cpu-weight",
        }
    }

    pub fn controller(self) -> Controller {
        match self {
            Knob::Memory | Knob::Swap => Controller::Memory,
            Knob::Pids => Controller::Pids,
            Knob::Cpus | Knob::CpuWeight => Controller::Cpu,
        }
    }
}

impl Limits {
    pub fn is_set(&self, knob: Knob) -> bool {
        match knob {
            Knob::Memory => self.memory.is_some(),
            Knob::Swap => self.swap.is_some(),
            Knob::Pids => self.pids.is_some(),
            Knob::Cpus => self.cpus.is_some(),
            Knob::CpuWeight => self.cpu_weight.is_some(),
        }
    }

    /// The knobs that are set.
    pub fn set_knobs(&self) -> Vec<Knob> {
        Knob::ALL.into_iter().filter(|k| self.is_set(*k)).collect()
    }

    /// The `cpu.max` quota in microseconds per [`CPU_PERIOD_US`].
    fn cpu_quota(&self) -> Option<u64> {
        self.cpus
            .map(|cpus| (cpus * CPU_PERIOD_US as f64).round() as u64)
    }

    /// What `knob`'s cgroup v2 file gets: (file, text).
    pub fn v2_file(&self, knob: Knob) -> (&'static str, String) {
        let max = |v: Option<u64>| v.map_or_else(|| "max".to_owned(), |v| v.to_string());
        match knob {
            Knob::Memory => ("memory.max", max(self.memory)),
            Knob::Swap => ("memory.swap.max", max(self.swap)),
            Knob::Pids => ("pids.max", max(self.pids)),
            Knob::Cpus => (
                "cpu.max",
                format!("{} {CPU_PERIOD_US}", max(self.cpu_quota())),
            ),
            Knob::CpuWeight => ("cpu.weight", self.cpu_weight.unwrap_or(100).to_string()),
        }
    }

    /// What a cgroup v1 hierarchy's files get for `knob`, in the order they must be
    /// written: (file, text). The memory hierarchy limits memory and memory+swap, and the
    /// second may never be below the first: it is lifted first, then both are set.
    pub fn v1_files(&self, knob: Knob, memsw: bool) -> Vec<(&'static str, String)> {
        let unlimited = |v: Option<u64>| v.map_or_else(|| "-1".to_owned(), |v| v.to_string());
        match knob {
            Knob::Memory | Knob::Swap => {
                let mut files = Vec::new();
                if memsw {
                    files.push(("memory.memsw.limit_in_bytes", "-1".to_owned()));
                }
                files.push(("memory.limit_in_bytes", unlimited(self.memory)));
                if memsw {
                    let both = self.memory.zip(self.swap).map(|(m, s)| m.saturating_add(s));
                    files.push(("memory.memsw.limit_in_bytes", unlimited(both)));
                }
                files
            }
            Knob::Pids => vec![(
                "pids.max",
                self.pids
                    .map_or_else(|| "max".to_owned(), |v| v.to_string()),
            )],
            Knob::Cpus => vec![
                ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", unlimited(self.cpu_quota())),
            ],
            // systemd's conversion (cgroup_cpu_weight_to_shares): 100 is 1024
            Knob::CpuWeight => vec![(
                "cpu.shares",
                (u64::from(self.cpu_weight.unwrap_or(100)) * 1024 / 100)
                    .clamp(2, 262_144)
                    .to_string(),
            )],
        }
    }
}

/// A value given to a limit option: a limit, or `max` for none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Setting<T> {
    Max,
    To(T),
}

impl<T> Setting<T> {
    fn value(self) -> Option<T> {
        match self {
            Setting::Max => None,
            Setting::To(v) => Some(v),
        }
    }
}

/// The limit options of one command line (`start`, `run`, `set`): `None` where the option
/// was not given.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Changes {
    pub memory: Option<Setting<u64>>,
    pub swap: Option<Setting<u64>>,
    pub pids: Option<Setting<u64>>,
    pub cpus: Option<Setting<f64>>,
    pub cpu_weight: Option<u32>,
}

/// The option values as given on the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Given<'a> {
    pub memory: Option<&'a str>,
    pub swap: Option<&'a str>,
    pub pids: Option<&'a str>,
    pub cpus: Option<&'a str>,
    pub cpu_weight: Option<&'a str>,
}

fn bad(option: &str, value: &str, how: &str) -> Error {
    Error::Usage(format!("bad {option} {value:?}: {how}"))
}

/// A size: bytes, or a number with K, M, G or T (powers of 1024; a B may follow), or max.
fn parse_size(option: &str, text: &str) -> Result<Setting<u64>> {
    const HOW: &str = "use a size such as 512M or 2G (K, M, G, T: powers of 1024), or max";
    if text == "max" {
        return Ok(Setting::Max);
    }
    let upper = text.to_ascii_uppercase();
    let digits = upper.strip_suffix('B').unwrap_or(&upper);
    let (number, shift) = match digits.char_indices().last() {
        Some((i, 'K')) => (&digits[..i], 10),
        Some((i, 'M')) => (&digits[..i], 20),
        Some((i, 'G')) => (&digits[..i], 30),
        Some((i, 'T')) => (&digits[..i], 40),
        _ => (digits, 0),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(option, text, HOW));
    }
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| *n < (1 << 62))
        .ok_or_else(|| bad(option, text, "too large"))?;
    Ok(Setting::To(bytes))
}

/// `--memory` (or the config file's `memory`, as `label` says): a size of at least 1M.
pub fn parse_memory(label: &str, text: &str) -> Result<Setting<u64>> {
    let size = parse_size(label, text)?;
    if matches!(size, Setting::To(b) if b < MIN_MEMORY) {
        return Err(bad(label, text, "use at least 1M"));
    }
    Ok(size)
}

/// `--swap`: a size.
pub fn parse_swap(label: &str, text: &str) -> Result<Setting<u64>> {
    parse_size(label, text)
}

/// `--pids`: at least 1 (the shim is one), or max.
pub fn parse_pids(label: &str, text: &str) -> Result<Setting<u64>> {
    match text {
        "max" => Ok(Setting::Max),
        _ => text
            .parse::<u64>()
            .ok()
            .filter(|n| (1..1 << 31).contains(n))
            .map(Setting::To)
            .ok_or_else(|| {
                bad(
                    label,
                    text,
                    "use a number of processes of at least 1 (the shim is one), or max",
                )
            }),
    }
}

/// `--cpus`: 0.01 to 4096, to a thousandth, or max.
pub fn parse_cpus(label: &str, text: &str) -> Result<Setting<f64>> {
    match text {
        "max" => Ok(Setting::Max),
        _ => text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && (MIN_CPUS..=MAX_CPUS).contains(f))
            .map(|f| Setting::To((f * 1000.0).round() / 1000.0))
            .ok_or_else(|| {
                bad(
                    label,
                    text,
                    "use a number of CPUs from 0.01 to 4096, such as 0.5 or 2, or max",
                )
            }),
    }
}

/// `--cpu-weight`: 1 to 10000.
pub fn parse_cpu_weight(label: &str, text: &str) -> Result<u32> {
    text.parse::<u32>()
        .ok()
        .filter(|w| (1..=10_000).contains(w))
        .ok_or_else(|| {
            bad(
                label,
                text,
                "use 1 to 10000 (100 is every cgroup's default)",
            )
        })
}

impl Changes {
    /// Reads the option values; a bad one is a usage error naming it.
    pub fn parse(given: Given) -> Result<Self> {
        let option = Knob::option;
        Ok(Changes {
            memory: given
                .memory
                .map(|t| parse_memory(option(Knob::Memory), t))
                .transpose()?,
            swap: given
                .swap
                .map(|t| parse_swap(option(Knob::Swap), t))
                .transpose()?,
            pids: given
                .pids
                .map(|t| parse_pids(option(Knob::Pids), t))
                .transpose()?,
            cpus: given
                .cpus
                .map(|t| parse_cpus(option(Knob::Cpus), t))
                .transpose()?,
            cpu_weight: given
                .cpu_weight
                .map(|t| parse_cpu_weight(option(Knob::CpuWeight), t))
                .transpose()?,
        })
    }

    /// These changes, and those of `under` where these name no value: the command line's
    /// over a config file's.
    pub fn over(self, under: Changes) -> Changes {
        Changes {
            memory: self.memory.or(under.memory),
            swap: self.swap.or(under.swap),
            pids: self.pids.or(under.pids),
            cpus: self.cpus.or(under.cpus),
            cpu_weight: self.cpu_weight.or(under.cpu_weight),
        }
    }

    /// True when no limit option was given.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// The knobs these changes touch.
    pub fn knobs(&self) -> Vec<Knob> {
        let mut knobs = Vec::new();
        for (given, knob) in [
            (self.memory.is_some(), Knob::Memory),
            (self.swap.is_some(), Knob::Swap),
            (self.pids.is_some(), Knob::Pids),
            (self.cpus.is_some(), Knob::Cpus),
            (self.cpu_weight.is_some(), Knob::CpuWeight),
        ] {
            if given {
                knobs.push(knob);
            }
        }
        knobs
    }

    /// `limits` with these changes made. Swap is what a guest may use besides its memory,
    /// so it needs a memory limit (cgroup v1 can only limit the two together).
    pub fn apply_to(&self, limits: Limits) -> Result<Limits> {
        let mut new = limits;
        if let Some(m) = self.memory {
            new.memory = m.value();
        }
        if let Some(s) = self.swap {
            new.swap = s.value();
        }
        if let Some(p) = self.pids {
            new.pids = p.value();
        }
        if let Some(c) = self.cpus {
            new.cpus = c.value();
        }
        if let Some(w) = self.cpu_weight {
            new.cpu_weight = Some(w);
        }
        if new.swap.is_some() && new.memory.is_none() {
            return Err(Error::Usage(
                "--swap needs --memory: it is the swap a guest may use besides its memory".into(),
            ));
        }
        Ok(new)
    }
}

/// A size for people: 512M, 1.5G, 300K, 12 (bytes).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (unit, name) in UNITS {
        if bytes >= unit {
            let value = bytes as f64 / unit as f64;
            return if bytes % unit == 0 {
                format!("{}{name}", bytes / unit)
            } else {
                format!("{value:.1}{name}")
            };
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(memory: &str) -> Given<'_> {
        Given {
            memory: Some(memory),
            ..Given::default()
        }
    }

    #[test]
    fn sizes_take_binary_suffixes_and_max() {
        let size = |t| Changes::parse(given(t)).map(|c| c.memory.unwrap());
        assert_eq!(size("512M").unwrap(), Setting::To(512 << 20));
        assert_eq!(size("2g").unwrap(), Setting::To(2 << 30));
        assert_eq!(size("1536KB").unwrap(), Setting::To(1536 << 10));
        assert_eq!(size("1048576").unwrap(), Setting::To(1 << 20));
        assert_eq!(size("max").unwrap(), Setting::Max);
        for bad in ["lots", "", "M", "-1", "1.5G", "12X", "99999999999T", "100K"] {
            let err = size(bad).unwrap_err();
            assert_eq!(err.code() as u8, 2, "{bad}");
            let text = err.to_string();
            assert!(text.contains("--memory") && !text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn bad_values_are_named_one_line_usage_errors() {
        for (given, option, value) in [
            (
                Given {
                    pids: Some("0"),
                    ..Given::default()
                },
                "--pids",
                "\"0\"",
            ),
            (
                Given {
                    cpus: Some("-1"),
                    ..Given::default()
                },
                "--cpus",
                "\"-1\"",
            ),
            (
                Given {
                    cpus: Some("NaN"),
                    ..Given::default()
                },
                "--cpus",
                "NaN",
            ),
            (
                Given {
                    cpu_weight: Some("0"),
                    ..Given::default()
                },
                "--cpu-weight",
                "\"0\"",
            ),
        ] {
            let err = Changes::parse(given).unwrap_err();
            let text = err.to_string();
            assert_eq!(err.code() as u8, 2);
            assert!(text.contains(option) && text.contains(value), "{text}");
        }
    }

    #[test]
    fn swap_needs_memory() {
        let swap_only = Changes::parse(Given {
            swap: Some("1G"),
            ..Given::default()
        })
        .unwrap();
        assert!(swap_only.apply_to(Limits::default()).is_err());
        let with_memory = Limits {
            memory: Some(1 << 30),
            ..Limits::default()
        };
        assert_eq!(swap_only.apply_to(with_memory).unwrap().swap, Some(1 << 30));
    }

    #[test]
    fn changes_keep_what_they_do_not_name_and_max_removes() {
        let old = Limits {
            memory: Some(1 << 30),
            pids: Some(100),
            ..Limits::default()
        };
        let change = Changes::parse(Given {
            pids: Some("max"),
            cpus: Some("1.5"),
            ..Given::default()
        })
        .unwrap();
        assert_eq!(change.knobs(), [Knob::Pids, Knob::Cpus]);
        let new = change.apply_to(old).unwrap();
        assert_eq!(new.memory, Some(1 << 30));
        assert_eq!(new.pids, None);
        assert_eq!(new.cpus, Some(1.5));
    }

    #[test]
    fn the_files_behind_each_limit() {
        let limits = Limits {
            memory: Some(256 << 20),
            swap: Some(64 << 20),
            pids: Some(64),
            cpus: Some(0.5),
            cpu_weight: Some(50),
        };
        assert_eq!(
            limits.v2_file(Knob::Cpus),
            ("cpu.max", "50000 100000".to_owned())
        );
        assert_eq!(
            Limits::default().v2_file(Knob::Memory),
            ("memory.max", "max".to_owned())
        );
        assert_eq!(limits.v2_file(Knob::CpuWeight).1, "50");
        let memory = limits.v1_files(Knob::Memory, true);
        assert_eq!(
            memory,
            [
                ("memory.memsw.limit_in_bytes", "-1".to_owned()),
                ("memory.limit_in_bytes", (256u64 << 20).to_string()),
                ("memory.memsw.limit_in_bytes", (320u64 << 20).to_string()),
            ]
        );
        assert_eq!(limits.v1_files(Knob::Memory, false).len(), 1);
        assert_eq!(limits.v1_files(Knob::CpuWeight, false)[0].1, "512");
        assert_eq!(
            Limits::default().v1_files(Knob::Cpus, false)[1],
            ("cpu.cfs_quota_us", "-1".to_owned())
        );
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(256 << 20), "256M");
        assert_eq!(human_size(1536 << 20), "1.5G");
        assert_eq!(human_size(900), "900");
    }
}
