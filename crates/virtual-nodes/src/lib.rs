//! Simulated nodes (like kubernetes-sigs/kwok) for scale tests: leases and
//! plausible pod status, no containers.
//!
//! [`run`] registers `count` Nodes (Ready, with capacity, label
//! `type=virtual` and the taint `orca.dev/virtual-node=true:NoSchedule` so
//! that only pods that tolerate it land there), renews their Leases in
//! `kube-node-lease` spread over the renew interval, and watches all pods
//! with one watch. A pod bound to one of these nodes is reported Running and
//! Ready (pod IP from the node's `spec.podCIDR`, container statuses running
//! since now). A pod being deleted is removed with a grace-0 delete when its
//! grace period ends (`deletionTimestamp`), as a kubelet does for containers
//! that ignore SIGTERM, or at once with [`Termination::Immediate`].

mod ipam;
mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Namespace, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Pod, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use ipam::NodeIpam;

pub const VIRTUAL_TAINT_KEY: &str = "orca.dev/virtual-node";
pub const VIRTUAL_LABEL: (&str, &str) = ("type", "virtual");
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// `orca.dev/virtual-node=true:NoSchedule`.
pub fn virtual_taint() -> Taint {
    Taint {
        key: VIRTUAL_TAINT_KEY.to_string(),
        value: Some("true".to_string()),
        effect: "NoSchedule".to_string(),
        time_added: None,
    }
}

/// When a deleted pod's object goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// At its `deletionTimestamp`: the end of its grace period, as for a
    /// container that ignores SIGTERM. The realistic worst case.
    AfterGrace,
    /// As soon as the deletion is seen: containers that exit on SIGTERM.
    Immediate,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub count: usize,
    /// Nodes are `<name_prefix><index>`, index from 0.
    pub name_prefix: String,
    /// Node `i` gets the /24 starting at `pod_cidr_base + 256 * i`.
    pub pod_cidr_base: Ipv4Addr,
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    /// Labels added to `type=virtual` and the kubernetes.io/* ones.
    pub labels: BTreeMap<String, String>,
    /// The nodes' taints; by default [`virtual_taint`], so that only pods
    /// tolerating it land on virtual nodes. Empty makes them open to all.
    pub taints: Vec<Taint>,
    pub lease_duration_seconds: i32,
    pub lease_renew_interval: Duration,
    /// How often the Ready condition's heartbeat is refreshed (a kubelet's
    /// nodeStatusReportFrequency); liveness in between comes from the Lease.
    pub status_report_interval: Duration,
    /// API writes in flight at once (registration, leases, pod status).
    pub parallelism: usize,
    pub termination: Termination,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            count: 0,
            name_prefix: "virtual-node-".to_string(),
            pod_cidr_base: Ipv4Addr::new(10, 128, 0, 0),
            cpu: "32".to_string(),
            memory: "256Gi".to_string(),
            pods: "110".to_string(),
            labels: BTreeMap::new(),
            taints: vec![virtual_taint()],
            lease_duration_seconds: 40,
            lease_renew_interval: Duration::from_secs(10),
            // A kubelet's nodeStatusReportFrequency: liveness comes from the
            // Lease, so full status writes can be rare (5,000 nodes would
            // otherwise add a steady stream of large writes).
            status_report_interval: Duration::from_secs(300),
            parallelism: 32,
            termination: Termination::AfterGrace,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid virtual nodes configuration: {0}")]
    InvalidConfig(String),
    #[error("registering virtual node {node} failed: {source}")]
    Register {
        node: String,
        source: Box<kube::Error>,
    },
}

/// The API clients of the simulated nodes: either one client for the whole
/// fleet (as kwok runs, with cluster-wide rights), or one per node with
/// that node's own identity (`system:node:<name>`), whose pods are then
/// watched node by node as a kubelet does.
#[derive(Clone)]
pub struct Clients {
    fleet: Option<Client>,
    per_node: Arc<dyn Fn(&str) -> Client + Send + Sync>,
}

impl Clients {
    pub fn fleet(client: Client) -> Clients {
        let all = client.clone();
        Clients {
            fleet: Some(client),
            per_node: Arc::new(move |_| all.clone()),
        }
    }

