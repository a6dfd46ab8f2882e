//! What the workload controllers share about their pods: making a pod
//! from a template (owned by its controller), pod readiness and
//! availability, Kubernetes' order for deleting surplus pods, adoption and
//! release through ownerReferences, expectations (creates and deletes
//! made but not yet seen through the watch, so a lagging watch never causes
//! a second create), and status writes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};

/// A controller's reference to itself in the pods it owns.
pub fn controller_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The reference of `meta`'s controller, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// `controller.GetPodFromTemplate`: the template's labels, annotations,
/// finalizers and spec, named `<prefix>-<random>` by the API server.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    prefix: &str,
    owner: OwnerReference,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: Some(namespace.into()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Neither finished nor being deleted (`controller.IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// When the pod's Ready condition became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<DateTime<Utc>>> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready` seconds (`podutil.IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready: i32, now: DateTime<Utc>) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => t + chrono::Duration::seconds(min_ready.into()) <= now,
    }
}

/// How long until a ready but not yet available pod becomes available.
pub fn until_available(pod: &Pod, min_ready: i32, now: DateTime<Utc>) -> Option<Duration> {
    let since = ready_since(pod)??;
    let at = since + chrono::Duration::seconds(min_ready.into());
    (at > now).then(|| (at - now).to_std().unwrap_or_default())
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Kubernetes' preference among pods to delete (`ActivePodsWithRanks`),
/// most deletable first: unscheduled, then pending, unknown, running; not
/// ready before ready; lower deletion cost; more pods of the same owner on
/// its node (`rank`); ready for less time (on a log2 scale); more restarts;
/// newer.
pub fn deletion_order(pods: &mut [(&Pod, usize)], now: DateTime<Utc>) {
    let log_bucket = |t: Option<DateTime<Utc>>| {
        t.map(|t| {
            let secs = (now - t).num_seconds().max(0) as u64;
            64 - (secs + 1).leading_zeros()
        })
    };
    pods.sort_by(|(a, ra), (b, rb)| {
        let assigned = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        assigned(a)
            .cmp(&assigned(b))
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(is_ready(a).cmp(&is_ready(b)))
            .then(deletion_cost(a).cmp(&deletion_cost(b)))
            .then(rb.cmp(ra))
            .then_with(
                || match (ready_since(a).flatten(), ready_since(b).flatten()) {
                    (Some(x), Some(y)) => log_bucket(Some(x)).cmp(&log_bucket(Some(y))),
                    _ => std::cmp::Ordering::Equal,
                },
            )
            .then(restarts(b).cmp(&restarts(a)))
            // Newer first; a pod without a creation time before all.
            .then_with(|| match (created(a), created(b)) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(&x),
            })
    });
}

/// Adds the controller reference to an orphan pod (adoption) or removes it
/// (release); both are patches guarded by the pod's uid.
pub async fn set_controller(
    pods: &Api<Pod>,
    pod: &Pod,
    owner: Option<&OwnerReference>,
) -> Result<(), kube::Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut refs: Vec<OwnerReference> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| Some(r.uid.as_str()) != owner.map(|o| o.uid.as_str()))
        .filter(|r| owner.is_some() || r.controller != Some(true))
        .cloned()
        .collect();
    refs.extend(owner.cloned());
    // The resourceVersion makes this a compare-and-swap: the pod was judged
    // as it was read.
    let patch = serde_json::json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": pod.metadata.resource_version,
    }});
    pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Writes `status` (and `annotations`, if given) to the status
/// subresource of `object`, the controller's cached copy, with an update
/// (PUT), as Kubernetes' controllers do: their bootstrap roles grant
/// `update` on `.../status`, not `patch`. The cached resourceVersion makes
/// it a compare-and-swap; a 409 means a newer copy is coming through the
/// watch, which syncs the owner again.
pub async fn update_status<K>(
    api: &Api<K>,
    object: &K,
    status: serde_json::Value,
    annotations: Option<(&str, String)>,
) -> Result<(), kube::Error>
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::Serialize
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut body = serde_json::to_value(object).map_err(kube::Error::SerdeError)?;
    // Nulls stand for fields left out (a merge patch's deletions).
    let status = match status {
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    };
    body["status"] = status;
    if let Some((key, value)) = annotations {
        body["metadata"]["annotations"][key] = serde_json::Value::String(value);
    }
    let name = object.meta().name.clone().unwrap_or_default();
    let bytes = serde_json::to_vec(&body).map_err(kube::Error::SerdeError)?;
    api.replace_status(&name, &PostParams::default(), bytes)
        .await
        .map(|_| ())
}

/// How long expectations are trusted before a controller acts anyway
/// (kube-controller-manager's ExpectationsTimeout).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Expected {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Option<Instant>,
}

/// Per controller (by key): the pods it created or deleted that its pod
/// watch has not shown yet. A controller acts only once they are all seen.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Expected) -> T) -> T {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(key.to_string()).or_default();
        e.since.get_or_insert_with(Instant::now);
        f(e)
    }

    pub fn created(&self, key: &str, pod: &str) {
        self.with(key, |e| e.creates.insert(pod.to_string()));
    }

    pub fn deleting(&self, key: &str, pod: &str) {
        self.with(key, |e| e.deletes.insert(pod.to_string()));
    }

    /// A delete that failed: nothing to wait for.
    pub fn delete_failed(&self, key: &str, pod: &str) {
        self.with(key, |e| e.deletes.remove(pod));
    }

    /// Whether every expected create now shows in the pod cache and every
    /// expected delete is gone from it or marked; `present` says of a pod
    /// name None (not cached) or whether it is being deleted.
    pub fn satisfied(&self, key: &str, present: impl Fn(&str) -> Option<bool>) -> bool {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = m.get_mut(key) else {
            return true;
        };
        e.creates.retain(|p| present(p).is_none());
        e.deletes.retain(|p| present(p) == Some(false));
        if e.creates.is_empty() && e.deletes.is_empty() {
            m.remove(key);
            return true;
        }
        if e.since.is_some_and(|s| s.elapsed() > EXPECTATIONS_TIMEOUT) {
            tracing::warn!(
                controller = key,
                "expected pod creations or deletions were never seen; acting anyway"
            );
            m.remove(key);
            return true;
        }
        false
    }

    pub fn forget(&self, key: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// The labels a pod template gives its pods.
pub fn template_labels(t: Option<&PodTemplateSpec>) -> BTreeMap<String, String> {
    t.and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, age_secs: i64) -> Pod {
        let now = Utc::now();
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(now - chrono::Duration::seconds(age_secs))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()).filter(|n: &String| !n.is_empty()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(now - chrono::Duration::seconds(age_secs))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn surplus_pods_go_in_kubernetes_order() {
        let pods = [
            pod("ready-old", "n1", "Running", true, 1000),
            pod("ready-new", "n1", "Running", true, 10),
            pod("not-ready", "n1", "Running", false, 10),
            pod("pending", "n1", "Pending", false, 10),
            pod("unscheduled", "", "Pending", false, 10),
        ];
        let mut ranked: Vec<(&Pod, usize)> = pods.iter().map(|p| (p, 0)).collect();
        deletion_order(&mut ranked, Utc::now());
        let names: Vec<&str> = ranked
            .iter()
            .map(|(p, _)| p.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "not-ready",
                "ready-new",
                "ready-old"
            ]
        );
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p", "n", "Running", true, 5);
        let now = Utc::now();
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 3, now));
        assert!(!is_available(&p, 30, now));
        assert!(until_available(&p, 30, now).is_some());
    }

    #[test]
    fn expectations_hold_until_the_watch_shows_the_pods() {
        let e = Expectations::default();
        e.created("rs", "a");
        e.deleting("rs", "b");
        // a not seen yet, b still there.
        assert!(!e.satisfied("rs", |p| (p == "b").then_some(false)));
        // a seen, b still there and not marked.
        assert!(!e.satisfied("rs", |_| Some(false)));
        assert!(e.satisfied("rs", |p| Some(p == "b")));
    }
}
