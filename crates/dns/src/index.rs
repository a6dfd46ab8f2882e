//! The cluster zone as data: kept from Services and EndpointSlices, asked
//! by name and type. No I/O; the watches and the server share it behind a
//! lock, and an answer takes only reference counts out of it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use hickory_server::proto::rr::rdata::{A, NS, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::records::{
    build_service, ptr_record, NameRecords, PtrRank, ServiceInfo, SliceInfo, ZoneNames,
};

/// The schema version of the Kubernetes DNS specification served
/// (`dns-version.<zone>` TXT).
pub const SCHEMA_VERSION: &str = "1.0.1";

/// The index shared by the watches (writers) and the server (readers).
pub type SharedIndex = Arc<RwLock<ClusterIndex>>;

type Key = (String, String);

/// What one Service put in the index, to take out when it changes.
struct Built {
    names: Vec<LowerName>,
    ptr_claims: Vec<(Ipv4Addr, PtrRank)>,
}

/// What the index says about a name.
#[derive(Debug)]
pub enum Lookup {
    /// The name exists; its records of the asked type (maybe none: NODATA).
    Found(Arc<NameRecords>),
    /// A pod's `a-b-c-d.<ns>.pod.<zone>` A record, made from the name.
    Pod(Box<Record>),
    /// The name exists but has no record of the asked type.
    NoData,
    /// The name does not exist in the cluster zone.
    NxDomain,
    /// Not a cluster name: forward it.
    NotCluster,
    /// The watches have not listed everything yet: an answer now could
    /// wrongly deny a Service (SERVFAIL makes the client retry).
    NotSynced,
}

/// The cluster zone: names and records of Services, their endpoints and
/// pods under `<zone>`, and PTR records of the addresses they own.
pub struct ClusterIndex {
    zone: ZoneNames,
    apex: LowerName,
    pod: LowerName,
    reverse: LowerName,
    soa: Record,
    services: HashMap<Key, ServiceInfo>,
    slices: HashMap<Key, SliceInfo>,
    slices_of: HashMap<Key, BTreeSet<String>>,
    /// Owner name -> records, for every cluster name that exists.
    names: HashMap<LowerName, Arc<NameRecords>>,
    /// What each Service put in `names` and claimed in `ptr_claims`.
    built: HashMap<Key, Built>,
    ptr_claims: HashMap<Ipv4Addr, BTreeMap<PtrRank, Name>>,
    ptrs: HashMap<Ipv4Addr, Arc<NameRecords>>,
    /// Services per namespace: `<ns>.svc.<zone>` exists while any does.
    namespaces: HashMap<String, usize>,
    services_synced: bool,
    slices_synced: bool,
}

/// An index that answers nothing until filled.
impl ClusterIndex {
    /// An empty zone `domain` (e.g. `cluster.local`) whose records live
    /// `ttl` seconds and whose name server is `dns_ip`.
    pub fn new(domain: &str, ttl: u32, dns_ip: Ipv4Addr) -> Result<ClusterIndex, String> {
        let mut apex = Name::from_ascii(domain.trim_end_matches('.'))
            .map_err(|e| format!("cluster domain {domain:?} is not a domain name: {e}"))?;
        apex.set_fqdn(true);
        if apex.is_root() {
            return Err("the cluster domain must not be empty".into());
        }
        let child = |label: &str| apex.prepend_label(label).expect("short label");
        let zone = ZoneNames {
            svc: child("svc"),
            pod: child("pod"),
            ttl,
        };
        let ns_host = child("dns").prepend_label("ns").expect("short label");
        // The serial stays fixed: nothing transfers this zone, and resolvers
        // only use the SOA for its negative-caching TTL.
        let soa = Record::from_rdata(
            apex.clone(),
            ttl,
            RData::SOA(SOA::new(
                ns_host.clone(),
                child("hostmaster"),
                1,
                7200,
                1800,
                86400,
                ttl,
            )),
        );
        let mut names = HashMap::new();
        names.insert(
            LowerName::new(&apex),
            Arc::new(NameRecords {
                records: vec![
                    soa.clone(),
                    Record::from_rdata(apex.clone(), ttl, RData::NS(NS(ns_host.clone()))),
                ],
                additionals: vec![Record::from_rdata(
                    ns_host.clone(),
                    ttl,
                    RData::A(A(dns_ip)),
                )],
            }),
        );
        names.insert(
            LowerName::new(&ns_host),
            Arc::new(NameRecords {
                records: vec![Record::from_rdata(
                    ns_host.clone(),
                    ttl,
                    RData::A(A(dns_ip)),
                )],
                additionals: Vec::new(),
            }),
        );
        let version = child("dns-version");
        names.insert(
            LowerName::new(&version),
            Arc::new(NameRecords {
                records: vec![Record::from_rdata(
                    version,
                    ttl,
                    RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
                )],
                additionals: Vec::new(),
            }),
        );
        for parent in [&zone.svc, &zone.pod, &child("dns")] {
            names.insert(LowerName::new(parent), NameRecords::empty());
        }
        Ok(ClusterIndex {
            apex: LowerName::new(&apex),
            pod: LowerName::new(&zone.pod),
            reverse: LowerName::new(&Name::from_ascii("in-addr.arpa.").expect("valid")),
            zone,
            soa,
            services: HashMap::new(),
            slices: HashMap::new(),
            slices_of: HashMap::new(),
            names,
            built: HashMap::new(),
            ptr_claims: HashMap::new(),
            ptrs: HashMap::new(),
            namespaces: HashMap::new(),
            services_synced: false,
            slices_synced: false,
        })
    }

