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
/// The pod's hostname as the kubelet gives it: `spec.hostname` or the pod's
/// name, cut to the kernel's 63 characters without a trailing `-` or `.`
/// (pod names may be 253 long).
fn pod_hostname(pod_name: &str, hostname: Option<&str>) -> Result<String, String> {
    const MAX: usize = 63;
    let hostname = hostname.filter(|h| !h.is_empty()).unwrap_or(pod_name);
    if hostname.len() <= MAX {
        return Ok(hostname.to_string());
    }
    let cut = hostname
        .get(..MAX)
        .unwrap_or(hostname)
        .trim_end_matches(['-', '.']);
    if cut.is_empty() {
        return Err(format!(
            "hostname for pod {pod_name:?} was invalid: {hostname:?}"
        ));
    }
    Ok(cut.to_string())
}

/// The RuntimeClass handlers this node runs: its one runtime, under the
/// name containerd gives its default.
const RUNTIME_HANDLERS: &[&str] = &["runc"];

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
        let fp = container.map(|(c, init)| field_path(init, &c.name));
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

    /// What the runtime needs for the pod's sandbox; an error (for the
    /// FailedCreatePodSandBox event) when its resolv.conf cannot be formed.
    fn sandbox_config(
        &self,
        volumes: std::collections::BTreeMap<String, orca_runtime::VolumeSource>,
    ) -> Result<orca_runtime::SandboxConfig, String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let dns = self.ctx.dns.pod_dns(&self.pod)?;
        crate::network::record_dns_events(&self.ctx, &self.pod, &dns);
        let sysctls = crate::sysctls::of(&spec);
        let fs_group = self
            .fs_group()
            .map(|gid| (gid, fs_group_change_policy(&spec)));
        Ok(orca_runtime::SandboxConfig {
            pod_uid: self.uid.clone(),
            namespace: self.namespace(),
            pod_name: self.name(),
            hostname: pod_hostname(&self.name(), spec.hostname.as_deref())?,
            host_network: spec.host_network.unwrap_or(false),
            dns: orca_runtime::DnsConfig {
                nameservers: dns.conf.nameservers,
                searches: dns.conf.searches,
                options: dns.conf.options,
            },
            host_aliases: spec
                .host_aliases
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.ip, a.hostnames.unwrap_or_default()))
                .collect(),
            volumes,
            share_process_namespace: spec.share_process_namespace.unwrap_or(false),
            sysctls,
            fs_group,
        })
    }

    /// The pod's `securityContext.fsGroup`.
    fn fs_group(&self) -> Option<u32> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|sc| sc.fs_group)
            .and_then(|g| u32::try_from(g).ok())
    }

    fn downward(&self) -> crate::resolve::Runtime {
        crate::resolve::Runtime {
            pod_ip: self.pod_ip.map(|ip| ip.to_string()),
            host_ip: self.ctx.config.node_ip.to_string(),
            node: self.ctx.node,
        }
    }

    /// What, besides a deletion, makes a pod update worth a sync at once:
    /// its labels and annotations (downwardAPI volumes) and its images.
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
            images
        ])
        .to_string()
    }

    /// Resolves the volumes; writes the API-data ones (configMap, secret,
    /// downwardAPI, projected) under the agent's directory and hands them
    /// to the runtime as host paths, so they can be updated in place.
    async fn resolve_volumes(
        &mut self,
    ) -> Result<std::collections::BTreeMap<String, orca_runtime::VolumeSource>, String> {
        let mut volumes = crate::resolve::volumes(
            &self.ctx.client,
            &self.pod,
            &self.downward(),
            &mut self.tokens,
        )
        .await?;
        let dir = crate::volumes::pod_dir(&self.ctx.config.agent_dir(), &self.uid);
        let fs_group = self.fs_group();
        for (name, source) in volumes.iter_mut() {
            if let orca_runtime::VolumeSource::Files { files, .. } = source {
                let failed = |e: std::io::Error| {
                    format!("MountVolume.SetUp failed for volume {name:?} : {e}")
                };
                let path = dir.join(name);
                let in_memory = self
                    .pod
                    .spec
                    .iter()
                    .flat_map(|s| s.volumes.iter().flatten())
                    .any(|v| v.name == *name && crate::resolve::is_memory_backed(v));
                if in_memory {
                    crate::volumes::ensure_tmpfs(&path).map_err(failed)?;
                } else {
                    crate::volumes::ensure_dir(&path).map_err(failed)?;
                }
                if fs_group.is_some() {
                    // The group may read every file (the mode the files
                    // are written with, so a resync sees no change).
                    for (_, mode) in files.values_mut() {
                        *mode |= 0o440;
                    }
                }
                crate::volumes::write(&path, files).map_err(|e| {
                    format!(
                        "MountVolume.SetUp failed for volume {name:?} : writing {}: {e}",
                        path.display()
                    )
                })?;
                if let Some(gid) = fs_group {
                    orca_runtime::set_volume_ownership(
                        &path,
                        gid,
                        true,
                        FsGroupChangePolicy::Always,
                    )
                    .map_err(failed)?;
                }
                *source = orca_runtime::VolumeSource::HostPath { path };
            }
        }
        self.volumes_synced = Some(Instant::now());
        Ok(volumes)
    }

    /// The periodic and label-triggered refresh of a running pod's
    /// API-data volumes. A failure keeps the files as they are.
    async fn update_volumes(&mut self) {
        match self.resolve_volumes().await {
            Ok(_) => self.volume_error = None,
            Err(msg) => {
                // One event per distinct failure, not one per resync.
                if self.volume_error.as_ref() != Some(&msg) {
                    self.event(None, Type::Warning, "FailedMount", msg.clone());
                    self.volume_error = Some(msg);
                }
                // Try again at the next resync, not at every poll.
                self.volumes_synced = Some(Instant::now());
            }
        }
    }

    async fn ensure_sandbox(&mut self) -> Result<(), Duration> {
        if let Err(msg) = self.runtime_handler().await {
            self.event(
                None,
                Type::Warning,
                "FailedCreatePodSandBox",
                format!("Failed to create pod sandbox: {msg}"),
            );
            return Err(RETRY);
        }
        let volumes = match self.resolve_volumes().await {
            Ok(v) => v,
            Err(msg) => {
                self.event(None, Type::Warning, "FailedMount", msg);
                return Err(RETRY);
            }
        };
        let config = match self.sandbox_config(volumes) {
            Ok(config) => config,
            Err(msg) => {
                self.event(
                    None,
                    Type::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {msg}"),
                );
                return Err(RETRY);
            }
        };
        let runtime = self.ctx.runtime.clone();
        let result = unless_deleted(&mut self.rx, &mut self.pod, &mut self.gone, async move {
            runtime.run_sandbox(&config).await
        })
        .await;
        match result {
            None => Err(Duration::ZERO),
            Some(Ok(sb)) => {
                self.pod_ip = sb.ip;
                self.sandbox_ready = true;
                if let Some(ip) = sb.ip {
                    self.ctx.host_ports.set(&self.uid, &self.pod, ip);
                }
                Ok(())
            }
            Some(Err(e)) => {
                self.event(
                    None,
                    Type::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                Err(RETRY)
            }
        }
    }

    /// Checks that the pod's RuntimeClass names a handler this node has,
    /// as the kubelet asks its container runtime; the pod waits otherwise.
    async fn runtime_handler(&self) -> Result<(), String> {
        let Some(class) = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.clone())
        else {
            return Ok(());
        };
        let classes: Api<RuntimeClass> = Api::all(self.ctx.client.clone());
        let handler = match classes.get(&class).await {
            Ok(rc) => rc.handler,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(format!("runtimeClass {class:?} not found"))
            }
            Err(e) => return Err(format!("looking up runtimeClass {class:?}: {e}")),
        };
        if RUNTIME_HANDLERS.contains(&handler.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime for {handler:?} is configured (this node runs only {RUNTIME_HANDLERS:?})"
            ))
        }
    }

    async fn step_init(&mut self, i: usize) -> InitStep {
        let specs = self.init_specs();
        let Some(c) = specs.get(i).cloned() else {
            return InitStep::Done;
        };
        let (cur, _) = self.attempts(&c.name);
        match cur.map(|s| (s.id.clone(), s.attempt, s.state)) {
            None => match self.start_container(&c, true, 0).await {
                Ok(()) => InitStep::Wait(POLL_INIT),
                Err(d) => InitStep::Wait(d),
            },
            Some((id, _, Rt::Created)) => {
                self.start_created(&c, true, &id).await;
                InitStep::Wait(POLL_INIT)
            }
            Some((_, _, Rt::Running { .. })) => {
                self.slot(&c.name).waiting = None;
                InitStep::Wait(POLL_INIT)
            }
            Some((_, _, Rt::Exited { exit_code: 0, .. })) => {
                self.slot(&c.name).waiting = None;
                InitStep::Next
            }
            Some((_, attempt, Rt::Exited { finished_at, .. })) => {
                if self.restart_policy() == "Never" {
                    return InitStep::Failed;
                }
                match self
                    .restart_after_crash(&c, true, attempt, finished_at)
                    .await
                {
                    Some(d) => InitStep::Wait(d),
                    None => InitStep::Wait(POLL_INIT),
                }
            }
        }
    }

    /// Starts, restarts and watches the app containers. Returns the wake-up
    /// delay and whether every container is finished for good.
    async fn step_running(&mut self) -> (Duration, bool) {
        let policy = self.restart_policy();
        let mut wake = POLL_RUNNING;
        let mut all_done = true;
        for c in self.app_specs() {
            let (cur, _) = self.attempts(&c.name);
            // `image` is the one mutable part of a container's spec.
            let changed = cur
                .as_ref()
                .is_some_and(|s| Some(&s.image) != c.image.as_ref());
            match cur.map(|s| (s.id.clone(), s.attempt, s.state)) {
                None => {
                    all_done = false;
                    if let Err(d) = self.start_container(&c, false, 0).await {
                        wake = wake.min(d);
                    }
                }
                Some((id, _, Rt::Created)) => {
                    all_done = false;
                    self.start_created(&c, false, &id).await;
                }
                Some((id, attempt, Rt::Running { .. })) if changed => {
                    // The kubelet restarts a container whose definition
                    // changed whatever the restart policy, with a back-off
                    // of its own (keyed by the new definition).
                    all_done = false;
                    let slot = self.slot(&c.name);
                    slot.stop_probes();
                    slot.ready = false;
                    slot.crash = Backoff::default();
                    self.kill_container(
                        &c,
                        false,
                        &id,
                        self.grace_period(),
                        Some(format!(
                            "Container {} definition changed, will be restarted",
                            c.name
                        )),
                    )
                    .await;
                    if let Ok(s) = self.ctx.runtime.container_status(&id).await {
                        self.observed.retain(|o| o.id != s.id);
                        self.observed.push(s);
                    }
                    if let Err(d) = self.start_container(&c, false, attempt + 1).await {
                        wake = wake.min(d);
                    }
                }
                Some((id, _, Rt::Running { started_at })) => {
                    all_done = false;
                    self.slot(&c.name).waiting = None;
                    self.ensure_probes(&c, &id, started_at);
                }
                Some((
                    id,
                    attempt,
                    Rt::Exited {
                        exit_code,
                        finished_at,
                        ..
                    },
                )) => {
                    let slot = self.slot(&c.name);
                    if slot.probed_id.as_deref() == Some(id.as_str()) {
                        slot.stop_probes();
                    }
                    slot.ready = false;
                    if changed {
                        // A new image is a new definition: its back-off
                        // starts afresh.
                        slot.crash = Backoff::default();
                    }
                    let restart = policy == "Always" || (policy == "OnFailure" && exit_code != 0);
                    if !restart {
                        continue;
                    }
                    all_done = false;
                    if let Some(d) = self
                        .restart_after_crash(&c, false, attempt, finished_at)
                        .await
                    {
                        wake = wake.min(d);
                    }
                }
            }
        }
        (wake, all_done)
    }

    /// Restarts a container that exited, unless its back-off says wait;
    /// returns how long to wait in that case.
    async fn restart_after_crash(
        &mut self,
        c: &Container,
        init: bool,
        attempt: u32,
        finished_at: SystemTime,
    ) -> Option<Duration> {
        let now = SystemTime::now();
        let pod = self.pod.clone();
        let slot = self.slot(&c.name);
        if let Some((delay, until)) = slot.crash.in_backoff_since(finished_at, now) {
            let first = slot.waiting_reason() != Some("CrashLoopBackOff");
            slot.waiting = Some((
                "CrashLoopBackOff".into(),
                backoff::crash_loop_message(delay, &c.name, &pod),
            ));
            if first {
                self.event(
                    Some((c, init)),
                    Type::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}",
                        c.name,
                        backoff::pod_full_name(&pod)
                    ),
                );
            }
            return Some(until.duration_since(now).unwrap_or_default());
        }
        slot.crash.next(now);
        self.start_container(c, init, attempt + 1).await.err()
    }

    /// A container the runtime created but never started (the agent went
    /// away in between): start it now.
    async fn start_created(&mut self, c: &Container, init: bool, id: &str) {
        match self.ctx.runtime.start_container(id).await {
            Ok(()) => self.event(
                Some((c, init)),
                Type::Normal,
                "Started",
                format!("Started container {}", c.name),
            ),
            Err(e) => {
                self.event(
                    Some((c, init)),
                    Type::Warning,
                    "Failed",
                    format!("Error: {e}"),
                );
                let _ = self.ctx.runtime.remove_container(id).await;
            }
        }
    }

    /// Pulls the image (per imagePullPolicy, with back-off), creates and
    /// starts the container, runs its postStart hook. On failure the
    /// container's waiting reason says why; returns when to retry.
    async fn start_container(
        &mut self,
        c: &Container,
        init: bool,
        attempt: u32,
    ) -> Result<(), Duration> {
        self.ensure_image(c, init).await?;
        let config = match self.container_config(c, attempt).await {
            Ok(cfg) => cfg,
            Err(msg) => {
                self.event(
                    Some((c, init)),
                    Type::Warning,
                    "Failed",
                    format!("Error: {msg}"),
                );
                self.slot(&c.name).waiting = Some(("CreateContainerConfigError".into(), msg));
                return Err(RETRY);
            }
        };
        // Keep only the newest dead attempt (for lastState and --previous).
        let stale: Vec<String> = {
            let mut mine: Vec<&ContainerStatus> =
                self.observed.iter().filter(|s| s.name == c.name).collect();
            mine.sort_by_key(|s| std::cmp::Reverse(s.attempt));
            mine.iter().skip(1).map(|s| s.id.clone()).collect()
        };
        for id in stale {
            match self.ctx.runtime.remove_container(&id).await {
                Ok(()) | Err(orca_runtime::Error::ContainerNotFound(_)) => {
                    self.observed.retain(|o| o.id != id);
                }
                Err(e) => tracing::debug!(container = %id, "removing an old attempt: {e}"),
            }
        }
        let runtime = self.ctx.runtime.clone();
        let uid = self.uid.clone();
        let created = unless_deleted(&mut self.rx, &mut self.pod, &mut self.gone, async move {
            runtime.create_container(&uid, &config).await
        })
        .await;
        let id = match created {
            None => return Err(Duration::ZERO),
            Some(Ok(id)) => id,
            Some(Err(e)) => {
                let (reason, msg) = match e {
                    orca_runtime::Error::CreateContainer { message, .. } => {
                        ("CreateContainerError", message)
                    }
                    orca_runtime::Error::ContainerConfig { message, .. } => {
                        ("CreateContainerConfigError", message)
                    }
                    other => ("CreateContainerError", other.to_string()),
                };
                self.event(
                    Some((c, init)),
                    Type::Warning,
                    "Failed",
                    format!("Error: {msg}"),
                );
                self.slot(&c.name).waiting = Some((reason.into(), msg));
                return Err(RETRY);
            }
        };
        self.event(
            Some((c, init)),
            Type::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        if let Err(e) = self.ctx.runtime.start_container(&id).await {
            // A container that never started is not kept: the retry creates it anew.
            let _ = self.ctx.runtime.remove_container(&id).await;
            let msg = e.to_string();
            self.event(
                Some((c, init)),
                Type::Warning,
                "Failed",
                format!("Error: {msg}"),
            );
            self.slot(&c.name).waiting = Some(("RunContainerError".into(), msg));
            return Err(RETRY);
        }
        self.event(
            Some((c, init)),
            Type::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        let slot = self.slot(&c.name);
        slot.waiting = None;
        slot.stop_probes();
        if let Ok(s) = self.ctx.runtime.container_status(&id).await {
            self.observed.retain(|o| o.id != s.id);
            self.observed.push(s);
        }
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let action = probe::Action::of_handler(&hook);
            let runtime = self.ctx.runtime.clone();
            let (cc, idc, ip) = (c.clone(), id.clone(), self.pod_ip);
            let grace = self.grace_period();
            let result = unless_deleted(&mut self.rx, &mut self.pod, &mut self.gone, async move {
                probe::run(&runtime, &idc, &cc, ip, &action, grace).await
            })
            .await;
            if let Some(Err(msg)) = result {
                self.event(
                    Some((c, init)),
                    Type::Warning,
                    "FailedPostStartHook",
                    format!("PostStartHook failed: {msg}"),
                );
                self.kill_container(
                    c,
                    init,
                    &id,
                    self.grace_period(),
                    Some("FailedPostStartHook".into()),
                )
                .await;
            }
        }
        Ok(())
    }

    async fn ensure_image(&mut self, c: &Container, init: bool) -> Result<(), Duration> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| orca_api::default_image_pull_policy(&image).to_string());
        let now = SystemTime::now();
        let slot = self.slot(&c.name);
        if slot.pull_image != image {
            slot.pull = Backoff::default();
            slot.pull_error.clear();
            slot.pull_image = image.clone();
        }
        if let Some((_, until)) = self.slot(&c.name).pull.in_backoff_since_update(now) {
            let slot = self.slot(&c.name);
            let first = slot.waiting_reason() != Some("ImagePullBackOff");
            let message = format!(
                "Back-off pulling image {image:?}: ErrImagePull: {}",
                slot.pull_error
            );
            slot.waiting = Some(("ImagePullBackOff".into(), message));
            if first {
                self.event(
                    Some((c, init)),
                    Type::Normal,
                    "BackOff",
                    format!("Back-off pulling image {image:?}"),
                );
                self.event(
                    Some((c, init)),
                    Type::Warning,
                    "Failed",
                    "Error: ImagePullBackOff",
                );
            }
            return Err(until.duration_since(now).unwrap_or_default());
        }
        let present = match self.ctx.runtime.image_status(&image).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(image = %image, "image status failed: {e}");
                None
            }
        };
        if policy == "Never" && present.is_none() {
            let msg = format!("Container image {image:?} is not present with pull policy of Never");
            self.event(
                Some((c, init)),
                Type::Warning,
                "ErrImageNeverPull",
                msg.clone(),
            );
            self.slot(&c.name).waiting = Some(("ErrImageNeverPull".into(), msg));
            return Err(RETRY);
        }
        if present.is_some() && policy != "Always" {
            self.event(
                Some((c, init)),
                Type::Normal,
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            );
            return Ok(());
        }
        self.event(
            Some((c, init)),
            Type::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let auth = crate::resolve::pull_auth(&self.ctx.client, &self.pod, &image).await;
        let runtime = self.ctx.runtime.clone();
        let img = image.clone();
        let t0 = Instant::now();
        let pulled = unless_deleted(&mut self.rx, &mut self.pod, &mut self.gone, async move {
            runtime.pull_image(&img, auth).await
        })
        .await;
        match pulled {
            None => Err(Duration::ZERO),
            Some(Ok(info)) => {
                let took = t0.elapsed();
                self.event(
                    Some((c, init)),
                    Type::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {took:?} ({took:?} including waiting). Image size: {} bytes.",
                        info.size_bytes
                    ),
                );
                let slot = self.slot(&c.name);
                slot.pull = Backoff::default();
                slot.pull_error.clear();
                Ok(())
            }
            Some(Err(e)) => {
                let msg = match e {
                    orca_runtime::Error::ImagePull { message, .. } => message,
                    other => other.to_string(),
                };
                self.event(
                    Some((c, init)),
                    Type::Warning,
                    "Failed",
                    format!("Failed to pull image {image:?}: {msg}"),
                );
                self.event(
                    Some((c, init)),
                    Type::Warning,
                    "Failed",
                    "Error: ErrImagePull",
                );
                let now = SystemTime::now();
                let slot = self.slot(&c.name);
                slot.pull.next(now);
                slot.pull_error = msg.clone();
                slot.waiting = Some(("ErrImagePull".into(), msg));
                let wait = slot
                    .pull
                    .in_backoff_since_update(now)
                    .map(|(_, until)| until.duration_since(now).unwrap_or_default())
                    .unwrap_or(RETRY);
                Err(wait)
            }
        }
    }

    async fn container_config(
        &self,
        c: &Container,
        attempt: u32,
    ) -> Result<ContainerConfig, String> {
        let service_env = self.ctx.service_env(&self.pod).await?;
        let env = crate::resolve::env(
            &self.ctx.client,
            &self.pod,
            c,
            &self.downward(),
            service_env,
        )
        .await?;
        let vars: HashMap<String, String> = env.iter().cloned().collect();
        let expand = |v: &Option<Vec<String>>| -> Vec<String> {
            v.iter()
                .flatten()
                .map(|s| crate::resolve::expand(s, &vars))
                .collect()
        };
        let spec = self.pod.spec.clone().unwrap_or_default();
        let api_data: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| crate::resolve::is_api_data(v))
            .map(|v| v.name.as_str())
            .collect();
        let psc = spec.security_context.clone().unwrap_or_default();
        let csc = c.security_context.clone().unwrap_or_default();
        let caps = csc.capabilities.clone().unwrap_or_default();
        Ok(ContainerConfig {
            name: c.name.clone(),
            attempt,
            image: c.image.clone().unwrap_or_default(),
            command: expand(&c.command),
            args: expand(&c.args),
            env,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            mounts: c
                .volume_mounts
                .iter()
                .flatten()
                .map(|m| Mount {
                    volume: m.name.clone(),
                    container_path: m.mount_path.clone(),
                    sub_path: m.sub_path.clone().filter(|s| !s.is_empty()),
                    read_only: m.read_only.unwrap_or(false) || api_data.contains(&m.name.as_str()),
                })
                .collect(),
            resources: crate::resources::runtime_resources(c),
            security: SecurityConfig {
                run_as_user: csc.run_as_user.or(psc.run_as_user),
                run_as_group: csc.run_as_group.or(psc.run_as_group),
                run_as_non_root: csc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false),
                // The kubelet adds fsGroup to the pod's supplemental groups.
                supplemental_groups: psc
                    .supplemental_groups
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .chain(psc.fs_group)
                    .collect(),
                privileged: csc.privileged.unwrap_or(false),
                capabilities_add: caps.add.unwrap_or_default(),
                capabilities_drop: caps.drop.unwrap_or_default(),
                read_only_root_filesystem: csc.read_only_root_filesystem.unwrap_or(false),
                allow_privilege_escalation: csc.allow_privilege_escalation,
                seccomp: seccomp_profile(
                    csc.seccomp_profile
                        .as_ref()
                        .or(psc.seccomp_profile.as_ref()),
                ),
            },
            tty: c.tty.unwrap_or(false),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            termination_message_path: Some(
                c.termination_message_path
                    .clone()
                    .unwrap_or_else(|| "/dev/termination-log".into()),
            ),
        })
    }

    fn grace_period(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(DEFAULT_GRACE);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// Runs preStop within the grace period, then stops the container with
    /// what remains of it (SIGKILL at the end).
    async fn kill_container(
        &self,
        c: &Container,
        init: bool,
        id: &str,
        grace: Duration,
        message: Option<String>,
    ) {
        self.event(
            Some((c, init)),
            Type::Normal,
            "Killing",
            message.unwrap_or_else(|| format!("Stopping container {}", c.name)),
        );
        if let Some(msg) = stop_with_pre_stop(&self.ctx, c, id, self.pod_ip, grace).await {
            self.event(Some((c, init)), Type::Warning, "FailedPreStopHook", msg);
        }
    }

    fn ensure_probes(&mut self, c: &Container, id: &str, started_at: SystemTime) {
        if self.slot(&c.name).probed_id.as_deref() == Some(id) {
            return;
        }
        let mut tasks = Vec::new();
        let mut trackers = HashMap::new();
        for (kind, p) in [
            (Kind::Startup, &c.startup_probe),
            (Kind::Liveness, &c.liveness_probe),
            (Kind::Readiness, &c.readiness_probe),
        ] {
            if let Some(p) = p {
                trackers.insert(kind, Tracker::new(kind, probe::Timing::of(p)));
            }
        }
        let has_startup = c.startup_probe.is_some();
        if let Some(p) = &c.startup_probe {
            tasks.push(self.spawn_probe(c, id, Kind::Startup, p.clone(), started_at));
        } else {
            tasks.extend(self.spawn_main_probes(c, id, started_at));
        }
        let slot = self.slot(&c.name);
        slot.stop_probes();
        slot.probed_id = Some(id.to_string());
        slot.probe_tasks = tasks;
        slot.trackers = trackers;
        slot.started = !has_startup;
        slot.ready = c.readiness_probe.is_none() && !has_startup;
    }

    fn spawn_main_probes(
        &self,
        c: &Container,
        id: &str,
        started_at: SystemTime,
    ) -> Vec<AbortHandle> {
        let mut tasks = Vec::new();
        if let Some(p) = &c.liveness_probe {
            tasks.push(self.spawn_probe(c, id, Kind::Liveness, p.clone(), started_at));
        }
        if let Some(p) = &c.readiness_probe {
            tasks.push(self.spawn_probe(c, id, Kind::Readiness, p.clone(), started_at));
        }
        tasks
    }

    fn spawn_probe(
        &self,
        c: &Container,
        id: &str,
        kind: Kind,
        p: Probe,
        started_at: SystemTime,
    ) -> AbortHandle {
        let tx = self.probe_tx.clone();
        let runtime = self.ctx.runtime.clone();
        let (c, id, ip) = (c.clone(), id.to_string(), self.pod_ip);
        tokio::spawn(async move {
            let timing = probe::Timing::of(&p);
            let action = probe::Action::of_probe(&p);
            let first = (started_at + timing.initial_delay)
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(first).await;
            loop {
                let result = probe::run(&runtime, &id, &c, ip, &action, timing.timeout).await;
                let msg = ProbeResult {
                    container: c.name.clone(),
                    id: id.clone(),
                    kind,
                    result,
                };
                if tx.send(msg).is_err() {
                    return;
                }
                tokio::time::sleep(timing.period).await;
            }
        })
        .abort_handle()
    }

    /// Applies a probe result; returns true when the pod needs a sync
    /// (a container was killed).
    async fn on_probe(&mut self, r: ProbeResult) -> bool {
        let Some(c) = self.app_specs().into_iter().find(|c| c.name == r.container) else {
            return false;
        };
        let slot = self.slot(&r.container);
        if slot.probed_id.as_deref() != Some(r.id.as_str()) {
            return false;
        }
        let flip = match slot.trackers.get_mut(&r.kind) {
            Some(t) => t.record(r.result.is_ok()),
            None => return false,
        };
        if let Err(msg) = &r.result {
            self.event(
                Some((&c, false)),
                Type::Warning,
                "Unhealthy",
                format!("{} probe failed: {msg}", r.kind.title()),
            );
        }
        match (r.kind, flip) {
            (Kind::Readiness, Some(v)) => {
                self.slot(&r.container).ready = v;
                false
            }
            (Kind::Startup, Some(true)) => {
                // Liveness and readiness count their initial delay from now on.
                let tasks = self.spawn_main_probes(&c, &r.id, SystemTime::now());
                let slot = self.slot(&r.container);
                slot.started = true;
                slot.ready = c.readiness_probe.is_none();
                slot.probe_tasks.extend(tasks);
                false
            }
            (Kind::Startup, Some(false)) | (Kind::Liveness, Some(false)) => {
                let which = if r.kind == Kind::Startup {
                    "startup"
                } else {
                    "liveness"
                };
                let probe = if r.kind == Kind::Startup {
                    &c.startup_probe
                } else {
                    &c.liveness_probe
                };
                let grace = probe
                    .as_ref()
                    .and_then(|p| p.termination_grace_period_seconds)
                    .map(|s| Duration::from_secs(s.max(0) as u64))
                    .unwrap_or_else(|| self.grace_period());
                self.slot(&r.container).stop_probes();
                self.kill_container(
                    &c,
                    false,
                    &r.id,
                    grace,
                    Some(format!(
                        "Container {} failed {which} probe, will be restarted",
                        c.name
                    )),
                )
                .await;
                true
            }
            _ => false,
        }
    }

    /// Refuses the pod at admission, as the kubelet does: it fails with
    /// the reason, and nothing of it runs.
    async fn reject(&mut self, reason: &str, msg: String) {
        self.event(None, Type::Warning, reason, &msg);
        self.terminal = Some(("Failed".into(), reason.into(), msg));
        self.finish().await;
    }

    async fn deadline_exceeded(&mut self) {
        let msg = "Pod was active on the node longer than the specified deadline";
        self.event(None, Type::Warning, "DeadlineExceeded", msg);
        self.terminal = Some(("Failed".into(), "DeadlineExceeded".into(), msg.into()));
        self.stop_all(self.grace_period()).await;
        self.finish().await;
    }

    /// Kills every running container of the pod in parallel.
    async fn stop_all(&mut self, grace: Duration) {
        let list = self
            .ctx
            .runtime
            .list_containers(Some(&self.uid))
            .await
            .unwrap_or_default();
        let specs: Vec<(Container, bool)> = self
            .init_specs()
            .into_iter()
            .map(|c| (c, true))
            .chain(self.app_specs().into_iter().map(|c| (c, false)))
            .collect();
        for slot in self.slots.values_mut() {
            slot.stop_probes();
            slot.ready = false;
        }
        let mut stops = Vec::new();
        for s in list
            .iter()
            .filter(|s| matches!(s.state, Rt::Running { .. } | Rt::Created))
        {
            let spec = specs.iter().find(|(c, _)| c.name == s.name);
            let c = spec.map(|(c, _)| c.clone()).unwrap_or_else(|| Container {
                name: s.name.clone(),
                ..Default::default()
            });
            let init = spec.is_some_and(|(_, i)| *i);
            self.event(
                Some((&c, init)),
                Type::Normal,
                "Killing",
                format!("Stopping container {}", c.name),
            );
            let ctx = self.ctx.clone();
            let (id, ip) = (s.id.clone(), self.pod_ip);
            stops.push(async move {
                let failed = stop_with_pre_stop(&ctx, &c, &id, ip, grace).await;
                (c, init, failed)
            });
        }
        for (c, init, failed) in futures::future::join_all(stops).await {
            if let Some(msg) = failed {
                self.event(Some((&c, init)), Type::Warning, "FailedPreStopHook", msg);
            }
        }
        if let Ok(list) = self.ctx.runtime.list_containers(Some(&self.uid)).await {
            self.observed = list;
        }
    }

    /// The pod is done: stop its sandbox, keep the containers for logs.
    async fn finish(&mut self) {
        self.state = State::Terminal;
        for slot in self.slots.values_mut() {
            slot.stop_probes();
        }
        if let Err(e) = self.ctx.runtime.stop_sandbox(&self.uid).await {
            tracing::warn!(pod = %self.name(), "stopping the sandbox of a finished pod: {e}");
        }
        self.ctx.host_ports.remove(&self.uid);
        self.sandbox_ready = false;
        if let Ok(list) = self.ctx.runtime.list_containers(Some(&self.uid)).await {
            self.observed = list;
            self.fallback_messages();
        }
    }

    /// Deletion: preStop, stop signal, grace period, SIGKILL, sandbox
    /// removal, then the final delete that makes the object disappear.
    async fn terminate(&mut self) {
        let grace = if self.gone {
            MIN_GRACE
        } else {
            self.grace_period().max(Duration::from_secs(1))
        };
        self.stop_all(grace).await;
        if let Err(e) = self.ctx.runtime.stop_sandbox(&self.uid).await {
            if !matches!(e, orca_runtime::Error::SandboxNotFound(_)) {
                tracing::warn!(pod = %self.name(), "stopping the sandbox: {e}");
            }
        }
        self.ctx.host_ports.remove(&self.uid);
        self.sandbox_ready = false;
        if self.gone {
            self.remove_sandbox().await;
            return;
        }
        // The final status (containers terminated) before the object goes.
        self.write_status().await;
        self.remove_sandbox().await;
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&self.name(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %self.name(), "finishing the deletion failed: {e}"),
        }
    }

    async fn remove_sandbox(&self) {
        if let Err(e) = self.ctx.runtime.remove_sandbox(&self.uid).await {
            if !matches!(e, orca_runtime::Error::SandboxNotFound(_)) {
                tracing::warn!(pod = %self.name(), "removing the sandbox: {e}");
            }
        }
        crate::volumes::remove_pod(&self.ctx.config.agent_dir(), &self.uid);
    }

    fn observation(&self) -> PodObservation {
        let mut obs = PodObservation {
            host_ip: self.ctx.config.node_ip.to_string(),
            pod_ip: self.pod_ip,
            sandbox_ready: self.sandbox_ready,
            start_time: Some(self.start_time),
            terminal: self.terminal.clone(),
            ..Default::default()
        };
        for (c, init) in self
            .init_specs()
            .into_iter()
            .map(|c| (c, true))
            .chain(self.app_specs().into_iter().map(|c| (c, false)))
        {
            let (current, previous) = self.attempts(&c.name);
            let slot = self.slots.get(&c.name);
            let probed = |s: &Slot| {
                current
                    .as_ref()
                    .is_some_and(|cur| s.probed_id.as_deref() == Some(cur.id.as_str()))
            };
            let co = ContainerObservation {
                waiting: slot.and_then(|s| s.waiting.clone()),
                ready: if init {
                    false
                } else {
                    slot.filter(|s| probed(s))
                        .map(|s| s.ready)
                        .unwrap_or(c.readiness_probe.is_none())
                },
                started: slot
                    .filter(|s| probed(s))
                    .map(|s| s.started)
                    .unwrap_or(c.startup_probe.is_none()),
                current,
                previous,
            };
            if init {
                obs.init.insert(c.name.clone(), co);
            } else {
                obs.containers.insert(c.name.clone(), co);
            }
        }
        obs
    }

    /// Writes the computed status through pods/status when it changed.
    async fn write_status(&mut self) {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        for _ in 0..3 {
            let computed = status::compute(&self.pod, &self.observation(), SystemTime::now());
            let new = status::to_json(&computed);
            let old = self.pod.status.as_ref().map(status::to_json);
            if old.as_ref() == Some(&new) {
                return;
            }
            let mut body = match serde_json::to_value(&self.pod) {
                Ok(v) => v,
                Err(_) => return,
            };
            body["status"] = new;
            let bytes = match serde_json::to_vec(&body) {
                Ok(b) => b,
                Err(_) => return,
            };
            match api
                .replace_status(&self.name(), &PostParams::default(), bytes)
                .await
            {
                Ok(p) => {
                    accept(&mut self.pod, p);
                    return;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    match api.get_opt(&self.name()).await {
                        Ok(Some(p)) if p.metadata.uid.as_deref() == Some(self.uid.as_str()) => {
                            self.pod = p
                        }
                        Ok(_) => {
                            self.gone = true;
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(pod = %self.name(), "re-reading the pod after a conflict: {e}");
                            return;
                        }
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    self.gone = true;
                    return;
                }
                Err(e) => {
                    tracing::warn!(pod = %self.name(), "writing the pod status failed: {e}");
                    return;
                }
            }
        }
    }
}

