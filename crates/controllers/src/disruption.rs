//! The disruption controller, as kube-controller-manager's: writes each
//! PodDisruptionBudget's status, which the eviction subresource decides by.
//! `desiredHealthy` comes from `minAvailable` (an int as is; a percent of
//! the expected pods, rounded up) or `maxUnavailable` (expected pods less
//! the int or percent, rounded up); the expected pods are the pods the
//! selector covers for an int `minAvailable`, else the sum of the scales
//! of the pods' controllers (Deployment through its ReplicaSets,
//! ReplicaSet, StatefulSet, ReplicationController from the caches; any
//! other owner through its `scale` subresource). `currentHealthy`
//! counts Ready pods that are not being deleted nor recently granted an
//! eviction (`disruptedPods`, forgotten after two minutes), and
//! `disruptionsAllowed` is their surplus, 0 while no pod is expected. A
//! budget whose numbers cannot be computed allows no disruption
//! (`SyncFailed`).
//!
//! It also resets to False a pod's `DisruptionTarget` condition that an
//! eviction set two minutes ago without the pod being deleted since (the
//! eviction failed after marking it).
//!
//! Reads: poddisruptionbudgets, pods, replicasets, deployments,
//! statefulsets, replicationcontrollers, discovery and `*/scale`. Writes:
//! poddisruptionbudgets/status,
//! events (`system:controller:disruption-controller`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use orca_api::disruption;

use crate::events::Recorder;
use crate::pods;
use crate::queue::WorkQueue;
use crate::wiring::{key_of, Key, Wiring};

const NAME: &str = "disruption-controller";
const WORKERS: usize = 5;
/// How long an eviction's entry in `disruptedPods` keeps the pod out of the
/// healthy count while the pod is not seen being deleted
/// (`DeletionTimeout`).
const DELETION_TIMEOUT: chrono::Duration = chrono::Duration::minutes(2);
/// How long a `DisruptionTarget` condition may stay on a pod that is not
/// being deleted (`stalePodDisruptionTimeout`).
const STALE_DISRUPTION_TIMEOUT: chrono::Duration = chrono::Duration::minutes(2);

/// A pod controller's scale, by the controller's uid (pods of one
/// Deployment's ReplicaSets count once, by the Deployment).
type Scale = (String, i32);

/// Where the scales of pods' controllers are read.
pub trait Scales {
    /// The scale of the controller `r` of a pod in `ns`: None when it is
    /// gone (or another object of the name), an error when its kind is not
    /// served or has no scale.
    fn scale_of(
        &self,
        r: &OwnerReference,
        ns: &str,
    ) -> impl std::future::Future<Output = Result<Option<Scale>, String>> + Send;
}

/// What a sync computed, before it is compared with the stored status.
#[derive(Debug, PartialEq)]
pub struct Computed {
    pub status: PodDisruptionBudgetStatus,
    /// Pods selected that have no controller (counted as no expected pod).
    pub unmanaged: Vec<String>,
    /// When an entry of `disruptedPods` expires.
    pub recheck: Option<DateTime<Utc>>,
}

/// The budget's status for `pods` (those its selector covers) at `now`; an
/// error when the expected pods cannot be known.
pub async fn compute(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    scales: &impl Scales,
    now: DateTime<Utc>,
) -> Result<Computed, String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let ns = pdb.namespace().unwrap_or_default();
    let mut unmanaged = Vec::new();
    let (expected, desired) = match (&spec.max_unavailable, &spec.min_available) {
        (Some(max), _) => {
            let expected = expected_scale(pods, scales, &ns, &mut unmanaged).await?;
            let max = disruption::scaled_value(max, expected, true);
            (expected, (expected - max).max(0))
        }
        (
            None,
            Some(min @ k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(_)),
        ) => {
            let expected = expected_scale(pods, scales, &ns, &mut unmanaged).await?;
            (expected, disruption::scaled_value(min, expected, true))
        }
        (None, Some(min)) => (pods.len() as i32, disruption::scaled_value(min, 0, true)),
        (None, None) => (pods.len() as i32, 0),
    };
    let old = pdb.status.clone().unwrap_or_default();
    let (disrupted, recheck) = still_disrupted(pods, old.disrupted_pods.as_ref(), now);
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| pods::is_ready(p))
        .count() as i32;
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions,
    };
    disruption::set_disruption_allowed(&mut status, now);
    Ok(Computed {
        status,
        unmanaged,
        recheck,
    })
}

