//! Startup, liveness and readiness probes per container, and what their results change.

use super::*;

impl Worker {
    pub(super) fn ensure_probes(&mut self, c: &Container, id: &str, started_at: SystemTime) {
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

    pub(super) fn spawn_main_probes(
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

    pub(super) fn spawn_probe(
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
    pub(super) async fn on_probe(&mut self, r: ProbeResult) -> bool {
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
}
