//! The command line, as argh structs. Doc comments are the `--help` text.

use std::path::PathBuf;

use argh::FromArgs;

use cradle_core::container::ownership::Ownership;
use cradle_core::security::userns::UsernsMode;

/// A timeout in whole seconds, at most a day: a deadline that far is no deadline, and a
/// larger one would not fit in the clock's arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub u64);

/// The longest timeout (a day).
const MAX_SECONDS: u64 = 86_400;

impl argh::FromArgValue for Seconds {
    fn from_arg_value(value: &str) -> std::result::Result<Self, String> {
        match value.parse::<u64>() {
            Ok(n) if n <= MAX_SECONDS => Ok(Seconds(n)),
            _ => Err(format!(
                "{value:?}: a number of seconds from 0 to {MAX_SECONDS}"
            )),
        }
    }
}

impl Seconds {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

/// How `stop` stops a guest (see `commands::stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Halt,
    Reboot,
    Kill,
}

impl argh::FromArgValue for Mode {
    fn from_arg_value(value: &str) -> std::result::Result<Self, String> {
        match value {
            "halt" => Ok(Mode::Halt),
            "reboot" => Ok(Mode::Reboot),
            "kill" => Ok(Mode::Kill),
            other => Err(format!("unknown mode {other:?}: use halt, reboot or kill")),
        }
    }
}

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

impl argh::FromArgValue for Switch {
    fn from_arg_value(value: &str) -> std::result::Result<Self, String> {
        match value {
            "on" => Ok(Switch::On),
            "off" => Ok(Switch::Off),
            other => Err(format!("{other:?}: use on or off")),
        }
    }
}

/// Boot a guest OS from a root directory in Linux namespaces, or run a command in the same
/// isolation.
#[derive(FromArgs, Debug, PartialEq)]
pub struct Cli {
    /// where container state lives (default $CRADLE_STATE_DIR, or /run/cradle)
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
    /// where the guests' config files NAME.toml are (default $CRADLE_CONFIG_DIR, or
    /// /etc/cradle)
    #[argh(option)]
    pub config_dir: Option<PathBuf>,
    /// more output (twice: debug)
    #[argh(switch, short = 'v')]
    pub verbose: u8,
    /// only warnings and errors
    #[argh(switch, short = 'q')]
    pub quiet: bool,
    /// log to syslog instead of standard error
    #[argh(switch)]
    pub syslog: bool,
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Command {
    Start(Start),
    Stop(Stop),
    Exec(Exec),
    Run(Run),
    Set(Set),
    Status(Status),
    List(List),
    Console(ConsoleCmd),
    Create(Create),
    Destroy(Destroy),
    Autostart(Autostart),
    Autostop(Autostop),
}

/// The limit options of `start`, `run` and `set`, as given.
pub trait LimitOptions {
    fn given(&self) -> cradle_core::cgroups::limits::Given<'_>;
}

macro_rules! limit_options {
    ($($command:ty),*) => {$(
        impl LimitOptions for $command {
            fn given(&self) -> cradle_core::cgroups::limits::Given<'_> {
                cradle_core::cgroups::limits::Given {
                    memory: self.memory.as_deref(),
                    swap: self.swap.as_deref(),
                    pids: self.pids.as_deref(),
                    cpus: self.cpus.as_deref(),
                    cpu_weight: self.cpu_weight.as_deref(),
                }
            }
        }
    )*};
}
limit_options!(Start, Run, Set, Create);

/// The network options of `start`, `run` and `create`, as given.
pub trait NetOptions {
    fn net_given(&self) -> cradle_core::net::Given<'_>;
}

macro_rules! net_options {
    ($($command:ty),*) => {$(
        impl NetOptions for $command {
            fn net_given(&self) -> cradle_core::net::Given<'_> {
                cradle_core::net::Given {
                    net: self.net.as_deref(),
                    ip: &self.ip,
                    gateway: self.gateway.as_deref(),
                    dns: &self.dns,
                    mac: self.mac.as_deref(),
                    mtu: self.mtu.as_deref(),
                    port: &self.port,
                }
            }
        }
    )*};
}
net_options!(Start, Run, Create);

