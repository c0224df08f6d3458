//! A guest's network: what `--net` and its options ask for ([`Request`], checked before
//! anything is made), what a guest holds while it runs ([`Network`], the record in its
//! state directory that `status` shows and the sweep reads), and the links, addresses,
//! routes and rules that every boot makes and every boot's end removes (`setup`).
//!
//! - `link`: rtnetlink (links, addresses, routes), in the launcher's own network namespace
//!   or, through a socket made there, in the guest's;
//! - `nft`: cradle's nftables tables (`inet cradle`, `bridge cradle`): outbound NAT, port
//!   forwards, the guests' anti-spoofing filter, and what a guest holds of them;
//! - `nfnl`: the elements of their sets and maps, added and removed over netlink;
//! - `lease`: addresses held per guest name, as the user-namespace ranges are;
//! - `setup`: one boot's network, made before the guest's init runs and removed after.

pub mod lease;
pub mod link;
pub mod nfnl;
pub mod nft;
pub mod setup;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The bridge of `--net nat`, made on first use.
pub const NAT_BRIDGE: &str = "cradle0";
/// `--net nat`'s IPv4 pool: the bridge holds its first address, guests the others.
pub const NAT_POOL4: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 213, 0, 0), 16);
/// `--net nat`'s IPv6 pool (a ULA: "crad" in its global id), where the host has IPv6.
pub const NAT_POOL6: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfd63, 0x7261, 0x646c, 0, 0, 0, 0, 0), 64);
/// The host side's gateway addresses in `--net routed` (link-local: never routed on).
pub const ROUTED_GATEWAY4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
pub const ROUTED_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The guest's side of its link.
pub const GUEST_LINK: &str = "eth0";

/// How the guest is networked (`--net`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Mode {
    /// A network namespace of its own with `lo` alone.
    None,
    /// The host's network namespace: no isolation.
    Host,
    /// A veth on cradle's bridge, an address of its pool, outbound NAT.
    Nat,
    /// A veth on an existing bridge.
    Bridge(String),
    /// A veth the host routes the guest's addresses to.
    Routed,
    /// A macvlan (bridge mode) on a host interface.
    Macvlan(String),
}

impl Mode {
    /// True when the guest gets a network namespace of its own.
    pub fn private(&self) -> bool {
        *self != Mode::Host
    }

    /// True when the guest gets a link (and so something to set up at every boot).
    pub fn linked(&self) -> bool {
        !matches!(self, Mode::None | Mode::Host)
    }

    /// True when the host side is a veth of the guest's (`ve-NAME`).
    pub fn veth(&self) -> bool {
        matches!(self, Mode::Nat | Mode::Bridge(_) | Mode::Routed)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Mode::None => f.write_str("none"),
            Mode::Host => f.write_str("host"),
            Mode::Nat => f.write_str("nat"),
            Mode::Bridge(br) => write!(f, "bridge={br}"),
            Mode::Routed => f.write_str("routed"),
            Mode::Macvlan(dev) => write!(f, "macvlan={dev}"),
        }
    }
}

impl From<Mode> for String {
    fn from(mode: Mode) -> String {
        mode.to_string()
    }
}

impl TryFrom<String> for Mode {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let device = |kind: &str, name: &str| {
            check_link_name(name)
                .map_err(|why| format!("bad --net {kind}={name}: {why}"))
                .map(|()| name.to_owned())
        };
        match s.split_once('=') {
            None => match s {
                "none" => Ok(Mode::None),
                "host" => Ok(Mode::Host),
                "nat" => Ok(Mode::Nat),
                "routed" => Ok(Mode::Routed),
                "bridge" | "macvlan" => Err(format!(
                    "bad --net {s}: name the host's interface ({s}=NAME)"
                )),
                _ => Err(format!(
                    "bad --net {s:?}: use none, host, nat, routed, bridge=BRIDGE or macvlan=INTERFACE"
                )),
            },
            Some(("bridge", name)) => device("bridge", name).map(Mode::Bridge),
            Some(("macvlan", name)) => device("macvlan", name).map(Mode::Macvlan),
            Some(_) => Err(format!(
                "bad --net {s:?}: use none, host, nat, routed, bridge=BRIDGE or macvlan=INTERFACE"
            )),
        }
    }
}

