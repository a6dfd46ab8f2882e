//! The rules the proxy wants, as data: computed from the config, the
//! Service ports and the hostPorts, and compared with what was programmed
//! last to find what a sync must change. No I/O here; `nft` turns this into
//! netlink messages.
//!
//! The layout follows kube-proxy's nftables mode: fixed base and dispatch
//! chains created once, then per Service port a `service-…` chain (the
//! endpoint choice), per endpoint an `endpoint-…` chain (the DNAT), an
//! `external-…` chain when NodePorts or external IPs lead to it, and verdict
//! map elements pointing at them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::types::{Endpoint, HostPortMapping, Ipv4Cidr, Protocol, ProxyConfig, ServicePort};

/// The packet mark bit asking for masquerade in postrouting (kube-proxy's
/// default `--masquerade-bit` 14).
pub(crate) const MASQ_MARK: u32 = 0x4000;

pub(crate) const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
pub(crate) const MASQUERADING: &str = "masquerading";
pub(crate) const SERVICES: &str = "services";
pub(crate) const ENDPOINTS_CHECK: &str = "endpoints-check";
pub(crate) const HOSTPORTS: &str = "hostports";
pub(crate) const REJECT_CHAIN: &str = "reject-chain";
pub(crate) const NODEPORT_IPS: &str = "nodeport-ips";

/// The verdict maps the dynamic part of the ruleset fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Map {
    /// (ClusterIP or external IP, protocol, port) -> the Service port's chain.
    ServiceIps,
    /// (protocol, NodePort) -> the Service port's external chain.
    ServiceNodePorts,
    /// Service addresses without usable endpoints -> reject (or drop).
    NoEndpointServices,
    NoEndpointNodePorts,
    /// hostPorts bound to one host IP.
    HostPortIps,
    /// hostPorts on every local address.
    HostPorts,
}

impl Map {
    pub const ALL: [Map; 6] = [
        Map::ServiceIps,
        Map::ServiceNodePorts,
        Map::NoEndpointServices,
        Map::NoEndpointNodePorts,
        Map::HostPortIps,
        Map::HostPorts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Map::ServiceIps => "service-ips",
            Map::ServiceNodePorts => "service-nodeports",
            Map::NoEndpointServices => "no-endpoint-services",
            Map::NoEndpointNodePorts => "no-endpoint-nodeports",
            Map::HostPortIps => "hostport-ips",
            Map::HostPorts => "hostports",
        }
    }

    /// Whether the key starts with the destination address.
    pub fn keyed_by_address(self) -> bool {
        matches!(
            self,
            Map::ServiceIps | Map::NoEndpointServices | Map::HostPortIps
        )
    }
}

/// A verdict map key: (address, protocol, port) or (protocol, port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Key {
    AddrPort(Ipv4Addr, Protocol, u16),
    Port(Protocol, u16),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Verdict {
    Goto(String),
    Jump(String),
    Drop,
    Return,
}

/// A condition of a rule (all must hold).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Match {
    /// `ip saddr [!=] CIDR`
    SaddrIn(Ipv4Cidr, bool),
    /// `ip daddr [!=] CIDR`
    DaddrIn(Ipv4Cidr, bool),
    Saddr(Ipv4Addr),
    Daddr(Ipv4Addr),
    /// `ip daddr != 127.0.0.0/8`
    DaddrNotLoopback,
    /// `fib daddr type local`
    FibDaddrLocal,
    /// `fib saddr type local`
    FibSaddrLocal,
    /// `meta l4proto P`
    L4Proto(Protocol),
    /// `ct state new`
    CtStateNew,
    /// `ip saddr @set`
    SaddrInSet(String),
    /// `ip daddr @set`
    DaddrInSet(String),
    /// `meta mark & M == 0`
    MarkClear(u32),
}

/// What a rule does once its conditions hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    Verdict(Verdict),
    /// `… vmap @map`, the key read from the packet as the map needs it.
    Vmap(Map),
    /// `numgen random mod N vmap { 0 : goto c0, … }`
    NumgenVmap(Vec<String>),
    /// `meta mark set mark or M`
    MarkOr(u32),
    /// `meta mark set mark xor M`
    MarkXor(u32),
    /// `dnat to IP:PORT`
    Dnat(Ipv4Addr, u16),
    /// `masquerade fully-random`
    Masquerade,
    /// `reject` (ICMP port unreachable)
    Reject,
    /// `update @set { ip saddr }`
    UpdateSaddrSet(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
}

