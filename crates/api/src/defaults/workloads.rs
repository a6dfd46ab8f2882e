//! Defaults of the workload kinds (apps/v1 Deployment, ReplicaSet,
//! DaemonSet and StatefulSet, core/v1 ReplicationController and
//! PodTemplate), as the v1 schemes set them on every decode. Their pod templates get the scheme's pod spec
//! defaults only ([`super::template_pod_spec`]).

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy, ReplicaSet,
    RollingUpdateDaemonSet, RollingUpdateDeployment, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{PodTemplate, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{set_str, template_pod_spec};

pub(super) fn template(t: &mut PodTemplateSpec) {
    template_pod_spec(t.spec.get_or_insert_with(Default::default));
}

/// One replica, a RollingUpdate strategy with 25% surge and unavailability,
/// ten old ReplicaSets kept, a 600 s progress deadline.
pub fn deployment(d: &mut Deployment) {
    let spec = d.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    set_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        rolling
            .max_unavailable
            .get_or_insert_with(|| IntOrString::String("25%".into()));
        rolling
            .max_surge
            .get_or_insert_with(|| IntOrString::String("25%".into()));
    }
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    template(&mut spec.template);
}

/// One replica.
pub fn replica_set(rs: &mut ReplicaSet) {
    let spec = rs.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    if let Some(t) = spec.template.as_mut() {
        template(t);
    }
}

/// One replica; the selector and the controller's own labels default to
/// the template's labels.
pub fn replication_controller(rc: &mut ReplicationController) {
    let spec = rc.spec.get_or_insert_with(Default::default);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .filter(|l| !l.is_empty());
    if let Some(labels) = template_labels {
        if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
            spec.selector = Some(labels.clone());
        }
        if rc.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            rc.metadata.labels = Some(labels);
        }
    }
    spec.replicas.get_or_insert(1);
    if let Some(t) = spec.template.as_mut() {
        template(t);
    }
}

/// A RollingUpdate strategy replacing one pod at a time without surge, ten
/// old revisions kept.
pub fn daemon_set(ds: &mut DaemonSet) {
    let spec = ds.spec.get_or_insert_with(Default::default);
    let strategy = spec
        .update_strategy
        .get_or_insert_with(DaemonSetUpdateStrategy::default);
    set_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
        rolling.max_surge.get_or_insert(IntOrString::Int(0));
    }
    spec.revision_history_limit.get_or_insert(10);
    template(&mut spec.template);
}

/// OrderedReady pod management, a RollingUpdate strategy from partition 0,
/// claims retained, one replica, ten old revisions kept.
pub fn stateful_set(sts: &mut StatefulSet) {
    let spec = sts.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec
        .update_strategy
        .get_or_insert_with(StatefulSetUpdateStrategy::default);
    if strategy.type_.as_deref().unwrap_or("").is_empty() {
        strategy.type_ = Some("RollingUpdate".into());
        strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        if let Some(r) = strategy.rolling_update.as_mut() {
            r.partition.get_or_insert(0);
        }
    }
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    set_str(&mut retention.when_deleted, "Retain");
    set_str(&mut retention.when_scaled, "Retain");
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    template(&mut spec.template);
}

pub fn pod_template(pt: &mut PodTemplate) {
    if let Some(t) = pt.template.as_mut() {
        template(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_deployment_gets_the_reference_defaults() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}
        }))
        .unwrap();
        deployment(&mut d);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(v["spec"]["progressDeadlineSeconds"], 600);
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["securityContext"], json!({}));
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["containers"][0]["resources"], json!({}));
        // What admission adds to pods is not in templates.
        assert!(pod.get("tolerations").is_none());
        assert!(pod.get("serviceAccountName").is_none());
        assert!(pod.get("enableServiceLinks").is_none());
    }

    #[test]
    fn a_recreate_deployment_gets_no_rolling_parameters() {
        let mut d: Deployment =
            serde_json::from_value(json!({"spec": {"strategy": {"type": "Recreate"}}})).unwrap();
        deployment(&mut d);
        assert!(d.spec.unwrap().strategy.unwrap().rolling_update.is_none());
    }

    #[test]
    fn a_daemon_set_and_a_stateful_set_get_the_reference_defaults() {
        let mut ds: DaemonSet = serde_json::from_value(json!({"spec": {}})).unwrap();
        daemon_set(&mut ds);
        let v = serde_json::to_value(&ds).unwrap();
        assert_eq!(
            v["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
        );
        assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
        let mut sts: StatefulSet = serde_json::from_value(json!({"spec": {}})).unwrap();
        stateful_set(&mut sts);
        let v = serde_json::to_value(&sts).unwrap();
        assert_eq!(v["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            v["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            v["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(v["spec"]["replicas"], 1);
    }

    #[test]
    fn a_replication_controller_selects_its_template_labels() {
        let mut rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "legacy"},
            "spec": {"template": {"metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }))
        .unwrap();
        replication_controller(&mut rc);
        let v = serde_json::to_value(&rc).unwrap();
        assert_eq!(v["spec"]["selector"], json!({"app": "legacy"}));
        assert_eq!(v["metadata"]["labels"], json!({"app": "legacy"}));
        assert_eq!(v["spec"]["replicas"], 1);
    }
}
