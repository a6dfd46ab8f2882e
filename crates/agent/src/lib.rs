//! The node agent (kubelet): registers its Node, keeps its Lease, runs the
//! pods bound to it through orca-runtime, reports their status and events
//! through the Kubernetes API, and serves logs, exec and attach. On every
//! node it also runs the service proxy and the cluster DNS server when
//! configured to ([`Config::proxy`], [`Config::serve_dns`]).
//!
//! Embedding: call [`register_node`] first when the runtime needs the
//! node's pod CIDR to be built, then [`run`] or [`run_until`].

mod backoff;
mod events;
mod grpc_probe;
mod logs;
mod network;
mod node;
mod probe;
mod readiness;
mod resolve;
mod resources;
mod servicelinks;
mod stats;
mod status;
mod streaming;
mod sysctls;
mod tls;
mod volumes;
mod worker;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::Api;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use orca_runtime::Runtime;
use tokio::sync::watch;

pub use node::kubelet_version;
pub use orca_proxy::{Ipv4Cidr, ProxyConfig};

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Node's name.
    pub node_name: String,
    /// DATA_DIR; the agent keeps its state under DATA_DIR/agent.
    pub data_dir: PathBuf,
    /// How long to wait for the control plane to assign `spec.podCIDR`.
    pub pod_cidr_wait: Duration,
    /// Use this pod CIDR instead of waiting for one (tests, static setups).
    pub pod_cidr: Option<String>,
    /// HTTPS port of the streaming server (logs, exec, attach); 0 picks a
    /// free one. Kubernetes' default is 10250.
    pub streaming_port: u16,
    /// Address the streaming server binds.
    pub streaming_bind: String,
    /// PEM of the CA that signs the API server's kubelet-client certificate;
    /// the streaming server accepts only clients it signed.
    pub cluster_ca_pem: Vec<u8>,
    /// The node's InternalIP, also every pod's hostIP.
    pub node_ip: IpAddr,
    /// A projected service account token is fetched again once 80% of its
    /// lifetime has passed or it is this old (the kubelet's 24 h).
    pub token_max_age: Duration,
    /// Why the pod network between nodes is not ready (`None` once it is),
    /// from whatever runs it; the node is not Ready meanwhile.
    pub network_problem: Option<watch::Receiver<Option<String>>>,
    /// The kubelet's `--cluster-dns`: the nameservers of `ClusterFirst`
    /// pods (empty: none; such pods then get the node's resolv.conf and a
    /// MissingClusterDNS event).
    pub cluster_dns: Vec<IpAddr>,
    /// The kubelet's `--cluster-domain`.
    pub cluster_domain: String,
    /// The kubelet's `--resolv-conf`: the node's resolv.conf, which
    /// `Default` pods get and the DNS server forwards to (`None`: no file,
    /// as the kubelet's `""`).
    pub resolv_conf: Option<PathBuf>,
    /// Run the service proxy (ClusterIPs, NodePorts, hostPorts) in this
    /// process's network namespace; `None`: no proxy here.
    pub proxy: Option<ProxyConfig>,
    /// Serve cluster DNS on the first `cluster_dns` address, put on this
    /// network namespace's `lo`.
    pub serve_dns: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node_name: "orca".into(),
            data_dir: PathBuf::from("/var/lib/orca"),
            pod_cidr_wait: Duration::from_secs(60),
            pod_cidr: None,
            streaming_port: 10250,
            streaming_bind: "0.0.0.0".into(),
            cluster_ca_pem: Vec::new(),
            node_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            token_max_age: Duration::from_secs(24 * 3600),
            network_problem: None,
            cluster_dns: vec![IpAddr::V4(orca_dns::DEFAULT_CLUSTER_DNS)],
            cluster_domain: orca_dns::DEFAULT_CLUSTER_DOMAIN.into(),
            resolv_conf: Some(orca_dns::resolv_conf::node_resolv_conf_path()),
            proxy: None,
            serve_dns: false,
        }
    }
}

