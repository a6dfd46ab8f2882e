//! Node lifecycle: a node whose agent has not renewed its Lease within the
//! grace period is marked `Unknown` and tainted unreachable, and its pods
//! are marked not ready; pods that do not tolerate the taint long enough are
//! then evicted (deleted), as Kubernetes' node lifecycle controller does.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

use crate::Config;

pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// When the node last proved it is alive: its Lease's renew time, or else its
/// Ready condition's heartbeat.
pub fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<DateTime<Utc>> {
    let from_lease = lease
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
        .map(|t| t.0);
    let from_status = ready_condition(node)
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    from_lease.into_iter().chain(from_status).max()
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// What the controller should do about one node.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeAction {
    /// Heartbeats are fresh and the node carries no unreachable taint.
    Nothing,
    /// Heartbeats stopped: mark it Unknown and taint it.
    MarkUnreachable,
    /// Heartbeats resumed: drop the unreachable taints.
    ClearUnreachable,
}

pub fn decide(
    node: &Node,
    lease: Option<&Lease>,
    now: DateTime<Utc>,
    grace: Duration,
) -> NodeAction {
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let Some(seen) = last_heartbeat(node, lease).or(created) else {
        return NodeAction::Nothing;
    };
    let stale = now
        .signed_duration_since(seen)
        .to_std()
        .is_ok_and(|age| age > grace);
    let tainted = taints(node).iter().any(|t| t.key == UNREACHABLE_TAINT);
    match (stale, tainted) {
        (true, false) => NodeAction::MarkUnreachable,
        (false, true) => NodeAction::ClearUnreachable,
        _ => NodeAction::Nothing,
    }
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The node's conditions with every status turned `Unknown`.
pub fn unknown_conditions(node: &Node, now: DateTime<Utc>) -> Vec<NodeCondition> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            ..Default::default()
        });
    }
    for condition in &mut conditions {
        condition.status = "Unknown".into();
        condition.reason = Some("NodeStatusUnknown".into());
        condition.message = Some("Kubelet stopped posting node status.".into());
        condition.last_transition_time = Some(Time(now));
    }
    conditions
}

/// How long a pod tolerates the unreachable NoExecute taint (None = forever).
pub fn unreachable_toleration(pod: &Pod) -> Option<Duration> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut matching = tolerations.iter().filter(|t| {
        let key_matches = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(key) => key == UNREACHABLE_TAINT,
        };
        let effect_matches = matches!(t.effect.as_deref(), None | Some("") | Some("NoExecute"));
        key_matches && effect_matches
    });
    match matching.next() {
        None => Some(Duration::ZERO),
        Some(t) => t
            .toleration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64)),
    }
}

pub async fn run(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    loop {
        ticker.tick().await;
        if let Err(err) = check(&client, &config).await {
            tracing::warn!(%err, "node lifecycle: check failed; retrying");
        }
    }
}

async fn check(client: &kube::Client, config: &Config) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let leases = leases.list(&ListParams::default()).await?.items;
    let now = Utc::now();
    for node in nodes.list(&ListParams::default()).await?.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        let lease = leases
            .iter()
            .find(|l| l.metadata.name.as_deref() == Some(name.as_str()));
        match decide(&node, lease, now, config.node_monitor_grace) {
            NodeAction::Nothing => {}
            NodeAction::MarkUnreachable => mark_unreachable(client, &node, now).await?,
            NodeAction::ClearUnreachable => {
                let kept: Vec<&Taint> = taints(&node)
                    .iter()
                    .filter(|t| t.key != UNREACHABLE_TAINT)
                    .collect();
                let patch = serde_json::json!({"spec": {"taints": kept}});
                nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                tracing::info!(node = %name, "node is reporting again; removed unreachable taints");
            }
        }
        if taints(&node)
            .iter()
            .any(|t| t.key == UNREACHABLE_TAINT && t.effect == "NoExecute")
        {
            evict_intolerant_pods(client, &node, now).await?;
        }
    }
    Ok(())
}

