//! cradle's nftables ruleset: two tables of its own that nothing else writes, made once
//! per host by the `nft` program, whose chains never change after; what each guest holds
//! is elements of their sets and maps, which a boot adds and the launcher's end removes
//! over netlink (`nfnl`), one transaction each, without running a program.
//!
//! - `inet cradle`: `nat-out` (masquerade of the pool's traffic that leaves it, and of a
//!   guest reaching another through a forwarded port); `ports-in` (prerouting) and
//!   `ports-out` (output: the host's own connections) DNAT through the maps `fwd4`,
//!   `fwd6` (a port of any of the host's addresses) and `fwd4-at`, `fwd6-at` (a port of
//!   one host address) to the guest's address and port; `routed-in` filters what a
//!   `routed` guest's link sends (sets `routed`, `mac`, `addr4`, `addr6`, keyed by the
//!   host side's name);
//! - `bridge cradle`: `in` filters what a bridged guest's port sends, before the bridge
//!   forwards or delivers it (sets `ports`, `mac`, `addr4`, `addr6`).
//!
//! Every element carries the guest's name as its comment (`nft list ruleset` shows whose
//! it is). Two guests cannot forward the same host port: the second's element clashes,
//! and its boot is refused naming the port. A host without `nft` (or without nf_tables)
//! cannot run `nat`, `routed`, `--port` or a filtered guest, and says so in one line.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::nfnl::{self, Change, Element, Family, concat, ifname};
use super::{Mac, Mode, NAT_POOL4, NAT_POOL6, Network, Port, Proto};
use crate::error::{Error, Result};

/// Where `nft` is looked for besides `$PATH`.
const DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// True when the guest needs rules of ours.
pub fn needed(network: &Network) -> bool {
    network.mode == Mode::Nat || !network.ports.is_empty() || network.filtered()
}

/// The `nft` program, or the one-line error that says what the host lacks.
pub fn program() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Usage(
                "this network needs nftables: the nft program (Debian: apt-get install nftables) \
                 and nf_tables in the kernel"
                    .into(),
            )
        })
}

/// The whole ruleset, as one `nft -f` transaction that can be run again at any time: the
/// tables, sets and maps are made where missing (never emptied), the chains refilled.
pub fn ruleset() -> String {
    let (p4, l4) = NAT_POOL4;
    let (p6, l6) = NAT_POOL6;
    let mut s = String::from("add table inet cradle\n");
    for (name, key, data) in [
        ("fwd4", "inet_proto . inet_service", "ipv4_addr"),
        (
            "fwd4-at",
            "ipv4_addr . inet_proto . inet_service",
            "ipv4_addr",
        ),
        ("fwd6", "inet_proto . inet_service", "ipv6_addr"),
        (
            "fwd6-at",
            "ipv6_addr . inet_proto . inet_service",
            "ipv6_addr",
        ),
    ] {
        s.push_str(&format!(
            "add map inet cradle {name} {{ type {key} : {data} . inet_service; }}\n"
        ));
    }
    for family in ["inet", "bridge"] {
        if family == "bridge" {
            s.push_str("add table bridge cradle\n");
        }
        let gate = if family == "inet" { "routed" } else { "ports" };
        s.push_str(&format!(
            "add set {family} cradle {gate} {{ type ifname; }}\n\
             add set {family} cradle mac {{ type ifname . ether_addr; }}\n\
             add set {family} cradle addr4 {{ type ifname . ipv4_addr; }}\n\
             add set {family} cradle addr6 {{ type ifname . ipv6_addr; }}\n"
        ));
    }
    let chain = |s: &mut String, family: &str, name: &str, hook: Option<&str>, rules: &[&str]| {
        let spec = hook.map(|h| format!(" {{ {h}; }}")).unwrap_or_default();
        s.push_str(&format!(
            "add chain {family} cradle {name}{spec}\nflush chain {family} cradle {name}\n"
        ));
        for rule in rules {
            s.push_str(&format!("add rule {family} cradle {name} {rule}\n"));
        }
    };
    chain(
        &mut s,
        "inet",
        "nat-out",
        Some("type nat hook postrouting priority srcnat"),
        &[
            &format!("ip saddr {p4}/{l4} ip daddr != {p4}/{l4} masquerade"),
            &format!("ip saddr {p4}/{l4} ct status dnat masquerade"),
            &format!("ip6 saddr {p6}/{l6} ip6 daddr != {p6}/{l6} masquerade"),
            &format!("ip6 saddr {p6}/{l6} ct status dnat masquerade"),
        ],
    );
    // a forward to one host address first, then one to any of the host's own (from the
    // host itself, not its loopback: a packet from 127.0.0.1 cannot leave the host)
    let ports = |s: &mut String, name: &str, hook: &str, output: bool| {
        let mut rules = Vec::new();
        for (nfproto, ip, loopback) in [("ipv4", "ip", "127.0.0.0/8"), ("ipv6", "ip6", "::1")] {
            let v = if ip == "ip" { 4 } else { 6 };
            let to = format!("dnat {ip} to");
            rules.push(format!(
                "meta nfproto {nfproto} {to} {ip} daddr . meta l4proto . th dport map @fwd{v}-at"
            ));
            let local = if output {
                format!("{ip} daddr != {loopback} fib daddr type local")
            } else {
                "fib daddr type local".to_owned()
            };
            rules.push(format!(
                "meta nfproto {nfproto} {local} {to} meta l4proto . th dport map @fwd{v}"
            ));
        }
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        chain(s, "inet", name, Some(hook), &rules);
    };
    ports(
        &mut s,
        "ports-in",
        "type nat hook prerouting priority dstnat",
        false,
    );
    ports(
        &mut s,
        "ports-out",
        "type nat hook output priority -100",
        true,
    );
    // anti-spoofing (a chain jumped to is made before the one that jumps): another MAC, another source address, other ethertypes (bridged
    // guests: VLAN tags too) are dropped before the host or the bridge sees them
    chain(
        &mut s,
        "inet",
        "routed-guest",
        None,
        &[
            "iifname . ether saddr != @mac drop",
            "meta nfproto ipv4 iifname . ip saddr != @addr4 drop",
            "ip6 saddr { ::, fe80::/10 } accept",
            "meta nfproto ipv6 iifname . ip6 saddr != @addr6 drop",
        ],
    );
    chain(
        &mut s,
        "inet",
        "routed-in",
        Some("type filter hook prerouting priority -300"),
        &["iifname @routed jump routed-guest"],
    );
    chain(
        &mut s,
        "bridge",
        "guest",
        None,
        &[
            "iifname . ether saddr != @mac drop",
            "ether type arp iifname . arp saddr ether != @mac drop",
            "ether type arp arp saddr ip 0.0.0.0 accept",
            "ether type arp iifname . arp saddr ip != @addr4 drop",
            "ether type ip iifname . ip saddr != @addr4 drop",
            "ether type ip6 ip6 saddr { ::, fe80::/10 } accept",
            "ether type ip6 iifname . ip6 saddr != @addr6 drop",
            "ether type != { ip, ip6, arp } drop",
        ],
    );
    chain(
        &mut s,
        "bridge",
        "in",
        Some("type filter hook prerouting priority -300"),
        &["iifname @ports jump guest"],
    );
    s
}

