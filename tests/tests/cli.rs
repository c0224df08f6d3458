//! The binaries themselves and the command line: static linking, size, usage errors and
//! bad roots, each a one-line error with its own exit code.

use std::fs;

use integration_tests::{Sandbox, dist, secs};

/// True when the ELF file (32- or 64-bit, little-endian) has a PT_INTERP program header
/// (it needs a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[5], 1, "little-endian ELF expected");
    let word = |at: usize, len: usize| {
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&elf[at..at + len]);
        u64::from_le_bytes(bytes) as usize
    };
    let (phoff, phentsize, phnum) = match elf[4] {
        1 => (word(0x1c, 4), word(0x2a, 2), word(0x2c, 2)),
        2 => (word(0x20, 8), word(0x36, 2), word(0x38, 2)),
        class => panic!("ELF class {class}"),
    };
    (0..phnum).any(|i| word(phoff + i * phentsize, 4) == 3) // PT_INTERP
}

/// Both binaries in `dir` are static and the shim is at most 64 KiB.
fn check_pair(dir: &std::path::Path) {
    for name in ["cradle", "cradle-shim"] {
        let path = dir.join(name);
        let elf = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            !has_interpreter(&elf),
            "{} needs a dynamic loader",
            path.display()
        );
    }
    let size = fs::metadata(dir.join("cradle-shim")).unwrap().len();
    assert!(
        size <= 64 * 1024,
        "{}/cradle-shim is {size} bytes",
        dir.display()
    );
}

#[test]
fn both_binaries_are_static_and_the_shim_is_tiny() {
    let dist = dist("cradle").parent().unwrap().to_owned();
    check_pair(&dist);
    // and every architecture scripts/build has built (dist/ARCH/), this machine's at least
    let built: Vec<_> = ["x86_64", "aarch64", "armv7"]
        .iter()
        .map(|arch| dist.join(arch))
        .filter(|dir| dir.join("cradle-shim").exists())
        .collect();
    assert!(
        built
            .iter()
            .any(|dir| dir.ends_with(std::env::consts::ARCH)),
        "dist/{} is missing: scripts/build makes it",
        std::env::consts::ARCH
    );
    for dir in built {
        check_pair(&dir);
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let sb = Sandbox::new("cli-usage");
    let cases: [&[&str]; 9] = [
        &[],
        &["start"],
        &["start", "x", "--root"],
        &["create", "x"],
        &["frobnicate"],
        &["stop", "x", "--mode", "explode"],
        &["start", "../escape", "--root", "/tmp"],
        &["start", "ok", "--root", "/tmp", "--env", "NOEQUALS"],
        &["run", "--root", "/tmp"],
    ];
    for args in cases {
        let done = sb.run_cradle(args, secs(10));
        assert_eq!(done.code(), Some(2), "{args:?}: {done:?}");
        assert!(!done.stderr.is_empty(), "{args:?}: no message");
    }
    let help = sb.run_cradle(&["--help"], secs(10));
    assert_eq!(help.code(), Some(0));
    assert!(help.stdout.contains("start"), "{help:?}");
}

#[test]
fn the_shim_s_own_failures_in_boot_mode_are_not_an_init_s_exit_code() {
    let shim = |args: &[&str]| {
        let mut command = std::process::Command::new(dist("cradle-shim"));
        command.args(args);
        integration_tests::run(command, secs(10))
    };
    // as a PID 1 for images: a usage error is 2, as tini's and dumb-init's are
    let usage = shim(&["--frobnicate", "true"]);
    assert_eq!(usage.code(), Some(2), "{usage:?}");
    // in boot mode the launcher would read 2 as "the guest init exited with 2"
    let boot = shim(&["--boot", "--frobnicate"]);
    assert_eq!(boot.code(), Some(245), "{boot:?}");
    assert!(boot.stderr.contains("--frobnicate"), "{boot:?}");
    let fd = shim(&["--boot", "--report-fd", "999"]);
    assert_eq!(fd.code(), Some(245), "{fd:?}");
}

#[test]
fn both_binaries_answer_help_and_version() {
    for name in ["cradle", "cradle-shim"] {
        for flag in ["--version", "--help"] {
            let done = integration_tests::run(
                {
                    let mut command = std::process::Command::new(dist(name));
                    command.arg(flag);
                    command
                },
                secs(10),
            );
            assert_eq!(done.code(), Some(0), "{name} {flag}: {done:?}");
            assert!(done.stderr.is_empty(), "{name} {flag}: {done:?}");
            let expected = if flag == "--version" {
                format!("{name} {}", env!("CARGO_PKG_VERSION"))
            } else {
                "usage".to_owned()
            };
            assert!(
                done.stdout.to_lowercase().contains(&expected),
                "{name} {flag}: {done:?}"
            );
        }
    }
}

#[test]
fn a_bad_root_exits_5_naming_it() {
    let sb = Sandbox::new("cli-bad-root");
    let file = sb.dir.join("a-file");
    fs::write(&file, "").unwrap();
    let missing = sb.dir.join("missing");
    for root in [&file, &missing] {
        for command in ["start", "run"] {
            let root = root.to_str().unwrap();
            let args: Vec<&str> = match command {
                "start" => vec!["start", sb.name.as_str(), "--root", root],
                _ => vec!["run", "--root", root, "--", "true"],
            };
            let done = sb.run_cradle(&args, secs(10));
            done.assert_one_line_error(5, root);
        }
    }
    sb.assert_clean();
}
