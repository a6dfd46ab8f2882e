//! Control loops over the API, each a small reconciler in its own module:
//! - [`ipam`] gives every node a pod CIDR from the cluster CIDR,
//! - [`lifecycle`] marks nodes whose agent stopped reporting as `Unknown`,
//!   taints them unreachable, marks their pods not ready and evicts pods
//!   that do not tolerate a node's NoExecute taints,
//! - [`serviceaccounts`] keeps a `default` ServiceAccount in every namespace.

pub mod ipam;
pub mod lifecycle;
pub mod serviceaccounts;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

/// The API clients the controllers use, as kube-controller-manager's with
/// `--use-service-account-credentials`: lists and watches (its shared
/// informers) go through the controller manager's own identity, each
/// controller's writes through its service account
/// (`system:serviceaccount:kube-system:<controller>`), so the bootstrap
/// policy's `system:controller:*` roles apply to them.
#[derive(Clone)]
pub struct Clients {
    informers: kube::Client,
    per_controller: Arc<dyn Fn(&str) -> kube::Client + Send + Sync>,
}

impl Clients {
    pub fn new(
        informers: kube::Client,
        per_controller: impl Fn(&str) -> kube::Client + Send + Sync + 'static,
    ) -> Clients {
        Clients {
            informers,
            per_controller: Arc::new(per_controller),
        }
    }

    /// One client for everything (an admin kubeconfig, tests).
    pub fn single(client: kube::Client) -> Clients {
        let writes = client.clone();
        Clients::new(client, move |_| writes.clone())
    }

    /// For lists and watches.
    pub fn informers(&self) -> kube::Client {
        self.informers.clone()
    }

    /// For the writes of the controller `name` (its service account name,
    /// e.g. `node-controller`).
    pub fn controller(&self, name: &str) -> kube::Client {
        (self.per_controller)(name)
    }
}

/// Settings shared by the controllers.
#[derive(Clone, Debug)]
pub struct Config {
    /// The range node pod CIDRs are carved from (k3s's default: 10.42.0.0/16).
    pub cluster_cidr: (Ipv4Addr, u8),
    /// Prefix length of each node's pod CIDR.
    pub node_cidr_prefix: u8,
    /// How long a node may go without renewing its Lease before it is
    /// `Unknown` (kube-controller-manager's --node-monitor-grace-period).
    pub node_monitor_grace: Duration,
    /// How often node health and evictions are checked
    /// (kube-controller-manager's --node-monitor-period).
    pub node_monitor_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_cidr: (Ipv4Addr::new(10, 42, 0, 0), 16),
            node_cidr_prefix: 24,
            // Kubernetes 1.32's defaults.
            node_monitor_grace: Duration::from_secs(50),
            node_monitor_period: Duration::from_secs(5),
        }
    }
}

/// Runs every controller until one fails.
pub async fn run(clients: Clients, config: Config) -> anyhow::Result<()> {
    tokio::try_join!(
        ipam::run(&clients, config.clone()),
        lifecycle::run(&clients, config.clone()),
        serviceaccounts::run(&clients),
    )?;
    Ok(())
}
