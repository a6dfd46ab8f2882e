//! Built-in pod networking, no CNI binaries: a bridge holding the gateway
//! (.1 of the node's pod CIDR), one veth pair per pod with `eth0` inside the
//! pod's network namespace and its bridge port in hairpin mode (as the CNI
//! bridge plugin's `hairpinMode`), and IPs allocated from the CIDR.
//! Allocations are persisted so a restarted agent does not hand out an IP
//! twice; as CNI's host-local IPAM, they go round the range from the last one
//! handed out, so a pod that replaces another gets a new IP.
//!
//! Links are configured over rtnetlink from this process: the host side on
//! the caller's thread, the pod side from a thread inside the pod's namespace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::netlink::{self, Netlink};

#[derive(Debug, thiserror::Error)]
pub(crate) enum NetworkError {
    #[error("invalid pod CIDR {0:?}: expected an IPv4 network like 10.42.0.0/24")]
    BadCidr(String),
    #[error("pod CIDR {0} has no free IP left")]
    Exhausted(String),
    #[error("{what}: {source}")]
    Link {
        what: String,
        source: std::io::Error,
    },
    #[error("IP allocations in {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An IPv4 network: address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, NetworkError> {
        let bad = || NetworkError::BadCidr(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    /// The gateway, held by the bridge: the network's first address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Addresses pods may get: after the gateway, before broadcast.
    fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.network);
        let size = 1u32 << (32 - self.prefix);
        (2..size - 1).map(move |i| Ipv4Addr::from(base + i))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

pub(crate) struct Network {
    pub bridge: String,
    pub cidr: Cidr,
    allocations: PathBuf,
    /// The last IP handed out (host-local's `last_reserved_ip`).
    last: PathBuf,
    lock: Mutex<()>,
    /// The bridge's index once set up (0: not yet).
    bridge_ready: AtomicU32,
}

impl Network {
    pub fn new(state_dir: PathBuf, bridge: &str, cidr: &str) -> Result<Network, NetworkError> {
        Ok(Network {
            allocations: state_dir.join(format!("{bridge}-ips.json")),
            last: state_dir.join(format!("{bridge}-last-ip")),
            bridge: bridge.to_string(),
            cidr: Cidr::parse(cidr)?,
            lock: Mutex::new(()),
            bridge_ready: AtomicU32::new(0),
        })
    }

    /// Creates the bridge with the gateway address (idempotent) and turns on
    /// IP forwarding so pods reach beyond the node; returns its index.
    fn ensure_bridge(&self, nl: &mut Netlink) -> Result<u32, NetworkError> {
        let b = &self.bridge;
        let ready = self.bridge_ready.load(Ordering::Acquire);
        if ready != 0 {
            return Ok(ready);
        }
        let err = |source| NetworkError::Link {
            what: format!("set up bridge {b}"),
            source,
        };
        let index = nl.ensure_bridge(b).map_err(err)?;
        nl.add_address(index, self.cidr.gateway(), self.cidr.prefix, true)
            .map_err(err)?;
        nl.set_up(index).map_err(err)?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| {
            NetworkError::Link {
                what: "enable ip_forward".into(),
                source,
            }
        })?;
        self.bridge_ready.store(index, Ordering::Release);
        Ok(index)
    }

    fn load(&self) -> Result<BTreeMap<Ipv4Addr, String>, NetworkError> {
        match std::fs::read(&self.allocations) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| NetworkError::Store {
                path: self.allocations.clone(),
                source: std::io::Error::other(e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(NetworkError::Store {
                path: self.allocations.clone(),
                source,
            }),
        }
    }

    fn save(&self, map: &BTreeMap<Ipv4Addr, String>) -> Result<(), NetworkError> {
        if let Some(dir) = self.allocations.parent() {
            std::fs::create_dir_all(dir).map_err(|source| NetworkError::Store {
                path: self.allocations.clone(),
                source,
            })?;
        }
        // Durable: allocations outlive a reboot until the agent frees them.
        crate::state::write_json_durable(&self.allocations, map).map_err(|source| {
            NetworkError::Store {
                path: self.allocations.clone(),
                source,
            }
        })
    }

    /// The pod's IP: its existing allocation, or the first free one after
    /// the last handed out (wrapping round the range).
    pub fn allocate(&self, pod_uid: &str) -> Result<Ipv4Addr, NetworkError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = self.load()?;
        if let Some((ip, _)) = map.iter().find(|(_, uid)| *uid == pod_uid) {
            return Ok(*ip);
        }
        let last: Option<Ipv4Addr> = std::fs::read_to_string(&self.last)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let hosts: Vec<Ipv4Addr> = self.cidr.hosts().collect();
        let start = last
            .and_then(|l| hosts.iter().position(|h| *h == l))
            .map_or(0, |i| i + 1);
        let ip = hosts[start..]
            .iter()
            .chain(&hosts[..start])
            .find(|ip| !map.contains_key(ip))
            .copied()
            .ok_or_else(|| NetworkError::Exhausted(self.cidr.to_string()))?;
        map.insert(ip, pod_uid.to_string());
        self.save(&map)?;
        // Only a preference: losing it at worst hands out a recent IP again.
        let _ = std::fs::write(&self.last, ip.to_string());
        Ok(ip)
    }

