//! rtnetlink, synchronously: the links, addresses and routes of a guest's network, asked
//! of the kernel and never read from /sys/class/net or /proc/net (which show the network
//! namespace /sys or /proc was mounted in, not necessarily the launcher's: under
//! `nsenter --net` they lie).
//!
//! Messages are built and parsed by `netlink-packet-route`; the socket is `netlink-sys`'s.
//! Every request asks for an acknowledgement and reads until the one for its own sequence
//! number; dumps read until NLMSG_DONE.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::sched::{CloneFlags, setns};

/// A route netlink socket, in the network namespace it was made in.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

/// The largest datagram a dump sends is a page or two; room for more.
const BUFFER: usize = 64 * 1024;

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn route_address(addr: IpAddr) -> RouteAddress {
    match addr {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

/// An fd of the calling thread's network namespace.
pub fn current_netns() -> io::Result<OwnedFd> {
    Ok(File::open("/proc/thread-self/ns/net")?.into())
}

/// The identity of a namespace descriptor: its device and inode.
pub fn netns_id(fd: BorrowedFd) -> io::Result<(u64, u64)> {
    let meta = File::from(fd.try_clone_to_owned()?).metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// The identity of the calling thread's network namespace.
pub fn current_netns_id() -> io::Result<(u64, u64)> {
    netns_id(current_netns()?.as_fd())
}

impl Netlink {
    /// A route socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            socket,
            sequence: 0,
            buffer: Vec::with_capacity(BUFFER),
        })
    }

    /// A route socket in the network namespace `netns`: the thread enters it, makes the
    /// socket (which stays in the namespace it was made in) and comes back. Coming back
    /// cannot fail short of the kernel refusing our own namespace; if it ever did, the
    /// process stops rather than go on inside a guest's network.
    pub fn open_in(netns: BorrowedFd) -> io::Result<Self> {
        let home = current_netns()?;
        setns(netns, CloneFlags::CLONE_NEWNET)?;
        let made = Self::open();
        if let Err(e) = setns(home.as_fd(), CloneFlags::CLONE_NEWNET) {
            eprintln!("cradle: cannot go back to the launcher's network namespace: {e}");
            std::process::abort();
        }
        made
    }

    /// Sends `message` with `flags` and returns the replies to it (for a dump, every
    /// part; for a request, none: the acknowledgement is checked here).
    fn ask(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        loop {
            self.buffer.clear();
            let size = self.socket.recv(&mut self.buffer, 0)?;
            if size > self.buffer.len() {
                return Err(io::Error::other("a netlink reply was cut short"));
            }
            let mut offset = 0;
            while offset < size {
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buffer[offset..size])
                        .map_err(|e| io::Error::other(format!("a netlink reply: {e}")))?;
                let length = reply.header.length as usize;
                if length == 0 {
                    break;
                }
                offset += (length + 3) & !3;
                if reply.header.sequence_number != sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => {
                        replies.push(inner);
                        if !dump {
                            // a request's answer comes with its ack
                            continue;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sends a request and waits for its acknowledgement.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.ask(message, flags | NLM_F_ACK).map(drop)
    }

    /// The link named `name`, if there is one.
    fn link(&mut self, name: &str) -> io::Result<Option<LinkMessage>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        match self.ask(RouteNetlinkMessage::GetLink(message), NLM_F_ACK) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The index of the link named `name`, or None.
    pub fn index(&mut self, name: &str) -> io::Result<Option<u32>> {
        Ok(self.link(name)?.map(|l| l.header.index))
    }

    /// The link's kind ("bridge", "veth", ...); None for a device without one.
    pub fn kind(&mut self, index: u32) -> io::Result<Option<String>> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        let replies = self.ask(RouteNetlinkMessage::GetLink(message), NLM_F_ACK)?;
        for reply in replies {
            let RouteNetlinkMessage::NewLink(link) = reply else {
                continue;
            };
            for attr in link.attributes {
                let LinkAttribute::LinkInfo(infos) = attr else {
                    continue;
                };
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        return Ok(Some(kind.to_string()));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Makes a link from `attributes`; returns its index, looked up by `name`.
    fn add_link(&mut self, name: &str, attributes: Vec<LinkAttribute>) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        message.attributes.extend(attributes);
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    fn made(&mut self, name: &str) -> io::Result<u32> {
        self.index(name)?
            .ok_or_else(|| io::Error::other(format!("{name} vanished as it was made")))
    }

    /// Makes a bridge `name` (down).
    pub fn add_bridge(&mut self, name: &str) -> io::Result<u32> {
        self.add_link(
            name,
            vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )])],
        )?;
        self.made(name)
    }

    /// Makes a veth pair: `host` here, its peer `peer` directly in namespace `peer_netns`
    /// with MAC `peer_mac`; both with `mtu` when given. EEXIST when `host` exists.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: BorrowedFd,
        peer_mac: [u8; 6],
        mtu: Option<u32>,
    ) -> io::Result<u32> {
        let mut peer_message = LinkMessage::default();
        peer_message.attributes = vec![
            LinkAttribute::IfName(peer.to_owned()),
            LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
            LinkAttribute::Address(peer_mac.to_vec()),
        ];
        let mut attributes = vec![LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ])];
        if let Some(mtu) = mtu {
            attributes.push(LinkAttribute::Mtu(mtu));
            if let Some(LinkAttribute::LinkInfo(infos)) = attributes.first_mut()
                && let Some(LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p)))) = infos.get_mut(1)
            {
                p.attributes.push(LinkAttribute::Mtu(mtu));
            }
        }
        self.add_link(host, attributes)?;
        self.made(host)
    }

    /// Makes a macvlan (bridge mode) `name` on link `parent`, directly in `netns`.
    pub fn add_macvlan(
        &mut self,
        name: &str,
        parent: u32,
        netns: BorrowedFd,
        mac: [u8; 6],
        mtu: Option<u32>,
    ) -> io::Result<()> {
        let mut attributes = vec![
            LinkAttribute::Link(parent),
            LinkAttribute::NetNsFd(netns.as_raw_fd()),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                    MacVlanMode::Bridge,
                )])),
            ]),
        ];
        if let Some(mtu) = mtu {
            attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.add_link(name, attributes)
    }

    fn set_link(&mut self, index: u32, attributes: Vec<LinkAttribute>, up: bool) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        if up {
            message.header.flags = LinkFlags::Up;
            message.header.change_mask = LinkFlags::Up;
        }
        message.attributes = attributes;
        self.request(RouteNetlinkMessage::SetLink(message), 0)
    }

    /// Puts link `index` on bridge `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        self.set_link(index, vec![LinkAttribute::Controller(master)], false)
    }

    /// Brings link `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.set_link(index, Vec::new(), true)
    }

    /// Takes link `index` down and renames it `name`, which frees its name at once (a
    /// deletion waits for grace periods).
    pub fn set_aside(&mut self, index: u32, name: &str) -> io::Result<()> {
        let mut down = LinkMessage::default();
        down.header.index = index;
        down.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(down), 0)?;
        self.set_link(index, vec![LinkAttribute::IfName(name.to_owned())], false)
    }

    /// Adds `addr/prefix` to link `index` (IPv6 without duplicate address detection's
    /// wait); one it has already is no error.
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = family(addr);
        message.header.prefix_len = prefix;
        message.header.index = index;
        if addr.is_ipv6() {
            message.header.flags = AddressHeaderFlags::Nodad;
        }
        message.attributes.push(AddressAttribute::Local(addr));
        message.attributes.push(AddressAttribute::Address(addr));
        match self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// The addresses on link `index`.
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<(IpAddr, u8)>> {
        let replies = self.ask(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut found = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewAddress(a) = reply else {
                continue;
            };
            if a.header.index != index {
                continue;
            }
            let addr = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Local(addr) => Some(*addr),
                _ => None,
            });
            let addr = addr.or_else(|| {
                a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(addr) => Some(*addr),
                    _ => None,
                })
            });
            if let Some(addr) = addr {
                found.push((addr, a.header.prefix_len));
            }
        }
        Ok(found)
    }

    /// Adds a route in the main table to `dest/prefix`, via `gateway`, out of `oif`;
    /// `onlink` for a gateway on no subnet of the link. One that exists is no error.
    pub fn add_route(
        &mut self,
        dest: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
        oif: Option<u32>,
        onlink: bool,
    ) -> io::Result<()> {
        let mut message = RouteMessage::default();
        message.header = RouteHeader {
            address_family: family(dest),
            destination_prefix_length: prefix,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Boot,
            scope: if gateway.is_some() {
                RouteScope::Universe
            } else {
                RouteScope::Link
            },
            kind: RouteType::Unicast,
            flags: if onlink {
                RouteFlags::Onlink
            } else {
                RouteFlags::empty()
            },
            ..message.header
        };
        if prefix > 0 {
            message
                .attributes
                .push(RouteAttribute::Destination(route_address(dest)));
        }
        if let Some(gateway) = gateway {
            message
                .attributes
                .push(RouteAttribute::Gateway(route_address(gateway)));
        }
        if let Some(oif) = oif {
            message.attributes.push(RouteAttribute::Oif(oif));
        }
        match self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Every route of the main table, both families: (destination, prefix, out link).
    pub fn routes(&mut self) -> io::Result<Vec<(IpAddr, u8, Option<u32>)>> {
        let mut found = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut message = RouteMessage::default();
            message.header.address_family = family;
            let replies = self.ask(RouteNetlinkMessage::GetRoute(message), NLM_F_DUMP)?;
            for reply in replies {
                let RouteNetlinkMessage::NewRoute(route) = reply else {
                    continue;
                };
                if route.header.table != RouteHeader::RT_TABLE_MAIN
                    || route.header.kind != RouteType::Unicast
                {
                    continue;
                }
                let mut dest = match family {
                    AddressFamily::Inet => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                    _ => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                };
                let mut oif = None;
                for attr in &route.attributes {
                    match attr {
                        RouteAttribute::Destination(RouteAddress::Inet(a)) => dest = IpAddr::V4(*a),
                        RouteAttribute::Destination(RouteAddress::Inet6(a)) => {
                            dest = IpAddr::V6(*a)
                        }
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                found.push((dest, route.header.destination_prefix_length, oif));
            }
        }
        Ok(found)
    }

    /// Deletes link `index` (a veth: both ends); one that is gone is no error.
    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(message), 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            other => other,
        }
    }
}

