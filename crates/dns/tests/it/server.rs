//! The server on 127.0.0.1 (UDP and TCP) fed with an index built from
//! k8s-openapi objects, asked by hickory's DNS client; names outside the
//! cluster go to a resolver of the test's own on 127.0.0.1.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;

use common::*;
use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::RecordType;
use orca_dns::{DnsConfig, DnsServer, SharedIndex};
use serde_json::json;
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    index: SharedIndex,
    upstream: Upstream,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.served.await.unwrap().unwrap();
    }
}

async fn start(synced: bool) -> Running {
    let upstream = start_upstream().await;
    let mut config = DnsConfig::new(Ipv4Addr::new(10, 43, 0, 10));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.upstreams = vec![upstream.addr];
    let index = config.new_index().unwrap();
    if synced {
        let mut ext = service(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "www.example.test"}),
        );
        ext.metadata.labels = Some(labels(&[("app", "ext")]));
        let mut index = index.write().unwrap();
        index.replace_services(&[
            cluster_ip("default", "web", "10.43.0.20"),
            headless("db", "pg"),
            ext,
            service(
                "default",
                "alias",
                json!({"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}),
            ),
        ]);
        index.replace_endpoint_slices(&[slice(
            "db",
            "pg-1",
            "pg",
            &[("10.42.0.5", Some("pg-0")), ("10.42.1.6", Some("pg-1"))],
        )]);
    }
    let server = DnsServer::bind(&config, index.clone()).await.unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        index,
        upstream,
        stop: Some(stop),
        served,
    }
}

fn check_a(answer: &Message, expected: &[&str]) {
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(
        answer.metadata.authoritative,
        "cluster answers are authoritative"
    );
    assert_eq!(lines(&answer.answers), expected);
}

#[tokio::test]
async fn cluster_names_over_udp_and_tcp() {
    let dns = start(true).await;
    for tcp in [false, true] {
        let client = client(dns.addr, tcp).await;
        for edns in [false, true] {
            let answer = ask(
                &client,
                "web.default.svc.cluster.local.",
                RecordType::A,
                edns,
            )
            .await;
            check_a(&answer, &["web.default.svc.cluster.local. 5 A 10.43.0.20"]);
            assert!(answer.metadata.recursion_available);
            assert_eq!(answer.edns.is_some(), edns, "EDNS answered in kind");
        }

        let srv = ask(
            &client,
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
            true,
        )
        .await;
        assert_eq!(
            lines(&srv.answers),
            ["_http._tcp.web.default.svc.cluster.local. 5 SRV 0 100 80 web.default.svc.cluster.local."]
        );
        assert_eq!(
            lines(&srv.additionals),
            ["web.default.svc.cluster.local. 5 A 10.43.0.20"]
        );

        let headless = ask(&client, "pg.db.svc.cluster.local.", RecordType::A, true).await;
        check_a(
            &headless,
            &[
                "pg.db.svc.cluster.local. 5 A 10.42.0.5",
                "pg.db.svc.cluster.local. 5 A 10.42.1.6",
            ],
        );
        let pet = ask(
            &client,
            "pg-1.pg.db.svc.cluster.local.",
            RecordType::A,
            true,
        )
        .await;
        check_a(&pet, &["pg-1.pg.db.svc.cluster.local. 5 A 10.42.1.6"]);

        let ptr = ask(&client, "20.0.43.10.in-addr.arpa.", RecordType::PTR, true).await;
        check_a(
            &ptr,
            &["20.0.43.10.in-addr.arpa. 5 PTR web.default.svc.cluster.local."],
        );
        let ptr = ask(&client, "5.0.42.10.in-addr.arpa.", RecordType::PTR, true).await;
        check_a(
            &ptr,
            &["5.0.42.10.in-addr.arpa. 5 PTR pg-0.pg.db.svc.cluster.local."],
        );

        let pod = ask(
            &client,
            "10-42-0-9.default.pod.cluster.local.",
            RecordType::A,
            true,
        )
        .await;
        check_a(
            &pod,
            &["10-42-0-9.default.pod.cluster.local. 5 A 10.42.0.9"],
        );
    }
    dns.stop().await;
}

