//! A whole node on a temp dir: the API server on SQLite, the image store
//! pulling from the test registry, the Linux runtime on its own bridge and
//! CIDR, and the agent. Pods are created with `spec.nodeName` preset.
#![allow(dead_code)] // each test uses its own subset

pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use orca_runtime::{LinuxRuntime, Runtime, RuntimeConfig};

pub fn registry() -> String {
    std::env::var("ORCA_TEST_REGISTRY").expect(
        "ORCA_TEST_REGISTRY is not set: start a registry and push the test images (scripts/test.sh does both)",
    )
}

pub fn busybox() -> String {
    format!("{}/busybox:latest", registry())
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub api: Option<orca_apiserver::ApiServer>,
    pub client: kube::Client,
    pub runtime: Arc<LinuxRuntime>,
    pub agent: Option<tokio::task::JoinHandle<()>>,
    pub node: String,
    pub bridge: String,
    pub cidr: String,
    /// The agent's `token_max_age`.
    pub token_max_age: Duration,
    /// Publishes kube-root-ca.crt, which every pod's token volume shows.
    root_ca: tokio::task::JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.root_ca.abort();
    }
}

fn new_runtime(dir: &Path, bridge: &str, cidr: &str) -> LinuxRuntime {
    let images = orca_image::ImageStore::open(dir.join("agent/images"), Default::default())
        .expect("open the image store");
    let mut config = RuntimeConfig::new(dir.join("agent"), Arc::new(images));
    config.pod_cidr = cidr.to_string();
    config.bridge = bridge.to_string();
    LinuxRuntime::new(config).expect("start the runtime")
}

impl Env {
    /// `n` (1..=250) picks the bridge `orcag<n>` and CIDR 10.249.<n>.0/24 so
    /// tests in parallel do not share a network.
    pub async fn new(n: u8) -> Env {
        Env::with_token_max_age(n, Duration::from_secs(24 * 3600)).await
    }