/// Boot the guest in --root (or as its config file says) and stay with it until it halts;
/// boot it again after every reboot. In the foreground, the guest's console is this
/// terminal (Ctrl-] three times within a second powers the guest off); with --detach, the
/// command returns once the guest is up and `cradle console` attaches to it.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "start")]
pub struct Start {
    /// container name
    #[argh(positional)]
    pub name: String,
    /// go on in the background; return once the guest is up
    #[argh(switch, short = 'd')]
    pub detach: bool,
    /// with --detach, where the launcher's log is appended (default NAME.log in
    /// $CRADLE_LOG_DIR or /var/log/cradle; with --syslog, syslog)
    #[argh(option)]
    pub log_file: Option<PathBuf>,
    /// the guest's root directory (without it: the config file NAME.toml, with the options
    /// given here on top)
    #[argh(option)]
    pub root: Option<PathBuf>,
    /// hostname of the guest (default: the name)
    #[argh(option)]
    pub hostname: Option<String>,
    /// add VAR=value to the guest init's environment (repeatable)
    #[argh(option, short = 'e')]
    pub env: Vec<String>,
    /// the cradle-shim executable (default: next to cradle)
    #[argh(option)]
    pub shim: Option<PathBuf>,
    /// seconds a halt on SIGTERM may take before the guest is powered off (default 60)
    #[argh(option)]
    pub timeout: Option<Seconds>,
    /// the guest's user namespace: pick (the default: a free range of 65536 host ids, the
    /// same for a name while it is free), a host uid BASE (a multiple of 65536), or off (the
    /// guest's root is the host's root: not a security boundary)
    #[argh(option)]
    pub userns: Option<UsernsMode>,
    /// who owns the root's files on disk, with a user namespace: auto (the default: map
    /// where the file system allows it, else chown), map (an id-mapped mount; nothing is
    /// chowned), or chown (the owners are shifted into the guest's range, once)
    #[argh(option)]
    pub ownership: Option<Ownership>,
    /// keep this capability in the bounding set besides the default ones (repeatable, or a
    /// comma-separated list; e.g. CAP_SYS_TIME, net_admin, all)
    #[argh(option)]
    pub capability: Vec<String>,
    /// drop this capability from the bounding set (repeatable, or a list; wins over
    /// --capability)
    #[argh(option)]
    pub drop_capability: Vec<String>,
    /// the default seccomp filter: on (the default) or off
    #[argh(option)]
    pub seccomp: Option<Switch>,
    /// memory limit (memory.max): a size such as 512M or 2G, or max
    #[argh(option)]
    pub memory: Option<String>,
    /// swap the guest may use besides --memory (memory.swap.max): a size, or max
    #[argh(option)]
    pub swap: Option<String>,
    /// most processes and threads, the shim included (pids.max), or max
    #[argh(option)]
    pub pids: Option<String>,
    /// CPU time, in CPUs: 0.5 is half of one (cpu.max), or max
    #[argh(option)]
    pub cpus: Option<String>,
    /// share of CPU time under contention, 1 to 10000, 100 by default (cpu.weight)
    #[argh(option)]
    pub cpu_weight: Option<String>,
    /// the network: none (the default: lo alone), nat (a veth on cradle0, an address of
    /// its pool, outbound NAT), bridge=BRIDGE, routed (needs --ip), macvlan=INTERFACE, or
    /// host (the host's network: no isolation)
    #[argh(option)]
    pub net: Option<String>,
    /// an address of the guest, ADDR[/PREFIX] (repeatable; bridge, routed, macvlan)
    #[argh(option)]
    pub ip: Vec<String>,
    /// the guest's default gateway (bridge, macvlan)
    #[argh(option)]
    pub gateway: Option<String>,
    /// a resolver for the guest's /etc/resolv.conf (repeatable; nat: the host's)
    #[argh(option)]
    pub dns: Vec<String>,
    /// the guest's MAC address (default: derived from the name)
    #[argh(option)]
    pub mac: Option<String>,
    /// the MTU of the guest's link
    #[argh(option)]
    pub mtu: Option<String>,
    /// forward a host port to the guest: [HOSTADDR:]HOSTPORT[:GUESTPORT][/tcp|/udp]
    /// (repeatable; nat, routed)
    #[argh(option)]
    pub port: Vec<String>,
}