#[tokio::test]
async fn negative_answers_carry_the_soa() {
    let dns = start(true).await;
    let client = client(dns.addr, false).await;
    let soa =
        "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5";

    let missing = ask(
        &client,
        "nope.default.svc.cluster.local.",
        RecordType::A,
        true,
    )
    .await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(missing.metadata.authoritative);
    assert!(missing.answers.is_empty());
    assert_eq!(lines(&missing.authorities), [soa]);

    // The name exists; an IPv4 cluster has no AAAA: NODATA, not NXDOMAIN.
    for (name, qtype) in [
        ("web.default.svc.cluster.local.", RecordType::AAAA),
        ("default.svc.cluster.local.", RecordType::A),
        ("10-42-0-9.default.pod.cluster.local.", RecordType::AAAA),
    ] {
        let nodata = ask(&client, name, qtype, true).await;
        assert_eq!(
            nodata.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert!(nodata.answers.is_empty(), "{name} {qtype}");
        assert_eq!(lines(&nodata.authorities), [soa], "{name} {qtype}");
    }

    // A pod's search list tried in order, as its resolver would.
    for (name, code) in [
        (
            "web.default.default.svc.cluster.local.",
            ResponseCode::NXDomain,
        ),
        ("web.default.svc.cluster.local.", ResponseCode::NoError),
        (
            "www.example.test.default.svc.cluster.local.",
            ResponseCode::NXDomain,
        ),
        (
            "www.example.test.svc.cluster.local.",
            ResponseCode::NXDomain,
        ),
        ("www.example.test.cluster.local.", ResponseCode::NXDomain),
        ("www.example.test.", ResponseCode::NoError),
    ] {
        let answer = ask(&client, name, RecordType::A, false).await;
        assert_eq!(answer.metadata.response_code, code, "{name}");
    }
    dns.stop().await;
}

#[tokio::test]
async fn other_names_go_to_the_upstream_resolver() {
    let dns = start(true).await;
    let udp = client(dns.addr, false).await;
    let www = ask(&udp, "www.example.test.", RecordType::A, true).await;
    assert_eq!(www.metadata.response_code, ResponseCode::NoError);
    assert_eq!(lines(&www.answers), ["www.example.test. 60 A 192.0.2.10"]);
    assert!(!www.metadata.authoritative || dns.upstream.udp_queries.load(Ordering::SeqCst) > 0);
    assert!(dns.upstream.udp_queries.load(Ordering::SeqCst) >= 1);

    // The upstream's own NXDOMAIN, with its SOA, comes through.
    let nx = ask(&udp, "nope.example.test.", RecordType::A, true).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities.len(), 1);
    assert!(lines(&nx.authorities)[0].starts_with("example.test. "));

    // Reverse names of addresses the cluster does not own are forwarded too.
    let before = dns.upstream.udp_queries.load(Ordering::SeqCst);
    let _ = ask(&udp, "1.2.0.192.in-addr.arpa.", RecordType::PTR, true).await;
    assert_eq!(dns.upstream.udp_queries.load(Ordering::SeqCst), before + 1);
    dns.stop().await;
}

#[tokio::test]
async fn truncated_upstream_answers_are_fetched_again_over_tcp() {
    let dns = start(true).await;
    // Without EDNS the ~1 KB TXT set does not fit 512 bytes of UDP: the
    // upstream truncates, the server asks it again over TCP...
    let udp = client(dns.addr, false).await;
    let truncated = ask(&udp, "big.example.test.", RecordType::TXT, false).await;
    assert_eq!(dns.upstream.tcp_queries.load(Ordering::SeqCst), 1);
    // ...and, the answer still too large for this client's UDP, says so.
    assert!(truncated.metadata.truncation);
    // Over TCP the client gets all of it.
    let tcp = client(dns.addr, true).await;
    let full = ask(&tcp, "big.example.test.", RecordType::TXT, false).await;
    assert!(!full.metadata.truncation);
    assert_eq!(full.answers.len(), 1);
    assert_eq!(full.answers[0].data.to_string().matches('x').count(), 990);
    // With a large EDNS buffer it fits UDP end to end.
    let edns = ask(&udp, "big.example.test.", RecordType::TXT, true).await;
    assert!(!edns.metadata.truncation);
    assert_eq!(edns.answers.len(), 1);
    dns.stop().await;
}

