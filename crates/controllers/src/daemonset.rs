//! The DaemonSet controller, as kube-controller-manager's: one pod per node
//! that should run it, judged as Kubernetes does (`nodeName`, nodeSelector,
//! required node affinity, and NoSchedule/NoExecute taints against the
//! template's tolerations plus the DaemonSet defaults: not-ready and
//! unreachable NoExecute, the pressure and unschedulable NoSchedule ones).
//! Pods go to their node through the scheduler, pinned by a required node
//! affinity term on `metadata.name`. A node that stops qualifying loses its
//! pod (a NoSchedule taint alone keeps a running one), nodes that join get
//! one, failed pods are replaced, extra pods on a node deleted.
//!
//! Templates are kept as ControllerRevisions ([`crate::revisions`]); pods
//! carry `controller-revision-hash` and `pod-template-generation`. A
//! RollingUpdate deletes old pods while at most `maxUnavailable` of the
//! desired pods are unavailable (an old pod already unavailable goes at
//! once); with `maxSurge` it instead starts a new pod beside the old one on
//! up to maxSurge nodes at a time and deletes the old one once the new one
//! is available. Succeeded and failed pods are deleted and replaced.
//! OnDelete leaves old pods until deleted by hand.
//!
//! Reads: daemonsets, nodes, pods, controllerrevisions. Writes: pods,
//! controllerrevisions, daemonsets/status, events
//! (`system:controller:daemon-set-controller`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, Pod, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Client, ResourceExt};

use crate::events::Recorder;
use crate::lifecycle::tolerates;
use crate::pods::{self, Expectations};
use crate::revisions;
use crate::wiring::{controller_key, key_of, Key, Wiring};

const NAME: &str = "daemon-set-controller";
const WORKERS: usize = 2;
const BURST: usize = 250;
pub const GENERATION_LABEL: &str = "pod-template-generation";

struct Controller {
    client: Client,
    sets: Store<DaemonSet>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    events: Recorder,
}

pub async fn run(clients: &crate::Clients) -> anyhow::Result<()> {
    let writer = clients.controller(NAME);
    let mut w = Wiring::new(NAME, clients.informers());
    let sets = w.watch(|ds: &DaemonSet| Some(key_of(ds)));
    // A node change may change where every DaemonSet runs: they all sync,
    // once a whole list has come (not once per node listed).
    let nodes = w.watch_events({
        let sets = sets.clone();
        move |ev: &Event<Node>| {
            matches!(ev, Event::Apply(_) | Event::Delete(_) | Event::InitDone).then(|| {
                sets.state()
                    .iter()
                    .map(|ds| key_of(ds.as_ref()))
                    .collect::<Vec<_>>()
            })
        }
    });
    let pods = w.watch(|p: &Pod| controller_key(p, "DaemonSet"));
    let revisions = w.watch(|r: &ControllerRevision| controller_key(r, "DaemonSet"));
    let c = Arc::new(Controller {
        client: writer.clone(),
        sets,
        nodes,
        pods,
        revisions,
        expectations: Expectations::default(),
        events: Recorder::new(writer, NAME),
    });
    w.run(c, WORKERS, |c, key| async move { c.sync(&key).await })
        .await;
    Ok(())
}

/// The tolerations every DaemonSet pod gets (`AddOrUpdateDaemonPodTolerations`).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut all = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        all.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    all
}

/// The template's tolerations with the defaults it lacks.
fn tolerations(ds: &DaemonSet) -> Vec<Toleration> {
    let spec = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let mut all: Vec<Toleration> = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    for d in default_tolerations(host_network) {
        if !all
            .iter()
            .any(|t| t.key == d.key && t.effect == d.effect && t.operator == d.operator)
        {
            all.push(d);
        }
    }
    all
}

/// Whether the template's nodeSelector and required node affinity admit
/// the node (an empty term admits nothing, as in Kubernetes).
fn node_selected(ds: &DaemonSet, node: &Node) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_none_or(|spec| {
            orca_api::node_affinity::pod_matches_node(spec, &node.name_any(), node.labels())
        })
}

