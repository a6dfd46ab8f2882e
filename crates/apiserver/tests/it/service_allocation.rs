//! Where Services' cluster IPs and node ports come from and go back to:
//! release on delete and type change, dry runs that take nothing, the
//! repair pass at start, and several API servers on one etcd, which never
//! hand out a value twice and each appear in the `kubernetes` endpoints.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{send, Harness};
use orca_store::{ListOptions, Store};
use serde_json::{json, Value};

async fn wait_for_kubernetes_service(h: &Harness) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !h
        .kubectl_out(&["get", "svc", "kubernetes"], None)
        .await
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the kubernetes Service never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The keys of the allocation records.
async fn allocations(store: &Arc<dyn Store>) -> BTreeSet<String> {
    store
        .list("/registry/ranges/", ListOptions::default())
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_released_on_delete_and_type_change_and_dry_runs_take_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path()).await;
    let server = common::start_compacting(dir.path(), store.clone(), Duration::ZERO).await;
    let h = Harness { dir, server };
    wait_for_kubernetes_service(&h).await;
    let base = allocations(&store).await;
    assert!(
        base.contains("/registry/ranges/serviceips/10.43.0.1"),
        "{base:?}"
    );

    h.kubectl(&[
        "create",
        "service",
        "nodeport",
        "a",
        "--tcp=80:80",
        "--node-port=30500",
    ])
    .await;
    let svc: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "a", "-o", "json"]).await).unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let with_a = allocations(&store).await;
    assert_eq!(with_a.len(), base.len() + 2, "{with_a:?}");
    assert!(with_a.contains(&format!("/registry/ranges/serviceips/{ip}")));
    assert!(with_a.contains("/registry/ranges/servicenodeports/30500"));

    // Dry runs, of a create and of an update to another port, take nothing.
    h.kubectl(&[
        "create",
        "service",
        "nodeport",
        "b",
        "--tcp=80:80",
        "--dry-run=server",
    ])
    .await;
    h.kubectl(&["patch", "svc", "a", "--dry-run=server", "-p",
        r#"{"spec":{"ports":[{"port":80,"targetPort":80,"protocol":"TCP","name":"80-80","nodePort":30501}]}}"#]).await;
    assert_eq!(allocations(&store).await, with_a);

    // NodePort -> ClusterIP gives the node port back; the address stays.
    h.kubectl(&[
        "patch",
        "svc",
        "a",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ])
    .await;
    let svc: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "a", "-o", "json"]).await).unwrap();
    assert_eq!(svc["spec"]["clusterIP"], ip.as_str());
    assert_eq!(svc["spec"]["ports"][0].get("nodePort"), None, "{svc}");
    assert!(!allocations(&store)
        .await
        .contains("/registry/ranges/servicenodeports/30500"));
    h.kubectl(&[
        "create",
        "service",
        "nodeport",
        "c",
        "--tcp=80:80",
        "--node-port=30500",
    ])
    .await;

    // Deleting gives the address back; it can be asked for again.
    h.kubectl(&["delete", "svc", "a"]).await;
    assert!(!allocations(&store)
        .await
        .contains(&format!("/registry/ranges/serviceips/{ip}")));
    let flag = format!("--clusterip={ip}");
    h.kubectl(&[
        "create",
        "service",
        "clusterip",
        "again",
        &flag,
        "--tcp=80:80",
    ])
    .await;

    // ClusterIP -> ExternalName gives the address back too.
    h.kubectl(&[
        "patch",
        "svc",
        "again",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"example.com"}}"#,
    ])
    .await;
    let svc: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "again", "-o", "json"]).await).unwrap();
    assert_eq!(svc["spec"].get("clusterIP"), None, "{svc}");
    assert!(!allocations(&store)
        .await
        .contains(&format!("/registry/ranges/serviceips/{ip}")));
    // And back to ClusterIP takes a new one.
    h.kubectl(&["patch", "svc", "again", "--type=json", "-p",
        r#"[{"op":"replace","path":"/spec/type","value":"ClusterIP"},{"op":"remove","path":"/spec/externalName"}]"#]).await;
    let svc: Value =
        serde_json::from_str(&h.kubectl(&["get", "svc", "again", "-o", "json"]).await).unwrap();
    let new_ip = svc["spec"]["clusterIP"].as_str().expect("a new cluster IP");
    assert!(allocations(&store)
        .await
        .contains(&format!("/registry/ranges/serviceips/{new_ip}")));

    // A failed create (the name is taken) keeps nothing.
    let before = allocations(&store).await;
    h.kubectl_fails(&["create", "service", "nodeport", "c", "--tcp=81:81"], None)
        .await;
    assert_eq!(allocations(&store).await, before);

    // Deleting a namespace's Services gives their values back.
    h.kubectl(&["create", "namespace", "gone"]).await;
    h.kubectl(&[
        "create",
        "service",
        "nodeport",
        "n",
        "-n",
        "gone",
        "--tcp=80:80",
    ])
    .await;
    assert_eq!(allocations(&store).await.len(), before.len() + 2);
    h.kubectl(&["delete", "namespace", "gone"]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while allocations(&store).await != before {
        assert!(
            std::time::Instant::now() < deadline,
            "the namespace's Service kept its values"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repair_pass_at_start_releases_leaks_and_records_what_services_hold() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path()).await;
    // A value taken an hour ago by a server that died before storing its
    // Service, one taken just now (a create in flight elsewhere), and a
    // stored Service whose values have no record.
    let old = json!({"namespace": "default", "name": "ghost", "uid": "u1",
        "allocatedAt": "2020-01-01T00:00:00Z"});
    store
        .create(
            "/registry/ranges/serviceips/10.43.9.9",
            old.to_string().into_bytes(),
        )
        .await
        .unwrap();
    store
        .create(
            "/registry/ranges/servicenodeports/31999",
            old.to_string().into_bytes(),
        )
        .await
        .unwrap();
    let young = json!({"namespace": "default", "name": "inflight", "uid": "u2",
        "allocatedAt": chrono::Utc::now().to_rfc3339()});
    store
        .create(
            "/registry/ranges/serviceips/10.43.9.10",
            young.to_string().into_bytes(),
        )
        .await
        .unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "restored", "namespace": "default", "uid": "u3",
                     "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"type": "NodePort", "clusterIP": "10.43.9.11", "clusterIPs": ["10.43.9.11"],
                 "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 31000}]}});
    store
        .create(
            "/registry/services/default/restored",
            svc.to_string().into_bytes(),
        )
        .await
        .unwrap();

    let server = common::start_compacting(dir.path(), store.clone(), Duration::ZERO).await;
    let keys = allocations(&store).await;
    assert!(
        !keys.contains("/registry/ranges/serviceips/10.43.9.9"),
        "{keys:?}"
    );
    assert!(
        !keys.contains("/registry/ranges/servicenodeports/31999"),
        "{keys:?}"
    );
    assert!(
        keys.contains("/registry/ranges/serviceips/10.43.9.10"),
        "{keys:?}"
    );
    assert!(
        keys.contains("/registry/ranges/serviceips/10.43.9.11"),
        "{keys:?}"
    );
    assert!(
        keys.contains("/registry/ranges/servicenodeports/31000"),
        "{keys:?}"
    );
    let h = Harness { dir, server };
    let err = h
        .kubectl_fails(
            &[
                "create",
                "service",
                "clusterip",
                "dup",
                "--clusterip=10.43.9.11",
                "--tcp=80:80",
            ],
            None,
        )
        .await;
    assert!(err.contains("provided IP is already allocated"), "{err}");
}

/// An etcd process on loopback ports, killed (by its pid) when dropped.
struct Etcd {
    child: std::process::Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let endpoint = format!("http://127.0.0.1:{}", port());
        let peer = format!("http://127.0.0.1:{}", port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = std::process::Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "svc-test", "--listen-client-urls", &endpoint])
            .args([
                "--advertise-client-urls",
                &endpoint,
                "--listen-peer-urls",
                &peer,
            ])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("svc-test={peer}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting etcd: install Debian's etcd-server (scripts/test.sh does)");
        Etcd {
            child,
            endpoint,
            _dir: dir,
        }
    }

    async fn connect(&self) -> Arc<dyn Store> {
        for _ in 0..100 {
            if let Ok(s) =
                orca_store::etcd::EtcdStore::connect(std::slice::from_ref(&self.endpoint)).await
            {
                return Arc::new(s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("etcd at {} never answered", self.endpoint);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_etcd_never_hand_out_a_value_twice() {
    let etcd = Etcd::start();
    // A small range, so that the two servers compete for the same values.
    let net = orca_apiserver::ServiceNetwork::new("10.96.0.0/26", "30000-30079").unwrap();
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let store = etcd.connect().await;
        let server = orca_apiserver::start(
            orca_apiserver::Config {
                data_dir: dir.path().to_path_buf(),
                https_port: 0,
                service_network: net.clone(),
                ..Default::default()
            },
            store,
        )
        .await
        .unwrap();
        servers.push(server);
        dirs.push(dir);
    }
    let clients: Vec<kube::Client> = servers
        .iter()
        .map(|s| s.local_client(orca_apiserver::auth::UserInfo::admin()))
        .collect();
    // The kubernetes Service takes the range's first address first.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while send(
        &clients[0],
        "GET",
        "/api/v1/namespaces/default/services/kubernetes",
        "application/json",
        vec![],
    )
    .await
    .0 != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no kubernetes Service"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 60 NodePort Services, half through each server, all at once: the
    // range has 62 addresses (one is the kubernetes Service's) and 80 ports.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let client = clients[i % 2].clone();
        tasks.spawn(async move {
            let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("s{i}")},
                "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
            let (code, v, _) = send(&client, "POST", "/api/v1/namespaces/default/services",
                "application/json", body.to_string().into_bytes()).await;
            assert_eq!(code, 201, "{v}");
            (v["spec"]["clusterIP"].as_str().unwrap().to_string(),
             v["spec"]["ports"][0]["nodePort"].as_i64().unwrap())
        });
    }
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        let (ip, port) = r.unwrap();
        assert!(ips.insert(ip.clone()), "{ip} handed out twice");
        assert!(ports.insert(port), "node port {port} handed out twice");
    }
    // The range is now nearly full: one more address, then none.
    let one_more = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "last"},
        "spec": {"ports": [{"port": 80}]}});
    let (code, v, _) = send(
        &clients[1],
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        one_more.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert!(ips.insert(v["spec"]["clusterIP"].as_str().unwrap().to_string()));
    let full = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "full"},
        "spec": {"ports": [{"port": 80}]}});
    let (code, v, _) = send(
        &clients[0],
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        full.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 500, "{v}");
    assert_eq!(
        v["message"],
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    );
    // Deleting through one server frees the value for the other.
    let (code, _, _) = send(
        &clients[0],
        "DELETE",
        "/api/v1/namespaces/default/services/s3",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    let (code, v, _) = send(
        &clients[1],
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        full.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_endpoints_list_every_live_server() {
    let etcd = Etcd::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Two servers on one port of two loopback addresses, advertising two
    // addresses of a (documentation) network: nothing is sent to them.
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for (bind, advertise) in [("127.0.0.2", "192.0.2.50"), ("127.0.0.3", "192.0.2.51")] {
        let dir = tempfile::tempdir().unwrap();
        let server = orca_apiserver::start(
            orca_apiserver::Config {
                data_dir: dir.path().to_path_buf(),
                bind_address: bind.into(),
                https_port: port,
                advertise_address: Some(advertise.parse().unwrap()),
                ..Default::default()
            },
            etcd.connect().await,
        )
        .await
        .unwrap();
        servers.push(server);
        dirs.push(dir);
    }
    let client = servers[0].local_client(orca_apiserver::auth::UserInfo::admin());
    let addresses = |client: kube::Client| async move {
        let (_, ep, _) = send(
            &client,
            "GET",
            "/api/v1/namespaces/default/endpoints/kubernetes",
            "application/json",
            vec![],
        )
        .await;
        let (_, slice, _) = send(
            &client,
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
            "application/json",
            vec![],
        )
        .await;
        let from_ep: Vec<String> = ep["subsets"][0]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["ip"].as_str().unwrap().to_string())
            .collect();
        let from_slice: Vec<String> = slice["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["addresses"][0].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ep["subsets"][0]["ports"][0]["port"], port, "{ep}");
        (from_ep, from_slice)
    };
    // The first server saw only itself at start; the second saw both. The
    // next round of the first (10 s) writes the same.
    let both = vec!["192.0.2.50".to_string(), "192.0.2.51".to_string()];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ep, slice) = addresses(client.clone()).await;
        if ep == both && slice == both {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "endpoints {ep:?}, slice {slice:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A server that stops takes itself out.
    let second = servers.pop().unwrap();
    second.shutdown().await;
    let (ep, slice) = addresses(client.clone()).await;
    assert_eq!(ep, ["192.0.2.50"]);
    assert_eq!(slice, ["192.0.2.50"]);
    for s in servers {
        s.shutdown().await;
    }
}

/// The cluster DNS address goes to `kube-system/kube-dns`, made at start,
/// and to no other Service: random picks skip it even in a full range, a
/// request for it by number is refused, and it stays kept once kube-dns is
/// deleted, for kube-dns to take again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_dns_address_is_kept_for_kube_dns() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path()).await;
    // 14 addresses: the kubernetes Service's, kube-dns's and 12 more.
    let net = orca_apiserver::ServiceNetwork::new("10.96.0.0/28", "30000-30079")
        .unwrap()
        .with_cluster_dns("10.96.0.10".parse().unwrap());
    let server = orca_apiserver::start(
        orca_apiserver::Config {
            data_dir: dir.path().to_path_buf(),
            https_port: 0,
            service_network: net,
            ..Default::default()
        },
        store,
    )
    .await
    .unwrap();
    let client = server.local_client(orca_apiserver::auth::UserInfo::admin());
    let kube_dns = "/api/v1/namespaces/kube-system/services/kube-dns";
    let (code, v, _) = send(&client, "GET", kube_dns, "application/json", vec![]).await;
    assert_eq!(code, 200, "kube-dns is made at start: {v}");
    assert_eq!(v["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(v["spec"]["selector"], Value::Null, "no endpoints to select");
    let ports: Vec<(Value, Value)> = v["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["port"].clone(), p["protocol"].clone()))
        .collect();
    assert_eq!(
        ports,
        [(json!(53), json!("UDP")), (json!(53), json!("TCP"))]
    );

    let create = |name: &str, ip: Option<&str>| {
        let mut spec = json!({"ports": [{"port": 80}]});
        if let Some(ip) = ip {
            spec["clusterIP"] = json!(ip);
        }
        let body = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name}, "spec": spec});
        let client = client.clone();
        async move {
            send(
                &client,
                "POST",
                "/api/v1/namespaces/default/services",
                "application/json",
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let (code, v, _) = create("grabber", Some("10.96.0.10")).await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(
        v["message"],
        "Service \"grabber\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: \
         failed to allocate IP 10.96.0.10: provided IP is reserved for the cluster DNS Service \
         kube-system/kube-dns"
    );
    let mut ips = BTreeSet::new();
    for i in 0..12 {
        let (code, v, _) = create(&format!("s{i}"), None).await;
        assert_eq!(code, 201, "{v}");
        ips.insert(v["spec"]["clusterIP"].as_str().unwrap().to_string());
    }
    assert!(!ips.contains("10.96.0.10"), "{ips:?}");
    let (code, v, _) = send(&client, "DELETE", kube_dns, "application/json", vec![]).await;
    assert_eq!(code, 200, "{v}");
    let (code, v, _) = create("one-more", None).await;
    assert_eq!(code, 500, "the free cluster DNS address is not picked: {v}");
    let (code, v, _) = create("grabber", Some("10.96.0.10")).await;
    assert_eq!(code, 422, "nor given by number: {v}");
    let back = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}});
    let (code, v, _) = send(
        &client,
        "POST",
        "/api/v1/namespaces/kube-system/services",
        "application/json",
        back.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "kube-dns takes it back: {v}");
    server.shutdown().await;
}