/// Attach this terminal to a running guest's console: first what it printed last (up to
/// 64 KiB), then what it prints; what is typed goes to the guest. Ctrl-] three times within
/// a second detaches, and the guest runs on. A second console takes over from the first.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "console")]
pub struct ConsoleCmd {
    /// container name
    #[argh(positional)]
    pub name: String,
}

/// Stop a running guest from another terminal: halt (default), reboot or kill.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "stop")]
pub struct Stop {
    /// container name
    #[argh(positional)]
    pub name: String,
    /// halt (run halt in the guest; power off after the timeout), reboot, or kill
    /// (reboot(2) POWER_OFF in the guest's PID namespace)
    #[argh(option, default = "Mode::Halt")]
    pub mode: Mode,
    /// seconds to wait for the guest to go down (or come back, for reboot) (default: the
    /// guest's own, as start had it, 60 unless set)
    #[argh(option)]
    pub timeout: Option<Seconds>,
}

/// Run a command inside a running guest: its namespaces, root and environment.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "exec")]
pub struct Exec {
    /// container name
    #[argh(positional)]
    pub name: String,
    /// add VAR=value to the command's environment (repeatable)
    #[argh(option, short = 'e')]
    pub env: Vec<String>,
    /// seconds to wait for a guest that is still booting, and then for the command to
    /// start in it (default 30)
    #[argh(option)]
    pub timeout: Option<Seconds>,
    /// the command and its arguments, after --
    #[argh(positional, greedy)]
    pub command: Vec<String>,
}

/// Run a command as the only program of a new container on --root, with the shim as its
/// PID 1; exit with its status.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "run")]
pub struct Run {
    /// the root directory
    #[argh(option)]
    pub root: PathBuf,
    /// container name, for its cgroup and hostname (default run-PID)
    #[argh(option)]
    pub name: Option<String>,
    /// hostname (default: the name)
    #[argh(option)]
    pub hostname: Option<String>,
    /// add VAR=value to the command's environment (repeatable)
    #[argh(option, short = 'e')]
    pub env: Vec<String>,
    /// the cradle-shim executable (default: next to cradle)
    #[argh(option)]
    pub shim: Option<PathBuf>,
    /// the guest's user namespace: pick (the default: a free range of 65536 host ids, the
    /// same for a name while it is free), a host uid BASE (a multiple of 65536), or off (the
    /// guest's root is the host's root: not a security boundary)
    #[argh(option, default = "UsernsMode::Pick")]
    pub userns: UsernsMode,
    /// who owns the root's files on disk, with a user namespace: auto (the default: map
    /// where the file system allows it, else chown), map (an id-mapped mount; nothing is
    /// chowned), or chown (the owners are shifted into the guest's range, once)
    #[argh(option, default = "Ownership::Auto")]
    pub ownership: Ownership,
    /// keep this capability in the bounding set besides the default ones (repeatable, or a
    /// comma-separated list; e.g. CAP_SYS_TIME, net_admin, all)
    #[argh(option)]
    pub capability: Vec<String>,
    /// drop this capability from the bounding set (repeatable, or a list; wins over
    /// --capability)
    #[argh(option)]
    pub drop_capability: Vec<String>,
    /// the default seccomp filter: on (the default) or off
    #[argh(option, default = "Switch::On")]
    pub seccomp: Switch,
    /// memory limit (memory.max): a size such as 512M or 2G, or max
    #[argh(option)]
    pub memory: Option<String>,
    /// swap the guest may use besides --memory (memory.swap.max): a size, or max
    #[argh(option)]
    pub swap: Option<String>,
    /// most processes and threads, the shim included (pids.max), or max
    #[argh(option)]
    pub pids: Option<String>,
    /// CPU time, in CPUs: 0.5 is half of one (cpu.max), or max
    #[argh(option)]
    pub cpus: Option<String>,
    /// share of CPU time under contention, 1 to 10000, 100 by default (cpu.weight)
    #[argh(option)]
    pub cpu_weight: Option<String>,
    /// the network: none (the default: lo alone), nat (a veth on cradle0, an address of
    /// its pool, outbound NAT), bridge=BRIDGE, routed (needs --ip), macvlan=INTERFACE, or
    /// host (the host's network: no isolation)
    #[argh(option)]
    pub net: Option<String>,
    /// an address of the guest, ADDR[/PREFIX] (repeatable; bridge, routed, macvlan)
    #[argh(option)]
    pub ip: Vec<String>,
    /// the guest's default gateway (bridge, macvlan)
    #[argh(option)]
    pub gateway: Option<String>,
    /// a resolver for the guest's /etc/resolv.conf (repeatable; nat: the host's)
    #[argh(option)]
    pub dns: Vec<String>,
    /// the guest's MAC address (default: derived from the name)
    #[argh(option)]
    pub mac: Option<String>,
    /// the MTU of the guest's link
    #[argh(option)]
    pub mtu: Option<String>,
    /// forward a host port to the guest: [HOSTADDR:]HOSTPORT[:GUESTPORT][/tcp|/udp]
    /// (repeatable; nat, routed)
    #[argh(option)]
    pub port: Vec<String>,
    /// the command and its arguments, after --
    #[argh(positional, greedy)]
    pub command: Vec<String>,
}