/// (should run a pod there, may keep one running there): `NodeShouldRunDaemonPod`.
pub fn should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let pinned = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty());
    if pinned.is_some_and(|n| n != node.name_any()) || !node_selected(ds, node) {
        return (false, false);
    }
    let tolerations = tolerations(ds);
    let untolerated = |effect: &str| {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|t: &&Taint| t.effect == effect)
            .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
    };
    let no_execute = untolerated("NoExecute");
    let no_schedule = untolerated("NoSchedule");
    (!no_execute && !no_schedule, !no_execute)
}

/// The node a daemon pod is for: its nodeName, else its affinity's name.
fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

/// The pod for `node`: the template, the default tolerations, the node
/// affinity pinning it to the node (replacing any required terms, which
/// already matched), and the revision labels.
fn daemon_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let me = pods::controller_ref(
        "apps/v1",
        "DaemonSet",
        &ds.name_any(),
        &ds.uid().unwrap_or_default(),
    );
    let mut pod = pods::pod_from_template(
        &template,
        &ds.namespace().unwrap_or_default(),
        &ds.name_any(),
        me,
    );
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(revisions::HASH_LABEL.into(), hash.into());
    labels.insert(
        GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(1).to_string(),
    );
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.tolerations = Some(tolerations(ds));
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
    pod
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// A count or a percentage of the desired count, rounded up.
fn scaled(v: IntOrString, desired: i32) -> i32 {
    match v {
        IntOrString::Int(i) => i,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            ((pct * i64::from(desired) + 99) / 100) as i32
        }
    }
}

fn rolling_update(ds: &DaemonSet) -> Option<&RollingUpdateDaemonSet> {
    ds.spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()
}

/// maxUnavailable as a number of pods; at least one.
fn max_unavailable(ds: &DaemonSet, desired: i32) -> i32 {
    let v = rolling_update(ds)
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    scaled(v, desired).max(1)
}

/// maxSurge as a number of nodes running an old and a new pod at once; 0
/// when the update replaces pods without surging.
fn max_surge(ds: &DaemonSet, desired: i32) -> i32 {
    rolling_update(ds)
        .and_then(|r| r.max_surge.clone())
        .map_or(0, |v| scaled(v, desired.max(1)))
}

/// A node that should run the DaemonSet, and its live pods of the current
/// revision and of older ones (one each at most once the node is tidied).
struct NodePods {
    node: String,
    new: Option<Arc<Pod>>,
    old: Option<Arc<Pod>>,
}

/// Nodes that get a pod of the current revision beside their old one now:
/// every node whose old pod is unavailable, and as many others as maxSurge
/// leaves room for beside the new pods not yet available (Kubernetes'
/// surge path of `rollingUpdate`).
fn surge_nodes(
    ds: &DaemonSet,
    on_nodes: &[NodePods],
    desired: i32,
    min_ready: i32,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut surging = 0;
    let mut replace = Vec::new();
    let mut candidates = Vec::new();
    for n in on_nodes {
        match (&n.new, &n.old) {
            (None, Some(old)) if !pods::is_available(old, min_ready, now) => {
                replace.push(n.node.clone())
            }
            (None, Some(_)) => candidates.push(n.node.clone()),
            (Some(new), Some(_)) if !pods::is_available(new, min_ready, now) => surging += 1,
            _ => {}
        }
    }
    let room = (max_surge(ds, desired) - surging).max(0) as usize;
    replace.extend(candidates.into_iter().take(room));
    replace
}

