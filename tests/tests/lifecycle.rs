//! A guest's life around its launcher: names held while a container runs, leftovers of a
//! launcher that was killed.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration_tests::{Sandbox, cgroup_v2_root, kill, secs};

#[test]
fn run_holds_its_name_so_a_start_of_it_is_refused() {
    let sb = Sandbox::busybox("life-run-name");
    let mut running = integration_tests::Launcher::spawn(sb.run_command(&[], &["sleep", "3"]));
    let lock = sb.state.join(&sb.name).join("lock");
    running.wait_for("run to hold its name", secs(10), |_| lock.exists());
    let refused = sb.run_cradle(
        &["start", &sb.name, "--root", sb.root.to_str().unwrap()],
        secs(20),
    );
    refused.assert_one_line_error(3, &sb.name);
    let done = running.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    sb.assert_clean();
}

/// A copy of the descriptor process `pid` has open on `path`: the same open file, so an
/// open file description lock it holds stays held while the copy is open, whatever
/// becomes of the process.
fn copy_of_open_file(pid: i32, path: &Path) -> OwnedFd {
    let (fd, _) = integration_tests::open_files(pid)
        .into_iter()
        .find(|(_, to)| to == path)
        .unwrap_or_else(|| panic!("{pid} has no descriptor of {}", path.display()));
    // SAFETY: pidfd_open and pidfd_getfd take integers and return a new descriptor or -1.
    #[allow(unsafe_code)]
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(pidfd >= 0, "pidfd_open({pid})");
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        libc::close(pidfd);
        assert!(copy >= 0, "pidfd_getfd({pid}, {fd})");
        OwnedFd::from_raw_fd(copy)
    }
}

/// What a killed launcher left, held from the sweeps of other tests' starts and runs
/// (every start sweeps every leftover on the machine) by a copy of its name lock.
struct Left {
    cgroup: PathBuf,
    held: OwnedFd,
}

impl Left {
    /// Lets the next sweep have it.
    fn release(self) -> PathBuf {
        drop(self.held);
        self.cgroup
    }
}

/// Boots a busybox guest and SIGKILLs its launcher: no cleanup of its own; its container
/// dies with it (parent-death signal). Returns its cgroup, left for the sweep to find, with
/// the name lock held until [`Left::release`].
fn leave_behind(sb: &Sandbox) -> Left {
    let mut launcher = sb.start(&[]);
    launcher.wait_console("is up", secs(30));
    let cgroup = cgroup_v2_root().join(format!("cradle.{}", sb.name));
    assert!(cgroup.is_dir());
    let lock = sb.state.join(&sb.name).join("lock");
    let held = copy_of_open_file(launcher.pid(), &lock);
    kill(launcher.pid(), libc::SIGKILL);
    let _ = launcher.wait(secs(10));
    let events = cgroup.join("cgroup.events");
    let deadline = std::time::Instant::now() + secs(10);
    while fs::read_to_string(&events).is_ok_and(|e| e.contains("populated 1")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the container outlived its launcher"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cgroup.is_dir(),
        "the killed launcher's cgroup is left, for the sweep to find"
    );
    assert!(lock.exists());
    Left { cgroup, held }
}

#[test]
fn what_a_killed_launcher_leaves_is_swept_by_the_next_start() {
    // any start or run sweeps what killed launchers left, with their state directories:
    // here a run of another name, with a state directory of its own (each cgroup says
    // whose it is), which says nothing of it. (Every start sweeps: one leftover at a time.)
    let other = Sandbox::busybox("life-killed-other");
    let sweep = || {
        let done = other.run_in(&[], &["true"]);
        assert_eq!(done.code(), Some(0), "{done:?}");
        assert_eq!(done.stderr, "", "{done:?}");
        other.assert_clean();
    };

    // a file this cradle does not write (another version's) stays, with its directory
    let sb = Sandbox::busybox("life-killed");
    let left = leave_behind(&sb);
    let state = sb.state.join(&sb.name);
    let foreign = state.join("from-another-version");
    fs::write(&foreign, "").unwrap();
    let cgroup = left.release();
    sweep();
    assert!(!cgroup.exists(), "{} is left", cgroup.display());
    let left: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [foreign.file_name().unwrap()]);
    fs::remove_file(&foreign).unwrap();
    fs::remove_dir(&state).unwrap();
    sb.assert_clean();

    // a state directory removed by hand
    let gone = Sandbox::busybox("life-killed-gone");
    let left = leave_behind(&gone);
    fs::remove_dir_all(gone.state.join(&gone.name)).unwrap();
    let cgroup = left.release();
    sweep();
    assert!(!cgroup.exists(), "{} is left", cgroup.display());
    gone.assert_clean();

    // its base too: not made again only to be removed
    let based = Sandbox::busybox("life-killed-base");
    let left = leave_behind(&based);
    fs::remove_dir_all(&based.state).unwrap();
    let cgroup = left.release();
    sweep();
    assert!(!cgroup.exists(), "{} is left", cgroup.display());
    assert!(
        !based.state.exists(),
        "the sweep made {} again",
        based.state.display()
    );
    based.assert_clean();
}
