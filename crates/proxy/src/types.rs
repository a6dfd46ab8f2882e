//! What the proxier is told: plain data, no I/O.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The nftables table (family `ip`) holding every rule of the proxy.
pub const TABLE: &str = "orca-proxy";

/// An IPv4 network, e.g. `10.42.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The network holding `addr`, its host bits cleared; `prefix` at most 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Cidr> {
        (prefix <= 32).then(|| Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(addr) & Self::mask_of(prefix)),
            prefix,
        })
    }

    fn mask_of(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0)
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Self::mask_of(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.network)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Ipv4Cidr, String> {
        let bad = || format!("invalid IPv4 CIDR {s:?}: expected a network like 10.42.0.0/16");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Ipv4Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// How the node proxies: fixed for the proxier's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Every pod of the cluster (`--cluster-cidr`). Traffic to a Service
    /// from outside it is masqueraded (so replies come back through this
    /// node), and pod traffic leaving it is masqueraded when
    /// `masquerade_pod_egress` is set.
    pub cluster_cidr: Ipv4Cidr,
    /// The addresses NodePorts answer on (kube-proxy's
    /// `--nodeport-addresses`, typically the node's InternalIP); empty: every
    /// local address but loopback.
    pub node_port_addresses: Vec<Ipv4Addr>,
    /// Masquerade all traffic to Services (kube-proxy's `--masquerade-all`).
    pub masquerade_all: bool,
    /// Masquerade pod traffic to destinations outside the cluster CIDR, so
    /// pods reach other machines (what flannel does on every node).
    pub masquerade_pod_egress: bool,
    /// Cluster IPs a server on the node answers itself: the cluster DNS
    /// address, which each node holds on its `lo`. A Service holding one
    /// (k3s's `kube-system/kube-dns`) is not programmed, so its traffic is
    /// neither DNATed to endpoints nor rejected for having none: it reaches
    /// the node's own server.
    pub node_local_cluster_ips: Vec<Ipv4Addr>,
}

impl ProxyConfig {
    /// kube-proxy's defaults for a cluster CIDR: NodePorts on every local
    /// address, masquerade only where needed, pod egress masqueraded.
    pub fn new(cluster_cidr: Ipv4Cidr) -> ProxyConfig {
        ProxyConfig {
            cluster_cidr,
            node_port_addresses: Vec::new(),
            masquerade_all: false,
            masquerade_pod_egress: true,
            node_local_cluster_ips: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IP protocol number, as `meta l4proto` sees it.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// Kubernetes' spelling (`TCP`, `UDP`, `SCTP`); anything else is `None`.
    pub fn from_kubernetes(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One port of one Service, with the endpoints serving it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The Service port's name (may be empty for a single-port Service).
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// 0: none.
    pub node_port: u16,
    /// `spec.externalIPs` and load-balancer ingress IPs: handled as NodePorts are.
    pub external_ips: Vec<Ipv4Addr>,
    /// `Some(seconds)` for `sessionAffinity: ClientIP`.
    pub session_affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local`: NodePort/external traffic goes only to
    /// this node's endpoints, keeping the client's source address.
    pub external_traffic_local: bool,
    /// `internalTrafficPolicy: Local`: ClusterIP traffic goes only to this
    /// node's endpoints.
    pub internal_traffic_local: bool,
    /// Every endpoint known for the port, ready or not: the proxier picks the
    /// usable ones as kube-proxy does (ready ones; if none, serving and
    /// terminating ones). `publishNotReadyAddresses` is the caller's to apply
    /// (by passing such endpoints as ready).
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// The endpoint runs on this node (for the traffic policies `Local`).
    pub is_local: bool,
}

impl Endpoint {
    /// A ready, serving endpoint (the common case).
    pub fn ready(ip: Ipv4Addr, port: u16) -> Endpoint {
        Endpoint {
            ip,
            port,
            ready: true,
            serving: true,
            terminating: false,
            is_local: false,
        }
    }
}

/// A container's `hostPort`: connections to (`host_ip` or any local address,
/// `host_port`) go to (`pod_ip`, `container_port`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPortMapping {
    pub protocol: Protocol,
    pub host_port: u16,
    /// `None` (or `0.0.0.0` in the pod spec): every local address but loopback.
    pub host_ip: Option<Ipv4Addr>,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_contain() {
        let c: Ipv4Cidr = "10.42.3.7/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert_eq!(c.mask(), Ipv4Addr::new(255, 255, 0, 0));
        assert!(c.contains(Ipv4Addr::new(10, 42, 200, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 43, 0, 1)));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
    }
}
