use std::net::Ipv4Addr;

use hickory_server::proto::rr::{LowerName, Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::{ClusterIndex, Lookup};

const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);

fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn cluster_ip(ns: &str, name: &str, ip: &str) -> Service {
    service(
        ns,
        name,
        json!({"clusterIP": ip, "clusterIPs": [ip], "ports": [
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]}),
    )
}

fn headless(ns: &str, name: &str) -> Service {
    service(
        ns,
        name,
        json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
    )
}

/// A slice of `service` with endpoints (ip, hostname, ready) on port 8080 "http".
fn slice(
    ns: &str,
    name: &str,
    service: &str,
    endpoints: &[(&str, Option<&str>, bool)],
) -> EndpointSlice {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(ip, host, ready)| {
            let mut e = json!({"addresses": [ip], "conditions": {"ready": ready}});
            if let Some(h) = host {
                e["hostname"] = json!(h);
            }
            e
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

fn index(services: &[Service], slices: &[EndpointSlice]) -> ClusterIndex {
    let mut index = ClusterIndex::new("cluster.local", 5, DNS_IP).unwrap();
    index.replace_services(services);
    index.replace_endpoint_slices(slices);
    index
}

#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Records(Vec<String>),
    NoData,
    NxDomain,
    NotCluster,
    NotSynced,
}

/// What a client would be told, records as `TYPE rdata` sorted.
fn ask(index: &ClusterIndex, name: &str, qtype: RecordType) -> Answer {
    let name = LowerName::new(&Name::from_ascii(name).unwrap());
    match index.lookup(&name, qtype) {
        Lookup::Found(node) => {
            let mut records: Vec<String> = node
                .records
                .iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .map(|r| format!("{} {}", r.record_type(), r.data))
                .collect();
            if records.is_empty() {
                return Answer::NoData;
            }
            records.sort();
            Answer::Records(records)
        }
        Lookup::Pod(record) => Answer::Records(vec![format!("A {}", record.data)]),
        Lookup::NoData => Answer::NoData,
        Lookup::NxDomain => Answer::NxDomain,
        Lookup::NotCluster => Answer::NotCluster,
        Lookup::NotSynced => Answer::NotSynced,
    }
}

fn records(list: &[&str]) -> Answer {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    Answer::Records(v)
}

fn additionals(index: &ClusterIndex, name: &str) -> Vec<String> {
    let name = LowerName::new(&Name::from_ascii(name).unwrap());
    match index.lookup(&name, RecordType::SRV) {
        Lookup::Found(node) => {
            let mut v: Vec<String> = node
                .additionals
                .iter()
                .map(|r| format!("{} A {}", r.name, r.data))
                .collect();
            v.sort();
            v
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cluster_ip_service_has_a_srv_and_ptr_records() {
    let index = index(&[cluster_ip("default", "web", "10.43.0.20")], &[]);
    let a = records(&["A 10.43.0.20"]);
    assert_eq!(
        ask(&index, "web.default.svc.cluster.local.", RecordType::A),
        a
    );
    // Comparisons are case-insensitive (the spec; resolvers using 0x20).
    assert_eq!(
        ask(&index, "WEB.Default.SVC.cluster.LOCAL.", RecordType::A),
        a
    );
    // An IPv4 cluster: the name exists, it has no AAAA.
    assert_eq!(
        ask(&index, "web.default.svc.cluster.local.", RecordType::AAAA),
        Answer::NoData
    );
    assert_eq!(
        ask(
            &index,
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV
        ),
        records(&["SRV 0 100 80 web.default.svc.cluster.local."])
    );
    assert_eq!(
        additionals(&index, "_http._tcp.web.default.svc.cluster.local."),
        vec!["web.default.svc.cluster.local. A 10.43.0.20"]
    );
    assert_eq!(
        ask(
            &index,
            "_dns._udp.web.default.svc.cluster.local.",
            RecordType::SRV
        ),
        records(&["SRV 0 100 53 web.default.svc.cluster.local."])
    );
    // The port is TCP, not UDP; and there is no port "nope".
    assert_eq!(
        ask(
            &index,
            "_http._udp.web.default.svc.cluster.local.",
            RecordType::SRV
        ),
        Answer::NxDomain
    );
    assert_eq!(
        ask(
            &index,
            "_nope._tcp.web.default.svc.cluster.local.",
            RecordType::SRV
        ),
        Answer::NxDomain
    );
    // `_tcp.<svc>` exists as the parent of the SRV names.
    assert_eq!(
        ask(
            &index,
            "_tcp.web.default.svc.cluster.local.",
            RecordType::SRV
        ),
        Answer::NoData
    );
    // SRV at the Service's own name: one per port (CoreDNS does the same).
    assert_eq!(
        ask(&index, "web.default.svc.cluster.local.", RecordType::SRV),
        records(&[
            "SRV 0 50 53 web.default.svc.cluster.local.",
            "SRV 0 50 80 web.default.svc.cluster.local."
        ])
    );
    assert_eq!(
        ask(&index, "20.0.43.10.in-addr.arpa.", RecordType::PTR),
        records(&["PTR web.default.svc.cluster.local."])
    );
    // Other addresses are not ours to deny: forwarded.
    assert_eq!(
        ask(&index, "21.0.43.10.in-addr.arpa.", RecordType::PTR),
        Answer::NotCluster
    );
}

#[test]
fn unnamed_ports_have_no_srv_name() {
    let svc = service(
        "default",
        "single",
        json!({"clusterIP": "10.43.0.30", "ports": [{"port": 443}]}),
    );
    let index = index(&[svc], &[]);
    assert_eq!(
        ask(
            &index,
            "_tcp.single.default.svc.cluster.local.",
            RecordType::SRV
        ),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "single.default.svc.cluster.local.", RecordType::A),
        records(&["A 10.43.0.30"])
    );
}

#[test]
fn headless_service_resolves_to_ready_endpoints() {
    let index = index(
        &[headless("db", "pg")],
        &[slice(
            "db",
            "pg-abc",
            "pg",
            &[
                ("10.42.0.5", Some("pg-0"), true),
                ("10.42.1.6", Some("pg-1"), true),
                ("10.42.1.7", None, true),
                ("10.42.2.8", Some("pg-2"), false),
            ],
        )],
    );
    assert_eq!(
        ask(&index, "pg.db.svc.cluster.local.", RecordType::A),
        records(&["A 10.42.0.5", "A 10.42.1.6", "A 10.42.1.7"])
    );
    assert_eq!(
        ask(&index, "pg-0.pg.db.svc.cluster.local.", RecordType::A),
        records(&["A 10.42.0.5"])
    );
    // An endpoint without a hostname is named by its dashed address.
    assert_eq!(
        ask(&index, "10-42-1-7.pg.db.svc.cluster.local.", RecordType::A),
        records(&["A 10.42.1.7"])
    );
    // Not ready: not published.
    assert_eq!(
        ask(&index, "pg-2.pg.db.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    // SRV: one per ready endpoint, on the endpoint's port, at its own name.
    assert_eq!(
        ask(
            &index,
            "_http._tcp.pg.db.svc.cluster.local.",
            RecordType::SRV
        ),
        records(&[
            "SRV 0 33 8080 10-42-1-7.pg.db.svc.cluster.local.",
            "SRV 0 33 8080 pg-0.pg.db.svc.cluster.local.",
            "SRV 0 33 8080 pg-1.pg.db.svc.cluster.local.",
        ])
    );
    assert_eq!(
        additionals(&index, "_http._tcp.pg.db.svc.cluster.local."),
        vec![
            "10-42-1-7.pg.db.svc.cluster.local. A 10.42.1.7",
            "pg-0.pg.db.svc.cluster.local. A 10.42.0.5",
            "pg-1.pg.db.svc.cluster.local. A 10.42.1.6",
        ]
    );
    assert_eq!(
        ask(&index, "5.0.42.10.in-addr.arpa.", RecordType::PTR),
        records(&["PTR pg-0.pg.db.svc.cluster.local."])
    );
    assert_eq!(
        ask(&index, "7.1.42.10.in-addr.arpa.", RecordType::PTR),
        records(&["PTR 10-42-1-7.pg.db.svc.cluster.local."])
    );
    assert_eq!(
        ask(&index, "8.2.42.10.in-addr.arpa.", RecordType::PTR),
        Answer::NotCluster
    );
}

#[test]
fn headless_without_ready_endpoints_does_not_exist_and_publish_not_ready_shows_all() {
    let pending = slice("db", "pg-abc", "pg", &[("10.42.2.8", Some("pg-2"), false)]);
    let index_a = index(&[headless("db", "pg")], std::slice::from_ref(&pending));
    // The spec: no ready endpoints, NXDOMAIN.
    assert_eq!(
        ask(&index_a, "pg.db.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    // The namespace still exists.
    assert_eq!(
        ask(&index_a, "db.svc.cluster.local.", RecordType::A),
        Answer::NoData
    );

    let mut publish = headless("db", "pg");
    publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let index_b = index(&[publish], &[pending]);
    assert_eq!(
        ask(&index_b, "pg.db.svc.cluster.local.", RecordType::A),
        records(&["A 10.42.2.8"])
    );
    assert_eq!(
        ask(&index_b, "pg-2.pg.db.svc.cluster.local.", RecordType::A),
        records(&["A 10.42.2.8"])
    );
}

#[test]
fn endpoints_repeated_across_slices_are_published_once() {
    let index = index(
        &[headless("db", "pg")],
        &[
            slice("db", "pg-a", "pg", &[("10.42.0.5", Some("pg-0"), true)]),
            slice("db", "pg-b", "pg", &[("10.42.0.5", Some("pg-0"), true)]),
        ],
    );
    assert_eq!(
        ask(&index, "pg.db.svc.cluster.local.", RecordType::A),
        records(&["A 10.42.0.5"])
    );
    assert_eq!(
        ask(
            &index,
            "_http._tcp.pg.db.svc.cluster.local.",
            RecordType::SRV
        ),
        records(&["SRV 0 100 8080 pg-0.pg.db.svc.cluster.local."])
    );
}

#[test]
fn external_name_is_a_cname() {
    let svc = service(
        "default",
        "ext",
        json!({"type": "ExternalName", "externalName": "www.example.com"}),
    );
    let index = index(&[svc], &[]);
    for qtype in [RecordType::A, RecordType::CNAME, RecordType::AAAA] {
        let name = LowerName::new(&Name::from_ascii("ext.default.svc.cluster.local.").unwrap());
        let Lookup::Found(node) = index.lookup(&name, qtype) else {
            panic!("ExternalName not found for {qtype}");
        };
        let cnames: Vec<String> = node
            .records
            .iter()
            .map(|r| format!("{} {}", r.record_type(), r.data))
            .collect();
        assert_eq!(cnames, vec!["CNAME www.example.com."]);
    }
}

#[test]
fn pod_records_come_from_the_name() {
    let index = index(&[], &[]);
    assert_eq!(
        ask(
            &index,
            "10-42-0-5.default.pod.cluster.local.",
            RecordType::A
        ),
        records(&["A 10.42.0.5"])
    );
    assert_eq!(
        ask(
            &index,
            "10-42-0-5.any-ns.pod.cluster.local.",
            RecordType::AAAA
        ),
        Answer::NoData
    );
    for bad in [
        "10-42-0-256.default.pod.cluster.local.",
        "10-42-0.default.pod.cluster.local.",
        "10-42-0-5-1.default.pod.cluster.local.",
        "010-42-0-5.default.pod.cluster.local.",
        "web.default.pod.cluster.local.",
        "a.10-42-0-5.default.pod.cluster.local.",
    ] {
        assert_eq!(ask(&index, bad, RecordType::A), Answer::NxDomain, "{bad}");
    }
    assert_eq!(
        ask(&index, "default.pod.cluster.local.", RecordType::A),
        Answer::NoData
    );
}

#[test]
fn nxdomain_and_nodata_follow_what_exists() {
    let index = index(&[cluster_ip("default", "kubernetes", "10.43.0.1")], &[]);
    assert_eq!(ask(&index, "cluster.local.", RecordType::A), Answer::NoData);
    assert_eq!(
        ask(&index, "svc.cluster.local.", RecordType::A),
        Answer::NoData
    );
    assert_eq!(
        ask(&index, "default.svc.cluster.local.", RecordType::A),
        Answer::NoData
    );
    assert_eq!(
        ask(&index, "nosuchns.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "nope.default.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "other.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "cluster.local.", RecordType::SOA),
        records(&["SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"])
    );
    assert_eq!(
        ask(&index, "cluster.local.", RecordType::NS),
        records(&["NS ns.dns.cluster.local."])
    );
    assert_eq!(
        ask(&index, "ns.dns.cluster.local.", RecordType::A),
        records(&["A 10.43.0.10"])
    );
    assert_eq!(
        ask(&index, "dns-version.cluster.local.", RecordType::TXT),
        records(&["TXT 1.0.1"])
    );
    // Names outside the zone are forwarded.
    assert_eq!(
        ask(&index, "example.com.", RecordType::A),
        Answer::NotCluster
    );
    assert_eq!(ask(&index, "local.", RecordType::A), Answer::NotCluster);
}

#[test]
fn search_path_candidates_of_a_pod_resolve_as_with_a_real_resolver() {
    // A pod in `default` with `search default.svc.cluster.local
    // svc.cluster.local cluster.local` and ndots:5 tries these in order.
    let index = index(&[cluster_ip("default", "kubernetes", "10.43.0.1")], &[]);
    let tries = |short: &str| -> Vec<Answer> {
        [
            "default.svc.cluster.local.",
            "svc.cluster.local.",
            "cluster.local.",
        ]
        .iter()
        .map(|suffix| ask(&index, &format!("{short}.{suffix}"), RecordType::A))
        .collect()
    };
    let kubernetes = records(&["A 10.43.0.1"]);
    assert_eq!(
        tries("kubernetes"),
        vec![kubernetes.clone(), Answer::NxDomain, Answer::NxDomain]
    );
    assert_eq!(
        tries("kubernetes.default"),
        vec![Answer::NxDomain, kubernetes.clone(), Answer::NxDomain]
    );
    assert_eq!(
        tries("kubernetes.default.svc"),
        vec![Answer::NxDomain, Answer::NxDomain, kubernetes]
    );
    // An outside name fails fast in the cluster zone, then goes upstream.
    assert_eq!(
        tries("www.example.com"),
        vec![Answer::NxDomain, Answer::NxDomain, Answer::NxDomain]
    );
    assert_eq!(
        ask(&index, "www.example.com.", RecordType::A),
        Answer::NotCluster
    );
}

#[test]
fn nothing_is_denied_before_the_first_lists() {
    let mut index = ClusterIndex::new("cluster.local", 5, DNS_IP).unwrap();
    let name = "web.default.svc.cluster.local.";
    assert_eq!(ask(&index, name, RecordType::A), Answer::NotSynced);
    index.replace_services(&[cluster_ip("default", "web", "10.43.0.20")]);
    assert_eq!(ask(&index, name, RecordType::A), Answer::NotSynced);
    index.replace_endpoint_slices(&[]);
    assert_eq!(ask(&index, name, RecordType::A), records(&["A 10.43.0.20"]));
    // Outside names never wait.
    let mut fresh = ClusterIndex::new("cluster.local", 5, DNS_IP).unwrap();
    assert_eq!(
        ask(&fresh, "example.com.", RecordType::A),
        Answer::NotCluster
    );
    fresh.replace_services(&[]);
}

#[test]
fn changes_and_deletions_leave_nothing_behind() {
    let mut index = index(&[], &[]);
    let empty = index.name_count();
    let svc = cluster_ip("default", "web", "10.43.0.20");
    index.apply_service(&svc);
    let pods = slice("default", "web-1", "web", &[("10.42.0.5", None, true)]);
    index.apply_endpoint_slice(&pods);
    assert_eq!(
        ask(
            &index,
            "10-42-0-5.web.default.svc.cluster.local.",
            RecordType::A
        ),
        records(&["A 10.42.0.5"])
    );
    assert_eq!(
        ask(&index, "5.0.42.10.in-addr.arpa.", RecordType::PTR),
        records(&["PTR 10-42-0-5.web.default.svc.cluster.local."])
    );

    // A new ClusterIP moves the A and PTR records.
    index.apply_service(&cluster_ip("default", "web", "10.43.0.21"));
    assert_eq!(
        ask(&index, "web.default.svc.cluster.local.", RecordType::A),
        records(&["A 10.43.0.21"])
    );
    assert_eq!(
        ask(&index, "20.0.43.10.in-addr.arpa.", RecordType::PTR),
        Answer::NotCluster
    );

    // The endpoint turns unready: its records go.
    index.apply_endpoint_slice(&slice(
        "default",
        "web-1",
        "web",
        &[("10.42.0.5", None, false)],
    ));
    assert_eq!(
        ask(
            &index,
            "10-42-0-5.web.default.svc.cluster.local.",
            RecordType::A
        ),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "5.0.42.10.in-addr.arpa.", RecordType::PTR),
        Answer::NotCluster
    );

    index.delete_endpoint_slice(&pods);
    index.delete_service(&svc);
    assert_eq!(
        ask(&index, "web.default.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "default.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "21.0.43.10.in-addr.arpa.", RecordType::PTR),
        Answer::NotCluster
    );
    assert_eq!(index.name_count(), empty);

    // A relist without the Service removes it too.
    index.apply_service(&svc);
    index.replace_services(&[]);
    assert_eq!(index.name_count(), empty);
}

#[test]
fn a_slice_arriving_before_its_service_is_used_when_the_service_comes() {
    let mut index = index(&[], &[]);
    index.apply_endpoint_slice(&slice(
        "db",
        "pg-a",
        "pg",
        &[("10.42.0.5", Some("pg-0"), true)],
    ));
    assert_eq!(
        ask(&index, "pg.db.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    index.apply_service(&headless("db", "pg"));
    assert_eq!(
        ask(&index, "pg-0.pg.db.svc.cluster.local.", RecordType::A),
        records(&["A 10.42.0.5"])
    );
}

#[test]
fn a_chosen_hostname_wins_the_ptr_record() {
    let index = index(
        &[
            headless("db", "pg"),
            cluster_ip("db", "pg-lb", "10.43.0.40"),
        ],
        &[
            slice("db", "lb-1", "pg-lb", &[("10.42.0.5", None, true)]),
            slice("db", "pg-1", "pg", &[("10.42.0.5", Some("pg-0"), true)]),
        ],
    );
    assert_eq!(
        ask(&index, "5.0.42.10.in-addr.arpa.", RecordType::PTR),
        records(&["PTR pg-0.pg.db.svc.cluster.local."])
    );
}

#[test]
fn a_bad_cluster_domain_is_refused() {
    assert!(ClusterIndex::new("", 5, DNS_IP).is_err());
    assert!(ClusterIndex::new("bad..domain", 5, DNS_IP).is_err());
}
