//! The Kubernetes REST API over HTTPS, backed by orca-store.
//!
//! [`start`] creates (first start) or reuses the TLS material under
//! `DATA_DIR/tls`, writes `DATA_DIR/kubeconfig`, loads the watch cache from the
//! store and serves until [`ApiServer::shutdown`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orca_store::Store;
use tokio::net::TcpListener;

pub mod auth;
mod cache;
mod cluster_dns_service;
mod compactor;
mod discovery;
pub use discovery::GIT_VERSION;
#[doc(hidden)]
pub mod fuzzing;
mod handlers;
mod health;
mod kubernetes_service;
mod metrics;
mod metrics_api;
mod namespaces;
mod openapi;
mod pod_security;
mod protobuf;
mod proxy;
mod rawjson;
mod registry;
mod resource_proxy;
mod resources;
mod sa_tokens;
mod selectors;
mod server;
mod status;
pub mod tls;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("invalid bind address {0:?}: expected an IP address such as 127.0.0.1 or 0.0.0.0")]
    BindAddress(String),
    #[error("cannot listen on {addr}: {source} (is another server using the port? pick another with --https-port)")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the store failed while loading the watch cache: {0}")]
    Store(#[from] orca_store::Error),
    #[error("invalid advertise address {0}: expected the IPv4 address other machines and pods reach this server at (not unspecified)")]
    AdvertiseAddress(IpAddr),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// IP address to listen on (default 127.0.0.1).
    pub bind_address: String,
    /// 0 picks a free port.
    pub https_port: u16,
    /// Extra names and IPs for the serving certificate.
    pub tls_sans: Vec<String>,
    /// How often the store's history is compacted (kube-apiserver's
    /// `--etcd-compaction-interval`, 5 min); each run forgets revisions older
    /// than the previous run's, so watches can resume up to one interval back.
    /// Zero disables compaction.
    pub compaction_interval: std::time::Duration,
    /// Read-only requests served at once (kube-apiserver's
    /// `--max-requests-inflight`); zero: no limit.
    pub max_requests_inflight: usize,
    /// Mutating requests served at once
    /// (`--max-mutating-requests-inflight`); zero: no limit.
    pub max_mutating_requests_inflight: usize,
    /// The longest client certificate the cluster CA signs for an approved
    /// request (kube-controller-manager's `--cluster-signing-duration`, one
    /// year); a request's `expirationSeconds` may ask for less.
    pub cluster_signing_duration: std::time::Duration,
    /// The address pods and other machines reach this server at: the
    /// `kubernetes` Service's endpoint (kube-apiserver's
    /// `--advertise-address`). `None`: the bind address if it is a specific
    /// non-loopback one, else the address of the default route's interface.
    /// When the server binds a loopback address it listens here too.
    pub advertise_address: Option<IpAddr>,
    /// Where Service cluster IPs and node ports come from; with a cluster
    /// DNS address ([`ServiceNetwork::with_cluster_dns`]), the server also
    /// keeps `kube-system/kube-dns` there.
    pub service_network: ServiceNetwork,
    /// How the `kubernetes` Service's endpoints are kept.
    pub endpoint_reconciler: EndpointReconciler,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/orca"),
            bind_address: "127.0.0.1".into(),
            https_port: 6443,
            tls_sans: Vec::new(),
            compaction_interval: std::time::Duration::from_secs(300),
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            cluster_signing_duration: std::time::Duration::from_secs(365 * 24 * 3600),
            advertise_address: None,
            service_network: ServiceNetwork::default(),
            endpoint_reconciler: EndpointReconciler::Lease,
        }
    }
}

pub use kubernetes_service::EndpointReconciler;
pub use registry::{ServiceNetwork, ServiceNetworkError};

pub struct ApiServer {
    state: Arc<server::State>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    node_token: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    kubernetes_service: kubernetes_service::Reconciler,
}

impl ApiServer {
    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// DATA_DIR/kubeconfig (admin credentials, full TLS verification).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The node join token (also in DATA_DIR/token).
    pub fn node_token(&self) -> &str {
        &self.node_token
    }

    /// A client for a component running in this process (scheduler,
    /// controllers, node agent), acting as `identity`: the same API, limits,
    /// authorizers, routing and handlers as over HTTPS, minus TLS and TCP.
    /// Streaming subresources that need a protocol upgrade (exec, attach)
    /// are not available through it.
    pub fn local_client(&self, identity: auth::UserInfo) -> kube::Client {
        self.local_clients().client(identity)
    }

    /// Makes [`ApiServer::local_client`]s, for handing to code that needs
    /// several identities (the controllers).
    pub fn local_clients(&self) -> LocalClients {
        LocalClients {
            state: self.state.clone(),
        }
    }

    /// The address the `kubernetes` Service's endpoints name, if any.
    pub fn advertise_address(&self) -> Option<IpAddr> {
        self.kubernetes_service.advertised()
    }

