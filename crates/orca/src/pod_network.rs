//! The pod network between this node and the others (orca-overlay), run
//! beside the node agent, which reports it in the node's Ready condition.

use std::future::Future;
use std::net::IpAddr;

use tokio::sync::watch;

/// The overlay of a node at `node_ip` with `pod_cidr`, or None when there is
/// no backend or the address cannot carry one (loopback: a single machine).
pub fn config(
    backend: Option<orca_overlay::Backend>,
    node_name: &str,
    node_ip: IpAddr,
    pod_cidr: &str,
) -> Option<orca_overlay::Config> {
    let backend = backend?;
    match node_ip {
        IpAddr::V4(ip) if !ip.is_loopback() => {
            Some(orca_overlay::Config::new(node_name, ip, pod_cidr, backend))
        }
        _ => {
            tracing::warn!(
                %node_ip,
                "no pod network to other nodes: the node address is not an IPv4 address other nodes can reach; pass --node-ip"
            );
            None
        }
    }
}

/// Runs `agent` (built with the receiver of the overlay's readiness) with
/// the overlay beside it, until the agent ends; dropping this removes the
/// overlay.
pub async fn run_with<T>(
    client: kube::Client,
    overlay: Option<orca_overlay::Config>,
    agent: impl FnOnce(Option<watch::Receiver<Option<String>>>) -> T,
) -> T::Output
where
    T: Future,
{
    let Some(overlay) = overlay else {
        return agent(None).await;
    };
    let (problem, readiness) = watch::channel(Some(format!(
        "the pod network ({} backend) is not set up yet",
        overlay.backend.name()
    )));
    let agent = agent(Some(readiness));
    tokio::pin!(agent);
    tokio::select! {
        r = &mut agent => r,
        _ = orca_overlay::run(client, overlay, problem) => {
            tracing::error!("the pod network between nodes stopped: its watch of nodes ended");
            agent.await
        }
    }
}
