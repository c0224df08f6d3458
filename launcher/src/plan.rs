//! What the launcher's child does between clone and exec of the shim, as data.
//!
//! [`build`] is a pure function from the container's configuration to a list of
//! [`Step`]s, every path already a `CString`; [`apply`] runs them in the child with no
//! allocation, and on failure returns the index of the step, which the parent turns back
//! into words with the step's `Display`. The order is the design:
//!
//! 1. a session of its own; in run mode the cgroup namespace, rooted at the container's
//!    cgroup, which clone3 put the child in (in boot mode only the guest gets one, below
//!    the shim: see `cgroups`); the whole mount tree private so nothing reaches the host;
//! 2. a private bind of the root directory, and in it: /proc and the cgroup2 tree (run
//!    mode; in boot mode the guest's nested namespaces mount their own), /sys read-only, a
//!    fresh /dev with the basic devices, its own devpts and /dev/shm, and in boot mode the
//!    console pty bound on /dev/console;
//! 3. pivot_root into it and detach the host's root;
//! 4. hostname, loopback up, and the console as standard streams (boot mode).

use std::ffi::{CStr, CString, NulError};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cradle_common::guest::{CGROUP2, MountCall, PROC, PROC_BINDS, proc_bind};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::{Mode, SFlag, makedev, mknod, umask};
use nix::unistd::{
    chdir, dup2_stderr, dup2_stdin, dup2_stdout, mkdir, pivot_root, sethostname, setsid, symlinkat,
};

use crate::sys;

/// What the shim will be asked to do; it decides a few mounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose<'a> {
    /// Boot the guest's init. `console` is the path of the pty slave the launcher holds.
    Boot { console: &'a str },
    /// Run a command with the launcher's own standard streams.
    Run,
}

pub struct Config<'a> {
    /// The guest's root directory, absolute and without symlinks.
    pub root: &'a Path,
    pub hostname: &'a str,
    pub purpose: Purpose<'a>,
}

/// One step of the child's setup. Paths other than the root's are relative to the root
/// (the child's working directory while it mounts) and shown from the guest's side.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    NewSession,
    CgroupNamespace,
    Mount(MountSpec),
    /// Binds a path of /proc on itself, read-only or writable (common::guest::PROC_BINDS);
    /// skipped when the kernel does not have the path.
    ProcBind {
        path: CString,
        read_only: bool,
    },
    Chdir(CString),
    /// mkdir, where the directory does not exist yet.
    Mkdir(CString),
    /// A character device node, mode 0666.
    CharDevice {
        path: CString,
        major: u64,
        minor: u64,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    /// An empty regular file (a mount point for a file), mode 0600.
    EmptyFile(CString),
    /// pivot_root into the working directory and detach the old root.
    PivotRoot,
    Hostname(CString),
    LoopbackUp,
    /// Opens this path as standard input, output and error.
    Stdio(CString),
}

/// The arguments of one mount(2) call.
#[derive(Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub source: Option<CString>,
    pub target: CString,
    pub fstype: Option<CString>,
    pub flags: MsFlags,
    pub data: Option<CString>,
}

impl From<&MountCall> for MountSpec {
    fn from(call: &MountCall) -> Self {
        MountSpec {
            source: call.source.map(CString::from),
            target: call.target.into(),
            fstype: call.fstype.map(CString::from),
            flags: MsFlags::from_bits_truncate(call.flags),
            data: call.data.map(CString::from),
        }
    }
}

impl MountSpec {
    fn apply(&self) -> nix::Result<()> {
        mount(
            self.source.as_deref(),
            self.target.as_c_str(),
            self.fstype.as_deref(),
            self.flags,
            self.data.as_deref(),
        )
    }
}

fn c(s: &str) -> CString {
    CString::new(s).expect("literal without NUL")
}

