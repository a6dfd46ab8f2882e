//! What the index keeps of Services and EndpointSlices, and the records
//! one Service yields under the Kubernetes DNS specification. Pure data.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_server::proto::rr::rdata::{A, CNAME, PTR, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The records at one owner name, all types together; a query picks its
/// type out of them. Built once per change, shared by every answer.
#[derive(Debug, Default)]
pub struct NameRecords {
    pub records: Vec<Record>,
    /// The A records of SRV targets, for the additional section.
    pub additionals: Vec<Record>,
}

impl NameRecords {
    /// A name that exists only because names below it do (RFC 8020).
    pub fn empty() -> Arc<NameRecords> {
        Arc::new(NameRecords::default())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortInfo {
    pub name: Option<String>,
    pub port: u16,
    /// `_tcp`, `_udp` or `_sctp`.
    pub protocol_label: &'static str,
}

impl PortInfo {
    fn new(name: Option<&String>, port: i32, protocol: Option<&String>) -> Option<PortInfo> {
        let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
        let protocol_label = match protocol.map(String::as_str) {
            None | Some("TCP") => "_tcp",
            Some("UDP") => "_udp",
            Some("SCTP") => "_sctp",
            Some(_) => return None,
        };
        Some(PortInfo {
            name: name
                .filter(|n| !n.is_empty())
                .map(|n| n.to_ascii_lowercase()),
            port,
            protocol_label,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    ClusterIp(Vec<Ipv4Addr>),
    Headless,
    ExternalName(Name),
    /// No address yet (or IPv6 only): no records.
    Unaddressed,
}

/// What DNS needs of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceInfo {
    pub kind: ServiceKind,
    pub ports: Vec<PortInfo>,
    pub publish_not_ready: bool,
}

impl ServiceInfo {
    pub fn from_service(service: &Service) -> ServiceInfo {
        let spec = service.spec.clone().unwrap_or_default();
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            match spec
                .external_name
                .as_deref()
                .and_then(|n| Name::from_ascii(n.trim_end_matches('.')).ok())
            {
                Some(mut name) => {
                    name.set_fqdn(true);
                    ServiceKind::ExternalName(name)
                }
                None => ServiceKind::Unaddressed,
            }
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            let ips: Vec<Ipv4Addr> = spec
                .cluster_ips
                .as_deref()
                .filter(|ips| !ips.is_empty())
                .unwrap_or(spec.cluster_ip.as_slice())
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect();
            if ips.is_empty() {
                ServiceKind::Unaddressed
            } else {
                ServiceKind::ClusterIp(ips)
            }
        };
        let ports = spec
            .ports
            .unwrap_or_default()
            .iter()
            .filter_map(|p| PortInfo::new(p.name.as_ref(), p.port, p.protocol.as_ref()))
            .collect();
        ServiceInfo {
            kind,
            ports,
            publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EndpointInfo {
    pub ip: Ipv4Addr,
    /// `spec.hostname` of a pod whose `spec.subdomain` names the Service
    /// (the EndpointSlice controller sets it), lowercased and valid.
    pub hostname: Option<String>,
    pub ready: bool,
}

/// What DNS needs of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SliceInfo {
    pub service: String,
    pub ports: Vec<PortInfo>,
    pub endpoints: Vec<EndpointInfo>,
}

impl SliceInfo {
    /// None for slices of no Service or of another address type.
    pub fn from_slice(slice: &EndpointSlice) -> Option<SliceInfo> {
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        if slice.address_type != "IPv4" {
            return None;
        }
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| PortInfo::new(p.name.as_ref(), p.port?, p.protocol.as_ref()))
            .collect();
        let mut endpoints = Vec::new();
        for endpoint in &slice.endpoints {
            // Unknown readiness counts as ready (the API's documented meaning).
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            let hostname = endpoint
                .hostname
                .as_deref()
                .map(str::to_ascii_lowercase)
                .filter(|h| is_dns_label(h));
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse() {
                    endpoints.push(EndpointInfo {
                        ip,
                        hostname: hostname.clone(),
                        ready,
                    });
                }
            }
        }
        Some(SliceInfo {
            service: service.clone(),
            ports,
            endpoints,
        })
    }
}

/// A claim on the PTR record of an address: the lowest wins, so a
/// ClusterIP beats an endpoint, a chosen hostname beats a dashed address,
/// and among equals the first Service by namespace and name.
pub(crate) type PtrRank = (u8, String, String, String);

/// Everything one Service puts in the zone.
#[derive(Default)]
pub(crate) struct ServiceRecords {
    pub names: Vec<(LowerName, Arc<NameRecords>)>,
    pub ptrs: Vec<(Ipv4Addr, PtrRank, Name)>,
}

/// The zone's fixed names and the TTL, shared by every build.
pub(crate) struct ZoneNames {
    pub svc: Name,
    pub pod: Name,
    pub ttl: u32,
}

impl ZoneNames {
    /// `<service>.<namespace>.svc.<zone>.`
    pub fn service(&self, namespace: &str, service: &str) -> Option<Name> {
        self.svc
            .prepend_label(namespace)
            .and_then(|n| n.prepend_label(service))
            .ok()
    }
}

struct Endpoint<'a> {
    ip: Ipv4Addr,
    /// The endpoint's own name under the Service: its hostname, or its
    /// address with dashes (`10-42-0-5`) as CoreDNS names unnamed ones.
    label: String,
    explicit: bool,
    ports: &'a [PortInfo],
}

/// The records of Service `namespace/name` from its object and its slices.
pub(crate) fn build_service(
    zone: &ZoneNames,
    namespace: &str,
    name: &str,
    service: &ServiceInfo,
    slices: &[&SliceInfo],
) -> ServiceRecords {
    let mut out = ServiceRecords::default();
    let Some(base) = zone.service(namespace, name) else {
        return out;
    };
    let ttl = zone.ttl;
    let a = |owner: &Name, ip: Ipv4Addr| Record::from_rdata(owner.clone(), ttl, RData::A(A(ip)));

    let endpoints = ready_endpoints(service, slices);
    let rank = |class: u8, host: &str| {
        (
            class,
            namespace.to_string(),
            name.to_string(),
            host.to_string(),
        )
    };
    // One name per endpoint label, with every address it has.
    let mut endpoint_names: BTreeMap<&str, (Name, Vec<Record>)> = BTreeMap::new();
    for e in &endpoints {
        let Ok(owner) = base.prepend_label(e.label.as_str()) else {
            continue;
        };
        let entry = endpoint_names
            .entry(e.label.as_str())
            .or_insert_with(|| (owner.clone(), Vec::new()));
        entry.1.push(a(&owner, e.ip));
        let class = if e.explicit { 1 } else { 2 };
        out.ptrs.push((e.ip, rank(class, &e.label), owner));
    }

    match &service.kind {
        ServiceKind::Unaddressed => return ServiceRecords::default(),
        ServiceKind::ExternalName(target) => {
            let cname = Record::from_rdata(base.clone(), ttl, RData::CNAME(CNAME(target.clone())));
            out.names.push((
                LowerName::new(&base),
                Arc::new(NameRecords {
                    records: vec![cname],
                    additionals: Vec::new(),
                }),
            ));
            out.ptrs.clear();
            return out;
        }
        ServiceKind::ClusterIp(ips) => {
            let base_a: Vec<Record> = ips.iter().map(|ip| a(&base, *ip)).collect();
            for ip in ips {
                out.ptrs.push((*ip, rank(0, ""), base.clone()));
            }
            // SRV per port at `_port._proto.<base>`, all aiming at the Service.
            let mut by_name: BTreeMap<(&str, &str), Vec<Record>> = BTreeMap::new();
            for port in &service.ports {
                if let Some(port_name) = &port.name {
                    by_name
                        .entry((port_name.as_str(), port.protocol_label))
                        .or_default()
                        .push(srv(&base, ttl, port.port, &base));
                }
            }
            let mut base_records = base_a.clone();
            base_records.extend(service.ports.iter().map(|p| srv(&base, ttl, p.port, &base)));
            set_weights(&mut base_records);
            out.names.push((
                LowerName::new(&base),
                Arc::new(NameRecords {
                    records: base_records,
                    additionals: base_a.clone(),
                }),
            ));
            push_srv_names(&mut out, &base, by_name, |_| base_a.clone());
        }
        ServiceKind::Headless => {
            // The spec: a headless Service with no ready endpoint does not exist.
            if endpoints.is_empty() {
                return ServiceRecords::default();
            }
            let mut seen = BTreeSet::new();
            let mut base_records: Vec<Record> = endpoints
                .iter()
                .filter(|e| seen.insert(e.ip))
                .map(|e| a(&base, e.ip))
                .collect();
            let mut by_name: BTreeMap<(&str, &str), Vec<Record>> = BTreeMap::new();
            let mut srv_base = Vec::new();
            for e in &endpoints {
                let Some((target, _)) = endpoint_names.get(e.label.as_str()) else {
                    continue;
                };
                for port in e.ports {
                    let record = srv(&base, ttl, port.port, target);
                    if let Some(port_name) = &port.name {
                        let entry = by_name
                            .entry((port_name.as_str(), port.protocol_label))
                            .or_default();
                        // Two slices may carry the same endpoint for a moment.
                        if !entry.contains(&record) {
                            entry.push(record.clone());
                        }
                    }
                    if !srv_base.contains(&record) {
                        srv_base.push(record);
                    }
                }
            }
            set_weights(&mut srv_base);
            let targets_of = |records: &[Record]| -> Vec<Record> {
                let mut targets = Vec::new();
                for r in records {
                    if let RData::SRV(s) = &r.data {
                        let label = s.target.iter().next().unwrap_or_default();
                        let label = std::str::from_utf8(label).unwrap_or_default();
                        if let Some((_, addrs)) = endpoint_names.get(label) {
                            for addr in addrs {
                                if !targets.contains(addr) {
                                    targets.push(addr.clone());
                                }
                            }
                        }
                    }
                }
                targets
            };
            let additionals = targets_of(&srv_base);
            base_records.extend(srv_base);
            out.names.push((
                LowerName::new(&base),
                Arc::new(NameRecords {
                    records: base_records,
                    additionals,
                }),
            ));
            push_srv_names(&mut out, &base, by_name, |records| targets_of(records));
        }
    }
    for (owner, records) in endpoint_names.into_values() {
        out.names.push((
            LowerName::new(&owner),
            Arc::new(NameRecords {
                records,
                additionals: Vec::new(),
            }),
        ));
    }
    out
}

/// The endpoints DNS publishes: ready ones, or all with
/// `publishNotReadyAddresses`; each address once per label.
fn ready_endpoints<'a>(service: &ServiceInfo, slices: &[&'a SliceInfo]) -> Vec<Endpoint<'a>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for slice in slices {
        for e in &slice.endpoints {
            if !(e.ready || service.publish_not_ready) {
                continue;
            }
            let (label, explicit) = match &e.hostname {
                Some(h) => (h.clone(), true),
                None => (e.ip.to_string().replace('.', "-"), false),
            };
            if seen.insert((e.ip, label.clone())) {
                out.push(Endpoint {
                    ip: e.ip,
                    label,
                    explicit,
                    ports: &slice.ports,
                });
            }
        }
    }
    out
}

