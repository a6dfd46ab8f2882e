//! One worker per pod: an explicit state machine (Sandbox -> Init(i) ->
//! Running -> Terminal, and Terminating from any state) driven by the pod
//! object, runtime observations and probe results. Workers share nothing
//! but the API client and the runtime, so pods never wait for each other.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use orca_runtime::{
    ContainerConfig, ContainerState as Rt, ContainerStatus, FsGroupChangePolicy, Mount,
    SeccompProfile, SecurityConfig,
};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::backoff::{self, Backoff};
use crate::events::{field_path, Type};
use crate::probe::{self, Kind, Tracker};
use crate::status::{self, ContainerObservation, PodObservation};
use crate::Ctx;

mod containers;
mod ephemeral;
mod probes;
mod report;
mod sandbox;
mod termination;

use containers::InitStep;

/// How often a worker looks at its running containers when nothing else
/// wakes it.
const POLL_RUNNING: Duration = Duration::from_secs(1);
/// Init containers gate the pod's start: look more often.
const POLL_INIT: Duration = Duration::from_millis(100);
/// A terminal pod only waits for its deletion.
const IDLE: Duration = Duration::from_secs(60);
/// Retry delay for volume, sandbox and container-config failures.
const RETRY: Duration = Duration::from_secs(5);
/// How often configMap, secret, downwardAPI and projected volumes are
/// re-read and rewritten when changed. Changes normally arrive sooner: the
/// agent watches configMaps and secrets and wakes the pods that show them,
/// and the pod's own labels and annotations come on the pod watch. The
/// resync bounds the delay when a watch event is missed (a reconnect) and
/// refreshes what has no watch (service account tokens). The kubelet's
/// pod sync period is 1 min; 10 s costs one GET per referenced object per
/// pod, cheap for a node's worth of pods.
const VOLUME_RESYNC: Duration = Duration::from_secs(10);
/// The kubelet's floor for a pod's grace period.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// Default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: i64 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Resolving volumes and creating the sandbox.
    Sandbox,
    /// Running init container `i`, each to success before the next.
    Init(usize),
    /// App containers started and kept running per restartPolicy.
    Running,
    /// Every container finished for good, or the pod failed.
    Terminal,
}

struct ProbeResult {
    container: String,
    id: String,
    kind: Kind,
    result: Result<String, String>,
}

/// Per-container bookkeeping the runtime does not keep.
#[derive(Default)]
struct Slot {
    crash: Backoff,
    pull: Backoff,
    pull_error: String,
    /// The image `pull` and `pull_error` are about: a new image (a fixed
    /// typo) gets its own back-off, as the kubelet keys it by image.
    pull_image: String,
    waiting: Option<(String, String)>,
    /// Probes run for this container id.
    probed_id: Option<String>,
    probe_tasks: Vec<AbortHandle>,
    trackers: HashMap<Kind, Tracker>,
    ready: bool,
    started: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stop_probes();
    }
}

impl Slot {
    fn stop_probes(&mut self) {
        for t in self.probe_tasks.drain(..) {
            t.abort();
        }
        self.probed_id = None;
        self.trackers.clear();
    }

    fn waiting_reason(&self) -> Option<&str> {
        self.waiting.as_ref().map(|(r, _)| r.as_str())
    }
}

struct Worker {
    ctx: Arc<Ctx>,
    uid: String,
    pod: Pod,
    rx: watch::Receiver<Option<Pod>>,
    /// The pod object is gone from the API (force deletion).
    gone: bool,
    state: State,
    pod_ip: Option<IpAddr>,
    sandbox_ready: bool,
    start_time: SystemTime,
    terminal: Option<(String, String, String)>,
    slots: HashMap<String, Slot>,
    observed: Vec<ContainerStatus>,
    /// `observed` was filled from the runtime's full list.
    listed: bool,
    /// Log tails standing in for missing termination messages, by container id.
    fallback: HashMap<String, String>,
    probe_tx: mpsc::UnboundedSender<ProbeResult>,
    probe_rx: mpsc::UnboundedReceiver<ProbeResult>,
    tokens: crate::resolve::TokenCache,
    /// A configMap or secret the volumes show changed.
    poke: Arc<tokio::sync::Notify>,
    /// When the API-data volumes were last written.
    volumes_synced: Option<Instant>,
    /// The last failure to refresh them, reported once.
    volume_error: Option<String>,
    /// [`Worker::sync_key`] at the last sync: a pod update that changes it
    /// needs a sync now rather than at the next poll.
    synced_key: String,
}