    pub fn per_node(f: impl Fn(&str) -> Client + Send + Sync + 'static) -> Clients {
        Clients {
            fleet: None,
            per_node: Arc::new(f),
        }
    }

    fn node(&self, name: &str) -> Client {
        (self.per_node)(name)
    }
}

impl From<Client> for Clients {
    fn from(client: Client) -> Clients {
        Clients::fleet(client)
    }
}

/// Registers the nodes, then keeps them alive and runs their pods until the
/// future is dropped.
pub async fn run(clients: impl Into<Clients>, config: Config) -> Result<(), Error> {
    run_with_ready(clients, config, None).await
}

/// Runs the nodes in a task and returns it once every node is registered
/// (how tests add nodes); the task panics if the nodes stop with an error.
pub async fn spawn_registered(
    clients: impl Into<Clients>,
    config: Config,
) -> tokio::task::JoinHandle<()> {
    let clients = clients.into();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        if let Err(e) = run_with_ready(clients, config, Some(ready_tx)).await {
            panic!("virtual nodes stopped: {e}");
        }
    });
    ready_rx.await.expect("virtual nodes registered");
    task
}

/// Like [`run`], but sends on `ready` once every node is registered.
pub async fn run_with_ready(
    clients: impl Into<Clients>,
    config: Config,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), Error> {
    validate(&config)?;
    let sim = Arc::new(Simulator::new(clients.into(), config));
    sim.register_all().await?;
    if let Some(tx) = ready {
        let _ = tx.send(());
    }
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tokio::join!(
        sim.renew_leases(),
        sim.report_status(),
        sim.watch_pods(tx),
        sim.write_pod_statuses(rx),
    );
    Ok(())
}

fn validate(config: &Config) -> Result<(), Error> {
    if config.parallelism == 0 {
        return Err(Error::InvalidConfig(
            "parallelism must be at least 1".into(),
        ));
    }
    if config.lease_renew_interval.is_zero() || config.status_report_interval.is_zero() {
        return Err(Error::InvalidConfig("intervals must be positive".into()));
    }
    let base = u32::from(config.pod_cidr_base);
    if base & 0xff != 0 {
        return Err(Error::InvalidConfig(format!(
            "pod_cidr_base {} must be the start of a /24",
            config.pod_cidr_base
        )));
    }
    let needed = (config.count as u64) << 8;
    if u64::from(base) + needed > u64::from(u32::MAX) + 1 {
        return Err(Error::InvalidConfig(format!(
            "{} /24 pod ranges do not fit above {}",
            config.count, config.pod_cidr_base
        )));
    }
    for (what, q) in [
        ("cpu", &config.cpu),
        ("memory", &config.memory),
        ("pods", &config.pods),
    ] {
        if q.is_empty() || !q.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(Error::InvalidConfig(format!(
                "{what} capacity {q:?} is not a quantity"
            )));
        }
    }
    Ok(())
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

struct NodeState {
    uid: String,
    ipam: NodeIpam,
    lease_version: Option<String>,
}

#[derive(Default)]
struct PodWork {
    /// Latest version of each pod waiting for a status write, by UID.
    pending: HashMap<String, Pod>,
    /// Pods whose deletion is scheduled.
    deleting: HashSet<String>,
    /// Node and IP given to each pod, by UID.
    assigned: HashMap<String, (String, Ipv4Addr)>,
}

