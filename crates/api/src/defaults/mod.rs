//! Defaulting as kube-apiserver applies it on create: the v1 scheme defaults
//! plus what its default admission plugins (ServiceAccount, Priority,
//! DefaultTolerationSeconds) and the pod strategy add. Server bookkeeping
//! (uid, resourceVersion, timestamps) is the API server's job.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, NamespaceSpec, NamespaceStatus, Node, Pod,
    PodSecurityContext, PodSpec, PodStatus, Probe, ResourceRequirements, Secret, Toleration,
    Volume,
};

use crate::{default_image_pull_policy, qos_class};

mod services;
pub use services::{endpoint_slice, endpoints, service, DEFAULT_AFFINITY_SECONDS};
mod batch;
pub use batch::{cron_job, job};
mod rbac;
pub use rbac::{cluster_role_binding, role_binding};
mod storage;
pub use storage::{csi_driver, persistent_volume, persistent_volume_claim, storage_class};
mod workloads;
pub use workloads::{
    daemon_set, deployment, pod_template, replica_set, replication_controller, stateful_set,
};

/// Seconds a pod keeps running on a not-ready or unreachable node before it
/// is evicted (DefaultTolerationSeconds admission plugin).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Priorities of the two built-in PriorityClasses.
pub const SYSTEM_NODE_CRITICAL: i32 = 2_000_001_000;
pub const SYSTEM_CLUSTER_CRITICAL: i32 = 2_000_000_000;

/// Lifetime of a projected service account token unless the pod says.
const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// Default file mode of secret, configMap, projected and downwardAPI volumes.
const DEFAULT_VOLUME_MODE: i32 = 0o644;

/// Fills every field Kubernetes defaults on pod create, and replaces
/// `status` with `{phase: Pending, qosClass}` as the pod strategy does. For
/// updates use [`pod_spec`]: an update keeps the stored status.
pub fn pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    pod_spec(spec);
    let qos = qos_class(spec);
    // A client cannot create a pod with status: whatever it sent is
    // replaced (e.g. `kubectl get -o yaml` output fed back to create).
    pod.status = Some(PodStatus {
        phase: Some("Pending".into()),
        qos_class: Some(qos.into()),
        ..Default::default()
    });
}

/// The spec part of [`pod`], for callers that hold only a spec.
pub fn pod_spec(spec: &mut PodSpec) {
    template_pod_spec(spec);
    spec.enable_service_links.get_or_insert(true);
    // serviceAccount is the deprecated alias; the two are kept equal.
    let sa = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| spec.service_account.clone().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "default".into());
    spec.service_account_name = Some(sa.clone());
    spec.service_account = Some(sa);
    // Priority admission: the built-in classes, else no default class.
    let priority = match spec.priority_class_name.as_deref() {
        Some("system-node-critical") => SYSTEM_NODE_CRITICAL,
        Some("system-cluster-critical") => SYSTEM_CLUSTER_CRITICAL,
        _ => 0,
    };
    spec.priority.get_or_insert(priority);
    set_str(&mut spec.preemption_policy, "PreemptLowerPriority");
    default_tolerations(spec.tolerations.get_or_insert_with(Vec::new));
}

/// The v1 scheme's pod spec defaults alone, as a pod template inside a
/// workload gets them: what admission plugins add to pods (service account,
/// priority, tolerations) waits for the pods made from it.
pub fn template_pod_spec(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    for c in spec.init_containers.iter_mut().flatten() {
        container(c, host_network);
    }
    for c in spec.containers.iter_mut() {
        container(c, host_network);
    }
    // The v1 scheme defaults ephemeral containers as containers.
    for ec in spec.ephemeral_containers.iter_mut().flatten() {
        let mut c = crate::ephemeral_as_container(ec);
        container(&mut c, host_network);
        *ec = crate::container_as_ephemeral(c, ec.target_container_name.take());
    }
    for v in spec.volumes.iter_mut().flatten() {
        volume(v);
    }
    set_str(&mut spec.dns_policy, "ClusterFirst");
    set_str(&mut spec.restart_policy, "Always");
    set_str(&mut spec.scheduler_name, "default-scheduler");
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    spec.termination_grace_period_seconds.get_or_insert(30);
}

