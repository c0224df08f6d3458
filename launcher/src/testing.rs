//! Helpers for the launcher's unit tests that need root or a process of their own.

use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::{pipe2, read, write};

use crate::sys;

/// Fails the test, loudly, when it does not run as root: a run must never pass by
/// skipping what it could not check.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (seccomp without no_new_privs, the bounding set); run the unit tests as root"
    );
}

/// Runs `f` in a forked child and returns what it returned. Whatever `f` does to its
/// process (a seccomp filter, a smaller bounding set) stays in the child. The child only
/// runs `f`, writes eight bytes and exits; a panic there ends the child, never returns
/// into the test harness.
pub fn in_child(f: impl FnOnce() -> i64) -> i64 {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let (_, pidfd) = sys::fork_helper(&sys::SingleThreaded::for_tests(), || {
        let value = catch_unwind(AssertUnwindSafe(f)).unwrap_or(i64::MIN);
        match write(&write_end, &value.to_ne_bytes()) {
            Ok(8) => 0,
            _ => 1,
        }
    })
    .expect("fork");
    drop(write_end);
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match read(&read_end, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => panic!("read from the child: {e}"),
        }
    }
    let status = waitid(Id::PIDFd(pidfd.as_fd()), WaitPidFlag::WEXITED).expect("waitid");
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)) && got == 8,
        "the child ended with {status:?} after {got} bytes"
    );
    let value = i64::from_ne_bytes(buf);
    assert_ne!(value, i64::MIN, "the child panicked");
    value
}
