//! A pod's app and init containers: names, images, ports, env, volume
//! mounts, resources and security context.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, ResourceRequirements, VolumeMount,
};

use super::names::{is_dns1123_label, is_valid_port_name, PORT_RANGE_MSG};
use super::probes::validate_probes;
use super::{BadValue, FieldError};
use crate::quantity::parse_nanos;

fn validate_security_context(
    sc: &k8s_openapi::api::core::v1::SecurityContext,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, v) in [
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
    ] {
        if let Some(v) = v.filter(|v| !(0..=i64::from(i32::MAX)).contains(v)) {
            errs.push(FieldError::invalid(
                format!("{path}.{field}"),
                v,
                "must be between 0 and 2147483647, inclusive",
            ));
        }
    }
    if sc.privileged == Some(true) && sc.allow_privilege_escalation == Some(false) {
        errs.push(FieldError::invalid(
            path,
            BadValue::Omit,
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        ));
    }
    errs
}

pub(super) fn validate_containers(
    containers: &[Container],
    volumes: &HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if containers.is_empty() {
        errs.push(FieldError::required(path, ""));
    }
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        errs.extend(validate_container_common(c, volumes, &idx));
        if !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{idx}.name"), &c.name));
        }
        errs.extend(validate_probes(c, &idx));
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                format!("{idx}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs
}

pub(super) fn validate_init_containers(
    containers: &[Container],
    app: &[Container],
    volumes: &HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names: HashSet<&str> = app.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in containers.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        errs.extend(validate_container_common(c, volumes, &idx));
        let mut sidecar = false;
        if let Some(rp) = c.restart_policy.as_deref() {
            if rp == "Always" {
                sidecar = true;
            } else {
                errs.push(FieldError::not_supported(
                    format!("{idx}.restartPolicy"),
                    rp,
                    &["Always"],
                ));
            }
        }
        if names.contains(c.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{idx}.name"), &c.name));
        } else if !c.name.is_empty() {
            names.insert(c.name.as_str());
        }
        if sidecar {
            errs.extend(validate_probes(c, &idx));
        } else {
            const WHY: &str = "may not be set for init containers without restartPolicy=Always";
            let set = [
                ("lifecycle", c.lifecycle.is_some()),
                ("livenessProbe", c.liveness_probe.is_some()),
                ("readinessProbe", c.readiness_probe.is_some()),
                ("startupProbe", c.startup_probe.is_some()),
            ];
            for (field, present) in set {
                if present {
                    errs.push(FieldError::forbidden(format!("{idx}.{field}"), WHY));
                }
            }
        }
    }
    errs
}

