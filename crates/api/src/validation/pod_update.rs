//! Pod updates (`ValidatePodUpdate`) and writes through `pods/status`
//! (`ValidatePodStatusUpdate`): what may change once a pod exists.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::meta::validate_object_meta_update;
use super::names::is_dns1123_subdomain;
use super::pod::validate_pod_spec;
use super::{BadValue, FieldError};

/// The spec fields a pod update may change, in Kubernetes' wording.
const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`: the new pod must be valid and its spec equal to the
/// old one except for images, a lowered or newly set activeDeadlineSeconds,
/// and added tolerations.
pub fn validate_pod_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    match &new.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec")),
        None => errs.push(FieldError::required("spec.containers", "")),
    }
    let (Some(new_spec), Some(old_spec)) = (&new.spec, &old.spec) else {
        return errs;
    };
    for (field, n, o) in [
        (
            "containers",
            &new_spec.containers[..],
            &old_spec.containers[..],
        ),
        (
            "initContainers",
            new_spec.init_containers.as_deref().unwrap_or(&[]),
            old_spec.init_containers.as_deref().unwrap_or(&[]),
        ),
    ] {
        if n.len() != o.len() {
            errs.push(FieldError::forbidden(
                format!("spec.{field}"),
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
    }
    match (
        new_spec.active_deadline_seconds,
        old_spec.active_deadline_seconds,
    ) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be between 0 and 2147483647, inclusive",
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            BadValue::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    let new_tol = new_spec.tolerations.as_deref().unwrap_or(&[]);
    for old_t in old_spec.tolerations.iter().flatten() {
        let kept = new_tol.iter().any(|n| {
            let mut o = old_t.clone();
            o.toleration_seconds = n.toleration_seconds;
            o == *n
        });
        if !kept {
            errs.push(FieldError::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return errs;
        }
    }
    // Undo the allowed changes; whatever still differs is forbidden.
    let mut munged = new_spec.clone();
    for (m, o) in munged.containers.iter_mut().zip(&old_spec.containers) {
        m.image = o.image.clone();
    }
    for (m, o) in munged
        .init_containers
        .iter_mut()
        .flatten()
        .zip(old_spec.init_containers.iter().flatten())
    {
        m.image = o.image.clone();
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    munged.tolerations = old_spec.tolerations.clone();
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    let munged_v = normalized(&munged);
    let old_v = normalized(old_spec);
    if munged_v != old_v {
        let mut changed = Vec::new();
        diff_paths("spec", &old_v, &munged_v, &mut changed);
        let diff: String = changed
            .iter()
            .map(|p| format!("\n  {p}: changed"))
            .collect();
        errs.push(FieldError::forbidden(
            "spec",
            format!("pod updates may not change fields other than {POD_UPDATABLE_FIELDS}{diff}"),
        ));
    }
    errs
}

/// `ValidatePodStatusUpdate` (the `pods/status` subresource): metadata
/// stays, the node binding is not changed here, containers of a pod that
/// does not restart them do not come back from terminated, and pod/host IPs
/// are IP addresses with `podIPs[0]` equal to `podIP`.
pub fn validate_pod_status_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    if node(new) != node(old) {
        errs.push(FieldError::forbidden(
            "status.nodeName",
            "may not be changed directly",
        ));
    }
    let status = new.status.clone().unwrap_or_default();
    let old_status = old.status.clone().unwrap_or_default();
    if let Some(n) = status
        .nominated_node_name
        .as_deref()
        .filter(|n| !n.is_empty())
    {
        if old_status.nominated_node_name.as_deref() != Some(n) {
            errs.extend(
                is_dns1123_subdomain(n)
                    .into_iter()
                    .map(|m| FieldError::invalid("status.nominatedNodeName", n, m)),
            );
        }
    }
    let old_spec = old.spec.clone().unwrap_or_default();
    let restart_policy = old_spec.restart_policy.as_deref().unwrap_or("Always");
    // Sidecars (init containers with restartPolicy Always) restart whatever the pod's policy.
    let sidecars: Vec<&str> = old_spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    // ValidateContainerStateTransition: under restartPolicy Always any container may leave
    // terminated; under OnFailure only failed ones.
    if restart_policy != "Always" {
        for (field, new_cs, old_cs, may_restart_anyway) in [
            (
                "containerStatuses",
                &status.container_statuses,
                &old_status.container_statuses,
                &[][..],
            ),
            (
                "initContainerStatuses",
                &status.init_container_statuses,
                &old_status.init_container_statuses,
                &sidecars[..],
            ),
        ] {
            for (i, prev) in old_cs.iter().flatten().enumerate() {
                let Some(term) = prev.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                    continue;
                };
                let may_restart = (restart_policy == "OnFailure" && term.exit_code != 0)
                    || may_restart_anyway.contains(&prev.name.as_str());
                let revived = new_cs.iter().flatten().any(|cs| {
                    cs.name == prev.name && cs.state.as_ref().is_none_or(|s| s.terminated.is_none())
                });
                if revived && !may_restart {
                    errs.push(FieldError::forbidden(
                        format!("status.{field}[{i}].state"),
                        "may not be transitioned to non-terminated state",
                    ));
                }
            }
        }
    }
    let pod_ip = status.pod_ip.clone().unwrap_or_default();
    let ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    if !ips.is_empty() && ips[0] != pod_ip {
        errs.push(FieldError::invalid(
            "status.podIPs[0].ip",
            &ips[0],
            "must be equal to `podIP`",
        ));
    }
    for (i, ip) in ips.iter().enumerate() {
        if ip.parse::<std::net::IpAddr>().is_err() {
            errs.push(FieldError::invalid(
                format!("status.podIPs[{i}].ip"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    let host_ips: Vec<String> = status
        .host_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    for (i, ip) in host_ips.iter().enumerate() {
        if ip.parse::<std::net::IpAddr>().is_err() {
            errs.push(FieldError::invalid(
                format!("status.hostIPs[{i}].ip"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    errs
}

/// JSON form with empty lists and maps dropped: Kubernetes compares specs
/// semantically, where an empty list equals an absent one.
pub(super) fn normalized<T: serde::Serialize>(v: &T) -> Value {
    fn strip(v: Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Array(a) if a.is_empty() => None,
            Value::Array(a) => Some(Value::Array(
                a.into_iter()
                    .map(|x| strip(x).unwrap_or(Value::Null))
                    .collect(),
            )),
            Value::Object(o) => {
                let m: serde_json::Map<String, Value> = o
                    .into_iter()
                    .filter_map(|(k, v)| strip(v).map(|v| (k, v)))
                    .collect();
                Some(Value::Object(m))
            }
            other => Some(other),
        }
    }
    strip(serde_json::to_value(v).unwrap_or(Value::Null)).unwrap_or(Value::Null)
}

/// Paths (Kubernetes style) where two JSON values differ.
pub(super) fn diff_paths(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if va != vb {
                    diff_paths(&format!("{path}.{k}"), va, vb, out);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if va != vb {
                    diff_paths(&format!("{path}[{i}]"), va, vb, out);
                }
            }
        }
        _ => out.push(path.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::tests::{messages, ok_pod, pod};
    use crate::validation::CauseType;
    use k8s_openapi::api::core::v1::{Container, Toleration};
    use serde_json::json;

    #[test]
    fn pod_update_rules() {
        let old = pod(ok_pod());
        let mut new = old.clone();
        new.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.26".into());
        new.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
        new.spec
            .as_mut()
            .unwrap()
            .tolerations
            .as_mut()
            .unwrap()
            .push(Toleration {
                key: Some("k".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            });
        new.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
        assert_eq!(
            messages(&validate_pod_update(&new, &old)),
            Vec::<String>::new()
        );

        let mut raised = new.clone();
        raised.spec.as_mut().unwrap().active_deadline_seconds = Some(120);
        assert_eq!(
            messages(&validate_pod_update(&raised, &new)),
            vec!["spec.activeDeadlineSeconds: Invalid value: 120: must be less than or equal to previous value"]
        );

        let mut removed = new.clone();
        removed
            .spec
            .as_mut()
            .unwrap()
            .tolerations
            .as_mut()
            .unwrap()
            .pop();
        removed
            .spec
            .as_mut()
            .unwrap()
            .tolerations
            .as_mut()
            .unwrap()
            .pop();
        assert_eq!(
            messages(&validate_pod_update(&removed, &new)),
            vec!["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
        );

        let mut ports = old.clone();
        ports.spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap()[0]
            .container_port = 8080;
        let errs = validate_pod_update(&ports, &old);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec");
        assert_eq!(errs[0].cause_type, CauseType::Forbidden);
        assert!(errs[0].message().starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
        assert!(
            errs[0]
                .detail
                .contains("spec.containers[0].ports[0].containerPort"),
            "{}",
            errs[0].detail
        );

        let mut renamed = old.clone();
        renamed.metadata.name = Some("other".into());
        assert_eq!(
            messages(&validate_pod_update(&renamed, &old)),
            vec![r#"metadata.name: Invalid value: "other": field is immutable"#]
        );

        let mut extra = old.clone();
        extra.spec.as_mut().unwrap().containers.push(Container {
            name: "two".into(),
            image: Some("x".into()),
            ..old.spec.as_ref().unwrap().containers[0].clone()
        });
        assert_eq!(
            messages(&validate_pod_update(&extra, &old)),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
    }

    #[test]
    fn pod_status_updates() {
        let mut old = pod(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}));
        old.status = Some(
            serde_json::from_value(json!({"phase": "Failed", "containerStatuses": [{
            "name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1}}}]}))
            .unwrap(),
        );
        let mut revived = old.clone();
        revived
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .state = Some(serde_json::from_value(json!({"running": {}})).unwrap());
        assert_eq!(
            messages(&validate_pod_status_update(&revived, &old)),
            vec!["status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"]
        );
        // Under restartPolicy Always (the default) a terminated container restarts.
        let mut always = old.clone();
        always.spec.as_mut().unwrap().restart_policy = None;
        let mut restarted = revived.clone();
        restarted.spec = always.spec.clone();
        assert!(validate_pod_status_update(&restarted, &always).is_empty());
        // Under OnFailure only a failed container does; one that succeeded stays terminated.
        let mut on_failure = old.clone();
        on_failure.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        let mut retried = revived.clone();
        retried.spec = on_failure.spec.clone();
        assert!(validate_pod_status_update(&retried, &on_failure).is_empty());
        on_failure
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .state = Some(serde_json::from_value(json!({"terminated": {"exitCode": 0}})).unwrap());
        assert_eq!(validate_pod_status_update(&retried, &on_failure).len(), 1);
        // A sidecar restarts under any pod policy; a plain init container of a Never pod does not.
        let with_init = |policy: Option<&str>| {
            let mut p = old.clone();
            let mut init = p.spec.as_ref().unwrap().containers[0].clone();
            init.name = "init".into();
            init.restart_policy = policy.map(Into::into);
            p.spec.as_mut().unwrap().init_containers = Some(vec![init]);
            let status = p.status.as_mut().unwrap();
            status.init_container_statuses = status.container_statuses.clone();
            status.init_container_statuses.as_mut().unwrap()[0].name = "init".into();
            let mut running = p.clone();
            let status = running.status.as_mut().unwrap();
            status.init_container_statuses.as_mut().unwrap()[0].state =
                Some(serde_json::from_value(json!({"running": {}})).unwrap());
            messages(&validate_pod_status_update(&running, &p))
        };
        assert!(with_init(Some("Always")).is_empty());
        assert_eq!(
            with_init(None),
            vec!["status.initContainerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"]
        );
        let mut ips = old.clone();
        ips.status.as_mut().unwrap().pod_ip = Some("10.42.0.5".into());
        ips.status.as_mut().unwrap().pod_ips =
            Some(vec![
                serde_json::from_value(json!({"ip": "10.42.0.5"})).unwrap()
            ]);
        assert!(validate_pod_status_update(&ips, &old).is_empty());
        ips.status.as_mut().unwrap().pod_ips =
            Some(vec![
                serde_json::from_value(json!({"ip": "10.42.0.6"})).unwrap()
            ]);
        assert_eq!(
            validate_pod_status_update(&ips, &old)[0].field,
            "status.podIPs[0].ip"
        );
        let mut moved = old.clone();
        moved.spec.as_mut().unwrap().node_name = Some("n2".into());
        assert_eq!(
            messages(&validate_pod_status_update(&moved, &old)),
            vec!["status.nodeName: Forbidden: may not be changed directly"]
        );
    }
}
