//! Table columns and cells of storage objects, as Kubernetes' printers make
//! them (`printPersistentVolume`, `printPersistentVolumeClaim`,
//! `printStorageClass`, `printCSIDriver`, `printCSINode`,
//! `printCSIStorageCapacity`, `printVolumeAttachment`).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSINode, CSIStorageCapacity, StorageClass, VolumeAttachment,
};
use serde_json::{json, Value};

use super::{age, age_col, col, from_value, name_col, name_of};

const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

pub(super) fn columns(kind: &str) -> Vec<Value> {
    let s = |name: &str| col(name, "string", "", 0, "");
    let b = |name: &str| col(name, "boolean", "", 0, "");
    match kind {
        "PersistentVolume" => vec![
            name_col(),
            s("Capacity"),
            s("Access Modes"),
            s("Reclaim Policy"),
            s("Status"),
            s("Claim"),
            col("StorageClass", "string", "", 0, "StorageClass of the pv"),
            col(
                "VolumeAttributesClass",
                "string",
                "",
                0,
                "VolumeAttributesClass of the pv",
            ),
            s("Reason"),
            age_col(),
            col("VolumeMode", "string", "", 1, ""),
        ],
        "PersistentVolumeClaim" => vec![
            name_col(),
            s("Status"),
            s("Volume"),
            s("Capacity"),
            s("Access Modes"),
            col("StorageClass", "string", "", 0, "StorageClass of the pvc"),
            col(
                "VolumeAttributesClass",
                "string",
                "",
                0,
                "VolumeAttributesClass of the pvc",
            ),
            age_col(),
            col("VolumeMode", "string", "", 1, ""),
        ],
        "StorageClass" => vec![
            name_col(),
            s("Provisioner"),
            s("ReclaimPolicy"),
            s("VolumeBindingMode"),
            s("AllowVolumeExpansion"),
            age_col(),
        ],
        "CSIDriver" => vec![
            name_col(),
            b("AttachRequired"),
            b("PodInfoOnMount"),
            b("StorageCapacity"),
            s("TokenRequests"),
            b("RequiresRepublish"),
            s("Modes"),
            age_col(),
        ],
        "CSINode" => vec![
            name_col(),
            col(
                "Drivers",
                "integer",
                "",
                0,
                "Drivers indicates the number of CSI drivers registered on the node",
            ),
            age_col(),
        ],
        "CSIStorageCapacity" => vec![name_col(), s("StorageClassName"), s("Capacity")],
        "VolumeAttachment" => vec![
            name_col(),
            col("Attacher", "string", "name", 0, ""),
            s("PV"),
            s("Node"),
            b("Attached"),
            age_col(),
        ],
        _ => Vec::new(),
    }
}

/// `RWO,ROX,RWX,RWOP`, in that order, each once.
fn access_modes(modes: &[String]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| modes.iter().any(|x| x == m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn class_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec_class: Option<&String>,
) -> String {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(BETA_CLASS))
        .or(spec_class)
        .cloned()
        .unwrap_or_default()
}

