//! Storage objects: core/v1 PersistentVolumes and PersistentVolumeClaims,
//! storage.k8s.io/v1 StorageClasses, CSIDrivers, CSINodes,
//! CSIStorageCapacities and VolumeAttachments, with Kubernetes' wording.
//! Orca stores and serves them (the scheduler and client tools read them);
//! it provisions and attaches no volumes.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSINode, CSIStorageCapacity, StorageClass, VolumeAttachment,
};
use serde_json::Value;

use super::{
    is_qualified_name, name_is_dns_subdomain, validate_object_meta, validate_object_meta_update,
    BadValue, FieldError,
};
use crate::quantity::parse_nanos;

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];

fn access_modes(modes: &[String], path: &str, required: &str, errs: &mut Vec<FieldError>) {
    if modes.is_empty() {
        errs.push(FieldError::required(path, required));
    }
    let mut once_pod = false;
    let mut other = false;
    for m in modes {
        if !ACCESS_MODES.contains(&m.as_str()) {
            errs.push(FieldError::not_supported(path, m.as_str(), ACCESS_MODES));
        } else if m == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            other = true;
        }
    }
    if once_pod && other {
        errs.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn volume_mode(mode: Option<&str>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(m) = mode.filter(|m| !VOLUME_MODES.contains(m)) {
        errs.push(FieldError::not_supported(path, m, VOLUME_MODES));
    }
}

/// The PersistentVolumeSource fields, in kube-apiserver's order of checks.
const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "iscsi",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

pub fn validate_persistent_volume(pv: &PersistentVolume) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&pv.metadata, false, name_is_dns_subdomain);
    let spec = pv.spec.clone().unwrap_or_default();
    access_modes(
        spec.access_modes.as_deref().unwrap_or_default(),
        "spec.accessModes",
        "",
        &mut errs,
    );
    let capacity = spec.capacity.clone().unwrap_or_default();
    if capacity.is_empty() {
        errs.push(FieldError::required("spec.capacity", ""));
    }
    if !capacity.contains_key("storage") || capacity.len() > 1 {
        let keys: Vec<String> = capacity.keys().cloned().collect();
        errs.push(FieldError::not_supported(
            "spec.capacity",
            BadValue::StrList(keys),
            &["storage"],
        ));
    }
    for (k, q) in &capacity {
        if parse_nanos(&q.0).is_ok_and(|n| n <= 0) {
            errs.push(FieldError::invalid(
                format!("spec.capacity[{k}]"),
                q.0.as_str(),
                "must be greater than zero",
            ));
        }
    }
    if let Some(p) = spec.persistent_volume_reclaim_policy.as_deref() {
        let supported = ["Delete", "Recycle", "Retain"];
        if !supported.contains(&p) {
            errs.push(FieldError::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                p,
                &supported,
            ));
        }
    }
    if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        for m in name_is_dns_subdomain(class, false) {
            errs.push(FieldError::invalid("spec.storageClassName", class, m));
        }
    }
    volume_mode(spec.volume_mode.as_deref(), "spec.volumeMode", &mut errs);
    let json = serde_json::to_value(&spec).unwrap_or(Value::Null);
    let mut sources = PV_SOURCES
        .iter()
        .filter(|s| json.get(**s).is_some_and(|v| !v.is_null()));
    match sources.next() {
        None => errs.push(FieldError::required("spec", "must specify a volume type")),
        Some(_) => {
            for extra in sources {
                errs.push(FieldError::forbidden(
                    format!("spec.{}", extra.to_ascii_lowercase()),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    if let Some(hp) = &spec.host_path {
        if hp.path.is_empty() {
            errs.push(FieldError::required("spec.hostPath.path", ""));
        }
    }
    if let Some(local) = &spec.local {
        if local.path.is_empty() {
            errs.push(FieldError::required("spec.local.path", ""));
        }
        if spec.node_affinity.is_none() {
            errs.push(FieldError::required(
                "spec.nodeAffinity",
                "Local volume requires node affinity",
            ));
        }
    }
    if let Some(csi) = &spec.csi {
        if csi.driver.is_empty() {
            errs.push(FieldError::required("spec.csi.driver", ""));
        }
        if csi.volume_handle.is_empty() {
            errs.push(FieldError::required("spec.csi.volumeHandle", ""));
        }
    }
    errs
}

fn source_of(pv: &PersistentVolume) -> Value {
    let spec = serde_json::to_value(pv.spec.clone().unwrap_or_default()).unwrap_or(Value::Null);
    PV_SOURCES
        .iter()
        .filter_map(|s| Some((s.to_string(), spec.get(*s)?.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub fn validate_persistent_volume_update(
    new: &PersistentVolume,
    old: &PersistentVolume,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_persistent_volume(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    if source_of(new) != source_of(old) {
        errs.push(FieldError::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    let mode = |pv: &PersistentVolume| pv.spec.as_ref().and_then(|s| s.volume_mode.clone());
    if mode(new) != mode(old) {
        errs.push(FieldError::invalid(
            "volumeMode",
            BadValue::Raw(mode(new).map_or("nil".into(), |m| format!("\"{m}\""))),
            "field is immutable",
        ));
    }
    errs
}

pub fn validate_persistent_volume_claim(pvc: &PersistentVolumeClaim) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&pvc.metadata, true, name_is_dns_subdomain);
    let spec = pvc.spec.clone().unwrap_or_default();
    access_modes(
        spec.access_modes.as_deref().unwrap_or_default(),
        "spec.accessModes",
        "at least 1 access mode is required",
        &mut errs,
    );
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    match storage {
        None => errs.push(FieldError::required("spec.resources[storage]", "")),
        Some(q) if parse_nanos(&q.0).is_ok_and(|n| n <= 0) => errs.push(FieldError::invalid(
            "spec.resources[storage]",
            q.0.as_str(),
            "must be greater than zero",
        )),
        Some(_) => {}
    }
    if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        for m in name_is_dns_subdomain(class, false) {
            errs.push(FieldError::invalid("spec.storageClassName", class, m));
        }
    }
    volume_mode(spec.volume_mode.as_deref(), "spec.volumeMode", &mut errs);
    errs
}

fn storage_request(pvc: &PersistentVolumeClaim) -> Option<i128> {
    let q = pvc
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    parse_nanos(&q.0).ok()
}

/// A claim's spec is fixed once created, except that a bound claim may
/// grow (`resources.requests`) and `volumeName` may be set once.
pub fn validate_persistent_volume_claim_update(
    new: &PersistentVolumeClaim,
    old: &PersistentVolumeClaim,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_persistent_volume_claim(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    let mut new_spec = new.spec.clone().unwrap_or_default();
    let mut old_spec = old.spec.clone().unwrap_or_default();
    if old_spec
        .volume_name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        old_spec.volume_name = new_spec.volume_name.clone();
    }
    let bound = new.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if bound {
        new_spec.resources = old_spec.resources.clone();
        new_spec.volume_attributes_class_name = old_spec.volume_attributes_class_name.clone();
    }
    if new_spec != old_spec {
        errs.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and \
             volumeAttributesClassName for bound claims",
        ));
    }
    let capacity = old
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| parse_nanos(&q.0).ok())
        .unwrap_or(0);
    if let (Some(n), Some(o)) = (storage_request(new), storage_request(old)) {
        if n < o && n <= capacity {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            ));
        }
    }
    errs
}

pub fn validate_persistent_volume_claim_status_update(
    new: &PersistentVolumeClaim,
    old: &PersistentVolumeClaim,
) -> Vec<FieldError> {
    validate_object_meta_update(&new.metadata, &old.metadata)
}

pub fn validate_persistent_volume_status_update(
    new: &PersistentVolume,
    old: &PersistentVolume,
) -> Vec<FieldError> {
    validate_object_meta_update(&new.metadata, &old.metadata)
}

fn provisioner_name(name: &str, path: &str, errs: &mut Vec<FieldError>) {
    if name.is_empty() {
        errs.push(FieldError::required(path, name));
    } else {
        for m in is_qualified_name(&name.to_ascii_lowercase()) {
            errs.push(FieldError::invalid(path, name, m));
        }
    }
}

pub fn validate_storage_class(sc: &StorageClass) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&sc.metadata, false, name_is_dns_subdomain);
    provisioner_name(&sc.provisioner, "provisioner", &mut errs);
    if let Some(p) = sc.reclaim_policy.as_deref() {
        if !["Delete", "Retain"].contains(&p) {
            errs.push(FieldError::not_supported(
                "reclaimPolicy",
                p,
                &["Delete", "Retain"],
            ));
        }
    }
    if let Some(m) = sc.volume_binding_mode.as_deref() {
        let supported = ["Immediate", "WaitForFirstConsumer"];
        if !supported.contains(&m) {
            errs.push(FieldError::not_supported(
                "volumeBindingMode",
                m,
                &supported,
            ));
        }
    }
    errs
}

pub fn validate_storage_class_update(new: &StorageClass, old: &StorageClass) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_storage_class(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    if new.parameters != old.parameters {
        errs.push(FieldError::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if new.provisioner != old.provisioner {
        errs.push(FieldError::forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    if new.reclaim_policy != old.reclaim_policy {
        errs.push(FieldError::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    if new.volume_binding_mode != old.volume_binding_mode {
        errs.push(FieldError::invalid(
            "volumeBindingMode",
            new.volume_binding_mode.as_deref().unwrap_or_default(),
            "field is immutable",
        ));
    }
    errs
}

pub fn validate_csi_driver(d: &CSIDriver) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&d.metadata, false, name_is_dns_subdomain);
    let name = d.metadata.name.as_deref().unwrap_or_default();
    if !name.is_empty() {
        for m in is_qualified_name(&name.to_ascii_lowercase()) {
            errs.push(FieldError::invalid("name", name, m));
        }
    }
    let spec = &d.spec;
    if spec.attach_required.is_none() {
        errs.push(FieldError::required("spec.attachedRequired", ""));
    }
    if spec.pod_info_on_mount.is_none() {
        errs.push(FieldError::required("spec.podInfoOnMount", ""));
    }
    if spec.storage_capacity.is_none() {
        errs.push(FieldError::required("spec.storageCapacity", ""));
    }
    if let Some(p) = spec.fs_group_policy.as_deref() {
        let supported = ["File", "None", "ReadWriteOnceWithFSType"];
        if !supported.contains(&p) {
            errs.push(FieldError::not_supported(
                "spec.fsGroupPolicy",
                p,
                &supported,
            ));
        }
    }
    for m in spec.volume_lifecycle_modes.iter().flatten() {
        if !["Ephemeral", "Persistent"].contains(&m.as_str()) {
            errs.push(FieldError::not_supported(
                "spec.volumeLifecycleModes",
                m.as_str(),
                &["Ephemeral", "Persistent"],
            ));
        }
    }
    errs
}

pub fn validate_csi_driver_update(new: &CSIDriver, old: &CSIDriver) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_csi_driver(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    let fixed = |field: &str, changed: bool, errs: &mut Vec<FieldError>| {
        if changed {
            errs.push(FieldError::invalid(
                field,
                BadValue::Omit,
                "field is immutable",
            ));
        }
    };
    fixed(
        "spec.attachedRequired",
        new.spec.attach_required != old.spec.attach_required,
        &mut errs,
    );
    fixed(
        "spec.fsGroupPolicy",
        new.spec.fs_group_policy != old.spec.fs_group_policy,
        &mut errs,
    );
    fixed(
        "spec.volumeLifecycleModes",
        new.spec.volume_lifecycle_modes != old.spec.volume_lifecycle_modes,
        &mut errs,
    );
    errs
}

pub fn validate_csi_node(n: &CSINode) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&n.metadata, false, name_is_dns_subdomain);
    let mut seen = std::collections::HashSet::new();
    for (i, d) in n.spec.drivers.iter().enumerate() {
        let path = format!("spec.drivers[{i}]");
        provisioner_name(&d.name, &format!("{path}.name"), &mut errs);
        if d.node_id.is_empty() {
            errs.push(FieldError::required(format!("{path}.nodeID"), ""));
        }
        if !seen.insert(d.name.as_str()) {
            errs.push(FieldError::duplicate(
                format!("{path}.name"),
                d.name.as_str(),
            ));
        }
    }
    errs
}

pub fn validate_csi_node_update(new: &CSINode, old: &CSINode) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_csi_node(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    for (i, d) in new.spec.drivers.iter().enumerate() {
        if let Some(o) = old.spec.drivers.iter().find(|o| o.name == d.name) {
            if o.node_id != d.node_id {
                errs.push(FieldError::invalid(
                    format!("spec.drivers[{i}].nodeID"),
                    d.node_id.as_str(),
                    "field is immutable",
                ));
            }
        }
    }
    errs
}

pub fn validate_csi_storage_capacity(c: &CSIStorageCapacity) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&c.metadata, true, name_is_dns_subdomain);
    for m in name_is_dns_subdomain(&c.storage_class_name, false) {
        errs.push(FieldError::invalid(
            "storageClassName",
            c.storage_class_name.as_str(),
            m,
        ));
    }
    errs
}

pub fn validate_csi_storage_capacity_update(
    new: &CSIStorageCapacity,
    old: &CSIStorageCapacity,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_csi_storage_capacity(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    if new.storage_class_name != old.storage_class_name {
        errs.push(FieldError::invalid(
            "storageClassName",
            new.storage_class_name.as_str(),
            "field is immutable",
        ));
    }
    if new.node_topology != old.node_topology {
        errs.push(FieldError::invalid(
            "nodeTopology",
            BadValue::Omit,
            "field is immutable",
        ));
    }
    errs
}

pub fn validate_volume_attachment(va: &VolumeAttachment) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&va.metadata, false, name_is_dns_subdomain);
    provisioner_name(&va.spec.attacher, "spec.attacher", &mut errs);
    if va.spec.node_name.is_empty() {
        errs.push(FieldError::required("spec.nodeName", ""));
    }
    let src = &va.spec.source;
    match (&src.persistent_volume_name, &src.inline_volume_spec) {
        (None, None) => errs.push(FieldError::required(
            "spec.source",
            "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
        )),
        (Some(_), Some(_)) => errs.push(FieldError::forbidden(
            "spec.source",
            "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
        )),
        (Some(n), None) if n.is_empty() => errs.push(FieldError::required(
            "spec.source.persistentVolumeName",
            "must specify non empty persistentVolumeName",
        )),
        _ => {}
    }
    errs
}

