//! Deployments end to end: the real kubectl against a real `orca server`
//! running real containers (needs root, ORCA_TEST_REGISTRY and
//! ORCA_TEST_IMAGES; see scripts/test.sh). Pods are replaced with new IPs,
//! scaled, rolled out behind readiness, rolled back, and deleted in the
//! foreground.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Cluster;

const WAIT: Duration = Duration::from_secs(180);

/// A Deployment of nginx whose pods are ready once port 80 answers.
const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: nginx
        image: nginx
        readinessProbe:
          tcpSocket:
            port: 80
          periodSeconds: 1
"#;

/// Ready pods of app=web by name, with their IPs; Terminating ones left out.
fn ready_pods(c: &Cluster) -> BTreeMap<String, String> {
    let out = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.metadata.deletionTimestamp} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 4 && f[2].is_empty() && f[3] == "True")
                .then(|| (f[0].to_string(), f[1].to_string()))
        })
        .collect()
}

fn pod_count(c: &Cluster) -> usize {
    c.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"])
        .lines()
        .count()
}

fn serves(c: &Cluster, ip: &str) -> bool {
    c.http_get(&format!("{ip}:80"), "/")
        .contains("Welcome to nginx!")
}

fn ready_replicas(c: &Cluster) -> i64 {
    c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ])
    .trim()
    .parse()
    .unwrap_or(0)
}

#[test]
fn deployment_replaces_scales_rolls_out_and_back() {
    let c = Cluster::start();
    let manifest = c.dir.path().join("web.yaml");
    std::fs::write(&manifest, WEB).unwrap();
    assert_eq!(
        c.kubectl_ok(&["create", "-f", manifest.to_str().unwrap()])
            .trim(),
        "deployment.apps/web created"
    );
    c.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=180s"]);
    let before = ready_pods(&c);
    assert_eq!(before.len(), 3, "{before:?}");
    for ip in before.values() {
        assert!(serves(&c, ip), "{ip} does not serve");
    }

    // A deleted pod is replaced by a new pod with a new IP; the others
    // keep serving meanwhile.
    let (victim, victim_ip) = before
        .iter()
        .next()
        .map(|(n, i)| (n.clone(), i.clone()))
        .unwrap();
    c.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    for (name, ip) in before.iter().filter(|(n, _)| **n != victim) {
        assert!(serves(&c, ip), "{name} stopped serving");
    }
    c.wait_until("a replacement is ready", WAIT, || {
        let now = ready_pods(&c);
        now.len() == 3 && !now.contains_key(&victim)
    });
    let after = ready_pods(&c);
    let (new_name, new_ip) = after
        .iter()
        .find(|(n, _)| !before.contains_key(*n))
        .expect("a new pod");
    assert!(new_name.starts_with("web-"));
    assert_ne!(*new_ip, victim_ip, "the replacement has a new IP");
    assert!(serves(&c, new_ip));

    // Scale out and in; the surplus goes.
    assert_eq!(
        c.kubectl_ok(&["scale", "deploy", "web", "--replicas=10"])
            .trim(),
        "deployment.apps/web scaled"
    );
    c.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=180s"]);
    assert_eq!(ready_pods(&c).len(), 10);
    c.kubectl_ok(&["scale", "deploy", "web", "--replicas=4"]);
    c.wait_until("4 pods left", WAIT, || pod_count(&c) == 4);

    // An image that never gets ready: the rollout stalls and no more than
    // maxUnavailable (25% of 4 = 1) of the ready pods go.
    c.kubectl_ok(&["set", "image", "deploy/web", "nginx=busybox"]);
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let ready = ready_replicas(&c);
        assert!(ready >= 3, "only {ready} ready pods during the rollout");
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = c.kubectl(&["rollout", "status", "deploy/web", "--timeout=2s"]);
    assert!(!status.status.success(), "{status:?}");
    assert!(
        status
            .stdout
            .contains("Waiting for deployment \"web\" rollout to finish"),
        "{status:?}"
    );

    // Undo returns to nginx, and the rollout completes.
    assert_eq!(
        c.kubectl_ok(&["rollout", "undo", "deploy/web"]).trim(),
        "deployment.apps/web rolled back"
    );
    c.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=180s"]);
    let images = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(images, "nginx");
    let history = c.kubectl_ok(&["rollout", "history", "deploy/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
    c.wait_until("4 ready nginx pods", WAIT, || {
        ready_pods(&c).values().filter(|ip| serves(&c, ip)).count() == 4
    });

    // Foreground deletion: when kubectl returns, the pods are gone.
    c.kubectl_ok(&[
        "delete",
        "deploy",
        "web",
        "--cascade=foreground",
        "--timeout=120s",
    ]);
    assert_eq!(pod_count(&c), 0, "pods outlived their Deployment");
    assert!(c.kubectl_ok(&["get", "rs", "-o", "name"]).trim().is_empty());
}

/// `kubectl drain` on the only node, with real containers: the budget lets
/// one of two pods go; the other stays (its replacement has nowhere to run
/// while the node is cordoned) and drain gives up with Kubernetes' words;
/// after `uncordon` the Deployment is whole again.
#[test]
fn drain_honours_a_disruption_budget_with_real_pods() {
    let c = Cluster::start();
    let manifest = c.dir.path().join("web.yaml");
    std::fs::write(
        &manifest,
        format!(
            "{}---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels:\n      app: web\n",
            WEB.replace("replicas: 3", "replicas: 2")
        ),
    )
    .unwrap();
    c.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_until("2 ready pods", WAIT, || ready_pods(&c).len() == 2);
    c.wait_until("the budget allows one disruption", WAIT, || {
        c.kubectl_ok(&[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.disruptionsAllowed}",
        ])
        .trim()
            == "1"
    });
    let before = ready_pods(&c);

    let node = format!("node/{}", c.node_name);
    let out = c.kubectl(&[
        "drain",
        &c.node_name,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=15s",
    ]);
    assert!(!out.status.success(), "drain cannot finish: {out:?}");
    assert!(out.stdout.contains(&format!("{node} cordoned")), "{out:?}");
    assert!(
        out.stderr
            .contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{out:?}"
    );
    assert!(out.stdout.contains("evicted"), "{out:?}");
    // One of the first two still runs; its evicted sibling's replacement
    // waits for a schedulable node.
    let after = ready_pods(&c);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(before.contains_key(after.keys().next().unwrap()));
    let pending = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "--field-selector=status.phase=Pending",
        "-o",
        "name",
    ]);
    assert_eq!(pending.lines().count(), 1, "{pending}");

    c.kubectl_ok(&["uncordon", &c.node_name]);
    c.wait_until("2 ready pods again", WAIT, || ready_pods(&c).len() == 2);
    c.kubectl_ok(&["delete", "deployment", "web"]);
    c.wait_until("the pods gone", WAIT, || pod_count(&c) == 0);
}
