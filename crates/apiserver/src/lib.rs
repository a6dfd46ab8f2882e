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
mod compactor;
mod discovery;
#[doc(hidden)]
pub mod fuzzing;
mod handlers;
mod health;
mod namespaces;
mod openapi;
mod protobuf;
mod proxy;
mod rawjson;
mod registry;
mod resources;
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
        }
    }
}

pub struct ApiServer {
    state: Arc<server::State>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    node_token: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
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

    /// Stops accepting, closes connections (watches end) and waits.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
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
        let state = self.state.clone();
        let caller = Arc::new(identity);
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let state = state.clone();
            let caller = caller.clone();
            async move {
                Ok::<_, std::convert::Infallible>(server::handle_local(state, caller, req).await)
            }
        });
        kube::Client::new(service, "default")
    }
}

fn serving_names(config: &Config, ip: IpAddr) -> Vec<String> {
    let mut names = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
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
    let material = tls::load_or_create(&config.data_dir, &serving_names(&config, ip))?;
    let bind = SocketAddr::new(ip, config.https_port);
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| Error::Listen { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr: bind, source })?;
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
    if !config.compaction_interval.is_zero() {
        tokio::spawn(compactor::run(
            Arc::downgrade(&store),
            Arc::downgrade(&cache),
            config.compaction_interval,
        ));
    }
    // The bearer-token authenticators, asked in this order.
    let token_authenticators: Vec<Arc<dyn auth::authn::TokenAuthenticator>> = vec![Arc::new(
        auth::authn::BootstrapToken::new(&material.node_token),
    )];
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
    });
    namespaces::bootstrap(&state).await?;
    auth::policy::reconcile(&state).await?;
    auth::aggregation::start(&state).await;
    auth::certificates::start(&state);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let acceptor = tokio_rustls::TlsAcceptor::from(material.server_config.clone());
    let task = tokio::spawn(server::serve(listener, acceptor, state.clone(), rx));
    tracing::info!(%addr, "API server listening");
    Ok(ApiServer {
        state,
        addr,
        kubeconfig,
        node_token: material.node_token,
        shutdown: tx,
        task,
    })
}