/// An interface name as the kernel takes it: 1 to 15 bytes, no '/', ':' or white space.
fn check_link_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.len() > 15 {
        return Err("an interface name has 1 to 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("not an interface name");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || !b.is_ascii_graphic())
    {
        return Err("an interface name has no '/', ':' or white space");
    }
    Ok(())
}

/// An address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The network it is in, as a `Cidr` whose host bits are zero.
    pub fn network(self) -> Cidr {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }

    /// True when the two networks share an address.
    pub fn overlaps(self, other: Cidr) -> bool {
        if self.addr.is_ipv4() != other.addr.is_ipv4() {
            return false;
        }
        let prefix = self.prefix.min(other.prefix);
        Cidr { prefix, ..self }.network() == Cidr { prefix, ..other }.network()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> String {
        cidr.to_string()
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        parse_cidr(&s, None)
    }
}

/// `ADDR[/PREFIX]`, the prefix `default` (v4, v6) when there is none.
fn parse_cidr(s: &str, default: Option<(u8, u8)>) -> std::result::Result<Cidr, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("bad address {s:?}: not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match (prefix, default) {
        (Some(p), _) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("bad address {s:?}: the prefix is 0 to {max}"))?,
        (None, Some((v4, v6))) => {
            if addr.is_ipv4() {
                v4
            } else {
                v6
            }
        }
        (None, None) => max,
    };
    Ok(Cidr { addr, prefix })
}

/// An address a guest may hold: a unicast one that is neither loopback nor unspecified.
fn check_unicast(addr: IpAddr, what: &str) -> Result<()> {
    let bad = match addr {
        IpAddr::V4(a) => {
            a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast()
        }
        IpAddr::V6(a) => a.is_unspecified() || a.is_loopback() || a.is_multicast(),
    };
    if bad {
        return Err(Error::Usage(format!(
            "bad {what} {addr}: not a unicast address a guest can hold"
        )));
    }
    Ok(())
}

/// The protocol of a port forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A host port forwarded to the guest (`--port [HOSTADDR:]HOSTPORT[:GUESTPORT][/tcp|/udp]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Port {
    /// Only connections to this host address; any of the host's own addresses without.
    pub host_addr: Option<IpAddr>,
    pub host_port: u16,
    pub guest_port: u16,
    pub proto: Proto,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.host_addr {
            Some(IpAddr::V6(a)) => write!(f, "[{a}]:")?,
            Some(IpAddr::V4(a)) => write!(f, "{a}:")?,
            None => {}
        }
        write!(f, "{}:{}/{}", self.host_port, self.guest_port, self.proto)
    }
}

impl From<Port> for String {
    fn from(port: Port) -> String {
        port.to_string()
    }
}

