//! `cradle-oci`, the OCI runtime, driven as runc's callers drive it: bundles of a busybox
//! root and a config.json (runc's example, changed per test), `create`/`start`/`state`/
//! `kill`/`delete` and `run`, a console socket for a terminal. Each test has its own
//! `--root` and ids, and checks that what it made (state, cgroups) is gone after `delete`.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{Finished, Sandbox, dist, run, secs};
use serde_json::{Value, json};

/// A bundle in a sandbox: `root/` is busybox, `config.json` runc's example with
/// `change` applied; `--root` is the sandbox's state directory.
struct Bundle {
    sb: Sandbox,
    config: Value,
}

impl Bundle {
    fn new(test: &str, args: &[&str]) -> Self {
        Self::in_sandbox(Sandbox::busybox(test), args)
    }

    /// The same with the root `sb` has.
    fn in_sandbox(sb: Sandbox, args: &[&str]) -> Self {
        let spec = cradle(&sb, &["spec", "--bundle", sb.dir.to_str().unwrap()]);
        assert!(spec.status.success(), "{spec:?}");
        let text = fs::read_to_string(sb.dir.join("config.json")).unwrap();
        let mut config: Value = serde_json::from_str(&text).unwrap();
        config["root"]["path"] = json!("root");
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        Bundle { sb, config }
    }

    fn save(&self) {
        fs::write(
            self.sb.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    fn oci(&self, args: &[&str]) -> Finished {
        self.save();
        cradle(&self.sb, args)
    }

    /// `create`, its output (and the container's: it inherits them, as it inherits a
    /// caller's pipes or fifos) in files, read once `create` has exited.
    fn create(&self, id: &str, extra: &[&str]) -> Finished {
        self.save();
        let file = id.replace('/', "_");
        let out = self.sb.dir.join(format!("{file}.out"));
        let err = self.sb.dir.join(format!("{file}.err"));
        let mut command = Command::new(dist("cradle-oci"));
        command
            .arg("--root")
            .arg(self.state_dir())
            .args(["create", "--bundle", self.sb.dir.to_str().unwrap()])
            .args(extra)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap());
        let what = format!("{command:?}");
        let status = command.status().unwrap();
        Finished {
            what,
            status,
            stdout: fs::read_to_string(&out).unwrap(),
            stderr: fs::read_to_string(&err).unwrap(),
            raw_stderr: fs::read_to_string(&err).unwrap(),
        }
    }

    fn state(&self, id: &str) -> Value {
        let done = self.oci(&["state", id]);
        assert!(done.status.success(), "{done:?}");
        assert_eq!(done.stderr, "", "state prints nothing on stderr");
        serde_json::from_str(&done.stdout).unwrap()
    }

    fn run(&self, id: &str) -> Finished {
        let bundle = self.sb.dir.to_str().unwrap().to_owned();
        self.oci(&["run", "--bundle", &bundle, id])
    }

    fn state_dir(&self) -> PathBuf {
        self.sb.dir.join("oci-state")
    }
}

/// A test that fails midway leaves no container running: every one of its `--root` is
/// deleted by force.
impl Drop for Bundle {
    fn drop(&mut self) {
        for entry in fs::read_dir(self.state_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            let _ = cradle(&self.sb, &["delete", "--force", &id]);
        }
    }
}

fn cradle(sb: &Sandbox, args: &[&str]) -> Finished {
    let mut command = Command::new(dist("cradle-oci"));
    command
        .arg("--root")
        .arg(sb.dir.join("oci-state"))
        .args(args);
    run(command, secs(60))
}

/// The container's cgroup (its `cgroupsPath`, below the v2 root).
fn cgroup_of(id: &str) -> PathBuf {
    integration_tests::cgroup_v2_root()
        .join("cradle-oci")
        .join(id)
}

/// Be a child subreaper, as containerd's shim and conmon are: the container's first
/// process is re-parented to us when `create` exits, and we reap it.
fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer and changes only this process.
    #[allow(unsafe_code)]
    let ret = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(ret, 0);
}

/// Waits for process `pid` (our child by re-parenting) and returns its exit code.
fn reap(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid writes one int through the pointer.
    #[allow(unsafe_code)]
    let got = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(got, pid);
    assert!(libc::WIFEXITED(status), "status {status:#x}");
    libc::WEXITSTATUS(status)
}