    pub fn release(&self, pod_uid: &str) -> Result<(), NetworkError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = self.load()?;
        let before = map.len();
        map.retain(|_, uid| uid != pod_uid);
        if map.len() != before {
            self.save(&map)?;
        }
        Ok(())
    }

    /// Connects the network namespace of `pid` to the bridge: a veth pair
    /// with `eth0` inside, its address, loopback and the default route.
    pub fn attach(&self, pid: i32, veth: &str, ip: Ipv4Addr) -> Result<(), NetworkError> {
        let err = |what: String| {
            move |source| NetworkError::Link {
                what: what.clone(),
                source,
            }
        };
        let mut nl = Netlink::open().map_err(err("open a netlink socket".into()))?;
        let bridge = match self.ensure_bridge(&mut nl) {
            // The bridge was deleted behind our back: create it again.
            Ok(index) if netlink::link_index(&self.bridge).ok() != Some(index) => {
                self.bridge_ready.store(0, Ordering::Release);
                self.ensure_bridge(&mut nl)?
            }
            other => other?,
        };
        let ns_path = format!("/proc/{pid}/ns/net");
        let ns = std::fs::File::open(&ns_path).map_err(err(format!("open {ns_path}")))?;
        nl.add_veth(veth, bridge, "eth0", &ns)
            .map_err(err(format!("create veth {veth} on {}", self.bridge)))?;
        netlink::link_index(veth)
            .and_then(|index| nl.set_hairpin(index))
            .map_err(err(format!("turn on hairpin mode on {veth}")))?;
        let (prefix, gateway) = (self.cidr.prefix, self.cidr.gateway());
        netlink::in_netns(&ns, || {
            let mut pod = Netlink::open()?;
            pod.set_up(netlink::link_index("lo")?)?;
            let eth0 = netlink::link_index("eth0")?;
            pod.add_address(eth0, ip, prefix, false)?;
            pod.set_up(eth0)?;
            pod.add_default_route(gateway)
        })
        .map_err(err("configure eth0 in the pod's network namespace".into()))
    }

    /// Deletes the host end of a pod's veth (the pod end goes with it).
    /// Already gone (its namespace died) is fine.
    pub fn detach(&self, veth: &str) -> Result<(), NetworkError> {
        let err = |source| NetworkError::Link {
            what: format!("delete veth {veth}"),
            source,
        };
        Netlink::open()
            .and_then(|mut nl| nl.delete_link(veth))
            .map(|_| ())
            .map_err(err)
    }
}

/// A host-side veth name for a pod (at most 15 bytes, as Linux requires).
pub(crate) fn veth_name(pod_uid: &str) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in pod_uid.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("vo{:013x}", h & 0xf_ffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_hosts() {
        let c = Cidr::parse("10.42.3.7/24").unwrap();
        assert_eq!(c.to_string(), "10.42.3.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 42, 3, 1));
        assert_eq!(c.hosts().next(), Some(Ipv4Addr::new(10, 42, 3, 2)));
        assert_eq!(c.hosts().last(), Some(Ipv4Addr::new(10, 42, 3, 254)));
        assert!(Cidr::parse("10.42.0.0").is_err());
        assert!(Cidr::parse("10.42.0.0/31").is_err());
    }

    #[test]
    fn allocations_persist_and_free() {
        let dir = tempfile::tempdir().unwrap();
        let n = Network::new(dir.path().into(), "orcatest", "10.9.0.0/29").unwrap();
        let a = n.allocate("a").unwrap();
        let b = n.allocate("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(n.allocate("a").unwrap(), a);
        let again = Network::new(dir.path().into(), "orcatest", "10.9.0.0/29").unwrap();
        assert_eq!(again.allocate("b").unwrap(), b);
        for uid in ["c", "d", "e"] {
            again.allocate(uid).unwrap();
        }
        assert!(matches!(
            again.allocate("g"),
            Err(NetworkError::Exhausted(_))
        ));
        again.release("a").unwrap();
        assert_eq!(again.allocate("g").unwrap(), a);
    }

    #[test]
    fn a_replacement_gets_a_new_ip() {
        let dir = tempfile::tempdir().unwrap();
        let n = Network::new(dir.path().into(), "orcatest", "10.9.0.0/29").unwrap();
        let a = n.allocate("a").unwrap();
        n.release("a").unwrap();
        let b = n.allocate("b").unwrap();
        assert_ne!(a, b, "a freed IP is not handed out again at once");
        // Round the range: the first free after the last one handed out.
        let again = Network::new(dir.path().into(), "orcatest", "10.9.0.0/29").unwrap();
        let c = again.allocate("c").unwrap();
        assert_eq!(u32::from(c), u32::from(b) + 1);
    }

    #[test]
    fn veth_names_fit_linux_limits() {
        let v = veth_name("5f0c7b1e-0000-4000-8000-000000000001");
        assert_eq!(v.len(), 15);
        assert_eq!(v, veth_name("5f0c7b1e-0000-4000-8000-000000000001"));
        assert_ne!(v, veth_name("other"));
    }
}