/// Runs `script` with `nft -f` as one transaction.
fn run(script: &str, what: &str) -> Result<()> {
    let nft = program()?;
    let mut child = Command::new(&nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::host(format!("run {}", nft.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // a failure to write shows in nft's status
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::host(format!("run {}", nft.display()), e))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let first = said
        .lines()
        .find(|l| l.starts_with("Error:"))
        .or_else(|| said.lines().next())
        .unwrap_or("no word of why");
    log::debug!("nft failed on:\n{script}\n{said}");
    Err(Error::host(
        what.to_owned(),
        std::io::Error::other(first.to_owned()),
    ))
}

/// Which of a guest's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Its forwards' (`set --port`).
    Forwards,
    /// All of them.
    All,
}

fn addr_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The elements of one forward: to the guest's first address of each family (of the
/// host address's family only, where it names one).
fn forward(network: &Network, port: &Port) -> Vec<Element> {
    let proto = [match port.proto {
        Proto::Tcp => libc::IPPROTO_TCP as u8,
        Proto::Udp => libc::IPPROTO_UDP as u8,
    }];
    let host_port = port.host_port.to_be_bytes();
    let guest_port = port.guest_port.to_be_bytes();
    let mut out = Vec::new();
    for v6 in [false, true] {
        let Some(to) = network.addresses.iter().find(|c| c.addr.is_ipv6() == v6) else {
            continue;
        };
        let (set, key) = match port.host_addr {
            Some(at) if at.is_ipv6() != v6 => continue,
            Some(at) => (
                if v6 { "fwd6-at" } else { "fwd4-at" },
                concat(&[&addr_bytes(at), &proto, &host_port]),
            ),
            None => (
                if v6 { "fwd6" } else { "fwd4" },
                concat(&[&proto, &host_port]),
            ),
        };
        out.push(Element {
            family: Family::Inet,
            set,
            key,
            data: Some(concat(&[&addr_bytes(to.addr), &guest_port])),
            comment: network.name.clone(),
        });
    }
    out
}

/// The anti-spoofing elements of a filtered guest: its link, its MAC and its addresses.
fn filter(network: &Network) -> Vec<Element> {
    let Some(link) = network.host_link.as_deref().filter(|_| network.filtered()) else {
        return Vec::new();
    };
    let (family, gate) = match network.mode {
        Mode::Routed => (Family::Inet, "routed"),
        _ => (Family::Bridge, "ports"),
    };
    let name = ifname(link);
    let mac = network.mac.unwrap_or_else(|| Mac::for_name(&network.name));
    let element = |set, key: Vec<u8>| Element {
        family,
        set,
        key,
        data: None,
        comment: network.name.clone(),
    };
    let mut out = vec![
        element(gate, name.to_vec()),
        element("mac", concat(&[&name, &mac.0])),
    ];
    for cidr in &network.addresses {
        let set = if cidr.addr.is_ipv6() {
            "addr6"
        } else {
            "addr4"
        };
        out.push(element(set, concat(&[&name, &addr_bytes(cidr.addr)])));
    }
    out
}

/// The elements `which` of the guest.
pub fn elements(network: &Network, which: Which) -> Vec<Element> {
    let mut out: Vec<Element> = network
        .ports
        .iter()
        .flat_map(|p| forward(network, p))
        .collect();
    if which == Which::All {
        out.extend(filter(network));
    }
    out
}

/// The words for a refused element: a forward's port clashes with another guest's.
fn refusal(network: &Network, refused: nfnl::Refused, what: &str) -> Error {
    if refused.error.raw_os_error() == Some(libc::EEXIST) {
        if let Some(element) = &refused.element {
            let port = network
                .ports
                .iter()
                .find(|p| forward(network, p).contains(element));
            if let Some(port) = port {
                return Error::Usage(format!(
                    "--port {port}: the host's port {}/{} is forwarded to another guest",
                    port.host_port, port.proto
                ));
            }
        }
    }
    let error = match &refused.element {
        Some(e) => std::io::Error::new(
            refused.error.kind(),
            format!("{} cradle {}: {}", e.family.name(), e.set, refused.error),
        ),
        None => refused.error,
    };
    Error::host(what.to_owned(), error)
}

/// Adds `elements` of `network`; where the ruleset is missing (the host's first guest
/// since it booted, or someone flushed it), makes it and adds them again.
fn add_elements(network: &Network, elements: &[Element], what: &str) -> Result<()> {
    match nfnl::commit(Change::Add, elements) {
        Err(r) if r.error.raw_os_error() == Some(libc::ENOENT) => {
            run(&ruleset(), "make cradle's nftables ruleset")?;
            nfnl::commit(Change::Add, elements).map_err(|r| refusal(network, r, what))
        }
        other => other.map_err(|r| refusal(network, r, what)),
    }
}

/// Makes the guest's elements for one boot (those of the boot before stay as they are).
pub fn add(network: &Network) -> Result<()> {
    let what = format!("set up the nftables rules of {}", network.name);
    add_elements(network, &elements(network, Which::All), &what)
}

/// Removes the guest's elements `which`: in one transaction, or where some are missing
/// (a killed launcher's, a ruleset made again), one at a time, passing over the missing.
pub fn remove(network: &Network, which: Which) -> Result<()> {
    let elements = elements(network, which);
    let what = format!("remove the nftables rules of {}", network.name);
    let missing = |r: &nfnl::Refused| r.error.raw_os_error() == Some(libc::ENOENT);
    match nfnl::commit(Change::Delete, &elements) {
        Err(r) if missing(&r) => {
            for element in elements {
                match nfnl::commit(Change::Delete, std::slice::from_ref(&element)) {
                    Err(r) if !missing(&r) => return Err(refusal(network, r, &what)),
                    _ => {}
                }
            }
            Ok(())
        }
        other => other.map_err(|r| refusal(network, r, &what)),
    }
}

/// Replaces the running guest's forwards, `old`'s, with `new`'s (`cradle set --port`);
/// where the new ones are refused, the old ones are put back.
pub fn set_forwards(old: &Network, new: &Network) -> Result<()> {
    remove(old, Which::Forwards)?;
    let what = format!("set the forwards of {}", new.name);
    let added = add_elements(new, &elements(new, Which::Forwards), &what);
    if added.is_err() {
        let _ = add_elements(old, &elements(old, Which::Forwards), &what);
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(mode: Mode, addrs: &[&str], ports: &[&str]) -> Network {
        Network {
            mode,
            host_link: Some("ve-web".into()),
            mac: Some(Mac([2, 0, 0, 0, 0, 1])),
            addresses: addrs
                .iter()
                .map(|a| a.to_string().try_into().unwrap())
                .collect(),
            ports: ports.iter().map(|p| p.parse().unwrap()).collect(),
            ..Network::unlinked("web", Mode::None)
        }
    }

    fn sets(elements: &[Element]) -> Vec<(&'static str, &'static str)> {
        elements.iter().map(|e| (e.family.name(), e.set)).collect()
    }

    #[test]
    fn a_nat_guest_holds_its_forwards_and_its_bridge_port_filter() {
        let g = guest(
            Mode::Nat,
            &["10.213.0.9/16", "fd63:7261:646c::9/64"],
            &["8080:80"],
        );
        let all = elements(&g, Which::All);
        assert_eq!(
            sets(&all),
            [
                ("inet", "fwd4"),
                ("inet", "fwd6"),
                ("bridge", "ports"),
                ("bridge", "mac"),
                ("bridge", "addr4"),
                ("bridge", "addr6"),
            ]
        );
        // tcp . 8080 : 10.213.0.9 . 80
        assert_eq!(all[0].key, [6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(
            all[0].data.as_deref(),
            Some(&[10, 213, 0, 9, 0, 80, 0, 0][..])
        );
        assert!(all.iter().all(|e| e.comment == "web"));
        assert_eq!(&all[3].key[16..], [2, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(sets(&elements(&g, Which::Forwards)), sets(&all[..2]));
    }

    #[test]
    fn a_forward_to_one_host_address_goes_to_its_family_only() {
        let g = guest(
            Mode::Routed,
            &["192.0.2.5/32", "2001:db8::5/128"],
            &["[2001:db8::1]:53:5353/udp"],
        );
        let all = elements(&g, Which::All);
        assert_eq!(sets(&all)[0], ("inet", "fwd6-at"));
        assert_eq!(all[0].key.len(), 24);
        assert_eq!(&all[0].key[16..], [17, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(all[0].data.as_ref().unwrap().len(), 20);
        assert!(sets(&all[1..]).iter().all(|(f, _)| *f == "inet"));
        assert_eq!(all[1].set, "routed");
    }

    #[test]
    fn a_guest_without_addresses_is_not_filtered() {
        let g = guest(Mode::Bridge("br0".into()), &[], &[]);
        assert!(elements(&g, Which::All).is_empty());
        assert!(!needed(&g));
    }

    fn ruleset_listed() -> String {
        let out = Command::new(program().unwrap())
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn a_guests_elements_make_the_ruleset_come_again_clash_and_go() {
        crate::net::link::in_new_netns(|| {
            let web = guest(
                Mode::Nat,
                &["10.213.0.9/16", "fd63:7261:646c::9/64"],
                &["8080:80", "192.0.2.1:53:5353/udp"],
            );
            add(&web).expect("the first guest makes the ruleset");
            add(&web).expect("a reboot adds the same elements again");
            let listed = ruleset_listed();
            for shown in [
                "tcp . 8080 comment \"web\" : 10.213.0.9 . 80",
                "tcp . 8080 comment \"web\" : fd63:7261:646c::9 . 80",
                "192.0.2.1 . udp . 53 comment \"web\" : 10.213.0.9 . 5353",
                "\"ve-web\" . 02:00:00:00:00:01 comment \"web\"",
                "\"ve-web\" . fd63:7261:646c::9 comment \"web\"",
            ] {
                assert!(listed.contains(shown), "{shown} in\n{listed}");
            }
            let mut db = guest(Mode::Nat, &["10.213.0.10/16"], &["8080:8080"]);
            db.name = "db".into();
            db.host_link = Some("ve-db".into());
            let clash = add(&db).unwrap_err().to_string();
            assert!(
                clash.contains("8080/tcp is forwarded to another guest"),
                "{clash}"
            );
            assert!(
                !ruleset_listed().contains("ve-db"),
                "nothing of a refused batch"
            );
            let mut moved = web.clone();
            moved.ports = vec!["8081:80".parse().unwrap()];
            set_forwards(&web, &moved).unwrap();
            let listed = ruleset_listed();
            assert!(listed.contains("tcp . 8081 comment"), "{listed}");
            assert!(!listed.contains("tcp . 8080"), "{listed}");
            remove(&moved, Which::All).unwrap();
            remove(&moved, Which::All).expect("what is missing is passed over");
            assert!(
                !ruleset_listed().contains("comment"),
                "{}",
                ruleset_listed()
            );
        });
    }

    #[test]
    fn the_ruleset_refills_its_chains_and_never_empties_a_set() {
        let r = ruleset();
        assert!(!r.contains("flush set") && !r.contains("delete"), "{r}");
        for chain in ["inet cradle ports-in", "bridge cradle guest"] {
            let add = r.find(&format!("add chain {chain}")).unwrap();
            let flush = r.find(&format!("flush chain {chain}")).unwrap();
            let rule = r.find(&format!("add rule {chain}")).unwrap();
            assert!(add < flush && flush < rule, "{r}");
        }
        assert!(r.contains("ip saddr 10.213.0.0/16 ip daddr != 10.213.0.0/16 masquerade"));
    }
}
