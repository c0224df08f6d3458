//! A guest's network, in two lifetimes:
//!
//! - once per launcher, [`hold`] turns a checked [`Request`] into the guest's [`Network`]
//!   (its addresses leased, its MAC and resolvers chosen, the host's side checked), and
//!   [`release`] gives the leases back;
//! - once per boot, [`attach`] makes the guest's link in its network namespace before its
//!   init runs (all of it from the host's side: over rtnetlink in the launcher's namespace,
//!   and through a socket made in the guest's), with its rules; the link goes with the
//!   namespace, the filter with the link, and [`finish`] removes the forwards when the
//!   launcher ends. A reboot makes them again the same: same name, MAC, addresses and
//!   forwards.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use super::lease::{self, Holder, Leases};
use super::link::{self, Netlink};
use super::{
    Cidr, GUEST_LINK, Mac, Mode, NAT_BRIDGE, NAT_POOL4, NAT_POOL6, Network, ROUTED_GATEWAY4,
    ROUTED_GATEWAY6, Request, host_link_name, nft,
};
use crate::error::{Error, Result};
use crate::process::child::Child;
use crate::sys::{self, SingleThreaded};

fn nl_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::host(what, e)
}

/// True when the launcher's network namespace has IPv6.
fn has_ipv6() -> bool {
    fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6").is_ok_and(|v| v.trim() == "0")
}

/// The host's resolvers, for a `nat` guest: those of /etc/resolv.conf, or where that
/// names only a local stub (systemd-resolved's 127.0.0.53), those the stub asks.
pub fn host_resolvers() -> Vec<IpAddr> {
    let read = |path: &str| -> Vec<IpAddr> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("nameserver"))
                    .then(|| words.next()?.parse::<IpAddr>().ok())
                    .flatten()
            })
            .filter(|addr| !addr.is_loopback())
            .collect()
    };
    let mine = read("/etc/resolv.conf");
    if mine.is_empty() {
        read("/run/systemd/resolve/resolv.conf")
    } else {
        mine
    }
}

/// The guest's /etc/resolv.conf for `dns`.
pub fn resolv_conf(dns: &[IpAddr]) -> Vec<u8> {
    let mut text =
        String::from("# written by cradle at every boot (--dns; --net nat: the host's)\n");
    for addr in dns {
        text.push_str(&format!("nameserver {addr}\n"));
    }
    text.into_bytes()
}

/// Turns the request into what the guest holds, taking its addresses for `holder`.
pub fn hold(name: &str, request: &Request, holder: &Holder) -> Result<Network> {
    let mode = request.mode.clone();
    if !mode.linked() {
        let mut network = Network::unlinked(name, mode);
        network.dns = request.dns.clone().unwrap_or_default();
        return Ok(network);
    }
    let mut host = Netlink::open().map_err(nl_error("open a route netlink socket"))?;
    let netns =
        link::current_netns_id().map_err(nl_error("read the launcher's network namespace"))?;
    let mut network = Network {
        mode: mode.clone(),
        host_link: mode.veth().then(|| host_link_name(name)),
        mac: Some(request.mac.unwrap_or_else(|| Mac::for_name(name))),
        mtu: request.mtu,
        addresses: request.ips.clone(),
        gateways: request.gateway.into_iter().collect(),
        dns: request.dns.clone().unwrap_or_default(),
        ports: request.ports.clone(),
        netns,
        name: name.to_owned(),
    };
    match &mode {
        Mode::Bridge(br) => {
            let index = existing(&mut host, br, "bridge")?;
            let kind = host
                .kind(index)
                .map_err(nl_error(format!("read the link {br}")))?;
            if kind.as_deref() != Some("bridge") {
                return Err(Error::Usage(format!(
                    "--net bridge={br}: {br} is not a bridge (a {})",
                    kind.as_deref().unwrap_or("device")
                )));
            }
        }
        Mode::Macvlan(dev) => {
            existing(&mut host, dev, "interface")?;
        }
        Mode::Nat => check_pool(&mut host)?,
        _ => {}
    }
    if nft::needed(&network) {
        nft::program()?;
    }
    let leases = Leases::open()?;
    if mode == Mode::Nat {
        let (pool4, prefix4) = NAT_POOL4;
        let v4 = leases.pick(holder, pool4, prefix4)?;
        network.addresses = vec![Cidr {
            addr: IpAddr::V4(v4),
            prefix: prefix4,
        }];
        network.gateways = vec![IpAddr::V4(first(pool4))];
        if has_ipv6() {
            let (pool6, prefix6) = NAT_POOL6;
            network.addresses.push(Cidr {
                addr: IpAddr::V6(lease::pool6_address(v4, prefix4, pool6)),
                prefix: prefix6,
            });
            network.gateways.push(IpAddr::V6(first6(pool6)));
        }
        if request.dns.is_none() {
            network.dns = host_resolvers();
        }
    } else {
        let addrs: Vec<IpAddr> = network.addresses.iter().map(|c| c.addr).collect();
        leases.claim(holder, &addrs)?;
    }
    if mode == Mode::Routed {
        network.gateways = vec![IpAddr::V4(ROUTED_GATEWAY4), IpAddr::V6(ROUTED_GATEWAY6)]
            .into_iter()
            .filter(|gw| {
                network
                    .addresses
                    .iter()
                    .any(|c| c.addr.is_ipv4() == gw.is_ipv4())
            })
            .collect();
    }
    Ok(network)
}