#[test]
fn the_lifecycle_is_runcs_create_waits_start_runs_kill_reaches_delete_removes() {
    become_subreaper();
    let mut b = Bundle::new(
        "oci-lifecycle",
        &[
            "sh",
            "-c",
            "touch /tmp/started; trap 'exit 7' TERM; while :; do sleep 0.1; done",
        ],
    );
    b.config["root"]["readonly"] = json!(false);
    let pid_file = b.sb.dir.join("init.pid");
    let created = b.create("life", &["--pid-file", pid_file.to_str().unwrap()]);
    assert!(created.status.success(), "{created:?}");
    let state = b.state("life");
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], "life");
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(state["pid"], pid, "the pid file names the state's pid");
    // re-parented to us: no cradle process stays between the caller and the container
    let ppid = integration_tests::proc_status(pid, "PPid");
    assert_eq!(
        ppid,
        std::process::id().to_string(),
        "the caller is its parent"
    );
    assert!(
        !b.sb.path("/tmp/started").exists(),
        "process.args ran before start"
    );
    let started = b.oci(&["start", "life"]);
    assert!(started.status.success(), "{started:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.sb.path("/tmp/started").exists() {
        assert!(Instant::now() < deadline, "the process never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.state("life")["status"], "running");
    let again = b.oci(&["start", "life"]);
    again.assert_one_line_error(3, "not created");
    let paused = b.oci(&["pause", "life"]);
    assert!(paused.status.success(), "{paused:?}");
    assert_eq!(b.state("life")["status"], "paused");
    assert!(b.oci(&["resume", "life"]).status.success());
    assert_eq!(b.state("life")["status"], "running");
    let ps = b.oci(&["ps", "--format", "json", "life"]);
    let pids: Vec<i32> = serde_json::from_str(&ps.stdout).unwrap();
    assert!(pids.contains(&pid) && pids.len() >= 2, "{ps:?}");
    let refused = b.oci(&["delete", "life"]);
    refused.assert_one_line_error(3, "running");
    let killed = b.oci(&["kill", "life", "TERM"]);
    assert!(killed.status.success(), "{killed:?}");
    assert_eq!(reap(pid), 7, "the process's own status, through the shim");
    assert_eq!(b.state("life")["status"], "stopped");
    let cgroup = cgroup_of("life");
    assert!(cgroup.exists());
    let deleted = b.oci(&["delete", "life"]);
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(!b.state_dir().join("life").exists(), "state left behind");
    assert!(!cgroup.exists(), "cgroup left behind");
    b.oci(&["state", "life"])
        .assert_one_line_error(4, "does not exist");
    assert!(b.oci(&["delete", "--force", "life"]).status.success());
}

#[test]
fn run_passes_the_output_and_exit_status_and_leaves_nothing() {
    let b = Bundle::new("oci-run", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let done = b.run("r1");
    assert_eq!(done.code(), Some(3), "{done:?}");
    assert_eq!(done.stdout, "out\n");
    assert_eq!(done.stderr, "err\n");
    assert!(!b.state_dir().join("r1").exists());
    assert!(!cgroup_of("r1").exists());
    let list = b.oci(&["list", "--format", "json"]);
    assert_eq!(list.stdout.trim(), "[]", "{list:?}");
}

#[test]
fn the_specs_process_and_container_fields_are_honoured() {
    let mut b = Bundle::new(
        "oci-fields",
        &[
            "sh",
            "-c",
            "echo host=$(hostname); echo id=$(id -u):$(id -g):$(id -G); echo cwd=$(pwd); \
             echo env=$GREETING; echo nofile=$(ulimit -n); echo umask=$(umask); \
             echo oom=$(cat /proc/self/oom_score_adj); \
             grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; \
             echo fwd=$(cat /proc/sys/net/ipv4/ip_forward); \
             touch /rootfile 2>/dev/null && echo root=rw || echo root=ro; \
             echo data > /data/f && echo tmpfs=rw; \
             cat /host/marker; \
             touch /host/w 2>/dev/null && echo hostdir=rw || echo hostdir=ro; \
             touch /host/sub/w 2>/dev/null && echo hostsub=rw || echo hostsub=ro; \
             echo masked=$(wc -c < /proc/timer_list); \
             (echo 1 > /proc/sysrq-trigger) 2>/dev/null && echo sysrq=rw || echo sysrq=ro; \
             echo pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || echo v1)",
        ],
    );
    // rbind and ro: read-only, with what is mounted below it (writable for uid 1000
    // otherwise: 0777 and a tmpfs of mode 1777)
    let host_dir = b.sb.dir.join("shared");
    fs::create_dir_all(host_dir.join("sub")).unwrap();
    fs::write(host_dir.join("marker"), "marker=seen\n").unwrap();
    fs::set_permissions(&host_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let _sub = integration_tests::Mounted::new("tmpfs", &host_dir.join("sub"));
    fs::set_permissions(host_dir.join("sub"), fs::Permissions::from_mode(0o1777)).unwrap();
    let c = &mut b.config;
    c["hostname"] = json!("fields-host");
    c["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 63});
    c["process"]["cwd"] = json!("/tmp");
    c["process"]["env"] = json!(["PATH=/bin:/usr/bin", "GREETING=hello"]);
    c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 321}]);
    c["process"]["oomScoreAdj"] = json!(500);
    c["process"]["noNewPrivileges"] = json!(true);
    c["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": [], "permitted": [],
        "inheritable": [], "ambient": []
    });
    c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    c["linux"]["resources"]["pids"] = json!({"limit": 42});
    let mounts = c["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "size=1m", "mode=1777"]}),
    );
    mounts.push(json!({"destination": "/host", "type": "bind",
        "source": host_dir.to_str().unwrap(), "options": ["rbind", "ro"]}));
    let done = b.run("f1");
    assert_eq!(done.code(), Some(0), "{done:?}");
    let out = &done.stdout;
    for want in [
        "host=fields-host",
        "id=1000:1000:1000 10 20",
        "cwd=/tmp",
        "env=hello",
        "nofile=321",
        "umask=0077",
        "oom=500",
        "CapBnd:\t0000000000000021",
        "CapEff:\t0000000000000000",
        "NoNewPrivs:\t1",
        "fwd=1",
        "root=ro",
        "tmpfs=rw",
        "marker=seen",
        "hostdir=ro",
        "hostsub=ro",
        "masked=0",
        "sysrq=ro",
    ] {
        assert!(out.lines().any(|l| l == want), "{want:?} missing: {done:?}");
    }
    // the pids limit, where the v2 hierarchy has it (a hybrid host keeps it in v1)
    let pids = out.lines().find_map(|l| l.strip_prefix("pids=")).unwrap();
    assert!(pids == "42" || pids == "v1" || pids == "max", "{done:?}");
}

#[test]
fn the_device_cgroup_denies_devices_the_spec_does_not_allow() {
    let mut b = Bundle::new(
        "oci-devices",
        &[
            "sh",
            "-c",
            "mknod /tmp/disk b 7 0 && (head -c1 /tmp/disk >/dev/null 2>&1 && echo disk=open || echo disk=denied); \
             head -c1 /dev/zero | wc -c",
        ],
    );
    b.config["root"]["readonly"] = json!(false);
    // creating the node is allowed, using it is not
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "b", "major": 7, "minor": 0, "access": "m"}
    ]);
    b.config["process"]["capabilities"]["bounding"] = json!(["CAP_MKNOD", "CAP_DAC_OVERRIDE"]);
    b.config["process"]["capabilities"]["effective"] = json!(["CAP_MKNOD", "CAP_DAC_OVERRIDE"]);
    b.config["process"]["capabilities"]["permitted"] = json!(["CAP_MKNOD", "CAP_DAC_OVERRIDE"]);
    let done = b.run("d1");
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert!(done.stdout.contains("disk=denied"), "{done:?}");
    assert!(
        done.stdout.contains("\n1\n") || done.stdout.ends_with("1\n"),
        "{done:?}"
    );
}

#[test]
fn a_user_namespace_maps_the_containers_root() {
    let mut b = Bundle::new(
        "oci-userns",
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; cat /dev/hook-id",
        ],
    );
    let c = &mut b.config;
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    // a hook in the container runs as its root, in its user namespace (and its /dev)
    c["hooks"] = json!({"startContainer": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", "{ id -u; cat /proc/self/uid_map; } > /dev/hook-id"],
    }]});
    // a sysfs mount needs a network namespace the user namespace owns: runc's example has one
    let done = b.run("u1");
    assert_eq!(done.code(), Some(0), "{done:?}");
    let mut lines = done.stdout.lines();
    for who in ["the process", "the startContainer hook"] {
        assert_eq!(lines.next(), Some("0"), "{who}: {done:?}");
        let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(map, ["0", "200000", "65536"], "{who}");
    }
}

#[test]
fn a_terminal_goes_to_the_console_socket() {
    let mut b = Bundle::new("oci-tty", &["sh", "-c", "tty; echo hello-tty"]);
    b.config["process"]["terminal"] = json!(true);
    let socket_path = b.sb.dir.join("console.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    become_subreaper();
    let created = b.create("t1", &["--console-socket", socket_path.to_str().unwrap()]);
    assert!(created.status.success(), "{created:?}");
    let (stream, _) = listener.accept().unwrap();
    let (name, main) = receive_fd(&stream);
    assert!(name.starts_with("/dev/pts/"), "{name}");
    let pid = b.state("t1")["pid"].as_i64().unwrap() as i32;
    assert!(b.oci(&["start", "t1"]).status.success());
    let mut file = fs::File::from(main);
    let mut text = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&text).contains("hello-tty") {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            String::from_utf8_lossy(&text)
        );
        let mut buf = [0u8; 256];
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains(&name), "tty names the pty: {text:?}");
    assert!(text.contains("hello-tty"), "{text:?}");
    assert_eq!(reap(pid), 0);
    assert!(b.oci(&["delete", "t1"]).status.success());
}

/// One message of the console socket: its payload (the pty's name) and the descriptor it
/// carries.
fn receive_fd(stream: &std::os::unix::net::UnixStream) -> (String, OwnedFd) {
    let (payload, fd) = receive_with_fd(stream.as_raw_fd());
    let fd = fd.expect("no descriptor came");
    (String::from_utf8_lossy(&payload).into_owned(), fd)
}

