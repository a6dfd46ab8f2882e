//! A control plane for scheduler tests: the in-process API server on a temp
//! dir with the SQLite store, schedulers and pools of virtual nodes, all
//! talking through the Kubernetes API. Tasks stop when the test drops them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, Taint};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use orca_apiserver::ApiServer;
pub use orca_testkit::wait_for;
use tokio::task::JoinHandle;

/// Generous: the suite runs tests in parallel on a 2-core machine.
pub const WAIT: Duration = Duration::from_secs(90);

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub server: Option<ApiServer>,
    pub client: Client,
    tasks: Vec<JoinHandle<()>>,
}

/// Aborts a background task (scheduler, node pool) when dropped.
pub struct Task(JoinHandle<()>);

impl Task {
    pub fn stop(self) {}
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = orca_testkit::api_server(dir.path()).await;
        let client = orca_testkit::admin_client(&server).await;
        Cluster {
            dir,
            server: Some(server),
            client,
            tasks: Vec::new(),
        }
    }

    /// A scheduler without leader election, stopped with the cluster.
    pub fn start_scheduler(&mut self) {
        let client = self.client.clone();
        self.tasks.push(tokio::spawn(async move {
            let config = orca_scheduler::Config {
                leader_elect: false,
                ..Default::default()
            };
            orca_scheduler::run(client, config)
                .await
                .expect("scheduler config is valid");
        }));
    }

    /// A scheduler with its own config, stopped when the returned task drops.
    pub fn scheduler(&self, config: orca_scheduler::Config) -> Task {
        let client = self.client.clone();
        Task(tokio::spawn(async move {
            orca_scheduler::run(client, config)
                .await
                .expect("scheduler config is valid");
        }))
    }

    /// Registers a pool of virtual nodes and waits until they are registered.
    pub async fn add_pool(&mut self, pool: Pool) {
        let config = orca_virtual_nodes::Config {
            count: pool.count,
            name_prefix: pool.prefix.to_string(),
            pod_cidr_base: pool.cidr_base,
            cpu: pool.cpu.to_string(),
            memory: pool.memory.to_string(),
            pods: pool.pods.to_string(),
            labels: pool.labels,
            taints: pool.taints,
            termination: orca_virtual_nodes::Termination::AfterGrace,
            ..Default::default()
        };
        self.tasks
            .push(orca_virtual_nodes::spawn_registered(self.client.clone(), config).await);
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn create_pod(&self, pod: serde_json::Value) -> Pod {
        let pod: Pod = serde_json::from_value(pod).expect("pod manifest");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    pub async fn pod(&self, name: &str) -> Pod {
        self.pods().get(name).await.expect("get pod")
    }

    /// Waits until the pod is bound and returns its node.
    pub async fn wait_bound(&self, name: &str) -> String {
        let pods = self.pods();
        wait_for(&format!("pod {name} to be bound"), WAIT, || async {
            pods.get(name)
                .await
                .ok()
                .and_then(|p| p.spec.and_then(|s| s.node_name))
        })
        .await
    }

    /// Waits until the pod carries PodScheduled=False and returns its message.
    pub async fn wait_unschedulable(&self, name: &str) -> String {
        let pods = self.pods();
        wait_for(
            &format!("pod {name} to be marked unschedulable"),
            WAIT,
            || async {
                let p = pods.get(name).await.ok()?;
                let c = p
                    .status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
                assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
                c.message
            },
        )
        .await
    }

    /// Events about a pod, oldest first.
    pub async fn events_for(&self, pod: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let mut events: Vec<Event> = api
            .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(pod))
            .collect();
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events
    }

    pub async fn wait_event(&self, pod: &str, reason: &str) -> Event {
        wait_for(&format!("a {reason} event for pod {pod}"), WAIT, || async {
            self.events_for(pod)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        })
        .await
    }
}

/// A group of identical virtual nodes.
pub struct Pool {
    pub prefix: &'static str,
    pub count: usize,
    pub cpu: &'static str,
    pub memory: &'static str,
    pub pods: &'static str,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub cidr_base: std::net::Ipv4Addr,
}

impl Pool {
    /// Untainted nodes, 10.(100+n).0.0 onwards for pod IPs.
    pub fn new(prefix: &'static str, count: usize, cpu: &'static str, n: u8) -> Pool {
        Pool {
            prefix,
            count,
            cpu,
            memory: "8Gi",
            pods: "110",
            labels: BTreeMap::new(),
            taints: vec![],
            cidr_base: std::net::Ipv4Addr::new(10, 100 + n, 0, 0),
        }
    }

    pub fn label(mut self, k: &str, v: &str) -> Pool {
        self.labels.insert(k.into(), v.into());
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Pool {
        self.taints.push(Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        });
        self
    }

    pub fn pods(mut self, pods: &'static str) -> Pool {
        self.pods = pods;
        self
    }
}

/// A pod manifest: one busybox container requesting `cpu` (if any).
pub fn pod(name: &str, cpu: Option<&str>) -> serde_json::Value {
    let mut container = serde_json::json!({"name": "main", "image": "busybox"});
    if let Some(cpu) = cpu {
        container["resources"] = serde_json::json!({"requests": {"cpu": cpu}});
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [container]},
    })
}
