//! The pod's observed state written back to its status.

use super::*;

impl Worker {
    pub(super) fn observation(&self) -> PodObservation {
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
        for ec in self.ephemeral_specs() {
            let (current, previous) = self.attempts(&ec.name);
            let co = ContainerObservation {
                waiting: self.slots.get(&ec.name).and_then(|s| s.waiting.clone()),
                ready: false,
                started: true,
                current,
                previous,
            };
            obs.ephemeral.insert(ec.name.clone(), co);
        }
        obs
    }

    /// Writes the computed status through pods/status when it changed.
    pub(super) async fn write_status(&mut self) {
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