fn srv(owner: &Name, ttl: u32, port: u16, target: &Name) -> Record {
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::SRV(SRV::new(0, 100, port, target.clone())),
    )
}

/// Equal shares of weight 100 among the SRV records of one set (all have
/// priority 0), as CoreDNS gives them.
fn set_weights(records: &mut [Record]) {
    let count = records
        .iter()
        .filter(|r| matches!(r.data, RData::SRV(_)))
        .count()
        .max(1);
    let weight = (100 / count).max(1) as u16;
    for r in records.iter_mut() {
        if let RData::SRV(s) = &mut r.data {
            s.weight = weight;
        }
    }
}

/// `_port._proto.<base>` SRV names and their `_proto.<base>` parents.
fn push_srv_names(
    out: &mut ServiceRecords,
    base: &Name,
    by_name: BTreeMap<(&str, &str), Vec<Record>>,
    additionals: impl Fn(&[Record]) -> Vec<Record>,
) {
    let mut protocols = BTreeSet::new();
    for ((port_name, protocol), mut records) in by_name {
        let Ok(proto_name) = base.prepend_label(protocol) else {
            continue;
        };
        let Ok(owner) = proto_name.prepend_label(format!("_{port_name}")) else {
            continue;
        };
        for r in &mut records {
            r.name = owner.clone();
        }
        set_weights(&mut records);
        let additionals = additionals(&records);
        out.names.push((
            LowerName::new(&owner),
            Arc::new(NameRecords {
                records,
                additionals,
            }),
        ));
        if protocols.insert(protocol) {
            out.names
                .push((LowerName::new(&proto_name), NameRecords::empty()));
        }
    }
}

/// A PTR record for `ip` pointing at `target`.
pub(crate) fn ptr_record(ip: Ipv4Addr, target: &Name, ttl: u32) -> Record {
    let [a, b, c, d] = ip.octets();
    let owner = Name::from_ascii(format!("{d}.{c}.{b}.{a}.in-addr.arpa."))
        .expect("a reverse name is always valid");
    Record::from_rdata(owner, ttl, RData::PTR(PTR(target.clone())))
}

/// An RFC 1123 label as Kubernetes validates hostnames.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}