    /// A node whose agent fetches service account tokens again once they
    /// are `token_max_age` old.
    pub async fn with_token_max_age(n: u8, token_max_age: Duration) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("orca-agent-")
            .tempdir()
            .unwrap();
        let api = orca_testkit::api_server(dir.path()).await;
        let client = orca_testkit::admin_client(&api).await;
        let bridge = format!("orcag{n}");
        let cidr = format!("10.249.{n}.0/24");
        let runtime = Arc::new(new_runtime(dir.path(), &bridge, &cidr));
        let ca = std::fs::read_to_string(dir.path().join("tls/ca.crt")).unwrap();
        let root_ca = tokio::spawn({
            let client = client.clone();
            async move {
                let _ = orca_controllers::rootca::run(client.clone(), client, ca).await;
            }
        });
        let mut env = Env {
            dir,
            api: Some(api),
            client,
            runtime,
            agent: None,
            node: format!("node-{n}"),
            bridge,
            cidr,
            token_max_age,
            root_ca,
        };
        env.start_agent();
        env.wait_node_ready().await;
        env
    }

    pub fn agent_config(&self) -> orca_agent::Config {
        orca_agent::Config {
            node_name: self.node.clone(),
            data_dir: self.dir.path().to_path_buf(),
            pod_cidr: Some(self.cidr.clone()),
            streaming_port: 0,
            streaming_bind: "127.0.0.1".into(),
            cluster_ca_pem: std::fs::read(self.dir.path().join("tls/ca.crt")).unwrap(),
            node_ip: "127.0.0.1".parse().unwrap(),
            token_max_age: self.token_max_age,
            ..Default::default()
        }
    }

    /// Starts the agent as `orca server` does: with the node's own identity
    /// (`system:node:<name>`), which the Node authorizer and NodeRestriction
    /// keep to this node.
    pub fn start_agent(&mut self) {
        let client = self
            .api
            .as_ref()
            .expect("the API server runs")
            .local_client(orca_apiserver::auth::UserInfo::node(&self.node));
        let runtime: Arc<dyn Runtime> = self.runtime.clone();
        let config = self.agent_config();
        self.agent = Some(tokio::spawn(async move {
            if let Err(e) = orca_agent::run(client, runtime, config).await {
                panic!("agent failed: {e}");
            }
        }));
    }

    /// Stops the agent task, as a crash would.
    pub async fn stop_agent(&mut self) {
        if let Some(a) = self.agent.take() {
            a.abort();
            let _ = a.await;
        }
    }

    /// Stops the agent and starts it again on a runtime reopened over the
    /// same state, as a restarted process would.
    pub async fn restart_agent(&mut self) {
        self.stop_agent().await;
        self.runtime = Arc::new(new_runtime(self.dir.path(), &self.bridge, &self.cidr));
        self.start_agent();
    }

    pub async fn wait_node_ready(&self) {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let t0 = Instant::now();
        loop {
            if let Ok(Some(n)) = nodes.get_opt(&self.node).await {
                let port = n
                    .status
                    .as_ref()
                    .and_then(|s| s.daemon_endpoints.as_ref())
                    .and_then(|d| d.kubelet_endpoint.as_ref())
                    .map(|k| k.port)
                    .unwrap_or(0);
                if port != 0 {
                    return;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "node never registered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates a pod bound to this node from a YAML spec (metadata.name set there).
    pub async fn create(&self, yaml: &str) -> Pod {
        let mut pod: Pod = serde_yaml::from_str(yaml).expect("test pod YAML");
        pod.spec.as_mut().unwrap().node_name = Some(self.node.clone());
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    /// Polls the pod until `pred` holds; panics with the last state after `timeout`.
    pub async fn wait(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Pod) -> bool,
    ) -> Pod {
        let t0 = Instant::now();
        let mut last = None;
        loop {
            if let Ok(Some(p)) = self.pods().get_opt(name).await {
                if pred(&p) {
                    return p;
                }
                last = Some(p);
            }
            if t0.elapsed() > timeout {
                panic!(
                    "pod {name}: {what} not reached within {timeout:?}; last status: {}",
                    serde_json::to_string_pretty(&last.and_then(|p| p.status)).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the pod until its phase is `want`.
    pub async fn wait_phase(&self, name: &str, timeout: Duration, want: &str) -> Pod {
        self.wait(name, timeout, want, |p| phase(p) == want).await
    }

    pub async fn wait_gone(&self, name: &str, timeout: Duration) {
        let t0 = Instant::now();
        while self.pods().get_opt(name).await.unwrap().is_some() {
            assert!(
                t0.elapsed() < timeout,
                "pod {name} still exists after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Events about a pod, oldest first, as "Reason: message".
    pub async fn events(&self, name: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let mut list = events.list(&ListParams::default()).await.unwrap().items;
        list.retain(|e| e.involved_object.name.as_deref() == Some(name));
        list.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
        list.iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    /// Events about a pod once one starts with each of `prefixes` (the
    /// agent posts events asynchronously, after the status that caused
    /// them); the list as it is after 30 s otherwise, for the caller's asserts.
    pub async fn events_with(&self, name: &str, prefixes: &[&str]) -> Vec<String> {
        let t0 = Instant::now();
        loop {
            let events = self.events(name).await;
            let all = prefixes
                .iter()
                .all(|p| events.iter().any(|e| e.starts_with(p)));
            if all || t0.elapsed() > Duration::from_secs(30) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.crt")
    }

    /// Deletes every pod, waits until the runtime has nothing left, stops
    /// the agent and the API server, and removes the bridge.
    pub async fn teardown(mut self) {
        let pods = self.pods();
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items {
                let name = p.metadata.name.clone().unwrap();
                let _ = pods
                    .delete(&name, &DeleteParams::default().grace_period(1))
                    .await;
            }
        }
        let root = self.dir.path().display().to_string();
        let mounts = || -> Vec<String> {
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .filter(|l| l.contains(&root))
                .map(String::from)
                .collect()
        };
        let t0 = Instant::now();
        loop {
            let left = self
                .runtime
                .list_sandboxes()
                .await
                .map(|s| s.len())
                .unwrap_or(0);
            // The worker unmounts the pod's volumes just after the runtime
            // has removed its sandbox: wait for both.
            if (left == 0 && mounts().is_empty()) || t0.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(a) = self.agent.take() {
            a.abort();
            let _ = a.await;
        }
        // The agent removed everything of the deleted pods.
        let containers = self.runtime.list_containers(None).await.unwrap_or_default();
        let sandboxes = self.runtime.list_sandboxes().await.unwrap_or_default();
        let mounts = mounts();
        let leaks = format!(
            "left behind: {} containers, {} sandboxes, mounts {mounts:?}",
            containers.len(),
            sandboxes.len()
        );
        // Whatever the agent could not stop, stop here.
        for s in self.runtime.list_sandboxes().await.unwrap_or_default() {
            let _ = self.runtime.stop_sandbox(&s.pod_uid).await;
            let _ = self.runtime.remove_sandbox(&s.pod_uid).await;
        }
        if let Some(api) = self.api.take() {
            api.shutdown().await;
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        assert!(
            containers.is_empty() && sandboxes.is_empty() && mounts.is_empty(),
            "{leaks}"
        );
    }
}

pub fn status(p: &Pod) -> &k8s_openapi::api::core::v1::PodStatus {
    p.status.as_ref().expect("pod has a status")
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn container<'a>(
    p: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    let s = p.status.as_ref()?;
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
}

pub fn waiting_reason(p: &Pod, name: &str) -> Option<String> {
    container(p, name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

pub fn condition(p: &Pod, type_: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

pub fn is_running(p: &Pod, name: &str) -> bool {
    container(p, name)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}
