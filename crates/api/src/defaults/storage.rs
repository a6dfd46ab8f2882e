//! The v1 scheme defaults of storage objects.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass};

pub fn persistent_volume(pv: &mut PersistentVolume) {
    let spec = pv.spec.get_or_insert_with(Default::default);
    spec.persistent_volume_reclaim_policy
        .get_or_insert_with(|| "Retain".into());
    spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
}

pub fn persistent_volume_claim(pvc: &mut PersistentVolumeClaim) {
    pvc.spec
        .get_or_insert_with(Default::default)
        .volume_mode
        .get_or_insert_with(|| "Filesystem".into());
}

pub fn storage_class(sc: &mut StorageClass) {
    sc.reclaim_policy.get_or_insert_with(|| "Delete".into());
    sc.volume_binding_mode
        .get_or_insert_with(|| "Immediate".into());
}

pub fn csi_driver(d: &mut CSIDriver) {
    let s = &mut d.spec;
    s.attach_required.get_or_insert(true);
    s.pod_info_on_mount.get_or_insert(false);
    s.storage_capacity.get_or_insert(false);
    s.requires_republish.get_or_insert(false);
    s.se_linux_mount.get_or_insert(false);
    s.fs_group_policy
        .get_or_insert_with(|| "ReadWriteOnceWithFSType".into());
    s.volume_lifecycle_modes
        .get_or_insert_with(|| vec!["Persistent".into()]);
}