/// Change the limits or port forwards of a running guest at once; its later boots keep
/// them. With --save, also in its config file (then the guest need not be running).
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "set")]
pub struct Set {
    /// container name
    #[argh(positional)]
    pub name: String,
    /// write the limits and forwards given into the config file NAME.toml too
    #[argh(switch)]
    pub save: bool,
    /// the guest's port forwards, replacing all it has ([HOSTADDR:]HOSTPORT[:GUESTPORT]
    /// [/tcp|/udp], repeatable; none: no forwards; nat and routed guests)
    #[argh(option)]
    pub port: Vec<String>,
    /// memory limit (memory.max): a size such as 512M or 2G, or max
    #[argh(option)]
    pub memory: Option<String>,
    /// swap the guest may use besides --memory (memory.swap.max): a size, or max
    #[argh(option)]
    pub swap: Option<String>,
    /// most processes and threads, the shim included (pids.max), or max
    #[argh(option)]
    pub pids: Option<String>,
    /// CPU time, in CPUs: 0.5 is half of one (cpu.max), or max
    #[argh(option)]
    pub cpus: Option<String>,
    /// share of CPU time under contention, 1 to 10000, 100 by default (cpu.weight)
    #[argh(option)]
    pub cpu_weight: Option<String>,
}

/// Show what a running guest is and uses: state, init, boots, uptime, limits, usage.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "status")]
pub struct Status {
    /// container name
    #[argh(positional)]
    pub name: String,
    /// print JSON (the README lists its fields)
    #[argh(switch)]
    pub json: bool,
}

