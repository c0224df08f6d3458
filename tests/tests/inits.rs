//! Debian 12 guests with the other inits that vzctl and LXC users boot: sysvinit, OpenRC
//! (on sysvinit) and runit (scripts/make-rootfs debian-sysvinit, debian-openrc,
//! debian-runit), each with the default options (a user namespace, the bounding set, the
//! filter): boot, exec, reboot, halt by the guest's own halt.

use std::thread;
use std::time::{Duration, Instant};

use integration_tests::{Launcher, Sandbox, proc_status, secs};

/// What sets one init apart.
struct Init {
    /// The make-rootfs kind.
    kind: &'static str,
    /// PID 1's name in the guest (/proc/1/comm).
    comm: &'static str,
    /// A command in the guest whose output tells that the init has finished booting ...
    booted: &'static [&'static str],
    /// ... when this holds of it.
    says_booted: fn(&str) -> bool,
    /// What the guest prints on the console, in this order, as it reboots, and as it
    /// halts, by itself: its shutdown runs its course (services stopped, processes
    /// signalled, rc's last word) before the init calls reboot(2).
    rebooting: &'static [&'static str],
    halting: &'static [&'static str],
}

/// What Debian's initscripts print at shutdown under every init here: sendsigs, which runs
/// before umountfs, umountroot and the halt or reboot script.
const SENDSIGS: &str = "Asking all remaining processes to terminate";

/// What sysvinit's init prints as it leaves runlevel 2 (for 0 or 6).
const LEAVING: &str = "Sending processes configured via /etc/inittab the TERM signal";

const SYSVINIT: Init = Init {
    kind: "debian-sysvinit",
    comm: "init",
    booted: &["runlevel"],
    says_booted: |out| out.trim() == "N 2",
    rebooting: &[LEAVING, SENDSIGS, "Will now restart."],
    halting: &[LEAVING, SENDSIGS, "Will now halt."],
};

const OPENRC: Init = Init {
    kind: "debian-openrc",
    // OpenRC is the rc of sysvinit's init, which stays PID 1
    comm: "init",
    // the runlevel, and no service crashed (rc-status --crashed fails when none did)
    booted: &["sh", "-c", "rc-status --runlevel && ! rc-status --crashed"],
    says_booted: |out| out.trim() == "default",
    rebooting: &[LEAVING, SENDSIGS, "Will now restart."],
    halting: &[LEAVING, SENDSIGS, "Will now halt."],
};

const RUNIT: Init = Init {
    kind: "debian-runit",
    comm: "runit",
    booted: &["sh", "-c", "sv status /etc/service/*"],
    says_booted: |out| {
        let lines: Vec<&str> = out.lines().collect();
        lines.len() >= 2
            && lines.iter().all(|l| l.starts_with("run: "))
            && lines.iter().any(|l| l.contains("/getty-console:"))
    },
    rebooting: &[
        "enter stage: /etc/runit/3",
        "Waiting for services to stop...",
        SENDSIGS,
        "- runit: system reboot.",
    ],
    halting: &[
        "enter stage: /etc/runit/3",
        "Waiting for services to stop...",
        SENDSIGS,
        "- runit: power off...",
    ],
};

/// The console's login prompt: every image starts a getty on the console once the init's
/// boot is done (after runlevel 2's rc for sysvinit and OpenRC, from runsvdir once stage 2
/// has run the rc2.d scripts for runit).
fn prompt(sb: &Sandbox) -> String {
    format!("{} login: ", sb.name)
}

/// True when `text` has each of `lines`, one after the other.
fn in_order(text: &str, lines: &[&str]) -> bool {
    let mut rest = text;
    lines.iter().all(|line| match rest.find(line) {
        Some(at) => {
            rest = &rest[at + line.len()..];
            true
        }
        None => false,
    })
}

/// Waits until boot number `boot` has finished: the console shows the login prompt for the
/// `boot`th time, and the init itself says it is done.
fn wait_booted(sb: &Sandbox, launcher: &mut Launcher, init: &Init, boot: usize) {
    let prompt = prompt(sb);
    launcher.wait_for(&format!("boot {boot}'s login prompt"), secs(90), |l| {
        l.output().0.matches(&prompt).count() >= boot
    });
    let deadline = Instant::now() + secs(30);
    loop {
        let answer = sb.exec(init.booted);
        if answer.code() == Some(0) && (init.says_booted)(&answer.stdout) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} does not say it has booted: {answer:?}\n--- console\n{}",
            init.kind,
            launcher.output().0
        );
        thread::sleep(Duration::from_millis(200));
    }
}

fn boots_reboots_and_halts(init: &Init) {
    let sb = Sandbox::with_rootfs(init.kind, init.kind);
    let mut launcher = sb.start(&[]);
    sb.wait_running(&mut launcher, secs(30));
    wait_booted(&sb, &mut launcher, init, 1);
    // contained: the host sees the init as an unprivileged user; in the guest, a command
    // is root, and PID 1 is the guest's own init
    let uid = proc_status(sb.init_pid(), "Uid");
    assert!(
        !uid.starts_with("0\t"),
        "{} runs as host uid {uid}",
        init.kind
    );
    let id = sb.exec(&["id", "-u"]);
    assert_eq!((id.code(), id.stdout.trim()), (Some(0), "0"), "{id:?}");
    let pid1 = sb.exec(&["cat", "/proc/1/comm"]);
    assert_eq!(pid1.stdout.trim(), init.comm, "{pid1:?}");

    let reboot = sb.run_cradle(&["stop", &sb.name, "--mode", "reboot"], secs(90));
    assert_eq!(reboot.code(), Some(0), "{reboot:?}");
    launcher.wait_for("the second boot", secs(60), |_| sb.boot_number() == Some(2));
    wait_booted(&sb, &mut launcher, init, 2);
    // what the first boot printed after its prompt, up to the second boot's prompt
    let (console, _) = launcher.output();
    let first_shutdown = console.split(&prompt(&sb)).nth(1).unwrap_or_default();
    assert!(in_order(first_shutdown, init.rebooting), "{console}");

    // halted by its own shutdown within the timeout, not powered off by the fallback:
    // OpenRC's shutdown runs dozens of scripts, a second here and 40 s or more in the VM
    // lane's emulated machine when it shares the CPUs; the timeout leaves room for that
    let stop = sb.run_cradle(&["stop", &sb.name, "--timeout", "120"], secs(150));
    assert_eq!(stop.code(), Some(0), "{stop:?}");
    let done = launcher.wait(secs(20));
    assert_eq!(done.code(), Some(0), "{done:?}");
    // halted by the init itself, not powered off by the fallback
    assert!(!stop.stderr.contains("powering"), "{stop:?}");
    assert!(!done.stderr.contains("powering"), "{done:?}");
    let last_shutdown = done.stdout.rsplit(&prompt(&sb)).next().unwrap_or_default();
    assert!(in_order(last_shutdown, init.halting), "{done:?}");
    sb.assert_clean();
}

#[test]
fn debian_with_sysvinit_boots_reboots_and_halts() {
    boots_reboots_and_halts(&SYSVINIT);
}

#[test]
fn debian_with_openrc_boots_reboots_and_halts() {
    boots_reboots_and_halts(&OPENRC);
}

#[test]
fn debian_with_runit_boots_reboots_and_halts() {
    boots_reboots_and_halts(&RUNIT);
}