fn mount_step(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Step {
    Step::Mount(MountSpec {
        source: Some(c(source)),
        target: c(target),
        fstype: Some(c(fstype)),
        flags,
        data: data.map(c),
    })
}

fn bind_step(source: CString, target: CString, flags: MsFlags) -> Step {
    Step::Mount(MountSpec {
        source: Some(source),
        target,
        fstype: None,
        flags: MsFlags::MS_BIND | flags,
        data: None,
    })
}

/// Character devices every guest gets in /dev: (name, major, minor).
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Symlinks every guest gets in /dev: (name, target).
const DEV_LINKS: [(&str, &str); 5] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// The steps for `config`. Fails only when a path or name holds a NUL byte.
pub fn build(config: &Config) -> Result<Vec<Step>, NulError> {
    let root = CString::new(config.root.as_os_str().as_bytes())?;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let run = config.purpose == Purpose::Run;
    let mut steps = vec![Step::NewSession];
    if run {
        steps.push(Step::CgroupNamespace);
    }
    steps.extend([
        Step::Mount(MountSpec {
            source: None,
            target: c("/"),
            fstype: None,
            flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            data: None,
        }),
        bind_step(root.clone(), root.clone(), MsFlags::MS_REC),
        Step::Chdir(root),
        Step::Mkdir(c("proc")),
    ]);
    if run {
        steps.push(Step::Mount(MountSpec::from(&PROC)));
        steps.extend(PROC_BINDS.iter().map(|&(path, read_only)| Step::ProcBind {
            path: path.into(),
            read_only,
        }));
    }
    steps.extend([
        Step::Mkdir(c("sys")),
        mount_step(
            "sysfs",
            "sys",
            "sysfs",
            nosuid_nodev_noexec | MsFlags::MS_RDONLY,
            None,
        ),
    ]);
    if run {
        steps.push(Step::Mount(MountSpec::from(&CGROUP2)));
    }
    steps.extend([
        Step::Mkdir(c("dev")),
        mount_step(
            "tmpfs",
            "dev",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            Some("mode=755"),
        ),
    ]);
    steps.extend(
        DEVICES
            .iter()
            .map(|&(name, major, minor)| Step::CharDevice {
                path: c(&format!("dev/{name}")),
                major,
                minor,
            }),
    );
    steps.extend([
        Step::Mkdir(c("dev/pts")),
        mount_step(
            "devpts",
            "dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=620,gid=5"),
        ),
        Step::Mkdir(c("dev/shm")),
        mount_step(
            "tmpfs",
            "dev/shm",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        ),
    ]);
    steps.extend(DEV_LINKS.iter().map(|&(name, target)| Step::Symlink {
        target: c(target),
        path: c(&format!("dev/{name}")),
    }));
    if let Purpose::Boot { console } = config.purpose {
        steps.push(Step::EmptyFile(c("dev/console")));
        steps.push(bind_step(
            CString::new(console)?,
            c("dev/console"),
            MsFlags::empty(),
        ));
    }
    steps.extend([
        Step::PivotRoot,
        Step::Hostname(CString::new(config.hostname)?),
        Step::LoopbackUp,
    ]);
    if let Purpose::Boot { .. } = config.purpose {
        steps.push(Step::Stdio(c("/dev/console")));
    }
    Ok(steps)
}

/// Shows a path of a step as the guest sees it (`dev/null` → `/dev/null`).
struct GuestPath<'a>(&'a CString);

impl fmt::Display for GuestPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let text = self.0.to_string_lossy();
        if text.starts_with('/') {
            f.write_str(&text)
        } else {
            write!(f, "/{text}")
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Step::NewSession => f.write_str("setsid"),
            Step::CgroupNamespace => f.write_str("unshare the cgroup namespace"),
            Step::Mount(MountSpec { target, flags, .. }) if flags.contains(MsFlags::MS_PRIVATE) => {
                write!(
                    f,
                    "make the mounts below {} private",
                    target.to_string_lossy()
                )
            }
            Step::Mount(MountSpec {
                source: Some(source),
                target,
                flags,
                ..
            }) if flags.contains(MsFlags::MS_BIND) && source == target => {
                write!(f, "bind {} on itself", target.to_string_lossy())
            }
            Step::Mount(MountSpec {
                source,
                target,
                fstype,
                ..
            }) => {
                let what = fstype
                    .as_ref()
                    .or(source.as_ref())
                    .map(|s| s.to_string_lossy());
                write!(
                    f,
                    "mount {} on {}",
                    what.unwrap_or_default(),
                    GuestPath(target)
                )
            }
            Step::ProcBind { path, read_only } => {
                let how = if *read_only { "read-only" } else { "writable" };
                write!(f, "bind {} {how}", GuestPath(path))
            }
            Step::Chdir(path) => write!(f, "chdir to {}", path.to_string_lossy()),
            Step::Mkdir(path) => write!(f, "create directory {}", GuestPath(path)),
            Step::CharDevice { path, .. } => write!(f, "create device {}", GuestPath(path)),
            Step::Symlink { path, .. } => write!(f, "create symlink {}", GuestPath(path)),
            Step::EmptyFile(path) => write!(f, "create {}", GuestPath(path)),
            Step::PivotRoot => f.write_str("pivot_root into the root directory"),
            Step::Hostname(name) => write!(f, "set hostname {}", name.to_string_lossy()),
            Step::LoopbackUp => f.write_str("bring up the loopback interface"),
            Step::Stdio(path) => write!(f, "open {} as standard streams", path.to_string_lossy()),
        }
    }
}

