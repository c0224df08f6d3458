//! Containment: a guest's root is not the host's root. Each test runs what a hostile root
//! would try (tests/src/bin/escape/main.rs) inside a guest booted with the default options and
//! checks it is refused, or checks what the host sees of the guest.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use integration_tests::{Finished, Mounted, Sandbox, proc_status, secs, status_field};

/// Capabilities by number (linux/capability.h).
const CHOWN: u32 = 0;
const SETUID: u32 = 7;
const NET_ADMIN: u32 = 12;
const SYS_MODULE: u32 = 16;
const SYS_RAWIO: u32 = 17;
const SYS_ADMIN: u32 = 21;
const SYS_BOOT: u32 = 22;
const SYS_TIME: u32 = 25;
const MAC_OVERRIDE: u32 = 32;
const MAC_ADMIN: u32 = 33;
const SYSLOG: u32 = 34;
const WAKE_ALARM: u32 = 35;
const BLOCK_SUSPEND: u32 = 36;
const PERFMON: u32 = 38;
const BPF: u32 = 39;

fn has_cap(mask_hex: &str, cap: u32) -> bool {
    u64::from_str_radix(mask_hex, 16).unwrap() & (1 << cap) != 0
}

/// The default bounding set: what an init needs, not what reaches the host's kernel.
fn assert_default_bounding_set(mask: &str) {
    for cap in [CHOWN, SETUID, NET_ADMIN, SYS_ADMIN, SYS_BOOT] {
        assert!(has_cap(mask, cap), "capability {cap} kept: {mask}");
    }
    for cap in [
        SYS_MODULE,
        SYS_RAWIO,
        SYS_TIME,
        MAC_OVERRIDE,
        MAC_ADMIN,
        SYSLOG,
        WAKE_ALARM,
        BLOCK_SUSPEND,
        PERFMON,
        BPF,
    ] {
        assert!(!has_cap(mask, cap), "capability {cap} dropped: {mask}");
    }
}

/// Runs the escape probe's attempts in the guest and asserts that every one named in
/// `refused` was refused (and that the probe tried them).
fn assert_refused(done: &Finished, refused: &[&str]) {
    assert_eq!(done.code(), Some(0), "{done:?}");
    for name in refused {
        let line = done
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no attempt {name}: {done:?}"));
        assert!(line.contains(" refused "), "{line}\n{done:?}");
    }
}

/// Every attempt of the probe: with a user namespace, all of them are refused.
const ALL_ATTEMPTS: &[&str] = &[
    "mknod-kmsg",
    "mknod-block",
    "remount-sys-rw",
    "remount-root",
    "write-sys-kernel",
    "host-sysctl",
    "kallsyms",
    "chroot-dotdot",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "open_by_handle_at",
    "bpf",
    "swapon",
    "swapoff",
    "perf_event_open",
    "iopl",
    "ioperm",
    "syslog",
    "keyctl",
    "adjtimex",
    "acct",
];

fn start_busybox(sb: &Sandbox, extra: &[&str]) -> integration_tests::Launcher {
    sb.install_escape();
    let mut launcher = sb.start(extra);
    launcher.wait_console("is up", secs(30));
    launcher
}

fn stop(sb: &Sandbox, launcher: integration_tests::Launcher) {
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "20"], secs(40));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    sb.assert_clean();
}