/// The sum of the scales of the pods' controllers; pods without one are
/// listed in `unmanaged`.
async fn expected_scale(
    pods: &[&Pod],
    scales: &impl Scales,
    ns: &str,
    unmanaged: &mut Vec<String>,
) -> Result<i32, String> {
    let mut by_controller: BTreeMap<String, i32> = BTreeMap::new();
    for pod in pods {
        let Some(r) = pods::controller_of(&pod.metadata) else {
            unmanaged.push(pod.name_any());
            continue;
        };
        if by_controller.contains_key(&r.uid) {
            continue;
        }
        match scales.scale_of(r, ns).await? {
            Some((uid, scale)) => {
                by_controller.insert(uid, scale);
            }
            None => return Err(format!("found no controllers for pod {:?}", pod.name_any())),
        }
    }
    Ok(by_controller.values().sum())
}

/// The entries of `disruptedPods` still pending: pods granted an eviction
/// less than [`DELETION_TIMEOUT`] ago and not yet being deleted; and when
/// the first of them expires.
fn still_disrupted(
    pods: &[&Pod],
    old: Option<&BTreeMap<String, Time>>,
    now: DateTime<Utc>,
) -> (BTreeMap<String, Time>, Option<DateTime<Utc>>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<DateTime<Utc>> = None;
    let Some(old) = old else {
        return (kept, recheck);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = old.get(&pod.name_any()) else {
            continue;
        };
        let expires = at.0 + DELETION_TIMEOUT;
        if expires < now {
            tracing::info!(pod = %pod.name_any(), "a pod granted an eviction was not deleted in time; counting it again");
            continue;
        }
        recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
        kept.insert(pod.name_any(), at.clone());
    }
    (kept, recheck)
}

/// Whether the stored status already says what was computed.
fn up_to_date(old: &PodDisruptionBudgetStatus, new: &PodDisruptionBudgetStatus) -> bool {
    old.current_healthy == new.current_healthy
        && old.desired_healthy == new.desired_healthy
        && old.expected_pods == new.expected_pods
        && old.disruptions_allowed == new.disruptions_allowed
        && old.disrupted_pods.clone().unwrap_or_default()
            == new.disrupted_pods.clone().unwrap_or_default()
        && old.observed_generation == new.observed_generation
        && disruption::condition_up_to_date(old)
}

/// When a pod's `DisruptionTarget=True` condition becomes stale: None for
/// pods without one, being deleted or finished, or marked by their kubelet
/// (which may take arbitrarily long to act).
pub fn stale_disruption_at(pod: &Pod) -> Option<DateTime<Utc>> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let cond = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget")?;
    if cond.status != "True" || cond.reason.as_deref() == Some("TerminationByKubelet") {
        return None;
    }
    let since = cond
        .last_transition_time
        .as_ref()
        .map_or(Utc::now(), |t| t.0);
    Some(since + STALE_DISRUPTION_TIMEOUT)
}

struct Controller {
    client: Client,
    budgets: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    owners: Owners,
    /// Pods whose DisruptionTarget condition may go stale.
    stale_queue: Arc<WorkQueue<Key>>,
    events: Recorder,
}

