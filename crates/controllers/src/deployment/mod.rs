//! The Deployment controller: rolls a Deployment's pod template out through
//! ReplicaSets named `<deployment>-<template hash>`, as Kubernetes' does.
//! RollingUpdate scales the new ReplicaSet up within maxSurge and the old
//! ones down within maxUnavailable (counting available pods, so readiness
//! gates the rollout); Recreate scales the old ones to zero, waits for
//! their pods to go, then scales the new one up. It keeps revisions
//! (`deployment.kubernetes.io/revision`, reused when a template comes back,
//! as `kubectl rollout undo` does), the desired/max-replicas annotations,
//! `revisionHistoryLimit` old ReplicaSets, proportional scaling during a
//! rollout, pausing, and the status with the Available and Progressing
//! conditions (ProgressDeadlineExceeded after progressDeadlineSeconds).
//!
//! Reads: deployments, replicasets. Writes: replicasets (create, update
//! replicas and annotations, delete old ones), deployments/status (with
//! the revision annotation), events. (Kubernetes' bootstrap role
//! `system:controller:deployment-controller`.)

pub mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::Recorder;
use crate::pods;
use crate::wiring::{controller_key, key_of, Key, Wiring};
use util::*;

const WORKERS: usize = 5;

struct Controller {
    client: Client,
    deployments: Store<Deployment>,
    replicasets: Store<ReplicaSet>,
    events: Recorder,
}

/// The controller's name, and its service account's.
const NAME: &str = "deployment-controller";

/// Watches through the controller manager's informers' client, writes as
/// `deployment-controller`.
pub async fn run(clients: &crate::Clients) -> anyhow::Result<()> {
    let writer = clients.controller(NAME);
    let mut w = Wiring::new(NAME, clients.informers());
    let deployments = w.watch(|d: &Deployment| Some(key_of(d)));
    let replicasets = w.watch(|rs: &ReplicaSet| controller_key(rs, "Deployment"));
    let c = Arc::new(Controller {
        client: writer.clone(),
        deployments,
        replicasets,
        events: Recorder::new(writer, NAME),
    });
    w.run(c, WORKERS, |c, key| async move { c.sync(&key).await })
        .await;
    Ok(())
}

fn reference(d: &Deployment) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("Deployment".into()),
        name: d.metadata.name.clone(),
        namespace: d.metadata.namespace.clone(),
        uid: d.metadata.uid.clone(),
        ..Default::default()
    }
}

/// One sync's view: the Deployment, its new ReplicaSet (template equal to
/// the Deployment's) and its old ones, oldest first.
struct Rollout {
    d: Deployment,
    new: Option<ReplicaSet>,
    old: Vec<ReplicaSet>,
}

impl Rollout {
    fn all(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.new.iter().chain(self.old.iter())
    }
}