pub fn validate_volume_attachment_update(
    new: &VolumeAttachment,
    old: &VolumeAttachment,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_volume_attachment(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    if new.spec != old.spec {
        errs.push(FieldError::invalid(
            "spec",
            BadValue::Omit,
            "field is immutable",
        ));
    }
    errs
}

pub fn validate_volume_attachment_status_update(
    new: &VolumeAttachment,
    old: &VolumeAttachment,
) -> Vec<FieldError> {
    validate_object_meta_update(&new.metadata, &old.metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    fn pv(spec: Value) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": "pv1"}, "spec": spec})).unwrap()
    }

    #[test]
    fn a_volume_needs_capacity_modes_and_one_source() {
        let ok = pv(
            json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data"}}),
        );
        assert!(validate_persistent_volume(&ok).is_empty());
        let bad = pv(json!({"accessModes": ["ReadWriteOncePod", "ReadWriteOnce"]}));
        assert_eq!(
            messages(&validate_persistent_volume(&bad)),
            [
                "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
                "spec.capacity: Required value",
                "spec.capacity: Unsupported value: []string{}: supported values: \"storage\"",
                "spec: Required value: must specify a volume type",
            ]
        );
        let two = pv(
            json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data"}, "nfs": {"server": "s", "path": "/"}}),
        );
        assert_eq!(
            messages(&validate_persistent_volume(&two)),
            ["spec.nfs: Forbidden: may not specify more than 1 volume type"]
        );
        let mut moved = ok.clone();
        moved
            .spec
            .as_mut()
            .unwrap()
            .host_path
            .as_mut()
            .unwrap()
            .path = "/other".into();
        assert_eq!(
            messages(&validate_persistent_volume_update(&moved, &ok)),
            ["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"]
        );
    }

    #[test]
    fn a_claim_is_fixed_but_a_bound_one_may_grow() {
        let claim = |size: &str, phase: &str| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"metadata": {"name": "c", "namespace": "d"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": size}}},
                "status": {"phase": phase, "capacity": {"storage": "1Gi"}}}))
            .unwrap()
        };
        assert!(validate_persistent_volume_claim(&claim("1Gi", "Pending")).is_empty());
        let empty: PersistentVolumeClaim = serde_json::from_value(
            json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {}}),
        )
        .unwrap();
        assert_eq!(
            messages(&validate_persistent_volume_claim(&empty)),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
        assert!(validate_persistent_volume_claim_update(
            &claim("2Gi", "Bound"),
            &claim("1Gi", "Bound")
        )
        .is_empty());
        assert_eq!(
            messages(&validate_persistent_volume_claim_update(
                &claim("2Gi", "Pending"),
                &claim("1Gi", "Pending")
            )),
            ["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"]
        );
        assert_eq!(
            messages(&validate_persistent_volume_claim_update(
                &claim("512Mi", "Bound"),
                &claim("1Gi", "Bound")
            )),
            ["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
        );
    }

    #[test]
    fn a_storage_class_keeps_its_provisioner_and_parameters() {
        let sc = |prov: &str, params: Value| -> StorageClass {
            serde_json::from_value(
                json!({"metadata": {"name": "fast"}, "provisioner": prov, "parameters": params}),
            )
            .unwrap()
        };
        let ok = sc("example.com/disk", json!({"type": "ssd"}));
        assert!(validate_storage_class(&ok).is_empty());
        assert_eq!(
            messages(&validate_storage_class(&sc("", json!({})))),
            ["provisioner: Required value"]
        );
        assert_eq!(
            messages(&validate_storage_class_update(
                &sc("other.io/disk", json!({"type": "hdd"})),
                &ok
            )),
            [
                "parameters: Forbidden: updates to parameters are forbidden.",
                "provisioner: Forbidden: updates to provisioner are forbidden.",
            ]
        );
    }
}