impl Config {
    fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup of the streaming server: {0}")]
    Tls(String),
    #[error("node {node} got no spec.podCIDR within {waited:?}; is the control plane's node IPAM controller running?")]
    NoPodCidr { node: String, waited: Duration },
    #[error("the container runtime failed: {0}")]
    Runtime(#[from] orca_runtime::Error),
}

/// Registers the Node and waits for its pod CIDR (or returns
/// `config.pod_cidr`). [`run`] does this too; call it first when the
/// runtime must be built with the CIDR.
pub async fn register_node(client: &kube::Client, config: &Config) -> Result<String, Error> {
    let facts = node::HostFacts::gather(&config.data_dir);
    let ready = node::Readiness {
        problem: readiness::problem(None, None, &config.node_name).await,
        since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(chrono::Utc::now()),
    };
    node::register(client, config, &facts, config.streaming_port, &ready).await?;
    node::wait_for_pod_cidr(client, config).await
}

/// Shared by the pod workers and the streaming server.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub runtime: Arc<dyn Runtime>,
    pub config: Config,
    pub recorder: events::Recorder,
    pub node: resolve::NodeResources,
    /// namespace/name -> uid of the pods bound here, for the streaming server.
    pub pods: Mutex<HashMap<(String, String), String>>,
    /// Every Service, from a watch: their environment variables.
    pub services: reflector::Store<Service>,
    /// What pods' resolv.conf is formed from.
    pub dns: network::NodeDnsSettings,
    /// The hostPorts of the pods running here, for the proxy.
    pub host_ports: network::HostPorts,
    /// The node's and containers' latest usage samples.
    pub stats: stats::Sampler,
}

/// How long a container start waits for the first list of Services.
const SERVICES_SYNC_WAIT: Duration = Duration::from_secs(30);

impl Ctx {
    /// The Service variables of `pod`'s containers, once Services have been
    /// listed (as the kubelet, which fails the start until then).
    pub async fn service_env(&self, pod: &Pod) -> Result<Vec<(String, String)>, String> {
        let synced = tokio::time::timeout(SERVICES_SYNC_WAIT, self.services.wait_until_ready())
            .await
            .is_ok_and(|r| r.is_ok());
        if !synced {
            return Err(
                "services have not yet been read at least once, cannot construct envvars".into(),
            );
        }
        let spec = pod.spec.as_ref();
        let enable = spec.and_then(|s| s.enable_service_links).unwrap_or(true);
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        Ok(servicelinks::service_env(
            &self.services.state(),
            ns,
            enable,
        ))
    }
}

/// Keeps the Services store current until the agent stops.
async fn follow_services(
    stream: impl futures::Stream<Item = Result<watcher::Event<Service>, watcher::Error>>,
) -> Result<(), Error> {
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        if let Err(e) = ev {
            tracing::debug!("watching services failed, retrying: {e}");
        }
    }
    Ok(())
}

/// Runs the agent until the future is dropped or a part of it fails.
pub async fn run(
    client: kube::Client,
    runtime: Arc<dyn Runtime>,
    config: Config,
) -> Result<(), Error> {
    run_until(client, runtime, config, std::future::pending()).await
}

