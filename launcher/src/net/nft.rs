//! cradle's nftables rules, in two tables of its own that nothing else writes:
//!
//! - `inet cradle`: `nat-out`, shared by every `--net nat` guest (masquerade of the pool's
//!   traffic that leaves it, and of a guest reaching another through a forwarded port), and
//!   per guest `g-NAME-dnat` (prerouting) and `g-NAME-out` (output: the host's own
//!   connections) for its `--port` forwards;
//! - `netdev cradle`: per guest `g-NAME-in`, on the ingress of its host-side veth: frames from
//!   another MAC, and packets from another address than the guest's, are dropped there,
//!   before the bridge or the host's routing sees them.
//!
//! Each guest's rules live in chains named after it, so they go exactly, and with one
//! `nft -f` transaction each: a boot makes them where missing and refills them (adding
//! only: see [`boot_script`]), the launcher's end removes them, and what a killed launcher
//! left is removed by the sweep (`setup::detach`). The rules are written as nft's own language and given
//! to the `nft` program: a host without it (or without nf_tables) cannot run `nat`,
//! `routed`, `--port` or a filtered guest, and says so in one line.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{Cidr, Mode, NAT_POOL4, NAT_POOL6, Network, Port};
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

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// The name of `guest`'s chain `what`: `g-NAME-WHAT` (nft 1.0.6 takes no quoted chain
/// names; a guest's name, letters, digits and `_.-`, is an nft identifier after `g-`).
fn chain(guest: &str, what: &str) -> String {
    format!("g-{guest}-{what}")
}

/// Which of a guest's chains to remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chains {
    /// Its forwards' (`set --port none`).
    Forwards,
    /// Those its record says it has (its launcher's end): every chain removed costs.
    Recorded,
    /// All it may have (what a killed launcher left).
    All,
}

/// The commands that remove `network`'s chains `which` (made first where missing, so that
/// they can always be removed: nft 1.0.6 has no `destroy`).
fn removal(network: &Network, which: Chains) -> String {
    let name = &network.name;
    let mut script = String::from("add table inet cradle\nadd table netdev cradle\n");
    let forwards = match which {
        Chains::Recorded => !network.ports.is_empty(),
        Chains::Forwards | Chains::All => true,
    };
    let filter = match which {
        Chains::Recorded => network.filtered(),
        Chains::Forwards => false,
        Chains::All => true,
    };
    let mut chains = Vec::new();
    if forwards {
        chains.extend([("inet", chain(name, "dnat")), ("inet", chain(name, "out"))]);
    }
    if filter {
        chains.push(("netdev", chain(name, "in")));
    }
    for (family, chain) in chains {
        for verb in ["add", "flush", "delete"] {
            script.push_str(&format!("{verb} chain {family} cradle {chain}\n"));
        }
    }
    script
}

/// The `nat-out` chain, whole again (a transaction: nobody sees it empty).
fn masquerade() -> String {
    let (p4, l4) = NAT_POOL4;
    let (p6, l6) = NAT_POOL6;
    format!(
        "add table inet cradle\n\
         add chain inet cradle nat-out {{ type nat hook postrouting priority srcnat; }}\n\
         flush chain inet cradle nat-out\n\
         add rule inet cradle nat-out ip saddr {p4}/{l4} ip daddr != {p4}/{l4} masquerade\n\
         add rule inet cradle nat-out ip saddr {p4}/{l4} ct status dnat masquerade\n\
         add rule inet cradle nat-out ip6 saddr {p6}/{l6} ip6 daddr != {p6}/{l6} masquerade\n\
         add rule inet cradle nat-out ip6 saddr {p6}/{l6} ct status dnat masquerade\n"
    )
}

