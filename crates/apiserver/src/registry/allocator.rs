//! Service cluster IPs and node ports, held in the store as one key per
//! value taken (`/registry/ranges/serviceips/<ip>`,
//! `/registry/ranges/servicenodeports/<port>`) naming the Service that holds
//! it. A key is created only if absent, so no value is handed out twice,
//! also by several API servers on one store; giving one back deletes its key
//! only if the same Service still holds it. (kube-apiserver keeps one bitmap
//! per range updated by compare-and-swap; a key per value needs no
//! read-modify-write and so never retries under load.)
//!
//! A repair pass at start and every 3 minutes (kube-apiserver's repair
//! loops) gives back values no Service holds, left by a server that stopped
//! between taking a value and storing or deleting its Service, and records
//! values that Services hold without a key.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use orca_store::{ListOptions, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::server::State;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
/// A value held by no Service is given back only when older than this: a
/// create in flight takes its values a moment before its Service is stored.
const LEAK_GRACE: Duration = Duration::from_secs(60);
const REPAIR_INTERVAL: Duration = Duration::from_secs(180);
/// Random picks tried before the taken values are listed to find a free one.
const RANDOM_TRIES: usize = 16;

/// The ranges Services take addresses and ports from: `orca server
/// --service-cidr` and `--service-node-port-range`.
#[derive(Clone, Debug)]
pub struct ServiceNetwork {
    base: u32,
    prefix: u8,
    node_ports: (u16, u16),
    /// The cluster DNS address, kept for [`CLUSTER_DNS_SERVICE`].
    cluster_dns: Option<Ipv4Addr>,
}

/// The Service that may hold the cluster DNS address (namespace, name):
/// k3s's, which `orca server` creates.
pub const CLUSTER_DNS_SERVICE: (&str, &str) = ("kube-system", "kube-dns");

#[derive(Debug, thiserror::Error)]
pub enum ServiceNetworkError {
    #[error("service CIDR {0:?}: expected an IPv4 CIDR with a prefix length from /12 to /30, such as 10.43.0.0/16")]
    Cidr(String),
    #[error(
        "service node port range {0:?}: expected FIRST-LAST within 1-65535, such as 30000-32767"
    )]
    Ports(String),
}

impl Default for ServiceNetwork {
    /// k3s's defaults: 10.43.0.0/16 and Kubernetes' 30000-32767.
    fn default() -> Self {
        ServiceNetwork {
            base: u32::from(Ipv4Addr::new(10, 43, 0, 0)),
            prefix: 16,
            node_ports: (30000, 32767),
            cluster_dns: None,
        }
    }
}