async fn mark_unreachable(
    client: &kube::Client,
    node: &Node,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let nodes: Api<Node> = Api::all(client.clone());
    tracing::warn!(node = %name, "node stopped renewing its lease; marking it Unknown");
    let status = serde_json::json!({"status": {"conditions": unknown_conditions(node, now)}});
    nodes
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let mut new_taints: Vec<Taint> = taints(node).to_vec();
    for effect in ["NoSchedule", "NoExecute"] {
        new_taints.push(Taint {
            key: UNREACHABLE_TAINT.into(),
            effect: effect.into(),
            time_added: Some(Time(now)),
            value: None,
        });
    }
    let patch = serde_json::json!({"spec": {"taints": new_taints}});
    nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;

    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={name}"));
    for pod in pods.list(&on_node).await?.items {
        let (Some(pod_name), Some(ns)) =
            (pod.metadata.name.clone(), pod.metadata.namespace.clone())
        else {
            continue;
        };
        let mut conditions = pod.status.and_then(|s| s.conditions).unwrap_or_default();
        for condition in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
            if condition.status != "False" {
                condition.status = "False".into();
                condition.last_transition_time = Some(Time(now));
            }
        }
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        Api::<Pod>::namespaced(client.clone(), &ns)
            .patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

async fn evict_intolerant_pods(
    client: &kube::Client,
    node: &Node,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let tainted_at = taints(node)
        .iter()
        .find(|t| t.key == UNREACHABLE_TAINT && t.effect == "NoExecute")
        .and_then(|t| t.time_added.as_ref())
        .map_or(now, |t| t.0);
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={name}"));
    for pod in pods.list(&on_node).await?.items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(tolerated) = unreachable_toleration(&pod) else {
            continue;
        };
        let expired = now
            .signed_duration_since(tainted_at)
            .to_std()
            .is_ok_and(|age| age >= tolerated);
        if expired {
            let (Some(pod_name), Some(ns)) = (pod.metadata.name, pod.metadata.namespace) else {
                continue;
            };
            tracing::warn!(node = %name, pod = %format!("{ns}/{pod_name}"), "evicting pod from unreachable node");
            Api::<Pod>::namespaced(client.clone(), &ns)
                .delete(&pod_name, &DeleteParams::default())
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, Toleration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn node(taints: Vec<Taint>) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n1".into()),
                creation_timestamp: Some(Time(Utc::now() - chrono::Duration::hours(1))),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn lease(age_secs: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(Utc::now() - chrono::Duration::seconds(age_secs))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn stale_lease_marks_node_unreachable_once() {
        let grace = Duration::from_secs(40);
        let now = Utc::now();
        assert_eq!(
            decide(&node(vec![]), Some(&lease(5)), now, grace),
            NodeAction::Nothing
        );
        assert_eq!(
            decide(&node(vec![]), Some(&lease(60)), now, grace),
            NodeAction::MarkUnreachable
        );
        let tainted = node(vec![Taint {
            key: UNREACHABLE_TAINT.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }]);
        assert_eq!(
            decide(&tainted, Some(&lease(60)), now, grace),
            NodeAction::Nothing
        );
        assert_eq!(
            decide(&tainted, Some(&lease(1)), now, grace),
            NodeAction::ClearUnreachable
        );
    }

    #[test]
    fn tolerations_bound_eviction() {
        let pod = |tolerations| Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(unreachable_toleration(&pod(vec![])), Some(Duration::ZERO));
        let defaulted = Toleration {
            key: Some(UNREACHABLE_TAINT.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(300),
            ..Default::default()
        };
        assert_eq!(
            unreachable_toleration(&pod(vec![defaulted])),
            Some(Duration::from_secs(300))
        );
        let forever = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(unreachable_toleration(&pod(vec![forever])), None);
    }

    #[test]
    fn unknown_conditions_cover_ready() {
        let conditions = unknown_conditions(&node(vec![]), Utc::now());
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, "Ready");
        assert_eq!(conditions[0].status, "Unknown");
        assert_eq!(conditions[0].reason.as_deref(), Some("NodeStatusUnknown"));
    }
}