enum InitStep {
    Next,
    Done,
    Wait(Duration),
    Failed,
}

/// preStop hook within the grace period, then the runtime's stop with the
/// remaining time (stop signal, then SIGKILL).
async fn stop_with_pre_stop(
    ctx: &Ctx,
    c: &Container,
    id: &str,
    pod_ip: Option<IpAddr>,
    grace: Duration,
) -> Option<String> {
    let t0 = Instant::now();
    let mut hook_error = None;
    if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) {
        let action = probe::Action::of_handler(&hook);
        if let Err(msg) = probe::run(&ctx.runtime, id, c, pod_ip, &action, grace).await {
            hook_error = Some(format!("PreStopHook failed: {msg}"));
        }
    }
    let remaining = grace.saturating_sub(t0.elapsed());
    if let Err(e) = ctx.runtime.stop_container(id, remaining).await {
        if !matches!(
            e,
            orca_runtime::Error::NotRunning { .. } | orca_runtime::Error::ContainerNotFound(_)
        ) {
            tracing::warn!(container = %c.name, "stopping the container: {e}");
        }
    }
    hook_error
}

fn has_readiness_gates(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

/// The runtime's profile for a `seccompProfile`; unset is Unconfined, as in
/// Kubernetes.
fn seccomp_profile(p: Option<&k8s_openapi::api::core::v1::SeccompProfile>) -> SeccompProfile {
    match p.map(|p| (p.type_.as_str(), p.localhost_profile.as_deref())) {
        Some(("RuntimeDefault", _)) => SeccompProfile::RuntimeDefault,
        Some(("Localhost", path)) => SeccompProfile::Localhost(path.unwrap_or_default().into()),
        _ => SeccompProfile::Unconfined,
    }
}

fn fs_group_change_policy(spec: &k8s_openapi::api::core::v1::PodSpec) -> FsGroupChangePolicy {
    match spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.fs_group_change_policy.as_deref())
    {
        Some("OnRootMismatch") => FsGroupChangePolicy::OnRootMismatch,
        _ => FsGroupChangePolicy::Always,
    }
}

#[cfg(test)]
mod tests {
    use super::pod_hostname;

    #[test]
    fn hostnames_are_cut_to_63_characters_as_the_kubelet_does() {
        assert_eq!(pod_hostname("web", None).unwrap(), "web");
        assert_eq!(pod_hostname("web-0", Some("db")).unwrap(), "db");
        // The upstream suite's pods: a name and a uuid, 66 characters.
        let long = "termination-message-container69f32b4d-bc49-485e-80cf-404213b90d74";
        assert_eq!(
            pod_hostname(long, None).unwrap(),
            "termination-message-container69f32b4d-bc49-485e-80cf-404213b90d"
        );
        // No trailing '-' or '.' after the cut.
        let name = format!("{}-.-x", "a".repeat(61));
        assert_eq!(pod_hostname(&name, None).unwrap(), "a".repeat(61));
        assert!(pod_hostname(&format!("{}x", "-".repeat(63)), None).is_err());
    }
}
