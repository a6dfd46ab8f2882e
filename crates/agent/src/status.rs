//! Pod status as a pure function of the pod and what the agent observed.
//!
//! The worker gathers runtime facts and its own decisions (back-offs, probe
//! results) into a [`PodObservation`]; [`compute`] turns that into the
//! `PodStatus` shape the kubelet writes, so the shape is unit-testable against
//! real Kubernetes output without containers or an API server.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodSpec, PodStatus,
    VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use orca_runtime::ContainerState as RtState;

/// What the worker knows about one container of the pod.
#[derive(Clone, Debug, Default)]
pub struct ContainerObservation {
    /// The newest attempt the runtime has for this container.
    pub current: Option<orca_runtime::ContainerStatus>,
    /// The attempt before it, shown as `lastState`.
    pub previous: Option<orca_runtime::ContainerStatus>,
    /// A waiting reason and message the worker decided on (ErrImagePull,
    /// CrashLoopBackOff, CreateContainerError...), shown instead of the
    /// current attempt's terminated state.
    pub waiting: Option<(String, String)>,
    /// Result of the readiness probe (true when the container has none).
    pub ready: bool,
    /// Whether the startup probe passed (true when the container has none).
    pub started: bool,
}

/// Everything [`compute`] needs besides the pod itself.
#[derive(Clone, Debug, Default)]
pub struct PodObservation {
    pub host_ip: String,
    pub pod_ip: Option<IpAddr>,
    /// The sandbox exists and has its network.
    pub sandbox_ready: bool,
    /// When the agent first accepted the pod.
    pub start_time: Option<SystemTime>,
    pub init: BTreeMap<String, ContainerObservation>,
    pub containers: BTreeMap<String, ContainerObservation>,
    pub ephemeral: BTreeMap<String, ContainerObservation>,
    /// A terminal verdict the worker reached by itself (e.g. the active
    /// deadline): (phase, reason, message).
    pub terminal: Option<(String, String, String)>,
}

pub fn time(t: SystemTime) -> Time {
    Time(DateTime::<Utc>::from(t))
}

pub fn container_id(id: &str) -> String {
    format!("orca://{id}")
}

fn terminated(c: &orca_runtime::ContainerStatus) -> Option<ContainerStateTerminated> {
    match &c.state {
        RtState::Exited {
            exit_code,
            reason,
            started_at,
            finished_at,
            message,
        } => Some(ContainerStateTerminated {
            container_id: Some(container_id(&c.id)),
            exit_code: *exit_code,
            reason: Some(reason.clone()),
            message: message.clone().filter(|m| !m.is_empty()),
            started_at: Some(time(*started_at)),
            finished_at: Some(time(*finished_at)),
            signal: None,
        }),
        _ => None,
    }
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: (!message.is_empty()).then(|| message.to_string()),
        }),
        ..Default::default()
    }
}

fn container_status(
    spec: &Container,
    obs: Option<&ContainerObservation>,
    default_reason: &str,
    is_init: bool,
) -> ContainerStatus {
    let empty = ContainerObservation::default();
    let obs = obs.unwrap_or(&empty);
    let mut status = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        last_state: Some(ContainerState::default()),
        state: Some(waiting(default_reason, "")),
        volume_mounts: volume_mount_statuses(spec),
        ..Default::default()
    };
    if let Some(prev) = &obs.previous {
        if let Some(t) = terminated(prev) {
            status.last_state = Some(ContainerState {
                terminated: Some(t),
                ..Default::default()
            });
        }
    }
    if let Some(cur) = &obs.current {
        status.container_id = Some(container_id(&cur.id));
        // The image the container runs, which lags the spec until a
        // changed image's restart.
        status.image = cur.image.clone();
        if !cur.image_id.is_empty() {
            status.image_id = cur.image_id.clone();
        }
        status.restart_count = cur.attempt as i32;
        match &cur.state {
            RtState::Created => {}
            RtState::Running { started_at } => {
                status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(time(*started_at)),
                    }),
                    ..Default::default()
                });
                status.started = Some(obs.started);
                status.ready = !is_init && obs.started && obs.ready;
            }
            RtState::Exited { exit_code, .. } => {
                let t = terminated(cur);
                if obs.waiting.is_some() {
                    // Waiting to be restarted: the attempt that ended is the last state.
                    status.last_state = Some(ContainerState {
                        terminated: t,
                        ..Default::default()
                    });
                } else {
                    status.state = Some(ContainerState {
                        terminated: t,
                        ..Default::default()
                    });
                    status.ready = is_init && *exit_code == 0;
                }
            }
        }
    }
    if let Some((reason, message)) = &obs.waiting {
        status.state = Some(waiting(reason, message));
        status.ready = false;
        status.started = Some(false);
    }
    status
}

