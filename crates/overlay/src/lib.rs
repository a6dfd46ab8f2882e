//! The pod network between nodes, built in (no CNI plugin), as flannel's
//! two usual backends:
//! - **VXLAN** (the default): a VXLAN device (`orca.1`, VNI 1, UDP 8472,
//!   MTU of the uplink less 50) holding the network address of the node's
//!   pod CIDR; each remote node's pod CIDR is routed through it to the
//!   remote device's address, which a permanent ARP entry maps to the
//!   remote device's MAC and a forwarding entry to the remote node's
//!   address. Works wherever nodes reach each other over UDP.
//! - **host-gw**: each remote node's pod CIDR is routed straight to the
//!   remote node's address; nodes must share a link.
//!
//! Routes follow the Node objects (`spec.podCIDR`, the `InternalIP` of
//! `status.addresses`, and the annotations each node's overlay publishes:
//! [`peers::BACKEND_ANNOTATION`], [`peers::VTEP_MAC_ANNOTATION`]), watched
//! through the API. Everything is programmed over rtnetlink and removed
//! when [`run`] is dropped. Masquerading pod traffic that leaves the
//! cluster CIDR is the service proxy's job (orca-proxy).

mod dataplane;
mod netlink;
pub mod peers;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use tokio::sync::watch;

use dataplane::Dataplane;
use peers::{Peer, Subnet};

/// How pod traffic crosses to other nodes (`--flannel-backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Vxlan,
    HostGw,
}

impl Backend {
    /// The name the flag and the annotation use.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            _ => Err(format!("unknown backend {s:?}: expected vxlan or host-gw")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    /// The node's InternalIP: VXLAN packets leave from it, and the link
    /// holding it is the uplink.
    pub node_ip: Ipv4Addr,
    /// This node's `spec.podCIDR`.
    pub pod_cidr: String,
    pub backend: Backend,
    /// The VXLAN device's name.
    pub device: String,
    pub vni: u32,
    /// The UDP port of VXLAN (8472, Linux's and flannel's, not IANA's 4789).
    pub port: u16,
    /// Everything is rewritten this often, repairing what someone removed.
    pub resync: Duration,
}

impl Config {
    pub fn new(node_name: &str, node_ip: Ipv4Addr, pod_cidr: &str, backend: Backend) -> Config {
        Config {
            node_name: node_name.to_string(),
            node_ip,
            pod_cidr: pod_cidr.to_string(),
            backend,
            device: "orca.1".into(),
            vni: 1,
            port: 8472,
            resync: Duration::from_secs(60),
        }
    }
}

/// The annotations this node's overlay publishes on its Node.
fn annotations(config: &Config) -> serde_json::Value {
    let mac = match config.backend {
        Backend::Vxlan => Some(peers::format_mac(&peers::vtep_mac(config.node_ip))),
        Backend::HostGw => None,
    };
    serde_json::json!({
        peers::BACKEND_ANNOTATION: config.backend.name(),
        peers::PUBLIC_IP_ANNOTATION: config.node_ip.to_string(),
        peers::VTEP_MAC_ANNOTATION: mac,
    })
}

fn published(node: &Node, config: &Config) -> bool {
    let want = annotations(config);
    let have = node.metadata.annotations.clone().unwrap_or_default();
    want.as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| match v {
            serde_json::Value::String(s) => have.get(k) == Some(s),
            _ => !have.contains_key(k),
        })
}

async fn publish(nodes: &Api<Node>, config: &Config) {
    let patch = serde_json::json!({"metadata": {"annotations": annotations(config)}});
    loop {
        match nodes
            .patch(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(node = %config.node_name, "publishing the overlay's annotations failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Runs the overlay of this node until dropped (which removes it).
/// `problem` says why the pod network is not ready (`None` once it is),
/// for the node's Ready condition.
pub async fn run(client: kube::Client, config: Config, problem: watch::Sender<Option<String>>) {
    let Some(own) = Subnet::parse(&config.pod_cidr) else {
        let _ = problem.send(Some(format!(
            "the pod CIDR {:?} is not an IPv4 network",
            config.pod_cidr
        )));
        return std::future::pending().await;
    };
    let mut dataplane = loop {
        match Dataplane::setup(&config, own) {
            Ok(d) => break d,
            Err(e) => {
                let message = format!(
                    "the pod network ({} backend) could not be set up: {e}",
                    config.backend.name()
                );
                tracing::error!(node = %config.node_name, "{message}; retrying in 10s");
                let _ = problem.send(Some(message));
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    };
    tracing::info!(
        node = %config.node_name,
        backend = config.backend.name(),
        pod_cidr = %own,
        "pod network between nodes set up"
    );
    let nodes: Api<Node> = Api::all(client);
    publish(&nodes, &config).await;
    let _ = problem.send(None);

    let (store, writer) = reflector::store();
    let mut events = watcher(nodes.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .boxed();
    let mut resync = tokio::time::interval(config.resync);
    let mut synced = false;
    let mut applied: Option<BTreeMap<String, Peer>> = None;
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        let force = tokio::select! {
            ev = events.next() => {
                match ev {
                    Some(Ok(watcher::Event::InitDone)) => synced = true,
                    // The Node was made again (deleted and re-registered):
                    // publish again so the other nodes find this one.
                    Some(Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)))
                        if node.metadata.name.as_deref() == Some(config.node_name.as_str())
                            && !published(&node, &config) =>
                    {
                        publish(&nodes, &config).await
                    }
                    Some(Err(e)) => tracing::debug!("watching nodes failed, retrying: {e}"),
                    None => return,
                    _ => {}
                }
                false
            }
            _ = resync.tick() => true,
        };
        if !synced {
            continue;
        }
        let (wanted, skipped) = peers::peers(
            store.state().iter().map(|n| n.as_ref()),
            &config.node_name,
            own,
            config.backend,
        );
        if !force && applied.as_ref() == Some(&wanted) {
            continue;
        }
        let mut now_reported = BTreeSet::new();
        for s in skipped {
            let line = format!(
                "node {} is not reachable over the pod network: {}",
                s.node, s.reason
            );
            if !reported.contains(&line) {
                tracing::warn!("{line}");
            }
            now_reported.insert(line);
        }
        for (node, e) in dataplane.apply(&wanted) {
            let line = format!("programming the pod network route to node {node} failed: {e}");
            if !reported.contains(&line) {
                tracing::warn!("{line}");
            }
            now_reported.insert(line);
        }
        reported = now_reported;
        if applied.as_ref() != Some(&wanted) {
            tracing::info!(node = %config.node_name, peers = ?wanted.keys().collect::<Vec<_>>(), "pod network routes updated");
        }
        applied = Some(wanted);
    }
}