#[tokio::test]
async fn external_names_are_cnames_followed_to_their_target() {
    let dns = start(true).await;
    let client = client(dns.addr, false).await;
    let outside = ask(
        &client,
        "ext.default.svc.cluster.local.",
        RecordType::A,
        true,
    )
    .await;
    assert_eq!(
        lines(&outside.answers),
        [
            "ext.default.svc.cluster.local. 5 CNAME www.example.test.",
            "www.example.test. 60 A 192.0.2.10",
        ]
    );
    let inside = ask(
        &client,
        "alias.default.svc.cluster.local.",
        RecordType::A,
        true,
    )
    .await;
    assert_eq!(
        lines(&inside.answers),
        [
            "alias.default.svc.cluster.local. 5 CNAME web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. 5 A 10.43.0.20",
        ]
    );
    let cname = ask(
        &client,
        "ext.default.svc.cluster.local.",
        RecordType::CNAME,
        true,
    )
    .await;
    assert_eq!(
        lines(&cname.answers),
        ["ext.default.svc.cluster.local. 5 CNAME www.example.test."]
    );
    dns.stop().await;
}

#[tokio::test]
async fn changes_to_the_index_are_answered_at_once_and_nothing_before_the_first_lists() {
    let dns = start(false).await;
    let client = client(dns.addr, false).await;
    // Not listed yet: SERVFAIL (retry), never a false NXDOMAIN...
    let early = ask(
        &client,
        "web.default.svc.cluster.local.",
        RecordType::A,
        true,
    )
    .await;
    assert_eq!(early.metadata.response_code, ResponseCode::ServFail);
    // ...while outside names already work.
    let www = ask(&client, "www.example.test.", RecordType::A, true).await;
    assert_eq!(www.metadata.response_code, ResponseCode::NoError);

    {
        let mut index = dns.index.write().unwrap();
        index.replace_services(&[]);
        index.replace_endpoint_slices(&[]);
    }
    let missing = ask(
        &client,
        "myservice.default.svc.cluster.local.",
        RecordType::A,
        true,
    )
    .await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    dns.index
        .write()
        .unwrap()
        .apply_service(&cluster_ip("default", "myservice", "10.43.0.77"));
    let found = ask(
        &client,
        "myservice.default.svc.cluster.local.",
        RecordType::A,
        true,
    )
    .await;
    check_a(
        &found,
        &["myservice.default.svc.cluster.local. 5 A 10.43.0.77"],
    );
    dns.stop().await;
}

#[tokio::test]
async fn the_server_never_forwards_to_itself() {
    let upstream = start_upstream().await;
    // Pick a port, then name it (and the cluster DNS address) as resolvers
    // before the real one: forwarding there would chain queries to itself.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let listen = probe.local_addr().unwrap();
    drop(probe);
    let mut config = DnsConfig::new(Ipv4Addr::LOCALHOST);
    config.listen = listen;
    config.upstreams = vec![listen, "127.0.0.1:53".parse().unwrap(), upstream.addr];
    let index = config.new_index().unwrap();
    let server = DnsServer::bind(&config, index).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let client = client(listen, false).await;
    let answer = ask(&client, "www.example.test.", RecordType::A, true).await;
    assert_eq!(
        lines(&answer.answers),
        ["www.example.test. 60 A 192.0.2.10"]
    );
    // One query reached the real resolver: none went round through this server.
    assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 1);
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn without_upstreams_outside_names_fail() {
    let mut config = DnsConfig::new(Ipv4Addr::LOCALHOST);
    config.listen = "127.0.0.1:0".parse().unwrap();
    let index = config.new_index().unwrap();
    index.write().unwrap().replace_services(&[]);
    index.write().unwrap().replace_endpoint_slices(&[]);
    let server = DnsServer::bind(&config, index).await.unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let client = client(addr, false).await;
    let answer = ask(&client, "www.example.test.", RecordType::A, true).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    // Cluster names still work.
    let nx = ask(&client, "x.default.svc.cluster.local.", RecordType::A, true).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
}