/// Adds the NoExecute tolerations for `node.kubernetes.io/not-ready` and
/// `/unreachable` unless the pod already tolerates them.
fn default_tolerations(tolerations: &mut Vec<Toleration>) {
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = tolerations.iter().any(|t| {
            let effect_ok = matches!(t.effect.as_deref(), None | Some("") | Some("NoExecute"));
            let key_ok = match t.key.as_deref() {
                None | Some("") => t.operator.as_deref() == Some("Exists"),
                Some(k) => k == key,
            };
            effect_ok && key_ok
        });
        if !covered {
            tolerations.push(Toleration {
                effect: Some("NoExecute".into()),
                key: Some(key.into()),
                operator: Some("Exists".into()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
}

fn container(c: &mut Container, host_network: bool) {
    if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
        let image = c.image.as_deref().unwrap_or("");
        c.image_pull_policy = Some(default_image_pull_policy(image).into());
    }
    set_str(&mut c.termination_message_path, "/dev/termination-log");
    set_str(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        port(p, host_network);
    }
    // Limits without requests: requests default to the limits.
    let res = c
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    if let Some(limits) = &res.limits {
        let requests = res.requests.get_or_insert_with(Default::default);
        for (k, v) in limits {
            requests.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe(p);
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set_str(&mut f.api_version, "v1");
        }
    }
}

fn port(p: &mut ContainerPort, host_network: bool) {
    set_str(&mut p.protocol, "TCP");
    if host_network && p.host_port.unwrap_or(0) == 0 {
        p.host_port = Some(p.container_port);
    }
}

/// Probe timings (1 s timeout, every 10 s, 1 success, 3 failures) and the
/// httpGet path `/` and scheme `HTTP`.
pub fn probe(p: &mut Probe) {
    set_int(&mut p.timeout_seconds, 1);
    set_int(&mut p.period_seconds, 10);
    set_int(&mut p.success_threshold, 1);
    set_int(&mut p.failure_threshold, 3);
    if let Some(h) = p.http_get.as_mut() {
        set_str(&mut h.path, "/");
        set_str(&mut h.scheme, "HTTP");
    }
}

fn volume(v: &mut Volume) {
    let has_source = v.host_path.is_some()
        || v.empty_dir.is_some()
        || v.secret.is_some()
        || v.config_map.is_some()
        || v.projected.is_some()
        || v.downward_api.is_some()
        || v.persistent_volume_claim.is_some()
        || v.nfs.is_some()
        || v.csi.is_some()
        || v.ephemeral.is_some()
        || v.image.is_some()
        || v.iscsi.is_some()
        || v.aws_elastic_block_store.is_some()
        || v.azure_disk.is_some()
        || v.azure_file.is_some()
        || v.cephfs.is_some()
        || v.cinder.is_some()
        || v.fc.is_some()
        || v.flex_volume.is_some()
        || v.flocker.is_some()
        || v.gce_persistent_disk.is_some()
        || v.git_repo.is_some()
        || v.glusterfs.is_some()
        || v.photon_persistent_disk.is_some()
        || v.portworx_volume.is_some()
        || v.quobyte.is_some()
        || v.rbd.is_some()
        || v.scale_io.is_some()
        || v.storageos.is_some()
        || v.vsphere_volume.is_some();
    if !has_source {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = v.secret.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = v.config_map.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = v.projected.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        for src in s.sources.iter_mut().flatten() {
            if let Some(t) = src.service_account_token.as_mut() {
                t.expiration_seconds
                    .get_or_insert(DEFAULT_TOKEN_EXPIRATION_SECONDS);
            }
            let items = src.downward_api.as_mut().and_then(|d| d.items.as_mut());
            for item in items.into_iter().flatten() {
                if let Some(f) = item.field_ref.as_mut() {
                    set_str(&mut f.api_version, "v1");
                }
            }
        }
    }
    if let Some(s) = v.downward_api.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        for item in s.items.iter_mut().flatten() {
            if let Some(f) = item.field_ref.as_mut() {
                set_str(&mut f.api_version, "v1");
            }
        }
    }
    if let Some(h) = v.host_path.as_mut() {
        if h.type_.is_none() {
            h.type_ = Some(String::new());
        }
    }
}

/// Characters Kubernetes uses for random name suffixes (generateName,
/// kube-api-access volumes): no vowels, so no words form by accident.
pub const NAME_SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Length of the random suffix `generateName` appends.
pub const GENERATE_NAME_SUFFIX_LEN: usize = 5;

/// Maps caller-supplied random bytes onto [`NAME_SUFFIX_ALPHABET`], one
/// character per byte (this crate does no I/O, so it takes the entropy).
pub fn name_suffix(random: &[u8]) -> String {
    random
        .iter()
        .map(|b| char::from(NAME_SUFFIX_ALPHABET[usize::from(*b) % NAME_SUFFIX_ALPHABET.len()]))
        .collect()
}

/// Where the ServiceAccount admission plugin mounts the API credentials.
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Token lifetime the ServiceAccount admission plugin asks for: an hour
/// plus 7 s, which kubelets recognise as "may be extended".
const SERVICE_ACCOUNT_TOKEN_SECONDS: i64 = 3607;

/// The ServiceAccount admission plugin's token volume: unless automounting
/// is off (the pod's `automountServiceAccountToken`, else the
/// ServiceAccount's `sa_automount`), adds a `kube-api-access-<suffix>`
/// projected volume (token, `kube-root-ca.crt`'s ca.crt, namespace) and
/// mounts it read-only in every container that has nothing at the mount
/// path. Returns whether the pod now mounts it.
pub fn mount_service_account_token(
    pod: &mut Pod,
    sa_automount: Option<bool>,
    suffix: &str,
) -> bool {
    use k8s_openapi::api::core::v1::{
        ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath,
        ObjectFieldSelector, ProjectedVolumeSource, ServiceAccountTokenProjection, VolumeMount,
        VolumeProjection,
    };
    let Some(spec) = pod.spec.as_mut() else {
        return false;
    };
    if !spec
        .automount_service_account_token
        .or(sa_automount)
        .unwrap_or(true)
    {
        return false;
    }
    let existing = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name.starts_with("kube-api-access-"))
        .map(|v| v.name.clone());
    let has_volume = existing.is_some();
    let name = existing.unwrap_or_else(|| format!("kube-api-access-{suffix}"));
    let mut needs_volume = false;
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for c in containers {
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        if mounts
            .iter()
            .any(|m| m.mount_path == SERVICE_ACCOUNT_MOUNT_PATH)
        {
            continue;
        }
        mounts.push(VolumeMount {
            name: name.clone(),
            mount_path: SERVICE_ACCOUNT_MOUNT_PATH.into(),
            read_only: Some(true),
            ..Default::default()
        });
        needs_volume = true;
    }
    if needs_volume && !has_volume {
        let projected = ProjectedVolumeSource {
            default_mode: Some(DEFAULT_VOLUME_MODE),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        expiration_seconds: Some(SERVICE_ACCOUNT_TOKEN_SECONDS),
                        path: "token".into(),
                        audience: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".into()),
                                field_path: "metadata.namespace".into(),
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
        };
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name,
            projected: Some(projected),
            ..Default::default()
        });
    }
    needs_volume || has_volume
}

