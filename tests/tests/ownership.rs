//! `--ownership`: a guest root whose owners are shifted into the guest's range (chown),
//! where the kernel or the file system cannot id-map it. This host's kernel (6.18) id-maps
//! tmpfs, so the chown tests ask for chown; `auto` is tested on ramfs, which no kernel
//! id-maps.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{Launcher, Mounted, Sandbox, busybox_template, kill, secs};

/// Ranges of the tests' own, one or two each, as they run at once (multiples of 65536 in
/// systemd's container range, far from those other tests use).
const fn range(n: u32) -> u32 {
    0x0123_0000 + n * 0x1_0000
}

/// An extended attribute of `path` itself, if it has one.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: path and name are NUL-terminated; buf is writable for buf.len() bytes.
    #[allow(unsafe_code)]
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// The shift record on the root: `trusted.cradle.shift`.
fn record(root: &Path) -> Option<String> {
    xattr(root, "trusted.cradle.shift").map(|v| String::from_utf8(v).unwrap())
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

fn sh(script: &str) {
    let done = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(done.status.success(), "{script}: {done:?}");
}

/// A busybox tree copied onto `fstype` mounted on the sandbox's root.
fn busybox_on(sb: &Sandbox, fstype: &str) -> Mounted {
    let mounted = Mounted::new(fstype, &sb.root);
    sh(&format!(
        "cp -a {}/. {}",
        busybox_template().display(),
        sb.root.display()
    ));
    mounted
}

/// Files of guest users, hard links, ACLs, a file capability and a set-user-ID file.
fn add_owned_files(sb: &Sandbox) {
    let data = sb.path("/data");
    fs::create_dir_all(data.join("dir")).unwrap();
    fs::write(data.join("a"), "linked").unwrap();
    fs::hard_link(data.join("a"), data.join("b")).unwrap();
    fs::hard_link(data.join("a"), data.join("dir/c")).unwrap();
    fs::write(data.join("acl"), "").unwrap();
    fs::copy(sb.path("/bin/busybox"), data.join("capbin")).unwrap();
    fs::copy(sb.path("/bin/busybox"), data.join("suid")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", data.join("link")).unwrap();
    let d = data.display();
    sh(&format!(
        "chown 1000:1000 {d}/a && chown -h 7:7 {d}/link && chown 1001:50 {d}/dir \
         && setfacl -m u:1001:rw,g:1002:r {d}/acl && setfacl -d -m u:1003:rwx {d}/dir \
         && setcap cap_net_bind_service=+ep {d}/capbin && chmod 4755 {d}/suid"
    ));
}

/// Checks that the files of [`add_owned_files`] are the range at `base`'s.
fn assert_shifted(sb: &Sandbox, base: u32) {
    let data = sb.path("/data");
    assert_eq!(owner(&sb.root), (base, base));
    assert_eq!(owner(&sb.path("/bin/busybox")), (base, base));
    assert_eq!(owner(&data.join("a")), (base + 1000, base + 1000));
    let ino = fs::metadata(data.join("a")).unwrap().ino();
    for link in ["b", "dir/c"] {
        let meta = fs::metadata(data.join(link)).unwrap();
        assert_eq!((meta.ino(), meta.uid()), (ino, base + 1000), "{link}");
    }
    assert_eq!(owner(&data.join("link")), (base + 7, base + 7), "lchown");
    assert_eq!(owner(&data.join("dir")), (base + 1001, base + 50));
    let acl = Command::new("getfacl")
        .args(["-n", "-p"])
        .arg(data.join("acl"))
        .arg(data.join("dir"))
        .output()
        .unwrap();
    let acl = String::from_utf8_lossy(&acl.stdout);
    for entry in [
        format!("user:{}:rw-", base + 1001),
        format!("group:{}:r--", base + 1002),
        format!("default:user:{}:rwx", base + 1003),
    ] {
        assert!(acl.contains(&entry), "{entry} in\n{acl}");
    }
    // revision 3, its root the guest's root, the set kept
    let caps = xattr(&data.join("capbin"), "security.capability").expect("capability kept");
    assert_eq!(caps.len(), 24, "{caps:?}");
    assert_eq!(caps[3], 3, "revision 3: {caps:?}");
    assert_eq!(u32::from_le_bytes(caps[20..24].try_into().unwrap()), base);
    assert_ne!(
        u32::from_le_bytes(caps[4..8].try_into().unwrap()) & (1 << 10),
        0
    );
    let suid = fs::metadata(data.join("suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755, "set-user-ID kept");
    assert_eq!(suid.uid(), base);
    assert_eq!(record(&sb.root).as_deref(), Some(base.to_string().as_str()));
}

#[test]
fn chown_shifts_a_tree_on_tmpfs_and_the_guest_owns_its_files() {
    const B: u32 = range(0);
    let sb = Sandbox::new("own-chown");
    let mounted = busybox_on(&sb, "tmpfs");
    add_owned_files(&sb);
    let b = B.to_string();
    let done = sb.run_in(
        &["--ownership", "chown", "--userns", &b],
        &[
            "sh",
            "-c",
            "id -u; stat -c '%u %g' /bin/busybox /data/a /data/dir; ls -l /data/suid; \
             stat -c %u /data/link; touch /data/new && stat -c %u /data/new; exit 3",
        ],
    );
    assert_eq!(done.code(), Some(3), "{done:?}");
    assert_eq!(
        done.stdout.split_whitespace().collect::<Vec<_>>()[..7],
        ["0", "0", "0", "1000", "1000", "1001", "50"],
        "{done:?}"
    );
    assert!(done.stdout.contains("-rwsr-xr-x"), "{done:?}");
    assert!(done.stdout.trim_end().ends_with("7\n0"), "{done:?}");
    assert!(done.raw_stderr.contains("shifted to host ids"), "{done:?}");
    assert_shifted(&sb, B);
    assert_eq!(owner(&sb.path("/data/new")), (B, B));
    drop(mounted);
    sb.assert_clean();
}

#[test]
fn a_second_start_does_not_walk_and_another_range_shifts_from_the_recorded_one() {
    const B: u32 = range(1);
    const C: u32 = range(2);
    let sb = Sandbox::new("own-again");
    let mounted = busybox_on(&sb, "tmpfs");
    add_owned_files(&sb);
    let (b, c) = (B.to_string(), C.to_string());
    let first = sb.run_in(&["--ownership", "chown", "--userns", &b], &["true"]);
    assert_eq!(first.code(), Some(0), "{first:?}");
    // between the starts, a file of an owner no guest could have made
    let foreign = sb.path("/data/a");
    sh(&format!("chown 4242:4242 {}", foreign.display()));
    let busybox_ctime = |sb: &Sandbox| {
        let meta = fs::metadata(sb.path("/bin/busybox")).unwrap();
        (meta.ctime(), meta.ctime_nsec())
    };
    let before = busybox_ctime(&sb);
    std::thread::sleep(Duration::from_millis(20));
    let second = sb.run_in(&["--ownership", "chown", "--userns", &b], &["true"]);
    assert_eq!(second.code(), Some(0), "{second:?}");
    assert!(
        !second.raw_stderr.contains("shifted"),
        "no walk: {second:?}"
    );
    assert_eq!(owner(&foreign), (4242, 4242), "not walked again");
    assert_eq!(busybox_ctime(&sb), before, "not touched");
    // another range: from the recorded one; the foreign owner becomes the guest's nobody
    let third = sb.run_in(
        &["--ownership", "chown", "--userns", &c],
        &["stat", "-c", "%u", "/data/a", "/data/dir"],
    );
    assert_eq!(third.code(), Some(0), "{third:?}");
    assert_eq!(third.stdout, "65534\n1001\n", "{third:?}");
    sh(&format!("chown {0}:{0} {1}", C + 1000, foreign.display()));
    assert_shifted(&sb, C);
    // map shifts it back to the ids the guest sees first (tmpfs is id-mapped from Linux
    // 6.3); so does a guest without a user namespace
    let kernel = integration_tests::HostShape::current().kernel_version();
    let back: &[&str] = if kernel >= (6, 3) {
        &["--ownership", "map"]
    } else {
        &["--userns", "off"]
    };
    let map = sb.run_in(back, &["stat", "-c", "%u", "/data/a"]);
    assert_eq!(map.stdout, "1000\n", "{map:?}");
    assert_eq!(owner(&foreign), (1000, 1000));
    assert_eq!(record(&sb.root), None);
    drop(mounted);
    sb.assert_clean();
}

#[test]
fn a_guest_boots_on_a_chowned_tmpfs_root_that_nobody_shifts_while_it_runs() {
    const B: u32 = range(3);
    const C: u32 = range(8);
    let sb = Sandbox::new("own-boot");
    let mounted = busybox_on(&sb, "tmpfs");
    let b = B.to_string();
    let guard = sb.start_detached(&["--ownership", "chown", "--userns", &b], secs(60));
    let id = sb.exec(&["sh", "-c", "id -u; stat -c %u /etc /run /proc/1"]);
    assert_eq!(id.stdout, "0\n0\n0\n0\n", "{id:?}");
    assert_eq!(owner(&sb.path("/etc")), (B, B));
    // while it runs (under its monitor), nobody shifts its tree under it: not a guest of
    // another range, nor one without a user namespace
    let c = C.to_string();
    for other in [
        vec!["--ownership", "chown", "--userns", c.as_str()],
        vec!["--userns", "off"],
    ] {
        let mut args = vec!["run", "--root", sb.root.to_str().unwrap()];
        args.extend(other);
        args.extend(["--", "true"]);
        let refused = sb.run_cradle(&args, secs(20));
        refused.assert_one_line_error(3, "is in use by another guest");
    }
    assert_eq!(owner(&sb.path("/etc")), (B, B), "its owners as they were");
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "20"], secs(40));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    drop(guard);
    // stopped, the tree is free again
    let again = sb.run_in(&["--ownership", "chown", "--userns", &c], &["true"]);
    assert_eq!(again.code(), Some(0), "{again:?}");
    assert_eq!(owner(&sb.path("/etc")), (C, C));
    drop(mounted);
    sb.assert_clean();
}

#[test]
fn auto_shifts_a_tree_that_cannot_be_id_mapped_saying_so_once() {
    let sb = Sandbox::new("own-auto");
    let mounted = busybox_on(&sb, "ramfs");
    let run = || sb.run_in(&[], &["sh", "-c", "id -u; stat -c %u /bin; exit 3"]);
    let first = run();
    assert_eq!(first.code(), Some(3), "{first:?}");
    assert_eq!(first.stdout, "0\n0\n", "{first:?}");
    let warnings: Vec<&str> = first
        .raw_stderr
        .lines()
        .filter(|l| l.contains("cannot be id-mapped"))
        .collect();
    assert_eq!(warnings.len(), 1, "{first:?}");
    assert!(warnings[0].contains("(ramfs)"), "{first:?}");
    let base = owner(&sb.root).0;
    assert!(base >= 0x80000 && base % 65536 == 0, "{base}");
    // no extended attributes on ramfs: the record is a file under /run
    let st = fs::metadata(&sb.root).unwrap();
    let file = Path::new("/run/cradle-shift").join(format!("{}:{}", st.dev(), st.ino()));
    assert_eq!(fs::read_to_string(&file).unwrap(), base.to_string());
    // `run` names itself run-PID each time: the tree's own range is taken again, no walk
    let second = run();
    assert_eq!(second.code(), Some(3), "{second:?}");
    assert_eq!(second.raw_stderr, "", "{second:?}");
    assert_eq!(owner(&sb.root).0, base);
    // without a user namespace: back to the ids the guest sees, record gone
    let off = sb.run_in(&["--userns", "off"], &["stat", "-c", "%u", "/bin"]);
    assert_eq!(off.stdout, "0\n", "{off:?}");
    assert!(!file.exists());
    drop(mounted);
    sb.assert_clean();
}

#[test]
fn a_tree_with_another_file_system_in_it_or_the_host_s_root_is_refused() {
    const B: u32 = range(4);
    let sb = Sandbox::busybox("own-mounts");
    let other = sb.dir.join("other");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("file"), "").unwrap();
    fs::create_dir_all(sb.path("/srv/other")).unwrap();
    let bound = Mounted::bind(&other, &sb.path("/srv/other"));
    let b = B.to_string();
    let done = sb.run_in(&["--ownership", "chown", "--userns", &b], &["true"]);
    done.assert_one_line_error(5, "srv/other is a mount point");
    drop(bound);
    // refused before anything changed
    assert_eq!(owner(&other.join("file")), (0, 0));
    assert_eq!(owner(&sb.path("/bin/busybox")), (0, 0));
    assert_eq!(record(&sb.root), None);
    let host = sb.run_cradle(
        &[
            "run",
            "--root",
            "/",
            "--ownership",
            "chown",
            "--userns",
            &b,
            "--",
            "true",
        ],
        secs(20),
    );
    host.assert_one_line_error(5, "bad root /");
    assert_eq!(owner(Path::new("/usr")), (0, 0));
    sb.assert_clean();
}

#[test]
fn a_shift_killed_midway_is_finished_by_the_next_start() {
    const B: u32 = range(5);
    let sb = Sandbox::new("own-killed");
    let mounted = busybox_on(&sb, "tmpfs");
    add_owned_files(&sb);
    // enough files that the walk takes a while
    let many = sb.path("/many");
    for d in 0..200 {
        let dir = many.join(d.to_string());
        fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            fs::write(dir.join(f.to_string()), "").unwrap();
        }
    }
    fs::set_permissions(sb.path("/data/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    let b = B.to_string();
    let launcher =
        Launcher::spawn(sb.run_command(&["--ownership", "chown", "--userns", &b], &["true"]));
    let shifting = format!("0>{B}");
    let deadline = Instant::now() + secs(20);
    // kill it once the root directory is shifted (the first file), the record says so
    while !(owner(&sb.root).0 == B && record(&sb.root).is_some_and(|r| r.starts_with(&shifting))) {
        assert!(
            Instant::now() < deadline && fs::metadata(format!("/proc/{}", launcher.pid())).is_ok(),
            "the shift did not begin: {:?}",
            launcher.output()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    kill(launcher.pid(), libc::SIGKILL);
    let killed = launcher.wait(secs(10));
    assert_eq!(killed.code(), None, "{killed:?}");
    let record_after = record(&sb.root).unwrap();
    assert!(
        record_after.starts_with(&shifting),
        "killed before the end: {record_after}"
    );
    let unshifted = fs::read_dir(many.join("199"))
        .unwrap()
        .chain(fs::read_dir(many.join("0")).unwrap())
        .filter(|e| e.as_ref().unwrap().metadata().unwrap().uid() == 0)
        .count();
    assert!(unshifted > 0, "the walk was not midway");
    // the next start finishes it: every file once, nothing twice (100 000 files: minutes
    // in the VM lanes, under TCG)
    let done = integration_tests::run(
        sb.run_command(&["--ownership", "chown", "--userns", &b], &["true"]),
        secs(600),
    );
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert_shifted(&sb, B);
    for d in [0, 99, 199] {
        for e in fs::read_dir(many.join(d.to_string())).unwrap() {
            assert_eq!(e.unwrap().metadata().unwrap().uid(), B);
        }
    }
    drop(mounted);
    sb.assert_clean();
}