/// The pod controllers' caches, and the API for other owners.
struct Owners {
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    stateful_sets: Store<StatefulSet>,
    replication_controllers: Store<ReplicationController>,
    client: Client,
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

fn same<K: Resource>(o: &K, r: &OwnerReference) -> bool {
    o.meta().uid.as_deref() == Some(r.uid.as_str())
}

impl Scales for Owners {
    async fn scale_of(&self, r: &OwnerReference, ns: &str) -> Result<Option<Scale>, String> {
        let uid = r.uid.clone();
        match (group_of(&r.api_version), r.kind.as_str()) {
            ("", "ReplicationController") => Ok(self
                .replication_controllers
                .get(&ObjectRef::new(&r.name).within(ns))
                .filter(|o| same(o.as_ref(), r))
                .map(|o| (uid, o.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)))),
            ("apps" | "extensions", "ReplicaSet") => {
                let Some(rs) = self
                    .replica_sets
                    .get(&ObjectRef::new(&r.name).within(ns))
                    .filter(|o| same(o.as_ref(), r))
                else {
                    return Ok(None);
                };
                // A Deployment's ReplicaSets count by the Deployment's scale.
                if let Some(d) =
                    pods::controller_of(&rs.metadata).filter(|d| d.kind == "Deployment")
                {
                    if let Some(dep) = self
                        .deployments
                        .get(&ObjectRef::new(&d.name).within(ns))
                        .filter(|o| same(o.as_ref(), d))
                    {
                        let replicas = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                        return Ok(Some((d.uid.clone(), replicas)));
                    }
                }
                Ok(Some((
                    uid,
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )))
            }
            ("apps", "StatefulSet") => Ok(self
                .stateful_sets
                .get(&ObjectRef::new(&r.name).within(ns))
                .filter(|o| same(o.as_ref(), r))
                .map(|o| (uid, o.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)))),
            _ => self.scale_subresource_of(r, ns).await,
        }
    }
}

