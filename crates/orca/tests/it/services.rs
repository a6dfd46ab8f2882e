//! Services, cluster DNS and hostPorts end to end: the real kubectl against
//! a real `orca server` on a node of its own (a network namespace), real
//! containers reaching each other by Service name and address through the
//! node's service proxy and DNS server. Needs root, ORCA_TEST_REGISTRY and
//! ORCA_TEST_IMAGES (see scripts/test.sh).

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Cluster, NODE_IP};

const WAIT: Duration = Duration::from_secs(90);

fn apply(cluster: &Cluster, name: &str, yaml: &str) {
    let path = cluster.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
}

/// Runs `script` with `sh -c` in `pod`; returns stdout (the exit code is
/// the script's to report).
fn sh(cluster: &Cluster, pod: &str, script: &str) -> String {
    cluster.kubectl_ok(&["exec", pod, "--", "sh", "-c", script])
}

fn status_column(cluster: &Cluster, pod: &str) -> String {
    let out = cluster.kubectl_ok(&["get", "pod", pod, "--no-headers"]);
    out.split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

fn wait_status(cluster: &Cluster, pod: &str, want: &str) {
    cluster.wait_until(&format!("pod {pod} shows {want}"), WAIT, || {
        status_column(cluster, pod) == want
    });
}

fn jsonpath(cluster: &Cluster, args: &[&str], path: &str) -> String {
    let mut all = args.to_vec();
    let expr = format!("jsonpath={path}");
    all.extend(["-o", &expr]);
    cluster.kubectl_ok(&all)
}

/// The Kubernetes documentation's init container example: the pod waits in
/// `Init:0/2` until `myservice` resolves, in `Init:1/2` until `mydb` does,
/// then runs.
#[test]
fn init_containers_wait_until_their_services_resolve() {
    let cluster = Cluster::start();
    let wait_for = |service: &str| {
        format!(
            "until nslookup {service}.$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace).svc.cluster.local; \
             do echo waiting for {service}; sleep 2; done"
        )
    };
    apply(
        &cluster,
        "myapp",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: myapp-pod
  labels:
    app.kubernetes.io/name: MyApp
spec:
  containers:
  - name: myapp-container
    image: busybox
    command: ['sh', '-c', 'echo The app is running! && sleep 3600']
  initContainers:
  - name: init-myservice
    image: busybox
    command: ['sh', '-c', "{}"]
  - name: init-mydb
    image: busybox
    command: ['sh', '-c', "{}"]
"#,
            wait_for("myservice"),
            wait_for("mydb")
        ),
    );
    cluster.wait_until("the first init container runs", WAIT, || {
        cluster
            .kubectl(&["logs", "myapp-pod", "-c", "init-myservice"])
            .stdout
            .matches("waiting for myservice")
            .count()
            >= 2
    });
    assert_eq!(status_column(&cluster, "myapp-pod"), "Init:0/2");

    let service = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - protocol: TCP\n    port: 80\n    targetPort: {port}\n"
        )
    };
    apply(&cluster, "myservice", &service("myservice", 9376));
    wait_status(&cluster, "myapp-pod", "Init:1/2");
    let ip = jsonpath(&cluster, &["get", "svc", "myservice"], "{.spec.clusterIP}");
    let logs = cluster.kubectl_ok(&["logs", "myapp-pod", "-c", "init-myservice"]);
    assert!(
        logs.contains("Name:\tmyservice.default.svc.cluster.local")
            && logs.contains(&format!("Address: {ip}")),
        "the init container resolved myservice to {ip}: {logs}"
    );

    apply(&cluster, "mydb", &service("mydb", 9377));
    wait_status(&cluster, "myapp-pod", "Running");
    assert_eq!(
        cluster
            .kubectl_ok(&["logs", "myapp-pod", "-c", "myapp-container"])
            .trim(),
        "The app is running!"
    );
}

