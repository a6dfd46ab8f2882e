//! Storage objects, stored and served for the scheduler and client tools:
//! PersistentVolumes and claims (core/v1) and storage.k8s.io/v1's
//! StorageClasses, CSIDrivers, CSINodes, CSIStorageCapacities and
//! VolumeAttachments. Nothing here provisions or attaches a volume.

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSINode, CSIStorageCapacity, StorageClass, VolumeAttachment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use orca_api::validation as v;

use super::apps_batch::{no_status_validation, Typed};

pub static PERSISTENT_VOLUME: Typed<PersistentVolume> = Typed {
    default: orca_api::defaults::persistent_volume,
    validate: v::validate_persistent_volume,
    validate_update: v::validate_persistent_volume_update,
    validate_status_update: v::validate_persistent_volume_status_update,
    on_create: |pv| {
        pv.status = Some(PersistentVolumeStatus {
            phase: Some("Pending".into()),
            last_phase_transition_time: Some(Time(chrono::Utc::now())),
            ..Default::default()
        });
    },
    generations: false,
    scales: false,
};

pub static PERSISTENT_VOLUME_CLAIM: Typed<PersistentVolumeClaim> = Typed {
    default: orca_api::defaults::persistent_volume_claim,
    validate: v::validate_persistent_volume_claim,
    validate_update: v::validate_persistent_volume_claim_update,
    validate_status_update: v::validate_persistent_volume_claim_status_update,
    on_create: |pvc| {
        pvc.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
    },
    generations: false,
    scales: false,
};

pub static STORAGE_CLASS: Typed<StorageClass> = Typed {
    default: orca_api::defaults::storage_class,
    validate: v::validate_storage_class,
    validate_update: v::validate_storage_class_update,
    validate_status_update: no_status_validation,
    on_create: |_| {},
    generations: false,
    scales: false,
};

pub static CSI_DRIVER: Typed<CSIDriver> = Typed {
    default: orca_api::defaults::csi_driver,
    validate: v::validate_csi_driver,
    validate_update: v::validate_csi_driver_update,
    validate_status_update: no_status_validation,
    on_create: |_| {},
    generations: false,
    scales: false,
};

pub static CSI_NODE: Typed<CSINode> = Typed {
    default: |_| {},
    validate: v::validate_csi_node,
    validate_update: v::validate_csi_node_update,
    validate_status_update: no_status_validation,
    on_create: |_| {},
    generations: false,
    scales: false,
};

pub static CSI_STORAGE_CAPACITY: Typed<CSIStorageCapacity> = Typed {
    default: |_| {},
    validate: v::validate_csi_storage_capacity,
    validate_update: v::validate_csi_storage_capacity_update,
    validate_status_update: no_status_validation,
    on_create: |_| {},
    generations: false,
    scales: false,
};

pub static VOLUME_ATTACHMENT: Typed<VolumeAttachment> = Typed {
    default: |_| {},
    validate: v::validate_volume_attachment,
    validate_update: v::validate_volume_attachment_update,
    validate_status_update: v::validate_volume_attachment_status_update,
    on_create: |va| va.status = None,
    generations: false,
    scales: false,
};