fn rv(pod: &Pod) -> Option<u64> {
    pod.metadata.resource_version.as_deref()?.parse().ok()
}

/// Takes a pod from the watch unless it is older than the one we hold (our
/// own status writes return newer objects than the watch may still carry).
fn accept(current: &mut Pod, new: Pod) {
    match (rv(current), rv(&new)) {
        (Some(a), Some(b)) if b < a => {}
        _ => *current = new,
    }
}

fn deleting(pod: &Pod, gone: bool) -> bool {
    gone || pod.metadata.deletion_timestamp.is_some()
}

/// Runs `fut` unless the pod is deleted meanwhile; keeps `pod` current.
async fn unless_deleted<T>(
    rx: &mut watch::Receiver<Option<Pod>>,
    pod: &mut Pod,
    gone: &mut bool,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(fut);
    loop {
        if deleting(pod, *gone) {
            return None;
        }
        tokio::select! {
            out = &mut fut => return Some(out),
            changed = rx.changed() => match changed {
                Ok(()) => match rx.borrow_and_update().clone() {
                    Some(p) => accept(pod, p),
                    None => *gone = true,
                },
                // The agent is stopping: leave the pod as it is.
                Err(_) => std::future::pending::<()>().await,
            },
        }
    }
}

pub(crate) async fn run(
    ctx: Arc<Ctx>,
    pod: Pod,
    rx: watch::Receiver<Option<Pod>>,
    poke: Arc<tokio::sync::Notify>,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let key = (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    if let Ok(mut pods) = ctx.pods.lock() {
        pods.insert(key.clone(), uid.clone());
    }
    let (probe_tx, probe_rx) = mpsc::unbounded_channel();
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| SystemTime::from(t.0))
        .unwrap_or_else(SystemTime::now);
    let mut w = Worker {
        ctx: ctx.clone(),
        uid: uid.clone(),
        pod,
        rx,
        gone: false,
        state: State::Sandbox,
        pod_ip: None,
        sandbox_ready: false,
        start_time,
        terminal: None,
        slots: HashMap::new(),
        observed: Vec::new(),
        listed: false,
        fallback: HashMap::new(),
        probe_tx,
        probe_rx,
        tokens: crate::resolve::TokenCache::new(ctx.config.token_max_age),
        poke,
        volumes_synced: None,
        volume_error: None,
        synced_key: String::new(),
    };
    // Like the kubelet, show a new pod as ContainerCreating before the first
    // (possibly long) image pull instead of leaving it without status.
    if !deleting(&w.pod, w.gone) && w.refresh().await.is_ok() && w.observed.is_empty() {
        w.write_status().await;
    }
    w.main_loop().await;
    ctx.host_ports.remove(&uid);
    if let Ok(mut pods) = ctx.pods.lock() {
        if pods.get(&key) == Some(&uid) {
            pods.remove(&key);
        }
    }
}

/// Stops and removes what the runtime still has of a pod that no longer exists.
pub(crate) async fn clean_orphan(ctx: &Ctx, uid: &str) {
    tracing::info!(pod_uid = %uid, "stopping the containers of a pod deleted while the agent was away");
    if let Ok(list) = ctx.runtime.list_containers(Some(uid)).await {
        let stops = list
            .iter()
            .filter(|c| matches!(c.state, Rt::Running { .. }))
            .map(|c| ctx.runtime.stop_container(&c.id, MIN_GRACE));
        futures::future::join_all(stops).await;
    }
    if let Err(e) = ctx.runtime.stop_sandbox(uid).await {
        tracing::warn!(pod_uid = %uid, "stopping the sandbox of a deleted pod: {e}");
    }
    if let Err(e) = ctx.runtime.remove_sandbox(uid).await {
        tracing::warn!(pod_uid = %uid, "removing the sandbox of a deleted pod: {e}");
    }
    crate::volumes::remove_pod(&ctx.config.agent_dir(), uid);
}