/// List the running guests, one line each (or a JSON array of what status shows).
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "list")]
pub struct List {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Write the config file NAME.toml of a guest, for start, autostart and cradle@.service
/// (the root directory is not touched).
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "create")]
pub struct Create {
    /// container name
    #[argh(positional)]
    pub name: String,
    /// the guest's root directory (an existing directory)
    #[argh(option)]
    pub root: PathBuf,
    /// replace the config file if there is one
    #[argh(switch)]
    pub force: bool,
    /// start the guest at host boot (autostart)
    #[argh(switch)]
    pub onboot: bool,
    /// autostart order: higher first, then guests without one; autostop the other way
    #[argh(option)]
    pub bootorder: Option<u32>,
    /// hostname of the guest (default: the name)
    #[argh(option)]
    pub hostname: Option<String>,
    /// add VAR=value to the guest init's environment (repeatable)
    #[argh(option, short = 'e')]
    pub env: Vec<String>,
    /// the cradle-shim executable (default: next to cradle)
    #[argh(option)]
    pub shim: Option<PathBuf>,
    /// seconds a halt may take before the guest is powered off (default 60)
    #[argh(option)]
    pub timeout: Option<Seconds>,
    /// the guest's user namespace: pick, a host uid BASE, or off (as start takes it)
    #[argh(option)]
    pub userns: Option<UsernsMode>,
    /// who owns the root's files on disk: auto, map or chown (as start takes it)
    #[argh(option)]
    pub ownership: Option<Ownership>,
    /// keep this capability in the bounding set besides the default ones (repeatable)
    #[argh(option)]
    pub capability: Vec<String>,
    /// drop this capability from the bounding set (repeatable)
    #[argh(option)]
    pub drop_capability: Vec<String>,
    /// the default seccomp filter: on or off
    #[argh(option)]
    pub seccomp: Option<Switch>,
    /// memory limit (memory.max): a size such as 512M or 2G, or max
    #[argh(option)]
    pub memory: Option<String>,
    /// swap the guest may use besides --memory (memory.swap.max): a size, or max
    #[argh(option)]
    pub swap: Option<String>,
    /// most processes and threads, the shim included (pids.max), or max
    #[argh(option)]
    pub pids: Option<String>,
    /// CPU time, in CPUs: 0.5 is half of one (cpu.max), or max
    #[argh(option)]
    pub cpus: Option<String>,
    /// share of CPU time under contention, 1 to 10000, 100 by default (cpu.weight)
    #[argh(option)]
    pub cpu_weight: Option<String>,
    /// the network: none (the default: lo alone), nat (a veth on cradle0, an address of
    /// its pool, outbound NAT), bridge=BRIDGE, routed (needs --ip), macvlan=INTERFACE, or
    /// host (the host's network: no isolation)
    #[argh(option)]
    pub net: Option<String>,
    /// an address of the guest, ADDR[/PREFIX] (repeatable; bridge, routed, macvlan)
    #[argh(option)]
    pub ip: Vec<String>,
    /// the guest's default gateway (bridge, macvlan)
    #[argh(option)]
    pub gateway: Option<String>,
    /// a resolver for the guest's /etc/resolv.conf (repeatable; nat: the host's)
    #[argh(option)]
    pub dns: Vec<String>,
    /// the guest's MAC address (default: derived from the name)
    #[argh(option)]
    pub mac: Option<String>,
    /// the MTU of the guest's link
    #[argh(option)]
    pub mtu: Option<String>,
    /// forward a host port to the guest: [HOSTADDR:]HOSTPORT[:GUESTPORT][/tcp|/udp]
    /// (repeatable; nat, routed)
    #[argh(option)]
    pub port: Vec<String>,
}

/// Remove the config file NAME.toml of a guest that is not running (never its root).
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "destroy")]
pub struct Destroy {
    /// container name
    #[argh(positional)]
    pub name: String,
}

/// Start every guest whose config file says onboot = true, highest bootorder first, each
/// with cradle start --detach; one line per guest.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "autostart")]
pub struct Autostart {}

/// Stop the guests autostart starts, in the reverse order, each with cradle stop; one
/// line per guest.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "autostop")]
pub struct Autostop {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, argh::EarlyExit> {
        Cli::from_args(&["cradle"], args)
    }

