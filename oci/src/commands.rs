//! The commands after `create`: each reads the container's record and acts on the system.

use std::fs;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use cradle_core::cgroups::container::Cgroup;
use cradle_core::cgroups::v1;
use cradle_core::error::{Error, Result};
use cradle_core::sys::{self, Deadline, SingleThreaded};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags};
use nix::sys::stat::Mode;
use nix::unistd::{Pid, read};

use crate::hooks::{self, Place};
use crate::state::{self, Record, Root, Status};

/// The container's record, or the error that says there is no such container.
pub fn load(root: &Root, id: &str) -> Result<Record> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(Error::Usage(format!("bad container id {id:?}")));
    }
    root.load(id).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::Missing(format!("container {id} does not exist")),
        _ => Error::host(format!("state of container {id}"), e),
    })
}

/// Writes `text` to standard output, as given (a terminal, a pipe or a file).
fn print(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::host("write to standard output", e))
}

pub fn state(root: &Root, id: &str) -> Result<()> {
    let record = load(root, id)?;
    let status = record.status(&root.dir(id));
    let text = serde_json::to_string_pretty(&record.state_json(status)).expect("a JSON value");
    print(&format!("{text}\n"))
}

/// `start`: opens the fifo the container waits on, which lets it exec its process.
pub fn start(threads: &SingleThreaded, root: &Root, id: &str) -> Result<()> {
    let record = load(root, id)?;
    let dir = root.dir(id);
    match record.status(&dir) {
        Status::Created => {}
        other => {
            return Err(Error::Conflict(format!(
                "container {id} is {}, not created: it cannot be started",
                other.name()
            )));
        }
    }
    // before its process runs, in the container: its startContainer hooks; one failing
    // stops the container (`delete` runs its poststop hooks)
    if !record.start_container.is_empty() {
        let pidfd = sys::pidfd_open(Pid::from_raw(record.pid))
            .map_err(|_| Error::Missing(format!("container {id} is not running")))?;
        let state = record.state_json(Status::Created);
        let place = Place::Container {
            pid: record.pid,
            pidfd: pidfd.as_fd(),
        };
        let ran = hooks::run_all(
            threads,
            "startContainer",
            &record.start_container,
            &state,
            place,
        );
        if let Err(e) = ran {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            return Err(e);
        }
    }
    let fifo_path = dir.join(state::FIFO);
    // non-blocking: a container that died meanwhile must not hang us
    let fifo = open(
        &fifo_path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::host(format!("open {}", fifo_path.display()), e))?;
    let deadline = Deadline::after(Duration::from_secs(30));
    loop {
        let mut byte = [0u8];
        match read(&fifo, &mut byte) {
            Ok(1) => break,
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(e) => return Err(Error::host(format!("read {}", fifo_path.display()), e)),
        }
        if !record.alive() {
            let _ = fs::remove_file(&fifo_path);
            return Err(Error::Missing(format!(
                "container {id} ended before it was started"
            )));
        }
        if deadline.passed() {
            return Err(Error::Timeout(format!(
                "container {id} did not take the start in 30 s"
            )));
        }
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, 20u16);
    }
    fs::remove_file(&fifo_path)
        .map_err(|e| Error::host(format!("remove {}", fifo_path.display()), e))?;
    let state = record.state_json(Status::Running);
    hooks::run_all(
        threads,
        "poststart",
        &record.poststart,
        &state,
        Place::Runtime,
    )
}

/// A signal by name (`KILL`, `SIGKILL`) or number.
pub fn parse_signal(text: &str) -> Result<i32> {
    if let Ok(n) = text.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let unknown = || Error::Usage(format!("unknown signal {text:?}"));
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    // the real-time ones as runc names them: RTMIN, RTMIN+N, RTMAX-N, RTMAX
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let offset = |rest: &str, sign: char| match rest {
        "" => Ok(0),
        _ => (rest.strip_prefix(sign))
            .and_then(|n| n.parse::<i32>().ok())
            .ok_or_else(unknown),
    };
    let realtime = if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        Some(min + offset(rest, '+')?)
    } else if let Some(rest) = name.strip_prefix("SIGRTMAX") {
        Some(max - offset(rest, '-')?)
    } else {
        None
    };
    match realtime {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(unknown()),
        None => name
            .parse::<nix::sys::signal::Signal>()
            .map(|s| s as i32)
            .map_err(|_| unknown()),
    }
}

pub fn kill(root: &Root, id: &str, signal: i32, all: bool) -> Result<()> {
    let record = load(root, id)?;
    let status = record.status(&root.dir(id));
    if status == Status::Stopped {
        return Err(Error::Missing(format!("container {id} is not running")));
    }
    if all {
        for pid in pids(&record) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal_of(signal)?);
        }
        return Ok(());
    }
    let pidfd = sys::pidfd_open(Pid::from_raw(record.pid))
        .map_err(|_| Error::Missing(format!("container {id} is not running")))?;
    // the pid may have been reused between the record's check and the pidfd
    if !record.alive() {
        return Err(Error::Missing(format!("container {id} is not running")));
    }
    sys::pidfd_send_signal(pidfd.as_fd(), signal)
        .map_err(|e| Error::host(format!("signal {signal} to container {id}"), e))
}