/// Gives back the addresses `network` holds for `holder`.
pub fn release(network: &Network, holder: &Holder) {
    if !network.mode.linked() {
        return;
    }
    if let Ok(leases) = Leases::open() {
        let addrs: Vec<IpAddr> = network.addresses.iter().map(|c| c.addr).collect();
        leases.release(holder, &addrs);
    }
}

fn first(net: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net) | 1)
}

fn first6(net: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net) | 1)
}

/// The index of the host's link `name`, or a usage error naming it.
fn existing(host: &mut Netlink, name: &str, what: &str) -> Result<u32> {
    host.index(name)
        .map_err(nl_error(format!("look up the link {name}")))?
        .ok_or_else(|| Error::Usage(format!("no {what} {name} on this host")))
}

/// Refuses the nat pool where the host already routes part of it elsewhere.
fn check_pool(host: &mut Netlink) -> Result<()> {
    let bridge = host
        .index(NAT_BRIDGE)
        .map_err(nl_error(format!("look up the link {NAT_BRIDGE}")))?;
    let (pool, prefix) = NAT_POOL4;
    let pool = Cidr {
        addr: IpAddr::V4(pool),
        prefix,
    };
    let routes = host.routes().map_err(nl_error("read the host's routes"))?;
    for (dest, len, oif) in routes {
        let route = Cidr {
            addr: dest,
            prefix: len,
        };
        if len > 0 && oif != bridge && route.overlaps(pool) {
            return Err(Error::Usage(format!(
                "--net nat: its pool {pool} overlaps the host's route to {route}"
            )));
        }
    }
    Ok(())
}

/// A new network namespace, for a guest without a user namespace (one with makes its own,
/// owned by it: `userns::Namespaces`), held by the returned descriptor alone.
pub fn new_netns(threads: &SingleThreaded) -> Result<OwnedFd> {
    let ctx = "create the guest's network namespace";
    let (wait_end, release_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::setup(ctx, e))?;
    let mut holder = Child::fork_into(threads, nix::sched::CloneFlags::CLONE_NEWNET, None, |_| {
        // end of file once the launcher closed its end, or died
        let _ = nix::unistd::close(std::os::fd::AsRawFd::as_raw_fd(&release_end));
        let _ = nix::unistd::read(&wait_end, &mut [0u8]);
        sys::exit_now(0)
    })
    .map_err(|e| Error::setup(ctx, e))?;
    let path = format!("/proc/{}/ns/net", holder.pid());
    let fd = nix::fcntl::open(
        Path::new(&path),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::setup(ctx, e));
    drop(release_end);
    holder.wait();
    fd
}

/// What a guest's launcher removes when it ends (halt, or a failed start): its elements
/// of cradle's ruleset (forwards, filter), one transaction. The host's side of a boot's link goes with the
/// guest's network namespace, which the kernel tears down after the guest's last process
/// (a reboot never waits for that: see [`attach`]).
pub fn finish(network: &Network) {
    let rules = !network.ports.is_empty() || network.filtered();
    if !network.mode.linked() || !rules || !in_its_netns(network) {
        return;
    }
    if let Err(e) = nft::remove(network, nft::Which::All) {
        log::warn!("{e}");
    }
}