    #[test]
    fn start_with_everything() {
        let cli = parse(&[
            "-v",
            "--state-dir",
            "/tmp/s",
            "start",
            "web1",
            "--root",
            "/srv/w",
            "-e",
            "A=1",
            "--env",
            "B=2",
            "--timeout",
            "5",
            "-d",
        ])
        .unwrap();
        assert_eq!(cli.verbose, 1);
        assert_eq!(cli.state_dir, Some(PathBuf::from("/tmp/s")));
        match cli.command {
            Command::Start(start) => {
                assert_eq!(start.name, "web1");
                assert_eq!(start.root, Some(PathBuf::from("/srv/w")));
                assert_eq!(start.env, ["A=1", "B=2"]);
                assert_eq!(start.timeout, Some(Seconds(5)));
                assert!(start.detach);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exec_keeps_the_command_s_own_options() {
        let cli = parse(&["exec", "web1", "--", "sh", "-c", "echo -v", "--timeout"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Exec(Exec {
                name: "web1".into(),
                env: vec![],
                timeout: None,
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo -v".into(),
                    "--timeout".into()
                ],
            })
        );
        let cli = parse(&["exec", "web1", "--timeout", "5", "--", "true"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Exec(Exec {
                timeout: Some(Seconds(5)),
                ..
            })
        ));
    }

    #[test]
    fn stop_modes() {
        for (word, mode) in [
            ("halt", Mode::Halt),
            ("reboot", Mode::Reboot),
            ("kill", Mode::Kill),
        ] {
            let cli = parse(&["stop", "a", "--mode", word]).unwrap();
            assert!(matches!(cli.command, Command::Stop(Stop { mode: m, .. }) if m == mode));
        }
        assert!(parse(&["stop", "a", "--mode", "explode"]).is_err());
        assert!(matches!(
            parse(&["stop", "a"]).unwrap().command,
            Command::Stop(Stop {
                mode: Mode::Halt,
                timeout: None,
                ..
            })
        ));
    }

    #[test]
    fn limit_values_are_taken_as_given_even_when_they_look_like_options() {
        let cli = parse(&[
            "set", "web1", "--cpus", "-1", "--memory", "lots", "--pids", "0",
        ])
        .unwrap();
        match cli.command {
            Command::Set(set) => {
                assert_eq!(set.cpus.as_deref(), Some("-1"));
                assert_eq!(set.given().memory, Some("lots"));
                assert_eq!(set.given().pids, Some("0"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["status", "web1", "--json"]).unwrap().command,
            Command::Status(Status { json: true, .. })
        ));
        assert!(matches!(
            parse(&["list"]).unwrap().command,
            Command::List(List { json: false })
        ));
    }

    #[test]
    fn ownership_modes() {
        let cli = parse(&["run", "--root", "/r", "--ownership", "chown", "--", "true"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run(Run {
                ownership: Ownership::Chown,
                ..
            })
        ));
        let cli = parse(&["run", "--root", "/r", "--", "true"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run(Run {
                ownership: Ownership::Auto,
                ..
            })
        ));
        let cli = parse(&["start", "a", "--ownership", "map"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Start(Start {
                ownership: Some(Ownership::Map),
                ..
            })
        ));
        assert!(parse(&["start", "a", "--ownership", "copy"]).is_err());
    }

    #[test]
    fn missing_pieces_are_usage_errors() {
        assert!(parse(&["start"]).is_err());
        assert!(parse(&["create", "web1"]).is_err(), "create needs --root");
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["stop", "a", "--timeout", "soon"]).is_err());
        assert!(parse(&["stop", "a", "--timeout", "18446744073709551615"]).is_err());
        assert!(parse(&["start", "a", "--root", "r", "--timeout", "86401"]).is_err());
        assert!(parse(&["start", "a", "--root", "r", "--timeout", "86400"]).is_ok());
    }

    #[test]
    fn start_without_root_and_the_config_commands() {
        let cli = parse(&["--config-dir", "/tmp/c", "start", "web1"]).unwrap();
        assert_eq!(cli.config_dir, Some(PathBuf::from("/tmp/c")));
        assert!(matches!(
            cli.command,
            Command::Start(Start { root: None, .. })
        ));
        let cli = parse(&[
            "create",
            "web1",
            "--root",
            "/srv/w",
            "--onboot",
            "--bootorder",
            "5",
            "--memory",
            "1G",
        ])
        .unwrap();
        match cli.command {
            Command::Create(c) => {
                assert!(c.onboot && !c.force);
                assert_eq!(c.bootorder, Some(5));
                assert_eq!(c.given().memory, Some("1G"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["set", "web1", "--pids", "5", "--save"])
                .unwrap()
                .command,
            Command::Set(Set { save: true, .. })
        ));
        assert!(parse(&["destroy", "web1"]).is_ok());
        assert!(parse(&["autostart"]).is_ok());
        assert!(parse(&["autostop"]).is_ok());
    }
}