/// Namespaces start `Active` with the `kubernetes` finalizer.
pub fn namespace(ns: &mut Namespace) {
    let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
    if spec.finalizers.as_ref().is_none_or(|f| f.is_empty()) {
        spec.finalizers = Some(vec!["kubernetes".into()]);
    }
    let status = ns.status.get_or_insert_with(NamespaceStatus::default);
    set_str(&mut status.phase, "Active");
}

/// A node's allocatable defaults to its capacity.
pub fn node(node: &mut Node) {
    if let Some(status) = node.status.as_mut() {
        if status.allocatable.is_none() {
            status.allocatable = status.capacity.clone();
        }
    }
}

/// Secrets default to type `Opaque`.
pub fn secret(secret: &mut Secret) {
    set_str(&mut secret.type_, "Opaque");
}

fn set_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or("").is_empty() {
        *field = Some(value.to_string());
    }
}

fn set_int(field: &mut Option<i32>, value: i32) {
    if field.unwrap_or(0) == 0 {
        *field = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_from(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn pod_matches_the_reference_shape() {
        let mut p = pod_from(serde_json::json!({
            "metadata": {"name": "ref-running"},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.35",
                "ports": [{"containerPort": 80}]}]}
        }));
        pod(&mut p);
        let v = serde_json::to_value(&p).unwrap();
        let spec = &v["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], serde_json::json!({}));
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(
            spec["tolerations"],
            serde_json::json!([
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready",
                 "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable",
                 "operator": "Exists", "tolerationSeconds": 300},
            ])
        );
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"], serde_json::json!({}));
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            v["status"],
            serde_json::json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn explicit_values_are_kept() {
        let mut p = pod_from(serde_json::json!({
            "metadata": {"name": "x"},
            "spec": {"restartPolicy": "Never", "serviceAccount": "builder",
                "terminationGracePeriodSeconds": 0,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "main", "image": "nginx", "imagePullPolicy": "Never"}]}
        }));
        pod(&mut p);
        let spec = p.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.termination_grace_period_seconds, Some(0));
        assert_eq!(spec.service_account_name.as_deref(), Some("builder"));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Never")
        );
        // A wildcard toleration already covers both taints.
        assert_eq!(spec.tolerations.unwrap().len(), 1);
    }

    #[test]
    fn untagged_image_pulls_always_and_probes_get_timings() {
        let mut p = pod_from(serde_json::json!({
            "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "main", "image": "nginx",
                "livenessProbe": {"httpGet": {"port": 80}},
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
                "volumes": [{"name": "scratch"}, {"name": "s", "secret": {"secretName": "s"}}]}
        }));
        pod(&mut p);
        let v = serde_json::to_value(&p).unwrap();
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(
            c["livenessProbe"],
            serde_json::json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(
            c["resources"]["requests"],
            serde_json::json!({"cpu": "1", "memory": "1Gi"})
        );
        assert_eq!(v["status"]["qosClass"], "Guaranteed");
        assert_eq!(v["spec"]["volumes"][0]["emptyDir"], serde_json::json!({}));
        assert_eq!(v["spec"]["volumes"][1]["secret"]["defaultMode"], 420);
    }

    #[test]
    fn priority_classes_and_projected_tokens() {
        let mut p = pod_from(serde_json::json!({
            "metadata": {"name": "x"},
            "spec": {"priorityClassName": "system-node-critical",
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "t", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}]}
        }));
        pod(&mut p);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["spec"]["priority"], 2_000_001_000);
        let proj = &v["spec"]["volumes"][0]["projected"];
        assert_eq!(proj["defaultMode"], 420);
        assert_eq!(
            proj["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3600
        );
        assert_eq!(
            proj["sources"][1]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
    }

    #[test]
    fn create_discards_client_status() {
        let mut p = pod_from(serde_json::json!({
            "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.9", "qosClass": "Guaranteed"}
        }));
        pod(&mut p);
        assert_eq!(
            serde_json::to_value(p.status).unwrap(),
            serde_json::json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn service_account_volume_matches_reference() {
        let mut p = pod_from(serde_json::json!({
            "metadata": {"name": "ref-running", "namespace": "default"},
            "spec": {"containers": [{"name": "main", "image": "kref.local/busybox:1.35"}]}
        }));
        pod(&mut p);
        assert!(mount_service_account_token(
            &mut p,
            None,
            &name_suffix(&[10, 20, 30, 40, 50])
        ));
        let got = serde_json::to_value(&p).unwrap();
        let reference: serde_json::Value = serde_yaml::from_str(
            &std::fs::read_to_string(format!(
                "{}/testdata/a-running.yaml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        let name = got["spec"]["volumes"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5);
        let mut want_volume = reference["spec"]["volumes"][0].clone();
        want_volume["name"] = serde_json::json!(name);
        assert_eq!(got["spec"]["volumes"][0], want_volume);
        let mut want_mount = reference["spec"]["containers"][0]["volumeMounts"][0].clone();
        want_mount["name"] = serde_json::json!(name);
        assert_eq!(got["spec"]["containers"][0]["volumeMounts"][0], want_mount);
        // Idempotent: a second pass adds nothing.
        assert!(mount_service_account_token(&mut p, None, "zzzzz"));
        assert_eq!(p.spec.as_ref().unwrap().volumes.as_ref().unwrap().len(), 1);

        let mut off = pod_from(serde_json::json!({
            "metadata": {"name": "x"},
            "spec": {"automountServiceAccountToken": false, "containers": [{"name": "c", "image": "x"}]}
        }));
        assert!(!mount_service_account_token(&mut off, Some(true), "abcde"));
        assert!(off.spec.unwrap().volumes.is_none());
    }

    #[test]
    fn suffixes_use_the_kubernetes_alphabet() {
        let s = name_suffix(&[0, 1, 26, 27, 255]);
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| NAME_SUFFIX_ALPHABET.contains(&b)));
        assert_eq!(&s[..2], "bc");
    }

    #[test]
    fn namespace_and_secret() {
        let mut ns = Namespace::default();
        namespace(&mut ns);
        assert_eq!(ns.spec.unwrap().finalizers.unwrap(), vec!["kubernetes"]);
        assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
        let mut s = Secret::default();
        secret(&mut s);
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
    }
}