impl Owners {
    /// Any other owner, as Kubernetes' disruption controller reads it: its
    /// kind mapped to a resource by discovery, then that resource's `scale`
    /// subresource (a Deployment owning pods itself, say).
    async fn scale_subresource_of(
        &self,
        r: &OwnerReference,
        ns: &str,
    ) -> Result<Option<Scale>, String> {
        let (group, version) = r
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", r.api_version.as_str()));
        let listed = if group.is_empty() {
            self.client.list_core_api_resources(version).await
        } else {
            self.client.list_api_group_resources(&r.api_version).await
        };
        let no_match = || {
            format!(
                "no matches for kind {:?} in version {:?}",
                r.kind, r.api_version
            )
        };
        let resources = match listed {
            Ok(list) => list.resources,
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(no_match()),
            Err(e) => return Err(e.to_string()),
        };
        let Some(resource) = resources
            .iter()
            .find(|x| x.kind == r.kind && !x.name.contains('/'))
        else {
            return Err(no_match());
        };
        let scale = format!("{}/scale", resource.name);
        if !resources
            .iter()
            .any(|x| x.name == scale && x.kind == "Scale")
        {
            let qualified = if group.is_empty() {
                resource.name.clone()
            } else {
                format!("{}.{group}", resource.name)
            };
            return Err(format!(
                "{qualified} does not implement the scale subresource"
            ));
        }
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            ns,
            &ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                plural: resource.name.clone(),
            },
        );
        match api.get_scale(&r.name).await {
            Ok(s) if s.metadata.uid.as_deref() == Some(r.uid.as_str()) => Ok(Some((
                r.uid.clone(),
                s.spec.and_then(|s| s.replicas).unwrap_or(0),
            ))),
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

pub async fn run(clients: &crate::Clients) -> anyhow::Result<()> {
    let writer = clients.controller(NAME);
    let mut w = Wiring::new(NAME, clients.informers());
    let (stale_queue, stale_rx) = WorkQueue::new();
    let stale_queue = Arc::new(stale_queue);
    let budgets = w.watch(|pdb: &PodDisruptionBudget| Some(key_of(pdb)));
    // A pod change may change any budget of its namespace (one that covers
    // it now, or covered it before a relabel).
    let pods = w.watch({
        let budgets = budgets.clone();
        let stale_queue = stale_queue.clone();
        move |p: &Pod| {
            let ns = p.namespace().unwrap_or_default();
            if stale_disruption_at(p).is_some() {
                stale_queue.add((ns.clone(), p.name_any()));
            }
            budgets
                .state()
                .into_iter()
                .filter(|b| b.namespace().as_deref() == Some(ns.as_str()))
                .map(|b| (ns.clone(), b.name_any()))
                .collect::<Vec<_>>()
        }
    });
    // The controllers' caches only answer scales; their scaling shows in
    // pod events.
    let owners = Owners {
        replica_sets: w.cache(),
        deployments: w.cache(),
        stateful_sets: w.cache(),
        replication_controllers: w.cache(),
        client: writer.clone(),
    };
    let c = Arc::new(Controller {
        client: writer.clone(),
        budgets,
        pods,
        owners,
        stale_queue,
        events: Recorder::new(writer, NAME),
    });
    let stale_work = async {
        let _ = c.pods.wait_until_ready().await;
        crate::queue::work(&c.stale_queue, stale_rx, WORKERS, {
            let c = c.clone();
            move |key: Key| {
                let c = c.clone();
                async move {
                    match c.reset_stale_disruption(&key).await {
                        Ok(next) => next,
                        Err(e) => {
                            tracing::warn!(pod = %format!("{}/{}", key.0, key.1), "resetting a stale DisruptionTarget condition failed (will retry): {e:#}");
                            Some(Duration::from_secs(1))
                        }
                    }
                }
            }
        })
        .await
    };
    let budget_work = w.run(
        c.clone(),
        WORKERS,
        |c, key| async move { c.sync(&key).await },
    );
    tokio::join!(budget_work, stale_work);
    Ok(())
}

impl Controller {
    async fn sync(&self, key: &Key) -> anyhow::Result<Option<Duration>> {
        let (ns, name) = key;
        let Some(pdb) = self.budgets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        if pdb.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let reference = ObjectReference {
            api_version: Some("policy/v1".into()),
            kind: Some("PodDisruptionBudget".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pdb.uid(),
            ..Default::default()
        };
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let all = self.pods.state();
        let covered: Vec<&Pod> = all
            .iter()
            .map(Arc::as_ref)
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .filter(|p| disruption::selects(selector, p.labels()))
            .collect();
        if covered.is_empty() {
            self.events
                .normal(&reference, "NoPods", "No matching pods found")
                .await;
        }
        let now = Utc::now();
        let old = pdb.status.clone().unwrap_or_default();
        let computed = match compute(&pdb, &covered, &self.owners, now).await {
            Ok(c) => c,
            Err(e) => {
                self.events
                    .warning(
                        &reference,
                        "CalculateExpectedPodCountFailed",
                        &format!("Failed to calculate the number of expected pods: {e}"),
                    )
                    .await;
                // Nothing may be disrupted while the numbers are unknown.
                let mut status = old.clone();
                status.disruptions_allowed = 0;
                disruption::set_condition(&mut status, "False", disruption::SYNC_FAILED, e, now);
                if status != old {
                    self.write(&pdb, status).await?;
                }
                return Ok(Some(Duration::from_secs(5)));
            }
        };
        if !computed.unmanaged.is_empty() {
            let selector = selector
                .and_then(|s| orca_api::selectors::LabelSelector::from_api(s).ok())
                .map(|s| s.to_selector_string())
                .unwrap_or_default();
            self.events.warning(&reference, "UnmanagedPods", &format!(
                "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
            )).await;
        }
        if !up_to_date(&old, &computed.status) {
            self.write(&pdb, computed.status).await?;
        }
        Ok(computed
            .recheck
            .map(|at| (at - now).to_std().unwrap_or_default() + Duration::from_millis(50)))
    }

    /// Sets a stale `DisruptionTarget` condition to False (its reason and
    /// message stay), against the pod's version read; or says when to look
    /// again.
    async fn reset_stale_disruption(&self, key: &Key) -> anyhow::Result<Option<Duration>> {
        let (ns, name) = key;
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let Some(at) = stale_disruption_at(&pod) else {
            return Ok(None);
        };
        let now = Utc::now();
        if at > now {
            return Ok(Some(
                (at - now).to_std().unwrap_or_default() + Duration::from_millis(50),
            ));
        }
        let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": pod.resource_version()},
            "status": {"conditions": [{"type": "DisruptionTarget", "status": "False", "lastTransitionTime": stamp}]},
        });
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the status against the version read (a conflict retries the
    /// sync on the newer budget).
    async fn write(
        &self,
        pdb: &PodDisruptionBudget,
        status: PodDisruptionBudgetStatus,
    ) -> anyhow::Result<()> {
        let mut new = pdb.clone();
        new.status = Some(status);
        let api: Api<PodDisruptionBudget> =
            Api::namespaced(self.client.clone(), &pdb.namespace().unwrap_or_default());
        api.replace_status(
            &pdb.name_any(),
            &PostParams::default(),
            serde_json::to_vec(&new)?,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every ReplicaSet is one of Deployment `web` (scale 4), each
    /// StatefulSet has 5, a DaemonSet has no scale, other owners are gone.
    struct Fixed;

    impl Scales for Fixed {
        async fn scale_of(&self, r: &OwnerReference, _ns: &str) -> Result<Option<Scale>, String> {
            match r.kind.as_str() {
                "ReplicaSet" => Ok(Some(("web".into(), 4))),
                "StatefulSet" => Ok(Some((r.uid.clone(), 5))),
                "DaemonSet" => {
                    Err("daemonsets.apps does not implement the scale subresource".into())
                }
                _ => Ok(None),
            }
        }
    }

    fn pod(name: &str, owner: Option<(&str, &str)>, ready: bool) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap();
        if let Some((kind, uid)) = owner {
            p.metadata.owner_references =
                Some(vec![pods::controller_ref("apps/v1", kind, uid, uid)]);
        }
        p
    }

    fn budget(spec: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": {"name": "b", "namespace": "default", "generation": 3},
            "spec": spec,
        }))
        .unwrap()
    }

    fn numbers(c: &Computed) -> (i32, i32, i32, i32) {
        let s = &c.status;
        (
            s.expected_pods,
            s.desired_healthy,
            s.current_healthy,
            s.disruptions_allowed,
        )
    }

    #[tokio::test]
    async fn min_available_int_counts_the_selected_pods() {
        let pods = [
            pod("a", None, true),
            pod("b", None, true),
            pod("c", None, false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let c = compute(
            &budget(json!({"minAvailable": 1})),
            &refs,
            &Fixed,
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(numbers(&c), (3, 1, 2, 1));
        assert_eq!(c.status.observed_generation, Some(3));
        let cond = &c.status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("True", "SufficientPods")
        );
    }

    #[tokio::test]
    async fn percentages_and_max_unavailable_use_the_controllers_scale() {
        let pods = [
            pod("a", Some(("ReplicaSet", "rs")), true),
            pod("b", Some(("ReplicaSet", "rs")), true),
            pod("c", Some(("ReplicaSet", "rs")), true),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let now = Utc::now();
        // The Deployment wants 4: 50% of 4 is 2.
        let c = compute(&budget(json!({"minAvailable": "50%"})), &refs, &Fixed, now)
            .await
            .unwrap();
        assert_eq!(numbers(&c), (4, 2, 3, 1));
        // maxUnavailable 1 of 4: 3 must stay, 3 are: nothing to spare.
        let c = compute(&budget(json!({"maxUnavailable": 1})), &refs, &Fixed, now)
            .await
            .unwrap();
        assert_eq!(numbers(&c), (4, 3, 3, 0));
        let cond = &c.status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("False", "InsufficientPods")
        );
        // 30% of 4 rounds up to 2 unavailable.
        let c = compute(
            &budget(json!({"maxUnavailable": "30%"})),
            &refs,
            &Fixed,
            now,
        )
        .await
        .unwrap();
        assert_eq!(numbers(&c), (4, 2, 3, 1));
    }

    #[tokio::test]
    async fn scales_are_summed_per_controller_and_unknown_ones_fail() {
        let pods = [
            pod("a", Some(("StatefulSet", "s1")), true),
            pod("b", Some(("StatefulSet", "s2")), true),
            pod("c", None, true),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let c = compute(
            &budget(json!({"maxUnavailable": 0})),
            &refs,
            &Fixed,
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(numbers(&c), (10, 10, 3, 0));
        assert_eq!(c.unmanaged, vec!["c".to_string()]);

        let ds = [pod("d", Some(("DaemonSet", "ds")), true)];
        let refs: Vec<&Pod> = ds.iter().collect();
        let err = compute(
            &budget(json!({"maxUnavailable": 1})),
            &refs,
            &Fixed,
            Utc::now(),
        )
        .await;
        assert_eq!(
            err.unwrap_err(),
            "daemonsets.apps does not implement the scale subresource"
        );
        let gone = [pod("e", Some(("Job", "j")), true)];
        let refs: Vec<&Pod> = gone.iter().collect();
        let err = compute(
            &budget(json!({"maxUnavailable": 1})),
            &refs,
            &Fixed,
            Utc::now(),
        )
        .await;
        assert_eq!(err.unwrap_err(), "found no controllers for pod \"e\"");
    }

    #[tokio::test]
    async fn granted_evictions_do_not_count_until_they_expire() {
        let pods = [pod("a", None, true), pod("b", None, true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let now = Utc::now();
        let mut b = budget(json!({"minAvailable": 1}));
        b.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([
                ("a".to_string(), Time(now - chrono::Duration::seconds(30))),
                ("gone".to_string(), Time(now)),
            ])),
            ..Default::default()
        });
        let c = compute(&b, &refs, &Fixed, now).await.unwrap();
        assert_eq!(numbers(&c), (2, 1, 1, 0));
        let kept = c.status.disrupted_pods.as_ref().unwrap();
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            c.recheck,
            Some(now - chrono::Duration::seconds(30) + DELETION_TIMEOUT)
        );

        let later = now + chrono::Duration::minutes(3);
        let c = compute(&b, &refs, &Fixed, later).await.unwrap();
        assert_eq!(numbers(&c), (2, 1, 2, 1));
        assert_eq!(c.status.disrupted_pods, None);
        assert_eq!(c.recheck, None);
    }

    #[test]
    fn a_disruption_target_goes_stale_two_minutes_after_it_was_set() {
        let at = Utc::now() - chrono::Duration::seconds(30);
        let mut p = pod("a", None, true);
        assert_eq!(stale_disruption_at(&p), None);
        let cond = |reason: &str| {
            serde_json::from_value(json!({"type": "DisruptionTarget", "status": "True",
                "reason": reason, "lastTransitionTime": at.to_rfc3339()}))
            .unwrap()
        };
        let status = p.status.as_mut().unwrap();
        status
            .conditions
            .as_mut()
            .unwrap()
            .push(cond("EvictionByEvictionAPI"));
        let stale = stale_disruption_at(&p).unwrap();
        assert!(
            (stale - (at + STALE_DISRUPTION_TIMEOUT))
                .num_seconds()
                .abs()
                <= 1
        );
        // Not while the pod goes, nor once it finished, nor the kubelet's.
        let mut deleting = p.clone();
        deleting.metadata.deletion_timestamp = Some(Time(Utc::now()));
        assert_eq!(stale_disruption_at(&deleting), None);
        let mut done = p.clone();
        done.status.as_mut().unwrap().phase = Some("Failed".into());
        assert_eq!(stale_disruption_at(&done), None);
        let conds = p.status.as_mut().unwrap().conditions.as_mut().unwrap();
        *conds.last_mut().unwrap() = cond("TerminationByKubelet");
        assert_eq!(stale_disruption_at(&p), None);
    }

    #[tokio::test]
    async fn no_expected_pods_allows_no_disruption() {
        let c = compute(&budget(json!({"minAvailable": 0})), &[], &Fixed, Utc::now())
            .await
            .unwrap();
        assert_eq!(numbers(&c), (0, 0, 0, 0));
    }
}