/// True when the launcher runs in the network namespace `network` was made in.
pub fn in_its_netns(network: &Network) -> bool {
    link::current_netns_id().ok() == Some(network.netns)
}

/// Removes what a killed launcher's guest left on the host's side, in the launcher's
/// network namespace (what a launcher killed in another one made is not ours to find):
/// all its rules, and its link if the kernel has not taken it yet.
pub fn detach(network: &Network) {
    if !network.mode.linked() {
        return;
    }
    if !in_its_netns(network) {
        log::debug!(
            "{}: its network was made in another namespace",
            network.name
        );
        return;
    }
    if nft::needed(network) {
        if let Err(e) = nft::remove(network, nft::Which::All) {
            log::warn!("{e}");
        }
    }
    if let Some(name) = &network.host_link {
        let deleted = Netlink::open().and_then(|mut nl| match nl.index(name)? {
            Some(index) => nl.delete_link(index),
            None => Ok(()),
        });
        if let Err(e) = deleted {
            log::warn!("{}: remove the link {name}: {e}", network.name);
        }
    }
}

/// Makes the guest's link in its network namespace `netns` (its init not running yet).
/// Nothing of it is removed when the boot ends: deleting a link costs the kernel grace
/// periods (17 to 35 ms here), which the namespace's teardown spends in the background.
/// A boot that finds the last boot's link still there (its namespace not torn down yet,
/// or a killed launcher's) renames that one out of the way and has it deleted in the
/// background, where the kernel has not done so by then.
pub fn attach(threads: &SingleThreaded, network: &Network, netns: BorrowedFd) -> Result<()> {
    if !network.mode.linked() {
        return Ok(());
    }
    let name = &network.name;
    let mut host = Netlink::open().map_err(nl_error("open a route netlink socket"))?;
    let mac = network.mac.unwrap_or_else(|| Mac::for_name(name)).0;
    let host_index = match (&network.mode, &network.host_link) {
        (Mode::Macvlan(dev), _) => {
            let parent = existing(&mut host, dev, "interface")?;
            host.add_macvlan(GUEST_LINK, parent, netns, mac, network.mtu)
                .map_err(nl_error(format!("make the macvlan of {name} on {dev}")))?;
            None
        }
        (_, Some(link_name)) => {
            let made = match host.add_veth(link_name, GUEST_LINK, netns, mac, network.mtu) {
                // the last boot's, its namespace not torn down yet (or a killed launcher's):
                // ours, since the name is held
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    if let Some(old) = host.index(link_name).ok().flatten() {
                        set_aside(threads, &mut host, old);
                    }
                    host.add_veth(link_name, GUEST_LINK, netns, mac, network.mtu)
                }
                other => other,
            };
            Some(made.map_err(nl_error(format!("make the veth {link_name} of {name}")))?)
        }
        (_, None) => None,
    };
    if let Some(index) = host_index {
        host_side(&mut host, network, index)?;
    }
    guest_side(network, netns)?;
    if nft::needed(network) {
        nft::add(network)?;
    }
    if matches!(network.mode, Mode::Nat | Mode::Routed) {
        forwarding(network)?;
    }
    Ok(())
}

/// Frees the name of an old link `index` of ours: renamed `cx-INDEX` (a name no other
/// link has: indexes are unique) and deleted in the background, or deleted here where it
/// cannot be renamed.
fn set_aside(threads: &SingleThreaded, host: &mut Netlink, index: u32) {
    if host.set_aside(index, &format!("cx-{index}")).is_err() {
        let _ = host.delete_link(index);
        return;
    }
    sys::in_background(threads, || {
        if let Ok(mut nl) = Netlink::open() {
            let _ = nl.delete_link(index);
        }
    });
}

