//! A pod and its spec (`ValidatePodCreate`, `ValidatePodSpec`): the
//! pod-wide fields, host ports, tolerations and sysctls; containers and
//! volumes have modules of their own.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Toleration};

use super::containers::{validate_containers, validate_init_containers};
use super::ephemeral;
use super::meta::{validate_labels, validate_object_meta};
use super::names::{
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_label_value,
    name_is_dns_subdomain,
};
use super::volumes::validate_volumes;
use super::FieldError;

/// Everything `ValidatePodCreate` checks that Orca serves: metadata and the
/// whole spec.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&pod.metadata, true, name_is_dns_subdomain);
    match &pod.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec")),
        None => errs.push(FieldError::required("spec.containers", "")),
    }
    // They are added later, through pods/ephemeralcontainers.
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    errs
}

/// `ValidatePodSpec` for the fields a Linux pod platform uses.
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(
        spec.volumes.as_deref().unwrap_or(&[]),
        &format!("{path}.volumes"),
        &mut errs,
    );
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("");
    errs.extend(validate_containers(
        &spec.containers,
        &volumes,
        &format!("{path}.containers"),
    ));
    errs.extend(validate_init_containers(
        spec.init_containers.as_deref().unwrap_or(&[]),
        &spec.containers,
        &volumes,
        &format!("{path}.initContainers"),
    ));
    errs.extend(ephemeral::validate_ephemeral_containers(
        spec.ephemeral_containers.as_deref().unwrap_or(&[]),
        &spec.containers,
        spec.init_containers.as_deref().unwrap_or(&[]),
        &volumes,
        &format!("{path}.ephemeralContainers"),
    ));
    errs.extend(host_port_conflicts(
        &spec.containers,
        &format!("{path}.containers"),
    ));
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        // Each init container alone, as they never run together.
        errs.extend(
            host_port_conflicts(std::slice::from_ref(c), &format!("{path}.initContainers"))
                .into_iter()
                .map(|mut e| {
                    e.field = e.field.replacen("[0]", &format!("[{i}]"), 1);
                    e
                }),
        );
    }
    if let Some(psc) = &spec.security_context {
        errs.extend(validate_sysctls(
            psc.sysctls.as_deref().unwrap_or_default(),
            spec.host_network == Some(true),
            spec.host_ipc == Some(true),
            &format!("{path}.securityContext.sysctls"),
        ));
        for (field, v) in [
            ("runAsUser", psc.run_as_user),
            ("runAsGroup", psc.run_as_group),
            ("fsGroup", psc.fs_group),
        ] {
            if let Some(v) = v.filter(|v| !(0..=i64::from(i32::MAX)).contains(v)) {
                errs.push(FieldError::invalid(
                    format!("{path}.securityContext.{field}"),
                    v,
                    "must be between 0 and 2147483647, inclusive",
                ));
            }
        }
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errs.push(FieldError::invalid(
            format!("{path}.securityContext.shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let rp_path = format!("{path}.restartPolicy");
    match restart_policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(rp_path, "")),
        other => errs.push(FieldError::not_supported(
            rp_path,
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns_path = format!("{path}.dnsPolicy");
    match spec.dns_policy.as_deref().unwrap_or("") {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(dns_path, "")),
        other => errs.push(FieldError::not_supported(
            dns_path,
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    if spec.dns_policy.as_deref() == Some("None")
        && spec
            .dns_config
            .as_ref()
            .is_none_or(|c| c.nameservers.as_ref().is_none_or(|n| n.is_empty()))
    {
        errs.push(FieldError::required(
            format!("{path}.dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    if let Some(sel) = &spec.node_selector {
        errs.extend(validate_labels(sel, &format!("{path}.nodeSelector")));
    }
    for (i, s) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if s.name.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.imagePullSecrets[{i}].name"),
                "",
            ));
        }
    }
    for (i, g) in spec.readiness_gates.iter().flatten().enumerate() {
        let p = format!("{path}.readinessGates[{i}].conditionType");
        errs.extend(
            is_qualified_name(&g.condition_type)
                .into_iter()
                .map(|m| FieldError::invalid(p.clone(), &g.condition_type, m)),
        );
    }
    for (field, value) in [
        ("serviceAccountName", &spec.service_account_name),
        ("nodeName", &spec.node_name),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            let p = format!("{path}.{field}");
            errs.extend(
                is_dns1123_subdomain(v)
                    .into_iter()
                    .map(|m| FieldError::invalid(p.clone(), v, m)),
            );
        }
    }
    if let Some(v) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&v) {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                v,
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            let p = format!("{path}.{field}");
            errs.extend(
                is_dns1123_label(v)
                    .into_iter()
                    .map(|m| FieldError::invalid(p.clone(), v, m)),
            );
        }
    }
    if let Some(t) = &spec.tolerations {
        errs.extend(validate_tolerations(t, &format!("{path}.tolerations")));
    }
    if let Some(p) = spec.preemption_policy.as_deref() {
        if !matches!(p, "PreemptLowerPriority" | "Never") {
            errs.push(FieldError::not_supported(
                format!("{path}.preemptionPolicy"),
                p,
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
    if let Some(v) = spec.termination_grace_period_seconds.filter(|v| *v < 0) {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            v,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

/// Two containers may not claim the same host port (with protocol and
/// host IP); init containers run one at a time and are checked alone.
fn host_port_conflicts(containers: &[Container], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let Some(hp) = p.host_port.filter(|hp| *hp != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{hp}",
                p.host_ip.as_deref().unwrap_or(""),
                p.protocol.as_deref().unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    format!("{path}[{ci}].ports[{pi}].hostPort"),
                    key,
                ));
            }
        }
    }
    errs
}

/// `ValidateTolerations`.
pub fn validate_tolerations(tolerations: &[Toleration], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let key = t.key.as_deref().unwrap_or("");
        let op = t.operator.as_deref().unwrap_or("");
        let effect = t.effect.as_deref().unwrap_or("");
        if !key.is_empty() {
            let kp = format!("{idx}.key");
            errs.extend(
                is_qualified_name(key)
                    .into_iter()
                    .map(|m| FieldError::invalid(kp.clone(), key, m)),
            );
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                format!("{idx}.operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                format!("{idx}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = t.value.as_deref().unwrap_or("");
        match op {
            "" | "Equal" => {
                let vp = format!("{idx}.operator");
                errs.extend(
                    is_valid_label_value(value)
                        .into_iter()
                        .map(|m| FieldError::invalid(vp.clone(), value, m)),
                );
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{idx}.operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{idx}.operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(FieldError::not_supported(
                format!("{idx}.effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
    errs
}

const SYSCTL_MAX_LENGTH: usize = 253;
const SYSCTL_REGEX: &str =
    r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";

/// Kubernetes' `IsValidSysctlName`: segments of `[a-z0-9]([-_a-z0-9]*[a-z0-9])?`
/// joined by `.` or `/`, at most 253 characters.
fn is_valid_sysctl_name(name: &str) -> bool {
    let segment = |s: &str| {
        let b = s.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(edge)
            && b.last().is_some_and(edge)
            && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'_')
    };
    name.len() <= SYSCTL_MAX_LENGTH && name.split(['.', '/']).all(segment)
}

/// The kernel namespace a sysctl belongs to (the kubelet's `GetNamespace`,
/// on the dotted form), for the ones a pod shares with the host.
fn sysctl_namespace(name: &str) -> Option<&'static str> {
    // `net/ipv4/conf/eth0.100/rp_filter` is `net.ipv4.conf.eth0/100.rp_filter`.
    let dotted: String = match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    };
    const IPC: &[&str] = &[
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.shm",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.msg",
    ];
    if IPC.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
        Some("ipc")
    } else if dotted.starts_with("net.") {
        Some("net")
    } else {
        None
    }
}

/// `validateSysctls`: valid, distinct names; none of a namespace the pod
/// shares with the host.
fn validate_sysctls(
    sysctls: &[k8s_openapi::api::core::v1::Sysctl],
    host_network: bool,
    host_ipc: bool,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, s) in sysctls.iter().enumerate() {
        let field = format!("{path}[{i}].name");
        if s.name.is_empty() {
            errs.push(FieldError::required(field.clone(), ""));
        } else if !is_valid_sysctl_name(&s.name) {
            errs.push(FieldError::invalid(
                field.clone(),
                s.name.as_str(),
                format!("must have at most {SYSCTL_MAX_LENGTH} characters and match regex {SYSCTL_REGEX}"),
            ));
        } else if seen.contains(&s.name) {
            errs.push(FieldError::duplicate(field.clone(), s.name.as_str()));
        }
        match sysctl_namespace(&s.name) {
            Some("net") if host_network => errs.push(FieldError::invalid(
                field,
                s.name.as_str(),
                "may not be specified when 'hostNetwork' is true",
            )),
            Some("ipc") if host_ipc => errs.push(FieldError::invalid(
                field,
                s.name.as_str(),
                "may not be specified when 'hostIPC' is true",
            )),
            _ => {}
        }
        seen.insert(s.name.clone());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::tests::{messages, ok_pod, pod};
    use crate::validation::validate_pod_update;
    use serde_json::json;

    #[test]
    fn valid_pod_passes() {
        assert_eq!(
            messages(&validate_pod(&pod(ok_pod()))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn reference_pods_validate_clean() {
        // Pods as Kubernetes v1.32 stored them: defaulting them again and
        // validating must find nothing, and an unchanged update is fine.
        for file in [
            "a-running",
            "b1-init-initializing",
            "c1-crashloopbackoff",
            "d-terminating",
            "e1-badimage-backoff",
        ] {
            let path = format!("{}/testdata/{file}.yaml", env!("CARGO_MANIFEST_DIR"));
            let stored: Pod =
                serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let mut p = stored.clone();
            crate::defaults::pod_spec(p.spec.as_mut().unwrap());
            assert_eq!(
                p.spec, stored.spec,
                "{file}: defaulting a stored pod changes nothing"
            );
            assert_eq!(messages(&validate_pod(&p)), Vec::<String>::new(), "{file}");
            assert_eq!(
                messages(&validate_pod_update(&p, &stored)),
                Vec::<String>::new(),
                "{file}"
            );
        }
    }

    #[test]
    fn host_pid_excludes_a_shared_process_namespace() {
        let v = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "hostPID": true, "shareProcessNamespace": true,
            "containers": [{"name": "a", "image": "x"}]}});
        assert_eq!(
            messages(&validate_pod(&pod(v))),
            ["spec.securityContext.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled"]
        );
    }

    #[test]
    fn volumes_ports_and_security_context() {
        let v = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "containers": [
                {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}],
                 "securityContext": {"runAsUser": -1}},
                {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080}]}],
            "volumes": [{"name": "s", "secret": {}}, {"name": "h", "hostPath": {"path": "/x", "type": "Dir"}},
                        {"name": "two", "emptyDir": {}, "configMap": {"name": "c"}}]}});
        let got = messages(&validate_pod(&pod(v)));
        let want = [
            "spec.volumes[0].secret.secretName: Required value",
            r#"spec.volumes[1].hostPath.type: Unsupported value: "Dir": supported values: "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket""#,
            "spec.volumes[2].configMap: Forbidden: may not specify more than 1 volume type",
            "spec.containers[0].securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",
            r#"spec.containers[1].ports[0].hostPort: Duplicate value: "/TCP/8080""#,
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn sysctl_names_are_checked_as_kubernetes_does() {
        // The upstream conformance spec's pod: two bad names, two good.
        let v = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "containers": [{"name": "a", "image": "x"}],
            "hostNetwork": true,
            "securityContext": {"sysctls": [
                {"name": "foo-", "value": "bar"},
                {"name": "kernel.shmmax", "value": "100000000"},
                {"name": "safe-and-unsafe", "value": "100000000"},
                {"name": "bar..", "value": "42"},
                {"name": "net/ipv4/conf/eth0.100/rp_filter", "value": "1"},
                {"name": "kernel.shmmax", "value": "1"}]}}});
        let got = messages(&validate_pod(&pod(v)));
        let regex = r"must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";
        let want = [
            format!(r#"spec.securityContext.sysctls[0].name: Invalid value: "foo-": {regex}"#),
            format!(r#"spec.securityContext.sysctls[3].name: Invalid value: "bar..": {regex}"#),
            r#"spec.securityContext.sysctls[4].name: Invalid value: "net/ipv4/conf/eth0.100/rp_filter": may not be specified when 'hostNetwork' is true"#.into(),
            r#"spec.securityContext.sysctls[5].name: Duplicate value: "kernel.shmmax""#.into(),
        ];
        assert_eq!(got, want);
    }
}
