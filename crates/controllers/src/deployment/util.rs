//! The Deployment controller's arithmetic, as Kubernetes' deployment util:
//! template hashes and ReplicaSet names, maxSurge/maxUnavailable, revisions
//! and conditions. Pure functions.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations a Deployment does not pass on to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub fn copied_annotation(key: &str) -> bool {
    !NOT_COPIED.contains(&key)
}

/// The template's hash as Kubernetes spells it: the FNV-1a hash of the
/// template (and the collision count, if any), its decimal digits mapped
/// onto the safe alphabet (`65d846d465`).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = template.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(HASH_LABEL);
    }
    let mut bytes = serde_json::to_vec(&t).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    let mut h: u32 = 0x811c9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// Templates equal apart from the pod-template-hash label.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        let m = t.metadata.get_or_insert_with(Default::default);
        if let Some(l) = m.labels.as_mut() {
            l.remove(HASH_LABEL);
            if l.is_empty() {
                m.labels = None;
            }
        }
        m.creation_timestamp = None;
        serde_json::to_value(t).unwrap_or_default()
    };
    strip(a) == strip(b)
}

fn resolve(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = pct * i64::from(total);
            let v = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            v as i32
        }
    }
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rolling(d: &Deployment) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDeployment> {
    let s = d.spec.as_ref()?.strategy.as_ref()?;
    if s.type_.as_deref() == Some("Recreate") {
        return None;
    }
    s.rolling_update.as_ref()
}

/// (maxSurge, maxUnavailable) in pods: surge rounds up, unavailability
/// down, and both zero means one unavailable.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let Some(r) = rolling(d) else {
        return (0, 0);
    };
    let n = replicas(d);
    let surge = resolve(r.max_surge.as_ref(), n, true);
    let unavailable = resolve(r.max_unavailable.as_ref(), n, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable.min(n))
    }
}

pub fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// `SetDeploymentCondition`: unchanged status and reason leave the
/// condition as it is; an unchanged status keeps its transition time.
pub fn set_condition(conds: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hashes_look_like_kubernetes_ones() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}
        }))
        .unwrap();
        let h = template_hash(&t, None);
        assert!((6..=10).contains(&h.len()), "{h}");
        assert!(h.bytes().all(|b| b"4567896bcdf".contains(&b)), "{h}");
        assert_ne!(h, template_hash(&t, Some(1)));
        let mut labelled = t.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), h.clone());
        assert_eq!(template_hash(&labelled, None), h);
        assert!(equal_ignoring_hash(&t, &labelled));
    }

    #[test]
    fn percentages_resolve_as_kubernetes() {
        let d: Deployment = serde_json::from_value(json!({"spec": {"replicas": 5,
            "selector": {}, "template": {},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}}))
        .unwrap();
        assert_eq!(surge_and_unavailable(&d), (2, 1));
        let d: Deployment = serde_json::from_value(json!({"spec": {"replicas": 3,
            "selector": {}, "template": {},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}}}))
        .unwrap();
        assert_eq!(surge_and_unavailable(&d), (0, 1));
    }
}