impl ServiceNetwork {
    pub fn new(cidr: &str, node_ports: &str) -> Result<Self, ServiceNetworkError> {
        let bad_cidr = || ServiceNetworkError::Cidr(cidr.to_string());
        let (ip, len) = cidr.split_once('/').ok_or_else(bad_cidr)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad_cidr())?;
        let prefix: u8 = len.parse().map_err(|_| bad_cidr())?;
        // kube-apiserver refuses ranges larger than /12; a /31 has no
        // usable address.
        if !(12..=30).contains(&prefix) {
            return Err(bad_cidr());
        }
        let bad_ports = || ServiceNetworkError::Ports(node_ports.to_string());
        let (lo, hi) = node_ports.split_once('-').ok_or_else(bad_ports)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad_ports())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad_ports())?;
        if lo == 0 || hi < lo {
            return Err(bad_ports());
        }
        Ok(ServiceNetwork {
            base: u32::from(ip) & (u32::MAX << (32 - prefix)),
            prefix,
            node_ports: (lo, hi),
            cluster_dns: None,
        })
    }

    /// Keeps `ip`, the cluster DNS address every node answers on itself,
    /// for [`CLUSTER_DNS_SERVICE`]: it is never picked for another Service
    /// and another Service asking for it is refused, so no Service but
    /// kube-dns ever holds it (the node proxy leaves it to the node's DNS
    /// server). An address outside the range needs no keeping.
    pub fn with_cluster_dns(mut self, ip: Ipv4Addr) -> Self {
        self.cluster_dns = Some(ip).filter(|ip| self.contains_ip(*ip));
        self
    }

    /// The cluster DNS address, when it is in the range.
    pub fn cluster_dns(&self) -> Option<Ipv4Addr> {
        self.cluster_dns
    }

    /// `ip` is the cluster DNS address and `holder` not its Service.
    fn reserved_from(&self, ip: Ipv4Addr, holder: &Holder) -> bool {
        self.cluster_dns == Some(ip)
            && (holder.namespace.as_str(), holder.name.as_str()) != CLUSTER_DNS_SERVICE
    }

    /// `10.43.0.0/16`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }

    /// `30000-32767`.
    pub fn node_port_range(&self) -> String {
        format!("{}-{}", self.node_ports.0, self.node_ports.1)
    }

    /// The first address of the range: the `kubernetes` Service's.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The range's network address, which a dry run reports for an address
    /// it did not take (as kube-apiserver does).
    pub(crate) fn network_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// Addresses that can be handed out: all but the network and broadcast
    /// addresses.
    fn ip_count(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    fn ip_index(&self, ip: Ipv4Addr) -> Option<u32> {
        let i = u32::from(ip).checked_sub(self.base + 1)?;
        (i < self.ip_count()).then_some(i)
    }

    pub(crate) fn contains_ip(&self, ip: Ipv4Addr) -> bool {
        self.ip_index(ip).is_some()
    }

    pub(crate) fn contains_port(&self, port: u16) -> bool {
        (self.node_ports.0..=self.node_ports.1).contains(&port)
    }

    pub(crate) fn first_port(&self) -> u16 {
        self.node_ports.0
    }

    /// The lower part of a range is kept for values asked for by number;
    /// random picks come from above it first (kube-apiserver's
    /// `calculateRangeOffset`).
    fn ip_offset(&self) -> u32 {
        let size = 1u32 << (32 - self.prefix);
        if size <= 16 {
            0
        } else {
            (size / 16).clamp(16, 256)
        }
    }

    fn port_offset(&self) -> u32 {
        let size = u32::from(self.node_ports.1 - self.node_ports.0) + 1;
        if size <= 16 {
            0
        } else {
            (size / 32).clamp(16, 128)
        }
    }
}

/// Who holds a value: the value of its key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Holder {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub allocated_at: String,
}

