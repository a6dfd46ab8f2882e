//! Ephemeral containers (`kubectl debug`): each runs once, in the pod's
//! network, IPC and UTS namespaces and, with `targetContainerName`, in its
//! target's PID namespace; never restarted, stopped with the pod. Their
//! attach, exec and logs go by name like any container's.

use k8s_openapi::api::core::v1::EphemeralContainer;

use super::*;

impl Worker {
    pub(super) fn ephemeral_specs(&self) -> Vec<EphemeralContainer> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.clone())
            .unwrap_or_default()
    }

    pub(super) fn is_ephemeral(&self, name: &str) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref())
            .is_some_and(|e| e.iter().any(|c| c.name == name))
    }

    /// Starts the ephemeral containers that never ran (an image pull or a
    /// start that failed is retried); one that ran stays as it ended.
    /// Returns when to look again.
    pub(super) async fn step_ephemeral(&mut self) -> Duration {
        let mut wake = IDLE;
        for ec in self.ephemeral_specs() {
            let c = orca_api::ephemeral_as_container(&ec);
            match self.attempts(&c.name).0 {
                None => {
                    if let Err(d) = self.start_container(&c, false, 0).await {
                        wake = wake.min(d);
                    }
                }
                Some(s) if s.state == Rt::Created => {
                    self.start_created(&c, false, &s.id).await;
                }
                Some(_) => self.slot(&c.name).waiting = None,
            }
        }
        wake
    }

    /// The runtime id of the running container whose PID namespace the
    /// ephemeral container `name` joins, if it names a target.
    pub(super) fn ephemeral_target(&self, name: &str) -> Result<Option<String>, String> {
        let target = self
            .ephemeral_specs()
            .into_iter()
            .find(|e| e.name == name)
            .and_then(|e| e.target_container_name)
            .filter(|t| !t.is_empty());
        let Some(target) = target else {
            return Ok(None);
        };
        match self.attempts(&target).0 {
            Some(s) if matches!(s.state, Rt::Running { .. }) => Ok(Some(s.id)),
            _ => Err(format!("target container {target:?} is not running")),
        }
    }

    /// Ephemeral containers still running when the pod is done.
    pub(super) fn ephemeral_running(&self) -> bool {
        self.observed
            .iter()
            .any(|o| matches!(o.state, Rt::Running { .. }) && self.is_ephemeral(&o.name))
    }
}
