//! Which remote nodes the overlay reaches and how, from the Node objects:
//! `spec.podCIDR`, the `InternalIP` of `status.addresses`, and what each
//! node's overlay published in its annotations (its backend and, for
//! VXLAN, the MAC address of its device). Pure logic.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::Node;

use crate::netlink::Mac;
use crate::Backend;

/// The backend a node's overlay runs (as flannel's `backend-type`).
pub const BACKEND_ANNOTATION: &str = "overlay.orca.dev/backend";
/// The MAC address of a node's VXLAN device (flannel's `VtepMAC`).
pub const VTEP_MAC_ANNOTATION: &str = "overlay.orca.dev/vtep-mac";
/// The address other nodes send a node's pod traffic to (flannel's `public-ip`).
pub const PUBLIC_IP_ANNOTATION: &str = "overlay.orca.dev/public-ip";

/// An IPv4 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Option<Subnet> {
        let (addr, prefix) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p))?;
        let mask = u32::MAX << (32 - prefix);
        Some(Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A remote node the overlay routes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub subnet: Subnet,
    /// Its InternalIP.
    pub ip: Ipv4Addr,
    /// Its VXLAN device's MAC (VXLAN only).
    pub mac: Option<Mac>,
}

/// The MAC address of a node's VXLAN device: locally administered and
/// derived from the node's address, so it survives a restart of the agent
/// (remote nodes' entries stay valid) and differs between nodes.
pub fn vtep_mac(node_ip: Ipv4Addr) -> Mac {
    let [a, b, c, d] = node_ip.octets();
    [0x02, 0x4f, a, b, c, d]
}

pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<Mac> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 2))
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| match a.address.parse() {
            Ok(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        })
}

/// Why a node is left out although its overlay published itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub node: String,
    pub reason: String,
}

/// The peers of node `own` running `backend`, by node name. Nodes whose
/// overlay has not published itself (simulated nodes, agents starting) are
/// left out silently; nodes that did but cannot be used are in `Skipped`.
pub fn peers<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    own: &str,
    own_subnet: Subnet,
    backend: Backend,
) -> (BTreeMap<String, Peer>, Vec<Skipped>) {
    let mut peers = BTreeMap::new();
    let mut skipped = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let annotations = node.metadata.annotations.as_ref();
        let Some(theirs) = annotations.and_then(|a| a.get(BACKEND_ANNOTATION)) else {
            continue;
        };
        if name == own {
            continue;
        }
        let mut skip = |reason: String| {
            skipped.push(Skipped {
                node: name.clone(),
                reason,
            })
        };
        if theirs != backend.name() {
            skip(format!(
                "it runs the {theirs} backend and this node {}: every node needs the same --flannel-backend",
                backend.name()
            ));
            continue;
        }
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref());
        let Some(subnet) = cidr.and_then(Subnet::parse) else {
            continue;
        };
        if subnet == own_subnet {
            skip(format!("its pod CIDR {subnet} is this node's too"));
            continue;
        }
        let Some(ip) = internal_ip(node) else {
            skip("it has no IPv4 InternalIP address".into());
            continue;
        };
        let mac = match backend {
            Backend::Vxlan => {
                let published = annotations.and_then(|a| a.get(VTEP_MAC_ANNOTATION));
                match published.and_then(|m| parse_mac(m)) {
                    Some(mac) => Some(mac),
                    None => {
                        skip(format!(
                            "its {VTEP_MAC_ANNOTATION} annotation {published:?} is not a MAC address"
                        ));
                        continue;
                    }
                }
            }
            Backend::HostGw => None,
        };
        peers.insert(name, Peer { subnet, ip, mac });
    }
    (peers, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: &str, annotations: &[(&str, &str)]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "annotations": annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            },
            "spec": {"podCIDR": cidr},
            "status": {"addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": ip},
            ]},
        }))
        .unwrap()
    }

    fn vxlan_node(name: &str, cidr: &str, ip: &str) -> Node {
        let mac = format_mac(&vtep_mac(ip.parse().unwrap()));
        node(
            name,
            Some(cidr),
            ip,
            &[(BACKEND_ANNOTATION, "vxlan"), (VTEP_MAC_ANNOTATION, &mac)],
        )
    }

    #[test]
    fn subnets_parse_to_their_network() {
        let s = Subnet::parse("10.42.1.7/24").unwrap();
        assert_eq!(s.to_string(), "10.42.1.0/24");
        assert!(Subnet::parse("10.42.1.0").is_none());
        assert!(Subnet::parse("10.42.1.0/33").is_none());
        assert!(Subnet::parse("fd00::/64").is_none());
    }

    #[test]
    fn macs_round_trip_and_follow_the_node_address() {
        let mac = vtep_mac("172.30.4.2".parse().unwrap());
        assert_eq!(format_mac(&mac), "02:4f:ac:1e:04:02");
        assert_eq!(parse_mac("02:4f:ac:1e:04:02"), Some(mac));
        assert_eq!(parse_mac("02:4f:ac:1e:04"), None);
        assert_eq!(parse_mac("02:4f:ac:1e:04:2"), None);
        assert_ne!(mac, vtep_mac("172.30.4.3".parse().unwrap()));
    }

    #[test]
    fn peers_are_the_other_published_nodes() {
        let own = Subnet::parse("10.42.0.0/24").unwrap();
        let nodes = vec![
            vxlan_node("a", "10.42.0.0/24", "172.30.0.2"),
            vxlan_node("b", "10.42.1.0/24", "172.30.0.3"),
            // Simulated or not yet published: left out silently.
            node("virtual-0", Some("10.128.0.0/24"), "10.1.1.1", &[]),
            // Published but without a pod CIDR yet.
            node("c", None, "172.30.0.4", &[(BACKEND_ANNOTATION, "vxlan")]),
            node(
                "d",
                Some("10.42.3.0/24"),
                "172.30.0.5",
                &[(BACKEND_ANNOTATION, "host-gw")],
            ),
            node(
                "e",
                Some("10.42.4.0/24"),
                "172.30.0.6",
                &[(BACKEND_ANNOTATION, "vxlan"), (VTEP_MAC_ANNOTATION, "nope")],
            ),
        ];
        let (peers, skipped) = peers(&nodes, "a", own, Backend::Vxlan);
        assert_eq!(peers.keys().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(
            peers["b"],
            Peer {
                subnet: Subnet::parse("10.42.1.0/24").unwrap(),
                ip: "172.30.0.3".parse().unwrap(),
                mac: Some(vtep_mac("172.30.0.3".parse().unwrap())),
            }
        );
        let names: Vec<&str> = skipped.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(names, vec!["d", "e"]);
        assert!(skipped[0].reason.contains("--flannel-backend"));

        let (hostgw, _) = super::peers(&nodes, "x", own, Backend::HostGw);
        assert_eq!(hostgw.keys().collect::<Vec<_>>(), vec!["d"]);
        assert_eq!(hostgw["d"].mac, None);
    }
}