#[test]
fn a_busybox_guest_s_root_cannot_reach_the_host() {
    let sb = Sandbox::busybox("contain-busybox");
    let launcher = start_busybox(&sb, &[]);
    // the host sees the guest init as an unprivileged user, bounded and filtered
    let init = sb.init_pid();
    let uid = proc_status(init, "Uid");
    let host_uid: u64 = uid.split_whitespace().next().unwrap().parse().unwrap();
    assert!(host_uid >= 65536, "guest init runs as host uid {uid}");
    assert_default_bounding_set(&proc_status(init, "CapBnd"));
    assert_eq!(proc_status(init, "Seccomp"), "2");
    assert_eq!(proc_status(init, "NoNewPrivs"), "0");
    // in the guest it is root, and so is what exec starts, with the same limits
    let status = sb.exec(&["cat", "/proc/self/status"]);
    assert_eq!(
        status_field(&status.stdout, "Uid"),
        "0\t0\t0\t0",
        "{status:?}"
    );
    assert_eq!(
        status_field(&status.stdout, "CapBnd"),
        proc_status(init, "CapBnd")
    );
    assert_eq!(status_field(&status.stdout, "Seccomp"), "2");
    let map = sb.exec(&["cat", "/proc/self/uid_map"]);
    let fields: Vec<&str> = map.stdout.split_whitespace().collect();
    assert_eq!(fields, ["0", &host_uid.to_string(), "65536"], "{map:?}");
    let attempts = sb.exec(&["/escape", "attempts"]);
    assert_refused(&attempts, ALL_ATTEMPTS);
    // /dev/shm is sized (nspawn's 10 % and 400k inodes), not half of the host's memory
    let shm = sb.exec(&["grep", " /dev/shm ", "/proc/mounts"]);
    assert!(
        shm.stdout.contains(",size=") && shm.stdout.contains(",nr_inodes=409600"),
        "{shm:?}"
    );
    stop(&sb, launcher);
}

