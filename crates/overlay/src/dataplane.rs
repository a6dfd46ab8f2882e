//! The kernel side of the overlay: the VXLAN device and, per remote node,
//! a route to its pod CIDR (VXLAN: through the device, to the remote
//! device's address, with an ARP and a forwarding entry naming the remote
//! node; host-gw: straight to the remote node's address). Removed when
//! dropped.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;

use crate::netlink::{Netlink, Route, VxlanDevice};
use crate::peers::{vtep_mac, Peer, Subnet};
use crate::{Backend, Config};

/// VXLAN's own headers (outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14).
const VXLAN_OVERHEAD: u32 = 50;

pub(crate) struct Dataplane {
    nl: Netlink,
    backend: Backend,
    device: String,
    /// Where routes go out: the VXLAN device, or the link holding the
    /// node's address (host-gw).
    oif: u32,
    /// What was programmed for each remote node.
    applied: BTreeMap<String, Peer>,
}

fn context(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Dataplane {
    /// Sets the node up: finds its uplink, removes what an earlier run left
    /// (a device, routes), and for VXLAN creates the device with the
    /// network address of the node's pod CIDR.
    pub fn setup(config: &Config, own: Subnet) -> io::Result<Dataplane> {
        let mut nl = Netlink::open().map_err(context("opening a netlink socket".into()))?;
        let (uplink, _) = nl
            .address_owner(config.node_ip)
            .map_err(context("listing addresses".into()))?
            .ok_or_else(|| {
                io::Error::other(format!(
                    "no interface of this node holds its address {}: pass --node-ip with one of its addresses",
                    config.node_ip
                ))
            })?;
        nl.delete_link(&config.device).map_err(context(format!(
            "deleting the stale device {}",
            config.device
        )))?;
        for (destination, prefix) in nl
            .overlay_routes()
            .map_err(context("listing routes".into()))?
        {
            nl.delete_route(destination, prefix)
                .map_err(context(format!(
                    "deleting the stale route to {destination}/{prefix}"
                )))?;
        }
        let oif = match config.backend {
            Backend::HostGw => uplink,
            Backend::Vxlan => {
                let mtu = nl
                    .mtu(uplink)
                    .map_err(context(format!("reading the MTU of link {uplink}")))?;
                let device = VxlanDevice {
                    vni: config.vni,
                    port: config.port,
                    mac: vtep_mac(config.node_ip),
                    mtu: mtu.saturating_sub(VXLAN_OVERHEAD),
                    local: config.node_ip,
                    uplink,
                };
                let index = nl
                    .add_vxlan(&config.device, &device)
                    .map_err(context(format!(
                        "creating the VXLAN device {}",
                        config.device
                    )))?;
                // Its address is the pod CIDR's network address, as the
                // gateway remote nodes route this node's pod CIDR through.
                nl.replace_address(index, own.network, 32)
                    .map_err(context(format!("addressing {}", config.device)))?;
                index
            }
        };
        Ok(Dataplane {
            nl,
            backend: config.backend,
            device: config.device.clone(),
            oif,
            applied: BTreeMap::new(),
        })
    }

    fn route(&self, peer: &Peer) -> Route {
        match self.backend {
            Backend::Vxlan => Route {
                destination: peer.subnet.network,
                prefix: peer.subnet.prefix,
                gateway: peer.subnet.network,
                oif: self.oif,
                onlink: true,
            },
            Backend::HostGw => Route {
                destination: peer.subnet.network,
                prefix: peer.subnet.prefix,
                gateway: peer.ip,
                oif: self.oif,
                onlink: false,
            },
        }
    }

    fn forget(&mut self, peer: &Peer) -> io::Result<()> {
        self.nl
            .delete_route(peer.subnet.network, peer.subnet.prefix)?;
        if let Some(mac) = peer.mac {
            self.nl.delete_neighbour(self.oif, peer.subnet.network)?;
            self.nl.delete_fdb(self.oif, mac, peer.ip)?;
        }
        Ok(())
    }

    fn program(&mut self, peer: &Peer) -> io::Result<()> {
        if let Some(mac) = peer.mac {
            self.nl
                .replace_neighbour(self.oif, peer.subnet.network, mac)?;
            self.nl.replace_fdb(self.oif, mac, peer.ip)?;
        }
        let route = self.route(peer);
        self.nl.replace_route(&route).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENETUNREACH) && self.backend == Backend::HostGw {
                io::Error::other(format!(
                    "{} is not on a network this node is attached to: host-gw needs every node on one link; use --flannel-backend vxlan",
                    peer.ip
                ))
            } else {
                e
            }
        })
    }

    /// Makes the kernel's state match `peers`: entries of nodes gone or
    /// changed are removed, every wanted one is (re)written, and overlay
    /// routes nobody wants are deleted. Returns one error per node that
    /// could not be programmed; the others are.
    pub fn apply(&mut self, peers: &BTreeMap<String, Peer>) -> Vec<(String, io::Error)> {
        let mut errors = Vec::new();
        let stale: Vec<(String, Peer)> = self
            .applied
            .iter()
            .filter(|(name, peer)| peers.get(*name) != Some(*peer))
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        for (name, peer) in stale {
            if let Err(e) = self.forget(&peer) {
                errors.push((name.clone(), e));
            }
            self.applied.remove(&name);
        }
        for (name, peer) in peers {
            match self.program(peer) {
                Ok(()) => {
                    self.applied.insert(name.clone(), peer.clone());
                }
                Err(e) => errors.push((name.clone(), e)),
            }
        }
        let wanted: Vec<(Ipv4Addr, u8)> = self
            .applied
            .values()
            .map(|p| (p.subnet.network, p.subnet.prefix))
            .collect();
        match self.nl.overlay_routes() {
            Ok(routes) => {
                for (destination, prefix) in routes {
                    if !wanted.contains(&(destination, prefix)) {
                        if let Err(e) = self.nl.delete_route(destination, prefix) {
                            errors.push((format!("{destination}/{prefix}"), e));
                        }
                    }
                }
            }
            Err(e) => errors.push(("(route list)".into(), e)),
        }
        errors
    }
}

impl Drop for Dataplane {
    /// Removes the device (and the routes, neighbours and forwarding entries
    /// through it) and the host-gw routes.
    fn drop(&mut self) {
        let applied = std::mem::take(&mut self.applied);
        for peer in applied.values() {
            let _ = self
                .nl
                .delete_route(peer.subnet.network, peer.subnet.prefix);
        }
        if self.backend == Backend::Vxlan {
            if let Err(e) = self.nl.delete_link(&self.device) {
                tracing::warn!(device = %self.device, "could not delete the VXLAN device: {e}");
            }
        }
    }
}
