//! The cluster DNS address on the node: a dummy interface holding it as a
//! /32, so the node owns the address and pods reach it through their
//! default route to the node (NodeLocal DNSCache does the same with its
//! link-local address). Requests are rtnetlink messages on a blocking
//! socket in the calling thread's network namespace, as `ip link add NAME
//! type dummy; ip addr add IP/32 dev NAME; ip link set NAME up` would send.

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The interface Orca puts the cluster DNS address on.
pub const DEFAULT_LINK: &str = "orca-dns0";

/// Puts `ip`/32 on a dummy interface `link` (made anew, up) in the calling
/// thread's network namespace. A link of that name left from an earlier
/// run is replaced, so it holds this address only.
pub fn add_dns_address(link: &str, ip: Ipv4Addr) -> io::Result<()> {
    let context = |step: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cluster DNS address {ip} on interface {link}: {step}: {e}"),
        )
    };
    let mut netlink = Netlink::open().map_err(|e| context("open rtnetlink", e))?;
    netlink
        .delete_link(link)
        .map_err(|e| context("remove the old interface", e))?;
    netlink
        .add_dummy(link)
        .map_err(|e| context("create the dummy interface", e))?;
    let index = nix::net::if_::if_nametoindex(link)
        .map_err(|e| context("find the interface", io::Error::from(e)))?;
    netlink
        .add_address(index, ip)
        .map_err(|e| context("add the address", e))
}

/// Removes interface `link` and so the address on it; false if there was none.
pub fn remove_dns_link(link: &str) -> io::Result<bool> {
    Netlink::open()
        .and_then(|mut netlink| netlink.delete_link(link))
        .map_err(|e| io::Error::new(e.kind(), format!("remove interface {link}: {e}")))
}

struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request and waits for the kernel's acknowledgement.
    fn request(&mut self, flags: u16, message: RouteNetlinkMessage) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(message));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut reply = vec![0u8; 8192];
        loop {
            let n = self.socket.recv(&mut &mut reply[..], 0)?;
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[offset..n])
                    .map_err(|e| io::Error::other(format!("bad netlink reply: {e}")))?;
                if msg.header.sequence_number == self.seq {
                    if let NetlinkPayload::Error(e) = msg.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                }
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len;
            }
        }
    }

    fn add_dummy(&mut self, name: &str) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        link.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Dummy)]),
        ];
        self.request(
            NLM_F_CREATE | NLM_F_EXCL,
            RouteNetlinkMessage::NewLink(link),
        )
    }

    fn add_address(&mut self, index: u32, ip: Ipv4Addr) -> io::Result<()> {
        let mut addr = AddressMessage::default();
        addr.header.family = AddressFamily::Inet;
        addr.header.prefix_len = 32;
        addr.header.index = index;
        addr.attributes = vec![
            AddressAttribute::Local(ip.into()),
            AddressAttribute::Address(ip.into()),
        ];
        self.request(
            NLM_F_CREATE | NLM_F_REPLACE,
            RouteNetlinkMessage::NewAddress(addr),
        )
    }

    fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::IfName(name.to_string())];
        match self.request(0, RouteNetlinkMessage::DelLink(link)) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
