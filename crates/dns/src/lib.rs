//! Cluster DNS, served by every node on the cluster DNS address.
//!
//! Names under the cluster domain are answered from Services and
//! EndpointSlices as the Kubernetes DNS specification (kubernetes/dns
//! docs/specification.md) lays them out, with CoreDNS's `kubernetes` plugin
//! as the reference behaviour; all other names go to the node's own
//! resolvers. Pods find the server through the resolv.conf that
//! [`resolv_conf::pod_dns`] forms, and reach its address, which
//! [`interface::add_dns_address`] puts on the node, by their default route.
//!
//! Records live [`DnsConfig::ttl`] seconds, 5 by default as in CoreDNS: the
//! server is on the pod's own node, so a cache miss costs well under a
//! millisecond, while a long TTL would keep clients on a headless Service's
//! departed pods, or on a cached "no such Service" just after one is
//! created, for that long.

mod forward;
mod index;
pub mod interface;
mod records;
pub mod resolv_conf;
mod server;
mod watch;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use hickory_server::proto::rr::{LowerName, Name, Record, RecordType};
pub use index::{ClusterIndex, Lookup, SharedIndex, SCHEMA_VERSION};
pub use records::NameRecords;
pub use server::DnsServer;
pub use watch::feed_index;

/// The cluster DNS address (`--cluster-dns`), k3s's.
pub const DEFAULT_CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);
/// The cluster domain (`--cluster-domain`).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Seconds records live in caches (CoreDNS's default).
pub const DEFAULT_TTL: u32 = 5;

/// How the node's DNS server runs.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Where UDP and TCP listen: the cluster DNS address, port 53 (port 0
    /// picks a free one, for tests).
    pub listen: SocketAddr,
    /// The address pods are given (the zone's name server; never an upstream).
    pub cluster_dns: Ipv4Addr,
    /// The zone answered from the cluster, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// The node's resolvers, for every other name (see
    /// [`resolv_conf::ResolvConf::upstreams`]); any that is this server is dropped.
    pub upstreams: Vec<SocketAddr>,
    /// Seconds answers live in caches, and negative answers too.
    pub ttl: u32,
    /// How long one upstream resolver has to answer before the next is asked.
    pub upstream_timeout: Duration,
}

impl DnsConfig {
    /// Serving `cluster_dns`:53 for `cluster.local` with the defaults; no
    /// upstream resolvers yet.
    pub fn new(cluster_dns: Ipv4Addr) -> DnsConfig {
        DnsConfig {
            listen: SocketAddr::from((cluster_dns, 53)),
            cluster_dns,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            upstreams: Vec::new(),
            ttl: DEFAULT_TTL,
            upstream_timeout: Duration::from_secs(2),
        }
    }

    /// An empty index for this configuration's zone.
    pub fn new_index(&self) -> Result<SharedIndex, DnsError> {
        ClusterIndex::new(&self.cluster_domain, self.ttl, self.cluster_dns)
            .map(|index| Arc::new(RwLock::new(index)))
            .map_err(DnsError::Config)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cluster DNS configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves cluster DNS per `config`, fed by watches through `client`, until
/// `shutdown` completes. The listen address must already be on the node
/// (see [`interface::add_dns_address`]).
pub async fn run(
    client: kube::Client,
    config: DnsConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DnsError> {
    let index = config.new_index()?;
    let server = DnsServer::bind(&config, index.clone()).await?;
    let feed = tokio::spawn(feed_index(client, index));
    let result = server.serve(shutdown).await;
    feed.abort();
    Ok(result?)
}
