//! What cradle-oci keeps of a container between its commands: `ROOT/ID/state.json` (its
//! record) and `ROOT/ID/exec.fifo` (there from `create` until `start`, as runc's). The
//! container's status is read from the system each time, never stored: its first
//! process (the pid, checked against its start time so a reused pid is not taken for it),
//! the fifo, and the cgroup's freezer.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A container's record, written by `create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The host pid of its first process (the shim), and that process's start time
    /// (field 22 of /proc/PID/stat).
    pub pid: i32,
    pub started: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, UTC.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    /// Its cgroup in the v2 hierarchy, and in the v1 ones of a hybrid host.
    pub cgroup: PathBuf,
    pub cgroups_v1: Vec<cradle_core::cgroups::v1::V1Dir>,
    /// The hooks to run on `start` and `delete`.
    #[serde(default)]
    pub start_container: Vec<crate::spec::Hook>,
    pub poststart: Vec<crate::spec::Hook>,
    pub poststop: Vec<crate::spec::Hook>,
    pub oci_version: String,
    /// Where its spec has no mount namespace, its root as attached in the mount
    /// namespace of `create` (and `delete`, which detaches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_attached: Option<Attached>,
}

/// A mount, by its id and where it is mounted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attached {
    pub mount_id: u64,
    pub path: PathBuf,
}

/// A container's status, as the spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Being made: what the hooks of `create` are told (never a saved container's).
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The state directory `--root`: where every container has its directory.
pub struct Root(PathBuf);

pub const DEFAULT_ROOT: &str = "/run/cradle-oci";

impl Root {
    pub fn new(path: &Path) -> Self {
        Root(path.to_owned())
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.0.join(id)
    }

    /// Makes the container's directory (0711, as runc's, so that a container user can
    /// reach the fifo): fails with AlreadyExists when the id is taken.
    pub fn make_dir(&self, id: &str) -> io::Result<PathBuf> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.0)?;
        let dir = self.dir(id);
        fs::DirBuilder::new().mode(0o711).create(&dir)?;
        Ok(dir)
    }

    /// The ids of the containers it holds, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(&self.0)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(RECORD).is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }

    pub fn load(&self, id: &str) -> io::Result<Record> {
        let text = fs::read_to_string(self.dir(id).join(RECORD))?;
        serde_json::from_str(&text).map_err(io::Error::other)
    }
}

pub const RECORD: &str = "state.json";
pub const FIFO: &str = "exec.fifo";

impl Record {
    /// Writes the record into `dir` (a new file renamed over the old: a reader never sees
    /// half of it).
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let text = serde_json::to_vec(self).map_err(io::Error::other)?;
        cradle_core::guest::state::write_atomic_mode(&dir.join(RECORD), &text, 0o600)
    }

    /// True while its first process is the one `create` made, and has not ended (a
    /// zombie its caller has not reaped yet has).
    pub fn alive(&self) -> bool {
        self.pid > 0
            && read_stat(self.pid)
                .is_some_and(|(state, start)| start == self.started && !matches!(state, 'Z' | 'X'))
    }

    pub fn status(&self, dir: &Path) -> Status {
        if !self.alive() {
            return Status::Stopped;
        }
        if dir.join(FIFO).exists() {
            return Status::Created;
        }
        let frozen =
            fs::read_to_string(self.cgroup.join("cgroup.freeze")).is_ok_and(|t| t.trim() == "1");
        if frozen {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// The spec's state, as `state` prints it and hooks read it on their stdin.
    pub fn state_json(&self, status: Status) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": status.name(),
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
            "annotations": self.annotations,
        })
    }
}

/// The start time of process `pid` (field 22 of /proc/PID/stat, in clock ticks since
/// boot), None when there is no such process.
pub fn start_time(pid: i32) -> Option<u64> {
    read_stat(pid).map(|(_, start)| start)
}

/// The state letter (field 3) and start time (field 22) of /proc/PID/stat.
fn read_stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) is in parentheses and may hold spaces and parentheses
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// Now, as RFC 3339 in UTC with nanoseconds (what runc's `created` looks like).
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_nanos()
    )
}

/// Howard Hinnant's days-to-civil: (year, month, day) of the day `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right_across_leap_years() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11016), (2000, 2, 29));
        assert_eq!(civil_from_days(20792), (2026, 12, 5));
    }

    #[test]
    fn our_own_start_time_is_read_and_a_missing_pid_has_none() {
        assert!(start_time(std::process::id() as i32).is_some());
        assert_eq!(start_time(i32::MAX), None);
    }
}
