//! The node lifecycle controller against a real API server (the SQLite store
//! on a temp dir), with short timings. The test plays the kubelet: it
//! registers a node, renews its Lease, then stops; everything the controller
//! does is observed through the API, and checked against what Kubernetes'
//! node lifecycle and taint eviction controllers do. With the ReplicaSet
//! controller, the real scheduler and a virtual node beside it, the lost
//! node's ReplicaSet pod is replaced on the other node.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use orca_controllers::lifecycle::UNREACHABLE_TAINT;
use orca_testkit::wait_for;

/// Generous: tests run in parallel on a 2-core machine.
const WAIT: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(3);
const NODE: &str = "lost-node";

struct Cluster {
    _dir: tempfile::TempDir,
    server: orca_apiserver::ApiServer,
    client: Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = orca_testkit::api_server(dir.path()).await;
        let client = orca_testkit::admin_client(&server).await;
        let config = orca_controllers::Config {
            node_monitor_grace: GRACE,
            node_monitor_period: Duration::from_millis(200),
            ..Default::default()
        };
        // With the identities `orca server` gives it, so that the bootstrap
        // policy's roles are what lets it work.
        use orca_apiserver::auth::UserInfo;
        let local = server.local_clients();
        let clients = orca_controllers::Clients::new(
            local.client(UserInfo::kube_controller_manager()),
            move |name| local.client(UserInfo::controller(name)),
        );
        let controller = tokio::spawn(async move {
            orca_controllers::lifecycle::run(&clients, config)
                .await
                .expect("the node lifecycle controller runs");
        });
        Cluster {
            _dir: dir,
            server,
            client,
            tasks: vec![controller],
        }
    }

    /// What replaces pods: the ReplicaSet controller and the scheduler.
    fn start_workloads(&mut self) {
        let (manager, per_controller) = orca_testkit::controller_identities(&self.server);
        let clients = orca_controllers::Clients::new(manager, per_controller);
        self.tasks.push(tokio::spawn(async move {
            orca_controllers::replicaset::run(&clients)
                .await
                .expect("the ReplicaSet controller runs");
        }));
        let client = self.client.clone();
        self.tasks.push(tokio::spawn(async move {
            let config = orca_scheduler::Config {
                leader_elect: false,
                ..Default::default()
            };
            orca_scheduler::run(client, config)
                .await
                .expect("the scheduler runs");
        }));
    }

    /// A virtual node `vn-0`, which runs what lands on it and renews its
    /// Lease well within the grace period.
    async fn add_virtual_node(&mut self) {
        let config = orca_virtual_nodes::Config {
            count: 1,
            name_prefix: "vn-".into(),
            lease_duration_seconds: GRACE.as_secs() as i32,
            lease_renew_interval: Duration::from_millis(300),
            termination: orca_virtual_nodes::Termination::Immediate,
            ..Default::default()
        };
        self.tasks
            .push(orca_virtual_nodes::spawn_registered(self.client.clone(), config).await);
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), "kube-node-lease")
    }

    /// What a kubelet does on start: the Node, Ready, and its Lease.
    async fn register_node(&self, heartbeat: Time) {
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "kube-node-lease"}}))
                .unwrap();
        match Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            result => {
                result.expect("creating kube-node-lease");
            }
        }
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": NODE},
        }))
        .unwrap();
        self.nodes()
            .create(&PostParams::default(), &node)
            .await
            .expect("registering the node");
        let status = serde_json::json!({"status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": heartbeat,
                "lastTransitionTime": heartbeat,
            }],
        }});
        self.nodes()
            .patch_status(NODE, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("posting node status");
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": NODE, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": NODE,
                "leaseDurationSeconds": GRACE.as_secs(),
                "renewTime": MicroTime(Utc::now()),
            },
        }))
        .unwrap();
        self.leases()
            .create(&PostParams::default(), &lease)
            .await
            .expect("creating the node's Lease");
    }

    async fn renew_lease(&self) {
        let patch = serde_json::json!({"spec": {"renewTime": MicroTime(Utc::now())}});
        self.leases()
            .patch(NODE, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("renewing the Lease");
    }

    /// A pod bound to the node, reported Running and Ready as its kubelet would.
    async fn running_pod(&self, name: &str, tolerations: serde_json::Value) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": NODE,
                "tolerations": tolerations,
                "containers": [{"name": "main", "image": "busybox"}],
            },
        }))
        .unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("creating a pod");
        self.report_running(name).await;
    }

    /// Reports the pod Running and Ready, as its kubelet would.
    async fn report_running(&self, name: &str) {
        let now = Time(Utc::now());
        let condition = |type_: &str| PodCondition {
            type_: type_.into(),
            status: "True".into(),
            last_transition_time: Some(now.clone()),
            ..Default::default()
        };
        let status = serde_json::json!({"status": {
            "phase": "Running",
            "podIP": "10.42.0.5",
            "conditions": [condition("PodScheduled"), condition("Initialized"),
                           condition("ContainersReady"), condition("Ready")],
        }});
        self.pods()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("posting pod status");
    }

    async fn node(&self) -> Node {
        self.nodes().get(NODE).await.expect("getting the node")
    }

    async fn pod(&self, name: &str) -> Pod {
        self.pods().get(name).await.expect("getting a pod")
    }

    /// The ReplicaSet `web`'s pods, the Terminating ones too.
    async fn web_pods(&self) -> Vec<Pod> {
        self.pods()
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("listing pods")
            .items
    }

    /// Events about `name`, as (type, reason, message, source component).
    async fn events(&self, name: &str) -> Vec<(String, String, String, String)> {
        Api::<Event>::namespaced(self.client.clone(), "default")
            .list(&ListParams::default())
            .await
            .expect("listing events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                    e.source.and_then(|s| s.component).unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl Cluster {
    /// Waits for an event about `name` (events follow the change they report).
    async fn wait_event(&self, name: &str, type_: &str, reason: &str, message: &str, source: &str) {
        let expected = (type_.into(), reason.into(), message.into(), source.into());
        wait_for(&format!("a {reason} event about {name}"), WAIT, || async {
            self.events(name).await.contains(&expected).then_some(())
        })
        .await;
    }
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn unreachable_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key == UNREACHABLE_TAINT)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_renewing_its_lease_is_tainted_and_its_pods_evicted() {
    let mut cluster = Cluster::start().await;
    let heartbeat = Time(Utc::now());
    cluster.register_node(heartbeat.clone()).await;
    // A ReplicaSet's pod, scheduled onto the node (the only one yet), which
    // tolerates it being unreachable for 2 s.
    cluster.start_workloads();
    let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "tolerations": [
                    {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute",
                     "tolerationSeconds": 2},
                    {"key": "orca.dev/virtual-node", "operator": "Exists"}],
                "containers": [{"name": "main", "image": "busybox"}]}}},
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(cluster.client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .expect("creating the ReplicaSet");
    let first = wait_for("the ReplicaSet's pod on the node", WAIT, || async {
        cluster.renew_lease().await;
        let pods = cluster.web_pods().await;
        let pod = pods.first()?;
        let node = pod.spec.as_ref()?.node_name.as_deref()?;
        assert_eq!(node, NODE);
        Some(pod.name_any())
    })
    .await;
    cluster.report_running(&first).await;
    cluster.add_virtual_node().await;
    // Tolerates the unreachable node for 2 s (Kubernetes' default
    // toleration, added at admission, is 300 s).
    cluster
        .running_pod(
            "short",
            serde_json::json!([{"key": UNREACHABLE_TAINT, "operator": "Exists",
                                "effect": "NoExecute", "tolerationSeconds": 2}]),
        )
        .await;
    // Tolerates it for ever.
    cluster
        .running_pod(
            "stays",
            serde_json::json!([{"key": UNREACHABLE_TAINT, "operator": "Exists",
                                "effect": "NoExecute"}]),
        )
        .await;

    // No tolerations of its own: admission gives it Kubernetes' default,
    // the unreachable taint tolerated for 300 s.
    cluster.running_pod("plain", serde_json::Value::Null).await;
    let plain = cluster.pod("plain").await;
    let defaulted = plain
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .and_then(|t| {
            t.iter()
                .find(|t| t.key.as_deref() == Some(UNREACHABLE_TAINT))
        })
        .expect("the default unreachable toleration");
    assert_eq!(defaulted.toleration_seconds, Some(300));

    // While the Lease is renewed for longer than the grace period, nothing
    // happens to the node.
    let renewing_until = tokio::time::Instant::now() + GRACE + Duration::from_secs(1);
    while tokio::time::Instant::now() < renewing_until {
        cluster.renew_lease().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let node = cluster.node().await;
    assert!(unreachable_taints(&node).is_empty(), "{node:?}");

    // The kubelet stops: no more renewals.
    let node = wait_for(
        "the node's Ready condition to turn Unknown",
        WAIT,
        || async {
            let node = cluster.node().await;
            let ready = node
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status == "Unknown").then_some(node)
        },
    )
    .await;
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .unwrap();
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    // The last heartbeat stays the kubelet's; the transition is the controller's.
    assert_eq!(
        ready.last_heartbeat_time.as_ref().map(|t| t.0.timestamp()),
        Some(heartbeat.0.timestamp())
    );
    assert!(ready.last_transition_time.as_ref().unwrap().0 > heartbeat.0);

    let taints = wait_for("the unreachable taints", WAIT, || async {
        let taints = unreachable_taints(&cluster.node().await);
        (taints.len() == 2).then_some(taints)
    })
    .await;
    let mut effects: Vec<&str> = taints.iter().map(|t| t.effect.as_str()).collect();
    effects.sort();
    assert_eq!(effects, ["NoExecute", "NoSchedule"]);
    assert!(taints
        .iter()
        .all(|t| t.time_added.is_some() && t.value.is_none()));
    let tainted_at = taints
        .iter()
        .find(|t| t.effect == "NoExecute")
        .and_then(|t| t.time_added.clone())
        .unwrap();
    cluster
        .wait_event(
            NODE,
            "Normal",
            "NodeNotReady",
            &format!("Node {NODE} status is now: NodeNotReady"),
            "node-controller",
        )
        .await;

    // Every pod on the node is marked not ready (only the Ready condition).
    for name in ["short", "stays", "plain"] {
        let pod = wait_for(&format!("pod {name} to turn not ready"), WAIT, || async {
            let pod = cluster.pod(name).await;
            (condition(&pod, "Ready")?.status == "False").then_some(pod)
        })
        .await;
        assert_eq!(condition(&pod, "ContainersReady").unwrap().status, "True");
        cluster
            .wait_event(
                name,
                "Warning",
                "NodeNotReady",
                "Node is not ready",
                "node-controller",
            )
            .await;
    }

    // Once its toleration runs out, "short" is evicted: marked as a
    // disruption target and deleted with its grace period. With its node
    // unreachable nobody confirms that it stopped, so it stays Terminating.
    let short = wait_for("pod short to be evicted", WAIT, || async {
        let pod = cluster.pod("short").await;
        pod.metadata.deletion_timestamp.is_some().then_some(pod)
    })
    .await;
    let target = condition(&short, "DisruptionTarget").expect("a DisruptionTarget condition");
    assert_eq!(target.status, "True");
    assert_eq!(target.reason.as_deref(), Some("DeletionByTaintManager"));
    assert_eq!(
        target.message.as_deref(),
        Some("Taint manager: deleting due to NoExecute taint")
    );
    // Not before its tolerationSeconds had passed since the taint.
    assert!(
        target.last_transition_time.as_ref().unwrap().0.timestamp() >= tainted_at.0.timestamp() + 2
    );
    assert_eq!(short.metadata.deletion_grace_period_seconds, Some(30));
    cluster
        .wait_event(
            "short",
            "Normal",
            "TaintManagerEviction",
            "Marking for deletion Pod default/short",
            "taint-eviction-controller",
        )
        .await;

    // "stays" tolerates the taint for ever and "plain" for 300 s: a few more
    // passes leave them be.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for name in ["stays", "plain"] {
        let pod = cluster.pod(name).await;
        assert!(pod.metadata.deletion_timestamp.is_none(), "{pod:?}");
        assert!(condition(&pod, "DisruptionTarget").is_none());
    }

    // The ReplicaSet's pod goes the same way, and the ReplicaSet replaces
    // it: a new pod, scheduled onto the other node (the lost one is tainted
    // NoSchedule), running there.
    let replacement = wait_for("the replacement pod Ready on vn-0", WAIT, || async {
        let pods = cluster.web_pods().await;
        let old = pods.iter().find(|p| p.name_any() == first)?;
        old.metadata.deletion_timestamp.as_ref()?;
        // A replacement that was itself evicted (a load spike can lapse vn-0's Lease too) is
        // replaced again: look at the live one.
        let new = pods
            .iter()
            .find(|p| p.name_any() != first && p.metadata.deletion_timestamp.is_none())?;
        (condition(new, "Ready")?.status == "True").then(|| new.clone())
    })
    .await;
    assert_eq!(
        replacement
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref()),
        Some("vn-0")
    );
    let evicted = cluster.pod(&first).await;
    assert_eq!(
        condition(&evicted, "DisruptionTarget").and_then(|c| c.reason.as_deref()),
        Some("DeletionByTaintManager")
    );
    assert_eq!(cluster.web_pods().await.len(), 2, "one replacement only");

    // The kubelet comes back: the unreachable taints go.
    cluster.renew_lease().await;
    wait_for("the unreachable taints to be removed", WAIT, || async {
        cluster.renew_lease().await;
        unreachable_taints(&cluster.node().await)
            .is_empty()
            .then_some(())
    })
    .await;
    for name in ["stays", "plain"] {
        let pod = cluster.pod(name).await;
        assert!(pod.metadata.deletion_timestamp.is_none(), "{pod:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noexecute_taint_on_a_live_node_evicts_the_pods_that_do_not_tolerate_it() {
    let cluster = Cluster::start().await;
    cluster.register_node(Time(Utc::now())).await;
    // The kubelet keeps renewing: this node stays reachable throughout.
    let leases = cluster.leases();
    let kubelet = tokio::spawn(async move {
        loop {
            let patch = serde_json::json!({"spec": {"renewTime": MicroTime(Utc::now())}});
            let _ = leases
                .patch(NODE, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    cluster
        .running_pod("intolerant", serde_json::Value::Null)
        .await;
    cluster
        .running_pod(
            "brief",
            serde_json::json!([{"key": "maintenance", "operator": "Exists",
                                "effect": "NoExecute", "tolerationSeconds": 1}]),
        )
        .await;
    cluster
        .running_pod(
            "patient",
            serde_json::json!([{"key": "maintenance", "operator": "Equal", "value": "true",
                                "effect": "NoExecute"}]),
        )
        .await;

    // As `kubectl taint node lost-node maintenance=true:NoExecute` does.
    let patch = serde_json::json!({"spec": {"taints": [
        {"key": "maintenance", "value": "true", "effect": "NoExecute"}
    ]}});
    cluster
        .nodes()
        .patch(NODE, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("tainting the node");

    for name in ["intolerant", "brief"] {
        let pod = wait_for(&format!("pod {name} to be evicted"), WAIT, || async {
            let pod = cluster.pod(name).await;
            pod.metadata.deletion_timestamp.is_some().then_some(pod)
        })
        .await;
        assert_eq!(
            condition(&pod, "DisruptionTarget").map(|c| c.status.as_str()),
            Some("True")
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let patient = cluster.pod("patient").await;
    assert!(patient.metadata.deletion_timestamp.is_none(), "{patient:?}");
    // The node itself is fine: Ready as its kubelet said, never unreachable,
    // and its pods were not marked not ready.
    let node = cluster.node().await;
    assert!(unreachable_taints(&node).is_empty(), "{node:?}");
    assert_eq!(condition(&patient, "Ready").unwrap().status, "True");
    kubelet.abort();
}
