//! The cluster DNS address on the node's loopback interface, in network namespaces
//! this test makes: a "node" namespace that holds the address and serves
//! DNS on it, and a "pod" namespace joined to it by a veth pair, whose
//! queries reach the address through its default route to the node. Each
//! namespace belongs to one thread (unshare), so both vanish, veth pair
//! included, when the threads end. Needs root and iproute2's `ip`.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::thread;

use common::*;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::RecordType;
use orca_dns::interface::{add_dns_address, remove_dns_address, ADDRESS_LABEL};
use orca_dns::{DnsConfig, DnsServer};

const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);

#[test]
fn pods_reach_the_cluster_dns_address_through_their_default_route() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let (pod_tid_tx, pod_tid_rx) = mpsc::channel::<i32>();
    let (wired_tx, wired_rx) = mpsc::channel::<()>();
    let (answered_tx, answered_rx) = mpsc::channel::<()>();

    let pod = thread::spawn(move || {
        new_netns();
        pod_tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
        wired_rx.recv().unwrap();
        ip("addr add 10.42.0.5/24 dev veth-pod");
        ip("link set veth-pod up");
        ip("route add default via 10.42.0.1");
        let answer = runtime().block_on(async {
            let client = client(SocketAddr::from((DNS_IP, 53)), false).await;
            ask(
                &client,
                "web.default.svc.cluster.local.",
                RecordType::A,
                true,
            )
            .await
        });
        answered_tx.send(()).unwrap();
        answer
    });

    let node = thread::spawn(move || {
        new_netns();
        // Nothing owns the address yet.
        assert!(std::net::UdpSocket::bind((DNS_IP, 0)).is_err());
        // An address left by an earlier run with another --cluster-dns.
        add_dns_address(Ipv4Addr::new(10, 43, 0, 99)).unwrap();
        add_dns_address(DNS_IP).unwrap();
        // Again, as after a restart that found it in place.
        add_dns_address(DNS_IP).unwrap();
        let addrs = ip(&format!("-4 -o addr show label {ADDRESS_LABEL}"));
        assert!(addrs.contains("inet 10.43.0.10/32"), "{addrs}");
        assert_eq!(addrs.lines().count(), 1, "{addrs}");

        let pod_tid = pod_tid_rx.recv().unwrap();
        ip(&format!(
            "link add veth-node type veth peer name veth-pod netns {pod_tid}"
        ));
        ip("addr add 10.42.0.1/24 dev veth-node");
        ip("link set veth-node up");

        runtime().block_on(async {
            let config = DnsConfig::new(DNS_IP);
            let index = config.new_index().unwrap();
            {
                let mut index = index.write().unwrap();
                index.replace_services(&[cluster_ip("default", "web", "10.43.0.20")]);
                index.replace_endpoint_slices(&[]);
            }
            let server = DnsServer::bind(&config, index).await.unwrap();
            assert_eq!(server.local_addr(), SocketAddr::from((DNS_IP, 53)));
            wired_tx.send(()).unwrap();
            server
                .serve(async {
                    tokio::task::spawn_blocking(move || answered_rx.recv())
                        .await
                        .unwrap()
                        .unwrap();
                })
                .await
                .unwrap();
        });

        assert_eq!(remove_dns_address().unwrap(), 1);
        assert_eq!(remove_dns_address().unwrap(), 0);
        assert!(std::net::UdpSocket::bind((DNS_IP, 0)).is_err());
        // The loopback address itself stays.
        assert!(ip("-4 -o addr show dev lo").contains("inet 127.0.0.1/8"));
    });

    let answer = pod.join().expect("pod thread");
    node.join().expect("node thread");
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        lines(&answer.answers),
        ["web.default.svc.cluster.local. 5 A 10.43.0.20"]
    );
}