fn volume_mount_statuses(spec: &Container) -> Option<Vec<VolumeMountStatus>> {
    let mounts = spec.volume_mounts.as_ref()?;
    if mounts.is_empty() {
        return None;
    }
    Some(
        mounts
            .iter()
            .map(|m| {
                let read_only = m.read_only.unwrap_or(false);
                VolumeMountStatus {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    read_only: read_only.then_some(true),
                    // Only read-only mounts report their recursive mode.
                    recursive_read_only: read_only.then(|| {
                        if m.recursive_read_only.as_deref() == Some("Enabled") {
                            "Enabled".to_string()
                        } else {
                            "Disabled".to_string()
                        }
                    }),
                }
            })
            .collect(),
    )
}

fn is_terminated_with(s: &ContainerStatus, ok: bool) -> bool {
    s.state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .is_some_and(|t| (t.exit_code == 0) == ok)
}

fn is_running(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.running.is_some())
}

fn has_last_termination(s: &ContainerStatus) -> bool {
    s.last_state
        .as_ref()
        .is_some_and(|st| st.terminated.is_some())
}

/// Kubernetes' phase rules (kubelet `getPhase`).
pub fn phase(
    restart_policy: &str,
    init: &[ContainerStatus],
    containers: &[ContainerStatus],
) -> &'static str {
    for s in init {
        if is_terminated_with(s, true) {
            continue;
        }
        if is_terminated_with(s, false) && restart_policy == "Never" {
            return "Failed";
        }
        if s.state
            .as_ref()
            .and_then(|st| st.waiting.as_ref())
            .is_some()
            && has_last_termination(s)
            && restart_policy == "Never"
        {
            return "Failed";
        }
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in containers {
        if is_running(s) {
            running += 1;
        } else if let Some(t) = s.state.as_ref().and_then(|st| st.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if has_last_termination(s) {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    old: &[PodCondition],
    now: SystemTime,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(last_transition_time),
        last_probe_time: None,
    }
}

/// Why the pod's readiness gates hold it back, in the kubelet's words
/// (`None` when every gate's condition, set by whoever owns it, is True).
fn unready_gates(spec: &PodSpec, conditions: &[PodCondition]) -> Option<String> {
    let messages: Vec<String> = spec
        .readiness_gates
        .iter()
        .flatten()
        .filter_map(
            |g| match conditions.iter().find(|c| c.type_ == g.condition_type) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate \"{}\" does not exist.",
                    g.condition_type
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                    g.condition_type, c.status
                )),
                Some(_) => None,
            },
        )
        .collect();
    (!messages.is_empty()).then(|| messages.join(", "))
}

/// Go's `%v` of a string slice: `[a b]`.
fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

