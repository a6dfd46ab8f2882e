//! Server-side printing: `meta.k8s.io/v1` Tables as kubectl requests them
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), with the
//! columns and cell logic of Kubernetes' printers. The server always fills
//! the wide (priority 1) columns; kubectl hides them without `-o wide`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};

mod batch;
mod certificates;
mod events;
mod nodes;
mod pods;
mod rbac;
mod services;
mod storage;
mod workloads;

pub use batch::job_status;
pub use events::event_cells;
pub use nodes::node_cells;
pub use pods::{
    pod_cells, pod_ready_string, pod_restarts_string, pod_status_reason, pod_summary, PodSummary,
};
pub use services::{endpoint_slice_cells, endpoints_cells, format_endpoints, service_cells};
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

fn none_if_empty(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "<none>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    // Reference objects and kubectl's layout, shared with the per-kind tests.
    pub(super) fn fixture(name: &str) -> Value {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_yaml::from_str(&text).unwrap()
    }

    pub(super) fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, h, m, s).unwrap()
    }

    /// Lays a table out as kubectl does (tabwriter: min width 6, padding
    /// 3, upper-case headers, priority columns only when wide).
    pub(super) fn kubectl_text(table: &Value, wide: bool) -> String {
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

    pub(super) fn expected(name: &str) -> String {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().skip(1).map(|l| format!("{l}\n")).collect()
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
