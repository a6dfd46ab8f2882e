//! Defaults of the workload kinds (apps/v1 Deployment and ReplicaSet,
//! core/v1 ReplicationController and PodTemplate), as the v1 schemes set
//! them on every decode. Their pod templates get the scheme's pod spec
//! defaults only ([`super::template_pod_spec`]).

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{PodTemplate, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{set_str, template_pod_spec};

fn template(t: &mut PodTemplateSpec) {
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
