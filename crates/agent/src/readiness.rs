//! Whether the node is Ready, decided as the kubelet does: its container
//! runtime can run containers (CRI's RuntimeReady) and pods get a network
//! (NetworkReady, which here also covers a pod CIDR being assigned and the
//! pod network between nodes being up). When not, the node's Ready
//! condition is False with reason `KubeletNotReady` and the kubelet's
//! message, e.g. `container runtime network not ready: NetworkReady=false
//! reason:NetworkPluginNotReady message:...`.

use orca_runtime::{Runtime, RuntimeCondition};
use tokio::sync::watch;

/// The kubelet's Ready reason when a check fails.
pub const NOT_READY_REASON: &str = "KubeletNotReady";

fn describe(kind: &str, c: &RuntimeCondition) -> String {
    format!(
        "{kind}={} reason:{} message:{}",
        c.status, c.reason, c.message
    )
}

fn network_not_ready(message: String) -> RuntimeCondition {
    RuntimeCondition {
        status: false,
        reason: "NetworkPluginNotReady".into(),
        message,
    }
}

/// The Ready condition's message when the node is not ready; None when it is.
/// `runtime` is None before the runtime exists (waiting for a pod CIDR).
pub async fn problem(
    runtime: Option<&dyn Runtime>,
    network: Option<&watch::Receiver<Option<String>>>,
    node: &str,
) -> Option<String> {
    let mut errors = Vec::new();
    let (runtime_ready, mut network_ready) = match runtime {
        Some(r) => {
            let s = r.status().await;
            (Some(s.runtime_ready), s.network_ready)
        }
        None => (
            None,
            network_not_ready(format!(
                "node {node} has no pod CIDR (spec.podCIDR) yet; is the control plane's node IPAM controller running?"
            )),
        ),
    };
    if network_ready.status {
        if let Some(message) = network.and_then(|n| n.borrow().clone()) {
            network_ready = network_not_ready(message);
        }
    }
    match runtime_ready {
        None => {
            errors.push("container runtime status check may not have completed yet".to_string())
        }
        Some(c) if !c.status => errors.push(format!(
            "container runtime not ready: {}",
            describe("RuntimeReady", &c)
        )),
        Some(_) => {}
    }
    if !network_ready.status {
        errors.push(format!(
            "container runtime network not ready: {}",
            describe("NetworkReady", &network_ready)
        ));
    }
    // As Kubernetes' aggregate error prints.
    match errors.len() {
        0 => None,
        1 => errors.pop(),
        _ => Some(format!("[{}]", errors.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn before_the_runtime_the_node_waits_for_its_network() {
        let message = problem(None, None, "n1").await.unwrap();
        assert!(
            message.starts_with("[container runtime status check may not have completed yet, container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:node n1 has no pod CIDR"),
            "{message}"
        );
    }

    #[test]
    fn conditions_print_as_the_kubelet_prints_them() {
        let c = network_not_ready("the pod network (vxlan backend) could not be set up".into());
        assert_eq!(
            describe("NetworkReady", &c),
            "NetworkReady=false reason:NetworkPluginNotReady message:the pod network (vxlan backend) could not be set up"
        );
    }
}