impl TryFrom<String> for Port {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl FromStr for Port {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| format!("bad --port {s:?}: {why}");
        let (rest, proto) = match s.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Proto::Tcp),
            Some((rest, "udp")) => (rest, Proto::Udp),
            Some(_) => return Err(bad("the protocol is tcp or udp")),
            None => (s, Proto::Tcp),
        };
        // [v6]:port..., v4:port:port, port:port, port
        let (host_addr, ports) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, ports) = v6
                .split_once("]:")
                .ok_or_else(|| bad("write an IPv6 address as [ADDR]:PORT"))?;
            let addr: Ipv6Addr = addr.parse().map_err(|_| bad("not an IPv6 address"))?;
            (Some(IpAddr::V6(addr)), ports)
        } else {
            let words: Vec<&str> = rest.split(':').collect();
            match words.as_slice() {
                [first] | [first, _] if first.bytes().all(|b| b.is_ascii_digit()) => (None, rest),
                [addr, ..] => {
                    let addr: Ipv4Addr = addr
                        .parse()
                        .map_err(|_| bad("HOSTADDR is an IPv4 address or [an IPv6 one]"))?;
                    (Some(IpAddr::V4(addr)), &rest[words[0].len() + 1..])
                }
                [] => unreachable!("split yields at least one word"),
            }
        };
        let number = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("a port is 1 to 65535"))
        };
        let (host_port, guest_port) = match ports.split_once(':') {
            Some((h, g)) => (number(h)?, number(g)?),
            None => (number(ports)?, number(ports)?),
        };
        Ok(Port {
            host_addr,
            host_port,
            guest_port,
            proto,
        })
    }
}

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The guest's stable MAC: from its name, locally administered and unicast (as nspawn
    /// derives its own).
    pub fn for_name(name: &str) -> Mac {
        let mut mac = [0u8; 6];
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in b"cradle-mac:".iter().chain(name.as_bytes()) {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        mac.copy_from_slice(&hash.to_be_bytes()[..6]);
        mac[0] = (mac[0] & 0xfe) | 0x02;
        Mac(mac)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl From<Mac> for String {
    fn from(mac: Mac) -> String {
        mac.to_string()
    }
}

impl TryFrom<String> for Mac {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("bad --mac {s:?}: write six hex bytes, 02:00:5e:10:00:01");
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        if mac[0] & 1 == 1 || mac == [0; 6] {
            return Err(format!("bad --mac {s}: not a unicast address"));
        }
        Ok(Mac(mac))
    }
}

/// The network options as given on the command line or in a config file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Given<'a> {
    pub net: Option<&'a str>,
    pub ip: &'a [String],
    pub gateway: Option<&'a str>,
    pub dns: &'a [String],
    pub mac: Option<&'a str>,
    pub mtu: Option<&'a str>,
    pub port: &'a [String],
}

/// What the options ask for, checked: nothing is made from options that do not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub mode: Mode,
    pub ips: Vec<Cidr>,
    pub gateway: Option<IpAddr>,
    /// None: the mode's default (the host's resolvers with `nat`, the guest's own file
    /// otherwise).
    pub dns: Option<Vec<IpAddr>>,
    pub mac: Option<Mac>,
    pub mtu: Option<u32>,
    pub ports: Vec<Port>,
}

impl Request {
    /// `--net none`, nothing else.
    pub fn none() -> Self {
        Request {
            mode: Mode::None,
            ips: Vec::new(),
            gateway: None,
            dns: None,
            mac: None,
            mtu: None,
            ports: Vec::new(),
        }
    }