/// Runs `f` on a thread of its own in a new network namespace (never the machine's); the
/// programs it runs are in that namespace too.
#[cfg(test)]
pub(crate) fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare a network namespace");
        f()
    })
    .join()
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A second network namespace, held by the returned descriptor.
    fn other_netns() -> OwnedFd {
        std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).unwrap();
            current_netns().unwrap()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_bridge_is_made_found_and_known_for_what_it_is() {
        in_new_netns(|| {
            let mut nl = Netlink::open().unwrap();
            assert_eq!(nl.index("br-t").unwrap(), None);
            let index = nl.add_bridge("br-t").unwrap();
            assert_eq!(nl.index("br-t").unwrap(), Some(index));
            assert_eq!(nl.kind(index).unwrap().as_deref(), Some("bridge"));
            let lo = nl.index("lo").unwrap().unwrap();
            assert_eq!(nl.kind(lo).unwrap(), None);
            let again = nl.add_bridge("br-t").unwrap_err();
            assert_eq!(again.raw_os_error(), Some(libc::EEXIST));
        });
    }

    #[test]
    fn a_veth_has_its_peer_in_the_other_namespace_configured_from_there() {
        let guest = other_netns();
        let guest_id = netns_id(guest.as_fd()).unwrap();
        in_new_netns(move || {
            let mut host = Netlink::open().unwrap();
            let mac = [0x02, 0, 0, 0, 0, 7];
            let index = host
                .add_veth("ve-t", "eth0", guest.as_fd(), mac, Some(1400))
                .unwrap();
            assert_eq!(host.index("eth0").unwrap(), None, "the peer is not here");
            let bridge = host.add_bridge("br-t").unwrap();
            host.set_master(index, bridge).unwrap();
            host.set_up(index).unwrap();
            host.add_address(index, IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1)), 32)
                .unwrap();
            host.add_address(index, IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1)), 32)
                .expect("an address it has is no error");
            let dup = host
                .add_veth("ve-t", "eth1", guest.as_fd(), mac, None)
                .unwrap_err();
            assert_eq!(dup.raw_os_error(), Some(libc::EEXIST));
            assert!(host.set_master(index, 999_999).is_err());

            let mut inside = Netlink::open_in(guest.as_fd()).unwrap();
            // the thread is home again
            let here = netns_id(current_netns().unwrap().as_fd()).unwrap();
            assert_ne!(here, guest_id);
            let eth0 = inside.index("eth0").unwrap().expect("eth0 in the guest");
            let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5));
            let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5));
            inside.add_address(eth0, v4, 32).unwrap();
            inside.set_up(eth0).unwrap();
            inside.add_address(eth0, v6, 64).unwrap();
            let gw4 = IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1));
            inside.add_route(gw4, 32, None, Some(eth0), false).unwrap();
            inside
                .add_route(
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    0,
                    Some(gw4),
                    Some(eth0),
                    true,
                )
                .unwrap();
            let gw6 = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
            inside
                .add_route(
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    0,
                    Some(gw6),
                    Some(eth0),
                    true,
                )
                .unwrap();
            let addrs = inside.addresses(eth0).unwrap();
            assert!(
                addrs.contains(&(v4, 32)) && addrs.contains(&(v6, 64)),
                "{addrs:?}"
            );
            let routes = inside.routes().unwrap();
            assert!(
                routes.contains(&(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, Some(eth0))),
                "{routes:?}"
            );
            assert!(routes.contains(&(gw4, 32, Some(eth0))), "{routes:?}");

            host.delete_link(index).unwrap();
            assert_eq!(host.index("ve-t").unwrap(), None);
            assert_eq!(inside.index("eth0").unwrap(), None, "both ends go");
            host.delete_link(index)
                .expect("a link that is gone is no error");

            // an up link on a bridge, set aside: its name is free at once, for a new one
            let old = host
                .add_veth("ve-t", "eth0", guest.as_fd(), mac, None)
                .unwrap();
            host.set_master(old, bridge).unwrap();
            host.set_up(old).unwrap();
            host.set_aside(old, "cx-t").unwrap();
            assert_eq!(host.index("ve-t").unwrap(), None);
            assert_eq!(host.index("cx-t").unwrap(), Some(old));
            let other = other_netns();
            host.add_veth("ve-t", "eth0", other.as_fd(), mac, None)
                .expect("the name is free");
        });
    }
}