    /// The zone's apex, e.g. `cluster.local.`.
    pub fn zone(&self) -> &LowerName {
        &self.apex
    }

    /// The SOA record that negative answers carry.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// True once both Services and EndpointSlices have been listed.
    pub fn is_synced(&self) -> bool {
        self.services_synced && self.slices_synced
    }

    /// A Service added or changed.
    pub fn apply_service(&mut self, service: &Service) {
        let Some(key) = key_of(&service.metadata) else {
            return;
        };
        let info = ServiceInfo::from_service(service);
        if self.services.get(&key) == Some(&info) {
            return;
        }
        if self.services.insert(key.clone(), info).is_none() {
            self.namespace_up(&key.0);
        }
        self.rebuild(&key);
    }

    /// A Service deleted.
    pub fn delete_service(&mut self, service: &Service) {
        if let Some(key) = key_of(&service.metadata) {
            self.remove_service(&key);
        }
    }

    /// The full list of Services (after a watch's first list or relist):
    /// ones not in it are gone.
    pub fn replace_services(&mut self, services: &[Service]) {
        let keep: BTreeSet<Key> = services
            .iter()
            .filter_map(|s| key_of(&s.metadata))
            .collect();
        let gone: Vec<Key> = self
            .services
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove_service(&key);
        }
        for service in services {
            self.apply_service(service);
        }
        self.services_synced = true;
    }

    /// An EndpointSlice added or changed.
    pub fn apply_endpoint_slice(&mut self, slice: &EndpointSlice) {
        let Some(key) = key_of(&slice.metadata) else {
            return;
        };
        let info = SliceInfo::from_slice(slice);
        if self.slices.get(&key) == info.as_ref() {
            return;
        }
        let old_service = self.remove_slice_entry(&key);
        if let Some(info) = info {
            let service = (key.0.clone(), info.service.clone());
            self.slices_of
                .entry(service.clone())
                .or_default()
                .insert(key.1.clone());
            self.slices.insert(key, info);
            if old_service.as_ref() != Some(&service) {
                self.rebuild(&service);
            }
        }
        if let Some(old) = old_service {
            self.rebuild(&old);
        }
    }

    /// An EndpointSlice deleted.
    pub fn delete_endpoint_slice(&mut self, slice: &EndpointSlice) {
        if let Some(key) = key_of(&slice.metadata) {
            if let Some(service) = self.remove_slice_entry(&key) {
                self.rebuild(&service);
            }
        }
    }

    /// The full list of EndpointSlices: ones not in it are gone.
    pub fn replace_endpoint_slices(&mut self, slices: &[EndpointSlice]) {
        let keep: BTreeSet<Key> = slices.iter().filter_map(|s| key_of(&s.metadata)).collect();
        let gone: Vec<Key> = self
            .slices
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(service) = self.remove_slice_entry(&key) {
                self.rebuild(&service);
            }
        }
        for slice in slices {
            self.apply_endpoint_slice(slice);
        }
        self.slices_synced = true;
    }

    /// What the zone says about `name` for a query of `qtype`.
    pub fn lookup(&self, name: &LowerName, qtype: RecordType) -> Lookup {
        if self.apex.zone_of(name) {
            if !self.is_synced() {
                return Lookup::NotSynced;
            }
            if let Some(node) = self.names.get(name) {
                return Lookup::Found(node.clone());
            }
            return self.pod_lookup(name, qtype);
        }
        if matches!(qtype, RecordType::PTR | RecordType::ANY) && self.reverse.zone_of(name) {
            if let Some(node) = reverse_ip(name).and_then(|ip| self.ptrs.get(&ip)) {
                return Lookup::Found(node.clone());
            }
        }
        // Reverse names of other addresses go on to the node's resolvers,
        // as CoreDNS's `fallthrough in-addr.arpa`.
        Lookup::NotCluster
    }

    /// `a-b-c-d.<ns>.pod.<zone>` answers `a.b.c.d` from the name alone
    /// (CoreDNS's `pods insecure`, the spec's deprecated pod record);
    /// `<ns>.pod.<zone>` exists as their parent.
    fn pod_lookup(&self, name: &LowerName, qtype: RecordType) -> Lookup {
        if !self.pod.zone_of(name) {
            return Lookup::NxDomain;
        }
        let depth = name.num_labels() - self.pod.num_labels();
        if depth == 1 {
            return Lookup::NoData;
        }
        let first = name.iter().next().unwrap_or_default();
        match (depth, dashed_ipv4(first)) {
            (2, Some(ip)) if matches!(qtype, RecordType::A | RecordType::ANY) => {
                Lookup::Pod(Box::new(Record::from_rdata(
                    (**name).clone(),
                    self.zone.ttl,
                    RData::A(A(ip)),
                )))
            }
            (2, Some(_)) => Lookup::NoData,
            _ => Lookup::NxDomain,
        }
    }

    fn remove_service(&mut self, key: &Key) {
        if self.services.remove(key).is_some() {
            self.rebuild(key);
            self.namespace_down(&key.0);
        }
    }

    /// Forgets a slice; returns the Service it belonged to.
    fn remove_slice_entry(&mut self, key: &Key) -> Option<Key> {
        let old = self.slices.remove(key)?;
        let service = (key.0.clone(), old.service);
        if let Some(set) = self.slices_of.get_mut(&service) {
            set.remove(&key.1);
            if set.is_empty() {
                self.slices_of.remove(&service);
            }
        }
        Some(service)
    }

    /// Replaces what Service `key` put in the zone with what it puts now.
    fn rebuild(&mut self, key: &Key) {
        if let Some(built) = self.built.remove(key) {
            for name in built.names {
                self.names.remove(&name);
            }
            for (ip, rank) in built.ptr_claims {
                if let Some(map) = self.ptr_claims.get_mut(&ip) {
                    map.remove(&rank);
                }
                self.refresh_ptr(ip);
            }
        }
        let Some(service) = self.services.get(key) else {
            return;
        };
        let slices: Vec<&SliceInfo> = self
            .slices_of
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|slice| self.slices.get(&(key.0.clone(), slice.clone())))
            .collect();
        let records = build_service(&self.zone, &key.0, &key.1, service, &slices);
        let mut names = Vec::with_capacity(records.names.len());
        for (name, node) in records.names {
            self.names.insert(name.clone(), node);
            names.push(name);
        }
        let mut claims = Vec::with_capacity(records.ptrs.len());
        for (ip, rank, target) in records.ptrs {
            self.ptr_claims
                .entry(ip)
                .or_default()
                .insert(rank.clone(), target);
            claims.push((ip, rank));
            self.refresh_ptr(ip);
        }
        self.built.insert(
            key.clone(),
            Built {
                names,
                ptr_claims: claims,
            },
        );
    }

    fn refresh_ptr(&mut self, ip: Ipv4Addr) {
        match self
            .ptr_claims
            .get(&ip)
            .and_then(|claims| claims.values().next())
        {
            Some(target) => {
                let record = ptr_record(ip, target, self.zone.ttl);
                self.ptrs.insert(
                    ip,
                    Arc::new(NameRecords {
                        records: vec![record],
                        additionals: Vec::new(),
                    }),
                );
            }
            None => {
                self.ptr_claims.remove(&ip);
                self.ptrs.remove(&ip);
            }
        }
    }

    fn namespace_up(&mut self, namespace: &str) {
        let count = self.namespaces.entry(namespace.to_string()).or_default();
        *count += 1;
        if *count == 1 {
            if let Ok(name) = self.zone.svc.prepend_label(namespace) {
                self.names
                    .insert(LowerName::new(&name), NameRecords::empty());
            }
        }
    }

    fn namespace_down(&mut self, namespace: &str) {
        if let Some(count) = self.namespaces.get_mut(namespace) {
            *count -= 1;
            if *count == 0 {
                self.namespaces.remove(namespace);
                if let Ok(name) = self.zone.svc.prepend_label(namespace) {
                    self.names.remove(&LowerName::new(&name));
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn name_count(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

/// `d.c.b.a.in-addr.arpa.` -> `a.b.c.d`, reading the labels in place.
fn reverse_ip(name: &LowerName) -> Option<Ipv4Addr> {
    if name.num_labels() != 6 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, label) in name.iter().take(4).enumerate() {
        octets[3 - i] = decimal_octet(label)?;
    }
    Some(Ipv4Addr::from(octets))
}

/// `10-42-0-5` -> `10.42.0.5`, without allocating.
fn dashed_ipv4(label: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = label.split(|b| *b == b'-');
    for octet in &mut octets {
        *octet = decimal_octet(parts.next()?)?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// A decimal 0-255 without leading zeros (as Go's ParseIP, which CoreDNS uses).
fn decimal_octet(s: &[u8]) -> Option<u8> {
    if s.is_empty() || s.len() > 3 || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    let mut value: u16 = 0;
    for c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u16::from(c - b'0');
    }
    u8::try_from(value).ok()
}