    pub fn parse(given: &Given) -> Result<Self> {
        let mode: Mode = given.net.unwrap_or("none").parse().map_err(Error::Usage)?;
        let usage = |s: String| Error::Usage(s);
        let prefixes = match mode {
            Mode::Routed => None,
            _ => Some((24, 64)),
        };
        let ips = given
            .ip
            .iter()
            .map(|s| parse_cidr(s, prefixes).map_err(usage))
            .collect::<Result<Vec<_>>>()?;
        for ip in &ips {
            check_unicast(ip.addr, "--ip")?;
        }
        // a routed guest's addresses are its own, each routed to it alone
        let ips = if mode == Mode::Routed {
            ips.into_iter()
                .map(|ip| Cidr {
                    prefix: if ip.addr.is_ipv4() { 32 } else { 128 },
                    ..ip
                })
                .collect()
        } else {
            ips
        };
        let gateway = given
            .gateway
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| usage(format!("bad --gateway {s:?}: not an address")))
            })
            .transpose()?;
        let dns = (!given.dns.is_empty())
            .then(|| {
                given
                    .dns
                    .iter()
                    .map(|s| {
                        s.parse::<IpAddr>()
                            .map_err(|_| usage(format!("bad --dns {s:?}: not an address")))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        let mac = given
            .mac
            .map(|s| s.parse::<Mac>().map_err(usage))
            .transpose()?;
        let mtu = given
            .mtu
            .map(|s| {
                s.parse::<u32>()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| usage(format!("bad --mtu {s:?}: use 68 to 65535")))
            })
            .transpose()?;
        let ports = parse_ports(given.port)?;
        let request = Request {
            mode,
            ips,
            gateway,
            dns,
            mac,
            mtu,
            ports,
        };
        request.check()?;
        Ok(request)
    }

    /// The options that do not go with the mode, or with each other.
    fn check(&self) -> Result<()> {
        let mode = &self.mode;
        let refuse = |option: &str, modes: &str| {
            Err(Error::Usage(format!(
                "{option} does not go with --net {mode}: it is for {modes}"
            )))
        };
        if !self.ips.is_empty()
            && !matches!(mode, Mode::Bridge(_) | Mode::Routed | Mode::Macvlan(_))
        {
            let why = if *mode == Mode::Nat {
                "bridge, routed and macvlan (nat leases an address of its pool)"
            } else {
                "bridge, routed and macvlan"
            };
            return refuse("--ip", why);
        }
        if *mode == Mode::Routed && self.ips.is_empty() {
            return Err(Error::Usage(
                "--net routed needs the guest's addresses: --ip ADDR (repeatable)".into(),
            ));
        }
        if self.gateway.is_some() && !matches!(mode, Mode::Bridge(_) | Mode::Macvlan(_)) {
            return refuse(
                "--gateway",
                "bridge and macvlan (nat and routed have their own)",
            );
        }
        if let Some(gw) = self.gateway {
            check_unicast(gw, "--gateway")?;
            if !self.ips.iter().any(|ip| ip.addr.is_ipv4() == gw.is_ipv4()) {
                return Err(Error::Usage(format!(
                    "--gateway {gw} needs an --ip of its family"
                )));
            }
        }
        if (self.mac.is_some() || self.mtu.is_some()) && !mode.linked() {
            return refuse("--mac and --mtu", "nat, bridge, routed and macvlan");
        }
        if !self.ports.is_empty() && !matches!(mode, Mode::Nat | Mode::Routed) {
            return refuse("--port", "nat and routed");
        }
        if self.dns.is_some() && *mode == Mode::Host {
            return refuse("--dns", "guests with a network of their own");
        }
        for port in &self.ports {
            if *mode == Mode::Routed
                && !self.ips.iter().any(|ip| {
                    port.host_addr
                        .is_none_or(|a| a.is_ipv4() == ip.addr.is_ipv4())
                })
            {
                return Err(Error::Usage(format!(
                    "--port {port}: the guest has no address of that family"
                )));
            }
        }
        let mut addrs: Vec<IpAddr> = self.ips.iter().map(|ip| ip.addr).collect();
        addrs.sort();
        if addrs.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Usage("an --ip address is given twice".into()));
        }
        Ok(())
    }
}

/// `--port` values, each checked, none given twice.
pub fn parse_ports(given: &[String]) -> Result<Vec<Port>> {
    let ports = given
        .iter()
        .map(|s| s.parse::<Port>().map_err(Error::Usage))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = Vec::new();
    for port in &ports {
        let key = (port.host_port, port.proto);
        if seen.contains(&key) {
            return Err(Error::Usage(format!(
                "--port {}/{} is given twice",
                port.host_port, port.proto
            )));
        }
        seen.push(key);
    }
    Ok(ports)
}

/// The host-side name of a guest's link: `ve-NAME`, or with a long name its start and a
/// short hash of all of it, in the kernel's 15 bytes (as nspawn cuts its own).
pub fn host_link_name(name: &str) -> String {
    let whole = format!("ve-{name}");
    if whole.len() <= 15 {
        return whole;
    }
    let mut hash: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    // names are ASCII (validate_name): byte slicing is safe
    format!("ve-{}-{:04x}", &name[..6], hash & 0xffff)
}

