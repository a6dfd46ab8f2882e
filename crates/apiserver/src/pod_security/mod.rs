//! PodSecurity admission, as kube-apiserver's built-in plugin: a namespace
//! chooses, by its `pod-security.kubernetes.io/<mode>[-version]` labels, the
//! Pod Security Standards level that its pods must meet (`enforce`: the
//! write is refused) or that earns a warning (`warn`; workload pod
//! templates are only warned about). Labelling a namespace with a stricter
//! `enforce` level warns about the pods already there. `audit` labels are
//! validated, but there is no audit log to annotate.

mod checks;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};

pub use checks::{Level, LevelVersion, Version};

use crate::resources::{self, ResourceDef};
use crate::server::State;
use crate::status::ApiError;

const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// The levels a namespace asks for, one per mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

/// A field error of the namespace's labels: (reason, field, message).
type LabelError = (String, String, String);

const PRIVILEGED_LATEST: LevelVersion = LevelVersion {
    level: Level::Privileged,
    version: Version::Latest,
};

impl Policy {
    /// The policy of a namespace with these labels (as kube-apiserver's
    /// default configuration: `privileged:latest` where nothing is set),
    /// and what is wrong with them. An unreadable enforce level enforces
    /// `restricted`; unreadable warn and audit levels fail open.
    pub fn from_labels<'a>(label: impl Fn(&str) -> Option<&'a str>) -> (Policy, Vec<LabelError>) {
        let mut errors = Vec::new();
        let mut parse = |mode: &str, invalid_level: Level| {
            let key = format!("{LABEL_PREFIX}{mode}");
            let mut lv = PRIVILEGED_LATEST;
            let level = label(&key);
            if let Some(value) = level {
                lv.level = Level::parse(value).unwrap_or_else(|| {
                    errors.push(label_error(
                        &key,
                        value,
                        "must be one of privileged, baseline, restricted",
                    ));
                    invalid_level
                });
            }
            let version_key = format!("{key}-version");
            let version = label(&version_key);
            if let Some(value) = version {
                lv.version = Version::parse(value).unwrap_or_else(|| {
                    errors.push(label_error(
                        &version_key,
                        value,
                        "must be \"latest\" or \"v1.x\"",
                    ));
                    Version::Latest
                });
            }
            let level_ok = level.is_some_and(|l| Level::parse(l).is_some());
            (lv, level_ok, version.is_some())
        };
        let (enforce, enforce_set, _) = parse("enforce", Level::Restricted);
        let (audit, _, _) = parse("audit", Level::Privileged);
        let (mut warn, _, warn_version_set) = parse("warn", Level::Privileged);
        // Without its own warn label, warn follows a stricter enforce level.
        let warn_set = label(&format!("{LABEL_PREFIX}warn")).is_some();
        if !warn_set && enforce_set && enforce.level > warn.level {
            warn.level = enforce.level;
            if !warn_version_set {
                warn.version = enforce.version;
            }
        }
        (
            Policy {
                enforce,
                audit,
                warn,
            },
            errors,
        )
    }

    fn from_object(obj: &Value) -> (Policy, Vec<LabelError>) {
        let labels = &obj["metadata"]["labels"];
        Policy::from_labels(|k| labels.get(k).and_then(Value::as_str))
    }

    fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }
}

fn label_error(key: &str, value: &str, why: &str) -> LabelError {
    (
        "FieldValueInvalid".into(),
        format!("metadata.labels[{key}]"),
        format!("Invalid value: {value:?}: {why}"),
    )
}

/// Where a kind keeps the pod it stands for: the pod itself, or the
/// template of the pods a workload makes.
fn pod_template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "PodTemplate" => &["template"],
        "Deployment"
        | "ReplicaSet"
        | "ReplicationController"
        | "StatefulSet"
        | "DaemonSet"
        | "Job" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    })
}

/// The policy of namespace `ns` for a write of `def` there: `None` when
/// PodSecurity has nothing to check (kinds without pods, or a namespace
/// that allows everything).
pub async fn namespace_policy(
    state: &State,
    def: &ResourceDef,
    ns: Option<&str>,
) -> Result<Option<Policy>, ApiError> {
    let Some(ns) = ns.filter(|_| pod_template_path(def.kind).is_some()) else {
        return Ok(None);
    };
    let nsdef = resources::namespaces();
    let key = nsdef.key(None, ns);
    // Writes wait for the cache to reach them, so a label just set is seen.
    let policy = match state.cache.resource(nsdef).get(&key) {
        Some(o) => {
            let labels = &o.meta.labels;
            Policy::from_labels(|k| labels.iter().find(|(lk, _)| &**lk == k).map(|(_, v)| &**v)).0
        }
        None => match state.store.get(&key).await? {
            Some(kv) => serde_json::from_slice::<Value>(&kv.value)
                .map(|v| Policy::from_object(&v).0)
                .map_err(|e| {
                    ApiError::internal(format!("failed to lookup namespace {ns:?}: {e}"))
                })?,
            None => return Ok(None),
        },
    };
    Ok((!policy.fully_privileged()).then_some(policy))
}