fn rule(matches: Vec<Match>, action: Action) -> Rule {
    Rule { matches, action }
}

fn goto(chain: &str) -> Action {
    Action::Verdict(Verdict::Goto(chain.to_string()))
}

fn jump(chain: &str) -> Action {
    Action::Verdict(Verdict::Jump(chain.to_string()))
}

/// A chain attached to a netfilter hook.
#[derive(Clone, Debug)]
pub(crate) struct BaseChain {
    pub name: &'static str,
    pub nat: bool,
    pub hook: Hook,
    pub priority: i32,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

/// The part of the table created once, at start: base chains, dispatch
/// chains and the (empty) maps.
pub(crate) struct Skeleton {
    pub base_chains: Vec<BaseChain>,
    pub chains: Vec<(&'static str, Vec<Rule>)>,
    /// The addresses NodePorts answer on; `None`: every local address.
    pub nodeport_ips: Option<Vec<Ipv4Addr>>,
}

// Filter rules look at the destination before DNAT rewrites it.
const FILTER_PRIORITY: i32 = -110;
const DSTNAT_PRIORITY: i32 = -100;
const SRCNAT_PRIORITY: i32 = 100;

pub(crate) fn skeleton(config: &ProxyConfig) -> Skeleton {
    let endpoints_check = || vec![rule(vec![Match::CtStateNew], jump(ENDPOINTS_CHECK))];
    let dispatch = || vec![rule(vec![], jump(SERVICES)), rule(vec![], jump(HOSTPORTS))];
    let mut postrouting = vec![rule(vec![], jump(MASQUERADING))];
    if config.masquerade_pod_egress {
        let multicast = Ipv4Cidr::new(Ipv4Addr::new(224, 0, 0, 0), 4).expect("valid");
        postrouting.push(rule(
            vec![
                Match::SaddrIn(config.cluster_cidr, false),
                Match::DaddrIn(config.cluster_cidr, true),
                Match::DaddrIn(multicast, true),
            ],
            Action::Masquerade,
        ));
    }
    let base = |name, nat, hook, priority, rules| BaseChain {
        name,
        nat,
        hook,
        priority,
        rules,
    };
    let base_chains = vec![
        base(
            "filter-input",
            false,
            Hook::Input,
            FILTER_PRIORITY,
            endpoints_check(),
        ),
        base(
            "filter-forward",
            false,
            Hook::Forward,
            FILTER_PRIORITY,
            endpoints_check(),
        ),
        base(
            "filter-output",
            false,
            Hook::Output,
            FILTER_PRIORITY,
            endpoints_check(),
        ),
        base(
            "nat-prerouting",
            true,
            Hook::Prerouting,
            DSTNAT_PRIORITY,
            dispatch(),
        ),
        base(
            "nat-output",
            true,
            Hook::Output,
            DSTNAT_PRIORITY,
            dispatch(),
        ),
        base(
            "nat-postrouting",
            true,
            Hook::Postrouting,
            SRCNAT_PRIORITY,
            postrouting,
        ),
    ];

    let nodeport_ips = (!config.node_port_addresses.is_empty()).then(|| {
        let mut ips = config.node_port_addresses.clone();
        ips.sort();
        ips.dedup();
        ips
    });
    // NodePorts on the configured addresses, or on any local one.
    let on_node_port_addresses = || match nodeport_ips {
        Some(_) => vec![Match::DaddrInSet(NODEPORT_IPS.to_string())],
        None => vec![Match::FibDaddrLocal, Match::DaddrNotLoopback],
    };
    let chains = vec![
        (
            SERVICES,
            vec![
                rule(vec![], Action::Vmap(Map::ServiceIps)),
                rule(
                    on_node_port_addresses(),
                    Action::Vmap(Map::ServiceNodePorts),
                ),
            ],
        ),
        (
            ENDPOINTS_CHECK,
            vec![
                rule(vec![], Action::Vmap(Map::NoEndpointServices)),
                rule(
                    on_node_port_addresses(),
                    Action::Vmap(Map::NoEndpointNodePorts),
                ),
            ],
        ),
        (
            HOSTPORTS,
            vec![
                rule(vec![], Action::Vmap(Map::HostPortIps)),
                rule(
                    vec![Match::FibDaddrLocal, Match::DaddrNotLoopback],
                    Action::Vmap(Map::HostPorts),
                ),
            ],
        ),
        (REJECT_CHAIN, vec![rule(vec![], Action::Reject)]),
        (
            MARK_FOR_MASQUERADE,
            vec![rule(vec![], Action::MarkOr(MASQ_MARK))],
        ),
        (
            MASQUERADING,
            vec![
                rule(
                    vec![Match::MarkClear(MASQ_MARK)],
                    Action::Verdict(Verdict::Return),
                ),
                rule(vec![], Action::MarkXor(MASQ_MARK)),
                rule(vec![], Action::Masquerade),
            ],
        ),
    ];
    Skeleton {
        base_chains,
        chains,
        nodeport_ips,
    }
}

/// The dynamic part of the table: what a sync makes true.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub chains: BTreeMap<String, Vec<Rule>>,
    pub elements: BTreeMap<(Map, Key), Verdict>,
    /// Affinity set name -> timeout in seconds.
    pub affinity_sets: BTreeMap<String, u32>,
}

/// A short, stable hash prefix (as kube-proxy's chain names carry), so that
/// chains of one Service differing in a digit stand apart when listed.
fn hash_prefix(name: &str) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..8)
        .map(|i| ALPHABET[((h >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// Names of a Service port's objects; the readable part is
/// `namespace/name/protocol/port-name`, characters nftables accepts in names.
struct Names {
    service: String,
    external: String,
    local: String,
}

impl Names {
    fn new(sp: &ServicePort) -> Names {
        let base = format!(
            "{}/{}/{}/{}",
            sp.namespace,
            sp.name,
            sp.protocol.as_str(),
            sp.port_name
        );
        let base = format!("{}-{base}", hash_prefix(&base));
        Names {
            service: format!("service-{base}"),
            external: format!("external-{base}"),
            local: format!("local-{base}"),
        }
    }

    fn endpoint_base(sp: &ServicePort, ep: &Endpoint) -> String {
        let base = format!(
            "{}/{}/{}/{}__{}/{}",
            sp.namespace,
            sp.name,
            sp.protocol.as_str(),
            sp.port_name,
            ep.ip,
            ep.port
        );
        format!("{}-{base}", hash_prefix(&base))
    }

    fn endpoint(sp: &ServicePort, ep: &Endpoint) -> String {
        format!("endpoint-{}", Self::endpoint_base(sp, ep))
    }

    /// The timeout is part of the name: a changed timeout makes a new set
    /// (sets cannot change their timeout in place).
    fn affinity(sp: &ServicePort, ep: &Endpoint, timeout: u32) -> String {
        format!("affinity-{}-{timeout}s", Self::endpoint_base(sp, ep))
    }
}

/// The endpoints traffic may go to: the ready ones, or if none is ready the
/// serving and terminating ones (kube-proxy's `ProxyTerminatingEndpoints`),
/// without duplicates, in a stable order.
fn usable<'a>(endpoints: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<Endpoint> {
    let ready: BTreeSet<Endpoint> = endpoints.clone().filter(|e| e.ready).copied().collect();
    let chosen: BTreeSet<Endpoint> = if ready.is_empty() {
        endpoints
            .filter(|e| e.serving && e.terminating)
            .copied()
            .collect()
    } else {
        ready
    };
    // One chain per address: the same endpoint listed twice (two slices, or
    // differing conditions) is one backend.
    let mut seen = BTreeSet::new();
    chosen
        .into_iter()
        .filter(|e| seen.insert((e.ip, e.port)))
        .collect()
}

/// Whose objects a `State` holds: one Service port, or one hostPort.
/// Every chain and set name embeds its unit's key, so units never share
/// one; map elements may collide (two Services given one ClusterIP), which
/// the planner settles.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum UnitKey {
    Service {
        namespace: String,
        name: String,
        port_name: String,
        protocol: Protocol,
    },
    HostPort(HostPortMapping),
}

impl UnitKey {
    pub fn of_service(sp: &ServicePort) -> UnitKey {
        UnitKey::Service {
            namespace: sp.namespace.clone(),
            name: sp.name.clone(),
            port_name: sp.port_name.clone(),
            protocol: sp.protocol,
        }
    }
}

/// The objects one Service port needs.
pub(crate) fn service_state(config: &ProxyConfig, sp: &ServicePort) -> State {
    let mut state = State::default();
    add_service_port(config, sp, &mut state);
    state
}

/// The objects one hostPort needs.
pub(crate) fn host_port_state(hp: &HostPortMapping) -> State {
    let mut state = State::default();
    add_host_port(hp, &mut state);
    state
}

fn add_service_port(config: &ProxyConfig, sp: &ServicePort, state: &mut State) {
    let names = Names::new(sp);
    let cluster = usable(sp.endpoints.iter());
    let local = usable(sp.endpoints.iter().filter(|e| e.is_local));
    let has_endpoints = !cluster.is_empty();
    let externally_accessible = sp.node_port != 0 || !sp.external_ips.is_empty();

    // Chains carrying traffic to endpoints under each policy.
    let uses_cluster_chain = has_endpoints && (!sp.internal_traffic_local || externally_accessible);
    let uses_local_chain = !local.is_empty()
        && (sp.internal_traffic_local || (externally_accessible && sp.external_traffic_local));
    let (internal_chain, has_internal) = if sp.internal_traffic_local {
        (&names.local, !local.is_empty())
    } else {
        (&names.service, has_endpoints)
    };
    let (external_policy_chain, has_external) = if sp.external_traffic_local {
        (&names.local, !local.is_empty())
    } else {
        (&names.service, has_endpoints)
    };
    let uses_external_chain = has_endpoints && externally_accessible;

    // Without any endpoint: reject. With endpoints elsewhere but none
    // local under a Local policy: drop (kube-proxy's choice).
    let reject = Verdict::Goto(REJECT_CHAIN.to_string());
    let internal_verdict = if has_endpoints {
        Verdict::Drop
    } else {
        reject.clone()
    };
    let external_verdict = internal_verdict.clone();
    let protocol = sp.protocol;

    let vip = Key::AddrPort(sp.cluster_ip, protocol, sp.port);
    if has_internal {
        state.elements.insert(
            (Map::ServiceIps, vip),
            Verdict::Goto(internal_chain.clone()),
        );
    } else {
        state
            .elements
            .insert((Map::NoEndpointServices, vip), internal_verdict);
    }
    for ip in &sp.external_ips {
        let key = Key::AddrPort(*ip, protocol, sp.port);
        if has_endpoints {
            state.elements.insert(
                (Map::ServiceIps, key),
                Verdict::Goto(names.external.clone()),
            );
        }
        if !has_external {
            state
                .elements
                .insert((Map::NoEndpointServices, key), external_verdict.clone());
        }
    }
    if sp.node_port != 0 {
        let key = Key::Port(protocol, sp.node_port);
        if has_endpoints {
            state.elements.insert(
                (Map::ServiceNodePorts, key),
                Verdict::Goto(names.external.clone()),
            );
        }
        if !has_external {
            state
                .elements
                .insert((Map::NoEndpointNodePorts, key), external_verdict.clone());
        }
    }

    let mut chains: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    // Traffic to the ClusterIP from outside the cluster (the node itself,
    // another machine routing the service range here) is masqueraded so the
    // replies come back through this node.
    let internal_masquerade = if config.masquerade_all {
        rule(vec![Match::Daddr(sp.cluster_ip)], jump(MARK_FOR_MASQUERADE))
    } else {
        rule(
            vec![
                Match::Daddr(sp.cluster_ip),
                Match::SaddrIn(config.cluster_cidr, true),
            ],
            jump(MARK_FOR_MASQUERADE),
        )
    };
    if uses_cluster_chain {
        let mut rules = Vec::new();
        if internal_chain == &names.service {
            rules.push(internal_masquerade.clone());
        }
        rules.extend(to_endpoints(sp, &cluster));
        chains.insert(names.service.clone(), rules);
    }
    if uses_local_chain {
        let mut rules = Vec::new();
        if internal_chain == &names.local {
            rules.push(internal_masquerade);
        }
        rules.extend(to_endpoints(sp, &local));
        chains.insert(names.local.clone(), rules);
    }
    if uses_external_chain {
        let mut rules = Vec::new();
        if !sp.external_traffic_local {
            // The endpoint may be on another node: masquerade so its reply
            // comes back here to be un-NATed.
            rules.push(rule(vec![], jump(MARK_FOR_MASQUERADE)));
        } else {
            // Pods and the node itself are not subject to the Local policy
            // (as if they went out to a load balancer and came back).
            rules.push(rule(
                vec![Match::SaddrIn(config.cluster_cidr, false)],
                goto(&names.service),
            ));
            rules.push(rule(vec![Match::FibSaddrLocal], jump(MARK_FOR_MASQUERADE)));
            rules.push(rule(vec![Match::FibSaddrLocal], goto(&names.service)));
        }
        if has_external {
            rules.push(rule(vec![], goto(external_policy_chain)));
        }
        chains.insert(names.external.clone(), rules);
    }

    let reachable: BTreeSet<Endpoint> = cluster.iter().chain(local.iter()).copied().collect();
    let mut seen = BTreeSet::new();
    for ep in reachable.iter().filter(|e| seen.insert((e.ip, e.port))) {
        let mut rules = vec![
            // Hairpin: a pod reaching itself through the Service must see
            // the reply come from the Service, so its source is rewritten.
            rule(vec![Match::Saddr(ep.ip)], jump(MARK_FOR_MASQUERADE)),
        ];
        if let Some(timeout) = sp.session_affinity_timeout {
            let set = Names::affinity(sp, ep, timeout);
            state.affinity_sets.insert(set.clone(), timeout);
            rules.push(rule(vec![], Action::UpdateSaddrSet(set)));
        }
        rules.push(rule(
            vec![Match::L4Proto(protocol)],
            Action::Dnat(ep.ip, ep.port),
        ));
        chains.insert(Names::endpoint(sp, ep), rules);
    }
    state.chains.extend(chains);
}

/// The rules of a service (or local) chain choosing among `endpoints`.
fn to_endpoints(sp: &ServicePort, endpoints: &[Endpoint]) -> Vec<Rule> {
    let mut rules = Vec::new();
    if let Some(timeout) = sp.session_affinity_timeout {
        // A client seen recently goes back to the endpoint it had.
        for ep in endpoints {
            rules.push(rule(
                vec![Match::SaddrInSet(Names::affinity(sp, ep, timeout))],
                goto(&Names::endpoint(sp, ep)),
            ));
        }
    }
    rules.push(rule(
        vec![],
        Action::NumgenVmap(endpoints.iter().map(|ep| Names::endpoint(sp, ep)).collect()),
    ));
    rules
}

fn add_host_port(hp: &HostPortMapping, state: &mut State) {
    let host = hp.host_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let base = format!(
        "{}/{host}/{}__{}/{}",
        hp.protocol.as_str(),
        hp.host_port,
        hp.pod_ip,
        hp.container_port
    );
    let chain = format!("hostport-{}-{base}", hash_prefix(&base));
    let key = match hp.host_ip {
        Some(ip) => (
            Map::HostPortIps,
            Key::AddrPort(ip, hp.protocol, hp.host_port),
        ),
        None => (Map::HostPorts, Key::Port(hp.protocol, hp.host_port)),
    };
    state.elements.insert(key, Verdict::Goto(chain.clone()));
    state.chains.insert(
        chain,
        vec![
            // Hairpin, as for Services.
            rule(vec![Match::Saddr(hp.pod_ip)], jump(MARK_FOR_MASQUERADE)),
            rule(
                vec![Match::L4Proto(hp.protocol)],
                Action::Dnat(hp.pod_ip, hp.container_port),
            ),
        ],
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every unit's objects together.
    pub(crate) fn desired(
        config: &ProxyConfig,
        services: &[ServicePort],
        host_ports: &[HostPortMapping],
    ) -> State {
        let mut state = State::default();
        for sp in services {
            add_service_port(config, sp, &mut state);
        }
        for hp in host_ports {
            add_host_port(hp, &mut state);
        }
        state
    }

    pub(crate) fn config() -> ProxyConfig {
        ProxyConfig::new("10.243.0.0/20".parse().unwrap())
    }

    pub(crate) fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    pub(crate) fn service(name: &str, endpoints: Vec<Endpoint>) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: name.into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: ip("10.243.64.10"),
            port: 80,
            node_port: 0,
            external_ips: vec![],
            session_affinity_timeout: None,
            external_traffic_local: false,
            internal_traffic_local: false,
            endpoints,
        }
    }

    fn dnat_targets(state: &State) -> BTreeSet<(Ipv4Addr, u16)> {
        state
            .chains
            .values()
            .flatten()
            .filter_map(|r| match r.action {
                Action::Dnat(ip, port) => Some((ip, port)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ready_endpoints_are_used_else_serving_terminating_ones() {
        let a = Endpoint::ready(ip("10.243.1.2"), 8080);
        let terminating = Endpoint {
            ready: false,
            terminating: true,
            ..Endpoint::ready(ip("10.243.1.3"), 8080)
        };
        let unready = Endpoint {
            ready: false,
            serving: false,
            ..Endpoint::ready(ip("10.243.1.4"), 8080)
        };
        let state = desired(
            &config(),
            &[service("web", vec![a, terminating, unready])],
            &[],
        );
        assert_eq!(dnat_targets(&state), BTreeSet::from([(a.ip, 8080)]));

        let state = desired(
            &config(),
            &[service("web", vec![terminating, unready])],
            &[],
        );
        assert_eq!(
            dnat_targets(&state),
            BTreeSet::from([(terminating.ip, 8080)])
        );
        assert!(state.elements.contains_key(&(
            Map::ServiceIps,
            Key::AddrPort(ip("10.243.64.10"), Protocol::Tcp, 80)
        )));
    }

    #[test]
    fn no_usable_endpoint_rejects() {
        let unready = Endpoint {
            ready: false,
            serving: false,
            ..Endpoint::ready(ip("10.243.1.4"), 8080)
        };
        let mut sp = service("web", vec![unready]);
        sp.node_port = 30080;
        let state = desired(&config(), &[sp], &[]);
        assert!(state.chains.is_empty());
        let reject = Verdict::Goto(REJECT_CHAIN.into());
        assert_eq!(
            state.elements,
            BTreeMap::from([
                (
                    (
                        Map::NoEndpointServices,
                        Key::AddrPort(ip("10.243.64.10"), Protocol::Tcp, 80)
                    ),
                    reject.clone()
                ),
                (
                    (Map::NoEndpointNodePorts, Key::Port(Protocol::Tcp, 30080)),
                    reject
                ),
            ])
        );
    }

    #[test]
    fn node_ports_masquerade_and_local_policy_drops_without_local_endpoints() {
        let mut sp = service("web", vec![Endpoint::ready(ip("10.243.2.2"), 80)]);
        sp.node_port = 30080;
        let state = desired(&config(), std::slice::from_ref(&sp), &[]);
        let external = state
            .chains
            .iter()
            .find(|(n, _)| n.starts_with("external-"))
            .expect("external chain");
        assert_eq!(external.1[0].action, jump(MARK_FOR_MASQUERADE));

        sp.external_traffic_local = true;
        let state = desired(&config(), &[sp], &[]);
        assert_eq!(
            state
                .elements
                .get(&(Map::NoEndpointNodePorts, Key::Port(Protocol::Tcp, 30080))),
            Some(&Verdict::Drop)
        );
        // Pods still reach it through the cluster chain.
        assert!(state
            .elements
            .contains_key(&(Map::ServiceNodePorts, Key::Port(Protocol::Tcp, 30080))));
    }

    #[test]
    fn session_affinity_makes_a_set_per_endpoint() {
        let mut sp = service(
            "web",
            vec![
                Endpoint::ready(ip("10.243.1.2"), 80),
                Endpoint::ready(ip("10.243.1.3"), 80),
            ],
        );
        sp.session_affinity_timeout = Some(10800);
        let state = desired(&config(), std::slice::from_ref(&sp), &[]);
        assert_eq!(state.affinity_sets.len(), 2);
        let service_chain = &state.chains[&Names::new(&sp).service];
        // masquerade rule, two affinity lookups, the random choice
        assert_eq!(service_chain.len(), 4);
        assert!(matches!(service_chain[1].matches[0], Match::SaddrInSet(_)));
    }

    #[test]
    fn host_ports_on_any_or_one_address() {
        let any = HostPortMapping {
            protocol: Protocol::Tcp,
            host_port: 8088,
            host_ip: None,
            pod_ip: ip("10.243.1.5"),
            container_port: 80,
        };
        let one = HostPortMapping {
            host_ip: Some(ip("10.243.128.1")),
            host_port: 8089,
            ..any
        };
        let state = desired(&config(), &[], &[any, one]);
        assert!(state
            .elements
            .contains_key(&(Map::HostPorts, Key::Port(Protocol::Tcp, 8088))));
        assert!(state.elements.contains_key(&(
            Map::HostPortIps,
            Key::AddrPort(ip("10.243.128.1"), Protocol::Tcp, 8089)
        )));
        assert_eq!(
            dnat_targets(&state),
            BTreeSet::from([(ip("10.243.1.5"), 80)])
        );
    }

    #[test]
    fn chain_names_are_readable_and_distinct() {
        let sp = service("web", vec![]);
        let names = Names::new(&sp);
        assert!(names.service.starts_with("service-"));
        assert!(names.service.ends_with("-default/web/tcp/http"));
        let a = Names::endpoint(&sp, &Endpoint::ready(ip("10.243.1.2"), 80));
        let b = Names::endpoint(&sp, &Endpoint::ready(ip("10.243.1.3"), 80));
        assert_ne!(a[..17], b[..17]);
    }
}