/// The host's side of a veth: on its bridge, or with the routed gateway and routes.
fn host_side(host: &mut Netlink, network: &Network, index: u32) -> Result<()> {
    let link = network.host_link.as_deref().unwrap_or("?");
    let ctx = |what: &str| nl_error(format!("{what} ({link})"));
    match &network.mode {
        Mode::Nat => {
            let bridge = nat_bridge(host)?;
            host.set_master(index, bridge)
                .map_err(ctx("put the veth on cradle0"))?;
        }
        Mode::Bridge(br) => {
            let bridge = existing(host, br, "bridge")?;
            host.set_master(index, bridge)
                .map_err(ctx(&format!("put the veth on {br}")))?;
        }
        Mode::Routed => {
            host.add_address(index, IpAddr::V4(ROUTED_GATEWAY4), 32)
                .map_err(ctx("give the host's side its gateway address"))?;
        }
        _ => {}
    }
    host.set_up(index).map_err(ctx("bring the veth up"))?;
    if network.mode == Mode::Routed {
        let v6 = network.addresses.iter().any(|c| c.addr.is_ipv6());
        if v6 {
            host.add_address(index, IpAddr::V6(ROUTED_GATEWAY6), 64)
                .map_err(ctx("give the host's side its IPv6 gateway address"))?;
        }
        for cidr in &network.addresses {
            let full = if cidr.addr.is_ipv4() { 32 } else { 128 };
            host.add_route(cidr.addr, full, None, Some(index), false)
                .map_err(ctx(&format!("route {} to the guest", cidr.addr)))?;
        }
    }
    Ok(())
}

/// cradle0, made with the pool's first addresses where it is missing.
fn nat_bridge(host: &mut Netlink) -> Result<u32> {
    let ctx = |what: &str| nl_error(format!("{what} {NAT_BRIDGE}"));
    let index = match host.index(NAT_BRIDGE).map_err(ctx("look up"))? {
        Some(index) => index,
        None => host
            .add_bridge(NAT_BRIDGE)
            .map_err(ctx("make the bridge"))?,
    };
    let (pool4, prefix4) = NAT_POOL4;
    host.add_address(index, IpAddr::V4(first(pool4)), prefix4)
        .map_err(ctx("address"))?;
    if has_ipv6() {
        let (pool6, prefix6) = NAT_POOL6;
        host.add_address(index, IpAddr::V6(first6(pool6)), prefix6)
            .map_err(ctx("address"))?;
    }
    host.set_up(index).map_err(ctx("bring up"))?;
    Ok(index)
}

/// The guest's side, configured from a socket made in its namespace: its addresses, up,
/// its routes.
fn guest_side(network: &Network, netns: BorrowedFd) -> Result<()> {
    let name = &network.name;
    let ctx = |what: &str| nl_error(format!("{what} in the network of {name}"));
    let mut guest = Netlink::open_in(netns).map_err(ctx("open a route netlink socket"))?;
    let index = guest
        .index(GUEST_LINK)
        .map_err(ctx("look up eth0"))?
        .ok_or_else(|| {
            Error::host(
                format!("find eth0 of {name}"),
                std::io::Error::other("missing"),
            )
        })?;
    for cidr in &network.addresses {
        guest
            .add_address(index, cidr.addr, cidr.prefix)
            .map_err(ctx(&format!("add the address {cidr}")))?;
    }
    guest.set_up(index).map_err(ctx("bring eth0 up"))?;
    for gateway in &network.gateways {
        let onlink = network.mode == Mode::Routed;
        if onlink && gateway.is_ipv4() {
            guest
                .add_route(*gateway, 32, None, Some(index), false)
                .map_err(ctx("route to the gateway"))?;
        }
        let any = if gateway.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        guest
            .add_route(any, 0, Some(*gateway), Some(index), onlink)
            .map_err(ctx(&format!("add the default route via {gateway}")))?;
    }
    Ok(())
}

/// IP forwarding on, for the families the guest has.
fn forwarding(network: &Network) -> Result<()> {
    let mut files = vec!["/proc/sys/net/ipv4/ip_forward"];
    if network.addresses.iter().any(|c| c.addr.is_ipv6()) {
        files.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for file in files {
        if fs::read_to_string(file).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        fs::write(file, "1").map_err(|e| Error::host(format!("turn on forwarding ({file})"), e))?;
    }
    Ok(())
}
