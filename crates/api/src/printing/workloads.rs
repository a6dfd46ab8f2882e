//! Table columns of the workload kinds, as Kubernetes' printers fill them:
//! `NAME READY UP-TO-DATE AVAILABLE AGE` for Deployments, `NAME DESIRED
//! CURRENT READY AGE` for ReplicaSets and ReplicationControllers, `NAME
//! DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE` for
//! DaemonSets, `NAME READY AGE` for StatefulSets, with the template's
//! containers, images and the selector as wide columns; ControllerRevisions
//! name their controller and revision.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::core::v1::{PodTemplate, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{json, Value};

use super::{age, age_col, col, from_value, name_col, name_of};

const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";

fn template_cols() -> [Value; 2] {
    [
        col("Containers", "string", "", 1, CONTAINERS_DESC),
        col("Images", "string", "", 1, IMAGES_DESC),
    ]
}

/// The column definitions of a workload kind, or None for other kinds.
pub(super) fn columns(kind: &str) -> Option<Vec<Value>> {
    let [containers, images] = template_cols();
    Some(match kind {
        "Deployment" => vec![
            name_col(),
            col("Ready", "string", "", 0, "Number of the pod with ready state"),
            col("Up-to-date", "string", "", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            col("Available", "string", "", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            age_col(),
            containers,
            images,
            col("Selector", "string", "", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels."),
        ],
        "ReplicaSet" => vec![
            name_col(),
            col("Desired", "integer", "", 0, "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"),
            col("Current", "integer", "", 0, "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"),
            col("Ready", "integer", "", 0, "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition."),
            age_col(),
            containers,
            images,
            col("Selector", "string", "", 1, "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
        ],
        "ReplicationController" => vec![
            name_col(),
            col("Desired", "integer", "", 0, "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
            col("Current", "integer", "", 0, "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
            col("Ready", "integer", "", 0, "The number of ready replicas for this replication controller."),
            age_col(),
            containers,
            images,
            col("Selector", "string", "", 1, "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
        ],
        "DaemonSet" => vec![
            name_col(),
            col("Desired", "integer", "", 0, "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
            col("Current", "integer", "", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
            col("Ready", "integer", "", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            col("Up-to-date", "integer", "", 0, "The total number of nodes that are running updated daemon pod"),
            col("Available", "integer", "", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            col("Node Selector", "string", "", 0, "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
            age_col(),
            containers,
            images,
            col("Selector", "string", "", 1, "A label query over pods that are managed by the daemon set. Must match in order to be controlled. If empty, defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
        ],
        "StatefulSet" => vec![
            name_col(),
            col("Ready", "string", "", 0, "Number of the pod with ready state"),
            age_col(),
            containers,
            images,
        ],
        "ControllerRevision" => vec![
            name_col(),
            col("Controller", "string", "", 0, "Controller of the object"),
            col("Revision", "string", "", 0, "revision indicates the revision of the state represented by Data."),
            age_col(),
        ],
        "PodTemplate" => vec![
            name_col(),
            col("Containers", "string", "", 0, CONTAINERS_DESC),
            col("Images", "string", "", 0, IMAGES_DESC),
            col("Pod Labels", "string", "", 0, "The labels for the pod template."),
        ],
        _ => return None,
    })
}

/// The cells of a workload kind's row, or None for other kinds.
pub(super) fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Option<Vec<Value>> {
    Some(match kind {
        "Deployment" => {
            let d: Deployment = from_value(obj);
            let spec = d.spec.unwrap_or_default();
            let status = d.status.unwrap_or_default();
            let [containers, images] = containers_and_images(Some(&spec.template));
            vec![
                json!(name_of(&d.metadata)),
                json!(format!(
                    "{}/{}",
                    status.ready_replicas.unwrap_or(0),
                    spec.replicas.unwrap_or(0)
                )),
                json!(status.updated_replicas.unwrap_or(0)),
                json!(status.available_replicas.unwrap_or(0)),
                json!(age(d.metadata.creation_timestamp.as_ref(), now)),
                json!(containers),
                json!(images),
                json!(format_label_selector(Some(&spec.selector))),
            ]
        }
        "ReplicaSet" => {
            let rs: ReplicaSet = from_value(obj);
            let spec = rs.spec.unwrap_or_default();
            let status = rs.status.unwrap_or_default();
            let [containers, images] = containers_and_images(spec.template.as_ref());
            vec![
                json!(name_of(&rs.metadata)),
                json!(spec.replicas.unwrap_or(0)),
                json!(status.replicas),
                json!(status.ready_replicas.unwrap_or(0)),
                json!(age(rs.metadata.creation_timestamp.as_ref(), now)),
                json!(containers),
                json!(images),
                json!(format_label_selector(Some(&spec.selector))),
            ]
        }
        "ReplicationController" => {
            let rc: ReplicationController = from_value(obj);
            let spec = rc.spec.unwrap_or_default();
            let status = rc.status.unwrap_or_default();
            let [containers, images] = containers_and_images(spec.template.as_ref());
            vec![
                json!(name_of(&rc.metadata)),
                json!(spec.replicas.unwrap_or(0)),
                json!(status.replicas),
                json!(status.ready_replicas.unwrap_or(0)),
                json!(age(rc.metadata.creation_timestamp.as_ref(), now)),
                json!(containers),
                json!(images),
                json!(format_labels(spec.selector.as_ref())),
            ]
        }
        "DaemonSet" => {
            let ds: DaemonSet = from_value(obj);
            let spec = ds.spec.unwrap_or_default();
            let status = ds.status.unwrap_or_default();
            let [containers, images] = containers_and_images(Some(&spec.template));
            let node_selector = spec
                .template
                .spec
                .as_ref()
                .and_then(|s| s.node_selector.as_ref());
            vec![
                json!(name_of(&ds.metadata)),
                json!(status.desired_number_scheduled),
                json!(status.current_number_scheduled),
                json!(status.number_ready),
                json!(status.updated_number_scheduled.unwrap_or(0)),
                json!(status.number_available.unwrap_or(0)),
                json!(format_labels(node_selector)),
                json!(age(ds.metadata.creation_timestamp.as_ref(), now)),
                json!(containers),
                json!(images),
                json!(format_label_selector(Some(&spec.selector))),
            ]
        }
        "StatefulSet" => {
            let sts: StatefulSet = from_value(obj);
            let spec = sts.spec.unwrap_or_default();
            let status = sts.status.unwrap_or_default();
            let [containers, images] = containers_and_images(Some(&spec.template));
            vec![
                json!(name_of(&sts.metadata)),
                json!(format!(
                    "{}/{}",
                    status.ready_replicas.unwrap_or(0),
                    spec.replicas.unwrap_or(0)
                )),
                json!(age(sts.metadata.creation_timestamp.as_ref(), now)),
                json!(containers),
                json!(images),
            ]
        }
        "ControllerRevision" => {
            let cr: ControllerRevision = from_value(obj);
            // `daemonset.apps/logger`, as kubectl names a GroupKind.
            let controller = cr
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true))
                .map(|r| {
                    let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
                    let kind = r.kind.to_lowercase();
                    if group.is_empty() {
                        format!("{kind}/{}", r.name)
                    } else {
                        format!("{kind}.{group}/{}", r.name)
                    }
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                json!(name_of(&cr.metadata)),
                json!(controller),
                json!(cr.revision),
                json!(age(cr.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        "PodTemplate" => {
            let pt: PodTemplate = from_value(obj);
            let [containers, images] = containers_and_images(pt.template.as_ref());
            let labels = pt
                .template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref());
            vec![
                json!(name_of(&pt.metadata)),
                json!(containers),
                json!(images),
                json!(format_labels(labels)),
            ]
        }
        _ => return None,
    })
}

/// The template's container names and images, comma-separated.
pub(super) fn containers_and_images(t: Option<&PodTemplateSpec>) -> [String; 2] {
    let containers = t
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref().unwrap_or(""))
        .collect();
    [names.join(","), images.join(",")]
}

/// `metav1.FormatLabelSelector`: `app=web,pod-template-hash=...`, or
/// `<none>` for an empty selector.
pub fn format_label_selector(sel: Option<&LabelSelector>) -> String {
    let s = sel
        .map(|s| match crate::selectors::LabelSelector::from_api(s) {
            Ok(parsed) => parsed.to_selector_string(),
            Err(_) => "<error>".to_string(),
        })
        .unwrap_or_default();
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

/// `labels.FormatLabels`: `a=b,c=d` by key, or `<none>`.
pub fn format_labels(labels: Option<&BTreeMap<String, String>>) -> String {
    let s: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if s.is_empty() {
        "<none>".into()
    } else {
        s.join(",")
    }
}