/// PodSecurity admission of a create (`old` None) or update of `new` (of
/// kind `def`, subresource `sub`), `policy` being its namespace's from
/// [`namespace_policy`]: the warnings to return, or the refusal.
pub fn admit(
    state: &State,
    def: &ResourceDef,
    sub: Option<&str>,
    policy: Option<&Policy>,
    new: &Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    if sub.is_some_and(|s| s != "ephemeralcontainers") {
        // Status, binding and scale writes do not change what runs (an
        // added ephemeral container does, and is judged as a pod update).
        return Ok(Vec::new());
    }
    if def.kind == "Namespace" {
        return admit_namespace(state, new, old);
    }
    let Some(policy) = policy else {
        return Ok(Vec::new());
    };
    let Some(path) = pod_template_path(def.kind) else {
        return Ok(Vec::new());
    };
    let decode_err =
        |e: serde_json::Error| ApiError::bad_request(format!("failed to decode object: {e}"));
    if def.kind == "Pod" {
        let pod: Pod = serde_json::from_value(new.clone()).map_err(decode_err)?;
        if let Some(old) = old {
            let old: Pod = serde_json::from_value(old.clone()).map_err(decode_err)?;
            if !significant_pod_update(&pod, &old) {
                return Ok(Vec::new());
            }
        }
        let spec = pod.spec.unwrap_or_default();
        let enforced = checks::evaluate(policy.enforce, &pod.metadata, &spec);
        if !enforced.is_empty() {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            return Err(ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: violates PodSecurity \"{}\": {}",
                policy.enforce,
                checks::describe(&enforced)
            ))
            .with_details(json!({"name": name, "kind": "pods"})));
        }
        return Ok(warn(policy, &pod.metadata, &spec));
    }
    let template = path.iter().fold(new, |v, k| &v[k]);
    if template.is_null() {
        return Ok(Vec::new());
    }
    let template: PodTemplateSpec = serde_json::from_value(template.clone()).map_err(decode_err)?;
    let meta = template.metadata.unwrap_or_default();
    Ok(warn(policy, &meta, &template.spec.unwrap_or_default()))
}

fn warn(policy: &Policy, meta: &ObjectMeta, spec: &PodSpec) -> Vec<String> {
    let failed = checks::evaluate(policy.warn, meta, spec);
    if failed.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "would violate PodSecurity \"{}\": {}",
        policy.warn,
        checks::describe(&failed)
    )]
}

/// Only a changed image (or a new container) can change what a pod
/// update is judged on; other pod spec fields cannot change.
fn significant_pod_update(new: &Pod, old: &Pod) -> bool {
    let (Some(new), Some(old)) = (&new.spec, &old.spec) else {
        return true;
    };
    let images = |cs: &[k8s_openapi::api::core::v1::Container]| -> Vec<Option<String>> {
        cs.iter().map(|c| c.image.clone()).collect()
    };
    if images(&new.containers) != images(&old.containers)
        || images(new.init_containers.as_deref().unwrap_or_default())
            != images(old.init_containers.as_deref().unwrap_or_default())
    {
        return true;
    }
    let old_ephemeral = old.ephemeral_containers.as_deref().unwrap_or_default();
    new.ephemeral_containers.iter().flatten().any(|c| {
        old_ephemeral
            .iter()
            .find(|o| o.name == c.name)
            .is_none_or(|o| o.image != c.image)
    })
}

/// A namespace's labels must name levels and versions that exist; a
/// stricter enforce level is checked against the pods already there, and
/// each kind of violation found is a warning.
fn admit_namespace(
    state: &State,
    new: &Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let (policy, errors) = Policy::from_object(new);
    let name = new["metadata"]["name"].as_str().unwrap_or_default();
    let invalid = || ApiError::invalid("Namespace", "", name, errors.clone());
    let Some(old) = old else {
        return if errors.is_empty() {
            Ok(Vec::new())
        } else {
            Err(invalid())
        };
    };
    let (old_policy, old_errors) = Policy::from_object(old);
    if !errors.is_empty() && errors != old_errors {
        return Err(invalid());
    }
    let (enforce, before) = (policy.enforce, old_policy.enforce);
    if enforce == before
        || enforce.level == Level::Privileged
        || (enforce.version == before.version && enforce.level <= before.level)
    {
        return Ok(Vec::new());
    }
    Ok(existing_pod_warnings(state, name, enforce))
}