#[test]
fn exec_runs_a_process_in_the_containers_namespaces_and_cgroup() {
    become_subreaper();
    let mut b = Bundle::new("oci-exec", &["sh", "-c", "while :; do sleep 0.1; done"]);
    b.config["root"]["readonly"] = json!(false);
    b.config["hostname"] = json!("exec-host");
    let created = b.create("x1", &[]);
    assert!(created.status.success(), "{created:?}");
    b.oci(&["exec", "x1", "true"])
        .assert_one_line_error(3, "created");
    let pid = b.state("x1")["pid"].as_i64().unwrap() as i32;
    assert!(b.oci(&["start", "x1"]).status.success());
    let done = b.oci(&[
        "exec", "--user", "1000:1000", "--cwd", "/tmp", "--env", "EXTRA=yes", "x1", "sh", "-c",
        "echo $(hostname) $(id -u):$(id -g) $(pwd) $EXTRA; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
         cat /proc/self/cgroup; exit 4",
    ]);
    assert_eq!(done.code(), Some(4), "{done:?}");
    let mut lines = done.stdout.lines();
    assert_eq!(
        lines.next(),
        Some("exec-host 1000:1000 /tmp yes"),
        "{done:?}"
    );
    assert!(
        lines.next().unwrap().contains("cradle-shim"),
        "PID 1 is the container's: {done:?}"
    );
    // in the container's cgroup namespace, at its root
    assert!(done.stdout.lines().any(|l| l == "0::/"), "{done:?}");
    let missing = b.oci(&["exec", "x1", "/no/such/program"]);
    missing.assert_one_line_error(127, "/no/such/program");
    let pid_file = b.sb.dir.join("exec.pid");
    let detached = b.oci(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "x1",
        "sh",
        "-c",
        "exit 6",
    ]);
    assert!(detached.status.success(), "{detached:?}");
    let exec_pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(
        reap(exec_pid),
        6,
        "the detached process is the caller's to reap"
    );
    assert!(b.oci(&["kill", "x1", "KILL"]).status.success());
    let mut status = 0;
    // SAFETY: waitpid writes one int through the pointer.
    #[allow(unsafe_code)]
    let got = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(got, pid);
    assert!(b.oci(&["delete", "x1"]).status.success());
    assert!(!cgroup_of("x1").exists());
}

#[test]
fn the_specs_seccomp_profile_is_in_force_with_or_without_no_new_privileges() {
    for nnp in [true, false] {
        let mut b = Bundle::new(
            &format!("oci-seccomp-{nnp}"),
            &[
                "sh",
                "-c",
                "mkdir /tmp/d 2>/dev/null; echo mkdir=$?; \
                 grep Seccomp: /proc/self/status; echo getpid=$$",
            ],
        );
        b.config["root"]["readonly"] = json!(false);
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        // deny by default, as podman's and Docker's profiles do: the shim and sh need
        // only what is listed
        b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ALLOWED, "action": "SCMP_ACT_ALLOW"}
            ]
        });
        let done = b.run(&format!("s{nnp}"));
        assert_eq!(done.code(), Some(0), "{done:?}");
        assert!(done.stdout.contains("mkdir=1\n"), "{done:?}");
        assert!(done.stdout.contains("Seccomp:\t2"), "{done:?}");
        assert!(!b.sb.path("/tmp/d").exists());
    }
}

/// What the shim, busybox's sh, mkdir and grep call, for a profile that denies the rest;
/// and, for a process without noNewPrivileges (whose filter is installed before it takes
/// its user, as runc installs it), the calls that change the user and capabilities.
const ALLOWED: &[&str] = &[
    "setgroups",
    "setgroups32",
    "setresuid",
    "setresuid32",
    "setresgid",
    "setresgid32",
    "capset",
    "read",
    "write",
    "readv",
    "writev",
    "open",
    "openat",
    "close",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "fstatat64",
    "stat64",
    "lstat64",
    "fstat64",
    "poll",
    "ppoll",
    "lseek",
    "_llseek",
    "mmap",
    "mmap2",
    "mprotect",
    "munmap",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigreturn",
    "ioctl",
    "access",
    "faccessat",
    "faccessat2",
    "pipe",
    "pipe2",
    "dup",
    "dup2",
    "dup3",
    "getpid",
    "getppid",
    "gettid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getuid32",
    "geteuid32",
    "getgid32",
    "getegid32",
    "getpgrp",
    "getpgid",
    "setpgid",
    "setsid",
    "getsid",
    "clone",
    "clone3",
    "fork",
    "vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "kill",
    "tgkill",
    "uname",
    "fcntl",
    "fcntl64",
    "getcwd",
    "chdir",
    "fchdir",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "prlimit64",
    "getrlimit",
    "ugetrlimit",
    "arch_prctl",
    "prctl",
    "getdents64",
    "getrandom",
    "signalfd4",
    "sigaltstack",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "gettimeofday",
    "sched_yield",
    "readlink",
    "readlinkat",
    "sysinfo",
    "umask",
    "capget",
    "set_thread_area",
    "pidfd_open",
    "pidfd_send_signal",
    "restart_syscall",
    "madvise",
    "futex",
];

/// A limit of container `id`: in the controller's v1 hierarchy where the host has one, else
/// in the v2 one.
fn read_limit(id: &str, controller: &str, v1_file: &str, v2_file: &str) -> Option<String> {
    let v1 = PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join("cradle-oci")
        .join(id)
        .join(v1_file);
    let v2 = cgroup_of(id).join(v2_file);
    [v1, v2]
        .iter()
        .find_map(|path| fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
}

#[test]
fn update_changes_a_running_containers_limits() {
    become_subreaper();
    let b = Bundle::new("oci-update", &["sleep", "100"]);
    let created = b.create("up1", &[]);
    assert!(created.status.success(), "{created:?}");
    let pid = b.state("up1")["pid"].as_i64().unwrap() as i32;
    assert!(b.oci(&["start", "up1"]).status.success());
    let updated = b.oci(&["update", "--memory", "64M", "--pids-limit", "20", "up1"]);
    assert!(updated.status.success(), "{updated:?}");
    assert_eq!(
        read_limit("up1", "memory", "memory.limit_in_bytes", "memory.max").as_deref(),
        Some("67108864")
    );
    assert_eq!(
        read_limit("up1", "pids", "pids.max", "pids.max").as_deref(),
        Some("20")
    );
    // the container's processes are where the limits are (moved into the v1 cgroups of
    // a hybrid host, which they had not joined without a limit)
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroups
        .lines()
        .filter(|l| l.contains(":memory:") || l.contains(":pids:"))
    {
        assert!(line.ends_with("/cradle-oci/up1"), "{cgroups}");
    }
    let resources = b.sb.dir.join("resources.json");
    fs::write(&resources, r#"{"pids":{"limit":30}}"#).unwrap();
    let from_file = b.oci(&["update", "--resources", resources.to_str().unwrap(), "up1"]);
    assert!(from_file.status.success(), "{from_file:?}");
    assert_eq!(
        read_limit("up1", "pids", "pids.max", "pids.max").as_deref(),
        Some("30")
    );
    b.oci(&["update", "--memory", "lots", "up1"])
        .assert_one_line_error(2, "lots");
    assert!(b.oci(&["kill", "up1", "KILL"]).status.success());
    let mut status = 0;
    // SAFETY: waitpid writes one int through the pointer.
    #[allow(unsafe_code)]
    let got = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(got, pid);
    b.oci(&["update", "--pids-limit", "5", "up1"])
        .assert_one_line_error(3, "stopped");
    assert!(b.oci(&["delete", "up1"]).status.success());
    assert!(!cgroup_of("up1").exists());
}

/// A hook as a shell script: it appends its kind, the namespaces it runs in, the status
/// it was given on its input and a variable of its own environment to `log`.
fn hook(script: &str, kind: &str, log: &str) -> Value {
    json!({
        "path": script,
        "args": ["hook", kind, log],
        "env": ["PATH=/usr/bin:/bin", "HOOKVAR=only-mine"],
    })
}

const HOOK_SCRIPT: &str = r#"#!/bin/sh
state=$(cat)
status=$(echo "$state" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p')
echo "$1 uts=$(readlink /proc/self/ns/uts) mnt=$(readlink /proc/self/ns/mnt) status=$status var=$HOOKVAR path=${PATH:-unset}" >> "$2"
"#;

/// What each hook's line in `log` says, by kind, in order.
fn hook_lines(log: &std::path::Path) -> Vec<(String, String)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (kind, rest) = l.split_once(' ').unwrap_or((l, ""));
            (kind.to_owned(), rest.to_owned())
        })
        .collect()
}

