//! Server-side printing: `meta.k8s.io/v1` Tables as kubectl requests them
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), with the
//! columns and cell logic of Kubernetes' printers. The server always fills
//! the wide (priority 1) columns; kubectl hides them without `-o wide`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Event, Namespace, Node, Pod, Secret, ServiceAccount,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};

mod batch;
mod certificates;
mod rbac;
pub use batch::job_status;
mod services;
mod storage;
pub use services::{endpoint_slice_cells, endpoints_cells, format_endpoints, service_cells};
mod workloads;
pub use workloads::{format_label_selector, format_labels};

/// What each row carries in `object` (`includeObject` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// `PartialObjectMetadata`, kubectl's default.
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value (`None`, `Metadata`, `Object`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "None" => Some(Self::None),
            "Metadata" | "" => Some(Self::Metadata),
            "Object" => Some(Self::Object),
            _ => None,
        }
    }
}

/// How to build a table. `now` makes ages deterministic.
#[derive(Debug, Clone)]
pub struct TableOptions {
    pub now: DateTime<Utc>,
    pub include_object: IncludeObject,
    /// Leave out `columnDefinitions` (watch events after the first).
    pub no_headers: bool,
}

impl TableOptions {
    pub fn new(now: DateTime<Utc>) -> Self {
        TableOptions {
            now,
            include_object: IncludeObject::Metadata,
            no_headers: false,
        }
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn col(name: &str, ty: &str, format: &str, priority: i32, description: &str) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn name_col() -> Value {
    col("Name", "string", "name", 0, NAME_DESC)
}

fn age_col() -> Value {
    col("Age", "string", "", 0, AGE_DESC)
}

/// The column definitions for a kind (by `kind` name, e.g. `Pod`).
pub fn columns(kind: &str) -> Vec<Value> {
    if let Some(cols) = workloads::columns(kind).or_else(|| batch::columns(kind)) {
        return cols;
    }
    match kind {
        "Pod" => vec![
            name_col(),
            col("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            age_col(),
            col("IP", "string", "", 1, "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            col("Node", "string", "", 1, "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"),
            col("Nominated Node", "string", "", 1, "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled."),
            col("Readiness Gates", "string", "", 1, "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"),
        ],
        "Node" => vec![
            name_col(),
            col("Status", "string", "", 0, "The status of the node"),
            col("Roles", "string", "", 0, "The roles of the node"),
            age_col(),
            col("Version", "string", "", 0, "Kubelet Version reported by the node."),
            col("Internal-IP", "string", "", 1, "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses"),
            col("External-IP", "string", "", 1, "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses"),
            col("OS-Image", "string", "", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            col("Kernel-Version", "string", "", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            col("Container-Runtime", "string", "", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        "Namespace" => vec![name_col(), col("Status", "string", "", 0, "The status of the namespace"), age_col()],
        "Event" => vec![
            col("Last Seen", "string", "", 0, "The time at which the most recent occurrence of this event was recorded."),
            col("Type", "string", "", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
            col("Reason", "string", "", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            col("Object", "string", "", 0, "The object that this event is about."),
            col("Subobject", "string", "", 1, "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object."),
            col("Source", "string", "", 1, "The component reporting this event. Should be a short machine understandable string."),
            col("Message", "string", "", 0, "A human-readable description of the status of this operation."),
            col("First Seen", "string", "", 1, "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
            col("Count", "string", "", 1, "The number of times this event has occurred."),
            col("Name", "string", "name", 1, NAME_DESC),
        ],
        "ConfigMap" => vec![name_col(), col("Data", "string", "", 0, "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process."), age_col()],
        "Secret" => vec![
            name_col(),
            col("Type", "string", "", 0, "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
            col("Data", "string", "", 0, "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"),
            age_col(),
        ],
        "ServiceAccount" => vec![
            name_col(),
            col("Secrets", "string", "", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret"),
            age_col(),
        ],
        "Lease" => vec![
            name_col(),
            col("Holder", "string", "", 0, "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."),
            age_col(),
        ],
        "RuntimeClass" => vec![name_col(), col("Handler", "string", "", 0, ""), age_col()],
        "RoleBinding" | "ClusterRoleBinding" => rbac::binding_columns(),
        "CertificateSigningRequest" => certificates::csr_columns(),
        "Service" => services::service_columns(),
        "Endpoints" => services::endpoints_columns(),
        "EndpointSlice" => services::endpoint_slice_columns(),
        // Kubernetes' default table for kinds without a printer.
        "PersistentVolume"
        | "PersistentVolumeClaim"
        | "StorageClass"
        | "CSIDriver"
        | "CSINode"
        | "CSIStorageCapacity"
        | "VolumeAttachment" => storage::columns(kind),
        _ => vec![name_col(), col("Created At", "date", "", 0, AGE_DESC)],
    }
}

/// A whole Table for these objects (each a JSON object of `kind`). The
/// caller fills `metadata` (resourceVersion, continue) as for a list.
pub fn table(kind: &str, objects: &[Value], opts: &TableOptions) -> Value {
    let rows: Vec<Value> = objects.iter().map(|o| row(kind, o, opts)).collect();
    let mut t = serde_json::Map::new();
    t.insert("kind".into(), json!("Table"));
    t.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    t.insert("metadata".into(), json!({}));
    if !opts.no_headers {
        t.insert("columnDefinitions".into(), Value::Array(columns(kind)));
    }
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
}

/// One Table row: cells, the object as asked, and for finished pods the
/// `Completed` condition.
pub fn row(kind: &str, obj: &Value, opts: &TableOptions) -> Value {
    let mut r = serde_json::Map::new();
    r.insert("cells".into(), Value::Array(cells(kind, obj, opts.now)));
    if kind == "Pod" {
        match obj.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => {
                r.insert(
                    "conditions".into(),
                    json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
                );
            }
            Some("Failed") => {
                r.insert(
                    "conditions".into(),
                    json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
                );
            }
            _ => {}
        }
    }
    let object = match opts.include_object {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    };
    r.insert("object".into(), object);
    Value::Object(r)
}

fn from_value<T: serde::de::DeserializeOwned + Default>(obj: &Value) -> T {
    serde_json::from_value(obj.clone()).unwrap_or_default()
}

/// The cells of one row, wide columns included.
pub fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    if let Some(cells) = workloads::cells(kind, obj, now).or_else(|| batch::cells(kind, obj, now)) {
        return cells;
    }
    match kind {
        "Pod" => pod_cells(&from_value(obj), now),
        "Node" => node_cells(&from_value(obj), now),
        "Namespace" => {
            let ns: Namespace = from_value(obj);
            let phase = ns.status.and_then(|s| s.phase).unwrap_or_default();
            vec![
                json!(name_of(&ns.metadata)),
                json!(phase),
                json!(age(ns.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        "Event" if crate::convert::is_events_v1(obj) => {
            event_cells(&from_value(&crate::convert::event_v1_to_core(obj)), now)
        }
        "Event" => event_cells(&from_value(obj), now),
        "ConfigMap" => {
            let cm: ConfigMap = from_value(obj);
            let n = cm.data.map_or(0, |d| d.len()) + cm.binary_data.map_or(0, |d| d.len());
            vec![
                json!(name_of(&cm.metadata)),
                json!(n),
                json!(age(cm.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        "Secret" => {
            let s: Secret = from_value(obj);
            // stringData is folded into data on write; count both to be safe.
            let n = s.data.map_or(0, |d| d.len()) + s.string_data.map_or(0, |d| d.len());
            vec![
                json!(name_of(&s.metadata)),
                json!(s.type_.unwrap_or_default()),
                json!(n),
                json!(age(s.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        "ServiceAccount" => {
            let sa: ServiceAccount = from_value(obj);
            vec![
                json!(name_of(&sa.metadata)),
                json!(sa.secrets.map_or(0, |s| s.len())),
                json!(age(sa.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        "Service" => service_cells(&from_value(obj), now),
        "Endpoints" => endpoints_cells(&from_value(obj), now),
        "EndpointSlice" => endpoint_slice_cells(&from_value(obj), now),
        "Lease" => {
            let l: Lease = from_value(obj);
            let holder = l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
            vec![
                json!(name_of(&l.metadata)),
                json!(holder),
                json!(age(l.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        "RuntimeClass" => {
            let rc: RuntimeClass = from_value(obj);
            vec![
                json!(name_of(&rc.metadata)),
                json!(rc.handler),
                json!(age(rc.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        "RoleBinding" | "ClusterRoleBinding" => rbac::binding_cells(obj, now),
        "CertificateSigningRequest" => certificates::csr_cells(obj, now),
        "PersistentVolume"
        | "PersistentVolumeClaim"
        | "StorageClass"
        | "CSIDriver"
        | "CSINode"
        | "CSIStorageCapacity"
        | "VolumeAttachment" => storage::cells(kind, obj, now),
        _ => {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let created = obj
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| {
                    t.with_timezone(&Utc)
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string()
                })
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
            vec![json!(name), json!(created)]
        }
    }
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// kubectl's `HumanDuration`: "75s", "2m", "8m7s", "3h4m", "5d", "2y".
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Time since `ts` as kubectl shows ages; `<unknown>` when unset.
pub fn age(ts: Option<&Time>, now: DateTime<Utc>) -> String {
    match ts {
        Some(t) => human_duration(now - t.0),
        None => "<unknown>".into(),
    }
}

/// READY, STATUS and RESTARTS of a pod, computed together as Kubernetes'
/// printer does (they share the walk over container statuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    pub ready: String,
    pub status: String,
    pub restarts: String,
}

fn is_restartable_init(c: Option<&Container>) -> bool {
    c.and_then(|c| c.restart_policy.as_deref()) == Some("Always")
}

/// The pod's READY, STATUS and RESTARTS columns.
pub fn pod_summary(pod: &Pod, now: DateTime<Utc>) -> PodSummary {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.unwrap_or_default();
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let total = spec.containers.len()
        + init_specs
            .iter()
            .filter(|c| is_restartable_init(Some(c)))
            .count();
    let mut ready = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;
    let phase = status.phase.clone().unwrap_or_default();
    let mut reason = status
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| phase.clone());
    let conditions = status.conditions.clone().unwrap_or_default();
    if conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".into();
    }
    let later = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let mut initializing = false;
    for (i, cs) in status.init_container_statuses.iter().flatten().enumerate() {
        let spec_c = init_specs.iter().find(|c| c.name == cs.name);
        let sidecar = is_restartable_init(spec_c);
        restarts += i64::from(cs.restart_count);
        let finished = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
            .map(|t| t.0);
        last_restart = later(last_restart, finished);
        if sidecar {
            sidecar_restarts += i64::from(cs.restart_count);
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let state = cs.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar && cs.started == Some(true) {
            if cs.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = &state.terminated {
            reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if t.signal.unwrap_or(0) != 0 => {
                    format!("Init:Signal:{}", t.signal.unwrap_or(0))
                }
                None => format!("Init:ExitCode:{}", t.exit_code),
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(cs.restart_count);
            let finished = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.finished_at.as_ref())
                .map(|t| t.0);
            last_restart = later(last_restart, finished);
            let state = cs.state.clone().unwrap_or_default();
            let waiting_reason = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty());
            if let Some(r) = waiting_reason {
                reason = r;
            } else if let Some(t) = &state.terminated {
                reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_string(),
                    None if t.signal.unwrap_or(0) != 0 => {
                        format!("Signal:{}", t.signal.unwrap_or(0))
                    }
                    None => format!("ExitCode:{}", t.exit_code),
                };
            } else if cs.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some("NodeLost") {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };
    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts: restarts_str,
    }
}

/// The STATUS column: `Running`, `Init:0/2`, `CrashLoopBackOff`, ...
pub fn pod_status_reason(pod: &Pod, now: DateTime<Utc>) -> String {
    pod_summary(pod, now).status
}

/// The READY column, e.g. `1/2`.
pub fn pod_ready_string(pod: &Pod, now: DateTime<Utc>) -> String {
    pod_summary(pod, now).ready
}

/// The RESTARTS column, e.g. `3 (32s ago)`.
pub fn pod_restarts_string(pod: &Pod, now: DateTime<Utc>) -> String {
    pod_summary(pod, now).restarts
}

fn none_if_empty(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "<none>".into(),
    }
}

/// Pod cells: NAME READY STATUS RESTARTS AGE IP NODE NOMINATED-NODE
/// READINESS-GATES.
pub fn pod_cells(pod: &Pod, now: DateTime<Utc>) -> Vec<Value> {
    let s = pod_summary(pod, now);
    let status = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let ip = status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .map(|ip| ip.ip.as_str());
    let gates = match spec.readiness_gates.as_deref() {
        Some(g) if !g.is_empty() => {
            let conds = status.conditions.clone().unwrap_or_default();
            let ok = g
                .iter()
                .filter(|gate| {
                    conds
                        .iter()
                        .find(|c| c.type_ == gate.condition_type)
                        .is_some_and(|c| c.status == "True")
                })
                .count();
            format!("{ok}/{}", g.len())
        }
        _ => "<none>".into(),
    };
    vec![
        json!(name_of(&pod.metadata)),
        json!(s.ready),
        json!(s.status),
        json!(s.restarts),
        json!(age(pod.metadata.creation_timestamp.as_ref(), now)),
        json!(none_if_empty(ip)),
        json!(none_if_empty(spec.node_name.as_deref())),
        json!(none_if_empty(status.nominated_node_name.as_deref())),
        json!(gates),
    ]
}

/// Node cells: NAME STATUS ROLES AGE VERSION INTERNAL-IP EXTERNAL-IP
/// OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME.
pub fn node_cells(node: &Node, now: DateTime<Utc>) -> Vec<Value> {
    let status = node.status.clone().unwrap_or_default();
    let mut st: Vec<String> = Vec::new();
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .rev()
        .find(|c| c.type_ == "Ready")
    {
        st.push(if c.status == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if st.is_empty() {
        st.push("Unknown".into());
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        st.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in node.metadata.labels.iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.push(v.clone());
        }
    }
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let info = status.node_info.clone().unwrap_or_default();
    let addr = |ty: &str| {
        none_if_empty(
            status
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == ty)
                .map(|a| a.address.as_str()),
        )
    };
    let unknown = |s: &str| {
        if s.is_empty() {
            "<unknown>".to_string()
        } else {
            s.to_string()
        }
    };
    vec![
        json!(name_of(&node.metadata)),
        json!(st.join(",")),
        json!(roles),
        json!(age(node.metadata.creation_timestamp.as_ref(), now)),
        json!(info.kubelet_version),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(unknown(&info.os_image)),
        json!(unknown(&info.kernel_version)),
        json!(unknown(&info.container_runtime_version)),
    ]
}

/// Event cells: LAST SEEN TYPE REASON OBJECT SUBOBJECT SOURCE MESSAGE
/// FIRST SEEN COUNT NAME.
pub fn event_cells(e: &Event, now: DateTime<Utc>) -> Vec<Value> {
    let micro_age = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>| match t
    {
        Some(t) => human_duration(now - t.0),
        None => "<unknown>".to_string(),
    };
    let first = match &e.first_timestamp {
        Some(t) => human_duration(now - t.0),
        None => micro_age(e.event_time.as_ref()),
    };
    let mut last = match &e.last_timestamp {
        Some(t) => human_duration(now - t.0),
        None => first.clone(),
    };
    let mut count = i64::from(e.count.unwrap_or(0));
    if let Some(series) = &e.series {
        last = micro_age(series.last_observed_time.as_ref());
        count = i64::from(series.count.unwrap_or(0));
    } else if count == 0 {
        count = 1;
    }
    let io = &e.involved_object;
    let kind = io.kind.clone().unwrap_or_default().to_lowercase();
    let target = match io.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => format!("{kind}/{n}"),
        None => kind,
    };
    vec![
        json!(last),
        json!(e.type_.clone().unwrap_or_default()),
        json!(e.reason.clone().unwrap_or_default()),
        json!(target),
        json!(io.field_path.clone().unwrap_or_default()),
        json!(event_source(e)),
        json!(e.message.clone().unwrap_or_default().trim()),
        json!(first),
        json!(count),
        json!(name_of(&e.metadata)),
    ]
}

/// `component, host` from the event's source, falling back to the
/// reporting controller and instance.
fn event_source(e: &Event) -> String {
    let (component, host) = match &e.source {
        Some(s) if s.component.as_deref().is_some_and(|c| !c.is_empty()) => (
            s.component.clone().unwrap_or_default(),
            s.host.clone().unwrap_or_default(),
        ),
        _ => (
            e.reporting_component.clone().unwrap_or_default(),
            e.reporting_instance.clone().unwrap_or_default(),
        ),
    };
    if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
        PodCondition, PodSpec,
    };

    fn fixture(name: &str) -> Value {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_yaml::from_str(&text).unwrap()
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, h, m, s).unwrap()
    }

    /// Lays a table out as kubectl does (tabwriter: min width 6, padding
    /// 3, upper-case headers, priority columns only when wide).
    fn kubectl_text(table: &Value, wide: bool) -> String {
        let cols = table["columnDefinitions"].as_array().unwrap();
        let keep: Vec<usize> = (0..cols.len())
            .filter(|i| wide || cols[*i]["priority"] == 0)
            .collect();
        let mut grid: Vec<Vec<String>> = vec![keep
            .iter()
            .map(|i| cols[*i]["name"].as_str().unwrap().to_uppercase())
            .collect()];
        for row in table["rows"].as_array().unwrap() {
            let cells = row["cells"].as_array().unwrap();
            grid.push(
                keep.iter()
                    .map(|i| match &cells[*i] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..keep.len())
            .map(|c| grid.iter().map(|r| r[c].len() + 3).max().unwrap().max(6))
            .collect();
        grid.iter()
            .map(|r| {
                let mut line = String::new();
                for (c, cell) in r.iter().enumerate() {
                    if c + 1 == r.len() {
                        line.push_str(cell);
                    } else {
                        line.push_str(&format!("{cell:<w$}", w = widths[c]));
                    }
                }
                line + "\n"
            })
            .collect()
    }

    fn expected(name: &str) -> String {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().skip(1).map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn pod_tables_match_kubectl_reference_output() {
        for (file, now, check_wide) in [
            ("a-running", at(10, 37, 55), true),
            // Its YAML was taken after the pod got its IP.
            ("b1-init-initializing", at(10, 37, 47), false),
            ("b2-init-after", at(10, 38, 25), true),
            ("c0-crash-early", at(10, 37, 47), true),
            ("c1-crashloopbackoff", at(10, 39, 0), true),
            ("d-terminating", at(10, 37, 55), true),
            ("e0-badimage-early", at(10, 37, 47), true),
            ("e1-badimage-backoff", at(10, 38, 25), true),
        ] {
            let pod = fixture(&format!("{file}.yaml"));
            let t = table("Pod", &[pod], &TableOptions::new(now));
            assert_eq!(
                kubectl_text(&t, false),
                expected(&format!("{file}.get.txt")),
                "{file}"
            );
            if check_wide {
                assert_eq!(
                    kubectl_text(&t, true),
                    expected(&format!("{file}.wide.txt")),
                    "{file} -o wide"
                );
            }
        }
    }

    #[test]
    fn pod_list_matches_kubectl_get_pods() {
        let pods: Vec<Value> = [
            "e1-badimage-backoff",
            "c1-crashloopbackoff",
            "b2-init-after",
            "a-running",
        ]
        .iter()
        .map(|f| fixture(&format!("{f}.yaml")))
        .collect();
        let t = table("Pod", &pods, &TableOptions::new(at(10, 39, 0)));
        let path = format!("{}/testdata/all-pods-t75s.txt", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        let mut sections = text
            .split("$ kubectl")
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.lines()
                    .skip(1)
                    .filter(|l| !l.is_empty())
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            });
        assert_eq!(kubectl_text(&t, false), sections.next().unwrap());
        assert_eq!(kubectl_text(&t, true), sections.next().unwrap());
    }

    #[test]
    fn reference_pod_statuses() {
        for (file, now, ready, status, restarts, age) in [
            ("a-running", at(10, 37, 55), "1/1", "Running", "0", "10s"),
            (
                "b1-init-initializing",
                at(10, 37, 47),
                "0/1",
                "Init:0/1",
                "0",
                "2s",
            ),
            (
                "b2-init-after",
                at(10, 38, 25),
                "1/1",
                "Running",
                "0",
                "40s",
            ),
            ("c0-crash-early", at(10, 37, 47), "0/1", "Error", "0", "2s"),
            (
                "c1-crashloopbackoff",
                at(10, 39, 0),
                "0/1",
                "CrashLoopBackOff",
                "3 (32s ago)",
                "75s",
            ),
            (
                "d-terminating",
                at(10, 37, 55),
                "1/1",
                "Terminating",
                "0",
                "10s",
            ),
            (
                "e0-badimage-early",
                at(10, 37, 47),
                "0/1",
                "ErrImagePull",
                "0",
                "2s",
            ),
            (
                "e1-badimage-backoff",
                at(10, 38, 25),
                "0/1",
                "ImagePullBackOff",
                "0",
                "40s",
            ),
        ] {
            let obj = fixture(&format!("{file}.yaml"));
            let cells = cells("Pod", &obj, now);
            assert_eq!(cells[1], ready, "{file} READY");
            assert_eq!(cells[2], status, "{file} STATUS");
            assert_eq!(cells[3], restarts, "{file} RESTARTS");
            assert_eq!(cells[4], age, "{file} AGE");
            assert_eq!(cells[6], "ref-node", "{file} NODE");
            assert_eq!(cells[7], "<none>");
            assert_eq!(cells[8], "<none>");
        }
        let mut unplaced = fixture("b1-init-initializing.yaml");
        unplaced["status"].as_object_mut().unwrap().remove("podIPs");
        unplaced["spec"].as_object_mut().unwrap().remove("nodeName");
        let c = cells("Pod", &unplaced, at(10, 37, 47));
        assert_eq!(
            (c[5].as_str(), c[6].as_str()),
            (Some("<none>"), Some("<none>"))
        );
        let a = cells("Pod", &fixture("a-running.yaml"), at(10, 37, 55));
        assert_eq!(a[5], "10.88.0.66");
    }

    #[test]
    fn node_wide_row_matches_reference() {
        let t = table(
            "Node",
            &[fixture("node.yaml")],
            &TableOptions::new(at(10, 39, 0)),
        );
        let text = kubectl_text(&t, true);
        assert_eq!(
            text,
            "NAME       STATUS   ROLES    AGE    VERSION    INTERNAL-IP   EXTERNAL-IP   OS-IMAGE                         KERNEL-VERSION    CONTAINER-RUNTIME\n\
             ref-node   Ready    <none>   8m7s   v1.32.13   10.87.0.1     <none>        Debian GNU/Linux 12 (bookworm)   6.18.44-fc-v669   containerd://1.6.20\n"
        );
    }

    fn status_pod(init: Vec<ContainerStatus>, main: Vec<ContainerStatus>, n_init: usize) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        let spec = p.spec.get_or_insert_with(Default::default);
        spec.containers = vec![Container {
            name: "main".into(),
            ..Default::default()
        }];
        spec.init_containers = Some(
            (0..n_init)
                .map(|i| Container {
                    name: format!("init{i}"),
                    ..Default::default()
                })
                .collect(),
        );
        let st = p.status.get_or_insert_with(Default::default);
        st.phase = Some("Pending".into());
        st.init_container_statuses = Some(init);
        st.container_statuses = Some(main);
        p
    }

    fn cs(name: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(state),
            ..Default::default()
        }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        }
    }

    fn terminated(code: i32, reason: Option<&str>, signal: Option<i32>) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: reason.map(str::to_string),
                signal,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn status_column_cases() {
        let now = at(12, 0, 0);
        let main_waiting = vec![cs("main", waiting("PodInitializing"))];
        // Second of two init containers running.
        let p = status_pod(
            vec![
                cs("init0", terminated(0, Some("Completed"), None)),
                cs("init1", ContainerState::default()),
            ],
            main_waiting.clone(),
            2,
        );
        assert_eq!(pod_status_reason(&p, now), "Init:1/2");
        let p = status_pod(
            vec![cs("init0", terminated(1, Some("Error"), None))],
            main_waiting.clone(),
            2,
        );
        assert_eq!(pod_status_reason(&p, now), "Init:Error");
        let p = status_pod(
            vec![cs("init0", terminated(3, None, None))],
            main_waiting.clone(),
            1,
        );
        assert_eq!(pod_status_reason(&p, now), "Init:ExitCode:3");
        let p = status_pod(
            vec![cs("init0", terminated(0, None, Some(9)))],
            main_waiting.clone(),
            1,
        );
        // Exit code 0 counts as done whatever the signal.
        assert_eq!(pod_status_reason(&p, now), "PodInitializing");
        let p = status_pod(
            vec![cs("init0", waiting("CrashLoopBackOff"))],
            main_waiting.clone(),
            1,
        );
        assert_eq!(pod_status_reason(&p, now), "Init:CrashLoopBackOff");
        let p = status_pod(vec![], vec![cs("main", waiting("ContainerCreating"))], 0);
        assert_eq!(pod_status_reason(&p, now), "ContainerCreating");
        let p = status_pod(
            vec![],
            vec![cs("main", terminated(137, Some("OOMKilled"), None))],
            0,
        );
        assert_eq!(pod_status_reason(&p, now), "OOMKilled");
        let p = status_pod(vec![], vec![cs("main", terminated(0, None, Some(15)))], 0);
        assert_eq!(pod_status_reason(&p, now), "Signal:15");
        let mut done = status_pod(
            vec![],
            vec![cs("main", terminated(0, Some("Completed"), None))],
            0,
        );
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(pod_status_reason(&done, now), "Completed");
        let row = row(
            "Pod",
            &serde_json::to_value(&done).unwrap(),
            &TableOptions::new(now),
        );
        assert_eq!(row["conditions"][0]["reason"], "Succeeded");
        // Plain Pending pod without statuses.
        let pending = Pod {
            spec: Some(PodSpec {
                containers: vec![Container::default()],
                ..Default::default()
            }),
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            pod_summary(&pending, now),
            PodSummary {
                ready: "0/1".into(),
                status: "Pending".into(),
                restarts: "0".into()
            }
        );
        // A deleted pod on a lost node.
        let mut lost = pending.clone();
        lost.metadata.deletion_timestamp = Some(Time(now));
        lost.status.as_mut().unwrap().reason = Some("NodeLost".into());
        assert_eq!(pod_status_reason(&lost, now), "Unknown");
        lost.metadata.deletion_timestamp = None;
        assert_eq!(pod_status_reason(&lost, now), "NodeLost");
    }

    #[test]
    fn sidecars_count_in_ready_and_completed_with_running_sidecar() {
        let now = at(12, 0, 0);
        let mut p = status_pod(vec![], vec![], 1);
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers.as_mut().unwrap()[0].restart_policy = Some("Always".into());
        let st = p.status.as_mut().unwrap();
        st.phase = Some("Running".into());
        let mut side = cs(
            "init0",
            ContainerState {
                running: Some(Default::default()),
                ..Default::default()
            },
        );
        side.started = Some(true);
        side.ready = true;
        side.restart_count = 2;
        side.last_state = Some(terminated(1, Some("Error"), None));
        side.last_state
            .as_mut()
            .unwrap()
            .terminated
            .as_mut()
            .unwrap()
            .finished_at = Some(Time(at(11, 59, 0)));
        st.init_container_statuses = Some(vec![side]);
        let mut main = cs(
            "main",
            ContainerState {
                running: Some(Default::default()),
                ..Default::default()
            },
        );
        main.ready = true;
        st.container_statuses = Some(vec![main]);
        st.conditions = Some(vec![PodCondition {
            type_: "Initialized".into(),
            status: "True".into(),
            ..Default::default()
        }]);
        let s = pod_summary(&p, now);
        assert_eq!(s.ready, "2/2");
        assert_eq!(s.status, "Running");
        assert_eq!(s.restarts, "2 (60s ago)");
    }

    #[test]
    fn human_durations_as_kubectl() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(-5)), "<invalid>");
        assert_eq!(human_duration(d(-1)), "0s");
        assert_eq!(human_duration(d(75)), "75s");
        assert_eq!(human_duration(d(119)), "119s");
        assert_eq!(human_duration(d(120)), "2m");
        assert_eq!(human_duration(d(487)), "8m7s");
        assert_eq!(human_duration(d(11 * 60 + 5)), "11m");
        assert_eq!(human_duration(d(3 * 3600 + 4 * 60)), "3h4m");
        assert_eq!(human_duration(d(10 * 3600)), "10h");
        assert_eq!(human_duration(d(3 * 86400 + 3600)), "3d1h");
        assert_eq!(human_duration(d(30 * 86400)), "30d");
        assert_eq!(human_duration(d(3 * 365 * 86400 + 5 * 86400)), "3y5d");
    }

    #[test]
    fn event_row_and_other_kinds() {
        let now = at(12, 0, 0);
        let ev = json!({
            "metadata": {"name": "ref-crash.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "ref-crash", "fieldPath": "spec.containers{main}"},
            "reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container main  ",
            "source": {"component": "kubelet", "host": "ref-node"},
            "firstTimestamp": "2026-11-28T11:58:00Z", "lastTimestamp": "2026-11-28T11:59:54Z", "count": 4
        });
        let c = cells("Event", &ev, now);
        assert_eq!(
            c,
            vec![
                json!("6s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/ref-crash"),
                json!("spec.containers{main}"),
                json!("kubelet, ref-node"),
                json!("Back-off restarting failed container main"),
                json!("2m"),
                json!(4),
                json!("ref-crash.1")
            ]
        );
        let mut v1 = crate::convert::event_core_to_v1(&ev);
        v1.as_object_mut().unwrap().remove("deprecatedSource");
        v1["reportingController"] = json!("kubelet");
        let c1 = cells("Event", &v1, now);
        assert_eq!(c1[3], "pod/ref-crash");
        assert_eq!(c1[5], "kubelet");
        assert_eq!(c1[6], "Back-off restarting failed container main");
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": "2026-11-28T11:00:00Z"}, "status": {"phase": "Active"}});
        assert_eq!(
            cells("Namespace", &ns, now),
            vec![json!("default"), json!("Active"), json!("60m")]
        );
        let cm = json!({"metadata": {"name": "c", "creationTimestamp": "2026-11-28T11:59:00Z"}, "data": {"a": "1", "b": "2"}});
        assert_eq!(
            cells("ConfigMap", &cm, now),
            vec![json!("c"), json!(2), json!("60s")]
        );
        let other = json!({"metadata": {"name": "x", "creationTimestamp": "2026-11-28T11:59:00Z"}});
        assert_eq!(
            cells("Widget", &other, now),
            vec![json!("x"), json!("2026-11-28T11:59:00Z")]
        );
        assert_eq!(columns("Widget")[1]["type"], "date");
    }

    #[test]
    fn include_object_and_headers() {
        let pod = fixture("a-running.yaml");
        let mut opts = TableOptions::new(at(10, 37, 55));
        let t = table("Pod", std::slice::from_ref(&pod), &opts);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 9);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "ref-running");
        assert!(t["rows"][0]["object"].get("spec").is_none());
        opts.include_object = IncludeObject::Object;
        opts.no_headers = true;
        let t = table("Pod", std::slice::from_ref(&pod), &opts);
        assert!(t.get("columnDefinitions").is_none());
        assert_eq!(t["rows"][0]["object"]["spec"]["nodeName"], "ref-node");
        assert_eq!(IncludeObject::parse("Bogus"), None);
    }
}