/// The DNAT rule of one forward to the guest's address `to`, for chain `chain`; none when
/// the forward names a host address of the other family.
fn forward(chain: &str, port: &Port, to: IpAddr, output: bool) -> Option<String> {
    let (family, daddr, loopback, target) = match to {
        IpAddr::V4(a) => ("ipv4", "ip daddr", "127.0.0.0/8", format!("ip to {a}")),
        IpAddr::V6(a) => ("ipv6", "ip6 daddr", "::1", format!("ip6 to [{a}]")),
    };
    let which = match port.host_addr {
        Some(addr) if addr.is_ipv4() != to.is_ipv4() => return None,
        Some(addr) => format!("{daddr} {addr}"),
        // the host's own addresses; from the host itself, not its loopback (a packet from
        // 127.0.0.1 cannot leave the host: see the README)
        None if output => format!("{daddr} != {loopback} fib daddr type local"),
        None => "fib daddr type local".to_owned(),
    };
    Some(format!(
        "add rule inet cradle {chain} meta nfproto {family} {which} {proto} dport {hp} dnat {target}:{gp}\n",
        proto = port.proto,
        hp = port.host_port,
        gp = port.guest_port,
    ))
}

/// The set of `addrs` of one family, as nft writes it, with `extra` members.
fn set(addrs: &[&Cidr], extra: &[&str]) -> String {
    let members: Vec<String> = extra
        .iter()
        .map(|s| s.to_string())
        .chain(addrs.iter().map(|c| c.addr.to_string()))
        .collect();
    format!("{{ {} }}", members.join(", "))
}

/// The anti-spoofing chain on the ingress of the guest's host-side link.
fn filter(network: &Network, device: &str) -> String {
    let chain = format!("netdev cradle {}", chain(&network.name, "in"));
    // where the chain outlived the last boot's link (newer kernels keep it, and hook it
    // to the new link of the same name), it is refilled
    let mut s = format!(
        "add chain {chain} {{ type filter hook ingress device {} priority -500; }}\n\
         flush chain {chain}\n",
        quoted(device)
    );
    let rule = |s: &mut String, body: &str| s.push_str(&format!("add rule {chain} {body}\n"));
    if let Some(mac) = network.mac {
        rule(&mut s, &format!("ether saddr != {mac} drop"));
        rule(
            &mut s,
            &format!("ether type arp arp saddr ether != {mac} drop"),
        );
    }
    let v4: Vec<&Cidr> = network
        .addresses
        .iter()
        .filter(|c| c.addr.is_ipv4())
        .collect();
    let v6: Vec<&Cidr> = network
        .addresses
        .iter()
        .filter(|c| c.addr.is_ipv6())
        .collect();
    if v4.is_empty() {
        rule(&mut s, "ether type { ip, arp } drop");
    } else {
        rule(
            &mut s,
            &format!(
                "ether type arp arp saddr ip != {} drop",
                set(&v4, &["0.0.0.0"])
            ),
        );
        rule(
            &mut s,
            &format!("ether type ip ip saddr != {} drop", set(&v4, &[])),
        );
    }
    rule(
        &mut s,
        &format!(
            "ether type ip6 ip6 saddr != {} drop",
            set(&v6, &["::", "fe80::/10"])
        ),
    );
    rule(&mut s, "ether type != { ip, ip6, arp } drop");
    s
}

/// The forwards' chains, made where missing and refilled (none without forwards).
fn forwards(network: &Network) -> String {
    let name = &network.name;
    let mut script = String::new();
    if !network.ports.is_empty() {
        for (suffix, hook, priority, output) in [
            ("dnat", "prerouting", "dstnat", false),
            ("out", "output", "-100", true),
        ] {
            let chain = chain(name, suffix);
            script.push_str(&format!(
                "add chain inet cradle {chain} {{ type nat hook {hook} priority {priority}; }}\n\
                 flush chain inet cradle {chain}\n"
            ));
            for port in &network.ports {
                // to the guest's first address of each family
                for v6 in [false, true] {
                    if let Some(to) = network.addresses.iter().find(|c| c.addr.is_ipv6() == v6) {
                        script.extend(forward(&chain, port, to.addr, output));
                    }
                }
            }
        }
    }
    script
}