pub(super) fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    match kind {
        "PersistentVolume" => {
            let pv: PersistentVolume = from_value(obj);
            let spec = pv.spec.clone().unwrap_or_default();
            let claim = spec.claim_ref.as_ref().map_or(String::new(), |c| {
                format!(
                    "{}/{}",
                    c.namespace.as_deref().unwrap_or_default(),
                    c.name.as_deref().unwrap_or_default()
                )
            });
            let status = pv.status.clone().unwrap_or_default();
            let phase = if pv.metadata.deletion_timestamp.is_some() {
                "Terminating".to_string()
            } else {
                status.phase.clone().unwrap_or_default()
            };
            let capacity = spec
                .capacity
                .as_ref()
                .and_then(|c| c.get("storage"))
                .map_or("0".to_string(), |q| q.0.clone());
            vec![
                json!(name_of(&pv.metadata)),
                json!(capacity),
                json!(access_modes(
                    spec.access_modes.as_deref().unwrap_or_default()
                )),
                json!(spec.persistent_volume_reclaim_policy.unwrap_or_default()),
                json!(phase),
                json!(claim),
                json!(class_of(&pv.metadata, spec.storage_class_name.as_ref())),
                json!(spec
                    .volume_attributes_class_name
                    .unwrap_or_else(|| "<unset>".into())),
                json!(status.reason.unwrap_or_default()),
                json!(age(pv.metadata.creation_timestamp.as_ref(), now)),
                json!(spec.volume_mode.unwrap_or_else(|| "<unset>".into())),
            ]
        }
        "PersistentVolumeClaim" => {
            let pvc: PersistentVolumeClaim = from_value(obj);
            let spec = pvc.spec.clone().unwrap_or_default();
            let status = pvc.status.clone().unwrap_or_default();
            let phase = if pvc.metadata.deletion_timestamp.is_some() {
                "Terminating".to_string()
            } else {
                status.phase.clone().unwrap_or_default()
            };
            let volume = spec.volume_name.clone().unwrap_or_default();
            let (capacity, modes) = if volume.is_empty() {
                (String::new(), String::new())
            } else {
                (
                    status
                        .capacity
                        .as_ref()
                        .and_then(|c| c.get("storage"))
                        .map_or("0".to_string(), |q| q.0.clone()),
                    access_modes(status.access_modes.as_deref().unwrap_or_default()),
                )
            };
            vec![
                json!(name_of(&pvc.metadata)),
                json!(phase),
                json!(volume),
                json!(capacity),
                json!(modes),
                json!(class_of(&pvc.metadata, spec.storage_class_name.as_ref())),
                json!(spec
                    .volume_attributes_class_name
                    .unwrap_or_else(|| "<unset>".into())),
                json!(age(pvc.metadata.creation_timestamp.as_ref(), now)),
                json!(spec.volume_mode.unwrap_or_else(|| "<unset>".into())),
            ]
        }
        "StorageClass" => {
            let sc: StorageClass = from_value(obj);
            let default = sc.metadata.annotations.as_ref().is_some_and(|a| {
                a.get(DEFAULT_CLASS).or_else(|| a.get(BETA_DEFAULT_CLASS)) == Some(&"true".into())
            });
            let mut name = name_of(&sc.metadata).to_string();
            if default {
                name.push_str(" (default)");
            }
            vec![
                json!(name),
                json!(sc.provisioner),
                json!(sc.reclaim_policy.unwrap_or_else(|| "Delete".into())),
                json!(sc.volume_binding_mode.unwrap_or_else(|| "Immediate".into())),
                json!(sc.allow_volume_expansion.unwrap_or(false)),
                json!(age(sc.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        "CSIDriver" => {
            let d: CSIDriver = from_value(obj);
            let s = &d.spec;
            let modes = s
                .volume_lifecycle_modes
                .clone()
                .unwrap_or_default()
                .join(",");
            let tokens = s
                .token_requests
                .as_ref()
                .map_or("<unset>".to_string(), |t| {
                    t.iter()
                        .map(|r| r.audience.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                });
            vec![
                json!(name_of(&d.metadata)),
                json!(s.attach_required.unwrap_or(true)),
                json!(s.pod_info_on_mount.unwrap_or(false)),
                json!(s.storage_capacity.unwrap_or(false)),
                json!(tokens),
                json!(s.requires_republish.unwrap_or(false)),
                json!(if modes.is_empty() {
                    "<none>".into()
                } else {
                    modes
                }),
                json!(age(d.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        "CSINode" => {
            let n: CSINode = from_value(obj);
            vec![
                json!(name_of(&n.metadata)),
                json!(n.spec.drivers.len()),
                json!(age(n.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        "CSIStorageCapacity" => {
            let c: CSIStorageCapacity = from_value(obj);
            vec![
                json!(name_of(&c.metadata)),
                json!(c.storage_class_name),
                json!(c.capacity.map_or("<unset>".to_string(), |q| q.0)),
            ]
        }
        "VolumeAttachment" => {
            let va: VolumeAttachment = from_value(obj);
            vec![
                json!(name_of(&va.metadata)),
                json!(va.spec.attacher),
                json!(va.spec.source.persistent_volume_name.unwrap_or_default()),
                json!(va.spec.node_name),
                json!(va.status.is_some_and(|s| s.attached)),
                json!(age(va.metadata.creation_timestamp.as_ref(), now)),
            ]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_modes_print_short_in_kubernetes_order() {
        let modes = ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"].map(String::from);
        assert_eq!(access_modes(&modes), "RWO,RWX");
    }

    #[test]
    fn a_claim_shows_capacity_once_bound() {
        let now = Utc::now();
        let pending = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "fast",
            "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}});
        let row = cells("PersistentVolumeClaim", &pending, now);
        assert_eq!(
            &row[..7],
            &[
                json!("data"),
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("fast"),
                json!("<unset>")
            ]
        );
        let sc = json!({"metadata": {"name": "fast", "annotations": {DEFAULT_CLASS: "true"}},
            "provisioner": "example.com/disk"});
        let row = cells("StorageClass", &sc, now);
        assert_eq!(
            &row[..5],
            &[
                json!("fast (default)"),
                json!("example.com/disk"),
                json!("Delete"),
                json!("Immediate"),
                json!(false)
            ]
        );
    }
}
