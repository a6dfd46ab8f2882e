//! Node lifecycle: a node whose agent has not renewed its Lease within the
//! grace period is marked `Unknown` and tainted unreachable (NoSchedule and
//! NoExecute), and its pods are marked not ready; pods that do not tolerate
//! a node's NoExecute taints (long enough) are then evicted: marked
//! `DisruptionTarget` and deleted with their grace period. This is what
//! Kubernetes' node lifecycle and taint eviction controllers do, with their
//! events. A pod evicted from an unreachable node stays Terminating until
//! its node comes back to confirm, as in Kubernetes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Event, EventSource, Node, NodeCondition, ObjectReference, Pod, PodCondition, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

use crate::Config;

pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The event sources Kubernetes uses for these actions.
const NODE_CONTROLLER: &str = "node-controller";
const TAINT_EVICTION_CONTROLLER: &str = "taint-eviction-controller";

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
    for condition in &mut conditions {
        condition.status = "Unknown".into();
        condition.reason = Some("NodeStatusUnknown".into());
        condition.message = Some("Kubelet stopped posting node status.".into());
        condition.last_transition_time = Some(Time(now));
    }
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_heartbeat_time: node.metadata.creation_timestamp.clone(),
            last_transition_time: Some(Time(now)),
        });
    }
    conditions
}

/// Whether `toleration` tolerates `taint`, as Kubernetes matches them: the
/// effects agree (an empty effect matches all), and either `Exists` with the
/// same key (an empty key matches every taint) or an equal key and value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    let exists = toleration.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists;
    }
    key == taint.key
        && (exists
            || toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default())
}

/// When a pod on a node with `taints` must be evicted, or None if it
/// tolerates every NoExecute taint for ever. Each NoExecute taint is
/// tolerated for the tolerationSeconds of the first toleration matching it,
/// counted from when the taint was added (`added`); a taint that no
/// toleration matches evicts the pod at once.
pub fn eviction_time(
    pod: &Pod,
    taints: &[Taint],
    added: impl Fn(&Taint) -> DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .filter_map(|taint| {
            let since = added(taint);
            match tolerations.iter().find(|t| tolerates(t, taint)) {
                None => Some(since),
                Some(t) => t
                    .toleration_seconds
                    .map(|s| since + chrono::Duration::seconds(s.max(0))),
            }
        })
        .min()
}

pub async fn run(clients: &crate::Clients, config: Config) -> anyhow::Result<()> {
    if config.node_monitor_period.is_zero() {
        anyhow::bail!("node lifecycle: the node monitor period must be positive");
    }
    let mut controller = Controller {
        reader: clients.informers(),
        client: clients.controller("node-controller"),
        config,
        first_seen: HashMap::new(),
    };
    let mut ticker = tokio::time::interval(controller.config.node_monitor_period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(err) = controller.check().await {
            tracing::warn!(%err, "node lifecycle: check failed; retrying");
        }
    }
}

struct Controller {
    /// For lists (the controller manager's identity).
    reader: kube::Client,
    /// For writes (the node-controller service account).
    client: kube::Client,
    config: Config,
    /// When this controller first saw each NoExecute taint that carries no
    /// timeAdded, by node and taint key: its toleration clock starts there.
    first_seen: HashMap<(String, String), DateTime<Utc>>,
}