/// The whole transaction of one boot. Only additions: a transaction that deletes a chain
/// costs the kernel a grace period (about 14 ms here, against 4 ms for nft itself). The
/// guest's chains are made where missing and refilled (so a reboot or `set --port`
/// replaces them); the launcher removes them when it ends (`setup::finish`).
pub fn boot_script(network: &Network, device: Option<&str>) -> String {
    let mut script = String::from("add table inet cradle\nadd table netdev cradle\n");
    if network.mode == Mode::Nat {
        script.push_str(&masquerade());
    }
    script.push_str(&forwards(network));
    if let (true, Some(device)) = (network.filtered(), device) {
        script.push_str(&filter(network, device));
    }
    script
}

/// Runs `script` as one transaction.
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

/// Makes the guest's rules for one boot (its link's host side `device`).
pub fn add(network: &Network, device: Option<&str>) -> Result<()> {
    run(
        &boot_script(network, device),
        &format!("set up the nftables rules of {}", network.name),
    )
}

/// Replaces the running guest's forwards with `network`'s (`cradle set --port`).
pub fn set_forwards(network: &Network) -> Result<()> {
    let script = format!("add table inet cradle\n{}", forwards(network));
    run(&script, &format!("set the forwards of {}", network.name))
}

/// Removes the guest's chains `which`.
pub fn remove(network: &Network, which: Chains) -> Result<()> {
    run(
        &removal(network, which),
        &format!("remove the nftables rules of {}", network.name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Mac;

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

    #[test]
    fn a_boot_refills_the_guests_chains_in_one_transaction_that_deletes_nothing() {
        let script = boot_script(
            &guest(Mode::Nat, &["10.213.0.9/16"], &["8080:80"]),
            Some("ve-web"),
        );
        assert!(!script.contains("delete"), "{script}");
        for chain in ["inet cradle g-web-dnat", "netdev cradle g-web-in"] {
            let add = script.find(&format!("add chain {chain} {{")).unwrap();
            let flush = script.find(&format!("flush chain {chain}")).unwrap();
            let rule = script.find(&format!("add rule {chain}")).unwrap();
            assert!(add < flush && flush < rule, "{script}");
        }
        let g = guest(Mode::Nat, &["10.213.0.9/16"], &[]);
        let all = removal(&g, Chains::All);
        assert!(all.contains("delete chain netdev cradle g-web-in") && all.contains("g-web-dnat"));
        let recorded = removal(&g, Chains::Recorded);
        assert!(
            recorded.contains("g-web-in") && !recorded.contains("g-web-dnat"),
            "{recorded}"
        );
        assert!(!removal(&g, Chains::Forwards).contains("g-web-in"));
        assert!(script.contains("masquerade"));
        assert!(
            script.contains(
                "meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.213.0.9:80"
            ),
            "{script}"
        );
        assert!(script.contains("ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8080"));
        assert!(script.contains("device \"ve-web\""));
        assert!(script.contains("ether saddr != 02:00:00:00:00:01 drop"));
        assert!(
            script.contains("ip saddr != { 10.213.0.9 } drop"),
            "{script}"
        );
    }

    #[test]
    fn a_forward_to_one_host_address_goes_to_its_family_only() {
        let g = guest(
            Mode::Routed,
            &["192.0.2.5/32", "2001:db8::5/128"],
            &["[2001:db8::1]:53:5353/udp"],
        );
        let script = boot_script(&g, Some("ve-web"));
        assert!(
            script.contains("ip6 daddr 2001:db8::1 udp dport 53 dnat ip6 to [2001:db8::5]:5353"),
            "{script}"
        );
        assert!(!script.contains("dnat ip to"), "{script}");
        assert!(
            !script.contains("masquerade"),
            "routed guests keep their addresses"
        );
    }

    #[test]
    fn a_guest_without_addresses_is_not_filtered() {
        let g = guest(Mode::Bridge("br0".into()), &[], &[]);
        assert!(!boot_script(&g, Some("ve-web")).contains("netdev cradle g-web-in {"));
        assert!(!needed(&g));
        let v6only = guest(Mode::Bridge("br0".into()), &["2001:db8::5/64"], &[]);
        let script = boot_script(&v6only, Some("ve-web"));
        assert!(script.contains("ether type { ip, arp } drop"), "{script}");
        assert!(
            script.contains("ip6 saddr != { ::, fe80::/10, 2001:db8::5 } drop"),
            "{script}"
        );
    }
}
