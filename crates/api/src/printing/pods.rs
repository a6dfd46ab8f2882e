//! Pod rows as Kubernetes' `printPod` makes them: READY, STATUS and
//! RESTARTS from one walk over the container statuses, then the wide
//! columns.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

use super::{age, human_duration, name_of, none_if_empty};

/// READY, STATUS and RESTARTS of a pod, computed together as Kubernetes'
/// printer does (they share the walk over container statuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    pub ready: String,
    pub status: String,
    pub restarts: String,
}

fn is_restartable_init(c: Option<&Container>) -> bool {
    c.and_then(|c| c.restart_policy.as_deref()) == Some("Always")
}

/// The pod's READY, STATUS and RESTARTS columns.
pub fn pod_summary(pod: &Pod, now: DateTime<Utc>) -> PodSummary {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.unwrap_or_default();
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let total = spec.containers.len()
        + init_specs
            .iter()
            .filter(|c| is_restartable_init(Some(c)))
            .count();
    let mut ready = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;
    let phase = status.phase.clone().unwrap_or_default();
    let mut reason = status
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| phase.clone());
    let conditions = status.conditions.clone().unwrap_or_default();
    if conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".into();
    }
    let later = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let mut initializing = false;
    for (i, cs) in status.init_container_statuses.iter().flatten().enumerate() {
        let spec_c = init_specs.iter().find(|c| c.name == cs.name);
        let sidecar = is_restartable_init(spec_c);
        restarts += i64::from(cs.restart_count);
        let finished = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
            .map(|t| t.0);
        last_restart = later(last_restart, finished);
        if sidecar {
            sidecar_restarts += i64::from(cs.restart_count);
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let state = cs.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar && cs.started == Some(true) {
            if cs.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = &state.terminated {
            reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if t.signal.unwrap_or(0) != 0 => {
                    format!("Init:Signal:{}", t.signal.unwrap_or(0))
                }
                None => format!("Init:ExitCode:{}", t.exit_code),
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(cs.restart_count);
            let finished = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.finished_at.as_ref())
                .map(|t| t.0);
            last_restart = later(last_restart, finished);
            let state = cs.state.clone().unwrap_or_default();
            let waiting_reason = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty());
            if let Some(r) = waiting_reason {
                reason = r;
            } else if let Some(t) = &state.terminated {
                reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_string(),
                    None if t.signal.unwrap_or(0) != 0 => {
                        format!("Signal:{}", t.signal.unwrap_or(0))
                    }
                    None => format!("ExitCode:{}", t.exit_code),
                };
            } else if cs.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some("NodeLost") {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };
    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts: restarts_str,
    }
}

/// The STATUS column: `Running`, `Init:0/2`, `CrashLoopBackOff`, ...
pub fn pod_status_reason(pod: &Pod, now: DateTime<Utc>) -> String {
    pod_summary(pod, now).status
}

/// The READY column, e.g. `1/2`.
pub fn pod_ready_string(pod: &Pod, now: DateTime<Utc>) -> String {
    pod_summary(pod, now).ready
}

/// The RESTARTS column, e.g. `3 (32s ago)`.
pub fn pod_restarts_string(pod: &Pod, now: DateTime<Utc>) -> String {
    pod_summary(pod, now).restarts
}