fn existing_pod_warnings(state: &State, namespace: &str, enforce: LevelVersion) -> Vec<String> {
    let def = resources::pods();
    let (objs, _) = state
        .cache
        .resource(def)
        .list(&def.ns_prefix(Some(namespace)));
    // Per distinct list of reasons: the first pod name and how many pods.
    let mut found: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for obj in objs {
        let Ok(pod) = serde_json::from_slice::<Pod>(&obj.bytes) else {
            continue;
        };
        let spec = pod.spec.unwrap_or_default();
        let failed = checks::evaluate(enforce, &pod.metadata, &spec);
        if failed.is_empty() {
            continue;
        }
        let name = pod.metadata.name.unwrap_or_default();
        let entry = found
            .entry(checks::reasons(&failed))
            .or_insert_with(|| (name.clone(), 0));
        if name < entry.0 {
            entry.0 = name;
        }
        entry.1 += 1;
    }
    if found.is_empty() {
        return Vec::new();
    }
    let mut pods: Vec<String> = found
        .into_iter()
        .map(|(reasons, (pod, count))| match count {
            1 => format!("{pod}: {reasons}"),
            2 => format!("{pod} (and 1 other pod): {reasons}"),
            n => format!("{pod} (and {} other pods): {reasons}", n - 1),
        })
        .collect();
    pods.sort();
    let mut warnings = vec![format!(
        "existing pods in namespace {namespace:?} violate the new PodSecurity enforce level \"{enforce}\""
    )];
    warnings.extend(pods);
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(labels: &[(&str, &str)]) -> (Policy, Vec<LabelError>) {
        Policy::from_labels(|k| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v))
    }

    fn lv(level: Level, version: Version) -> LevelVersion {
        LevelVersion { level, version }
    }

    #[test]
    fn no_labels_allow_everything() {
        let (p, errors) = policy(&[]);
        assert!(errors.is_empty());
        assert!(p.fully_privileged());
    }

    #[test]
    fn warn_follows_a_stricter_enforce_level_unless_set() {
        let (p, _) = policy(&[
            ("pod-security.kubernetes.io/enforce", "baseline"),
            ("pod-security.kubernetes.io/enforce-version", "v1.30"),
        ]);
        assert_eq!(p.enforce, lv(Level::Baseline, Version::Minor(30)));
        assert_eq!(p.warn, lv(Level::Baseline, Version::Minor(30)));
        assert_eq!(p.audit, PRIVILEGED_LATEST);
        let (p, _) = policy(&[
            ("pod-security.kubernetes.io/enforce", "baseline"),
            ("pod-security.kubernetes.io/warn", "privileged"),
        ]);
        assert_eq!(p.warn.level, Level::Privileged);
    }

    #[test]
    fn bad_labels_are_field_errors_and_enforce_fails_closed() {
        let (p, errors) = policy(&[
            ("pod-security.kubernetes.io/enforce", "strict"),
            ("pod-security.kubernetes.io/warn", "loose"),
            ("pod-security.kubernetes.io/warn-version", "1.2"),
        ]);
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(p.warn.level, Level::Privileged);
        assert_eq!(
            errors,
            vec![
                label_error(
                    "pod-security.kubernetes.io/enforce",
                    "strict",
                    "must be one of privileged, baseline, restricted"
                ),
                label_error(
                    "pod-security.kubernetes.io/warn",
                    "loose",
                    "must be one of privileged, baseline, restricted"
                ),
                label_error(
                    "pod-security.kubernetes.io/warn-version",
                    "1.2",
                    "must be \"latest\" or \"v1.x\""
                ),
            ]
        );
    }

    #[test]
    fn only_image_changes_make_a_pod_update_significant() {
        let pod = |image: &str, labels: Value| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "labels": labels},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }))
            .unwrap()
        };
        assert!(!significant_pod_update(
            &pod("a", json!({"x": "1"})),
            &pod("a", json!({}))
        ));
        assert!(significant_pod_update(
            &pod("b", json!({})),
            &pod("a", json!({}))
        ));
    }
}