impl Controller {
    async fn sync(&self, key: &Key) -> anyhow::Result<Option<Duration>> {
        let (ns, name) = key;
        let Some(ds) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(&format!("{ns}/{name}"));
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let exp_key = format!("{ns}/{name}");
        let uid = ds.uid().unwrap_or_default();
        let spec = ds.spec.clone().unwrap_or_default();
        let owned: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .filter(|p| pods::controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let in_use: BTreeSet<String> = owned
            .iter()
            .filter_map(|p| p.labels().get(revisions::HASH_LABEL).cloned())
            .collect();
        let current = revisions::sync(
            &self.client,
            &self.revisions,
            &revisions::Owner {
                api_version: "apps/v1",
                kind: "DaemonSet",
                namespace: ns,
                name,
                uid: &uid,
                template: &spec.template,
                history_limit: spec.revision_history_limit.unwrap_or(10),
            },
            &in_use,
        )
        .await?;
        let hash = current.hash;

        let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for p in owned
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            by_node
                .entry(target_node(p).unwrap_or_default())
                .or_default()
                .push(p.clone());
        }
        let nodes = self.nodes.state();
        let mut create_on: Vec<String> = Vec::new();
        let mut delete: Vec<Arc<Pod>> = Vec::new();
        let reference = ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("DaemonSet".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: Some(uid.clone()),
            ..Default::default()
        };
        let now = Utc::now();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let desired = nodes.iter().filter(|n| should_run(&ds, n).0).count() as i32;
        let surging = max_surge(&ds, desired) > 0;
        // Per node: whether it should run a pod, and the pod there.
        let mut placed: Vec<(bool, Option<Arc<Pod>>)> = Vec::new();
        let mut on_nodes: Vec<NodePods> = Vec::new();
        for node in &nodes {
            let (run, keep) = should_run(&ds, node);
            let mut here = by_node.remove(&node.name_any()).unwrap_or_default();
            if run && here.is_empty() {
                create_on.push(node.name_any());
            } else if run {
                let (ended, mut live): (Vec<_>, Vec<_>) = here
                    .drain(..)
                    .partition(|p| matches!(phase(p), "Failed" | "Succeeded"));
                for p in ended {
                    let (failed, pod, node) =
                        (phase(&p) == "Failed", p.name_any(), node.name_any());
                    if failed {
                        let msg = format!(
                            "Found failed daemon pod {ns}/{pod} on node {node}, will try to kill it"
                        );
                        self.events
                            .warning(&reference, "FailedDaemonPod", &msg)
                            .await;
                    } else {
                        let msg = format!(
                            "Found succeeded daemon pod {ns}/{pod} on node {node}, will try to delete it"
                        );
                        self.events
                            .normal(&reference, "SucceededDaemonPod", &msg)
                            .await;
                    }
                    delete.push(p);
                }
                live.sort_by_key(|p| p.creation_timestamp().map(|t| t.0));
                // The oldest pod stands for the node in the status.
                placed.push((true, live.first().cloned()));
                if !surging {
                    // One pod per node: the oldest stays.
                    if live.len() > 1 {
                        delete.extend(live.drain(1..));
                    }
                    continue;
                }
                // Surging: the oldest new pod and the oldest old pod stay;
                // the old one goes once the new one is available (or at
                // once if it is not even ready).
                let (mut new, mut old): (Vec<_>, Vec<_>) = live
                    .into_iter()
                    .partition(|p| p.labels().get(revisions::HASH_LABEL) == Some(&hash));
                delete.extend(new.drain(new.len().min(1)..));
                delete.extend(old.drain(old.len().min(1)..));
                let (new, mut old) = (new.pop(), old.pop());
                if let (Some(n), Some(o)) = (&new, &old) {
                    if !pods::is_ready(o) || pods::is_available(n, min_ready, now) {
                        delete.push(o.clone());
                        old = None;
                    }
                }
                on_nodes.push(NodePods {
                    node: node.name_any(),
                    new,
                    old,
                });
                continue;
            } else if !keep {
                delete.append(&mut here);
            }
            placed.push((run, here.into_iter().next()));
        }
        // Pods for nodes that no longer exist.
        delete.extend(by_node.into_values().flatten());

        let satisfied = self.expectations.satisfied(&exp_key, |n| {
            owned
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(n))
                .map(|p| p.metadata.deletion_timestamp.is_some())
        });
        let mut next = None;
        if satisfied {
            let rolling = spec
                .update_strategy
                .as_ref()
                .and_then(|u| u.type_.as_deref())
                .unwrap_or("RollingUpdate")
                == "RollingUpdate";
            if rolling && surging {
                create_on.extend(surge_nodes(&ds, &on_nodes, desired, min_ready, now));
            } else if rolling && create_on.is_empty() && delete.is_empty() {
                delete.extend(self.rolling_victims(&ds, &placed, &hash, min_ready));
            }
            // Deletions first: a surge's old pod is gone before the next
            // node's new pod comes.
            self.delete(&exp_key, &delete, &reference).await;
            self.create(&ds, &exp_key, &hash, &create_on, &reference)
                .await;
        }