fn signal_of(n: i32) -> Result<Option<nix::sys::signal::Signal>> {
    nix::sys::signal::Signal::try_from(n)
        .map(Some)
        .map_err(|_| Error::Usage(format!("unknown signal {n}")))
}

/// The pids of the container's cgroup and its cgroups below, by the v2 hierarchy.
pub fn pids(record: &Record) -> Vec<i32> {
    v1::processes_below(&record.cgroup)
        .iter()
        .filter_map(|pid| pid.trim().parse().ok())
        .collect()
}

/// `delete`: the container's processes killed (`--force`, or a container that was never
/// started), its cgroups removed, its state directory removed, its poststop hooks run.
pub fn delete(threads: &SingleThreaded, root: &Root, id: &str, force: bool) -> Result<()> {
    let record = match load(root, id) {
        Err(Error::Missing(_)) if force => {
            // a half-made container (a create killed midway) leaves a directory alone
            let dir = root.dir(id);
            if dir.is_dir() && !dir.join(state::RECORD).exists() {
                let _ = fs::remove_dir_all(&dir);
            }
            return Ok(());
        }
        other => other?,
    };
    let dir = root.dir(id);
    let status = record.status(&dir);
    match status {
        Status::Stopped | Status::Created => {}
        Status::Running | Status::Paused if force => {}
        other => {
            return Err(Error::Conflict(format!(
                "container {id} is {}: stop it first, or delete --force",
                other.name()
            )));
        }
    }
    if status != Status::Stopped {
        kill_and_wait(&record);
    }
    remove_cgroups(&record);
    crate::create::detach_root(&record);
    fs::remove_dir_all(&dir).map_err(|e| Error::host(format!("remove {}", dir.display()), e))?;
    hooks::run_poststop(threads, &record);
    Ok(())
}

/// Kills every process of the container (thawed first: a frozen one cannot die) and
/// waits up to 10 s for its first process to go.
fn kill_and_wait(record: &Record) {
    let _ = fs::write(record.cgroup.join("cgroup.freeze"), "0");
    if fs::write(record.cgroup.join("cgroup.kill"), "1").is_err() {
        for pid in pids(record) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
    if let Ok(pidfd) = sys::pidfd_open(Pid::from_raw(record.pid)) {
        if record.alive() {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, 10_000u16);
        }
    }
}

/// Removes the container's cgroups as the core removes one it made: what is still in the
/// v2 one killed and waited for, the tree removed, then the v1 ones.
fn remove_cgroups(record: &Record) {
    match Cgroup::take_back_at(record.cgroup.clone(), record.cgroups_v1.clone()) {
        Ok(cgroup) => drop(cgroup),
        // gone already (a removal that was cut short): the v1 ones may be left
        Err(_) => v1::remove_v1(&record.cgroups_v1),
    }
}

/// `pause` (true) and `resume` (false): the cgroup's freezer.
pub fn freeze(root: &Root, id: &str, frozen: bool) -> Result<()> {
    let record = load(root, id)?;
    let status = record.status(&root.dir(id));
    let want = if frozen {
        Status::Running
    } else {
        Status::Paused
    };
    if status != want {
        return Err(Error::Missing(format!(
            "container {id} is {}, not {}",
            status.name(),
            want.name()
        )));
    }
    let file = record.cgroup.join("cgroup.freeze");
    fs::write(&file, if frozen { "1" } else { "0" })
        .map_err(|e| Error::host(format!("write {}", file.display()), e))
}

pub fn list(root: &Root, format: &str, quiet: bool) -> Result<()> {
    let mut rows = Vec::new();
    for id in root.ids() {
        if let Ok(record) = root.load(&id) {
            let status = record.status(&root.dir(&id));
            rows.push((record, status));
        }
    }
    if quiet {
        let ids: String = rows.iter().map(|(r, _)| format!("{}\n", r.id)).collect();
        return print(&ids);
    }
    match format {
        "json" => {
            let list: Vec<_> = rows
                .iter()
                .map(|(r, s)| {
                    let mut state = r.state_json(*s);
                    state["rootfs"] = serde_json::json!(r.rootfs);
                    state
                })
                .collect();
            print(&format!("{}\n", serde_json::Value::Array(list)))
        }
        "table" | "" => {
            let mut text = String::from("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n");
            for (r, s) in &rows {
                let pid = if *s == Status::Stopped { 0 } else { r.pid };
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\troot\n",
                    r.id,
                    pid,
                    s.name(),
                    r.bundle.display(),
                    r.created
                ));
            }
            print(&text)
        }
        other => Err(Error::Usage(format!(
            "unknown list format {other:?}: use table or json"
        ))),
    }
}

