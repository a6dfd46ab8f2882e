//! Ephemeral containers (`kubectl debug`): the rules of a pod spec's
//! `ephemeralContainers` (Kubernetes' `validateEphemeralContainers`) and of a
//! write through the `pods/ephemeralcontainers` subresource
//! (`ValidatePodEphemeralContainersUpdate`): containers may be added, never
//! changed or removed.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod};

use super::containers::validate_container_common;
use super::pod_update::{diff_paths, normalized};
use super::{validate_object_meta_update, validate_pod_spec, FieldError};
use crate::ephemeral_as_container;

/// Why a field outside the allowed set is refused.
const NOT_FOR_EPHEMERAL: &str = "cannot be set for an Ephemeral Container";

/// The fields an ephemeral container may not set (Kubernetes keeps an
/// allow-list; these are the Container fields outside it): nothing the pod
/// could come to rely on, such as ports, probes, lifecycle hooks or
/// resources.
fn forbidden_fields(c: &Container) -> Vec<&'static str> {
    let set = [
        ("lifecycle", c.lifecycle.is_some()),
        ("livenessProbe", c.liveness_probe.is_some()),
        ("ports", c.ports.as_ref().is_some_and(|p| !p.is_empty())),
        ("readinessProbe", c.readiness_probe.is_some()),
        (
            "resizePolicy",
            c.resize_policy.as_ref().is_some_and(|p| !p.is_empty()),
        ),
        (
            "resources",
            c.resources.as_ref().is_some_and(|r| {
                r.limits.as_ref().is_some_and(|l| !l.is_empty())
                    || r.requests.as_ref().is_some_and(|l| !l.is_empty())
                    || r.claims.as_ref().is_some_and(|l| !l.is_empty())
            }),
        ),
        ("restartPolicy", c.restart_policy.is_some()),
        ("startupProbe", c.startup_probe.is_some()),
    ];
    set.into_iter()
        .filter(|(_, s)| *s)
        .map(|(f, _)| f)
        .collect()
}

/// `validateEphemeralContainers`: each one is a valid container, named
/// uniquely among all the pod's containers, targeting an existing (not
/// ephemeral) container, without the fields ephemeral containers may not
/// use.
pub(super) fn validate_ephemeral_containers(
    ephemeral: &[EphemeralContainer],
    containers: &[Container],
    init: &[Container],
    volumes: &HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let others: HashSet<&str> = containers
        .iter()
        .chain(init)
        .map(|c| c.name.as_str())
        .collect();
    let mut all = others.clone();
    for (i, ec) in ephemeral.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let c = ephemeral_as_container(ec);
        errs.extend(validate_container_common(&c, volumes, &idx));
        if !all.insert(ec.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{idx}.name"), &ec.name));
        }
        if let Some(target) = ec.target_container_name.as_deref() {
            if !target.is_empty() && !others.contains(target) {
                errs.push(FieldError::not_found(
                    format!("{idx}.targetContainerName"),
                    target,
                ));
            }
        }
        for field in forbidden_fields(&c) {
            errs.push(FieldError::forbidden(
                format!("{idx}.{field}"),
                NOT_FOR_EPHEMERAL,
            ));
        }
        // Sub-path mounts are bind mounts that outlive the container.
        for (j, m) in ec.volume_mounts.iter().flatten().enumerate() {
            for (field, v) in [("subPath", &m.sub_path), ("subPathExpr", &m.sub_path_expr)] {
                if v.as_deref().is_some_and(|s| !s.is_empty()) {
                    errs.push(FieldError::forbidden(
                        format!("{idx}.volumeMounts[{j}].{field}"),
                        NOT_FOR_EPHEMERAL,
                    ));
                }
            }
        }
    }
    errs
}

