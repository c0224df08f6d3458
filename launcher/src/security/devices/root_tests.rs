//! Root tests: they run by default (these machines and CI are root) and fail, never skip,
//! without root. Each makes its cgroups directly below the root of the v2 hierarchy and
//! removes them.

use super::*;

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{OFlag, open};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{geteuid, pipe2, read, write};

fn require_root() {
    assert!(
        geteuid().is_root(),
        "the device policy tests load BPF programs and make cgroups: run them as root"
    );
}

/// A cgroup of the v2 hierarchy made for one test, removed when dropped (drop the
/// ones below it first).
struct Scratch {
    path: PathBuf,
    dir: OwnedFd,
}

impl Scratch {
    fn below(parent: &Path, what: &str) -> Scratch {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("cradle-test.{what}.{}.{n}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let dir = open(
            &path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        Scratch { path, dir }
    }

    fn at_root(what: &str) -> Scratch {
        let root = crate::cgroups::v2_root()
            .expect("a cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified");
        Scratch::below(&root, what)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.path) {
            let text = format!("remove cgroup {}: {e}", self.path.display());
            if std::thread::panicking() {
                eprintln!("{text}");
            } else {
                panic!("{text}");
            }
        }
    }
}

/// One thing the child tries; its result is 0 or the errno.
enum Probe {
    Open(CString, OFlag),
    Mknod(CString, SFlag, u64, u64),
}

impl Probe {
    fn open(path: &str, flags: OFlag) -> Probe {
        Probe::Open(CString::new(path).unwrap(), flags)
    }

    fn mknod(dir: &Path, name: &str, kind: SFlag, major: u64, minor: u64) -> Probe {
        let path = CString::new(dir.join(name).into_os_string().into_encoded_bytes()).unwrap();
        Probe::Mknod(path, kind, major, minor)
    }

    /// In the forked child: system calls only, nothing allocated.
    fn try_it(&self) -> i32 {
        let result = match self {
            Probe::Open(path, flags) => {
                open(path.as_c_str(), *flags | OFlag::O_CLOEXEC, Mode::empty()).map(drop)
            }
            Probe::Mknod(path, kind, major, minor) => mknod(
                path.as_c_str(),
                *kind,
                Mode::from_bits_truncate(0o600),
                makedev(*major, *minor),
            ),
        };
        result.err().map_or(0, |errno| errno as i32)
    }
}

const MAX_PROBES: usize = 32;

/// Runs `probes` in a child born in the cgroup `cgroup` (clone3 CLONE_INTO_CGROUP, as
/// the launcher starts a container) and returns what each one got.
fn probe_in(cgroup: &Scratch, probes: &[Probe]) -> Vec<Option<Errno>> {
    assert!(probes.len() <= MAX_PROBES);
    let (reader, writer) = pipe2(OFlag::O_CLOEXEC).unwrap();
    let (pid, _pidfd) = sys::fork_into(
        &sys::SingleThreaded::for_tests(),
        CloneFlags::empty(),
        Some(cgroup.dir.as_fd()),
        |_| {
            let mut results = [0u8; 4 * MAX_PROBES];
            for (probe, slot) in probes.iter().zip(results.chunks_exact_mut(4)) {
                slot.copy_from_slice(&probe.try_it().to_ne_bytes());
            }
            let status = match write(&writer, &results[..4 * probes.len()]) {
                Ok(n) if n == 4 * probes.len() => 0,
                _ => 1,
            };
            sys::exit_now(status)
        },
    )
    .unwrap();
    drop(writer);
    let mut bytes = [0u8; 4 * MAX_PROBES];
    let mut got = 0;
    loop {
        match read(&reader, &mut bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => panic!("read the probes' results: {e}"),
        }
    }
    assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0));
    assert_eq!(got, 4 * probes.len());
    bytes[..got]
        .chunks_exact(4)
        .map(|b| match i32::from_ne_bytes(b.try_into().unwrap()) {
            0 => None,
            errno => Some(Errno::from_raw(errno)),
        })
        .collect()
}

/// A block device node of the host, to try to open.
fn host_block_device() -> String {
    let mut names: Vec<String> = fs::read_dir("/sys/class/block")
        .expect("/sys/class/block")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| format!("/dev/{name}"))
        .find(|node| fs::metadata(node).is_ok_and(|m| m.file_type().is_block_device()))
        .expect("a block device node in /dev to probe")
}

/// A fresh directory for device nodes (mknod is checked by the device cgroup before
/// the file system is asked, whatever it is).
struct NodeDir(PathBuf);

impl NodeDir {
    fn new() -> NodeDir {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("cradle-test-devices.{}.{n}", std::process::id()));
        fs::create_dir(&path).unwrap();
        NodeDir(path)
    }
}

impl Drop for NodeDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The probes of a device the policy must refuse, each with its name.
fn forbidden_probes(nodes: &Path, block: &str) -> Vec<(&'static str, Probe)> {
    vec![
        ("open /dev/kmsg", Probe::open("/dev/kmsg", OFlag::O_RDONLY)),
        ("open a block device", Probe::open(block, OFlag::O_RDONLY)),
        (
            "mknod c 1 11 (kmsg)",
            Probe::mknod(nodes, "kmsg", SFlag::S_IFCHR, 1, 11),
        ),
        (
            "mknod b 7 0 (loop0)",
            Probe::mknod(nodes, "loop0", SFlag::S_IFBLK, 7, 0),
        ),
        (
            "mknod c 4 1 (tty1)",
            Probe::mknod(nodes, "tty1", SFlag::S_IFCHR, 4, 1),
        ),
        (
            "mknod b 1 3 (a block null)",
            Probe::mknod(nodes, "bnull", SFlag::S_IFBLK, 1, 3),
        ),
    ]
}