/// Pod cells: NAME READY STATUS RESTARTS AGE IP NODE NOMINATED-NODE
/// READINESS-GATES.
pub fn pod_cells(pod: &Pod, now: DateTime<Utc>) -> Vec<Value> {
    let s = pod_summary(pod, now);
    let status = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let ip = status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .map(|ip| ip.ip.as_str());
    let gates = match spec.readiness_gates.as_deref() {
        Some(g) if !g.is_empty() => {
            let conds = status.conditions.clone().unwrap_or_default();
            let ok = g
                .iter()
                .filter(|gate| {
                    conds
                        .iter()
                        .find(|c| c.type_ == gate.condition_type)
                        .is_some_and(|c| c.status == "True")
                })
                .count();
            format!("{ok}/{}", g.len())
        }
        _ => "<none>".into(),
    };
    vec![
        json!(name_of(&pod.metadata)),
        json!(s.ready),
        json!(s.status),
        json!(s.restarts),
        json!(age(pod.metadata.creation_timestamp.as_ref(), now)),
        json!(none_if_empty(ip)),
        json!(none_if_empty(spec.node_name.as_deref())),
        json!(none_if_empty(status.nominated_node_name.as_deref())),
        json!(gates),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printing::tests::{at, expected, fixture, kubectl_text};
    use crate::printing::{cells, row, table, TableOptions};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
        PodCondition, PodSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn pod_tables_match_kubectl_reference_output() {
        for (file, now, check_wide) in [
            ("a-running", at(10, 37, 55), true),
            // Its YAML was taken after the pod got its IP.
            ("b1-init-initializing", at(10, 37, 47), false),
            ("b2-init-after", at(10, 38, 25), true),
            ("c0-crash-early", at(10, 37, 47), true),
            ("c1-crashloopbackoff", at(10, 39, 0), true),
            ("d-terminating", at(10, 37, 55), true),
            ("e0-badimage-early", at(10, 37, 47), true),
            ("e1-badimage-backoff", at(10, 38, 25), true),
        ] {
            let pod = fixture(&format!("{file}.yaml"));
            let t = table("Pod", &[pod], &TableOptions::new(now));
            assert_eq!(
                kubectl_text(&t, false),
                expected(&format!("{file}.get.txt")),
                "{file}"
            );
            if check_wide {
                assert_eq!(
                    kubectl_text(&t, true),
                    expected(&format!("{file}.wide.txt")),
                    "{file} -o wide"
                );
            }
        }
    }

    #[test]
    fn pod_list_matches_kubectl_get_pods() {
        let pods: Vec<Value> = [
            "e1-badimage-backoff",
            "c1-crashloopbackoff",
            "b2-init-after",
            "a-running",
        ]
        .iter()
        .map(|f| fixture(&format!("{f}.yaml")))
        .collect();
        let t = table("Pod", &pods, &TableOptions::new(at(10, 39, 0)));
        let path = format!("{}/testdata/all-pods-t75s.txt", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        let mut sections = text
            .split("$ kubectl")
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.lines()
                    .skip(1)
                    .filter(|l| !l.is_empty())
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            });
        assert_eq!(kubectl_text(&t, false), sections.next().unwrap());
        assert_eq!(kubectl_text(&t, true), sections.next().unwrap());
    }

    #[test]
    fn reference_pod_statuses() {
        for (file, now, ready, status, restarts, age) in [
            ("a-running", at(10, 37, 55), "1/1", "Running", "0", "10s"),
            (
                "b1-init-initializing",
                at(10, 37, 47),
                "0/1",
                "Init:0/1",
                "0",
                "2s",
            ),
            (
                "b2-init-after",
                at(10, 38, 25),
                "1/1",
                "Running",
                "0",
                "40s",
            ),
            ("c0-crash-early", at(10, 37, 47), "0/1", "Error", "0", "2s"),
            (
                "c1-crashloopbackoff",
                at(10, 39, 0),
                "0/1",
                "CrashLoopBackOff",
                "3 (32s ago)",
                "75s",
            ),
            (
                "d-terminating",
                at(10, 37, 55),
                "1/1",
                "Terminating",
                "0",
                "10s",
            ),
            (
                "e0-badimage-early",
                at(10, 37, 47),
                "0/1",
                "ErrImagePull",
                "0",
                "2s",
            ),
            (
                "e1-badimage-backoff",
                at(10, 38, 25),
                "0/1",
                "ImagePullBackOff",
                "0",
                "40s",
            ),
        ] {
            let obj = fixture(&format!("{file}.yaml"));
            let cells = cells("Pod", &obj, now);
            assert_eq!(cells[1], ready, "{file} READY");
            assert_eq!(cells[2], status, "{file} STATUS");
            assert_eq!(cells[3], restarts, "{file} RESTARTS");
            assert_eq!(cells[4], age, "{file} AGE");
            assert_eq!(cells[6], "ref-node", "{file} NODE");
            assert_eq!(cells[7], "<none>");
            assert_eq!(cells[8], "<none>");
        }
        let mut unplaced = fixture("b1-init-initializing.yaml");
        unplaced["status"].as_object_mut().unwrap().remove("podIPs");
        unplaced["spec"].as_object_mut().unwrap().remove("nodeName");
        let c = cells("Pod", &unplaced, at(10, 37, 47));
        assert_eq!(
            (c[5].as_str(), c[6].as_str()),
            (Some("<none>"), Some("<none>"))
        );
        let a = cells("Pod", &fixture("a-running.yaml"), at(10, 37, 55));
        assert_eq!(a[5], "10.88.0.66");
    }

    fn status_pod(init: Vec<ContainerStatus>, main: Vec<ContainerStatus>, n_init: usize) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        let spec = p.spec.get_or_insert_with(Default::default);
        spec.containers = vec![Container {
            name: "main".into(),
            ..Default::default()
        }];
        spec.init_containers = Some(
            (0..n_init)
                .map(|i| Container {
                    name: format!("init{i}"),
                    ..Default::default()
                })
                .collect(),
        );
        let st = p.status.get_or_insert_with(Default::default);
        st.phase = Some("Pending".into());
        st.init_container_statuses = Some(init);
        st.container_statuses = Some(main);
        p
    }

    fn cs(name: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(state),
            ..Default::default()
        }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        }
    }

    fn terminated(code: i32, reason: Option<&str>, signal: Option<i32>) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: reason.map(str::to_string),
                signal,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn status_column_cases() {
        let now = at(12, 0, 0);
        let main_waiting = vec![cs("main", waiting("PodInitializing"))];
        // Second of two init containers running.
        let p = status_pod(
            vec![
                cs("init0", terminated(0, Some("Completed"), None)),
                cs("init1", ContainerState::default()),
            ],
            main_waiting.clone(),
            2,
        );
        assert_eq!(pod_status_reason(&p, now), "Init:1/2");
        let p = status_pod(
            vec![cs("init0", terminated(1, Some("Error"), None))],
            main_waiting.clone(),
            2,
        );
        assert_eq!(pod_status_reason(&p, now), "Init:Error");
        let p = status_pod(
            vec![cs("init0", terminated(3, None, None))],
            main_waiting.clone(),
            1,
        );
        assert_eq!(pod_status_reason(&p, now), "Init:ExitCode:3");
        let p = status_pod(
            vec![cs("init0", terminated(0, None, Some(9)))],
            main_waiting.clone(),
            1,
        );
        // Exit code 0 counts as done whatever the signal.
        assert_eq!(pod_status_reason(&p, now), "PodInitializing");
        let p = status_pod(
            vec![cs("init0", waiting("CrashLoopBackOff"))],
            main_waiting.clone(),
            1,
        );
        assert_eq!(pod_status_reason(&p, now), "Init:CrashLoopBackOff");
        let p = status_pod(vec![], vec![cs("main", waiting("ContainerCreating"))], 0);
        assert_eq!(pod_status_reason(&p, now), "ContainerCreating");
        let p = status_pod(
            vec![],
            vec![cs("main", terminated(137, Some("OOMKilled"), None))],
            0,
        );
        assert_eq!(pod_status_reason(&p, now), "OOMKilled");
        let p = status_pod(vec![], vec![cs("main", terminated(0, None, Some(15)))], 0);
        assert_eq!(pod_status_reason(&p, now), "Signal:15");
        let mut done = status_pod(
            vec![],
            vec![cs("main", terminated(0, Some("Completed"), None))],
            0,
        );
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(pod_status_reason(&done, now), "Completed");
        let row = row(
            "Pod",
            &serde_json::to_value(&done).unwrap(),
            &TableOptions::new(now),
        );
        assert_eq!(row["conditions"][0]["reason"], "Succeeded");
        // Plain Pending pod without statuses.
        let pending = Pod {
            spec: Some(PodSpec {
                containers: vec![Container::default()],
                ..Default::default()
            }),
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            pod_summary(&pending, now),
            PodSummary {
                ready: "0/1".into(),
                status: "Pending".into(),
                restarts: "0".into()
            }
        );
        // A deleted pod on a lost node.
        let mut lost = pending.clone();
        lost.metadata.deletion_timestamp = Some(Time(now));
        lost.status.as_mut().unwrap().reason = Some("NodeLost".into());
        assert_eq!(pod_status_reason(&lost, now), "Unknown");
        lost.metadata.deletion_timestamp = None;
        assert_eq!(pod_status_reason(&lost, now), "NodeLost");
    }

    #[test]
    fn sidecars_count_in_ready_and_completed_with_running_sidecar() {
        let now = at(12, 0, 0);
        let mut p = status_pod(vec![], vec![], 1);
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers.as_mut().unwrap()[0].restart_policy = Some("Always".into());
        let st = p.status.as_mut().unwrap();
        st.phase = Some("Running".into());
        let mut side = cs(
            "init0",
            ContainerState {
                running: Some(Default::default()),
                ..Default::default()
            },
        );
        side.started = Some(true);
        side.ready = true;
        side.restart_count = 2;
        side.last_state = Some(terminated(1, Some("Error"), None));
        side.last_state
            .as_mut()
            .unwrap()
            .terminated
            .as_mut()
            .unwrap()
            .finished_at = Some(Time(at(11, 59, 0)));
        st.init_container_statuses = Some(vec![side]);
        let mut main = cs(
            "main",
            ContainerState {
                running: Some(Default::default()),
                ..Default::default()
            },
        );
        main.ready = true;
        st.container_statuses = Some(vec![main]);
        st.conditions = Some(vec![PodCondition {
            type_: "Initialized".into(),
            status: "True".into(),
            ..Default::default()
        }]);
        let s = pod_summary(&p, now);
        assert_eq!(s.ready, "2/2");
        assert_eq!(s.status, "Running");
        assert_eq!(s.restarts, "2 (60s ago)");
    }
}