    /// Takes this server out of the `kubernetes` endpoints, stops
    /// accepting, closes connections (watches end) and waits.
    pub async fn shutdown(self) {
        self.kubernetes_service.stop().await;
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Makes in-process clients with chosen identities.
#[derive(Clone)]
pub struct LocalClients {
    state: Arc<server::State>,
}

impl LocalClients {
    /// See [`ApiServer::local_client`].
    pub fn client(&self, identity: auth::UserInfo) -> kube::Client {
        server::local_client(self.state.clone(), identity)
    }
}

/// The IPv4 address of the interface holding the default route. A UDP
/// connect sends no packet; it only asks the kernel which source address
/// it would use.
fn default_route_ipv4() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// kube-apiserver's choice: the given address, else a specific bind
/// address, else the default route's.
fn advertise_address(config: &Config, bind: IpAddr) -> Result<Option<IpAddr>, Error> {
    match config.advertise_address {
        Some(ip) if ip.is_unspecified() => Err(Error::AdvertiseAddress(ip)),
        Some(ip) => Ok(Some(ip)),
        None if !bind.is_unspecified() && !bind.is_loopback() => Ok(Some(bind)),
        None => Ok(default_route_ipv4()),
    }
}

fn serving_names(config: &Config, ip: IpAddr, advertise: Option<IpAddr>) -> Vec<String> {
    let mut names = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
        // The `kubernetes` Service's cluster IP, which pods connect to.
        config.service_network.first_ip().to_string(),
    ];
    if let Some(a) = advertise {
        names.push(a.to_string());
    }
    if let Ok(h) = hostname::get() {
        if let Some(h) = h.to_str() {
            names.push(h.to_string());
        }
    }
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    names.extend(config.tls_sans.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

/// Starts the API server; returns once it accepts connections.
pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<ApiServer, Error> {
    let ip: IpAddr = config
        .bind_address
        .parse()
        .map_err(|_| Error::BindAddress(config.bind_address.clone()))?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
    // Making the RSA key takes a moment on first start: alongside the rest.
    let tls_dir = config.data_dir.join("tls");
    let sa_tokens = tokio::task::spawn_blocking(move || {
        sa_tokens::ServiceAccountTokens::load_or_create(&tls_dir)
    });
    let advertise = advertise_address(&config, ip)?;
    let material = tls::load_or_create(&config.data_dir, &serving_names(&config, ip, advertise))?;
    let bind = SocketAddr::new(ip, config.https_port);
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| Error::Listen { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr: bind, source })?;
    // A loopback-only server is still reachable by pods and other
    // machines at its advertised address, on the same port.
    let mut listeners = vec![listener];
    if let Some(a) = advertise.filter(|a| ip.is_loopback() && !a.is_loopback()) {
        let also = SocketAddr::new(a, addr.port());
        match TcpListener::bind(also).await {
            Ok(l) => listeners.push(l),
            // An advertised address of a load balancer or NAT in front of
            // this machine is not this machine's to bind.
            Err(e) => tracing::warn!(address = %also, error = %e,
                "not listening on the advertised address; pods reach this server only if it forwards here"),
        }
    }
    let host = if ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        }
    };
    let server_url = format!("https://{host}:{}", addr.port());
    let kubeconfig = tls::write_kubeconfig(&config.data_dir, &server_url)?;

    let rbac = Arc::new(auth::rbac::Rbac::default());
    let node_graph = Arc::new(auth::node::NodeGraph::default());
    let hooks: Vec<Arc<dyn cache::CacheHook>> = vec![rbac.clone(), node_graph.clone()];
    let cache = cache::Cache::start(store.clone(), hooks).await?;
    let sa_tokens = sa_tokens
        .await
        .map_err(|e| Error::Tls(format!("making the service account key: {e}")))??;
    if !config.compaction_interval.is_zero() {
        tokio::spawn(compactor::run(
            Arc::downgrade(&store),
            Arc::downgrade(&cache),
            config.compaction_interval,
        ));
    }
    // The bearer-token authenticators, asked in this order.
    let token_authenticators: Vec<Arc<dyn auth::authn::TokenAuthenticator>> = vec![
        Arc::new(auth::authn::BootstrapToken::new(&material.node_token)),
        Arc::new(auth::authn::ServiceAccountTokens),
    ];
    let state = Arc::new(server::State {
        store,
        cache,
        token_authenticators,
        rbac,
        node_graph,
        inflight: auth::inflight::Inflight::new(
            config.max_requests_inflight,
            config.max_mutating_requests_inflight,
        ),
        ca_pem: material.ca_pem.clone(),
        signer: material.signer.clone(),
        cluster_signing_duration: config.cluster_signing_duration,
        kubelet_tls: material.kubelet_client_config.clone(),
        server_url,
        sa_tokens,
        service_network: config.service_network.clone(),
        metrics: metrics::Metrics::new(),
    });
    namespaces::bootstrap(&state).await?;
    auth::policy::reconcile(&state).await?;
    auth::aggregation::start(&state).await;
    auth::certificates::start(&state);
    // Allocations left by a server that stopped mid-request are put right
    // before this one hands out more.
    registry::repair_service_allocations(&state).await?;
    tokio::spawn(registry::repair_service_allocations_loop(Arc::downgrade(
        &state,
    )));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let acceptor = tokio_rustls::TlsAcceptor::from(material.server_config.clone());
    let tasks = listeners
        .into_iter()
        .map(|l| {
            tokio::spawn(server::serve(
                l,
                acceptor.clone(),
                state.clone(),
                rx.clone(),
            ))
        })
        .collect();
    let kubernetes_service = kubernetes_service::Reconciler::start(
        state.clone(),
        config.endpoint_reconciler,
        advertise,
        addr.port(),
    )
    .await;
    if let Some(ip) = state.service_network.cluster_dns() {
        cluster_dns_service::ensure(
            &server::local_client(state.clone(), auth::UserInfo::apiserver()),
            ip,
        )
        .await;
    }
    tracing::info!(%addr, advertise = ?advertise, "API server listening");
    Ok(ApiServer {
        state,
        addr,
        kubeconfig,
        node_token: material.node_token,
        shutdown: tx,
        tasks,
        kubernetes_service,
    })
}
