//! Control loops over the API, each a small reconciler in its own module:
//! - [`ipam`] gives every node a pod CIDR from the cluster CIDR,
//! - [`lifecycle`] marks nodes whose agent stopped reporting as `Unknown`,
//!   taints them unreachable, marks their pods not ready and evicts pods
//!   that do not tolerate a node's NoExecute taints,
//! - [`serviceaccounts`] keeps a `default` ServiceAccount in every namespace,
//! - [`rootca`] publishes the cluster CA as `kube-root-ca.crt` in every
//!   namespace,
//! - [`endpoints`] and [`endpointslices`] list the pods each Service selects,
//!   from one shared watch of Services and Pods ([`servicepods`]),
//! - [`replicaset`] keeps the pods of ReplicaSets and ReplicationControllers
//!   (with [`pods`], what workload controllers share, [`queue`] and
//!   [`events`]),
//! - [`deployment`] rolls Deployments out through ReplicaSets,
//! - [`job`] runs Jobs' pods to completion,
//!   [`ttl_after_finished`] deletes finished Jobs whose TTL passed and
//!   [`cronjob`] creates Jobs on CronJobs' schedules,
//! - [`daemonset`] runs a DaemonSet's pod on every eligible node, with
//!   template history in ControllerRevisions ([`revisions`]),
//! - [`statefulset`] keeps StatefulSets' ordered, stable pods,
//! - [`gc`] deletes objects whose owners are gone, and carries out
//!   foreground and orphan deletion,
//! - [`disruption`] keeps PodDisruptionBudgets' status, which evictions
//!   decide by.
//!
//! The workload controllers' watches, caches and work queue are wired up
//! the same way, by [`wiring`].

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslices;
pub mod events;
pub mod gc;
pub mod ipam;
pub mod job;
pub mod lifecycle;
pub mod pods;
pub mod queue;
pub mod replicaset;
pub mod revisions;
pub mod rootca;
pub mod serviceaccounts;
pub mod servicepods;
pub mod statefulset;
pub mod ttl_after_finished;
pub mod wiring;

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
    /// The cluster CA (PEM) published in every namespace as
    /// `kube-root-ca.crt` (kube-controller-manager's --root-ca-file); none,
    /// none published.
    pub root_ca_pem: Option<String>,
    /// Endpoints per EndpointSlice (kube-controller-manager's
    /// --max-endpoints-per-slice).
    pub max_endpoints_per_slice: usize,
    /// Run only while holding the Lease `kube-system/<lease_name>` (one for
    /// all the controllers, as kube-controller-manager), so that several
    /// servers on one store run each controller once.
    pub leader_elect: bool,
    /// This instance's name in the Lease.
    pub identity: String,
    pub lease_name: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_cidr: (Ipv4Addr::new(10, 42, 0, 0), 16),
            node_cidr_prefix: 24,
            // Kubernetes 1.32's defaults.
            node_monitor_grace: Duration::from_secs(50),
            node_monitor_period: Duration::from_secs(5),
            root_ca_pem: None,
            max_endpoints_per_slice: 100,
            leader_elect: true,
            identity: orca_leader_election::default_identity(),
            lease_name: "kube-controller-manager".into(),
            // kube-controller-manager's defaults.
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Runs every controller (while holding the leader Lease, with
/// `leader_elect`) until one fails or `shutdown` resolves; a leader then
/// releases the Lease, so another server takes over at once.
pub async fn run(
    clients: Clients,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let all = || run_all(clients.clone(), config.clone());
    if !config.leader_elect {
        tokio::select! {
            r = all() => return r,
            _ = shutdown => return Ok(()),
        }
    }
    if config.renew_deadline >= config.lease_duration {
        anyhow::bail!(
            "the controllers' renew deadline ({:?}) must be shorter than their lease duration ({:?})",
            config.renew_deadline,
            config.lease_duration
        );
    }
    let election = orca_leader_election::LeaderElectionConfig {
        namespace: "kube-system".into(),
        name: config.lease_name.clone(),
        identity: config.identity.clone(),
        lease_duration: config.lease_duration,
        renew_deadline: config.renew_deadline,
        retry_period: config.retry_period,
    };
    // The Lease is the controller manager's own, as kube-controller-manager
    // holds it.
    orca_leader_election::run_elected(clients.informers(), election, shutdown, all).await
}

async fn run_all(clients: Clients, config: Config) -> anyhow::Result<()> {
    let root_ca = async {
        match config.root_ca_pem.clone() {
            Some(pem) => {
                let writer = clients.controller("root-ca-cert-publisher");
                rootca::run(clients.informers(), writer, pem).await
            }
            None => Ok(()),
        }
    };
    tokio::try_join!(
        ipam::run(&clients, config.clone()),
        lifecycle::run(&clients, config.clone()),
        serviceaccounts::run(&clients),
        root_ca,
        run_endpoints(&clients, config.max_endpoints_per_slice),
        replicaset::run(&clients),
        deployment::run(&clients),
        job::run(&clients),
        ttl_after_finished::run(&clients),
        cronjob::run(&clients),
        daemonset::run(&clients),
        statefulset::run(&clients),
        gc::run(&clients),
        disruption::run(&clients),
    )?;
    Ok(())
}

/// The endpoints and endpointslice controllers over one shared watch of
/// Services and Pods.
pub async fn run_endpoints(clients: &Clients, max_per_slice: usize) -> anyhow::Result<()> {
    let endpoints_queue = std::sync::Arc::new(servicepods::Queue::default());
    let slices_queue = std::sync::Arc::new(servicepods::Queue::default());
    let inputs = servicepods::Inputs::new(vec![endpoints_queue.clone(), slices_queue.clone()]);
    tokio::try_join!(
        inputs.clone().run(clients.informers()),
        endpoints::run(
            clients.controller("endpoint-controller"),
            inputs.clone(),
            endpoints_queue
        ),
        endpointslices::run(
            clients.controller("endpointslice-controller"),
            inputs,
            slices_queue,
            max_per_slice
        ),
    )?;
    Ok(())
}
