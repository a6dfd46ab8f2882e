//! The StatefulSet controller, as kube-controller-manager's: pods with
//! stable names `<set>-<ordinal>` (from `spec.ordinals.start`), hostname
//! the pod's name and subdomain the governing `serviceName`, so that a
//! headless Service gives each a stable DNS name. OrderedReady creates
//! them one at a time in ordinal order, each once the one before is
//! Running and Ready, and removes surplus ones from the highest ordinal
//! down, one at a time, while the rest are healthy; Parallel creates and
//! deletes without waiting. Failed pods are recreated under the same name.
//!
//! Templates are kept as ControllerRevisions ([`crate::revisions`]): a
//! RollingUpdate replaces pods whose revision is not the update revision
//! from the highest ordinal down to `partition`, one at a time, each after
//! the previous is healthy; pods below the partition are (re)created from
//! the current revision. OnDelete updates a pod only when it is deleted.
//!
//! Reads: statefulsets, pods, controllerrevisions. Writes: pods,
//! controllerrevisions, statefulsets/status, events
//! (`system:controller:statefulset-controller`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::events::Recorder;
use crate::pods;
use crate::revisions;
use crate::wiring::{controller_key, key_of, Key, Wiring};

const NAME: &str = "statefulset-controller";
const WORKERS: usize = 5;
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct Controller {
    client: Client,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    events: Recorder,
}

pub async fn run(clients: &crate::Clients) -> anyhow::Result<()> {
    let writer = clients.controller(NAME);
    let mut w = Wiring::new(NAME, clients.informers());
    let sets = w.watch(|sts: &StatefulSet| Some(key_of(sts)));
    let pods = w.watch(|p: &Pod| controller_key(p, "StatefulSet"));
    let revisions = w.watch(|r: &ControllerRevision| controller_key(r, "StatefulSet"));
    let c = Arc::new(Controller {
        client: writer.clone(),
        sets,
        pods,
        revisions,
        events: Recorder::new(writer, NAME),
    });
    w.run(c, WORKERS, |c, key| async move { c.sync(&key).await })
        .await;
    Ok(())
}

/// The ordinal of a pod named `<set>-<n>`.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    // Digits only, without a leading zero: `web-01` is not web's.
    let canonical = n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'));
    canonical.then(|| n.parse().ok()).flatten()
}