impl Worker {
    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    fn namespace(&self) -> String {
        self.pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn init_specs(&self) -> Vec<Container> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.clone())
            .unwrap_or_default()
    }

    fn app_specs(&self) -> Vec<Container> {
        self.pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default()
    }

    fn event(
        &self,
        container: Option<(&Container, bool)>,
        t: Type,
        reason: &str,
        msg: impl Into<String>,
    ) {
        let fp = container.map(|(c, init)| {
            if self.is_ephemeral(&c.name) {
                format!("spec.ephemeralContainers{{{}}}", c.name)
            } else {
                field_path(init, &c.name)
            }
        });
        self.ctx.recorder.pod(&self.pod, fp, t, reason, msg);
    }

    fn slot(&mut self, name: &str) -> &mut Slot {
        self.slots.entry(name.to_string()).or_default()
    }

    /// The newest and the previous attempt of a container.
    fn attempts(&self, name: &str) -> (Option<ContainerStatus>, Option<ContainerStatus>) {
        let mut mine: Vec<&ContainerStatus> =
            self.observed.iter().filter(|c| c.name == name).collect();
        mine.sort_by_key(|c| std::cmp::Reverse(c.attempt));
        (
            mine.first().cloned().cloned(),
            mine.get(1).cloned().cloned(),
        )
    }

    /// `terminationMessagePolicy: FallbackToLogsOnError`: a container that
    /// failed without writing a message gets the tail of its log (the last
    /// 80 lines, at most 2048 bytes, as the kubelet takes).
    fn fallback_messages(&mut self) {
        let specs: Vec<Container> = self
            .init_specs()
            .into_iter()
            .chain(self.app_specs())
            .chain(
                self.ephemeral_specs()
                    .iter()
                    .map(orca_api::ephemeral_as_container),
            )
            .collect();
        for o in self.observed.iter_mut() {
            let Rt::Exited {
                exit_code, message, ..
            } = &mut o.state
            else {
                continue;
            };
            if *exit_code == 0 || message.as_deref().is_some_and(|m| !m.is_empty()) {
                continue;
            }
            let wants = specs.iter().any(|c| {
                c.name == o.name
                    && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
            });
            if !wants {
                continue;
            }
            let tail = self.fallback.entry(o.id.clone()).or_insert_with(|| {
                let content = std::fs::read_to_string(&o.log_path).unwrap_or_default();
                let out = crate::logs::render(
                    &content,
                    &crate::logs::LogOptions {
                        tail_lines: Some(80),
                        ..Default::default()
                    },
                );
                let start = out.len().saturating_sub(2048);
                String::from_utf8_lossy(&out[start..]).to_string()
            });
            if !tail.is_empty() {
                *message = Some(tail.clone());
            }
        }
    }

    /// Brings `observed` up to date: the runtime's full list once (which
    /// adopts containers from before an agent restart), then only the
    /// containers that can still change, each read directly, so a worker's
    /// poll does not grow with the number of pods on the node.
    async fn refresh(&mut self) -> Result<(), orca_runtime::Error> {
        if !self.listed {
            self.observed = self.ctx.runtime.list_containers(Some(&self.uid)).await?;
            self.listed = true;
        } else {
            let live: Vec<String> = self
                .observed
                .iter()
                .filter(|o| matches!(o.state, Rt::Running { .. } | Rt::Created))
                .map(|o| o.id.clone())
                .collect();
            for id in live {
                match self.ctx.runtime.container_status(&id).await {
                    Ok(s) => {
                        if let Some(o) = self.observed.iter_mut().find(|o| o.id == id) {
                            *o = s;
                        }
                    }
                    Err(orca_runtime::Error::ContainerNotFound(_)) => {
                        self.observed.retain(|o| o.id != id)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.fallback_messages();
        Ok(())
    }

    async fn main_loop(&mut self) {
        loop {
            if deleting(&self.pod, self.gone) {
                self.terminate().await;
                return;
            }
            let wake = self.sync().await;
            if deleting(&self.pod, self.gone) {
                continue;
            }
            self.write_status().await;
            let deadline = tokio::time::Instant::now() + wake;
            // Wait for a pod change, a probe result or the wake-up time.
            loop {
                tokio::select! {
                    changed = self.rx.changed() => {
                        match changed {
                            Ok(()) => match self.rx.borrow_and_update().clone() {
                                Some(p) => accept(&mut self.pod, p),
                                None => self.gone = true,
                            },
                            // The agent is stopping: leave the pod as it is.
                            Err(_) => return,
                        }
                        // Our own status writes come back here: only a
                        // deletion, an image or a label/annotation change
                        // needs a sync now.
                        if deleting(&self.pod, self.gone) || self.sync_key() != self.synced_key {
                            break;
                        }
                        // Readiness gates' conditions are set by others and
                        // decide Ready: recompute (a no-op if nothing moved).
                        if has_readiness_gates(&self.pod) {
                            self.write_status().await;
                        }
                    }
                    _ = self.poke.notified() => {
                        self.volumes_synced = None;
                        break;
                    }
                    Some(r) = self.probe_rx.recv() => {
                        if self.on_probe(r).await {
                            break;
                        }
                        self.write_status().await;
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
    }

    /// Advances the state machine as far as it can go now; returns when
    /// to look again.
    async fn sync(&mut self) -> Duration {
        let now = SystemTime::now();
        if self.state != State::Terminal && !self.sandbox_ready {
            let forbidden = self.pod.spec.as_ref().and_then(crate::sysctls::forbidden);
            if let Some(msg) = forbidden {
                self.reject(crate::sysctls::FORBIDDEN_REASON, msg).await;
                return IDLE;
            }
        }
        if self.state != State::Terminal {
            if let Some(secs) = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
            {
                let deadline = self.start_time + Duration::from_secs(secs.max(0) as u64);
                if now >= deadline {
                    self.deadline_exceeded().await;
                    return IDLE;
                }
            }
        }
        if let Err(e) = self.refresh().await {
            tracing::warn!(pod = %self.name(), "reading the pod's containers failed: {e}");
            return RETRY;
        }
        let key = self.sync_key();
        // Only while the sandbox stands: a refresh after termination
        // removed it would mount the pod's tmpfs volumes again.
        if matches!(self.state, State::Init(_) | State::Running)
            && self.sandbox_ready
            && (key != self.synced_key
                || self
                    .volumes_synced
                    .is_none_or(|t| t.elapsed() >= VOLUME_RESYNC))
        {
            self.update_volumes().await;
        }
        self.synced_key = key;
        // Ephemeral containers start once the sandbox stands, even while
        // init containers run, as the kubelet starts them.
        let ephemeral_wake =
            if matches!(self.state, State::Init(_) | State::Running) && self.sandbox_ready {
                self.step_ephemeral().await
            } else {
                IDLE
            };
        let wait = self.advance().await;
        wait.min(ephemeral_wake)
    }

    /// The state machine's steps from the current state.
    async fn advance(&mut self) -> Duration {
        loop {
            match self.state {
                State::Sandbox => match self.ensure_sandbox().await {
                    Ok(()) => {
                        self.state = if self.init_specs().is_empty() {
                            State::Running
                        } else {
                            State::Init(0)
                        };
                    }
                    Err(wait) => return wait,
                },
                State::Init(i) => match self.step_init(i).await {
                    InitStep::Next => self.state = State::Init(i + 1),
                    InitStep::Done => {
                        self.state = State::Running;
                        // Like the kubelet, report the initialized pod with its
                        // app containers still waiting (PodInitializing) before
                        // starting them.
                        self.write_status().await;
                        if deleting(&self.pod, self.gone) {
                            return Duration::ZERO;
                        }
                    }
                    InitStep::Wait(d) => return d,
                    InitStep::Failed => {
                        self.finish().await;
                        return IDLE;
                    }
                },
                State::Running => {
                    let (wait, all_done) = self.step_running().await;
                    if all_done {
                        self.finish().await;
                        return IDLE;
                    }
                    return wait;
                }
                State::Terminal => return IDLE,
            }
        }
    }

    /// What, besides a deletion, makes a pod update worth a sync at once:
    /// its labels and annotations (downwardAPI volumes), its images and
    /// added ephemeral containers.
    fn sync_key(&self) -> String {
        let images: Vec<Option<&String>> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| c.image.as_ref())
            .collect();
        serde_json::json!([
            self.pod.metadata.labels,
            self.pod.metadata.annotations,
            images,
            self.ephemeral_specs().len()
        ])
        .to_string()
    }
}

fn has_readiness_gates(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}
