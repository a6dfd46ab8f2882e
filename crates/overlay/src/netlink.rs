//! The rtnetlink requests the overlay needs (what `ip link`, `ip addr`,
//! `ip route`, `ip neigh` and `bridge fdb` would send), on a blocking
//! route-netlink socket in the calling thread's network namespace. Each
//! request is a few microseconds of kernel work, so callers make them
//! straight from async code.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The routing protocol number Orca's overlay routes carry (`ip route`
/// shows `proto 79`), so it finds its own routes again after a restart and
/// never touches anyone else's.
pub(crate) const ROUTE_PROTOCOL: u8 = 79;

pub(crate) type Mac = [u8; 6];

pub(crate) struct Netlink {
    socket: Socket,
    seq: u32,
}

/// The index of the interface `name`, if there is one.
pub(crate) fn link_index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

fn ignore(e: io::Error, codes: &[i32]) -> io::Result<()> {
    match e.raw_os_error() {
        Some(code) if codes.contains(&code) => Ok(()),
        _ => Err(e),
    }
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request; returns the messages answered (for a dump) once
    /// the kernel acknowledges or ends it.
    fn request(
        &mut self,
        flags: u16,
        message: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        if flags & NLM_F_DUMP != NLM_F_DUMP {
            header.flags |= NLM_F_ACK;
        }
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(message));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut answers = Vec::new();
        let mut reply = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut reply[..], 0)?;
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[offset..n])
                    .map_err(|e| io::Error::other(format!("bad netlink reply: {e}")))?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number == self.seq {
                    match msg.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(answers),
                                Some(_) => Err(e.to_io()),
                            }
                        }
                        NetlinkPayload::Done(_) => return Ok(answers),
                        NetlinkPayload::InnerMessage(m) => answers.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += len;
            }
        }
    }

    /// The MTU of a link.
    pub fn mtu(&mut self, index: u32) -> io::Result<u32> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        let answers = self.request(0, RouteNetlinkMessage::GetLink(link))?;
        answers
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Mtu(mtu) => Some(*mtu),
                    _ => None,
                }),
                _ => None,
            })
            .ok_or_else(|| io::Error::other(format!("link {index} reports no MTU")))
    }

    /// The link holding the address `ip`, and the address's prefix length.
    pub fn address_owner(&mut self, ip: Ipv4Addr) -> io::Result<Option<(u32, u8)>> {
        let mut addr = AddressMessage::default();
        addr.header.family = AddressFamily::Inet;
        let answers = self.request(NLM_F_DUMP, RouteNetlinkMessage::GetAddress(addr))?;
        Ok(answers.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a)
                if a.attributes
                    .iter()
                    .any(|at| matches!(at, AddressAttribute::Local(IpAddr::V4(l)) if *l == ip)) =>
            {
                Some((a.header.index, a.header.prefix_len))
            }
            _ => None,
        }))
    }

    /// Deletes a link by name; a missing one is fine.
    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::IfName(name.to_string())];
        match self.request(0, RouteNetlinkMessage::DelLink(link)) {
            Ok(_) => Ok(()),
            Err(e) => ignore(e, &[libc::ENODEV]),
        }
    }

    /// Creates the VXLAN device `name` (learning off: every remote endpoint
    /// is programmed), up; returns its index.
    pub fn add_vxlan(&mut self, name: &str, vxlan: &VxlanDevice) -> io::Result<u32> {
        let mut link = LinkMessage::default();
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        link.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Address(vxlan.mac.to_vec()),
            LinkAttribute::Mtu(vxlan.mtu),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(vxlan.vni),
                    InfoVxlan::Local(vxlan.local),
                    InfoVxlan::Link(vxlan.uplink),
                    InfoVxlan::Port(vxlan.port),
                    InfoVxlan::Learning(false),
                ])),
            ]),
        ];
        self.request(
            NLM_F_CREATE | NLM_F_EXCL,
            RouteNetlinkMessage::NewLink(link),
        )?;
        link_index(name).ok_or_else(|| io::Error::other(format!("{name} vanished once created")))
    }

    /// Gives a link the address `ip/prefix` (an equal one is fine).
    pub fn replace_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut addr = AddressMessage::default();
        addr.header.family = AddressFamily::Inet;
        addr.header.prefix_len = prefix;
        addr.header.index = index;
        addr.attributes = vec![
            AddressAttribute::Local(ip.into()),
            AddressAttribute::Address(ip.into()),
        ];
        self.request(
            NLM_F_CREATE | NLM_F_REPLACE,
            RouteNetlinkMessage::NewAddress(addr),
        )
        .map(drop)
    }

    fn route(destination: Ipv4Addr, prefix: u8) -> RouteMessage {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.destination_prefix_length = prefix;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.protocol = RouteProtocol::Other(ROUTE_PROTOCOL);
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        route.attributes = vec![RouteAttribute::Destination(RouteAddress::Inet(destination))];
        route
    }

    /// Routes `destination/prefix` via `gateway` out of link `oif` (with
    /// `onlink`, the gateway need not be on a subnet of the link).
    pub fn replace_route(&mut self, r: &Route) -> io::Result<()> {
        let mut route = Self::route(r.destination, r.prefix);
        route
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(r.gateway)));
        route.attributes.push(RouteAttribute::Oif(r.oif));
        if r.onlink {
            route.header.flags = RouteFlags::Onlink;
        }
        self.request(
            NLM_F_CREATE | NLM_F_REPLACE,
            RouteNetlinkMessage::NewRoute(route),
        )
        .map(drop)
    }

    /// Deletes the overlay's route to `destination/prefix`; a missing one is fine.
    pub fn delete_route(&mut self, destination: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let route = Self::route(destination, prefix);
        match self.request(0, RouteNetlinkMessage::DelRoute(route)) {
            Ok(_) => Ok(()),
            Err(e) => ignore(e, &[libc::ESRCH, libc::ENOENT]),
        }
    }

    /// The destinations of the overlay's routes in the main table.
    pub fn overlay_routes(&mut self) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        let answers = self.request(NLM_F_DUMP, RouteNetlinkMessage::GetRoute(route))?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL)
                        && r.header.table == RouteHeader::RT_TABLE_MAIN =>
                {
                    r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => {
                            Some((*d, r.header.destination_prefix_length))
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    fn neighbour(
        family: AddressFamily,
        index: u32,
        attributes: Vec<NeighbourAttribute>,
    ) -> NeighbourMessage {
        let mut n = NeighbourMessage::default();
        n.header.family = family;
        n.header.ifindex = index;
        n.header.state = NeighbourState::Permanent;
        n.attributes = attributes;
        n
    }

    /// A permanent ARP entry on link `index`: `ip` is at `mac`.
    pub fn replace_neighbour(&mut self, index: u32, ip: Ipv4Addr, mac: Mac) -> io::Result<()> {
        let n = Self::neighbour(
            AddressFamily::Inet,
            index,
            vec![
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)),
                NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
            ],
        );
        self.request(
            NLM_F_CREATE | NLM_F_REPLACE,
            RouteNetlinkMessage::NewNeighbour(n),
        )
        .map(drop)
    }

    pub fn delete_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> io::Result<()> {
        let n = Self::neighbour(
            AddressFamily::Inet,
            index,
            vec![NeighbourAttribute::Destination(NeighbourAddress::Inet(ip))],
        );
        match self.request(0, RouteNetlinkMessage::DelNeighbour(n)) {
            Ok(_) => Ok(()),
            Err(e) => ignore(e, &[libc::ENOENT]),
        }
    }

    fn fdb(index: u32, mac: Mac, remote: Ipv4Addr) -> NeighbourMessage {
        let mut n = Self::neighbour(
            AddressFamily::Bridge,
            index,
            vec![
                NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
                NeighbourAttribute::Destination(NeighbourAddress::Inet(remote)),
            ],
        );
        n.header.flags = NeighbourFlags::Own;
        n
    }

    /// A forwarding entry of the VXLAN device `index`: frames for `mac` go
    /// in UDP to `remote` (`bridge fdb replace MAC dev DEV dst REMOTE self permanent`).
    pub fn replace_fdb(&mut self, index: u32, mac: Mac, remote: Ipv4Addr) -> io::Result<()> {
        self.request(
            NLM_F_CREATE | NLM_F_REPLACE,
            RouteNetlinkMessage::NewNeighbour(Self::fdb(index, mac, remote)),
        )
        .map(drop)
    }

    pub fn delete_fdb(&mut self, index: u32, mac: Mac, remote: Ipv4Addr) -> io::Result<()> {
        match self.request(
            0,
            RouteNetlinkMessage::DelNeighbour(Self::fdb(index, mac, remote)),
        ) {
            Ok(_) => Ok(()),
            Err(e) => ignore(e, &[libc::ENOENT]),
        }
    }
}

/// What a VXLAN device is made with.
pub(crate) struct VxlanDevice {
    pub vni: u32,
    pub port: u16,
    pub mac: Mac,
    pub mtu: u32,
    /// The node's address, the source of its UDP packets.
    pub local: Ipv4Addr,
    /// The link holding `local`.
    pub uplink: u32,
}

/// A route the overlay programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub oif: u32,
    pub onlink: bool,
}
