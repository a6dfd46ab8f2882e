//! Shared by the server tests and the benchmark: cluster objects, a DNS
//! resolver of the test's own on 127.0.0.1 standing in for the node's, and
//! a real DNS client (hickory's) over UDP or TCP.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsHandle, FirstAnswer, Protocol};
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{DnsRequest, DnsRequestOptions, Message, Query};
use hickory_server::proto::rr::rdata::{A, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use tokio::net::{TcpListener, UdpSocket};

pub fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
        .unwrap()
}

pub fn cluster_ip(ns: &str, name: &str, ip: &str) -> Service {
    service(
        ns,
        name,
        json!({"clusterIP": ip, "clusterIPs": [ip],
               "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
    )
}

pub fn headless(ns: &str, name: &str) -> Service {
    service(
        ns,
        name,
        json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
    )
}

/// A slice of `service` with ready endpoints (ip, hostname) on port 8080 "http".
pub fn slice(
    ns: &str,
    name: &str,
    service: &str,
    endpoints: &[(&str, Option<&str>)],
) -> EndpointSlice {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(ip, host)| json!({"addresses": [ip], "conditions": {"ready": true}, "hostname": host}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

/// The upstream's zone `example.test.`: `www` A 192.0.2.10, and `big` with
/// a TXT set of about 1,000 bytes (truncated over UDP without EDNS).
pub const UPSTREAM_WWW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// A DNS server of the test's own on 127.0.0.1 (UDP and TCP on one port),
/// counting the queries it gets over each.
pub struct Upstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    _server: Server<Counting>,
}

pub struct Counting {
    catalog: Catalog,
    udp: Arc<AtomicUsize>,
    tcp: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for Counting {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        let counter = if request.protocol() == Protocol::Tcp {
            &self.tcp
        } else {
            &self.udp
        };
        counter.fetch_add(1, Ordering::SeqCst);
        self.catalog.handle_request::<R, T>(request, response).await
    }
}

pub async fn start_upstream() -> Upstream {
    let origin = Name::from_str("example.test.").unwrap();
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = SOA::new(
        Name::from_str("ns.example.test.").unwrap(),
        Name::from_str("hostmaster.example.test.").unwrap(),
        1,
        3600,
        600,
        86400,
        60,
    );
    zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
    zone.upsert_mut(
        Record::from_rdata(
            Name::from_str("www.example.test.").unwrap(),
            60,
            RData::A(A(UPSTREAM_WWW)),
        ),
        1,
    );
    let strings: Vec<String> = (0..10).map(|i| format!("{i}{}", "x".repeat(99))).collect();
    zone.upsert_mut(
        Record::from_rdata(
            Name::from_str("big.example.test.").unwrap(),
            60,
            RData::TXT(TXT::new(strings)),
        ),
        1,
    );
    let mut catalog = Catalog::new();
    catalog.upsert(
        LowerName::new(&origin),
        vec![Arc::new(zone) as Arc<dyn ZoneHandler>],
    );
    // A free UDP port may be taken for TCP by another test: try until one
    // port is free for both.
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            break (udp, tcp, addr);
        }
    };
    let udp_queries = Arc::new(AtomicUsize::new(0));
    let tcp_queries = Arc::new(AtomicUsize::new(0));
    let mut server = Server::new(Counting {
        catalog,
        udp: udp_queries.clone(),
        tcp: tcp_queries.clone(),
    });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 32);
    Upstream {
        addr,
        udp_queries,
        tcp_queries,
        _server: server,
    }
}

/// A DNS client to `server` over UDP or TCP.
pub async fn client(server: SocketAddr, tcp: bool) -> Client<TokioRuntimeProvider> {
    let provider = TokioRuntimeProvider::default();
    let (client, background) = if tcp {
        let (stream, sender) =
            TcpClientStream::new(server, None, Some(Duration::from_secs(5)), provider);
        let (client, background) =
            Client::<TokioRuntimeProvider>::new(stream.await.unwrap(), sender);
        tokio::spawn(background);
        return client;
    } else {
        Client::<TokioRuntimeProvider>::from_sender(
            UdpClientStream::builder(server, provider).build(),
        )
    };
    tokio::spawn(background);
    client
}

/// Asks `name` `qtype` (EDNS with a 1232-byte payload when `edns`).
pub async fn ask(
    client: &Client<TokioRuntimeProvider>,
    name: &str,
    qtype: RecordType,
    edns: bool,
) -> Message {
    let mut options = DnsRequestOptions::default();
    options.use_edns = edns;
    options.edns_payload_len = 1232;
    options.recursion_desired = true;
    let query = Query::query(Name::from_str(name).unwrap(), qtype);
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(query);
    if edns {
        let mut e = hickory_server::proto::op::Edns::new();
        e.set_max_payload(1232);
        message.set_edns(e);
    }
    let request = DnsRequest::new(message, options);
    client
        .send(request)
        .first_answer()
        .await
        .unwrap_or_else(|e| panic!("{name} {qtype}: {e}"))
        .into_message()
}

/// The records of a section as `name TTL TYPE data`, sorted.
pub fn lines(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
        .collect();
    v.sort();
    v
}

pub fn labels(map: &[(&str, &str)]) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs `ip ARGS` in the calling thread's network namespace (a child
/// process starts in the namespace of the thread that forks it).
pub fn ip(args: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Moves the calling thread into a new network namespace with `lo` up; it
/// goes away with the thread.
pub fn new_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare a network namespace");
    ip("link set lo up");
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