#[test]
fn the_policy_is_enforced_in_the_container_s_v2_cgroup() {
    require_root();
    let block = host_block_device();
    let contained = Scratch::at_root("devices");
    Policy::for_guest()
        .unwrap()
        .attach(contained.dir.as_fd())
        .unwrap();
    // a sibling without the policy: the same probes succeed there, so what fails in
    // the contained one fails because of the policy
    let control = Scratch::at_root("devices-control");

    let nodes = NodeDir::new();
    let mut allowed = vec![
        ("open /dev/null", Probe::open("/dev/null", OFlag::O_RDWR)),
        (
            "open /dev/urandom",
            Probe::open("/dev/urandom", OFlag::O_RDONLY),
        ),
        ("open /dev/zero", Probe::open("/dev/zero", OFlag::O_RDONLY)),
        ("open /dev/full", Probe::open("/dev/full", OFlag::O_WRONLY)),
        (
            "mknod c 1 3 (null)",
            Probe::mknod(&nodes.0, "null", SFlag::S_IFCHR, 1, 3),
        ),
        (
            "mknod c 5 1 (console)",
            Probe::mknod(&nodes.0, "console", SFlag::S_IFCHR, 5, 1),
        ),
        (
            "mknod c 136 7 (pts/7)",
            Probe::mknod(&nodes.0, "pts7", SFlag::S_IFCHR, 136, 7),
        ),
        (
            "mknod c 143 0 (a pty slave)",
            Probe::mknod(&nodes.0, "pts", SFlag::S_IFCHR, 143, 0),
        ),
    ];
    for node in ["/dev/fuse", "/dev/net/tun"] {
        if Path::new(node).exists() {
            allowed.push((node, Probe::open(node, OFlag::O_RDWR)));
        }
    }
    let forbidden = forbidden_probes(&nodes.0, &block);
    let expected: Vec<Option<Errno>> = (allowed.iter().map(|_| None))
        .chain(forbidden.iter().map(|_| Some(Errno::EPERM)))
        .collect();
    let names: Vec<&str> = allowed
        .iter()
        .chain(&forbidden)
        .map(|(name, _)| *name)
        .collect();
    let probes: Vec<Probe> = allowed
        .into_iter()
        .chain(forbidden)
        .map(|(_, probe)| probe)
        .collect();
    let got = probe_in(&contained, &probes);
    for ((name, got), expected) in names.iter().zip(&got).zip(&expected) {
        assert_eq!(got, expected, "contained: {name} (block device {block})");
    }

    let control_nodes = NodeDir::new();
    let control_probes: Vec<Probe> = forbidden_probes(&control_nodes.0, &block)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let got = probe_in(&control, &control_probes);
    for ((name, _), got) in forbidden_probes(&control_nodes.0, &block).iter().zip(&got) {
        assert_eq!(
            *got, None,
            "control (no policy): {name} (block device {block})"
        );
    }
}

#[test]
fn a_program_attached_below_cannot_widen_the_policy() {
    require_root();
    let everything = Rule {
        device_type: DeviceType::All,
        major: None,
        minor: None,
        access: Access::ALL,
    };
    let contained = Scratch::at_root("devices-nested");
    Policy::for_guest()
        .unwrap()
        .attach(contained.dir.as_fd())
        .unwrap();
    // what a guest's systemd does (BPF_F_ALLOW_MULTI), and a program that asks to
    // override (no flags)
    let multi = Scratch::below(&contained.path, "multi");
    Policy::load(&[everything])
        .unwrap()
        .attach(multi.dir.as_fd())
        .unwrap();
    let single = Scratch::below(&contained.path, "single");
    let prog = load(&program(&[everything])).unwrap();
    sys::bpf_attach_cgroup_device(single.dir.as_fd(), prog.as_fd(), 0).unwrap();
    drop(prog);

    let nodes = NodeDir::new();
    for below in [&multi, &single] {
        let probes = [
            Probe::open("/dev/null", OFlag::O_RDWR),
            Probe::open("/dev/kmsg", OFlag::O_RDONLY),
            Probe::mknod(&nodes.0, "loop0", SFlag::S_IFBLK, 7, 0),
        ];
        let got = probe_in(below, &probes);
        assert_eq!(
            got,
            [None, Some(Errno::EPERM), Some(Errno::EPERM)],
            "{}",
            below.path.display()
        );
    }
}

#[test]
fn a_program_the_verifier_refuses_is_quoted_in_the_error() {
    require_root();
    // R0 is never set
    let text = load(&[Insn::exit()]).unwrap_err().to_string();
    assert!(
        text.starts_with(
            "load the device policy program (1 instructions): Permission denied; verifier: "
        ),
        "{text}"
    );
    assert!(text.contains("R0 !read_ok"), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn attaching_to_something_else_than_a_cgroup_names_it() {
    require_root();
    let dir = open(
        "/tmp",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let text = Policy::for_guest()
        .unwrap()
        .attach(dir.as_fd())
        .unwrap_err()
        .to_string();
    assert!(
        text.starts_with("attach the device policy to cgroup /tmp: "),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
}
