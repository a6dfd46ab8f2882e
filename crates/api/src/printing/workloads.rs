//! Table columns of the workload kinds, as Kubernetes' printers fill them:
//! `NAME READY UP-TO-DATE AVAILABLE AGE` for Deployments, `NAME DESIRED
//! CURRENT READY AGE` for ReplicaSets and ReplicationControllers, with the
//! template's containers, images and the selector as wide columns.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
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
fn containers_and_images(t: Option<&PodTemplateSpec>) -> [String; 2] {
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