impl Holder {
    pub fn of(svc: &Value) -> Holder {
        let md = &svc["metadata"];
        let s = |k: &str| md[k].as_str().unwrap_or_default().to_string();
        Holder {
            namespace: s("namespace"),
            name: s("name"),
            uid: s("uid"),
            allocated_at: crate::handlers::now(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Why a value could not be taken; the messages are kube-apiserver's.
#[derive(Debug)]
pub(crate) enum Refused {
    IpNotInRange(Ipv4Addr, String),
    PortNotInRange(String),
    IpTaken,
    /// The cluster DNS address, asked for by another Service.
    IpReserved,
    PortTaken,
    Full,
    Store(orca_store::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::IpNotInRange(ip, range) => write!(
                f,
                "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}"
            ),
            Refused::PortNotInRange(range) => write!(
                f,
                "provided port is not in the valid range. The range of valid ports is {range}"
            ),
            Refused::IpTaken => f.write_str("provided IP is already allocated"),
            Refused::IpReserved => write!(
                f,
                "provided IP is reserved for the cluster DNS Service {}/{}",
                CLUSTER_DNS_SERVICE.0, CLUSTER_DNS_SERVICE.1
            ),
            Refused::PortTaken => f.write_str("provided port is already allocated"),
            Refused::Full => f.write_str("range is full"),
            Refused::Store(e) => write!(f, "the store failed: {e}"),
        }
    }
}

pub(crate) fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

pub(crate) fn port_key(port: u16) -> String {
    format!("{PORT_PREFIX}{port}")
}

/// Takes `want`, or a free address when `None`.
pub(crate) async fn take_ip(
    store: &dyn Store,
    net: &ServiceNetwork,
    want: Option<Ipv4Addr>,
    holder: &Holder,
) -> Result<Ipv4Addr, Refused> {
    match want {
        Some(ip) => {
            if !net.contains_ip(ip) {
                return Err(Refused::IpNotInRange(ip, net.cidr()));
            }
            if net.reserved_from(ip, holder) {
                return Err(Refused::IpReserved);
            }
            take_key(store, &ip_key(ip), holder, Refused::IpTaken).await?;
            Ok(ip)
        }
        None => {
            let reserved = net.cluster_dns.and_then(|ip| net.ip_index(ip));
            let i = take_next(
                store,
                IP_PREFIX,
                net.ip_count(),
                net.ip_offset(),
                reserved,
                holder,
                |i| ip_key(Ipv4Addr::from(net.base + 1 + i)),
            )
            .await?;
            Ok(Ipv4Addr::from(net.base + 1 + i))
        }
    }
}

/// Takes node port `want`, or a free one when `None`.
pub(crate) async fn take_port(
    store: &dyn Store,
    net: &ServiceNetwork,
    want: Option<u16>,
    holder: &Holder,
) -> Result<u16, Refused> {
    let (lo, hi) = net.node_ports;
    match want {
        Some(p) => {
            if !net.contains_port(p) {
                return Err(Refused::PortNotInRange(net.node_port_range()));
            }
            take_key(store, &port_key(p), holder, Refused::PortTaken).await?;
            Ok(p)
        }
        None => {
            let count = u32::from(hi - lo) + 1;
            let i = take_next(
                store,
                PORT_PREFIX,
                count,
                net.port_offset(),
                None,
                holder,
                |i| port_key(lo + i as u16),
            )
            .await?;
            Ok(lo + i as u16)
        }
    }
}

async fn take_key(
    store: &dyn Store,
    key: &str,
    holder: &Holder,
    taken: Refused,
) -> Result<(), Refused> {
    match store.create(key, holder.bytes()).await {
        Ok(_) => Ok(()),
        Err(orca_store::Error::AlreadyExists(_)) => Err(taken),
        Err(e) => Err(Refused::Store(e)),
    }
}

/// A free index of `count` other than `reserved`: random picks from
/// `[offset, count)` first, then, if they keep colliding, one of the values
/// no key holds.
async fn take_next(
    store: &dyn Store,
    prefix: &str,
    count: u32,
    offset: u32,
    reserved: Option<u32>,
    holder: &Holder,
    key_of: impl Fn(u32) -> String,
) -> Result<u32, Refused> {
    let offset = if offset >= count { 0 } else { offset };
    for _ in 0..RANDOM_TRIES {
        let i = rand::random_range(offset..count);
        if Some(i) == reserved {
            continue;
        }
        match store.create(&key_of(i), holder.bytes()).await {
            Ok(_) => return Ok(i),
            Err(orca_store::Error::AlreadyExists(_)) => continue,
            Err(e) => return Err(Refused::Store(e)),
        }
    }
    // Crowded: look at what is taken and pick among the rest, racing other
    // servers for them (a lost race is tried again).
    for _ in 0..8 {
        let taken: BTreeSet<String> = list_keys(store, prefix)
            .await
            .map_err(Refused::Store)?
            .into_keys()
            .collect();
        let free: Vec<u32> = (offset..count)
            .chain(0..offset)
            .filter(|i| Some(*i) != reserved && !taken.contains(&key_of(*i)))
            .take(64)
            .collect();
        if free.is_empty() {
            return Err(Refused::Full);
        }
        let i = free[rand::random_range(0..free.len())];
        match store.create(&key_of(i), holder.bytes()).await {
            Ok(_) => return Ok(i),
            Err(orca_store::Error::AlreadyExists(_)) => continue,
            Err(e) => return Err(Refused::Store(e)),
        }
    }
    Err(Refused::Full)
}

/// Gives back `key` if the Service `uid` holds it (a failed release is
/// repaired later).
pub(crate) async fn give_back(store: &dyn Store, key: &str, uid: &str) {
    let kv = match store.get(key).await {
        Ok(Some(kv)) => kv,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(key, error = %e, "could not read a service allocation to release it; the repair pass will");
            return;
        }
    };
    let holder: Option<Holder> = serde_json::from_slice(&kv.value).ok();
    if holder.is_some_and(|h| h.uid == uid) {
        match store.delete(key, Some(kv.mod_revision)).await {
            Ok(_) | Err(orca_store::Error::NotFound(_) | orca_store::Error::Conflict { .. }) => {}
            Err(e) => {
                tracing::warn!(key, error = %e, "could not release a service allocation; the repair pass will")
            }
        }
    }
}

/// Every key under `prefix` with its value and revision.
async fn list_keys(
    store: &dyn Store,
    prefix: &str,
) -> Result<BTreeMap<String, (Vec<u8>, i64)>, orca_store::Error> {
    let mut out = BTreeMap::new();
    let mut opts = ListOptions {
        limit: 1000,
        ..Default::default()
    };
    loop {
        let page = store.list(prefix, opts.clone()).await?;
        opts.revision = Some(page.revision);
        let last = page.kvs.last().map(|kv| kv.key.clone());
        for kv in page.kvs {
            out.insert(kv.key, (kv.value, kv.mod_revision));
        }
        match last {
            Some(l) if page.more => opts.start_after = Some(l),
            _ => return Ok(out),
        }
    }
}

/// The store keys of the values a Service holds (those within the ranges).
pub(crate) fn held_keys(net: &ServiceNetwork, svc: &Value) -> BTreeSet<String> {
    let spec = &svc["spec"];
    let mut keys = BTreeSet::new();
    for ip in spec["clusterIPs"].as_array().into_iter().flatten() {
        if let Some(ip) = ip.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
            if net.contains_ip(ip) {
                keys.insert(ip_key(ip));
            }
        }
    }
    let ports = spec["ports"].as_array().into_iter().flatten();
    let node_ports = ports.filter_map(|p| p["nodePort"].as_u64());
    for p in node_ports.chain(spec["healthCheckNodePort"].as_u64()) {
        if let Ok(p) = u16::try_from(p) {
            if net.contains_port(p) {
                keys.insert(port_key(p));
            }
        }
    }
    keys
}

/// One repair pass; see the module comment.
pub(crate) async fn repair(state: &State) -> Result<(), orca_store::Error> {
    let store = &*state.store;
    let net = &state.service_network;
    // Allocations first: a value taken after this read is not seen as a
    // leak, and one taken before it whose Service is not stored yet is young.
    let mut allocations = list_keys(store, IP_PREFIX).await?;
    allocations.extend(list_keys(store, PORT_PREFIX).await?);
    let services = list_keys(store, &crate::resources::services().prefix()).await?;
    let mut held: BTreeMap<String, Holder> = BTreeMap::new();
    for (value, _) in services.values() {
        let Ok(svc) = serde_json::from_slice::<Value>(value) else {
            continue;
        };
        let holder = Holder::of(&svc);
        for key in held_keys(net, &svc) {
            match allocations.get(&key) {
                None => {
                    if let Err(e) = store.create(&key, holder.bytes()).await {
                        if !matches!(e, orca_store::Error::AlreadyExists(_)) {
                            return Err(e);
                        }
                    } else {
                        tracing::info!(key, service = %format!("{}/{}", holder.namespace, holder.name),
                            "service allocation repaired: a value the Service holds had no record");
                    }
                }
                Some((bytes, _)) => {
                    let recorded: Option<Holder> = serde_json::from_slice(bytes).ok();
                    if recorded.as_ref().is_some_and(|r| r.uid != holder.uid) {
                        tracing::error!(key, service = %format!("{}/{}", holder.namespace, holder.name),
                            "a cluster IP or node port is held by more than one Service; delete and recreate one of them");
                    }
                }
            }
            held.insert(key, holder.clone());
        }
    }
    let now = chrono::Utc::now();
    for (key, (bytes, rev)) in &allocations {
        if held.contains_key(key) {
            continue;
        }
        let recorded: Option<Holder> = serde_json::from_slice(bytes).ok();
        let old_enough = recorded
            .as_ref()
            .and_then(|h| chrono::DateTime::parse_from_rfc3339(&h.allocated_at).ok())
            .is_none_or(|at| {
                now - at.with_timezone(&chrono::Utc)
                    > chrono::Duration::from_std(LEAK_GRACE).unwrap_or_default()
            });
        if !old_enough {
            continue;
        }
        match store.delete(key, Some(*rev)).await {
            Ok(_) => tracing::info!(
                key,
                "service allocation repaired: released a value no Service holds"
            ),
            Err(orca_store::Error::NotFound(_) | orca_store::Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Repairs every [`REPAIR_INTERVAL`] until the server goes away.
pub(crate) async fn repair_loop(state: Weak<State>) {
    loop {
        tokio::time::sleep(REPAIR_INTERVAL).await;
        let Some(state) = state.upgrade() else { return };
        if let Err(e) = repair(&state).await {
            tracing::warn!(error = %e, "repairing service allocations failed; retrying later");
        }
    }
}

/// What a dry run of [`take_ip`] answers: `want` if in range (taken or
/// not, as kube-apiserver does not check) and not kept for the cluster
/// DNS, else the network address.
pub(crate) fn dry_ip(
    net: &ServiceNetwork,
    want: Option<Ipv4Addr>,
    holder: &Holder,
) -> Result<Ipv4Addr, Refused> {
    match want {
        Some(ip) if !net.contains_ip(ip) => Err(Refused::IpNotInRange(ip, net.cidr())),
        Some(ip) if net.reserved_from(ip, holder) => Err(Refused::IpReserved),
        Some(ip) => Ok(ip),
        None => Ok(net.network_address()),
    }
}

/// What a dry run of [`take_port`] answers.
pub(crate) fn dry_port(net: &ServiceNetwork, want: Option<u16>) -> Result<u16, Refused> {
    match want {
        Some(p) if !net.contains_port(p) => Err(Refused::PortNotInRange(net.node_port_range())),
        Some(p) => Ok(p),
        None => Ok(net.first_port()),
    }
}

/// Releases, as [`give_back`], every key in `keys` held by `uid`.
pub(crate) async fn give_back_all(state: &Arc<State>, keys: &BTreeSet<String>, uid: &str) {
    for key in keys {
        give_back(&*state.store, key, uid).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_reserve_their_ends() {
        let net = ServiceNetwork::new("10.43.7.9/16", "30000-32767").unwrap();
        assert_eq!(net.cidr(), "10.43.0.0/16");
        assert_eq!(net.first_ip(), Ipv4Addr::new(10, 43, 0, 1));
        assert!(!net.contains_ip(Ipv4Addr::new(10, 43, 0, 0)));
        assert!(!net.contains_ip(Ipv4Addr::new(10, 43, 255, 255)));
        assert!(net.contains_ip(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!net.contains_ip(Ipv4Addr::new(10, 44, 0, 1)));
        assert_eq!(net.ip_offset(), 256);
        assert_eq!(net.port_offset(), 86);
        let small = ServiceNetwork::new("10.0.0.0/24", "30000-30010").unwrap();
        assert_eq!(small.ip_offset(), 16);
        assert_eq!(small.port_offset(), 0);
        assert!(ServiceNetwork::new("10.0.0.0/8", "30000-32767").is_err());
        assert!(ServiceNetwork::new("fd00::/112", "30000-32767").is_err());
        assert!(ServiceNetwork::new("10.43.0.0/16", "32767-30000").is_err());
    }

    #[test]
    fn messages_are_kubernetes_wording() {
        let net = ServiceNetwork::new("10.0.0.0/24", "30000-32767").unwrap();
        let holder =
            Holder::of(&serde_json::json!({"metadata": {"namespace": "default", "name": "web"}}));
        let e = dry_ip(&net, Some(Ipv4Addr::new(10, 1, 0, 5)), &holder).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the provided IP (10.1.0.5) is not in the valid range. The range of valid IPs is 10.0.0.0/24"
        );
        assert_eq!(
            dry_port(&net, Some(40000)).unwrap_err().to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        assert_eq!(
            dry_ip(&net, None, &holder).unwrap(),
            Ipv4Addr::new(10, 0, 0, 0)
        );
    }

    #[test]
    fn the_cluster_dns_address_is_kept_for_kube_dns() {
        let dns = Ipv4Addr::new(10, 0, 0, 10);
        let net = ServiceNetwork::new("10.0.0.0/24", "30000-32767")
            .unwrap()
            .with_cluster_dns(dns);
        assert_eq!(net.cluster_dns(), Some(dns));
        let of = |ns: &str, name: &str| {
            Holder::of(&serde_json::json!({"metadata": {"namespace": ns, "name": name}}))
        };
        let web = of("default", "web");
        assert_eq!(
            dry_ip(&net, Some(dns), &web).unwrap_err().to_string(),
            "provided IP is reserved for the cluster DNS Service kube-system/kube-dns"
        );
        assert!(!net.reserved_from(Ipv4Addr::new(10, 0, 0, 11), &web));
        assert_eq!(
            dry_ip(&net, Some(dns), &of("kube-system", "kube-dns")).unwrap(),
            dns
        );
        // Outside the range there is nothing to keep.
        let other = ServiceNetwork::new("10.0.0.0/24", "30000-32767")
            .unwrap()
            .with_cluster_dns(Ipv4Addr::new(10, 43, 0, 10));
        assert_eq!(other.cluster_dns(), None);
    }
}
