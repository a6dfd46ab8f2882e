//! The node's service proxy: Orca's kube-proxy.
//!
//! Services reach their endpoints through nftables rules modelled on
//! kube-proxy's nftables mode (KEP-3866), in one table of Orca's own
//! (`ip orca-proxy`):
//! - verdict maps from (ClusterIP or external IP, protocol, port) and from
//!   (protocol, NodePort) to a chain per Service port, which picks an
//!   endpoint with `numgen random mod N` (or the client's remembered
//!   endpoint, for `sessionAffinity: ClientIP`) and jumps to a chain per
//!   endpoint that DNATs to it;
//! - a mark for masquerade on traffic that needs its source rewritten
//!   (from outside the cluster CIDR, NodePorts, hairpin), applied in
//!   postrouting;
//! - Services without usable endpoints reject new connections (ICMP port
//!   unreachable: the client sees "connection refused" at once);
//! - hostPorts (the CNI portmap behaviour) and the masquerade of pod
//!   traffic leaving the cluster CIDR.
//!
//! [`Proxier`] programs it over netlink, one atomic batch per sync, and
//! only what changed since the previous sync. [`watcher::run`] feeds it from
//! the API server's Services and EndpointSlices.

mod model;
mod nft;
mod plan;
mod proxier;
mod types;
pub mod watcher;

pub use nft::{inspect, ProxyError, TableSummary};
pub use proxier::{Proxier, SyncReport};
pub use types::{Endpoint, HostPortMapping, Ipv4Cidr, Protocol, ProxyConfig, ServicePort, TABLE};