/// `ValidatePodEphemeralContainersUpdate`: the new pod (the stored one with
/// the client's ephemeral containers) is a valid pod, and every existing
/// ephemeral container is still there, unchanged.
pub fn validate_pod_ephemeral_containers_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    match &new.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec")),
        None => errs.push(FieldError::required("spec.containers", "")),
    }
    let is_mirror = old
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    if is_mirror {
        return vec![FieldError::forbidden(
            "",
            "static pods do not support ephemeral containers",
        )];
    }
    let ephemeral = |p: &Pod| -> Vec<EphemeralContainer> {
        p.spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.clone())
            .unwrap_or_default()
    };
    let new_list = ephemeral(new);
    let by_name: HashMap<&str, &EphemeralContainer> =
        new_list.iter().map(|c| (c.name.as_str(), c)).collect();
    for old_c in ephemeral(old) {
        match by_name.get(old_c.name.as_str()) {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!(
                    "existing ephemeral containers {:?} may not be removed\n",
                    old_c.name
                ),
            )),
            Some(new_c) => {
                let (a, b) = (normalized(&old_c), normalized(*new_c));
                if a != b {
                    let mut changed = Vec::new();
                    diff_paths("", &a, &b, &mut changed);
                    let diff: String = changed
                        .iter()
                        .map(|p| format!("  {}: changed\n", p.trim_start_matches('.')))
                        .collect();
                    errs.push(FieldError::forbidden(
                        format!("spec.ephemeralContainers[{}]", old_c.name),
                        format!(
                            "existing ephemeral containers {:?} may not be changed\n{diff}",
                            old_c.name
                        ),
                    ));
                }
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::{invalid_message, validate_pod};
    use serde_json::json;

    fn pod(ephemeral: serde_json::Value) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
            "spec": {
                "containers": [{"name": "web", "image": "nginx"}],
                "initContainers": [{"name": "setup", "image": "busybox"}],
                "ephemeralContainers": ephemeral,
            }
        }))
        .unwrap();
        crate::defaults::pod(&mut p);
        p
    }

    fn message(errs: &[FieldError]) -> String {
        invalid_message("", "Pod", "web", errs)
    }

    #[test]
    fn ephemeral_containers_cannot_be_set_on_create() {
        let p = pod(json!([{"name": "debugger", "image": "busybox"}]));
        assert_eq!(
            message(&validate_pod(&p)),
            "Pod \"web\" is invalid: spec.ephemeralContainers: Forbidden: cannot be set on create"
        );
    }

    #[test]
    fn adding_one_is_valid_and_defaulted() {
        let old = pod(json!([]));
        let new = pod(
            json!([{"name": "debugger", "image": "busybox", "targetContainerName": "web", "stdin": true, "tty": true}]),
        );
        let ec = &new
            .spec
            .as_ref()
            .unwrap()
            .ephemeral_containers
            .as_ref()
            .unwrap()[0];
        assert_eq!(ec.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(ec.termination_message_policy.as_deref(), Some("File"));
        assert_eq!(ec.target_container_name.as_deref(), Some("web"));
        assert_eq!(validate_pod_ephemeral_containers_update(&new, &old), vec![]);
    }

    #[test]
    fn removal_and_change_are_refused_with_kubernetes_words() {
        let old = pod(json!([{"name": "debugger", "image": "busybox"}]));
        let removed = pod(json!([]));
        assert_eq!(
            message(&validate_pod_ephemeral_containers_update(&removed, &old)),
            "Pod \"web\" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debugger\" may not be removed\n"
        );
        let changed = pod(json!([{"name": "debugger", "image": "alpine"}]));
        let msg = message(&validate_pod_ephemeral_containers_update(&changed, &old));
        assert!(
            msg.starts_with("Pod \"web\" is invalid: spec.ephemeralContainers[debugger]: Forbidden: existing ephemeral containers \"debugger\" may not be changed\n"),
            "{msg}"
        );
        assert!(msg.contains("image: changed"), "{msg}");
    }

    #[test]
    fn names_targets_and_forbidden_fields() {
        let old = pod(json!([]));
        let new = pod(json!([
            {"name": "web", "image": "busybox"},
            {"name": "setup", "image": "busybox", "targetContainerName": "nosuch"},
            {"name": "probe", "image": "busybox",
             "ports": [{"containerPort": 80}],
             "readinessProbe": {"exec": {"command": ["true"]}},
             "lifecycle": {"preStop": {"exec": {"command": ["true"]}}},
             "resources": {"limits": {"cpu": "1"}}},
            {"name": "twice", "image": "busybox"},
            {"name": "twice", "image": "busybox", "targetContainerName": "twice"},
        ]));
        let fields: Vec<(String, String)> = validate_pod_ephemeral_containers_update(&new, &old)
            .iter()
            .map(|e| (e.field.clone(), e.body()))
            .collect();
        let has = |f: &str, body: &str| fields.iter().any(|(a, b)| a == f && b == body);
        assert!(
            has(
                "spec.ephemeralContainers[0].name",
                "Duplicate value: \"web\""
            ),
            "{fields:?}"
        );
        assert!(
            has(
                "spec.ephemeralContainers[1].name",
                "Duplicate value: \"setup\""
            ),
            "{fields:?}"
        );
        assert!(
            has(
                "spec.ephemeralContainers[1].targetContainerName",
                "Not found: \"nosuch\""
            ),
            "{fields:?}"
        );
        for f in ["ports", "readinessProbe", "lifecycle", "resources"] {
            assert!(
                has(
                    &format!("spec.ephemeralContainers[2].{f}"),
                    "Forbidden: cannot be set for an Ephemeral Container"
                ),
                "{f}: {fields:?}"
            );
        }
        assert!(
            has(
                "spec.ephemeralContainers[4].name",
                "Duplicate value: \"twice\""
            ),
            "{fields:?}"
        );
        // An ephemeral container cannot be a target.
        assert!(
            has(
                "spec.ephemeralContainers[4].targetContainerName",
                "Not found: \"twice\""
            ),
            "{fields:?}"
        );
    }

    #[test]
    fn sub_path_mounts_are_refused() {
        let mut old = pod(json!([]));
        old.spec.as_mut().unwrap().volumes = Some(vec![serde_json::from_value(
            json!({"name": "data", "emptyDir": {}}),
        )
        .unwrap()]);
        let mut new = old.clone();
        new.spec.as_mut().unwrap().ephemeral_containers = Some(vec![serde_json::from_value(json!(
            {"name": "dbg", "image": "busybox", "terminationMessagePolicy": "File", "imagePullPolicy": "Always",
             "volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "x"}]}
        ))
        .unwrap()]);
        let msg = message(&validate_pod_ephemeral_containers_update(&new, &old));
        assert_eq!(
            msg,
            "Pod \"web\" is invalid: spec.ephemeralContainers[0].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container"
        );
    }
}
