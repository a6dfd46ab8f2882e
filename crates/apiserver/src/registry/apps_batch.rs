//! apps/v1 DaemonSets, StatefulSets and ControllerRevisions, batch/v1 Jobs
//! and CronJobs, policy/v1 PodDisruptionBudgets: each is defaulted and
//! validated from one typed decode (as the Deployments beside them), created
//! with an empty status (and generation 1 where the kind counts them);
//! `status` writes keep the spec. StatefulSets serve `scale`; a Job's
//! selector and pod labels are generated from its uid unless it asks for a
//! manual selector.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use orca_api::validation::{self as v, FieldError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::workloads::{decoded, label_selector_string, prepare, replicas_view, set_spec_replicas};
use super::{ScaleView, Strategy};
use crate::resources::ResourceDef;
use crate::status::ApiError;

/// A kind served from its typed form: its scheme defaults, its create,
/// update and status-update validation, what a create resets.
pub struct Typed<T: 'static> {
    pub(super) default: fn(&mut T),
    pub(super) validate: fn(&T) -> Vec<FieldError>,
    pub(super) validate_update: fn(&T, &T) -> Vec<FieldError>,
    pub(super) validate_status_update: fn(&T, &T) -> Vec<FieldError>,
    pub(super) on_create: fn(&mut T),
    /// Whether a changed spec starts a new generation.
    pub(super) generations: bool,
    /// Whether the kind serves `scale` (on `spec.replicas`).
    pub(super) scales: bool,
}

impl<T> Strategy for Typed<T>
where
    T: DeserializeOwned + Serialize + Sync + 'static,
{
    fn prepare_create(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        prepare::<T>(def, obj, self.default, self.validate, Some(self.on_create))
    }

    fn prepare_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        let old: T = decoded(old)?;
        let check = self.validate_update;
        prepare::<T>(def, new, self.default, |t| check(t, &old), None)
    }

    fn prepare_status_update(
        &self,
        def: &ResourceDef,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        let old: T = decoded(old)?;
        let check = self.validate_status_update;
        prepare::<T>(def, new, self.default, |t| check(t, &old), None)
    }

    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        self.generations && new["spec"] != old["spec"]
    }

    fn derived_subresources(&self) -> &'static [&'static str] {
        if self.scales {
            &["scale"]
        } else {
            &[]
        }
    }

    fn scale(&self, obj: &Value) -> Option<ScaleView> {
        self.scales
            .then(|| replicas_view(obj, label_selector_string(obj)))
    }

    fn set_replicas(&self, obj: &mut Value, replicas: i32) {
        if self.scales {
            set_spec_replicas(obj, replicas);
        }
    }

    fn returns_deleted_object(&self) -> bool {
        false
    }
}

pub(super) fn no_status_validation<T>(_: &T, _: &T) -> Vec<FieldError> {
    Vec::new()
}

pub static DAEMON_SET: Typed<DaemonSet> = Typed {
    default: orca_api::defaults::daemon_set,
    validate: v::validate_daemon_set,
    validate_update: v::validate_daemon_set_update,
    validate_status_update: v::validate_daemon_set_status_update,
    on_create: |ds| {
        ds.metadata.generation = Some(1);
        ds.status = Some(Default::default());
    },
    generations: true,
    scales: false,
};

pub static STATEFUL_SET: Typed<StatefulSet> = Typed {
    default: orca_api::defaults::stateful_set,
    validate: v::validate_stateful_set,
    validate_update: v::validate_stateful_set_update,
    validate_status_update: v::validate_stateful_set_status_update,
    on_create: |sts| {
        sts.metadata.generation = Some(1);
        sts.status = Some(Default::default());
    },
    generations: true,
    scales: true,
};

pub static CONTROLLER_REVISION: Typed<ControllerRevision> = Typed {
    default: |_| {},
    validate: v::validate_controller_revision,
    validate_update: v::validate_controller_revision_update,
    validate_status_update: no_status_validation,
    on_create: |_| {},
    generations: false,
    scales: false,
};

pub static JOB: Typed<Job> = Typed {
    default: orca_api::defaults::job,
    validate: v::validate_job,
    validate_update: v::validate_job_update,
    validate_status_update: v::validate_job_status_update,
    on_create: |job| {
        job.metadata.generation = Some(1);
        job.status = Some(Default::default());
        generate_selector(job);
    },
    generations: true,
    scales: false,
};

pub static CRON_JOB: Typed<CronJob> = Typed {
    default: orca_api::defaults::cron_job,
    validate: v::validate_cron_job,
    validate_update: v::validate_cron_job_update,
    validate_status_update: no_status_validation,
    on_create: |cj| {
        cj.metadata.generation = Some(1);
        cj.status = Some(Default::default());
    },
    generations: true,
    scales: false,
};

pub static POD_DISRUPTION_BUDGET: Typed<PodDisruptionBudget> = Typed {
    default: |_| {},
    validate: v::validate_pod_disruption_budget,
    validate_update: v::validate_pod_disruption_budget_update,
    validate_status_update: v::validate_pod_disruption_budget_status_update,
    on_create: |pdb| {
        pdb.metadata.generation = Some(1);
        pdb.status = Some(Default::default());
    },
    generations: true,
    scales: false,
};

/// kube-apiserver's `generateSelector`: the pod template carries the Job's
/// uid and name (under the batch.kubernetes.io keys and the legacy ones)
/// and the selector picks the uid; a Job without labels of its own takes
/// its template's.
fn generate_selector(job: &mut Job) {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    if spec.manual_selector == Some(true) {
        return;
    }
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    for (key, value) in [
        (v::CONTROLLER_UID, &uid),
        (v::JOB_NAME, &name),
        (v::LEGACY_CONTROLLER_UID, &uid),
        (v::LEGACY_JOB_NAME, &name),
    ] {
        labels.insert(key.to_string(), value.clone());
    }
    let labels = labels.clone();
    spec.selector.get_or_insert_with(|| LabelSelector {
        match_labels: Some(BTreeMap::from([(v::CONTROLLER_UID.to_string(), uid)])),
        ..Default::default()
    });
    if job.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
        job.metadata.labels = Some(labels);
    }
}