/// Runs the agent until `shutdown` completes (then the service proxy's
/// rules and the cluster DNS address are removed; pods keep running, to be
/// adopted by the next start), the future is dropped (as a crash: nothing
/// is removed), or a part of it fails.
pub async fn run_until(
    client: kube::Client,
    runtime: Arc<dyn Runtime>,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let agent_dir = config.agent_dir();
    std::fs::create_dir_all(&agent_dir).map_err(|e| Error::Io {
        what: format!("creating {}", agent_dir.display()),
        source: e,
    })?;
    let listener =
        tokio::net::TcpListener::bind((config.streaming_bind.as_str(), config.streaming_port))
            .await
            .map_err(|e| Error::Io {
                what: format!(
                    "binding the streaming server to {}:{}",
                    config.streaming_bind, config.streaming_port
                ),
                source: e,
            })?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(config.streaming_port);
    let (certs, key) =
        tls::serving_identity(&agent_dir, &config.node_name, &config.node_ip.to_string())?;
    let tls_config = tls::server_config(certs, key, &config.cluster_ca_pem)?;

    let facts = node::HostFacts::gather(&config.data_dir);
    let ready = node::Readiness {
        problem: readiness::problem(
            Some(runtime.as_ref()),
            config.network_problem.as_ref(),
            &config.node_name,
        )
        .await,
        since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(chrono::Utc::now()),
    };
    node::register(&client, &config, &facts, port, &ready).await?;
    node::wait_for_pod_cidr(&client, &config).await?;
    let node_resources = resolve::NodeResources {
        cpu: facts.cpus as f64,
        memory: (facts.memory_kib.saturating_sub(100 * 1024) * 1024) as f64,
        ephemeral_storage: (facts.ephemeral_storage_kib * 1024) as f64 * 0.9,
    };
    let (services, services_writer) = reflector::store();
    let services_watch = reflector(
        services_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let (host_ports, host_ports_rx) = network::HostPorts::new();
    let ctx = Arc::new(Ctx {
        services,
        recorder: events::Recorder::start(client.clone(), config.node_name.clone()),
        client: client.clone(),
        runtime: runtime.clone(),
        config: config.clone(),
        node: node_resources,
        pods: Mutex::new(HashMap::new()),
        stats: stats::Sampler::default(),
        dns: network::NodeDnsSettings {
            cluster_dns: config.cluster_dns.clone(),
            cluster_domain: config.cluster_domain.clone(),
            resolv_conf: config.resolv_conf.clone(),
        },
        host_ports,
    });
    network::check_resolv_conf(&ctx);
    let network_services =
        network::Services::start(&ctx, config.proxy.clone(), config.serve_dns, host_ports_rx);
    tracing::info!(node = %config.node_name, port, "node agent running");
    let result = tokio::select! {
        r = node::lease_loop(client.clone(), config.node_name.clone()) => r,
        r = node::status_loop(client.clone(), config.clone(), port, runtime, ready) => r,
        r = streaming::serve(ctx.clone(), listener, tls_config) => r,
        r = stats::sample_loop(ctx.clone()) => r,
        r = follow_services(services_watch) => r,
        r = dispatch(ctx) => r,
        () = shutdown => {
            tracing::info!(node = %config.node_name, "node agent stopping");
            Ok(())
        }
    };
    network_services.stop().await;
    result
}

struct Handle {
    tx: watch::Sender<Option<Pod>>,
    /// Wakes the worker to rewrite its volumes at once.
    poke: Arc<tokio::sync::Notify>,
    /// The configMaps and secrets its volumes show.
    refs: HashSet<resolve::SourceRef>,
}

/// Wakes the workers whose volumes show the changed object, so an update
/// reaches the files without waiting for the periodic resync.
fn poke(workers: &HashMap<String, Handle>, changed: resolve::SourceRef) {
    for h in workers.values().filter(|h| h.refs.contains(&changed)) {
        h.poke.notify_one();
    }
}

/// The per-object watches of the configMaps and secrets the workers' pods
/// show; each reports a change of its object.
struct SourceWatches {
    client: kube::Client,
    tasks: HashMap<resolve::SourceRef, tokio::task::JoinHandle<()>>,
    changed: tokio::sync::mpsc::UnboundedSender<resolve::SourceRef>,
}

impl SourceWatches {
    /// Starts the watches the workers need and stops the others.
    fn sync(&mut self, workers: &HashMap<String, Handle>) {
        let wanted: HashSet<&resolve::SourceRef> =
            workers.values().flat_map(|h| h.refs.iter()).collect();
        self.tasks.retain(|r, task| {
            let keep = wanted.contains(r);
            if !keep {
                task.abort();
            }
            keep
        });
        for r in wanted {
            if !self.tasks.contains_key(r) {
                let task = tokio::spawn(watch_source(
                    self.client.clone(),
                    r.clone(),
                    self.changed.clone(),
                ));
                self.tasks.insert(r.clone(), task);
            }
        }
    }
}

impl Drop for SourceWatches {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

/// Watches one configMap or secret (a `metadata.name` field selector in
/// its namespace); changes only, as the first list is what the worker
/// reads anyway.
async fn watch_source(
    client: kube::Client,
    source: resolve::SourceRef,
    changed: tokio::sync::mpsc::UnboundedSender<resolve::SourceRef>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={}", source.name));
    let mut events = if source.secret {
        watcher(Api::<Secret>::namespaced(client, &source.namespace), config)
            .default_backoff()
            .map(|e| e.map(|e| matches!(e, watcher::Event::Apply(_) | watcher::Event::Delete(_))))
            .boxed()
    } else {
        watcher(
            Api::<ConfigMap>::namespaced(client, &source.namespace),
            config,
        )
        .default_backoff()
        .map(|e| e.map(|e| matches!(e, watcher::Event::Apply(_) | watcher::Event::Delete(_))))
        .boxed()
    };
    while let Some(ev) = events.next().await {
        match ev {
            Ok(true) => {
                if changed.send(source.clone()).is_err() {
                    return;
                }
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(
                namespace = %source.namespace,
                name = %source.name,
                "watching a volume source failed, retrying: {e}"
            ),
        }
    }
}

/// Watches the pods bound to this node and hands each to its worker.
async fn dispatch(ctx: Arc<Ctx>) -> Result<(), Error> {
    // Sandboxes present before the first full list: adopted by their pod's
    // worker, or stopped when the pod is gone.
    let mut leftovers: Option<Vec<String>> = Some(
        ctx.runtime
            .list_sandboxes()
            .await?
            .into_iter()
            .map(|s| s.pod_uid)
            .collect(),
    );
    let mut leftover_volumes = Some(volumes::pod_uids(&ctx.config.agent_dir()));
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", ctx.config.node_name);
    let mut stream = watcher(pods, watcher::Config::default().fields(&selector)).boxed();
    // One watch per configMap or secret the pods show, as the kubelet's
    // watch-based manager keeps: a node may read only the objects its pods
    // reference (the node authorizer), never list them all.
    let (changed_tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
    let mut sources = SourceWatches {
        client: ctx.client.clone(),
        tasks: HashMap::new(),
        changed: changed_tx,
    };
    let mut workers: HashMap<String, Handle> = HashMap::new();
    // Owning the workers here ties them to the agent: when `run` is
    // cancelled they stop where they are, leaving their containers running.
    let mut tasks: tokio::task::JoinSet<String> = tokio::task::JoinSet::new();
    let mut listed: std::collections::HashSet<String> = Default::default();
    loop {
        sources.sync(&workers);
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(uid) = done {
                    workers.remove(&uid);
                }
            }
            // A failing watch (retried with back-off) only delays volume
            // updates to the periodic resync.
            Some(source) = changed.recv() => poke(&workers, source),
            ev = stream.next() => {
                let Some(ev) = ev else { return Ok(()) };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::warn!("watching pods failed, retrying: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                match ev {
                    watcher::Event::Init => listed.clear(),
                    watcher::Event::InitApply(pod) => {
                        if let Some(uid) = pod.metadata.uid.clone() {
                            listed.insert(uid);
                        }
                        deliver(&ctx, &mut workers, &mut tasks, pod);
                    }
                    watcher::Event::Apply(pod) => deliver(&ctx, &mut workers, &mut tasks, pod),
                    watcher::Event::Delete(pod) => {
                        if let Some(uid) = &pod.metadata.uid {
                            if let Some(h) = workers.get(uid) {
                                let _ = h.tx.send(None);
                            }
                        }
                    }
                    watcher::Event::InitDone => {
                        // Pods deleted while the watch was down.
                        for (uid, h) in &workers {
                            if !listed.contains(uid) {
                                let _ = h.tx.send(None);
                            }
                        }
                        if let Some(uids) = leftover_volumes.take() {
                            // Written for a pod that went away before its
                            // sandbox was made (or before a crash).
                            let agent_dir = ctx.config.agent_dir();
                            for uid in uids {
                                if !listed.contains(&uid) && !workers.contains_key(&uid) {
                                    volumes::remove_pod(&agent_dir, &uid);
                                }
                            }
                        }
                        if let Some(uids) = leftovers.take() {
                            for uid in uids.into_iter().filter(|u| !listed.contains(u)) {
                                if workers.contains_key(&uid) {
                                    continue;
                                }
                                let ctx = ctx.clone();
                                tokio::spawn(async move {
                                    worker::clean_orphan(&ctx, &uid).await;
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

fn deliver(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, Handle>,
    tasks: &mut tokio::task::JoinSet<String>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(h) = workers.get_mut(&uid) {
        h.refs = resolve::volume_sources(&pod);
        let _ = h.tx.send(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod.clone()));
    let poke = Arc::new(tokio::sync::Notify::new());
    workers.insert(
        uid.clone(),
        Handle {
            tx,
            poke: poke.clone(),
            refs: resolve::volume_sources(&pod),
        },
    );
    let ctx = ctx.clone();
    tasks.spawn(async move {
        worker::run(ctx, pod, rx, poke).await;
        uid
    });
}