/// The pod's status as the kubelet would write it. `now` stamps condition
/// transitions; conditions that did not change keep their old time.
pub fn compute(pod: &Pod, obs: &PodObservation, now: SystemTime) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let default_reason = if init_specs.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };

    let init: Vec<ContainerStatus> = init_specs
        .iter()
        .map(|c| container_status(c, obs.init.get(&c.name), default_reason, true))
        .collect();
    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, obs.containers.get(&c.name), default_reason, false))
        .collect();

    // Never ready: they serve no traffic and do not decide the phase.
    let ephemeral: Vec<ContainerStatus> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|ec| {
            let c = orca_api::ephemeral_as_container(ec);
            let mut s = container_status(&c, obs.ephemeral.get(&ec.name), default_reason, true);
            s.ready = false;
            s
        })
        .collect();

    let mut phase = phase(restart_policy, &init, &containers).to_string();
    let (mut reason, mut message) = (None, None);
    if let Some((p, r, m)) = &obs.terminal {
        phase = p.clone();
        reason = Some(r.clone());
        message = Some(m.clone());
    }
    let terminal = phase == "Succeeded" || phase == "Failed";

    let incomplete: Vec<String> = init
        .iter()
        .filter(|s| !is_terminated_with(s, true))
        .map(|s| s.name.clone())
        .collect();
    let unready: Vec<String> = containers
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.clone())
        .collect();

    let ready_to_start = condition(
        "PodReadyToStartContainers",
        obs.sandbox_ready,
        None,
        None,
        &old_conditions,
        now,
    );
    let initialized = if phase == "Succeeded" && incomplete.is_empty() {
        condition(
            "Initialized",
            true,
            Some("PodCompleted"),
            None,
            &old_conditions,
            now,
        )
    } else if incomplete.is_empty() {
        condition("Initialized", true, None, None, &old_conditions, now)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                go_list(&incomplete)
            )),
            &old_conditions,
            now,
        )
    };
    let readiness = |type_: &str| {
        if terminal {
            let r = if phase == "Succeeded" {
                "PodCompleted"
            } else {
                "PodFailed"
            };
            condition(type_, false, Some(r), None, &old_conditions, now)
        } else if !incomplete.is_empty() || !unready.is_empty() {
            let (r, names) = if unready.is_empty() {
                ("ContainersNotInitialized", &incomplete)
            } else {
                ("ContainersNotReady", &unready)
            };
            let what = if unready.is_empty() {
                "containers with incomplete status"
            } else {
                "containers with unready status"
            };
            condition(
                type_,
                false,
                Some(r),
                Some(format!("{what}: {}", go_list(names))),
                &old_conditions,
                now,
            )
        } else {
            condition(type_, true, None, None, &old_conditions, now)
        }
    };
    let containers_ready = readiness("ContainersReady");
    let ready = if containers_ready.status == "True" {
        match unready_gates(&spec, &old_conditions) {
            Some(message) => condition(
                "Ready",
                false,
                Some("ReadinessGatesNotReady"),
                Some(message),
                &old_conditions,
                now,
            ),
            None => readiness("Ready"),
        }
    } else {
        readiness("Ready")
    };
    let scheduled = old_conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .cloned()
        .unwrap_or_else(|| condition("PodScheduled", true, None, None, &old_conditions, now));

    let mut conditions = vec![
        ready_to_start,
        initialized,
        ready,
        containers_ready,
        scheduled,
    ];
    // Conditions written by others (DisruptionTarget, readiness gates) stay.
    for c in &old_conditions {
        if !conditions.iter().any(|k| k.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }

    let host_network = spec.host_network.unwrap_or(false);
    let pod_ip = if host_network {
        Some(obs.host_ip.clone())
    } else {
        obs.pod_ip.map(|ip| ip.to_string())
    }
    .or(old.pod_ip.clone());

    PodStatus {
        phase: Some(phase),
        reason,
        message,
        conditions: Some(conditions),
        host_ip: Some(obs.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: obs.host_ip.clone(),
        }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: old.start_time.clone().or_else(|| obs.start_time.map(time)),
        qos_class: Some(crate::resources::qos_class(&spec).to_string()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(containers),
        ephemeral_container_statuses: (!ephemeral.is_empty()).then_some(ephemeral),
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

/// Serializes a status for `pods/status` with the `lastProbeTime: null`
/// Kubernetes writes on every pod condition.
pub fn to_json(status: &PodStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if let Some(conds) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for c in conds {
            if let Some(obj) = c.as_object_mut() {
                obj.entry("lastProbeTime")
                    .or_insert(serde_json::Value::Null);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    const REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/");

    fn load(name: &str) -> Pod {
        let text = std::fs::read_to_string(format!("{REF}{name}")).expect("reference file");
        serde_yaml::from_str(&text).expect("reference pod parses")
    }

    fn at(rfc: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(rfc)
            .unwrap()
            .with_timezone(&Utc)
            .into()
    }

    fn rt(id: &str, attempt: u32, state: RtState, image: &str) -> orca_runtime::ContainerStatus {
        orca_runtime::ContainerStatus {
            id: id.to_string(),
            pod_uid: "uid".into(),
            name: "main".into(),
            attempt,
            state,
            image: image.into(),
            image_id: "sha256:47be77334f62381b27a8d20557367e162aca535899991df253951160de7776c1"
                .into(),
            log_path: PathBuf::new(),
        }
    }

    /// Replaces the containerd ids of the reference with ours, and keeps only
    /// what the kubelet writes (the reference pods also carry the scheduler's
    /// PodScheduled condition, which [`compute`] keeps from the old status).
    fn expected(pod: &Pod) -> serde_json::Value {
        let text = serde_json::to_string(&to_json(pod.status.as_ref().unwrap()))
            .unwrap()
            .replace("containerd://", "orca://");
        serde_json::from_str(&text).unwrap()
    }

    fn input(pod: &Pod) -> Pod {
        // The agent sees the pod with the conditions written before (here:
        // the reference's own, so unchanged transitions keep their time).
        pod.clone()
    }

    fn ref_running_obs(pod: &Pod, id: &str) -> PodObservation {
        let st = pod.status.as_ref().unwrap();
        let cs = &st.container_statuses.as_ref().unwrap()[0];
        let started = cs.state.as_ref().unwrap().running.as_ref().unwrap();
        let mut obs = PodObservation {
            host_ip: "10.87.0.1".into(),
            pod_ip: st.pod_ip.as_ref().map(|ip| ip.parse().unwrap()),
            sandbox_ready: true,
            start_time: None,
            ..Default::default()
        };
        obs.containers.insert(
            "main".into(),
            ContainerObservation {
                current: Some(rt(
                    id,
                    0,
                    RtState::Running {
                        started_at: started.started_at.clone().unwrap().0.into(),
                    },
                    "kref.local/busybox:1.35",
                )),
                ready: true,
                started: true,
                ..Default::default()
            },
        );
        obs
    }

    #[test]
    fn running_pod_matches_kubernetes() {
        let pod = load("a-running.yaml");
        let obs = ref_running_obs(
            &pod,
            "4890a1aa79495631ebecc6262f27283ddb5d0e7abe76e9ea082b027eb9fad7cd",
        );
        let got = to_json(&compute(&input(&pod), &obs, at("2026-11-28T10:40:00Z")));
        assert_eq!(got, expected(&pod));
    }

    #[test]
    fn ephemeral_containers_are_reported_apart_and_never_ready() {
        let mut pod = load("a-running.yaml");
        let spec = pod.spec.as_mut().unwrap();
        spec.ephemeral_containers = Some(vec![
            serde_json::from_value(serde_json::json!({"name": "dbg", "image": "busybox"})).unwrap(),
            serde_json::from_value(serde_json::json!({"name": "new", "image": "busybox"})).unwrap(),
        ]);
        let mut obs = ref_running_obs(&pod, "main-id");
        let mut dbg = rt(
            "dbg-id",
            0,
            RtState::Running {
                started_at: at("2026-11-28T10:39:00Z"),
            },
            "busybox",
        );
        dbg.name = "dbg".into();
        obs.ephemeral.insert(
            "dbg".into(),
            ContainerObservation {
                current: Some(dbg),
                started: true,
                ..Default::default()
            },
        );
        let with = compute(&input(&pod), &obs, at("2026-11-28T10:40:00Z"));
        let eph = with.ephemeral_container_statuses.as_ref().unwrap();
        assert_eq!(eph.len(), 2);
        assert_eq!(eph[0].name, "dbg");
        assert!(eph[0].state.as_ref().unwrap().running.is_some());
        assert!(!eph[0].ready);
        assert_eq!(eph[0].container_id.as_deref(), Some("orca://dbg-id"));
        let waiting = eph[1].state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
        // Phase and conditions are the app containers' alone.
        pod.spec.as_mut().unwrap().ephemeral_containers = None;
        let without = compute(&input(&pod), &obs, at("2026-11-28T10:40:00Z"));
        assert_eq!(with.phase, without.phase);
        assert_eq!(with.conditions, without.conditions);
    }

    #[test]
    fn terminating_pod_status_is_unchanged_until_containers_stop() {
        let pod = load("d-terminating.yaml");
        let obs = ref_running_obs(
            &pod,
            "d8a501151cad39bf294517afc3bb1c2c8b3ff7fd4f832da28c07efaa4c5051f6",
        );
        let got = to_json(&compute(&input(&pod), &obs, at("2026-11-28T10:40:00Z")));
        assert_eq!(got, expected(&pod));
    }

    #[test]
    fn initializing_pod_matches_kubernetes() {
        let pod = load("b1-init-initializing.yaml");
        let mut obs = PodObservation {
            host_ip: "10.87.0.1".into(),
            pod_ip: Some("10.88.0.67".parse().unwrap()),
            sandbox_ready: true,
            ..Default::default()
        };
        let mut init = rt(
            "9ec22da56efbfe9f90cc4d8595bf25b373ad3d166e4d3131386776e220051906",
            0,
            RtState::Running {
                started_at: at("2026-11-28T10:37:46Z"),
            },
            "kref.local/busybox:1.35",
        );
        init.name = "init".into();
        obs.init.insert(
            "init".into(),
            ContainerObservation {
                current: Some(init),
                ready: true,
                started: true,
                ..Default::default()
            },
        );
        let got = to_json(&compute(&input(&pod), &obs, at("2026-11-28T10:37:50Z")));
        assert_eq!(got, expected(&pod));
    }

    #[test]
    fn initialized_pod_matches_kubernetes_with_new_transition_times() {
        // Start from the initializing pod; the new conditions take `now`.
        let before = load("b1-init-initializing.yaml");
        let after = load("b2-init-after.yaml");
        let mut obs = PodObservation {
            host_ip: "10.87.0.1".into(),
            pod_ip: Some("10.88.0.67".parse().unwrap()),
            sandbox_ready: true,
            ..Default::default()
        };
        let mut init = rt(
            "9ec22da56efbfe9f90cc4d8595bf25b373ad3d166e4d3131386776e220051906",
            0,
            RtState::Exited {
                exit_code: 0,
                reason: "Completed".into(),
                started_at: at("2026-11-28T10:37:46Z"),
                finished_at: at("2026-11-28T10:38:11Z"),
                message: None,
            },
            "kref.local/busybox:1.35",
        );
        init.name = "init".into();
        obs.init.insert(
            "init".into(),
            ContainerObservation {
                current: Some(init),
                ..Default::default()
            },
        );
        obs.containers.insert(
            "main".into(),
            ContainerObservation {
                current: Some(rt(
                    "91c567a00acac6bc5ad970347bdc9d55ca8e46360650924b4f54a55a3220b2bc",
                    0,
                    RtState::Running {
                        started_at: at("2026-11-28T10:38:12Z"),
                    },
                    "kref.local/busybox:1.35",
                )),
                ready: true,
                started: true,
                ..Default::default()
            },
        );
        // Initialized flipped at :12, Ready at :13: two syncs.
        let mut step = before.clone();
        let mut obs_init_only = obs.clone();
        obs_init_only.containers.clear();
        step.status = Some(compute(&step, &obs_init_only, at("2026-11-28T10:38:12Z")));
        let got = to_json(&compute(&step, &obs, at("2026-11-28T10:38:13Z")));
        assert_eq!(got, expected(&after));
    }

    fn crash_obs(attempt: u32, waiting: Option<(String, String)>) -> PodObservation {
        let mut obs = PodObservation {
            host_ip: "10.87.0.1".into(),
            pod_ip: Some("10.88.0.68".parse().unwrap()),
            sandbox_ready: true,
            ..Default::default()
        };
        let (id, s, f) = if attempt == 0 {
            (
                "32e092d217f7a8cb1d47a8d8d4e3dedfba3e8259c583ee85e505bfaf39629b06",
                "2026-11-28T10:37:46Z",
                "2026-11-28T10:37:46Z",
            )
        } else {
            (
                "5f6104bdb777a0f79df5dc67b49a184426baecdd5e8784723599365200d0612f",
                "2026-11-28T10:38:28Z",
                "2026-11-28T10:38:28Z",
            )
        };
        obs.containers.insert(
            "main".into(),
            ContainerObservation {
                current: Some(rt(
                    id,
                    attempt,
                    RtState::Exited {
                        exit_code: 1,
                        reason: "Error".into(),
                        started_at: at(s),
                        finished_at: at(f),
                        message: None,
                    },
                    "kref.local/busybox:1.35",
                )),
                waiting,
                ready: true,
                started: true,
                ..Default::default()
            },
        );
        obs
    }

    #[test]
    fn just_crashed_pod_matches_kubernetes() {
        let pod = load("c0-crash-early.yaml");
        let got = to_json(&compute(
            &input(&pod),
            &crash_obs(0, None),
            at("2026-11-28T10:37:47Z"),
        ));
        assert_eq!(got, expected(&pod));
    }

    #[test]
    fn crash_loop_pod_matches_kubernetes() {
        let pod = load("c1-crashloopbackoff.yaml");
        let waiting = (
            "CrashLoopBackOff".to_string(),
            crate::backoff::crash_loop_message(Duration::from_secs(40), "main", &pod),
        );
        let got = to_json(&compute(
            &input(&pod),
            &crash_obs(3, Some(waiting)),
            at("2026-11-28T10:39:00Z"),
        ));
        assert_eq!(got, expected(&pod));
    }

    #[test]
    fn bad_image_pods_match_kubernetes() {
        for (file, reason) in [
            ("e0-badimage-early.yaml", "ErrImagePull"),
            ("e1-badimage-backoff.yaml", "ImagePullBackOff"),
        ] {
            let pod = load(file);
            let st = pod.status.as_ref().unwrap();
            let w = st.container_statuses.as_ref().unwrap()[0]
                .state
                .as_ref()
                .unwrap()
                .waiting
                .clone()
                .unwrap();
            assert_eq!(w.reason.as_deref(), Some(reason));
            let mut obs = PodObservation {
                host_ip: "10.87.0.1".into(),
                pod_ip: Some("10.88.0.70".parse().unwrap()),
                sandbox_ready: true,
                ..Default::default()
            };
            obs.containers.insert(
                "main".into(),
                ContainerObservation {
                    waiting: Some((reason.to_string(), w.message.clone().unwrap())),
                    ..Default::default()
                },
            );
            let got = to_json(&compute(&input(&pod), &obs, at("2026-11-28T10:40:00Z")));
            assert_eq!(got, expected(&pod), "{file}");
        }
    }

    #[test]
    fn phases_follow_restart_policy() {
        let exited = |code: i32| ContainerStatus {
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(phase("Never", &[], &[exited(0)]), "Succeeded");
        assert_eq!(phase("Never", &[], &[exited(1)]), "Failed");
        assert_eq!(phase("OnFailure", &[], &[exited(0)]), "Succeeded");
        assert_eq!(phase("OnFailure", &[], &[exited(1)]), "Running");
        assert_eq!(phase("Always", &[], &[exited(0)]), "Running");
        assert_eq!(phase("Never", &[exited(1)], &[exited(0)]), "Failed");
        assert_eq!(phase("Always", &[exited(1)], &[]), "Pending");
        assert_eq!(
            phase("Always", &[], &[ContainerStatus::default()]),
            "Pending"
        );
    }

    #[test]
    fn succeeded_pod_reports_completed_conditions() {
        let mut pod = load("a-running.yaml");
        pod.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        let mut obs = ref_running_obs(&pod, "abc");
        let c = obs.containers.get_mut("main").unwrap();
        c.current.as_mut().unwrap().state = RtState::Exited {
            exit_code: 0,
            reason: "Completed".into(),
            started_at: at("2026-11-28T10:37:46Z"),
            finished_at: at("2026-11-28T10:37:48Z"),
            message: None,
        };
        obs.sandbox_ready = false;
        let st = compute(&pod, &obs, at("2026-11-28T10:37:49Z"));
        assert_eq!(st.phase.as_deref(), Some("Succeeded"));
        let conds = st.conditions.unwrap();
        let get = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get("Ready").reason.as_deref(), Some("PodCompleted"));
        assert_eq!(get("Ready").status, "False");
        assert_eq!(get("Initialized").reason.as_deref(), Some("PodCompleted"));
        assert_eq!(get("PodReadyToStartContainers").status, "False");
    }

    #[test]
    fn readiness_gates_hold_ready_until_their_conditions_are_true() {
        let mut pod = load("a-running.yaml");
        pod.spec.as_mut().unwrap().readiness_gates = Some(vec![
            k8s_openapi::api::core::v1::PodReadinessGate {
                condition_type: "example.com/lb".into(),
            },
            k8s_openapi::api::core::v1::PodReadinessGate {
                condition_type: "example.com/dns".into(),
            },
        ]);
        let obs = ref_running_obs(&pod, "abc");
        let now = at("2026-11-28T10:40:00Z");
        let get = |st: &PodStatus, t: &str| {
            st.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == t)
                .unwrap()
                .clone()
        };
        let gate = |t: &str, status: &str| PodCondition {
            type_: t.into(),
            status: status.into(),
            ..Default::default()
        };
        let mut input = input(&pod);
        let conds = input
            .status
            .as_mut()
            .unwrap()
            .conditions
            .get_or_insert_default();
        conds.push(gate("example.com/lb", "False"));

        let st = compute(&input, &obs, now);
        let ready = get(&st, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some(
                "the status of pod readiness gate \"example.com/lb\" is not \"True\", but False, \
                 corresponding condition of pod readiness gate \"example.com/dns\" does not exist."
            )
        );
        // The containers are ready all the same, and the gates' own
        // conditions are kept as their owner wrote them.
        assert_eq!(get(&st, "ContainersReady").status, "True");
        assert_eq!(get(&st, "example.com/lb").status, "False");

        let conds = input.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conds.retain(|c| !c.type_.starts_with("example.com/"));
        conds.push(gate("example.com/lb", "True"));
        conds.push(gate("example.com/dns", "True"));
        let st = compute(&input, &obs, now);
        assert_eq!(get(&st, "Ready").status, "True");
        assert_eq!(get(&st, "Ready").reason, None);
    }
}
