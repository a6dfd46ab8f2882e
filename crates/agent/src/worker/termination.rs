//! Stopping containers: grace periods, preStop hooks, pod termination and rejection.

use super::*;

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

impl Worker {
    pub(super) fn grace_period(&self) -> Duration {
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
    pub(super) async fn kill_container(
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

    /// Refuses the pod at admission, as the kubelet does: it fails with
    /// the reason, and nothing of it runs.
    pub(super) async fn reject(&mut self, reason: &str, msg: String) {
        self.event(None, Type::Warning, reason, &msg);
        self.terminal = Some(("Failed".into(), reason.into(), msg));
        self.finish().await;
    }

    pub(super) async fn deadline_exceeded(&mut self) {
        let msg = "Pod was active on the node longer than the specified deadline";
        self.event(None, Type::Warning, "DeadlineExceeded", msg);
        self.terminal = Some(("Failed".into(), "DeadlineExceeded".into(), msg.into()));
        self.stop_all(self.grace_period()).await;
        self.finish().await;
    }

    /// Kills every running container of the pod in parallel.
    pub(super) async fn stop_all(&mut self, grace: Duration) {
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
    pub(super) async fn finish(&mut self) {
        // The kubelet stops ephemeral containers with the pod.
        if self.ephemeral_running() {
            self.stop_all(self.grace_period()).await;
        }
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
    pub(super) async fn terminate(&mut self) {
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
}