impl Controller {
    async fn sync(&self, key: &Key) -> anyhow::Result<Option<Duration>> {
        let Some(d) = self.deployments.get(&ObjectRef::new(&key.1).within(&key.0)) else {
            return Ok(None);
        };
        let d = (*d).clone();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let spec = d.spec.clone().unwrap_or_default();
        if spec.selector == LabelSelector::default() {
            self.events
                .warning(
                    &reference(&d),
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.",
                )
                .await;
            return Ok(None);
        }
        let mut owned: Vec<ReplicaSet> = self
            .replicasets
            .state()
            .into_iter()
            .filter(|rs| rs.namespace() == d.namespace())
            .filter(|rs| pods::controller_of(&rs.metadata).is_some_and(|r| r.uid == uid))
            .map(|rs| (*rs).clone())
            .collect();
        owned.sort_by(|a, b| {
            (
                a.metadata.creation_timestamp.as_ref().map(|t| t.0),
                a.name_any(),
            )
                .cmp(&(
                    b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    b.name_any(),
                ))
        });
        let new_idx = owned.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignoring_hash(t, &spec.template))
        });
        let new = new_idx.map(|i| owned.remove(i));
        let mut r = Rollout { d, new, old: owned };
        if r.d.metadata.deletion_timestamp.is_some() {
            self.write_status(&r).await?;
            return Ok(None);
        }
        // Paused, or only the size changed: scale what exists; a new
        // template rolls out on the next sync.
        if spec.paused == Some(true) || self.is_scaling_event(&r) {
            self.sync_revision(&mut r, false).await?;
            self.scale(&mut r).await?;
            return self.write_status(&r).await;
        }
        self.sync_revision(&mut r, true).await?;
        if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            self.recreate(&mut r).await?;
        } else {
            self.rolling(&mut r).await?;
        }
        if deployment_complete(&r) {
            self.cleanup(&r).await?;
        }
        self.write_status(&r).await
    }

    /// Whether the desired replicas changed since the active ReplicaSets
    /// were sized (their desired-replicas annotation).
    fn is_scaling_event(&self, r: &Rollout) -> bool {
        let want = replicas(&r.d).to_string();
        r.all().filter(|rs| rs_replicas(rs) > 0).any(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_REPLICAS))
                .is_some_and(|v| *v != want)
        })
    }

    /// The new ReplicaSet with its revision (max of the old ones + 1, a
    /// template that comes back takes a new number and remembers the old
    /// ones), created when missing and `create`; the Deployment's revision
    /// annotation follows.
    async fn sync_revision(&self, r: &mut Rollout, create: bool) -> anyhow::Result<()> {
        let max_old = r.old.iter().map(revision_of).max().unwrap_or(0);
        let revision = (max_old + 1).to_string();
        let ns = r.d.namespace().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let (surge, _) = surge_and_unavailable(&r.d);
        let want = replicas(&r.d);
        if let Some(new) = &r.new {
            let mut ann = new.metadata.annotations.clone().unwrap_or_default();
            let before = ann.clone();
            let old_rev = revision_of(new);
            if old_rev < max_old + 1 {
                if old_rev > 0 {
                    let mut hist: Vec<String> = ann
                        .get(REVISION_HISTORY)
                        .map(|h| h.split(',').map(str::to_string).collect())
                        .unwrap_or_default();
                    hist.push(old_rev.to_string());
                    ann.insert(REVISION_HISTORY.into(), hist.join(","));
                }
                ann.insert(REVISION.into(), revision.clone());
            }
            for (k, v) in r.d.metadata.annotations.iter().flatten() {
                if copied_annotation(k) {
                    ann.insert(k.clone(), v.clone());
                }
            }
            let min_ready = r.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs_min_ready = new.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if ann != before || min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0) {
                let patch = json!({"metadata": {"annotations": ann}, "spec": {"minReadySeconds": min_ready}});
                r.new = Some(
                    api.patch(
                        &new.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?,
                );
            }
            return Ok(());
        }
        if !create {
            return Ok(());
        }
        let spec = r.d.spec.clone().unwrap_or_default();
        let collisions = r.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        let tmeta = template.metadata.get_or_insert_with(Default::default);
        tmeta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut ann: BTreeMap<String, String> =
            r.d.metadata
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| copied_annotation(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        ann.insert(REVISION.into(), revision.clone());
        ann.insert(DESIRED_REPLICAS.into(), want.to_string());
        ann.insert(MAX_REPLICAS.into(), (want + surge).to_string());
        let name = format!("{}-{hash}", r.d.name_any());
        let initial = if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
        {
            0
        } else {
            new_rs_replicas(r, 0)
        };
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: tmeta.labels.clone(),
                annotations: Some(ann),
                owner_references: Some(vec![pods::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &r.d.name_any(),
                    &r.d.uid().unwrap_or_default(),
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(initial),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let created = match api.create(&PostParams::default(), &rs).await {
            Ok(rs) => rs,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // A ReplicaSet of that name with another template: count a
                // collision so the next hash differs.
                let count = collisions.unwrap_or(0) + 1;
                let mut status = serde_json::to_value(r.d.status.clone().unwrap_or_default())?;
                status["collisionCount"] = json!(count);
                let api = Api::<Deployment>::namespaced(self.client.clone(), &ns);
                pods::update_status(&api, &r.d, status, None).await?;
                anyhow::bail!(
                    "replica set {name} exists with another template; collision count now {count}"
                );
            }
            Err(e) => return Err(e.into()),
        };
        if initial > 0 {
            self.events
                .normal(
                    &reference(&r.d),
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {name} from 0 to {initial}"),
                )
                .await;
        }
        let mut conds = conditions(&r.d);
        set_condition(
            &mut conds,
            condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set {name:?}"),
                Utc::now(),
            ),
        );
        r.d.status.get_or_insert_with(Default::default).conditions = Some(conds);
        r.new = Some(created);
        Ok(())
    }

    async fn scale_rs(&self, r: &Rollout, rs: &ReplicaSet, to: i32) -> anyhow::Result<ReplicaSet> {
        let from = rs_replicas(rs);
        let (surge, _) = surge_and_unavailable(&r.d);
        let want = replicas(&r.d);
        let ann = rs.metadata.annotations.clone().unwrap_or_default();
        let desired_ok = ann.get(DESIRED_REPLICAS) == Some(&want.to_string())
            && ann.get(MAX_REPLICAS) == Some(&(want + surge).to_string());
        if from == to && desired_ok {
            return Ok(rs.clone());
        }
        let patch = json!({
            "metadata": {"annotations": {DESIRED_REPLICAS: want.to_string(), MAX_REPLICAS: (want + surge).to_string()}},
            "spec": {"replicas": to},
        });
        let api: Api<ReplicaSet> =
            Api::namespaced(self.client.clone(), &rs.namespace().unwrap_or_default());
        let updated = api
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        if from != to {
            let dir = if to > from { "up" } else { "down" };
            self.events
                .normal(
                    &reference(&r.d),
                    "ScalingReplicaSet",
                    &format!(
                        "Scaled {dir} replica set {} from {from} to {to}",
                        rs.name_any()
                    ),
                )
                .await;
        }
        Ok(updated)
    }

    /// Scaling without a template change (or while paused): one active
    /// ReplicaSet takes the new size; a saturated new one leaves the old
    /// ones at zero; otherwise the change is shared in proportion.
    async fn scale(&self, r: &mut Rollout) -> anyhow::Result<()> {
        let want = replicas(&r.d);
        let active: Vec<ReplicaSet> = r.all().filter(|rs| rs_replicas(rs) > 0).cloned().collect();
        if active.len() <= 1 {
            let target = active.first().cloned().or_else(|| r.new.clone());
            if let Some(rs) = target {
                let updated = self.scale_rs(r, &rs, want).await?;
                replace(r, updated);
            }
            return Ok(());
        }
        if let Some(new) = r.new.clone() {
            if rs_replicas(&new) == want && rs_available(&new) == want {
                for rs in r.old.clone() {
                    let updated = self.scale_rs(r, &rs, 0).await?;
                    replace(r, updated);
                }
                return Ok(());
            }
        }
        let (surge, _) = surge_and_unavailable(&r.d);
        let allowed = want + surge;
        let current: i32 = active.iter().map(rs_replicas).sum();
        let diff = allowed - current;
        if diff == 0 {
            return Ok(());
        }
        // Larger ReplicaSets first (newer first on ties), each its share
        // of the change by its size; the rounding rest to the first.
        let mut order = active.clone();
        order.sort_by(|a, b| {
            rs_replicas(b).cmp(&rs_replicas(a)).then(
                b.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
        });
        let mut added = 0;
        let mut sizes: Vec<i32> = order
            .iter()
            .map(|rs| {
                let share = if current > 0 {
                    (i64::from(rs_replicas(rs)) * i64::from(diff) / i64::from(current)) as i32
                } else {
                    0
                };
                added += share;
                rs_replicas(rs) + share
            })
            .collect();
        if let Some(first) = sizes.first_mut() {
            *first = (*first + diff - added).max(0);
        }
        for (rs, size) in order.iter().zip(sizes.iter_mut()) {
            let updated = self.scale_rs(r, rs, (*size).max(0)).await?;
            replace(r, updated);
        }
        Ok(())
    }

    async fn rolling(&self, r: &mut Rollout) -> anyhow::Result<()> {
        let want = replicas(&r.d);
        if let Some(new) = r.new.clone() {
            let to = if rs_replicas(&new) > want {
                want
            } else {
                new_rs_replicas(r, rs_replicas(&new))
            };
            let updated = self.scale_rs(r, &new, to).await?;
            replace(r, updated);
        }
        let old_count: i32 = r.old.iter().map(rs_replicas).sum();
        if old_count == 0 {
            return Ok(());
        }
        let (_, unavailable) = surge_and_unavailable(&r.d);
        let min_available = want - unavailable;
        let all_count: i32 = r.all().map(rs_replicas).sum();
        let new_unavailable = r
            .new
            .as_ref()
            .map_or(0, |n| rs_replicas(n) - rs_available(n));
        let max_scale_down = all_count - min_available - new_unavailable;
        if max_scale_down <= 0 {
            return Ok(());
        }
        // Old pods that are not available go first: they serve nothing.
        let mut cleaned = 0;
        for rs in r.old.clone() {
            if cleaned >= max_scale_down {
                break;
            }
            let (size, available) = (rs_replicas(&rs), rs_available(&rs));
            if size == 0 || size <= available {
                continue;
            }
            let down = (size - available).min(max_scale_down - cleaned);
            let updated = self.scale_rs(r, &rs, size - down).await?;
            replace(r, updated);
            cleaned += down;
        }
        // Then available old pods, keeping minAvailable.
        let available: i32 = r.all().map(rs_available).sum();
        if available <= min_available {
            return Ok(());
        }
        let mut total = (available - min_available).min(max_scale_down - cleaned);
        for rs in r.old.clone() {
            if total <= 0 {
                break;
            }
            let size = rs_replicas(&rs);
            if size == 0 {
                continue;
            }
            let down = size.min(total);
            let updated = self.scale_rs(r, &rs, size - down).await?;
            replace(r, updated);
            total -= down;
        }
        Ok(())
    }

    async fn recreate(&self, r: &mut Rollout) -> anyhow::Result<()> {
        for rs in r.old.clone() {
            if rs_replicas(&rs) > 0 {
                let updated = self.scale_rs(r, &rs, 0).await?;
                replace(r, updated);
            }
        }
        // Only once every old pod is gone.
        let old_running = r
            .old
            .iter()
            .any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0));
        if old_running {
            return Ok(());
        }
        if let Some(new) = r.new.clone() {
            let updated = self.scale_rs(r, &new, replicas(&r.d)).await?;
            replace(r, updated);
        }
        Ok(())
    }

    /// Deletes the oldest empty old ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self, r: &Rollout) -> anyhow::Result<()> {
        let limit =
            r.d.spec
                .as_ref()
                .and_then(|s| s.revision_history_limit)
                .unwrap_or(10)
                .max(0) as usize;
        let mut empty: Vec<&ReplicaSet> = r
            .old
            .iter()
            .filter(|rs| {
                rs_replicas(rs) == 0
                    && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if empty.len() <= limit {
            return Ok(());
        }
        empty.sort_by_key(|rs| revision_of(rs));
        let api: Api<ReplicaSet> =
            Api::namespaced(self.client.clone(), &r.d.namespace().unwrap_or_default());
        for rs in &empty[..empty.len() - limit] {
            match api
                .delete(&rs.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) | Err(kube::Error::Api(kube::core::ErrorResponse { code: 404, .. })) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Writes the status (and the revision annotation) when it changed;
    /// returns when to look again for the progress deadline.
    async fn write_status(&self, r: &Rollout) -> anyhow::Result<Option<Duration>> {
        let now = Utc::now();
        let want = replicas(&r.d);
        let old = r.d.status.clone().unwrap_or_default();
        let sum = |f: fn(&ReplicaSet) -> i32| r.all().map(f).sum::<i32>();
        let total = sum(|rs| rs.status.as_ref().map_or(0, |s| s.replicas));
        let ready = sum(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        });
        let available = sum(rs_available);
        let updated = r
            .new
            .as_ref()
            .and_then(|n| n.status.as_ref())
            .map_or(0, |s| s.replicas);
        // Zero counts are left out, as Kubernetes' omitempty does.
        let count = |n: i32| Some(n).filter(|n| *n != 0);
        let mut status = DeploymentStatus {
            observed_generation: r.d.metadata.generation,
            replicas: count(total),
            updated_replicas: count(updated),
            ready_replicas: count(ready),
            available_replicas: count(available),
            unavailable_replicas: count((want - available).max(0)),
            collision_count: old.collision_count,
            conditions: old.conditions.clone(),
        };
        let mut conds = status.conditions.take().unwrap_or_default();
        let (_, unavailable) = surge_and_unavailable(&r.d);
        set_condition(
            &mut conds,
            if available >= want - unavailable {
                condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                    now,
                )
            } else {
                condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                    now,
                )
            },
        );
        let mut next = None;
        let spec = r.d.spec.clone().unwrap_or_default();
        let paused = spec.paused == Some(true);
        let progressing = conds.iter().find(|c| c.type_ == "Progressing").cloned();
        let timed_out_before = progressing
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
        let paused_reason = progressing
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        if paused && !timed_out_before {
            set_condition(
                &mut conds,
                condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentPaused",
                    "Deployment is paused".into(),
                    now,
                ),
            );
        } else if !paused && paused_reason {
            set_condition(
                &mut conds,
                condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed".into(),
                    now,
                ),
            );
        } else if !paused {
            if let Some(deadline) = spec.progress_deadline_seconds {
                let name = r.new.as_ref().map(|n| n.name_any()).unwrap_or_default();
                let old_pods = |s: &DeploymentStatus| {
                    s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0)
                };
                let complete = updated == want && total == want && available == want;
                let progressed = status.updated_replicas > old.updated_replicas
                    || old_pods(&status) < old_pods(&old)
                    || status.ready_replicas > old.ready_replicas
                    || status.available_replicas > old.available_replicas;
                if complete {
                    set_condition(
                        &mut conds,
                        condition(
                            "Progressing",
                            "True",
                            "NewReplicaSetAvailable",
                            format!("ReplicaSet {name:?} has successfully progressed."),
                            now,
                        ),
                    );
                } else if progressed {
                    let mut c = condition(
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        format!("ReplicaSet {name:?} is progressing."),
                        now,
                    );
                    if let Some(cur) = &progressing {
                        if cur.status == "True" {
                            c.last_transition_time = cur.last_transition_time.clone();
                        }
                    }
                    conds.retain(|x| x.type_ != "Progressing");
                    conds.push(c);
                } else if let Some(cur) = &progressing {
                    let since = cur.last_update_time.as_ref().map(|t| t.0).unwrap_or(now);
                    let at = since + chrono::Duration::seconds(deadline.into());
                    if cur.status == "True" && at <= now {
                        set_condition(
                            &mut conds,
                            condition(
                                "Progressing",
                                "False",
                                "ProgressDeadlineExceeded",
                                format!("ReplicaSet {name:?} has timed out progressing."),
                                now,
                            ),
                        );
                    } else if cur.status == "True" {
                        next = (at - now).to_std().ok().map(|d| d + Duration::from_secs(1));
                    }
                }
            }
        }
        // The order Kubernetes writes them in: Available, then Progressing.
        conds.sort_by_key(|c| u8::from(c.type_ != "Available"));
        status.conditions = Some(conds);
        let revision = r.new.as_ref().map(revision_of).filter(|r| *r > 0);
        let cur_rev =
            r.d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned();
        let rev_changed = revision.is_some_and(|v| Some(v.to_string()) != cur_rev);
        let unchanged_status =
            serde_json::to_value(&status).ok() == serde_json::to_value(&old).ok();
        if unchanged_status && !rev_changed {
            return Ok(next);
        }
        let annotation = revision
            .filter(|_| rev_changed)
            .map(|v| (REVISION, v.to_string()));
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), &r.d.namespace().unwrap_or_default());
        let status = serde_json::to_value(&status)?;
        match pods::update_status(&api, &r.d, status, annotation).await {
            Ok(_) | Err(kube::Error::Api(kube::core::ErrorResponse { code: 404, .. })) => Ok(next),
            // A newer copy is on its way through the watch.
            Err(kube::Error::Api(kube::core::ErrorResponse { code: 409, .. })) => {
                Ok(Some(Duration::from_millis(200)))
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn conditions(d: &Deployment) -> Vec<DeploymentCondition> {
    d.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
}

fn replace(r: &mut Rollout, rs: ReplicaSet) {
    let uid = rs.uid();
    if r.new.as_ref().is_some_and(|n| n.uid() == uid) {
        r.new = Some(rs);
    } else if let Some(o) = r.old.iter_mut().find(|o| o.uid() == uid) {
        *o = rs;
    }
}

/// The new ReplicaSet's size in a rolling update (`NewRSNewReplicas`):
/// grow towards the desired replicas while all pods stay within
/// replicas + maxSurge.
fn new_rs_replicas(r: &Rollout, current_new: i32) -> i32 {
    let want = replicas(&r.d);
    let (surge, _) = surge_and_unavailable(&r.d);
    let all: i32 = r.old.iter().map(rs_replicas).sum::<i32>() + current_new;
    let max_total = want + surge;
    if all >= max_total {
        return current_new;
    }
    current_new + (max_total - all).min(want - current_new).max(0)
}

/// Every pod is updated and available (`DeploymentComplete`).
fn deployment_complete(r: &Rollout) -> bool {
    let want = replicas(&r.d);
    let old_pods: i32 = r
        .old
        .iter()
        .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
        .sum();
    r.new.as_ref().is_some_and(|n| {
        n.status.as_ref().is_some_and(|s| s.replicas == want) && rs_available(n) == want
    }) && old_pods == 0
}