impl Controller {
    async fn check(&mut self) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.reader.clone());
        let leases: Api<Lease> = Api::namespaced(self.reader.clone(), "kube-node-lease");
        let leases = leases.list(&ListParams::default()).await?.items;
        let nodes = nodes.list(&ListParams::default()).await?.items;
        let now = Utc::now();
        let mut still_tainted = HashSet::new();
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let lease = leases
                .iter()
                .find(|l| l.metadata.name.as_deref() == Some(name.as_str()));
            let action = decide(node, lease, now, self.config.node_monitor_grace);
            let result = match action {
                NodeAction::Nothing => Ok(()),
                NodeAction::MarkUnreachable => self.mark_unreachable(node, now).await,
                NodeAction::ClearUnreachable => self.clear_unreachable(node).await,
            };
            if let Err(err) = result {
                tracing::warn!(node = %name, "node lifecycle: {err:#}; retrying");
            }
            if action == NodeAction::ClearUnreachable {
                // `node` still shows the taints just removed: no evictions
                // for them.
                continue;
            }
            let no_execute: Vec<&Taint> = taints(node)
                .iter()
                .filter(|t| t.effect == "NoExecute")
                .collect();
            if no_execute.is_empty() {
                continue;
            }
            for taint in &no_execute {
                if taint.time_added.is_none() {
                    let key = (name.clone(), taint.key.clone());
                    self.first_seen.entry(key.clone()).or_insert(now);
                    still_tainted.insert(key);
                }
            }
            if let Err(err) = self.evict_intolerant_pods(node, now).await {
                tracing::warn!(node = %name, "taint eviction: {err:#}; retrying");
            }
        }
        self.first_seen.retain(|key, _| still_tainted.contains(key));
        Ok(())
    }

    async fn clear_unreachable(&self, node: &Node) -> anyhow::Result<()> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let kept: Vec<&Taint> = taints(node)
            .iter()
            .filter(|t| t.key != UNREACHABLE_TAINT)
            .collect();
        let patch = serde_json::json!({"spec": {"taints": kept}});
        Api::<Node>::all(self.client.clone())
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("removing the unreachable taints from node {name}"))?;
        tracing::info!(node = %name, "node is reporting again; removed unreachable taints");
        Ok(())
    }

    async fn mark_unreachable(&self, node: &Node, now: DateTime<Utc>) -> anyhow::Result<()> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let nodes: Api<Node> = Api::all(self.client.clone());
        tracing::warn!(node = %name, "node stopped renewing its lease; marking it Unknown");
        let was_ready = ready_condition(node).is_some_and(|c| c.status == "True");
        let status = serde_json::json!({"status": {"conditions": unknown_conditions(node, now)}});
        nodes
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .with_context(|| format!("marking node {name} Unknown"))?;
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
            .await
            .with_context(|| format!("tainting node {name} unreachable"))?;
        if !was_ready {
            return Ok(());
        }
        // As Kubernetes does when a node goes from Ready to not ready.
        let node_ref = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.clone()),
            uid: node.metadata.uid.clone(),
            ..Default::default()
        };
        self.record_event(
            node_ref,
            "Normal",
            "NodeNotReady",
            &format!("Node {name} status is now: NodeNotReady"),
            NODE_CONTROLLER,
        )
        .await;
        for pod in self.pods_on(&name).await? {
            self.mark_pod_not_ready(pod, now).await?;
        }
        Ok(())
    }

    async fn pods_on(&self, node: &str) -> anyhow::Result<Vec<Pod>> {
        let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
        Ok(Api::<Pod>::all(self.reader.clone())
            .list(&on_node)
            .await
            .with_context(|| format!("listing the pods on node {node}"))?
            .items)
    }

    /// Turns the pod's Ready condition False (if it has one that is not),
    /// with a NodeNotReady event.
    async fn mark_pod_not_ready(&self, pod: Pod, now: DateTime<Utc>) -> anyhow::Result<()> {
        let (Some(name), Some(ns)) = (pod.metadata.name.clone(), pod.metadata.namespace.clone())
        else {
            return Ok(());
        };
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let Some(ready) = conditions
            .iter_mut()
            .find(|c| c.type_ == "Ready" && c.status != "False")
        else {
            return Ok(());
        };
        ready.status = "False".into();
        ready.last_transition_time = Some(Time(now));
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        match pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(e) if is_not_found(&e) => return Ok(()),
            result => result.with_context(|| format!("marking pod {ns}/{name} not ready"))?,
        };
        self.record_event(
            pod_ref(&pod),
            "Warning",
            "NodeNotReady",
            "Node is not ready",
            NODE_CONTROLLER,
        )
        .await;
        Ok(())
    }

    async fn evict_intolerant_pods(&self, node: &Node, now: DateTime<Utc>) -> anyhow::Result<()> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let added = |taint: &Taint| {
            taint
                .time_added
                .as_ref()
                .map(|t| t.0)
                .or_else(|| {
                    self.first_seen
                        .get(&(name.clone(), taint.key.clone()))
                        .copied()
                })
                .unwrap_or(now)
        };
        for pod in self.pods_on(&name).await? {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if eviction_time(&pod, taints(node), added).is_some_and(|at| at <= now) {
                self.evict(&pod, &name).await?;
            }
        }
        Ok(())
    }

    /// Marks the pod as a disruption target and deletes it (with its grace
    /// period), as Kubernetes' taint eviction controller does.
    async fn evict(&self, pod: &Pod, node: &str) -> anyhow::Result<()> {
        let (Some(name), Some(ns)) = (
            pod.metadata.name.as_deref(),
            pod.metadata.namespace.as_deref(),
        ) else {
            return Ok(());
        };
        tracing::warn!(node, pod = %format!("{ns}/{name}"), "evicting pod: it does not tolerate the node's NoExecute taints");
        self.record_event(
            pod_ref(pod),
            "Normal",
            "TaintManagerEviction",
            &format!("Marking for deletion Pod {ns}/{name}"),
            TAINT_EVICTION_CONTROLLER,
        )
        .await;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if !conditions
            .iter()
            .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        {
            conditions.retain(|c| c.type_ != "DisruptionTarget");
            conditions.push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByTaintManager".into()),
                message: Some("Taint manager: deleting due to NoExecute taint".into()),
                last_transition_time: Some(Time(Utc::now())),
                ..Default::default()
            });
            let patch = serde_json::json!({"status": {"conditions": conditions}});
            match pods
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Err(e) if is_not_found(&e) => return Ok(()),
                result => {
                    result.with_context(|| format!("marking pod {ns}/{name} for eviction"))?
                }
            };
        }
        match pods.delete(name, &DeleteParams::default()).await {
            Err(e) if is_not_found(&e) => Ok(()),
            result => result
                .map(|_| ())
                .with_context(|| format!("evicting pod {ns}/{name}")),
        }
    }

    /// Records a core/v1 Event like client-go's event recorder; failing to
    /// record one is logged, not fatal.
    async fn record_event(
        &self,
        object: ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let now = Utc::now();
        // Events about cluster-scoped objects (nodes) live in "default".
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".into());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    object.name.as_deref().unwrap_or_default(),
                    now.timestamp_nanos_opt().unwrap_or_default()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object,
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            source: Some(EventSource {
                component: Some(component.into()),
                host: None,
            }),
            reporting_component: Some(component.into()),
            reporting_instance: Some(component.into()),
            ..Default::default()
        };
        if let Err(err) = Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await
        {
            tracing::warn!(reason, "node lifecycle: could not record event: {err}");
        }
    }
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec};
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

    fn unreachable(effect: &str) -> Taint {
        Taint {
            key: UNREACHABLE_TAINT.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, operator: &str, effect: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(operator.into()),
            effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
            toleration_seconds: seconds,
            ..Default::default()
        }
    }

    #[test]
    fn tolerations_match_like_kubernetes() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoExecute".into(),
            time_added: None,
        };
        assert!(tolerates(&toleration("", "Exists", "", None), &taint));
        assert!(tolerates(
            &toleration("dedicated", "Exists", "NoExecute", None),
            &taint
        ));
        assert!(!tolerates(
            &toleration("dedicated", "Exists", "NoSchedule", None),
            &taint
        ));
        let mut equal = toleration("dedicated", "Equal", "", None);
        equal.value = Some("db".into());
        assert!(tolerates(&equal, &taint));
        equal.value = Some("web".into());
        assert!(!tolerates(&equal, &taint));
        // An empty key matches everything only with Exists.
        assert!(!tolerates(&toleration("", "Equal", "", None), &taint));
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
        let t0 = Utc::now();
        let at = |_: &Taint| t0;
        let taints = [unreachable("NoSchedule"), unreachable("NoExecute")];
        assert_eq!(eviction_time(&pod(vec![]), &taints, at), Some(t0));
        let bounded = toleration(UNREACHABLE_TAINT, "Exists", "NoExecute", Some(300));
        assert_eq!(
            eviction_time(&pod(vec![bounded.clone()]), &taints, at),
            Some(t0 + chrono::Duration::seconds(300))
        );
        let forever = toleration(UNREACHABLE_TAINT, "Exists", "NoExecute", None);
        assert_eq!(
            eviction_time(&pod(vec![forever.clone()]), &taints, at),
            None
        );
        // Every NoExecute taint must be tolerated.
        let mut both = taints.to_vec();
        both.push(Taint {
            key: "maintenance".into(),
            effect: "NoExecute".into(),
            ..Default::default()
        });
        assert_eq!(eviction_time(&pod(vec![forever]), &both, at), Some(t0));
        // NoSchedule taints alone never evict.
        assert_eq!(
            eviction_time(&pod(vec![]), &[unreachable("NoSchedule")], at),
            None
        );
    }

    #[test]
    fn unknown_conditions_cover_ready() {
        let never = unknown_conditions(&node(vec![]), Utc::now());
        assert_eq!(never.len(), 1);
        assert_eq!(never[0].type_, "Ready");
        assert_eq!(never[0].status, "Unknown");
        assert_eq!(never[0].reason.as_deref(), Some("NodeStatusNeverUpdated"));

        let mut reported = node(vec![]);
        reported.status = Some(k8s_openapi::api::core::v1::NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let stopped = unknown_conditions(&reported, Utc::now());
        assert_eq!(stopped.len(), 1);
        assert_eq!(stopped[0].status, "Unknown");
        assert_eq!(stopped[0].reason.as_deref(), Some("NodeStatusUnknown"));
    }
}