/// What a guest holds of the network while it runs: the record in its state directory
/// (`net`), which every boot sets up from, `status` shows, and the sweep removes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub mode: Mode,
    /// The host side of the guest's veth (`ve-NAME`), in veth modes.
    #[serde(default)]
    pub host_link: Option<String>,
    #[serde(default)]
    pub mac: Option<Mac>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The guest's addresses on its eth0.
    #[serde(default)]
    pub addresses: Vec<Cidr>,
    /// The guest's default routes' gateways.
    #[serde(default)]
    pub gateways: Vec<IpAddr>,
    /// The guest's resolvers (written to its /etc/resolv.conf); empty: its file is left.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub ports: Vec<Port>,
    /// The launcher's network namespace (st_dev, st_ino), where the host side lives.
    #[serde(default)]
    pub netns: (u64, u64),
    /// The guest's name, which its rules are named by.
    pub name: String,
}

impl Network {
    /// The record of a guest without a link (`none`, `host`).
    pub fn unlinked(name: &str, mode: Mode) -> Self {
        Network {
            mode,
            host_link: None,
            mac: None,
            mtu: None,
            addresses: Vec::new(),
            gateways: Vec::new(),
            dns: Vec::new(),
            ports: Vec::new(),
            netns: (0, 0),
            name: name.to_owned(),
        }
    }

