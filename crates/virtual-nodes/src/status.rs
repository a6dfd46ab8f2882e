//! The status a kubelet would report for a pod whose containers all
//! started and became ready at once.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// True while a bound pod has not been reported running (and is not done).
pub fn needs_status(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") | Some("Failed") => false,
        Some("Running") => status
            .and_then(|s| s.pod_ip.as_deref())
            .is_none_or(str::is_empty),
        _ => true,
    }
}

fn condition(type_: &str, previous: &[PodCondition], now: &Time) -> PodCondition {
    // Keep the transition time of a condition that already says True.
    let transition = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: type_.into(),
        status: "True".into(),
        last_transition_time: Some(transition),
        ..Default::default()
    }
}

fn container_id(pod_uid: &str, name: &str) -> String {
    format!("virtual://{pod_uid}/{name}")
}

fn running(c: &Container, pod_uid: &str, now: &Time) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        container_id: Some(container_id(pod_uid, &c.name)),
        ready: true,
        started: Some(true),
        restart_count: 0,
        state: Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(now.clone()),
            }),
            ..Default::default()
        }),
        last_state: Some(ContainerState::default()),
        ..Default::default()
    }
}

/// Marks the pod Running and Ready on `host_ip` with `pod_ip`: conditions
/// as a kubelet sets them, app (and sidecar) containers running since
/// `now`, init containers completed.
pub fn set_running(pod: &mut Pod, host_ip: Ipv4Addr, pod_ip: Ipv4Addr, now: DateTime<Utc>) {
    let now = Time(now);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.get_or_insert_with(Default::default);
    let previous = status.conditions.clone().unwrap_or_default();
    let mut conditions: Vec<PodCondition> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
    ]
    .iter()
    .map(|t| condition(t, &previous, &now))
    .collect();
    conditions.push(condition("PodScheduled", &previous, &now));
    status.conditions = Some(conditions);
    status.phase = Some("Running".into());
    status.host_ip = Some(host_ip.to_string());
    status.host_ips = Some(vec![HostIP {
        ip: host_ip.to_string(),
    }]);
    status.pod_ip = Some(pod_ip.to_string());
    status.pod_ips = Some(vec![PodIP {
        ip: pod_ip.to_string(),
    }]);
    if status.start_time.is_none() {
        status.start_time = Some(now.clone());
    }
    if status.qos_class.is_none() {
        status.qos_class = Some(orca_api::qos_class(&spec).to_string());
    }
    status.container_statuses = Some(
        spec.containers
            .iter()
            .map(|c| running(c, &uid, &now))
            .collect(),
    );
    let init = spec.init_containers.as_deref().unwrap_or_default();
    status.init_container_statuses = (!init.is_empty()).then(|| {
        init.iter()
            .map(|c| {
                if c.restart_policy.as_deref() == Some("Always") {
                    return running(c, &uid, &now);
                }
                ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 0,
                            reason: Some("Completed".into()),
                            started_at: Some(now.clone()),
                            finished_at: Some(now.clone()),
                            container_id: Some(container_id(&uid, &c.name)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    started: Some(false),
                    ..running(c, &uid, &now)
                }
            })
            .collect()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("virtual-node-0".into()),
                containers: vec![Container {
                    name: "main".into(),
                    image: Some("nginx".into()),
                    ..Default::default()
                }],
                init_containers: Some(vec![Container {
                    name: "init".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(DateTime::<Utc>::MIN_UTC)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_bound_pod_becomes_running_and_ready() {
        let mut p = pod();
        assert!(needs_status(&p));
        let now = Utc::now();
        set_running(
            &mut p,
            Ipv4Addr::new(10, 128, 0, 1),
            Ipv4Addr::new(10, 128, 0, 2),
            now,
        );
        assert!(!needs_status(&p));
        let s = p.status.as_ref().unwrap();
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.128.0.2"));
        assert_eq!(s.host_ip.as_deref(), Some("10.128.0.1"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let conds = s.conditions.as_ref().unwrap();
        let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert!(conds.iter().all(|c| c.status == "True"));
        // The scheduler's transition time survives.
        assert_eq!(
            conds[4].last_transition_time,
            Some(Time(DateTime::<Utc>::MIN_UTC))
        );
        let main = &s.container_statuses.as_ref().unwrap()[0];
        assert!(main.ready);
        assert_eq!(
            main.state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at,
            Some(Time(now))
        );
        let init = &s.init_container_statuses.as_ref().unwrap()[0];
        let done = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (done.exit_code, done.reason.as_deref()),
            (0, Some("Completed"))
        );
    }

    #[test]
    fn finished_pods_are_left_alone() {
        let mut p = pod();
        p.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!needs_status(&p));
    }
}