pub fn ps(root: &Root, id: &str, format: &str, ps_args: &[String]) -> Result<()> {
    let record = load(root, id)?;
    let mut found = pids(&record);
    found.sort_unstable();
    match format {
        "json" => print(&format!("{}\n", serde_json::json!(found))),
        "table" | "" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".to_owned()]
            } else {
                ps_args.to_vec()
            };
            let output = std::process::Command::new("ps")
                .args(&args)
                .output()
                .map_err(|e| Error::host("run ps", e))?;
            let text = String::from_utf8_lossy(&output.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let column = header
                .split_whitespace()
                .position(|c| c == "PID")
                .ok_or_else(|| Error::Usage("ps printed no PID column".into()))?;
            let mut out = format!("{header}\n");
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(column)
                    .and_then(|p| p.parse().ok());
                if pid.is_some_and(|p: i32| found.contains(&p)) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            print(&out)
        }
        other => Err(Error::Usage(format!(
            "unknown ps format {other:?}: use table or json"
        ))),
    }
}

/// `spec`: writes runc's example configuration into the bundle directory.
pub fn spec(bundle: &Path) -> Result<()> {
    let path = bundle.join("config.json");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                Error::Usage(format!("{} exists: remove it first", path.display()))
            }
            _ => Error::host(format!("create {}", path.display()), e),
        })?;
    file.write_all(EXAMPLE_SPEC.as_bytes())
        .map_err(|e| Error::host(format!("write {}", path.display()), e))
}

/// `features`: what this runtime supports, in the spec's features document.
pub fn features() -> Result<()> {
    let caps: Vec<String> = cradle_core::security::caps::NAMES
        .iter()
        .map(|n| format!("CAP_{n}"))
        .collect();
    let features = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": [
            "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
            "poststop"
        ],
        "mountOptions": [
            "bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
            "noatime", "relatime", "strictatime", "nodiratime", "private", "rprivate",
            "shared", "rshared", "slave", "rslave", "unbindable", "runbindable", "idmap",
            "ridmap", "defaults"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": crate::seccomp::features(),
            "apparmor": {"enabled": true},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {"io.github.cradle.shim": "cradle-shim is PID 1 of every container"}
    });
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&features).expect("a JSON value")
    ))
}

/// runc's `spec` output (runc 1.1), which `spec` writes and the tests read.
pub const EXAMPLE_SPEC: &str = r#"{
	"ociVersion": "1.0.2",
	"process": {
		"terminal": true,
		"user": {
			"uid": 0,
			"gid": 0
		},
		"args": [
			"sh"
		],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"effective": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"permitted": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"ambient": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			]
		},
		"rlimits": [
			{
				"type": "RLIMIT_NOFILE",
				"hard": 1024,
				"soft": 1024
			}
		],
		"noNewPrivileges": true
	},
	"root": {
		"path": "rootfs",
		"readonly": true
	},
	"hostname": "runc",
	"mounts": [
		{
			"destination": "/proc",
			"type": "proc",
			"source": "proc"
		},
		{
			"destination": "/dev",
			"type": "tmpfs",
			"source": "tmpfs",
			"options": [
				"nosuid",
				"strictatime",
				"mode=755",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/pts",
			"type": "devpts",
			"source": "devpts",
			"options": [
				"nosuid",
				"noexec",
				"newinstance",
				"ptmxmode=0666",
				"mode=0620",
				"gid=5"
			]
		},
		{
			"destination": "/dev/shm",
			"type": "tmpfs",
			"source": "shm",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"mode=1777",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/mqueue",
			"type": "mqueue",
			"source": "mqueue",
			"options": [
				"nosuid",
				"noexec",
				"nodev"
			]
		},
		{
			"destination": "/sys",
			"type": "sysfs",
			"source": "sysfs",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"ro"
			]
		},
		{
			"destination": "/sys/fs/cgroup",
			"type": "cgroup",
			"source": "cgroup",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"relatime",
				"ro"
			]
		}
	],
	"linux": {
		"resources": {
			"devices": [
				{
					"allow": false,
					"access": "rwm"
				}
			]
		},
		"namespaces": [
			{
				"type": "pid"
			},
			{
				"type": "network"
			},
			{
				"type": "ipc"
			},
			{
				"type": "uts"
			},
			{
				"type": "mount"
			},
			{
				"type": "cgroup"
			}
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_read_by_name_with_or_without_sig_and_by_number() {
        assert_eq!(parse_signal("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGHUP").unwrap(), libc::SIGHUP);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("BOGUS").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), min + 3);
        assert_eq!(parse_signal("rtmin").unwrap(), min);
        assert_eq!(parse_signal("RTMAX-1").unwrap(), max - 1);
        for bad in ["RTMIN-1", "RTMIN+99", "RTMAX+1", "RTMINX", "RTMIN+"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}