pub(super) fn validate_container_common(
    c: &Container,
    volumes: &HashSet<String>,
    idx: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name_path = format!("{idx}.name");
    if c.name.is_empty() {
        errs.push(FieldError::required(name_path, ""));
    } else {
        errs.extend(
            is_dns1123_label(&c.name)
                .into_iter()
                .map(|m| FieldError::invalid(name_path.clone(), &c.name, m)),
        );
    }
    let image = c.image.as_deref().unwrap_or("");
    if image.is_empty() {
        errs.push(FieldError::required(format!("{idx}.image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            format!("{idx}.image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    let tmp_path = format!("{idx}.terminationMessagePolicy");
    match c.termination_message_policy.as_deref().unwrap_or("") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(
            tmp_path,
            "must be 'File' or 'FallbackToLogsOnError'",
        )),
        other => errs.push(FieldError::not_supported(
            tmp_path,
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_ports(
        c.ports.as_deref().unwrap_or(&[]),
        &format!("{idx}.ports"),
    ));
    errs.extend(validate_env(
        c.env.as_deref().unwrap_or(&[]),
        &format!("{idx}.env"),
    ));
    errs.extend(validate_volume_mounts(
        c.volume_mounts.as_deref().unwrap_or(&[]),
        volumes,
        &format!("{idx}.volumeMounts"),
    ));
    let ipp_path = format!("{idx}.imagePullPolicy");
    match c.image_pull_policy.as_deref().unwrap_or("") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(ipp_path, "")),
        other => errs.push(FieldError::not_supported(
            ipp_path,
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    if let Some(r) = &c.resources {
        errs.extend(validate_resources(r, &format!("{idx}.resources")));
    }
    if let Some(sc) = &c.security_context {
        errs.extend(validate_security_context(
            sc,
            &format!("{idx}.securityContext"),
        ));
    }
    errs
}

fn validate_ports(ports: &[ContainerPort], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let np = format!("{idx}.name");
            errs.extend(
                is_valid_port_name(name)
                    .into_iter()
                    .map(|m| FieldError::invalid(np.clone(), name, m)),
            );
            if !names.insert(name) {
                errs.push(FieldError::duplicate(np, name));
            }
        }
        if !(1..=65535).contains(&p.container_port) {
            errs.push(FieldError::invalid(
                format!("{idx}.containerPort"),
                p.container_port,
                PORT_RANGE_MSG,
            ));
        }
        if let Some(hp) = p.host_port.filter(|hp| *hp != 0) {
            if !(1..=65535).contains(&hp) {
                errs.push(FieldError::invalid(
                    format!("{idx}.hostPort"),
                    hp,
                    PORT_RANGE_MSG,
                ));
            }
        }
        let pp = format!("{idx}.protocol");
        match p.protocol.as_deref().unwrap_or("") {
            "TCP" | "UDP" | "SCTP" => {}
            "" => errs.push(FieldError::required(pp, "")),
            other => errs.push(FieldError::not_supported(
                pp,
                other,
                &["SCTP", "TCP", "UDP"],
            )),
        }
    }
    errs
}

fn validate_env(env: &[EnvVar], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, e) in env.iter().enumerate() {
        let np = format!("{path}[{i}].name");
        if e.name.is_empty() {
            errs.push(FieldError::required(np, ""));
        } else if !e
            .name
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'=')
        {
            // RelaxedEnvironmentVariableValidation is on by default in v1.32.
            errs.push(FieldError::invalid(
                np,
                &e.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
        if let Some(from) = &e.value_from {
            let vf = format!("{path}[{i}].valueFrom");
            if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::invalid(
                    vf.clone(),
                    "",
                    "may not be specified when `value` is not empty",
                ));
            }
            let n = [
                from.field_ref.is_some(),
                from.resource_field_ref.is_some(),
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if n == 0 {
                errs.push(FieldError::invalid(vf, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
            } else if n > 1 {
                errs.push(FieldError::invalid(
                    vf,
                    "",
                    "may not have more than one field specified at a time",
                ));
            }
        }
    }
    errs
}

fn validate_volume_mounts(
    mounts: &[VolumeMount],
    volumes: &HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut paths = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        if m.name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(format!("{idx}.name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(format!("{idx}.mountPath"), ""));
        } else if !paths.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                format!("{idx}.mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
        // Kubernetes names these two without the mount's index.
        let sub_path = m.sub_path.as_deref().filter(|s| !s.is_empty());
        if let Some(sp) = sub_path {
            local_descending_path(sp, &format!("{path}.subPath"), &mut errs);
        }
        if let Some(expr) = m.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
            if sub_path.is_some() {
                errs.push(FieldError::invalid(
                    format!("{idx}.subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(expr, &format!("{path}.subPathExpr"), &mut errs);
        }
    }
    errs
}

/// A path relative to a volume that stays inside it.
fn local_descending_path(p: &str, field: &str, errs: &mut Vec<FieldError>) {
    if p.starts_with('/') {
        errs.push(FieldError::invalid(field, p, "must be a relative path"));
    }
    if p.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(field, p, "must not contain '..'"));
    }
}

fn is_standard_or_qualified_resource(name: &str) -> bool {
    name.contains('/')
        || matches!(
            name,
            "cpu" | "memory" | "ephemeral-storage" | "storage" | "pods"
        )
        || name.starts_with("hugepages-")
        || name.starts_with("requests.")
        || name.starts_with("limits.")
}

pub(super) fn validate_resources(r: &ResourceRequirements, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut limits = HashMap::new();
    for (kind, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in map.iter().flatten() {
            let p = format!("{path}.{kind}[{name}]");
            if !is_standard_or_qualified_resource(name) {
                errs.push(FieldError::invalid(
                    p.clone(),
                    name,
                    "must be a standard resource type or fully qualified",
                ));
            }
            match parse_nanos(&q.0) {
                Err(e) => errs.push(FieldError::invalid(p, &q.0, e.to_string())),
                Ok(v) if v < 0 => errs.push(FieldError::invalid(
                    p,
                    &q.0,
                    "must be greater than or equal to 0",
                )),
                Ok(v) if kind == "limits" => {
                    limits.insert(name.as_str(), (v, q.0.as_str()));
                }
                Ok(v) => {
                    if let Some((lim, lim_str)) = limits.get(name.as_str()) {
                        if v > *lim {
                            errs.push(FieldError::invalid(
                                p,
                                &q.0,
                                format!("must be less than or equal to {name} limit of {lim_str}"),
                            ));
                        }
                    }
                }
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use crate::validation::tests::{messages, ok_pod, pod};
    use crate::validation::validate_pod;
    use serde_json::json;

    #[test]
    fn sub_paths_stay_inside_their_volume() {
        let mut v = ok_pod();
        v["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
        v["spec"]["containers"][0]["volumeMounts"] = json!([
            {"name": "data", "mountPath": "/a", "subPath": "/etc"},
            {"name": "data", "mountPath": "/b", "subPathExpr": "$(POD)/../x"},
            {"name": "data", "mountPath": "/c", "subPath": "x", "subPathExpr": "$(POD)"},
            {"name": "data", "mountPath": "/d", "subPathExpr": "logs/$(POD)"},
        ]);
        assert_eq!(
            messages(&validate_pod(&pod(v))),
            vec![
                r#"spec.containers[0].volumeMounts.subPath: Invalid value: "/etc": must be a relative path"#,
                r#"spec.containers[0].volumeMounts.subPathExpr: Invalid value: "$(POD)/../x": must not contain '..'"#,
                r#"spec.containers[0].volumeMounts[2].subPathExpr: Invalid value: "$(POD)": subPathExpr and subPath are mutually exclusive"#,
            ]
        );
    }

    #[test]
    fn container_rules() {
        let v = json!({"metadata": {"name": "p", "namespace": "default"},
        "spec": {
          "initContainers": [{"name": "app", "image": "busybox", "livenessProbe": {"exec": {"command": ["true"]}}}],
          "containers": [
            {"name": "app", "image": "", "ports": [{"containerPort": 0, "name": "web"}, {"containerPort": 70000, "name": "web"}],
             "env": [{"name": "A=B", "value": "x"}],
             "volumeMounts": [{"name": "missing", "mountPath": "/data"}]},
            {"name": "app", "image": "x"},
            {"name": "Bad", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}
          ],
          "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
          "restartPolicy": "Sometimes",
          "activeDeadlineSeconds": 0
        }});
        let got = messages(&validate_pod(&pod(v)));
        let want = [
            r#"spec.volumes[1].name: Duplicate value: "v""#,
            "spec.containers[0].image: Required value",
            r#"spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive"#,
            r#"spec.containers[0].ports[1].name: Duplicate value: "web""#,
            r#"spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"#,
            r#"spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
            r#"spec.containers[0].volumeMounts[0].name: Not found: "missing""#,
            r#"spec.containers[1].name: Duplicate value: "app""#,
            r#"spec.containers[2].name: Invalid value: "Bad": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
            r#"spec.containers[2].resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
            r#"spec.initContainers[0].name: Duplicate value: "app""#,
            "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
            "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
        ];
        for w in want {
            assert!(got.iter().any(|g| g == w), "missing {w}\n got: {got:#?}");
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn no_containers_and_sidecar_probes() {
        let v =
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": []}});
        assert_eq!(
            messages(&validate_pod(&pod(v))),
            vec!["spec.containers: Required value"]
        );
        let v = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "initContainers": [{"name": "side", "image": "x", "restartPolicy": "Always",
                "readinessProbe": {"tcpSocket": {"port": 80}}}],
            "containers": [{"name": "c", "image": "x"}]}});
        assert!(validate_pod(&pod(v)).is_empty());
    }
}