struct Simulator {
    clients: Clients,
    config: Config,
    names: Vec<String>,
    nodes: Mutex<HashMap<String, NodeState>>,
    work: Mutex<PodWork>,
    writes: tokio::sync::Semaphore,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain bookkeeping: if a holder panicked, keep going with what is there.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Simulator {
    fn new(clients: Clients, config: Config) -> Simulator {
        let names = (0..config.count)
            .map(|i| format!("{}{}", config.name_prefix, i))
            .collect();
        Simulator {
            clients,
            writes: tokio::sync::Semaphore::new(config.parallelism),
            config,
            names,
            nodes: Mutex::new(HashMap::new()),
            work: Mutex::new(PodWork::default()),
        }
    }

    fn cidr_of(&self, index: usize) -> (Ipv4Addr, u8) {
        let base = u32::from(self.config.pod_cidr_base) + ((index as u32) << 8);
        (Ipv4Addr::from(base), 24)
    }

    fn node_object(&self, index: usize) -> Node {
        let name = &self.names[index];
        let (net, prefix) = self.cidr_of(index);
        let cidr = format!("{net}/{prefix}");
        let node_ip = Ipv4Addr::from(u32::from(net) + 1);
        let mut labels = self.config.labels.clone();
        labels.extend([
            (VIRTUAL_LABEL.0.to_string(), VIRTUAL_LABEL.1.to_string()),
            ("kubernetes.io/hostname".to_string(), name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ]);
        let capacity = BTreeMap::from([
            ("cpu".to_string(), Quantity(self.config.cpu.clone())),
            ("memory".to_string(), Quantity(self.config.memory.clone())),
            ("pods".to_string(), Quantity(self.config.pods.clone())),
            ("ephemeral-storage".to_string(), Quantity("1Ti".into())),
        ]);
        Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(
                    "node.alpha.kubernetes.io/ttl".to_string(),
                    "0".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: Some(cidr.clone()),
                pod_cidrs: Some(vec![cidr]),
                taints: Some(self.config.taints.clone()).filter(|t| !t.is_empty()),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                capacity: Some(capacity.clone()),
                allocatable: Some(capacity),
                conditions: Some(node_conditions(None)),
                addresses: Some(vec![
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: node_ip.to_string(),
                    },
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.clone(),
                    },
                ]),
                daemon_endpoints: Some(NodeDaemonEndpoints {
                    kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint { port: 0 }),
                }),
                node_info: Some(NodeSystemInfo {
                    architecture: "amd64".into(),
                    operating_system: "linux".into(),
                    os_image: "Orca virtual node".into(),
                    kernel_version: "virtual".into(),
                    container_runtime_version: "virtual://0".into(),
                    kubelet_version: "v1.32.0-orca".into(),
                    kube_proxy_version: String::new(),
                    boot_id: String::new(),
                    machine_id: String::new(),
                    system_uuid: String::new(),
                }),
                ..Default::default()
            }),
        }
    }

    async fn ensure_namespace(&self, name: &str) -> Result<(), kube::Error> {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        // A node identity may not create namespaces; the control plane
        // makes this one at start.
        let Some(fleet) = &self.clients.fleet else {
            return Ok(());
        };
        match Api::<Namespace>::all(fleet.clone())
            .create(&PostParams::default(), &ns)
            .await
        {
            Err(e) if !is_status(&e, 409) => Err(e),
            _ => Ok(()),
        }
    }

    async fn register_all(self: &Arc<Self>) -> Result<(), Error> {
        self.ensure_namespace(NODE_LEASE_NAMESPACE)
            .await
            .map_err(|source| Error::Register {
                node: format!("(namespace {NODE_LEASE_NAMESPACE})"),
                source: Box::new(source),
            })?;
        let results: Vec<Result<(), Error>> = futures::stream::iter(0..self.names.len())
            .map(|i| self.register(i))
            .buffer_unordered(self.config.parallelism)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, Error>>()?;
        tracing::info!(count = self.names.len(), "virtual nodes registered");
        Ok(())
    }

    /// Creates the Node (or marks an existing one Ready again) and its Lease.
    async fn register(&self, index: usize) -> Result<(), Error> {
        let name = self.names[index].clone();
        let err = |source| Error::Register {
            node: name.clone(),
            source: Box::new(source),
        };
        let api: Api<Node> = Api::all(self.clients.node(&name));
        let desired = self.node_object(index);
        let mut attempt = 0;
        let node = loop {
            attempt += 1;
            let result = match api.create(&PostParams::default(), &desired).await {
                Err(e) if is_status(&e, 409) => self.refresh_existing(&api, &desired).await,
                other => other,
            };
            match result {
                Ok(n) => break n,
                // The API server may still be starting: retry a few times.
                Err(kube::Error::Api(s)) if s.code != 429 && s.code < 500 => {
                    return Err(err(kube::Error::Api(s)));
                }
                Err(e) if attempt >= 10 => return Err(err(e)),
                Err(_) => tokio::time::sleep(Duration::from_millis(200 * attempt)).await,
            }
        };
        let uid = node.metadata.uid.clone().unwrap_or_default();
        // The node's own podCIDR is authoritative (an IPAM controller may
        // have set it on an existing node).
        let cidr = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .unwrap_or_else(|| {
                let (net, p) = self.cidr_of(index);
                format!("{net}/{p}")
            });
        let ipam = NodeIpam::parse(&cidr).unwrap_or_else(|| {
            let (net, p) = self.cidr_of(index);
            NodeIpam::new(net, p)
        });
        lock(&self.nodes).insert(
            name.clone(),
            NodeState {
                uid,
                ipam,
                lease_version: None,
            },
        );
        self.renew_lease(&name).await.map_err(err)?;
        Ok(())
    }

    async fn refresh_existing(&self, api: &Api<Node>, desired: &Node) -> Result<Node, kube::Error> {
        let name = desired.metadata.name.as_deref().unwrap_or_default();
        let mut current = api.get(name).await?;
        current.status = desired.status.clone();
        let data = serde_json::to_vec(&current).map_err(kube::Error::SerdeError)?;
        api.replace_status(name, &PostParams::default(), data).await
    }

    fn lease_object(&self, name: &str, uid: &str, version: Option<String>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(NODE_LEASE_NAMESPACE.to_string()),
                resource_version: version,
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.to_string(),
                    uid: uid.to_string(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.to_string()),
                lease_duration_seconds: Some(self.config.lease_duration_seconds),
                renew_time: Some(MicroTime(chrono::Utc::now())),
                ..Default::default()
            }),
        }
    }

    /// One renewal: an update against the version we last wrote (one
    /// request in the common case), a create if the Lease is missing, a
    /// fresh read if someone else wrote it.
    async fn renew_lease(&self, name: &str) -> Result<(), kube::Error> {
        let api: Api<Lease> = Api::namespaced(self.clients.node(name), NODE_LEASE_NAMESPACE);
        let (uid, version) = {
            let nodes = lock(&self.nodes);
            let Some(n) = nodes.get(name) else {
                return Ok(());
            };
            (n.uid.clone(), n.lease_version.clone())
        };
        let _permit = self.writes.acquire().await;
        let written = match version {
            Some(v) => {
                let lease = self.lease_object(name, &uid, Some(v));
                match api.replace(name, &PostParams::default(), &lease).await {
                    Err(e) if is_status(&e, 409) => {
                        let current = api.get(name).await?;
                        let lease =
                            self.lease_object(name, &uid, current.metadata.resource_version);
                        api.replace(name, &PostParams::default(), &lease).await
                    }
                    Err(e) if is_status(&e, 404) => {
                        api.create(&PostParams::default(), &self.lease_object(name, &uid, None))
                            .await
                    }
                    other => other,
                }
            }
            None => match api
                .create(&PostParams::default(), &self.lease_object(name, &uid, None))
                .await
            {
                Err(e) if is_status(&e, 409) => {
                    let current = api.get(name).await?;
                    let lease = self.lease_object(name, &uid, current.metadata.resource_version);
                    api.replace(name, &PostParams::default(), &lease).await
                }
                other => other,
            },
        }?;
        if let Some(n) = lock(&self.nodes).get_mut(name) {
            n.lease_version = written.metadata.resource_version;
        }
        Ok(())
    }

    /// Renews every Lease once per interval, each node at its own offset
    /// so the writes are spread evenly instead of arriving in bursts.
    async fn renew_leases(&self) {
        let interval = self.config.lease_renew_interval;
        let count = self.names.len().max(1) as u32;
        loop {
            let round = tokio::time::Instant::now();
            futures::stream::iter(self.names.iter().enumerate())
                .for_each_concurrent(self.config.parallelism, |(i, name)| async move {
                    tokio::time::sleep_until(round + interval * (i as u32) / count).await;
                    if let Err(e) = self.renew_lease(name).await {
                        tracing::warn!(node = %name, "renewing the node Lease failed (next round retries): {e}");
                    }
                })
                .await;
            tokio::time::sleep_until(round + interval).await;
        }
    }

    /// Refreshes the Ready heartbeat of every node once per report interval.
    async fn report_status(&self) {
        let interval = self.config.status_report_interval;
        let count = self.names.len().max(1) as u32;
        loop {
            let round = tokio::time::Instant::now();
            tokio::time::sleep_until(round + interval).await;
            let round = tokio::time::Instant::now();
            futures::stream::iter(self.names.iter())
                .enumerate()
                .for_each_concurrent(self.config.parallelism, |(i, name)| {
                    let api: Api<Node> = Api::all(self.clients.node(name));
                    async move {
                        tokio::time::sleep_until(round + interval * (i as u32) / count / 2).await;
                        let _permit = self.writes.acquire().await;
                        if let Err(e) = self.heartbeat(&api, name).await {
                            tracing::warn!(node = %name, "refreshing node status failed (next round retries): {e}");
                        }
                    }
                })
                .await;
        }
    }

    async fn heartbeat(&self, api: &Api<Node>, name: &str) -> Result<(), kube::Error> {
        let mut node = api.get_status(name).await?;
        let previous = node.status.as_ref().and_then(|s| s.conditions.as_ref());
        let conditions = node_conditions(previous);
        node.status.get_or_insert_with(Default::default).conditions = Some(conditions);
        let data = serde_json::to_vec(&node).map_err(kube::Error::SerdeError)?;
        api.replace_status(name, &PostParams::default(), data)
            .await?;
        Ok(())
    }

    fn is_ours(&self, node: &str) -> bool {
        node.starts_with(&self.config.name_prefix) && lock(&self.nodes).contains_key(node)
    }

    async fn watch_pods(&self, tx: UnboundedSender<String>) {
        match &self.clients.fleet {
            Some(fleet) => {
                let api: Api<Pod> = Api::all(fleet.clone());
                self.watch_pod_stream(api, watcher::Config::default(), None, &tx)
                    .await
            }
            None => {
                // A node may watch only its own pods.
                futures::future::join_all(self.names.iter().map(|name| {
                    let api: Api<Pod> = Api::all(self.clients.node(name));
                    let config =
                        watcher::Config::default().fields(&format!("spec.nodeName={name}"));
                    self.watch_pod_stream(api, config, Some(name.as_str()), &tx)
                }))
                .await;
            }
        }
    }

    /// Follows one pod watch: of all pods, or of `node`'s.
    async fn watch_pod_stream(
        &self,
        api: Api<Pod>,
        config: watcher::Config,
        node: Option<&str>,
        tx: &UnboundedSender<String>,
    ) {
        let stream = watcher::watcher(api, config).default_backoff();
        futures::pin_mut!(stream);
        // Buffering during a (re)list: pods are held until every existing
        // IP is known, so no IP is handed out twice.
        let mut listing: Option<Vec<Pod>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => listing = Some(Vec::new()),
                Ok(Event::InitApply(pod)) => match listing.as_mut() {
                    Some(buf) => buf.push(pod),
                    None => self.pod_changed(pod, tx),
                },
                Ok(Event::InitDone) => {
                    let listed = listing.take().unwrap_or_default();
                    self.relisted(&listed, node);
                    for pod in listed {
                        self.pod_changed(pod, tx);
                    }
                }
                Ok(Event::Apply(pod)) => self.pod_changed(pod, tx),
                Ok(Event::Delete(pod)) => self.pod_gone(&pod),
                Err(e) => tracing::warn!("watching pods failed (retrying with backoff): {e}"),
            }
        }
    }

    /// After a (re)list (of all pods, or of `node`'s): record the IPs pods
    /// already hold, forget pods that are gone.
    fn relisted(&self, pods: &[Pod], node: Option<&str>) {
        let mut nodes = lock(&self.nodes);
        let mut work = lock(&self.work);
        let present: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        let gone: Vec<String> = work
            .assigned
            .iter()
            .filter(|(u, (on, _))| {
                !present.contains(u.as_str()) && node.is_none_or(|n| n == on.as_str())
            })
            .map(|(u, _)| u.clone())
            .collect();
        for uid in gone {
            if let Some((node, ip)) = work.assigned.remove(&uid) {
                if let Some(n) = nodes.get_mut(&node) {
                    n.ipam.release(ip);
                }
            }
        }
        for pod in pods {
            let (Some(uid), Some(node), Some(ip)) = (
                pod.metadata.uid.as_deref(),
                pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
                pod.status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|ip| ip.parse::<Ipv4Addr>().ok()),
            ) else {
                continue;
            };
            let host_network = pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false);
            if let (Some(n), false) = (nodes.get_mut(node), host_network) {
                if n.ipam.claim(ip) {
                    work.assigned
                        .insert(uid.to_string(), (node.to_string(), ip));
                }
            }
        }
    }

    fn pod_changed(&self, pod: Pod, tx: &UnboundedSender<String>) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        if !self.is_ours(&node) {
            return;
        }
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(deleted_at) = pod.metadata.deletion_timestamp.clone() {
            self.schedule_delete(pod, deleted_at);
            return;
        }
        if !status::needs_status(&pod) {
            return;
        }
        let mut work = lock(&self.work);
        let queued = work.pending.insert(uid.clone(), pod).is_some();
        if !queued {
            let _ = tx.unbounded_send(uid);
        }
    }

    fn pod_gone(&self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return;
        };
        let mut work = lock(&self.work);
        work.pending.remove(uid);
        work.deleting.remove(uid);
        if let Some((node, ip)) = work.assigned.remove(uid) {
            drop(work);
            if let Some(n) = lock(&self.nodes).get_mut(&node) {
                n.ipam.release(ip);
            }
        }
    }

    fn schedule_delete(&self, pod: Pod, deleted_at: Time) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if !lock(&self.work).deleting.insert(uid.clone()) {
            return;
        }
        let delay = match self.config.termination {
            Termination::Immediate => Duration::ZERO,
            Termination::AfterGrace => (deleted_at.0 - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO),
        };
        let api: Api<Pod> = Api::namespaced(
            self.clients.node(
                pod.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .unwrap_or_default(),
            ),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        // The delete outlives this call; its task is bounded by the pod's
        // grace period and ends when the pod is gone.
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => {
                    tracing::warn!(pod = %name, "deleting a terminated pod on a virtual node failed: {e}")
                }
            }
        });
    }

    async fn write_pod_statuses(&self, rx: UnboundedReceiver<String>) {
        rx.for_each_concurrent(self.config.parallelism, |uid| async move {
            let Some(pod) = lock(&self.work).pending.remove(&uid) else {
                return;
            };
            let _permit = self.writes.acquire().await;
            if let Err(e) = self.write_status(pod).await {
                tracing::warn!(uid = %uid, "writing pod status for a virtual node failed: {e}");
            }
        })
        .await;
    }

    async fn write_status(&self, mut pod: Pod) -> Result<(), kube::Error> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let (host_ip, pod_ip) = {
            let mut nodes = lock(&self.nodes);
            let Some(n) = nodes.get_mut(&node) else {
                return Ok(());
            };
            let host_ip = n.ipam.gateway();
            let pod_ip = if host_network {
                Some(host_ip)
            } else {
                let mut work = lock(&self.work);
                match work.assigned.get(&uid) {
                    Some((_, ip)) => Some(*ip),
                    None => {
                        let ip = n.ipam.allocate();
                        if let Some(ip) = ip {
                            work.assigned.insert(uid.clone(), (node.clone(), ip));
                        }
                        ip
                    }
                }
            };
            (host_ip, pod_ip)
        };
        let Some(pod_ip) = pod_ip else {
            tracing::warn!(node = %node, pod = ?pod.metadata.name, "no free pod IP left on the virtual node");
            return Ok(());
        };
        status::set_running(&mut pod, host_ip, pod_ip, chrono::Utc::now());
        let api: Api<Pod> = Api::namespaced(
            self.clients.node(&node),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let data = serde_json::to_vec(&pod).map_err(kube::Error::SerdeError)?;
        match api
            .replace_status(&name, &PostParams::default(), data)
            .await
        {
            // Changed meanwhile, or deleted: the watch brings the news and,
            // if the pod still needs it, another write.
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// A kubelet's node conditions, all healthy; heartbeat now, transition
/// times kept from `previous` when the status did not change.
fn node_conditions(previous: Option<&Vec<NodeCondition>>) -> Vec<NodeCondition> {
    let now = Time(chrono::Utc::now());
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        let transition = previous
            .and_then(|p| p.iter().find(|c| c.type_ == type_ && c.status == status))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(transition),
        }
    };
    vec![
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        cond(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        cond(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
}