/// Runs one step. Called in the freshly cloned child: no allocation, no locks.
fn apply_step(step: &Step) -> nix::Result<()> {
    match step {
        Step::NewSession => setsid().map(drop),
        Step::CgroupNamespace => unshare(CloneFlags::CLONE_NEWCGROUP),
        Step::Mount(spec) => spec.apply(),
        Step::ProcBind { path, read_only } => {
            // the flags of both calls come from the shared table; the path is ours
            let [bind, remount] = proc_bind(c"", *read_only);
            let none = None::<&CStr>;
            let bound = mount(
                Some(path.as_c_str()),
                path.as_c_str(),
                none,
                MsFlags::from_bits_truncate(bind.flags),
                none,
            );
            match bound {
                Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(e),
                Ok(()) => mount(
                    none,
                    path.as_c_str(),
                    none,
                    MsFlags::from_bits_truncate(remount.flags),
                    none,
                ),
            }
        }
        Step::Chdir(path) => chdir(path.as_c_str()),
        Step::Mkdir(path) => match mkdir(path.as_c_str(), Mode::from_bits_truncate(0o755)) {
            Err(Errno::EEXIST) => Ok(()),
            other => other,
        },
        Step::CharDevice { path, major, minor } => mknod(
            path.as_c_str(),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(*major, *minor),
        ),
        Step::Symlink { target, path } => symlinkat(target.as_c_str(), AT_FDCWD, path.as_c_str()),
        Step::EmptyFile(path) => open(
            path.as_c_str(),
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map(drop),
        Step::PivotRoot => {
            // pivot_root(".", "."): the old root ends up mounted on top of the new one,
            // where a lazy unmount detaches it (pivot_root(2), "NOTES")
            pivot_root(c".", c".")?;
            umount2(c".", MntFlags::MNT_DETACH)?;
            chdir(c"/")
        }
        Step::Hostname(name) => sethostname(std::ffi::OsStr::from_bytes(name.as_bytes())),
        Step::LoopbackUp => sys::interface_up(c"lo"),
        Step::Stdio(path) => {
            let fd = open(
                path.as_c_str(),
                OFlag::O_RDWR | OFlag::O_NOCTTY,
                Mode::empty(),
            )?;
            dup2_stdin(&fd)?;
            dup2_stdout(&fd)?;
            dup2_stderr(&fd)
            // fd is above 2 (0–2 were open), and closes here
        }
    }
}

/// Runs the steps in order with umask 0 (device nodes must be 0666), then leaves umask
/// 022 for the shim and the guest. On failure: the index of the step and its errno.
pub fn apply(steps: &[Step]) -> Result<(), (usize, Errno)> {
    umask(Mode::empty());
    let result = steps
        .iter()
        .enumerate()
        .try_for_each(|(i, step)| apply_step(step).map_err(|e| (i, e)));
    umask(Mode::from_bits_truncate(0o022));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(purpose: Purpose<'_>) -> Vec<Step> {
        build(&Config {
            root: Path::new("/srv/guest"),
            hostname: "web1",
            purpose,
        })
        .unwrap()
    }

    fn position(steps: &[Step], pred: impl Fn(&Step) -> bool) -> Option<usize> {
        steps.iter().position(pred)
    }

    fn mounts_on(steps: &[Step], on: &str) -> usize {
        steps
            .iter()
            .filter(|s| matches!(s, Step::Mount(MountSpec { target, .. }) if target.to_bytes() == on.as_bytes()))
            .count()
    }

    #[test]
    fn mount_tree_is_private_before_any_mount_and_pivot_comes_after_all() {
        for purpose in [
            Purpose::Run,
            Purpose::Boot {
                console: "/dev/pts/5",
            },
        ] {
            let steps = plan(purpose);
            let private = position(&steps, |s| {
                matches!(s, Step::Mount(MountSpec { flags, .. }) if flags.contains(MsFlags::MS_PRIVATE))
            })
            .unwrap();
            let first_mount = position(&steps, |s| matches!(s, Step::Mount(_))).unwrap();
            assert_eq!(private, first_mount);
            let pivot = position(&steps, |s| *s == Step::PivotRoot).unwrap();
            let last_mount = steps
                .iter()
                .rposition(|s| matches!(s, Step::Mount(_)))
                .unwrap();
            assert!(last_mount < pivot);
        }
    }

    #[test]
    fn root_is_bound_on_itself_and_becomes_the_working_directory() {
        let steps = plan(Purpose::Run);
        assert_eq!(mounts_on(&steps, "/srv/guest"), 1);
        let bind = position(&steps, |s| matches!(s, Step::Mount(MountSpec { target, .. }) if target.to_bytes() == b"/srv/guest")).unwrap();
        assert_eq!(steps[bind + 1], Step::Chdir(c("/srv/guest")));
    }

    #[test]
    fn boot_mode_leaves_proc_and_cgroups_to_the_guest_and_binds_the_console() {
        let steps = plan(Purpose::Boot {
            console: "/dev/pts/5",
        });
        assert_eq!(mounts_on(&steps, "proc"), 0);
        assert_eq!(mounts_on(&steps, "sys/fs/cgroup"), 0);
        assert!(!steps.contains(&Step::CgroupNamespace));
        assert_eq!(mounts_on(&steps, "dev/console"), 1);
        assert!(steps.contains(&Step::Stdio(c("/dev/console"))));
        let run = plan(Purpose::Run);
        assert_eq!(mounts_on(&run, "proc"), 1);
        assert_eq!(mounts_on(&run, "sys/fs/cgroup"), 1);
        assert!(run.contains(&Step::CgroupNamespace));
        assert_eq!(mounts_on(&run, "dev/console"), 0);
        assert!(!run.iter().any(|s| matches!(s, Step::Stdio(_))));
    }

    #[test]
    fn sys_is_read_only_and_dev_allows_devices() {
        let steps = plan(Purpose::Run);
        for step in &steps {
            if let Step::Mount(MountSpec { target, flags, .. }) = step {
                match target.to_bytes() {
                    b"sys" => assert!(flags.contains(MsFlags::MS_RDONLY)),
                    b"dev" => assert!(!flags.contains(MsFlags::MS_NODEV)),
                    _ => {}
                }
            }
        }
        for dev in [
            "dev/null",
            "dev/zero",
            "dev/full",
            "dev/random",
            "dev/urandom",
            "dev/tty",
        ] {
            assert!(steps.iter().any(|s| matches!(s, Step::CharDevice { path, .. } if path.to_bytes() == dev.as_bytes())), "{dev}");
        }
    }

    #[test]
    fn steps_read_as_words_from_the_guest_side() {
        let steps = plan(Purpose::Boot {
            console: "/dev/pts/5",
        });
        let texts: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert!(
            texts.contains(&"mount sysfs on /sys".to_owned()),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"create device /dev/null".to_owned()),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"bind /srv/guest on itself".to_owned()),
            "{texts:?}"
        );
    }

    #[test]
    fn a_nul_in_the_hostname_is_refused() {
        let config = Config {
            root: Path::new("/srv/guest"),
            hostname: "a\0b",
            purpose: Purpose::Run,
        };
        assert!(build(&config).is_err());
    }
}