/// nginx pods `web-1` and `web-2` answering with their name, ready while
/// /usr/share/nginx/html/ready exists.
fn web_pod(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web, instance: {name}}}
spec:
  containers:
  - name: nginx
    image: nginx
    command: [sh, -c, 'hostname > /usr/share/nginx/html/index.html && touch /usr/share/nginx/html/ready && exec nginx -g "daemon off;"']
    ports:
    - {{name: http, containerPort: 80}}
    readinessProbe:
      httpGet: {{path: /ready, port: 80}}
      periodSeconds: 1
      failureThreshold: 1
---
"#
    )
}

const SERVICES: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: web-headless
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {port: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: only-web-1
spec:
  selector: {instance: web-1}
  ports:
  - {port: 8080, targetPort: 80}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  containers:
  - name: curl
    image: curl
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: hostport
spec:
  containers:
  - name: nginx
    image: nginx
    command: [sh, -c, 'echo hostport-pod > /usr/share/nginx/html/index.html && exec nginx -g "daemon off;"']
    ports:
    - {containerPort: 80, hostPort: 18088}
"#;

/// Who answered `n` requests to `url` from the client pod.
fn answers(cluster: &Cluster, url: &str, n: usize) -> BTreeSet<String> {
    let out = sh(
        cluster,
        "client",
        &format!("for i in $(seq {n}); do curl -sS --max-time 5 {url} || echo FAILED; done"),
    );
    out.lines().map(str::to_string).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The body of an HTTP response.
fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .unwrap_or(response)
}

#[test]
fn pods_reach_services_by_name_and_address_through_the_node() {
    let mut cluster = Cluster::start();
    let manifest = format!("{}{}{SERVICES}", web_pod("web-1"), web_pod("web-2"));
    apply(&cluster, "web", &manifest);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/web-1",
        "pod/web-2",
        "pod/client",
        "pod/hostport",
        "--timeout=90s",
    ]);
    let cluster_ip = jsonpath(&cluster, &["get", "svc", "web"], "{.spec.clusterIP}");
    let node_port = jsonpath(
        &cluster,
        &["get", "svc", "web"],
        "{.spec.ports[0].nodePort}",
    );
    let pod_ip = |pod: &str| jsonpath(&cluster, &["get", "pod", pod], "{.status.podIP}");
    let (ip1, ip2) = (pod_ip("web-1"), pod_ip("web-2"));
    let both = set(&["web-1", "web-2"]);

    // The client's resolv.conf is the kubelet's for ClusterFirst.
    assert_eq!(
        sh(&cluster, "client", "cat /etc/resolv.conf"),
        "search default.svc.cluster.local svc.cluster.local cluster.local\n\
         nameserver 10.43.0.10\noptions ndots:5\n"
    );

    // By name (short, and fully qualified) and by address, spread over both.
    cluster.wait_until("the web endpoints reach the proxy", WAIT, || {
        answers(&cluster, "http://web/", 20) == both
    });
    assert_eq!(
        answers(&cluster, "http://web.default.svc.cluster.local/", 20),
        both
    );
    assert_eq!(
        answers(&cluster, &format!("http://{cluster_ip}/"), 20),
        both
    );

    // The headless Service resolves to the pods themselves.
    let lookup = sh(&cluster, "client", "nslookup web-headless; true");
    assert!(
        lookup.contains(&format!("Address: {ip1}")) && lookup.contains(&format!("Address: {ip2}")),
        "web-headless resolves to {ip1} and {ip2}: {lookup}"
    );

    // A pod reaches itself through a Service (hairpin).
    let hairpin = sh(
        &cluster,
        "web-1",
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 only-web-1.default.svc.cluster.local 8080",
    );
    assert_eq!(body(&hairpin), "web-1", "{hairpin}");

    // The NodePort from the node itself and from the machine beside it.
    let node_port_addr = format!("{NODE_IP}:{node_port}");
    let mut from_node = BTreeSet::new();
    let mut from_outside = BTreeSet::new();
    for _ in 0..20 {
        from_node.insert(body(&cluster.http_get(&node_port_addr, "/")).to_string());
        let addr = node_port_addr.clone();
        let response = cluster.outside.run(move || common::http_get(&addr, "/"));
        from_outside.insert(body(&response).to_string());
    }
    assert_eq!((from_node, from_outside), (both.clone(), both.clone()));

    // The hostPort on the node's address, from the node and from outside.
    let host_port = format!("{NODE_IP}:18088");
    assert_eq!(body(&cluster.http_get(&host_port, "/")), "hostport-pod");
    let response = cluster
        .outside
        .run(move || common::http_get(&host_port, "/"));
    assert_eq!(body(&response), "hostport-pod");

    // The API server, by name through its Service, with the pod's token.
    // (busybox's nslookup applies no search list to a name with a dot, so
    // the short name is resolved by curl, through the C library's resolver.)
    let lookup = sh(
        &cluster,
        "client",
        "nslookup kubernetes.default.svc.cluster.local; true",
    );
    assert!(
        lookup.contains("Name:\tkubernetes.default.svc.cluster.local")
            && lookup.contains("Address: 10.43.0.1"),
        "{lookup}"
    );
    let reached = sh(
        &cluster,
        "client",
        "curl -sSk -o /dev/null -w '%{remote_ip}' https://kubernetes.default/version",
    );
    assert_eq!(reached, "10.43.0.1", "kubernetes.default resolves");
    let code = sh(
        &cluster,
        "client",
        "SA=/var/run/secrets/kubernetes.io/serviceaccount; curl -sS -o /dev/null -w '%{http_code}' \
         --cacert $SA/ca.crt -H \"Authorization: Bearer $(cat $SA/token)\" \
         https://kubernetes.default.svc/api/v1/namespaces/default/pods",
    );
    assert!(
        ["200", "401", "403"].contains(&code.as_str()),
        "the API server answered through kubernetes.default.svc: {code}"
    );

    // web-2 turns unready: it leaves the endpoints and gets no new connection.
    sh(&cluster, "web-2", "rm /usr/share/nginx/html/ready");
    cluster.wait_until("web-2 leaves the endpoints", WAIT, || {
        let ready = jsonpath(
            &cluster,
            &["get", "endpoints", "web"],
            "{.subsets[*].addresses[*].ip}",
        );
        ready.split_whitespace().collect::<Vec<_>>() == [ip1.as_str()]
    });
    cluster.wait_until("the proxy sends nothing to web-2", WAIT, || {
        answers(&cluster, "http://web/", 10) == set(&["web-1"])
    });
    assert_eq!(answers(&cluster, "http://web/", 30), set(&["web-1"]));
    // Ready again: back in.
    sh(&cluster, "web-2", "touch /usr/share/nginx/html/ready");
    cluster.wait_until("web-2 is served again", WAIT, || {
        answers(&cluster, "http://web/", 20) == both
    });

    // The node holds the cluster DNS address and the proxy's table; both
    // go when the server stops.
    let has_dns_address = |cluster: &Cluster| {
        let out = cluster
            .node
            .command("ip")
            .args(["-4", "addr", "show", "dev", "lo"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("inet 10.43.0.10/32")
    };
    let has_proxy_table = |cluster: &Cluster| {
        let table = cluster.node.run(orca_proxy::inspect).unwrap();
        table.is_some()
    };
    assert!(has_dns_address(&cluster) && has_proxy_table(&cluster));
    assert!(
        cluster.stop(),
        "the server stops cleanly\n{}",
        cluster.log_tail()
    );
    assert!(!has_dns_address(&cluster), "the DNS address is removed");
    assert!(!has_proxy_table(&cluster), "the proxy's table is removed");
}

/// The kube-dns Service holds the cluster DNS address, which no other
/// Service can take, and DNS through it is answered by the node, not
/// rejected by the proxy for want of endpoints. Pods' resolv.conf follows
/// their dnsPolicy.
#[test]
fn cluster_dns_service_and_dns_policies() {
    let cluster = Cluster::start();
    let kube_dns = cluster.kubectl_ok(&[
        "get",
        "svc",
        "-n",
        "kube-system",
        "kube-dns",
        "--no-headers",
    ]);
    let columns: Vec<&str> = kube_dns.split_whitespace().collect();
    assert_eq!(
        columns[..5],
        [
            "kube-dns",
            "ClusterIP",
            "10.43.0.10",
            "<none>",
            "53/UDP,53/TCP"
        ],
        "{kube_dns}"
    );
    let taken = cluster.kubectl(&[
        "create",
        "service",
        "clusterip",
        "grabber",
        "--tcp=53:53",
        "--clusterip=10.43.0.10",
    ]);
    assert!(
        taken.stderr.contains(
            "spec.clusterIPs: Invalid value: []string{\"10.43.0.10\"}: failed to allocate IP \
             10.43.0.10: provided IP is reserved for the cluster DNS Service kube-system/kube-dns"
        ),
        "{taken:?}"
    );

    apply(
        &cluster,
        "dns-pods",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: first
spec:
  containers:
  - {name: main, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata:
  name: none
spec:
  dnsPolicy: None
  dnsConfig:
    nameservers: [192.0.2.53]
  containers:
  - {name: main, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata:
  name: default
spec:
  dnsPolicy: Default
  containers:
  - {name: main, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata:
  name: many
spec:
  dnsPolicy: None
  dnsConfig:
    nameservers: [10.43.0.10, 192.0.2.1, 192.0.2.2, 192.0.2.3]
    searches: [example.test]
    options: [{name: ndots, value: "2"}, {name: edns0}]
  containers:
  - {name: main, image: busybox, command: [sleep, "3600"]}
"#,
    );
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/first",
        "pod/none",
        "pod/default",
        "pod/many",
        "--timeout=90s",
    ]);
    // DNS through the kube-dns address is the node's to answer.
    let lookup = sh(
        &cluster,
        "first",
        "nslookup kube-dns.kube-system.svc.cluster.local; true",
    );
    assert!(
        lookup.contains("Name:\tkube-dns.kube-system.svc.cluster.local")
            && lookup.contains("Address: 10.43.0.10"),
        "{lookup}"
    );
    // dnsConfig alone: no cluster search list, nothing of the node's.
    assert_eq!(
        sh(&cluster, "none", "cat /etc/resolv.conf"),
        "nameserver 192.0.2.53\n"
    );
    assert_eq!(
        sh(&cluster, "default", "cat /etc/resolv.conf"),
        format!("nameserver {}\n", common::OUTSIDE_IP),
        "the node's resolv.conf"
    );
    assert_eq!(
        sh(&cluster, "many", "cat /etc/resolv.conf"),
        "search example.test\nnameserver 10.43.0.10\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n\
         options ndots:2 edns0\n"
    );
    let describe = cluster.kubectl_ok(&["describe", "pod", "many"]);
    assert!(
        describe.contains("Warning  DNSConfigForming")
            && describe.contains(
                "Nameserver limits were exceeded, some nameservers have been omitted, \
                 the applied nameserver line is: 10.43.0.10 192.0.2.1 192.0.2.2"
            ),
        "{describe}"
    );
}

/// A node whose cluster DNS cannot be served (here: an IPv6 --cluster-dns,
/// which the DNS server does not take) says so with a Warning event on the
/// Node and keeps running pods.
#[test]
fn a_node_that_cannot_serve_cluster_dns_says_why_and_runs_pods() {
    let cluster = Cluster::start_with(&["--cluster-dns", "fd00::10"]);
    let node = format!(
        "involvedObject.kind=Node,involvedObject.name={}",
        cluster.node_name
    );
    cluster.wait_until("the node reports the DNS failure", WAIT, || {
        cluster
            .kubectl(&["get", "events", "--field-selector", &node])
            .stdout
            .contains("FailedToStartClusterDNS")
    });
    let events = cluster.kubectl_ok(&["get", "events", "--field-selector", &node]);
    assert!(
        events.contains("Warning   FailedToStartClusterDNS")
            && events.contains(
                "cluster DNS is not served on this node: its address must be an IPv4 address"
            ),
        "{events}"
    );
    cluster.kubectl_ok(&["run", "bb", "--image=busybox", "--", "sleep", "3600"]);
    cluster.kubectl_ok(&["wait", "--for=condition=Ready", "pod/bb", "--timeout=90s"]);
    assert_eq!(
        sh(&cluster, "bb", "grep nameserver /etc/resolv.conf"),
        "nameserver fd00::10\n"
    );
}