/// The pod with ordinal `n` from `template` at the revision named `hash`.
pub fn set_pod(sts: &StatefulSet, template: &PodTemplateSpec, n: i32, hash: &str) -> Pod {
    let set = sts.name_any();
    let name = format!("{set}-{n}");
    let me = pods::controller_ref(
        "apps/v1",
        "StatefulSet",
        &set,
        &sts.uid().unwrap_or_default(),
    );
    let mut pod = pods::pod_from_template(template, &sts.namespace().unwrap_or_default(), &set, me);
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), n.to_string());
    labels.insert(revisions::HASH_LABEL.into(), hash.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    let service = sts.spec.as_ref().and_then(|s| s.service_name.clone());
    if let Some(service) = service.filter(|s| !s.is_empty()) {
        spec.subdomain = Some(service);
    }
    pod
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn revision_of(p: &Pod) -> Option<&String> {
    p.labels().get(revisions::HASH_LABEL)
}

/// The template a revision holds.
fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

impl Controller {
    async fn sync(&self, key: &Key) -> anyhow::Result<Option<Duration>> {
        let (ns, name) = key;
        let Some(sts) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        if sts.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let uid = sts.uid().unwrap_or_default();
        let spec = sts.spec.clone().unwrap_or_default();
        let owned: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .filter(|p| pods::controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        // A StatefulSet's pods and status name revisions in full
        // (`web-6b9c8d7f5`), where a DaemonSet's pods carry the hash alone.
        let prefix = format!("{name}-");
        let in_use: BTreeSet<String> = owned
            .iter()
            .filter_map(|p| revision_of(p)?.strip_prefix(&prefix).map(str::to_string))
            .collect();
        let owner = revisions::Owner {
            api_version: "apps/v1",
            kind: "StatefulSet",
            namespace: ns,
            name,
            uid: &uid,
            template: &spec.template,
            history_limit: spec.revision_history_limit.unwrap_or(10),
        };
        let update = revisions::sync(&self.client, &self.revisions, &owner, &in_use).await?;
        let update_rev = format!("{prefix}{}", update.hash);
        let old_status = sts.status.clone().unwrap_or_default();
        let current_rev = old_status
            .current_revision
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| update_rev.clone());
        let current_template = revisions::owned(&self.revisions, &owner)
            .iter()
            .find(|r| r.name_any() == current_rev)
            .and_then(|r| template_of(r))
            .unwrap_or_else(|| spec.template.clone());

        let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
        let replicas = spec.replicas.unwrap_or(1);
        let wanted = start..start + replicas;
        let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
        let rolling = spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        let partition = spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0);
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = Utc::now();
        let healthy = |p: &Pod| {
            !terminating(p) && phase(p) == "Running" && pods::is_available(p, min_ready, now)
        };
        let mut by_ordinal: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
        for p in &owned {
            if let Some(n) = ordinal(name, &p.name_any()) {
                by_ordinal.insert(n, p.clone());
            }
        }
        let reference = ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("StatefulSet".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: Some(uid.clone()),
            ..Default::default()
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);

        // One pass of Kubernetes' ordered steps; `blocked` stops the pass
        // where OrderedReady must wait.
        let mut blocked = false;
        for (n, p) in &by_ordinal {
            if wanted.contains(n) && phase(p) == "Failed" && !terminating(p) {
                self.events
                    .warning(
                        &reference,
                        "RecreatingFailedPod",
                        &format!(
                            "StatefulSet {ns}/{name} is recreating failed Pod {}",
                            p.name_any()
                        ),
                    )
                    .await;
                self.delete(&api, p, &reference, name).await;
                if monotonic {
                    blocked = true;
                    break;
                }
            }
        }
        if !blocked {
            for n in wanted.clone() {
                match by_ordinal.get(&n) {
                    None => {
                        let (template, hash) = if rolling && n < partition {
                            (&current_template, &current_rev)
                        } else {
                            (&spec.template, &update_rev)
                        };
                        let pod = set_pod(&sts, template, n, hash);
                        self.create(&api, &pod, &reference, name).await;
                        if monotonic {
                            blocked = true;
                            break;
                        }
                    }
                    Some(p) if monotonic && !healthy(p) => {
                        blocked = true;
                        break;
                    }
                    Some(_) => {}
                }
            }
        }
        if !blocked {
            let first_unhealthy = by_ordinal
                .iter()
                .find(|(_, p)| !healthy(p))
                .map(|(n, _)| *n);
            for (n, p) in by_ordinal.iter().rev() {
                if wanted.contains(n) {
                    continue;
                }
                if monotonic && terminating(p) {
                    blocked = true;
                    break;
                }
                if terminating(p) {
                    continue;
                }
                // OrderedReady removes an unhealthy pod only if it is the
                // first unhealthy one.
                if monotonic && !healthy(p) && first_unhealthy != Some(*n) {
                    blocked = true;
                    break;
                }
                self.delete(&api, p, &reference, name).await;
                if monotonic {
                    blocked = true;
                    break;
                }
            }
        }
        if !blocked && rolling {
            for n in wanted.clone().rev().filter(|n| *n >= partition) {
                let Some(p) = by_ordinal.get(&n) else { break };
                if revision_of(p) != Some(&update_rev) && !terminating(p) {
                    self.delete(&api, p, &reference, name).await;
                    break;
                }
                if !healthy(p) {
                    break;
                }
            }
        }

        // Status from the pods as cached.
        let live: Vec<&Arc<Pod>> = by_ordinal.values().collect();
        let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
        let ready = count(&|p| pods::is_ready(p) && !terminating(p));
        let available = count(&|p| !terminating(p) && pods::is_available(p, min_ready, now));
        let current = count(&|p| revision_of(p) == Some(&current_rev));
        let updated = count(&|p| revision_of(p) == Some(&update_rev));
        let mut status = StatefulSetStatus {
            observed_generation: sts.metadata.generation,
            replicas: live.len() as i32,
            ready_replicas: Some(ready).filter(|n| *n > 0),
            available_replicas: Some(available),
            current_replicas: Some(current).filter(|n| *n > 0),
            updated_replicas: Some(updated).filter(|n| *n > 0),
            current_revision: Some(current_rev.clone()),
            update_revision: Some(update_rev.clone()),
            collision_count: Some(old_status.collision_count.unwrap_or(0)),
            conditions: old_status.conditions.clone(),
        };
        // A finished rolling update makes the update revision current.
        if updated == replicas && ready == replicas && live.len() as i32 == replicas {
            status.current_revision = Some(update_rev.clone());
            status.current_replicas = status.updated_replicas;
        }
        let mut next = live
            .iter()
            .filter_map(|p| pods::until_available(p, min_ready, now))
            .min()
            .map(|d| d + Duration::from_millis(100));
        if status != old_status {
            let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
            let mut body = (*sts).clone();
            body.status = Some(status);
            match sets
                .replace_status(name, &PostParams::default(), serde_json::to_vec(&body)?)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    next = Some(Duration::from_millis(200))
                }
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(next)
    }

    async fn create(&self, api: &Api<Pod>, pod: &Pod, reference: &ObjectReference, set: &str) {
        let name = pod.name_any();
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => {
                self.events
                    .normal(
                        reference,
                        "SuccessfulCreate",
                        &format!("create Pod {name} in StatefulSet {set} successful"),
                    )
                    .await
            }
            // The cache has not shown it yet.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                let msg = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                self.events
                    .warning(
                        reference,
                        "FailedCreate",
                        &format!("create Pod {name} in StatefulSet {set} failed error: {msg}"),
                    )
                    .await
            }
        }
    }

    async fn delete(&self, api: &Api<Pod>, pod: &Pod, reference: &ObjectReference, set: &str) {
        let name = pod.name_any();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                self.events
                    .normal(
                        reference,
                        "SuccessfulDelete",
                        &format!("delete Pod {name} in StatefulSet {set} successful"),
                    )
                    .await
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                self.events
                    .warning(
                        reference,
                        "FailedDelete",
                        &format!("delete Pod {name} in StatefulSet {set} failed error: {e}"),
                    )
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    #[test]
    fn ordinals_are_read_only_from_the_sets_own_names() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(ordinal("web", "web-db-1"), None);
    }

    #[test]
    fn a_set_pod_has_its_stable_identity() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
        .unwrap();
        let p = set_pod(&sts, &sts.spec.as_ref().unwrap().template, 2, "abc");
        assert_eq!(p.name_any(), "web-2");
        assert_eq!(p.metadata.generate_name, None);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let l = p.labels();
        assert_eq!(
            (
                l[POD_NAME_LABEL].as_str(),
                l[POD_INDEX_LABEL].as_str(),
                l["app"].as_str()
            ),
            ("web-2", "2", "web")
        );
        assert_eq!(l[revisions::HASH_LABEL], "abc");
    }

    #[test]
    fn a_revision_gives_back_its_template() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}))
        .unwrap();
        let rev = ControllerRevision {
            metadata: ObjectMeta::default(),
            data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
                revisions::patch(&t),
            )),
            revision: 1,
        };
        assert_eq!(template_of(&rev), Some(t));
    }
}