        // Status.
        let on_desired: Vec<&Arc<Pod>> = placed
            .iter()
            .filter(|(run, _)| *run)
            .filter_map(|(_, p)| p.as_ref())
            .collect();
        let misscheduled = placed
            .iter()
            .filter(|(run, p)| !*run && p.is_some())
            .count() as i32;
        let ready = on_desired.iter().filter(|p| pods::is_ready(p)).count() as i32;
        let available = on_desired
            .iter()
            .filter(|p| pods::is_available(p, min_ready, now))
            .count() as i32;
        if let Some(d) = on_desired
            .iter()
            .filter_map(|p| pods::until_available(p, min_ready, now))
            .min()
        {
            next = Some(d + Duration::from_millis(100));
        }
        let updated = on_desired
            .iter()
            .filter(|p| p.labels().get(revisions::HASH_LABEL) == Some(&hash))
            .count() as i32;
        let old = ds.status.clone().unwrap_or_default();
        let mut status = old.clone();
        status.desired_number_scheduled = desired;
        status.current_number_scheduled = on_desired.len() as i32;
        status.number_misscheduled = misscheduled;
        status.number_ready = ready;
        status.number_available = Some(available).filter(|n| *n > 0);
        status.number_unavailable = Some(desired - available).filter(|n| *n > 0);
        status.updated_number_scheduled = Some(updated).filter(|n| *n > 0);
        status.observed_generation = ds.metadata.generation;
        if status != old {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
            let mut body = (*ds).clone();
            body.status = Some(status);
            match api
                .replace_status(name, &PostParams::default(), serde_json::to_vec(&body)?)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Ok(Some(Duration::from_millis(200)))
                }
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(next)
    }

    /// Old pods to delete now (maxSurge 0): unavailable old ones at once,
    /// available ones while fewer than maxUnavailable are unavailable.
    fn rolling_victims(
        &self,
        ds: &DaemonSet,
        placed: &[(bool, Option<Arc<Pod>>)],
        hash: &str,
        min_ready: i32,
    ) -> Vec<Arc<Pod>> {
        let now = Utc::now();
        let desired = placed.iter().filter(|(run, _)| *run).count() as i32;
        let budget = max_unavailable(ds, desired);
        let mut unavailable = 0;
        let mut at_once = Vec::new();
        let mut candidates = Vec::new();
        for (run, pod) in placed {
            if !*run {
                continue;
            }
            let Some(p) = pod else {
                unavailable += 1;
                continue;
            };
            let is_new = p.labels().get(revisions::HASH_LABEL).map(String::as_str) == Some(hash);
            let ok = pods::is_available(p, min_ready, now);
            match (is_new, ok) {
                (true, true) => {}
                (true, false) => unavailable += 1,
                (false, false) => at_once.push(p.clone()),
                (false, true) => candidates.push(p.clone()),
            }
        }
        let room = (budget - unavailable).max(0) as usize;
        at_once.extend(candidates.into_iter().take(room));
        at_once
    }

    async fn create(
        &self,
        ds: &DaemonSet,
        key: &str,
        hash: &str,
        nodes: &[String],
        reference: &ObjectReference,
    ) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        let mut batch = 1;
        let mut done = 0;
        let nodes = &nodes[..nodes.len().min(BURST)];
        while done < nodes.len() {
            let chunk = &nodes[done..(done + batch).min(nodes.len())];
            let creates = chunk.iter().map(|n| {
                let pod = daemon_pod(ds, n, hash);
                let api = api.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            });
            let mut failed = false;
            for r in futures::future::join_all(creates).await {
                match r {
                    Ok(p) => {
                        self.expectations.created(key, &p.name_any());
                        self.events
                            .normal(
                                reference,
                                "SuccessfulCreate",
                                &format!("Created pod: {}", p.name_any()),
                            )
                            .await;
                    }
                    Err(e) => {
                        failed = true;
                        let msg = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        self.events
                            .warning(reference, "FailedCreate", &format!("Error creating: {msg}"))
                            .await;
                    }
                }
            }
            if failed {
                return;
            }
            done += chunk.len();
            batch *= 2;
        }
    }

    async fn delete(&self, key: &str, victims: &[Arc<Pod>], reference: &ObjectReference) {
        let deletes = victims.iter().map(|p| {
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &p.namespace().unwrap_or_default());
            let name = p.name_any();
            self.expectations.deleting(key, &name);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: p.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            async move { (name.clone(), api.delete(&name, &params).await) }
        });
        for (name, r) in futures::future::join_all(deletes).await {
            match r {
                Ok(_) => {
                    self.events
                        .normal(
                            reference,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {name}"),
                        )
                        .await
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    self.expectations.delete_failed(key, &name);
                    self.events
                        .warning(reference, "FailedDelete", &format!("Error deleting: {e}"))
                        .await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(spec: serde_json::Value) -> DaemonSet {
        let mut v = json!({"metadata": {"name": "agent"}, "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "agent"}]}}}});
        for (k, val) in spec.as_object().unwrap() {
            v["spec"]["template"]["spec"][k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}}))
        .unwrap()
    }

    #[test]
    fn eligibility_follows_selectors_affinity_and_taints() {
        let plain = ds(json!({}));
        assert_eq!(
            should_run(&plain, &node("n", json!({}), json!([]))),
            (true, true)
        );
        // Default tolerations: not-ready NoExecute and unschedulable are fine.
        let not_ready = node(
            "n",
            json!({}),
            json!([
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        );
        assert_eq!(should_run(&plain, &not_ready), (true, true));
        // A NoSchedule taint keeps a running pod, a NoExecute one does not.
        let gpu = node(
            "n",
            json!({}),
            json!([{"key": "gpu", "effect": "NoSchedule"}]),
        );
        assert_eq!(should_run(&plain, &gpu), (false, true));
        let drained = node("n", json!({}), json!([{"key": "x", "effect": "NoExecute"}]));
        assert_eq!(should_run(&plain, &drained), (false, false));
        let tolerant = ds(json!({"tolerations": [{"operator": "Exists"}]}));
        assert_eq!(should_run(&tolerant, &drained), (true, true));

        let selective = ds(json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(
            should_run(&selective, &node("n", json!({}), json!([]))),
            (false, false)
        );
        assert_eq!(
            should_run(&selective, &node("n", json!({"disk": "ssd"}), json!([]))),
            (true, true)
        );
        let affine = ds(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}),
        );
        assert_eq!(
            should_run(&affine, &node("n", json!({"zone": "b"}), json!([]))),
            (false, false)
        );
        assert_eq!(
            should_run(&affine, &node("n", json!({"zone": "a"}), json!([]))),
            (true, true)
        );
    }

    #[test]
    fn a_daemon_pod_is_pinned_to_its_node_and_tolerates_the_defaults() {
        let d = ds(json!({"hostNetwork": true}));
        let p = daemon_pod(&d, "n1", "abc");
        assert_eq!(target_node(&p).as_deref(), Some("n1"));
        assert_eq!(p.labels()[revisions::HASH_LABEL], "abc");
        let keys: Vec<String> = p
            .spec
            .unwrap()
            .tolerations
            .unwrap()
            .into_iter()
            .filter_map(|t| t.key)
            .collect();
        assert!(keys.contains(&"node.kubernetes.io/unreachable".to_string()));
        assert!(keys.contains(&"node.kubernetes.io/network-unavailable".to_string()));
    }

    #[test]
    fn max_unavailable_and_max_surge_percentages_round_up() {
        let mut d = ds(json!({}));
        assert_eq!(max_unavailable(&d, 10), 1);
        d.spec.as_mut().unwrap().update_strategy = Some(
            serde_json::from_value(json!({
            "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}}))
            .unwrap(),
        );
        assert_eq!(max_unavailable(&d, 10), 3);
        assert_eq!(max_surge(&d, 10), 0);
        d.spec.as_mut().unwrap().update_strategy = Some(
            serde_json::from_value(json!({
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "10%", "maxUnavailable": 0}}))
            .unwrap(),
        );
        assert_eq!(max_surge(&d, 15), 2);
        assert_eq!(max_surge(&d, 0), 1);
    }
}