#[test]
fn the_six_kinds_of_hooks_run_in_order_where_the_spec_says_with_the_state_on_stdin() {
    become_subreaper();
    let mut b = Bundle::new(
        "oci-hooks",
        &["sh", "-c", "echo process >> /hooks.log; sleep 30"],
    );
    b.config["root"]["readonly"] = json!(false);
    let host_script = b.sb.dir.join("hook.sh");
    fs::write(&host_script, HOOK_SCRIPT).unwrap();
    fs::set_permissions(
        &host_script,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // startContainer's path is the container's: the same script in its root
    b.sb.write("/hook.sh", HOOK_SCRIPT, 0o755);
    let host_log = b.sb.dir.join("hooks.log");
    let (script, log) = (host_script.to_str().unwrap(), host_log.to_str().unwrap());
    b.config["hooks"] = json!({
        "prestart": [hook(script, "prestart", log)],
        "createRuntime": [hook(script, "createRuntime", log)],
        "createContainer": [hook(script, "createContainer", log)],
        "startContainer": [hook("/hook.sh", "startContainer", "/hooks.log")],
        "poststart": [hook(script, "poststart", log)],
        "poststop": [hook(script, "poststop", log)],
    });
    let created = b.create("h1", &[]);
    assert!(created.status.success(), "{created:?}");
    let kinds =
        |lines: &[(String, String)]| lines.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(
        kinds(&hook_lines(&host_log)),
        ["prestart", "createRuntime", "createContainer"],
        "create runs its three kinds, in order"
    );
    let pid = b.state("h1")["pid"].as_i64().unwrap();
    assert!(b.oci(&["start", "h1"]).status.success());
    let deleted_at = Instant::now() + secs(10);
    while !fs::read_to_string(b.sb.path("/hooks.log"))
        .unwrap_or_default()
        .contains("process")
    {
        assert!(Instant::now() < deleted_at, "the process did not run");
        std::thread::sleep(Duration::from_millis(20));
    }
    let in_container = hook_lines(&b.sb.path("/hooks.log"));
    assert_eq!(
        kinds(&in_container),
        ["startContainer", "process"],
        "startContainer runs in the container's root before its process"
    );
    let ns = |pid: &str, name: &str| {
        fs::read_link(format!("/proc/{pid}/ns/{name}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let (host_uts, host_mnt) = (ns("self", "uts"), ns("self", "mnt"));
    let (ct_uts, ct_mnt) = (ns(&pid.to_string(), "uts"), ns(&pid.to_string(), "mnt"));
    let kill = b.oci(&["kill", "h1", "TERM"]);
    assert!(kill.status.success(), "{kill:?}");
    reap(pid as i32);
    let deleted = b.oci(&["delete", "h1"]);
    assert!(deleted.status.success(), "{deleted:?}");
    let mut lines = hook_lines(&host_log);
    lines.insert(3, in_container[0].clone());
    assert_eq!(
        kinds(&lines),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    for (kind, line) in &lines {
        let (status, inside) = match kind.as_str() {
            "prestart" | "createRuntime" => ("creating", false),
            "createContainer" => ("creating", true),
            "startContainer" => ("created", true),
            "poststart" => ("running", false),
            _ => ("stopped", false),
        };
        assert!(
            line.contains(&format!("status={status} ")),
            "{kind}: {line}"
        );
        assert!(
            line.contains("var=only-mine path=/usr/bin:/bin"),
            "{kind} has its own environment: {line}"
        );
        let uts = if inside { &ct_uts } else { &host_uts };
        assert!(
            line.contains(&format!("uts={uts} ")),
            "{kind} runs in the {} UTS namespace: {line}",
            if inside { "container's" } else { "runtime's" }
        );
        if kind == "createContainer" {
            // in the container's mount namespace, before the switch to its root
            assert!(line.contains(&format!("mnt={ct_mnt}")), "{kind}: {line}");
        } else if !inside {
            assert!(line.contains(&format!("mnt={host_mnt}")), "{kind}: {line}");
        }
    }
    assert!(!cgroup_of("h1").exists());
}

#[test]
fn a_failing_create_hook_fails_create_in_one_line_runs_poststop_and_leaves_nothing() {
    let mut b = Bundle::new("oci-hook-fail", &["true"]);
    let log = b.sb.dir.join("hooks.log");
    let script = b.sb.dir.join("hook.sh");
    fs::write(&script, HOOK_SCRIPT).unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (script, log_s) = (script.to_str().unwrap(), log.to_str().unwrap());
    b.config["hooks"] = json!({
        "prestart": [hook(script, "prestart", log_s)],
        "createRuntime": [{"path": "/bin/false"}],
        "createContainer": [hook(script, "createContainer", log_s)],
        "poststop": [hook(script, "poststop", log_s)],
    });
    let done = b.create("f1", &[]);
    done.assert_one_line_error(2, "createRuntime hook #0 /bin/false");
    let lines = hook_lines(&log);
    assert_eq!(
        lines.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["prestart", "poststop"],
        "the failing hook stops create; poststop still runs"
    );
    assert!(!b.state_dir().join("f1").exists(), "no state left");
    assert!(!cgroup_of("f1").exists(), "no cgroup left");
    // a hook that outlives its timeout is killed, and fails create
    b.config["hooks"] =
        json!({"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    let started = Instant::now();
    let done = b.create("f2", &[]);
    done.assert_one_line_error(2, "timed out after 1 s");
    assert!(
        started.elapsed() < secs(20),
        "the hook was killed at its timeout"
    );
    assert!(!b.state_dir().join("f2").exists());
    // a failing startContainer hook fails start, and the container's process never runs
    become_subreaper();
    b.config["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
    b.config["process"]["args"] = json!(["touch", "/ran"]);
    b.config["root"]["readonly"] = json!(false);
    let created = b.create("f3", &[]);
    assert!(created.status.success(), "{created:?}");
    let pid = b.state("f3")["pid"].as_i64().unwrap() as i32;
    b.oci(&["start", "f3"])
        .assert_one_line_error(2, "startContainer hook #0 /bin/false");
    let mut status = 0;
    // SAFETY: waitpid writes one int through the pointer.
    #[allow(unsafe_code)]
    let got = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(got, pid);
    assert_eq!(b.state("f3")["status"], "stopped");
    assert!(!b.sb.path("/ran").exists(), "the process did not run");
    assert!(b.oci(&["delete", "f3"]).status.success());
    assert!(!cgroup_of("f3").exists());
}

#[test]
fn preserve_fds_hands_those_descriptors_on_and_no_other() {
    let b = Bundle::new(
        "oci-preserve",
        &[
            "sh",
            "-c",
            "echo three >&3; echo four >&4; if [ -e /proc/$$/fd/5 ]; then echo leaked >&3; fi",
        ],
    );
    b.save();
    let dir = b.sb.dir.to_str().unwrap();
    let script = format!(
        "exec 3>{dir}/f3 4>{dir}/f4 5>{dir}/f5; exec {} --root {dir}/oci-state run --preserve-fds 2 --bundle {dir} p1",
        dist("cradle-oci").display()
    );
    let sh = |script: &str| {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        run(c, secs(60))
    };
    let done = sh(&script);
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert_eq!(fs::read_to_string(b.sb.dir.join("f3")).unwrap(), "three\n");
    assert_eq!(fs::read_to_string(b.sb.dir.join("f4")).unwrap(), "four\n");
    // descriptors not named are not open, and a descriptor that is not open is refused
    let script = format!(
        "exec 3>{dir}/f3; exec {} --root {dir}/oci-state run --preserve-fds 2 --bundle {dir} p2",
        dist("cradle-oci").display()
    );
    sh(&script).assert_one_line_error(2, "descriptor 4 is not open");
}

/// busybox's init, told to note each boot and shutdown in /boots and to keep a service
/// running.
const SYSTEM_INITTAB: &str = "::sysinit:/bin/sh -c 'echo boot >> /boots'
::respawn:/bin/sleep 1000
::shutdown:/bin/sh -c 'echo shutdown >> /boots'
";

/// Waits until the guest's /boots reads `want`.
fn wait_boots(b: &Bundle, want: &str) {
    let deadline = Instant::now() + secs(20);
    loop {
        let boots = fs::read_to_string(b.sb.path("/boots")).unwrap_or_default();
        if boots == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/boots is {boots:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_system_container_boots_its_init_reboots_in_place_and_halts_on_sigterm() {
    become_subreaper();
    let mut b = Bundle::new("oci-system", &["/sbin/init"]);
    b.config["root"]["readonly"] = json!(false);
    b.sb.write("/etc/inittab", SYSTEM_INITTAB, 0o644);
    let created = b.create("s1", &[]);
    assert!(created.status.success(), "{created:?}");
    let pid = b.state("s1")["pid"].as_i64().unwrap() as i32;
    assert!(b.oci(&["start", "s1"]).status.success());
    wait_boots(&b, "boot\n");
    // the init is PID 1 of its own namespace, with its own /proc, where exec runs too
    let ps = b.oci(&["exec", "s1", "ps", "-o", "pid,args"]);
    assert!(ps.status.success(), "{ps:?}");
    assert!(
        ps.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "init"]),
        "{}",
        ps.stdout
    );
    // the spec's restrictions hold in it: runc's example's bounding set (and CAP_SYS_BOOT,
    // for reboot(2)), no_new_privs, /proc's masked and read-only paths
    let status = b.oci(&[
        "exec",
        "s1",
        "cat",
        "/proc/1/status",
        "/proc/self/mountinfo",
    ]);
    assert!(
        status.stdout.contains("CapBnd:\t0000000020400420"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("NoNewPrivs:\t1"),
        "{}",
        status.stdout
    );
    let mounts: Vec<&str> = status
        .stdout
        .lines()
        .filter(|l| l.contains(" /proc/"))
        .collect();
    for (path, ro) in [
        ("/proc/keys", false),
        ("/proc/timer_list", false),
        ("/proc/sys", true),
    ] {
        let line = mounts.iter().find(|l| l.split(' ').nth(4) == Some(path));
        let line = line.unwrap_or_else(|| panic!("{path} is not covered: {mounts:#?}"));
        assert!(
            !ro || line.split(' ').nth(5).unwrap().starts_with("ro"),
            "{line}"
        );
    }
    // a reboot inside: the guest boots again in the same container
    let rebooted = b.oci(&["exec", "s1", "reboot"]);
    assert!(rebooted.status.success(), "{rebooted:?}");
    wait_boots(&b, "boot\nshutdown\nboot\n");
    let state = b.state("s1");
    assert_eq!(
        (state["status"].as_str(), state["pid"].as_i64()),
        (Some("running"), Some(pid as i64))
    );
    // SIGTERM (what containerd and Kubernetes send, and podman without a stop signal)
    // halts it: its shutdown runs, and the shim exits 0
    assert!(b.oci(&["kill", "s1", "TERM"]).status.success());
    assert_eq!(reap(pid), 0);
    assert_eq!(
        fs::read_to_string(b.sb.path("/boots")).unwrap(),
        "boot\nshutdown\nboot\nshutdown\n"
    );
    assert!(b.oci(&["delete", "s1"]).status.success());
    assert!(!cgroup_of("s1").exists());
    // the annotation turns it off (or on for another command), and is checked
    b.config["annotations"] = json!({"run.cradle.system": "false"});
    let plain = b.run("s2");
    assert!(
        plain.stderr.contains("must be run as PID 1"),
        "busybox's init is then the shim's child, not PID 1 of its namespace: {plain:?}"
    );
    b.config["annotations"] = json!({"run.cradle.system": "yes"});
    b.run("s3").assert_one_line_error(2, "run.cradle.system");
}

/// `systemctl is-system-running` in container `id`, until it says `running`.
fn wait_system_running(b: &Bundle, id: &str) {
    let exec = |words: &[&str]| b.oci(&[&["exec", id][..], words].concat());
    integration_tests::wait_system_running(exec, secs(90));
}

/// A Debian 12 with systemd as an OCI system container, with what podman's systemd mode
/// gives one (tmpfs on /run and /tmp, the cgroup tree writable in a cgroup namespace of its
/// own, podman's default capabilities): it boots to `running`, reboots in place
/// and halts on SIGRTMIN+3, on this host's cgroup layout whatever it is.
#[test]
fn debian_with_systemd_boots_as_a_system_container_reboots_in_place_and_halts() {
    become_subreaper();
    let mut b = Bundle::in_sandbox(Sandbox::debian("oci-debian"), &["/sbin/init"]);
    let c = &mut b.config;
    c["root"]["readonly"] = json!(false);
    c["process"]["env"] = json!(["container=oci", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
    // podman's default capabilities (runc's example's three are too few for journald)
    let caps = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT"
    ]);
    for set in ["bounding", "effective", "permitted"] {
        c["process"]["capabilities"][set] = caps.clone();
    }
    c["process"]["noNewPrivileges"] = json!(false);
    // runc's example has a cgroup namespace already
    let mounts = c["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
    for dir in ["/run", "/tmp", "/run/lock"] {
        mounts.push(
            json!({"destination": dir, "type": "tmpfs", "source": "tmpfs",
                           "options": ["rw", "nosuid", "nodev"]}),
        );
    }
    mounts.push(
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                       "options": ["rw", "nosuid", "noexec", "nodev"]}),
    );
    let created = b.create("deb", &[]);
    assert!(created.status.success(), "{created:?}");
    let pid = b.state("deb")["pid"].as_i64().unwrap() as i32;
    assert!(b.oci(&["start", "deb"]).status.success());
    wait_system_running(&b, "deb");
    let init = |b: &Bundle| b.oci(&["exec", "deb", "cat", "/proc/1/stat"]).stdout;
    let first = init(&b);
    assert!(
        b.oci(&["exec", "deb", "systemctl", "reboot"])
            .status
            .success()
    );
    let deadline = Instant::now() + secs(60);
    while init(&b) == first || init(&b).is_empty() {
        assert!(Instant::now() < deadline, "no second boot");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_system_running(&b, "deb");
    assert_eq!(
        b.state("deb")["pid"].as_i64(),
        Some(pid as i64),
        "the same container"
    );
    // systemd's own halt signal, as podman stop sends it
    assert!(b.oci(&["kill", "deb", "RTMIN+3"]).status.success());
    assert_eq!(reap(pid), 0, "halted");
    assert!(b.oci(&["delete", "deb"]).status.success());
    assert!(!cgroup_of("deb").exists());
}

#[test]
fn bad_input_gets_one_line_and_its_own_code() {
    let b = Bundle::new("oci-bad", &["true"]);
    b.oci(&["state", "nosuch"])
        .assert_one_line_error(4, "nosuch");
    b.oci(&["kill", "nosuch", "KILL"])
        .assert_one_line_error(4, "nosuch");
    b.oci(&["kill", "nosuch", "BOGUS"])
        .assert_one_line_error(2, "BOGUS");
    b.oci(&["create", "--bundle", "/nonexistent", "x"])
        .assert_one_line_error(2, "/nonexistent");
    b.create("bad/id", &[]).assert_one_line_error(2, "bad/id");
    b.oci(&["--log-format", "yaml", "list"])
        .assert_one_line_error(2, "yaml");
    let mut missing = b.config.clone();
    missing["process"]["args"] = json!(["/no/such/program"]);
    let b2 = Bundle {
        sb: Sandbox::new("oci-bad-2"),
        config: missing,
    };
    fs::remove_dir(&b2.sb.root).unwrap();
    std::os::unix::fs::symlink(&b.sb.root, &b2.sb.root).unwrap();
    b2.create("m1", &[])
        .assert_one_line_error(127, "/no/such/program");
    assert!(
        !b2.state_dir().join("m1").exists(),
        "a failed create leaves no state"
    );
    assert!(
        !cgroup_of("m1").exists(),
        "a failed create leaves no cgroup"
    );
    let mut unknown = b.config.clone();
    unknown["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "bogus"}]);
    fs::write(
        b2.sb.dir.join("config.json"),
        serde_json::to_vec(&unknown).unwrap(),
    )
    .unwrap();
    let done = cradle(
        &b2.sb,
        &["create", "--bundle", b2.sb.dir.to_str().unwrap(), "m2"],
    );
    done.assert_one_line_error(2, "bogus");
    // the id is taken while a container has it
    become_subreaper();
    let first = b.create("dup", &[]);
    assert!(first.status.success(), "{first:?}");
    b.create("dup", &[]).assert_one_line_error(3, "dup");
    assert!(b.oci(&["delete", "dup"]).status.success());
    // the log in JSON, as containerd reads it back
    let log = b.sb.dir.join("log.json");
    let logged = b.oci(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "gone",
    ]);
    assert_eq!(logged.code(), Some(4));
    let line: Value = serde_json::from_str(fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("gone"));
}

#[test]
fn every_binary_answers_help_and_version() {
    let sb = Sandbox::new("oci-help");
    let help = cradle(&sb, &["--help"]);
    assert!(
        help.status.success() && help.stdout.contains("create"),
        "{help:?}"
    );
    let version = cradle(&sb, &["--version"]);
    assert!(
        version.stdout.starts_with("cradle-oci version "),
        "{version:?}"
    );
    let features = cradle(&sb, &["features"]);
    let doc: Value = serde_json::from_str(&features.stdout).unwrap();
    assert!(
        doc["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!("user"))
    );
    let seccomp = &doc["linux"]["seccomp"];
    assert!(
        seccomp["actions"]
            .as_array()
            .unwrap()
            .contains(&json!("SCMP_ACT_NOTIFY")),
        "{seccomp}"
    );
    assert!(
        !seccomp["archs"].as_array().unwrap().is_empty(),
        "{seccomp}"
    );
}

/// The mount points at or below `dir` in our mount namespace.
fn mounts_at_or_below(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .filter(|point| point == dir || point.starts_with(&format!("{dir}/")))
        .collect()
}

/// A spec with no namespace at all (runtime-tools' `linux_ns_itype`): the container shares
/// each of ours, the mount namespace too, as runc sets it up: its root attached on the
/// bundle's root in ours and its mounts made below it, chrooted into it. `exec` enters
/// that root; `delete` leaves nothing mounted there.
#[test]
fn a_spec_without_namespaces_shares_ours_and_delete_leaves_no_mount() {
    let mut b = Bundle::new("oci-no-ns", &["sleep", "60"]);
    b.config["linux"]["namespaces"] = json!([]);
    b.config.as_object_mut().unwrap().remove("hostname");
    let rootfs = fs::canonicalize(b.sb.dir.join("root")).unwrap();
    fs::write(rootfs.join("marker"), "in its root\n").unwrap();
    assert_eq!(mounts_at_or_below(&rootfs), Vec::<String>::new());

    let created = b.create("n1", &[]);
    assert_eq!(created.code(), Some(0), "{created:?}");
    let started = b.oci(&["start", "n1"]);
    assert_eq!(started.code(), Some(0), "{started:?}");
    let pid = b.state("n1")["pid"].as_i64().unwrap();
    for ns in ["mnt", "pid", "net", "ipc", "uts", "user", "cgroup"] {
        assert_eq!(
            fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap(),
            fs::read_link(format!("/proc/self/ns/{ns}")).unwrap(),
            "the container's {ns} namespace is ours"
        );
    }
    assert_eq!(fs::read_link(format!("/proc/{pid}/root")).unwrap(), rootfs);
    let mounted = mounts_at_or_below(&rootfs);
    for point in ["", "/proc", "/dev", "/dev/pts", "/sys"] {
        let want = format!("{}{point}", rootfs.display());
        assert!(mounted.contains(&want), "{want} in {mounted:?}");
    }
    let exec = b.oci(&["exec", "n1", "cat", "/marker"]);
    assert_eq!(exec.code(), Some(0), "{exec:?}");
    assert_eq!(exec.stdout, "in its root\n");

    let deleted = b.oci(&["delete", "--force", "n1"]);
    assert_eq!(deleted.code(), Some(0), "{deleted:?}");
    assert_eq!(deleted.stderr, "", "{deleted:?}");
    assert_eq!(mounts_at_or_below(&rootfs), Vec::<String>::new());
    assert!(!cgroup_of("n1").exists());
}

/// What would reach the host through a spec that shares its namespaces is refused at
/// `create`, by name (exit 2), and leaves nothing: a sysctl outside a namespace of the
/// container's own (a network one without a network namespace, one no namespace holds),
/// and a user namespace without a mount namespace.
#[test]
fn what_a_spec_without_its_own_namespaces_would_change_of_the_host_is_refused() {
    let mut b = Bundle::new("oci-no-ns-refused", &["true"]);
    let rootfs = fs::canonicalize(b.sb.dir.join("root")).unwrap();
    let without = |b: &mut Bundle, kinds: &[&str]| {
        let all = b.config["linux"]["namespaces"].as_array().unwrap().clone();
        let kept: Vec<Value> = all
            .into_iter()
            .filter(|ns| !kinds.contains(&ns["type"].as_str().unwrap()))
            .collect();
        b.config["linux"]["namespaces"] = json!(kept);
    };
    without(&mut b, &["network"]);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    let done = b.create("r1", &[]);
    assert_eq!(done.code(), Some(2), "{done:?}");
    assert!(
        done.stderr.contains("net.ipv4.ip_forward") && done.stderr.contains("network namespace"),
        "{done:?}"
    );

    b.config["linux"]["sysctl"] = json!({"vm.swappiness": "10"});
    let done = b.create("r2", &[]);
    assert_eq!(done.code(), Some(2), "{done:?}");
    assert!(done.stderr.contains("vm.swappiness"), "{done:?}");

    b.config["linux"]["sysctl"] = json!({});
    without(&mut b, &["mount"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let done = b.create("r3", &[]);
    assert_eq!(done.code(), Some(2), "{done:?}");
    assert!(
        done.stderr.contains("without a mount namespace"),
        "{done:?}"
    );

    for id in ["r1", "r2", "r3"] {
        assert!(!b.state_dir().join(id).exists());
        assert!(!cgroup_of(id).exists());
    }
    assert_eq!(mounts_at_or_below(&rootfs), Vec::<String>::new());
}

/// `process.apparmorProfile`, as runc takes it: where the kernel's AppArmor is on, the
/// container's process runs confined by it (its `/proc/self/attr/current` names it; the
/// test loads a profile of its own with apparmor_parser, and removes it); where it is off,
/// `create` refuses the profile by name (runc fails to apply it there).
#[test]
fn an_apparmor_profile_confines_the_process_where_apparmor_is_on() {
    let mut b = Bundle::new("oci-apparmor", &["cat", "/proc/self/attr/current"]);
    b.config["process"]["apparmorProfile"] = json!("cradle-test-profile");
    if !integration_tests::apparmor_on() {
        let done = b.create("a1", &[]);
        assert_eq!(done.code(), Some(2), "{done:?}");
        assert!(
            done.stderr.contains("cradle-test-profile")
                && done.stderr.contains("AppArmor is not enabled"),
            "{done:?}"
        );
        assert!(!b.state_dir().join("a1").exists());
        return;
    }
    // loading a profile needs AppArmor's files (securityfs) and its parser
    integration_tests::require_shape!(
        "AppArmor's files mounted (securityfs) and apparmor_parser",
        |_| integration_tests::apparmor_loads_profiles()
    );
    let profile = "profile cradle-test-profile flags=(attach_disconnected,mediate_deleted) {\n  \
                   file,\n  capability,\n  signal,\n  unix,\n  network,\n  mount,\n  umount,\n  \
                   pivot_root,\n  ptrace,\n}\n";
    let file = b.sb.dir.join("apparmor-profile");
    fs::write(&file, profile).unwrap();
    let mut load = Command::new("apparmor_parser");
    load.arg("-r").arg(&file);
    let loaded = run(load, secs(60));
    assert!(loaded.status.success(), "{loaded:?}");
    let done = b.run("a2");
    let mut unload = Command::new("apparmor_parser");
    unload.arg("-R").arg(&file);
    let unloaded = run(unload, secs(60));
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert_eq!(
        done.stdout.trim_end_matches('\0').trim(),
        "cradle-test-profile (enforce)"
    );
    assert!(unloaded.status.success(), "{unloaded:?}");
}

/// What the test's seccomp agent was handed on one connection, and did.
#[derive(Debug)]
struct AgentSaw {
    state: Value,
    /// The number of the call it answered for (the first notification), if one came.
    answered: Option<i32>,
}

/// A seccomp agent, as `listenerPath` names one: it accepts connections on `socket`, and
/// for each reads the container process state with the listener (SCM_RIGHTS), answers the
/// first call it is told of with EXDEV, and reports on `saw`.
fn seccomp_agent(socket: PathBuf, saw: std::sync::mpsc::Sender<AgentSaw>) {
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let saw = saw.clone();
            std::thread::spawn(move || {
                let (payload, fd) = receive_with_fd(stream.as_raw_fd());
                let state: Value = serde_json::from_slice(&payload).unwrap();
                let answered = fd.and_then(answer_one_call);
                let _ = saw.send(AgentSaw { state, answered });
            });
        }
    });
}

/// recvmsg(2) of one message (up to 64 KiB) and the descriptor in its SCM_RIGHTS, if any.
fn receive_with_fd(socket: i32) -> (Vec<u8>, Option<OwnedFd>) {
    let mut payload = vec![0u8; 65536];
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain data (zero is valid); it points at iov and control, which
    // live across the call; the kernel writes at most their lengths.
    #[allow(unsafe_code)]
    let (n, fd) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len() as _;
        let n = libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC);
        let header = libc::CMSG_FIRSTHDR(&msg);
        let fd = (!header.is_null() && (*header).cmsg_type == libc::SCM_RIGHTS).then(|| {
            OwnedFd::from_raw_fd(std::ptr::read_unaligned(
                libc::CMSG_DATA(header).cast::<i32>(),
            ))
        });
        (n, fd)
    };
    assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
    payload.truncate(n as usize);
    (payload, fd)
}

/// Waits up to 30 s for the first call the listener `fd` is told of, answers it with
/// EXDEV, and returns its number; None when none came (the process ended first).
fn answer_one_call(fd: OwnedFd) -> Option<i32> {
    // linux/seccomp.h: struct seccomp_notif (80 bytes) and seccomp_notif_resp (24), and
    // the ioctls that take them, _IOWR('!', 0 and 1, ...)
    #[repr(C)]
    struct Notif {
        id: u64,
        pid: u32,
        flags: u32,
        nr: i32,
        arch: u32,
        ip: u64,
        args: [u64; 6],
    }
    #[repr(C)]
    struct Response {
        id: u64,
        val: i64,
        error: i32,
        flags: u32,
    }
    const RECV: libc::c_ulong = 0xc050_2100;
    const SEND: libc::c_ulong = 0xc018_2101;
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, alive across the call.
    #[allow(unsafe_code)]
    let ready = unsafe { libc::poll(&mut poll, 1, 30_000) };
    if ready != 1 || poll.revents & libc::POLLIN == 0 {
        return None;
    }
    // SAFETY: Notif is plain data (zero is valid, and RECV wants it zeroed); the ioctls
    // read and write exactly the structs their numbers name.
    #[allow(unsafe_code)]
    unsafe {
        let mut notif: Notif = std::mem::zeroed();
        if libc::ioctl(fd.as_raw_fd(), RECV as _, &mut notif) != 0 {
            return None;
        }
        let response = Response {
            id: notif.id,
            val: 0,
            error: -libc::EXDEV,
            flags: 0,
        };
        assert_eq!(libc::ioctl(fd.as_raw_fd(), SEND as _, &response), 0);
        Some(notif.nr)
    }
}

/// `SCMP_ACT_NOTIFY` with a seccomp agent at `listenerPath`, as runc hands it over: for
/// the container's process (at `create`, the state `creating`) and for one `exec` adds
/// (`running`), the agent gets the container process state (`fds`, `pid`, `metadata`,
/// `state`) with the filter's listener, and what it answers is what the call returns.
#[test]
fn a_seccomp_agent_answers_the_calls_the_profile_notifies_it_of() {
    let mut b = Bundle::new(
        "oci-seccomp-agent",
        &[
            "sh",
            "-c",
            "mkdir /tmp/notified 2>&1; echo status=$?; test -d /tmp/notified && echo made || echo not-made",
        ],
    );
    let socket = b.sb.dir.join("agent.sock");
    let (tell, saw) = std::sync::mpsc::channel();
    seccomp_agent(socket.clone(), tell);
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket.to_str().unwrap(),
        "listenerMetadata": "cradle-test-meta",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    });
    let done = b.run("g1");
    assert_eq!(done.code(), Some(0), "{done:?}");
    assert!(
        done.stdout.contains("Invalid cross-device link"),
        "{done:?}"
    );
    assert!(done.stdout.contains("status=1\nnot-made"), "{done:?}");
    let first = saw.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(first.state["fds"], json!(["seccompFd"]), "{first:?}");
    assert_eq!(
        first.state["metadata"],
        json!("cradle-test-meta"),
        "{first:?}"
    );
    assert_eq!(first.state["state"]["id"], json!("g1"), "{first:?}");
    assert_eq!(
        first.state["state"]["status"],
        json!("creating"),
        "{first:?}"
    );
    assert_eq!(first.state["pid"], first.state["state"]["pid"], "{first:?}");
    assert!(first.answered.is_some(), "{first:?}");

    // a process exec adds gets a filter with a listener of its own, handed over too
    b.config["process"]["args"] = json!(["sleep", "60"]);
    let created = b.create("g2", &[]);
    assert_eq!(created.code(), Some(0), "{created:?}");
    assert_eq!(b.oci(&["start", "g2"]).code(), Some(0));
    let exec = b.oci(&[
        "exec",
        "g2",
        "sh",
        "-c",
        "mkdir /tmp/x 2>&1; echo status=$?",
    ]);
    assert_eq!(exec.code(), Some(0), "{exec:?}");
    assert!(exec.stdout.contains("status=1"), "{exec:?}");
    let at_exec = (0..2)
        .filter_map(|_| saw.recv_timeout(Duration::from_secs(30)).ok())
        .find(|s| s.state["state"]["status"] == json!("running"))
        .expect("the agent was handed the exec's listener");
    assert_eq!(at_exec.state["state"]["id"], json!("g2"), "{at_exec:?}");
    assert!(at_exec.answered.is_some(), "{at_exec:?}");
    assert_ne!(
        at_exec.state["pid"], at_exec.state["state"]["pid"],
        "{at_exec:?}"
    );
    assert_eq!(b.oci(&["delete", "--force", "g2"]).code(), Some(0));

    // without an agent to hand the listener to, the profile is refused at `create`
    let seccomp = b.config["linux"]["seccomp"].as_object_mut().unwrap();
    seccomp.remove("listenerPath");
    let refused = b.create("g3", &[]);
    assert_eq!(refused.code(), Some(2), "{refused:?}");
    assert!(refused.stderr.contains("listenerPath"), "{refused:?}");
}

/// The whole disk this machine's root is on, as `MAJOR:MINOR` (its partition's disk when
/// the root is on a partition): block I/O throttles take whole disks.
fn root_disk() -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let disk = match sys.join("partition").exists() {
        true => fs::canonicalize(&sys)
            .unwrap()
            .parent()
            .unwrap()
            .join("dev"),
        false => sys.join("dev"),
    };
    fs::read_to_string(disk).unwrap().trim().to_owned()
}

/// True when the host's cgroup v2 hierarchy has the controller `name`.
fn on_v2(name: &str) -> bool {
    fs::read_to_string(integration_tests::cgroup_v2_root().join("cgroup.controllers"))
        .is_ok_and(|text| text.split_whitespace().any(|c| c == name))
}

/// `blockIO`, `unified` and `hugepageLimits`, written as runc writes them: the block I/O
/// throttle in the v1 `blkio` hierarchy of a hybrid host or in cgroup v2's `io.max`; the
/// `unified` files in the v2 cgroup where the controllers are on v2, refused on a hybrid
/// host (as runc refuses them); huge page limits in the `hugetlb` controller, refused by
/// name where the host has none (as runc refuses them).
#[test]
fn block_io_unified_and_huge_page_resources_are_set() {
    let mut b = Bundle::new("oci-resources", &["sleep", "30"]);
    let disk = root_disk();
    let (major, minor) = disk.split_once(':').unwrap();
    let (major, minor): (i64, i64) = (major.parse().unwrap(), minor.parse().unwrap());
    b.config["linux"]["resources"]["blockIO"] = json!({
        "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}],
    });
    let pure_v2 = on_v2("memory");
    if pure_v2 {
        b.config["linux"]["resources"]["unified"] = json!({"memory.high": "104857600"});
    }
    let created = b.create("r1", &[]);
    assert_eq!(created.code(), Some(0), "{created:?}");
    if on_v2("io") {
        let max = fs::read_to_string(cgroup_of("r1").join("io.max")).unwrap();
        assert!(
            max.contains(&format!("{disk} rbps=1048576 wbps=max riops=max wiops=100")),
            "{max}"
        );
    } else {
        let read = read_limit("r1", "blkio", "blkio.throttle.read_bps_device", "-");
        assert_eq!(read, Some(format!("{disk} 1048576")));
        let write = read_limit("r1", "blkio", "blkio.throttle.write_iops_device", "-");
        assert_eq!(write, Some(format!("{disk} 100")));
    }
    if pure_v2 {
        let high = fs::read_to_string(cgroup_of("r1").join("memory.high")).unwrap();
        assert_eq!(high.trim(), "104857600");
    }
    assert_eq!(b.oci(&["delete", "--force", "r1"]).code(), Some(0));

    b.config["linux"]["resources"] = json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]});
    let hugetlb = on_v2("hugetlb") || Path::new("/sys/fs/cgroup/hugetlb").exists();
    let two_mb = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    let created = b.create("r3", &[]);
    if !hugetlb {
        assert_eq!(created.code(), Some(2), "{created:?}");
        assert!(
            created.stderr.contains("no hugetlb controller"),
            "{created:?}"
        );
    } else if two_mb {
        assert_eq!(created.code(), Some(0), "{created:?}");
        let limit = read_limit(
            "r3",
            "hugetlb",
            "hugetlb.2MB.limit_in_bytes",
            "hugetlb.2MB.max",
        );
        assert_eq!(limit.as_deref(), Some("0"));
        assert_eq!(b.oci(&["delete", "--force", "r3"]).code(), Some(0));
    }

    if !pure_v2 {
        b.config["linux"]["resources"] = json!({"unified": {"memory.high": "104857600"}});
        let refused = b.create("r2", &[]);
        assert_eq!(refused.code(), Some(2), "{refused:?}");
        assert!(refused.stderr.contains("unified"), "{refused:?}");
    }
}
