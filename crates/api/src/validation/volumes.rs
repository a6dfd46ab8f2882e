//! A pod's volumes: one source each, with the fields each source needs.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Volume;

use super::names::is_dns1123_label;
use super::FieldError;

/// Checks the volumes and returns the names of the valid ones, which
/// volume mounts may refer to.
pub(super) fn validate_volumes(
    volumes: &[Volume],
    path: &str,
    errs: &mut Vec<FieldError>,
) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let mut el = validate_volume_source(v, &idx);
        let name_path = format!("{idx}.name");
        if v.name.is_empty() {
            el.push(FieldError::required(name_path.clone(), ""));
        } else {
            el.extend(
                is_dns1123_label(&v.name)
                    .into_iter()
                    .map(|m| FieldError::invalid(name_path.clone(), &v.name, m)),
            );
        }
        if names.contains(&v.name) {
            el.push(FieldError::duplicate(name_path, &v.name));
        }
        if el.is_empty() {
            names.insert(v.name.clone());
        } else {
            errs.extend(el);
        }
    }
    names
}

fn validate_volume_source(v: &Volume, path: &str) -> Vec<FieldError> {
    let sources: Vec<&str> = [
        ("hostPath", v.host_path.is_some()),
        ("emptyDir", v.empty_dir.is_some()),
        ("secret", v.secret.is_some()),
        ("configMap", v.config_map.is_some()),
        ("projected", v.projected.is_some()),
        ("downwardAPI", v.downward_api.is_some()),
        ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
        ("nfs", v.nfs.is_some()),
        ("csi", v.csi.is_some()),
        ("ephemeral", v.ephemeral.is_some()),
        ("image", v.image.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("cinder", v.cinder.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("flocker", v.flocker.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("rbd", v.rbd.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("storageos", v.storageos.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect();
    let mut errs = Vec::new();
    match sources.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a volume type")),
        [_] => {}
        [_, rest @ ..] => {
            for s in rest {
                errs.push(FieldError::forbidden(
                    format!("{path}.{s}"),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    if let Some(h) = &v.host_path {
        if h.path.is_empty() {
            errs.push(FieldError::required(format!("{path}.hostPath.path"), ""));
        }
        if let Some(t) = h.type_.as_deref() {
            const TYPES: [&str; 8] = [
                "",
                "BlockDevice",
                "CharDevice",
                "Directory",
                "DirectoryOrCreate",
                "File",
                "FileOrCreate",
                "Socket",
            ];
            if !TYPES.contains(&t) {
                errs.push(FieldError::not_supported(
                    format!("{path}.hostPath.type"),
                    t,
                    &TYPES,
                ));
            }
        }
    }
    if let Some(sv) = &v.secret {
        if sv.secret_name.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required(
                format!("{path}.secret.secretName"),
                "",
            ));
        }
    }
    if let Some(c) = &v.config_map {
        if c.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.configMap.name"), ""));
        }
    }
    if let Some(c) = &v.persistent_volume_claim {
        if c.claim_name.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.persistentVolumeClaim.claimName"),
                "",
            ));
        }
    }
    for (field, mode) in [
        ("secret", v.secret.as_ref().and_then(|s| s.default_mode)),
        (
            "configMap",
            v.config_map.as_ref().and_then(|s| s.default_mode),
        ),
        (
            "projected",
            v.projected.as_ref().and_then(|s| s.default_mode),
        ),
        (
            "downwardAPI",
            v.downward_api.as_ref().and_then(|s| s.default_mode),
        ),
    ] {
        if let Some(m) = mode.filter(|m| !(0..=0o777).contains(m)) {
            errs.push(FieldError::invalid(
                format!("{path}.{field}.defaultMode"),
                m,
                "must be a number between 0 and 0777 (octal), both inclusive",
            ));
        }
    }
    errs
}