#[test]
fn set_user_id_programs_still_work_in_the_guest() {
    let sb = Sandbox::busybox("contain-setuid");
    fs::write(
        sb.path("/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .unwrap();
    fs::copy(integration_tests::escape(), sb.path("/suid-escape")).unwrap();
    fs::set_permissions(sb.path("/suid-escape"), fs::Permissions::from_mode(0o4755)).unwrap();
    let launcher = start_busybox(&sb, &[]);
    let id = sb.exec(&["su", "nobody", "-c", "id -u"]);
    assert_eq!(id.stdout.trim(), "65534", "{id:?}");
    let euid = sb.exec(&["su", "nobody", "-c", "/suid-escape euid"]);
    assert_eq!(
        euid.stdout.trim(),
        "0",
        "a set-user-ID root program: {euid:?}"
    );
    stop(&sb, launcher);
}

#[test]
fn nothing_of_the_host_shows_in_the_guest_while_exec_runs() {
    let sb = Sandbox::busybox("contain-no-host");
    let launcher = start_busybox(&sb, &[]);
    let mut sleeping = integration_tests::Launcher::spawn(sb.cradle([
        "exec",
        sb.name.as_str(),
        "--",
        "sleep",
        "30",
    ]));
    sleeping.wait_for("the sleeping command", secs(10), |_| {
        sb.exec(&["pidof", "sleep"]).code() == Some(0)
    });
    let scan = sb.exec(&["/escape", "scan"]);
    assert_eq!(scan.code(), Some(0), "{scan:?}");
    assert_eq!(
        scan.stdout, "",
        "host binaries or descriptors in the guest: {scan:?}"
    );
    // the command has its three streams and nothing else, and a session of its own
    let fds = sb.exec(&[
        "sh",
        "-c",
        "ls /proc/$(pidof sleep)/fd | sort | tr '\\n' ' '",
    ]);
    assert_eq!(fds.stdout.trim(), "0 1 2", "{fds:?}");
    let session = sb.exec(&[
        "sh",
        "-c",
        "p=$(pidof sleep); cut -d' ' -f6 /proc/$p/stat; echo $p",
    ]);
    let words: Vec<&str> = session.stdout.split_whitespace().collect();
    assert_eq!(
        words[0], words[1],
        "sleep leads its own session: {session:?}"
    );
    drop(sleeping);
    stop(&sb, launcher);
}

#[test]
fn a_file_system_that_cannot_be_id_mapped_is_a_one_line_error() {
    let sb = Sandbox::new("contain-ramfs");
    let mounted = Mounted::new("ramfs", &sb.root);
    // asked to map: auto would shift its owners instead (see ownership.rs)
    let done = sb.run_cradle(
        &[
            "start",
            &sb.name,
            "--root",
            sb.root.to_str().unwrap(),
            "--ownership",
            "map",
        ],
        secs(20),
    );
    drop(mounted);
    done.assert_one_line_error(5, "ramfs");
    assert!(done.stderr.contains("--userns off"), "{done:?}");
    assert!(done.stderr.contains("--ownership chown"), "{done:?}");
    sb.assert_clean();
}

#[test]
fn a_range_held_by_a_running_guest_is_refused_to_another() {
    let a = Sandbox::busybox("contain-range-a");
    let b = Sandbox::busybox("contain-range-b");
    let launcher = start_busybox(&a, &["--userns", "1048576"]);
    assert!(proc_status(a.init_pid(), "Uid").starts_with("1048576"));
    let refused = b.run_cradle(
        &[
            "start",
            &b.name,
            "--root",
            b.root.to_str().unwrap(),
            "--userns",
            "1048576",
        ],
        secs(20),
    );
    refused.assert_one_line_error(11, "1048576");
    b.assert_clean();
    let bad = b.run_cradle(
        &[
            "start",
            &b.name,
            "--root",
            b.root.to_str().unwrap(),
            "--userns",
            "1000",
        ],
        secs(20),
    );
    assert_eq!(bad.code(), Some(2), "{bad:?}");
    assert!(bad.stderr.contains("multiple of 65536"), "{bad:?}");
    stop(&a, launcher);
}

/// Takes an OFD write lock on the whole of `file`, as systemd's `make_lock_file` does;
/// false when another holds it.
fn ofd_lock(file: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed flock is a valid value; the fields that matter are set below.
    #[allow(unsafe_code)]
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl F_OFD_SETLK reads the flock we own.
    #[allow(unsafe_code)]
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    ret == 0
}

#[test]
fn cradle_and_systemd_nspawn_never_share_a_range() {
    integration_tests::require_shape!("/run/systemd (systemd-nspawn's lock directory)", |_| {
        std::path::Path::new("/run/systemd").is_dir()
    });
    const BASE: &str = "1114112";
    let sb = Sandbox::busybox("contain-nspawn-range");
    let dir = std::path::Path::new("/run/systemd/nspawn-uid");
    let _ = fs::create_dir(dir);
    let path = dir.join(BASE);
    let open = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap()
    };
    // a range nspawn holds: refused, naming it
    let nspawn = open();
    assert!(ofd_lock(&nspawn));
    let root = sb.root.to_str().unwrap();
    let refused = sb.run_cradle(
        &["run", "--root", root, "--userns", BASE, "--", "true"],
        secs(20),
    );
    refused.assert_one_line_error(11, "systemd-nspawn");
    // released as nspawn releases it (removed while still locked)
    fs::remove_file(&path).unwrap();
    drop(nspawn);
    // a range of ours: nspawn's lock is held for as long as the guest runs
    let launcher = start_busybox(&sb, &["--userns", BASE]);
    assert!(
        !ofd_lock(&open()),
        "cradle holds nspawn's lock of its range"
    );
    stop(&sb, launcher);
    assert!(!path.exists(), "{} is left", path.display());
}

#[test]
fn two_guests_get_two_ranges_and_a_guest_keeps_its_range_across_reboots() {
    let a = Sandbox::busybox("contain-two-a");
    let b = Sandbox::busybox("contain-two-b");
    let mut first = start_busybox(&a, &[]);
    let second = start_busybox(&b, &[]);
    let uid = |sb: &Sandbox| -> u64 {
        proc_status(sb.init_pid(), "Uid")
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (ua, ub) = (uid(&a), uid(&b));
    assert!(ua.abs_diff(ub) >= 65536, "ranges overlap: {ua} {ub}");
    let reboot = a.run_cradle(&["stop", &a.name, "--mode", "reboot"], secs(40));
    assert_eq!(reboot.code(), Some(0), "{reboot:?}");
    first.wait_for("the second boot", secs(30), |_| a.boot_number() == Some(2));
    assert_eq!(uid(&a), ua);
    stop(&a, first);
    stop(&b, second);
}

#[test]
fn without_a_user_namespace_the_guest_is_root_but_still_bounded_and_filtered() {
    let sb = Sandbox::busybox("contain-userns-off");
    let launcher = start_busybox(&sb, &["--userns", "off"]);
    let init = sb.init_pid();
    assert!(proc_status(init, "Uid").starts_with("0\t"));
    assert_default_bounding_set(&proc_status(init, "CapBnd"));
    assert_eq!(proc_status(init, "Seccomp"), "2");
    // the device policy and the filter hold; the mounts a root with CAP_SYS_ADMIN can
    // undo are not tried (the README says so)
    let attempts = sb.exec(&["/escape", "attempts"]);
    let held: Vec<&str> = ALL_ATTEMPTS
        .iter()
        .copied()
        .filter(|a| !["remount-sys-rw", "host-sysctl", "write-sys-kernel"].contains(a))
        .collect();
    assert_refused(&attempts, &held);
    stop(&sb, launcher);
}

/// `setpriv --inh-caps +sys_module,+sys_rawio CRADLE ARGS`: a launcher run with
/// inheritable capabilities its guests' bounding set does not have.
fn cradle_with_inherited_caps(sb: &Sandbox, args: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--inh-caps", "+sys_module,+sys_rawio", "--"])
        .arg(integration_tests::dist("cradle"))
        .arg("--state-dir")
        .arg(&sb.state)
        .args(args);
    command
}

/// [`cradle_with_inherited_caps`] to the end.
fn with_inherited_caps(sb: &Sandbox, args: &[&str]) -> Finished {
    integration_tests::run(cradle_with_inherited_caps(sb, args), secs(60))
}

#[test]
fn capabilities_the_launcher_inherited_do_not_reach_the_guest() {
    let sb = Sandbox::busybox("contain-inherited-caps");
    sb.install_escape();
    let root = sb.root.to_str().unwrap();
    for userns in ["off", "pick"] {
        let run = with_inherited_caps(
            &sb,
            &[
                "run",
                "--root",
                root,
                "--userns",
                userns,
                "--",
                "cat",
                "/proc/self/status",
            ],
        );
        assert_eq!(run.code(), Some(0), "{run:?}");
        for field in ["CapEff", "CapPrm"] {
            let set = status_field(&run.stdout, field);
            for cap in [SYS_MODULE, SYS_RAWIO] {
                assert!(!has_cap(&set, cap), "run --userns {userns}: {field} {set}");
            }
        }
        assert_eq!(status_field(&run.stdout, "CapInh"), "0000000000000000");
    }
    let start =
        cradle_with_inherited_caps(&sb, &["start", &sb.name, "--root", root, "--userns", "off"]);
    let mut launcher = integration_tests::Launcher::spawn(start);
    launcher.wait_console("is up", secs(30));
    let init = sb.init_pid();
    let exec = with_inherited_caps(&sb, &["exec", &sb.name, "--", "cat", "/proc/self/status"]);
    assert_eq!(exec.code(), Some(0), "{exec:?}");
    for (what, set) in [
        ("init", proc_status(init, "CapEff")),
        ("exec", status_field(&exec.stdout, "CapEff")),
    ] {
        for cap in [SYS_MODULE, SYS_RAWIO] {
            assert!(!has_cap(&set, cap), "{what}: CapEff {set}");
        }
    }
    stop(&sb, launcher);
}

#[test]
fn a_root_that_other_host_users_could_reach_is_refused() {
    let sb = Sandbox::busybox("contain-reachable");
    let root = sb.root.to_str().unwrap();
    // the guest's root makes a set-user-ID copy of a program: stored as uid 0 on disk
    let launcher = start_busybox(&sb, &[]);
    let suid = sb.exec(&[
        "sh",
        "-c",
        "cp /escape /suid-escape && chmod 4755 /suid-escape",
    ]);
    assert_eq!(suid.code(), Some(0), "{suid:?}");
    stop(&sb, launcher);
    // (before Linux 5.12 no root can be id-mapped: its owners are shifted to the guest's
    // range, and the copy is the guest root's host id's, which is the danger then)
    let meta = fs::metadata(sb.path("/suid-escape")).unwrap();
    let owner = meta.uid();
    assert_eq!(meta.mode() & 0o7777, 0o4755);
    if integration_tests::kernel_has_idmapped_mounts() {
        assert_eq!(owner, 0, "stored as the host's root");
    } else {
        assert!(
            owner >= 65536,
            "stored as the guest root's host id: {owner}"
        );
    }
    // which an unprivileged host user cannot reach while a directory above is closed (a
    // shell of that user's, without setpriv's capabilities, runs it)
    let as_nobody = |path: &std::path::Path| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(["/bin/sh", "-c", r#"exec "$0" euid"#])
            .arg(path);
        integration_tests::run(command, secs(20))
    };
    let tried = as_nobody(&sb.path("/suid-escape"));
    assert_ne!(tried.code(), Some(0), "{tried:?}");
    assert!(tried.stdout.trim().is_empty(), "{tried:?}");
    // opened to others, the root is refused, and so is a system directory
    fs::set_permissions(&sb.dir, fs::Permissions::from_mode(0o755)).unwrap();
    let tried = as_nobody(&sb.path("/suid-escape"));
    assert_eq!(
        tried.stdout.trim(),
        owner.to_string(),
        "the danger is real: {tried:?}"
    );
    for command in [
        vec!["run", "--root", root, "--", "true"],
        vec!["start", &sb.name, "--root", root],
        vec!["create", &sb.name, "--root", root],
    ] {
        let done = sb.run_cradle(&command, secs(20));
        done.assert_one_line_error(5, "other users of the host can reach it");
    }
    fs::set_permissions(&sb.dir, fs::Permissions::from_mode(0o700)).unwrap();
    let done = sb.run_cradle(&["run", "--root", "/usr", "--", "true"], secs(20));
    done.assert_one_line_error(5, "a directory of the host's own system");
    sb.assert_clean();
}

#[test]
fn a_mount_point_swapped_for_a_symlink_before_a_reboot_is_refused() {
    let sb = Sandbox::busybox("contain-symlink");
    let mut launcher = start_busybox(&sb, &[]);
    // what a guest that got hold of its root directory could do before it reboots
    fs::rename(sb.path("/dev"), sb.path("/dev.old")).unwrap();
    std::os::unix::fs::symlink("/etc", sb.path("/dev")).unwrap();
    let reboot = sb.run_cradle(&["stop", &sb.name, "--mode", "reboot"], secs(40));
    assert_ne!(reboot.code(), Some(0), "{reboot:?}");
    launcher.wait_for("the launcher to give up", secs(20), |l| {
        l.output().1.contains("error")
    });
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(5), "{done:?}");
    assert!(
        done.stderr.contains("/dev in it is not a directory"),
        "{done:?}"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.lines().any(|l| l.split(' ').nth(4) == Some("/etc")),
        "a mount on /etc"
    );
    sb.assert_clean();
}

#[test]
fn run_mode_is_contained_the_same_way() {
    let sb = Sandbox::busybox("contain-run");
    sb.install_escape();
    assert_refused(&sb.run_in(&[], &["/escape", "attempts"]), ALL_ATTEMPTS);
    let status = sb.run_in(&[], &["cat", "/proc/self/status"]);
    assert_default_bounding_set(&status_field(&status.stdout, "CapBnd"));
    sb.assert_clean();
}

/// In run mode the shim is the command's PID 1, in its sight: even as the host's root
/// (`--userns off`), the command can change neither the shim it runs from nor the host's
/// file, through `/proc/1/exe` or `/proc/1/map_files` (runc's CVE-2019-5736). The shim is
/// a copy, in a directory of its own, as `--shim` takes it.
#[test]
fn the_command_cannot_write_the_shim_it_runs_under() {
    let sb = Sandbox::busybox("contain-shim-write");
    let dir = sb.dir.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let shim = dir.join("cradle-shim");
    std::fs::copy(integration_tests::dist("cradle-shim"), &shim).unwrap();
    let before = std::fs::read(&shim).unwrap();
    let attempt = "for f in /proc/1/exe /proc/1/map_files/*; do \
        if echo garbage >>\"$f\"; then echo \"wrote $f\"; fi; done; echo tried";
    for userns in ["off", "pick"] {
        let done = sb.run_in(
            &["--userns", userns, "--shim", shim.to_str().unwrap()],
            &["/bin/sh", "-c", attempt],
        );
        assert!(done.stdout.contains("tried"), "{done:?}");
        assert!(
            !done.stdout.contains("wrote"),
            "--userns {userns}: {done:?}"
        );
    }
    assert!(
        std::fs::read(&shim).unwrap() == before,
        "the shim was changed"
    );
    sb.assert_clean();
}

#[test]
fn the_bounding_set_and_the_filter_can_be_changed() {
    let sb = Sandbox::busybox("contain-options");
    let run = |options: &[&str]| sb.run_in(options, &["cat", "/proc/self/status"]);
    let changed = run(&[
        "--capability",
        "CAP_SYS_TIME",
        "--drop-capability",
        "net_admin,setuid",
    ]);
    let mask = status_field(&changed.stdout, "CapBnd");
    assert!(has_cap(&mask, SYS_TIME) && !has_cap(&mask, NET_ADMIN) && !has_cap(&mask, SETUID));
    assert!(!has_cap(&mask, SYS_MODULE), "{mask}");
    let all = run(&["--capability", "all", "--drop-capability", "sys_module"]);
    let mask = status_field(&all.stdout, "CapBnd");
    assert!(
        has_cap(&mask, SYS_RAWIO) && !has_cap(&mask, SYS_MODULE),
        "{mask}"
    );
    let off = run(&["--seccomp", "off"]);
    assert_eq!(status_field(&off.stdout, "Seccomp"), "0", "{off:?}");
    run(&["--capability", "cap_frobnicate"]).assert_one_line_error(2, "cap_frobnicate");
    let bad = run(&["--seccomp", "maybe"]);
    assert_eq!(bad.code(), Some(2), "{bad:?}");
    assert!(bad.stderr.contains("use on or off"), "{bad:?}");
    sb.assert_clean();
}

#[test]
fn the_probe_sees_what_an_uncontained_root_can_do() {
    // the negative control of the tests above: as the host's root, with no user
    // namespace, filter or bounding set, the same attempts get past their permission
    // checks (those that would change the host when allowed are left out); the device
    // policy is not optional, and still holds
    let sb = Sandbox::busybox("contain-control");
    sb.install_escape();
    let options = ["--userns", "off", "--seccomp", "off", "--capability", "all"];
    let mut names = vec![
        "mknod-kmsg",
        "remount-sys-rw",
        "init_module",
        "finit_module",
        "open_by_handle_at",
        "bpf",
        "swapon",
        "swapoff",
        "perf_event_open",
        "syslog",
        "keyctl",
        "kexec_load",
    ];
    // a host whose kernel hides its addresses from its own root (kptr_restrict=2) hides
    // them from an uncontained guest too: there it says nothing about the probe
    if fs::read_to_string("/proc/kallsyms")
        .unwrap()
        .starts_with("0000000000000000")
    {
        println!("this host hides kernel addresses from its root: kallsyms is left out");
    } else {
        names.push("kallsyms");
    }
    let mut command = vec!["/escape", "attempts"];
    command.extend(&names);
    let attempts = sb.run_in(&options, &command);
    assert_eq!(attempts.code(), Some(0), "{attempts:?}");
    for line in attempts.stdout.lines() {
        let name = line.split_whitespace().next().unwrap();
        let refused = line.contains(" refused ");
        assert_eq!(refused, name == "mknod-kmsg", "{line}\n{attempts:?}");
    }
    assert_eq!(attempts.stdout.lines().count(), names.len(), "{attempts:?}");
    sb.assert_clean();
}

#[test]
fn a_root_on_tmpfs_is_id_mapped_from_linux_6_3_and_refused_in_one_line_before() {
    // tmpfs learned id-mapped mounts in 6.3: Debian 12's 6.1 refuses them, this host's
    // kernel may not; each side of the line is checked where it is
    let sb = Sandbox::new("contain-tmpfs");
    let mounted = Mounted::new("tmpfs", &sb.root);
    let source = Sandbox::busybox("contain-tmpfs-src");
    let copy = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", source.root.display()))
        .arg(&sb.root)
        .status()
        .unwrap();
    assert!(copy.success());
    let done = sb.run_in(&["--ownership", "map"], &["id", "-u"]);
    let kernel = integration_tests::HostShape::current().kernel_version();
    if kernel >= (6, 3) {
        assert_eq!(done.code(), Some(0), "{done:?}");
        assert_eq!(done.stdout.trim(), "0", "{done:?}");
    } else {
        done.assert_one_line_error(5, "tmpfs");
        assert!(done.stderr.contains("--userns off"), "{done:?}");
    }
    drop(mounted);
    sb.assert_clean();
}
