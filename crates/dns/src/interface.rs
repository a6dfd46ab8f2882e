//! The cluster DNS address on the node, so the node owns it and pods reach
//! it through their default route to the node, as NodeLocal DNSCache does
//! with its link-local address. It is a /32 on the loopback interface,
//! labelled `lo:orca-dns` so it is seen and found as Orca's: a dummy
//! interface would do the same, but kernels built without the dummy driver
//! (this project's machines among them) cannot make one, while every
//! kernel has `lo`. Requests are rtnetlink messages on a blocking socket in
//! the calling thread's network namespace, as `ip addr add IP/32 dev lo
//! label lo:orca-dns` would send.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The label of the cluster DNS address (`ip addr show label lo:orca-dns`).
pub const ADDRESS_LABEL: &str = "lo:orca-dns";

/// Puts `ip`/32 on the loopback interface of the calling thread's network
/// namespace, labelled [`ADDRESS_LABEL`]; an address of that label left
/// from an earlier run with another `--cluster-dns` is removed.
pub fn add_dns_address(ip: Ipv4Addr) -> io::Result<()> {
    let context = |step: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cluster DNS address {ip} on the loopback interface: {step}: {e}"),
        )
    };
    let lo = loopback_index().map_err(|e| context("find the loopback interface", e))?;
    let mut netlink = Netlink::open().map_err(|e| context("open rtnetlink", e))?;
    for old in netlink
        .labelled_addresses(lo)
        .map_err(|e| context("list its addresses", e))?
    {
        if old != ip {
            netlink
                .delete_address(lo, old)
                .map_err(|e| context(&format!("remove the old address {old}"), e))?;
        }
    }
    netlink
        .add_address(lo, ip)
        .map_err(|e| context("add the address", e))
}

/// Removes the cluster DNS address(es) [`add_dns_address`] put on the
/// node; returns how many there were.
pub fn remove_dns_address() -> io::Result<usize> {
    let context = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("remove the cluster DNS address ({ADDRESS_LABEL}): {e}"),
        )
    };
    let lo = loopback_index().map_err(context)?;
    let mut netlink = Netlink::open().map_err(context)?;
    let addresses = netlink.labelled_addresses(lo).map_err(context)?;
    for ip in &addresses {
        netlink.delete_address(lo, *ip).map_err(context)?;
    }
    Ok(addresses.len())
}

fn loopback_index() -> io::Result<u32> {
    nix::net::if_::if_nametoindex("lo").map_err(io::Error::from)
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

    /// The IPv4 addresses on interface `index` that carry our label.
    fn labelled_addresses(&mut self, index: u32) -> io::Result<Vec<Ipv4Addr>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.seq;
        let mut request = AddressMessage::default();
        request.header.family = AddressFamily::Inet;
        let mut msg = NetlinkMessage::new(
            header,
            NetlinkPayload::from(RouteNetlinkMessage::GetAddress(request)),
        );
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut found = Vec::new();
        let mut reply = vec![0u8; 32768];
        loop {
            let n = self.socket.recv(&mut &mut reply[..], 0)?;
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[offset..n])
                    .map_err(|e| io::Error::other(format!("bad netlink reply: {e}")))?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number == self.seq {
                    match msg.payload {
                        NetlinkPayload::Done(_) => return Ok(found),
                        NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a))
                            if a.header.index == index =>
                        {
                            let ours = a.attributes.iter().any(
                                |attr| matches!(attr, AddressAttribute::Label(l) if l == ADDRESS_LABEL),
                            );
                            let local = a.attributes.iter().find_map(|attr| match attr {
                                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                                _ => None,
                            });
                            if let (true, Some(ip)) = (ours, local) {
                                found.push(ip);
                            }
                        }
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

    fn address(index: u32, ip: Ipv4Addr) -> AddressMessage {
        let mut addr = AddressMessage::default();
        addr.header.family = AddressFamily::Inet;
        addr.header.prefix_len = 32;
        addr.header.index = index;
        addr.attributes = vec![
            AddressAttribute::Local(ip.into()),
            AddressAttribute::Address(ip.into()),
            AddressAttribute::Label(ADDRESS_LABEL.to_string()),
        ];
        addr
    }

    fn add_address(&mut self, index: u32, ip: Ipv4Addr) -> io::Result<()> {
        self.request(
            NLM_F_CREATE | NLM_F_REPLACE,
            RouteNetlinkMessage::NewAddress(Self::address(index, ip)),
        )
    }

    fn delete_address(&mut self, index: u32, ip: Ipv4Addr) -> io::Result<()> {
        self.request(0, RouteNetlinkMessage::DelAddress(Self::address(index, ip)))
    }
}