    /// The guest's anti-spoofing needs its addresses: true when they are known (a bridge
    /// guest without `--ip` runs its own DHCP client and is not filtered).
    pub fn filtered(&self) -> bool {
        self.mode.veth() && !self.addresses.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given<'a>(net: &'a str, ip: &'a [String], port: &'a [String]) -> Given<'a> {
        Given {
            net: Some(net),
            ip,
            port,
            ..Given::default()
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modes_parse_and_print_back() {
        for text in [
            "none",
            "host",
            "nat",
            "routed",
            "bridge=br0",
            "macvlan=eth1",
        ] {
            let mode: Mode = text.parse().unwrap();
            assert_eq!(mode.to_string(), text);
        }
        for bad in [
            "",
            "veth",
            "bridge",
            "bridge=",
            "macvlan=a/b",
            "bridge=0123456789abcdef",
            "nat=x",
        ] {
            assert!(bad.parse::<Mode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_take_every_documented_shape() {
        let p = |s: &str| s.parse::<Port>();
        assert_eq!(p("8080").unwrap().to_string(), "8080:8080/tcp");
        assert_eq!(p("8080:80").unwrap().to_string(), "8080:80/tcp");
        assert_eq!(p("53/udp").unwrap().to_string(), "53:53/udp");
        assert_eq!(
            p("10.0.0.1:8080:80/tcp").unwrap().to_string(),
            "10.0.0.1:8080:80/tcp"
        );
        assert_eq!(
            p("10.0.0.1:8080").unwrap().to_string(),
            "10.0.0.1:8080:8080/tcp"
        );
        assert_eq!(
            p("[fd00::1]:8080:80").unwrap().to_string(),
            "[fd00::1]:8080:80/tcp"
        );
        for bad in [
            "0",
            "65536",
            "80/sctp",
            "x:80",
            "1.2.3.4:0",
            "[fd00::1]8080",
            "80:",
            ":80",
            "a.b.c.d:1:2",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert!(p("70000").unwrap_err().contains("a port is 1 to 65535"));
    }

    #[test]
    fn macs_are_unicast_and_a_name_always_gets_the_same_one() {
        assert!("02:00:5e:10:00:01".parse::<Mac>().is_ok());
        for bad in [
            "01:00:5e:10:00:01",
            "00:00:00:00:00:00",
            "02:00:5e:10:00",
            "02-00-5e-10-00-01",
            "02:00:5e:10:00:01:02",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        let mac = Mac::for_name("web");
        assert_eq!(mac, Mac::for_name("web"));
        assert_ne!(mac, Mac::for_name("web2"));
        assert_eq!(mac.0[0] & 0x03, 0x02, "locally administered unicast");
    }

    #[test]
    fn host_link_names_fit_the_kernel_and_differ_for_long_names() {
        assert_eq!(host_link_name("web"), "ve-web");
        assert_eq!(host_link_name("abcdefghijkl"), "ve-abcdefghijkl");
        let a = host_link_name("a-very-long-guest-name-1");
        let b = host_link_name("a-very-long-guest-name-2");
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_ne!(a, b);
    }

    #[test]
    fn cidrs_overlap_as_networks_do() {
        let c = |s: &str| parse_cidr(s, None).unwrap();
        assert!(c("10.213.0.0/16").overlaps(c("10.213.5.0/24")));
        assert!(c("10.0.0.0/8").overlaps(c("10.213.0.0/16")));
        assert!(!c("10.214.0.0/16").overlaps(c("10.213.0.0/16")));
        assert!(c("0.0.0.0/0").overlaps(c("10.213.0.0/16")));
        assert!(!c("fd00::/8").overlaps(c("10.213.0.0/16")));
        assert_eq!(c("10.213.7.9/16").network(), c("10.213.0.0/16"));
    }

    #[test]
    fn each_option_goes_with_its_modes_only() {
        let ip = strings(&["192.0.2.5/24"]);
        let port = strings(&["8080:80"]);
        assert!(Request::parse(&given("routed", &ip, &port)).is_ok());
        assert!(Request::parse(&given("nat", &[], &port)).is_ok());
        assert!(Request::parse(&given("bridge=br0", &ip, &[])).is_ok());
        let refused = [
            given("routed", &[], &[]),
            given("nat", &ip, &[]),
            given("none", &ip, &[]),
            given("host", &[], &port),
            given("bridge=br0", &ip, &port),
            given("macvlan=eth0", &[], &port),
        ];
        for g in refused {
            assert!(matches!(Request::parse(&g), Err(Error::Usage(_))), "{g:?}");
        }
        let twice = strings(&["8080:80", "8080:81"]);
        assert!(Request::parse(&given("nat", &[], &twice)).is_err());
        for bad in [
            "192.0.2.5/33",
            "fd00::1/129",
            "300.1.1.1",
            "127.0.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "ff02::1",
        ] {
            let ip = strings(&[bad]);
            assert!(Request::parse(&given("routed", &ip, &[])).is_err(), "{bad}");
        }
        let gw = Given {
            gateway: Some("fd00::1"),
            ..given("bridge=br0", &ip, &[])
        };
        assert!(
            Request::parse(&gw).is_err(),
            "a v6 gateway with only a v4 address"
        );
        let mtu = Given {
            mtu: Some("10"),
            ..given("nat", &[], &[])
        };
        assert!(Request::parse(&mtu).is_err());
    }

    #[test]
    fn routed_addresses_are_host_routes_and_bridged_ones_subnets() {
        let written = strings(&["192.0.2.5/24", "2001:db8::5/64"]);
        let routed = Request::parse(&given("routed", &written, &[])).unwrap();
        assert_eq!(
            routed.ips.iter().map(|c| c.prefix).collect::<Vec<_>>(),
            [32, 128]
        );
        let ip = strings(&["192.0.2.5", "2001:db8::5"]);
        let routed = Request::parse(&given("routed", &ip, &[])).unwrap();
        assert_eq!(
            routed.ips.iter().map(|c| c.prefix).collect::<Vec<_>>(),
            [32, 128]
        );
        let bridged = Request::parse(&given("bridge=br0", &ip, &[])).unwrap();
        assert_eq!(
            bridged.ips.iter().map(|c| c.prefix).collect::<Vec<_>>(),
            [24, 64]
        );
    }

    #[test]
    fn the_record_reads_back_what_was_written() {
        let network = Network {
            mode: Mode::Bridge("br0".into()),
            host_link: Some("ve-x".into()),
            mac: Some(Mac::for_name("x")),
            mtu: Some(1400),
            addresses: vec![parse_cidr("192.0.2.5/24", None).unwrap()],
            gateways: vec!["192.0.2.1".parse().unwrap()],
            dns: vec!["192.0.2.53".parse().unwrap()],
            ports: vec!["8080:80".parse().unwrap()],
            netns: (1, 2),
            name: "x".into(),
        };
        let text = serde_json::to_string(&network).unwrap();
        assert!(
            text.contains("\"bridge=br0\"") && text.contains("\"8080:80/tcp\""),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Network>(&text).unwrap(), network);
    }
}
