//! Containers' lives: init containers in order, app containers started, restarted after crashes with back-off, their images pulled and their runtime configuration built.

use super::*;

pub(super) enum InitStep {
    Next,
    Done,
    Wait(Duration),
    Failed,
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

impl Worker {
    pub(super) async fn step_init(&mut self, i: usize) -> InitStep {
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
    pub(super) async fn step_running(&mut self) -> (Duration, bool) {
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
    pub(super) async fn restart_after_crash(
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
    pub(super) async fn start_created(&mut self, c: &Container, init: bool, id: &str) {
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
    pub(super) async fn start_container(
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

    pub(super) async fn ensure_image(&mut self, c: &Container, init: bool) -> Result<(), Duration> {
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

    pub(super) async fn container_config(
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
        let mut mounts = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let sub_path = match m.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
                Some(expr) => Some(crate::resolve::expand_sub_path(expr, &vars)?),
                None => m.sub_path.clone().filter(|s| !s.is_empty()),
            };
            mounts.push(Mount {
                volume: m.name.clone(),
                container_path: m.mount_path.clone(),
                sub_path,
                read_only: m.read_only.unwrap_or(false) || api_data.contains(&m.name.as_str()),
            });
        }
        Ok(ContainerConfig {
            name: c.name.clone(),
            attempt,
            image: c.image.clone().unwrap_or_default(),
            command: expand(&c.command),
            args: expand(&c.args),
            env,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            mounts,
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
            target_container: self.ephemeral_target(&c.name)?,
        })
    }
}
