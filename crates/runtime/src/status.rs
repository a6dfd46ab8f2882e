//! container_status and list_containers, from the records on disk.

use std::os::unix::net::UnixStream;
use std::time::SystemTime;

use crate::linux::Inner;
use crate::state::{process_start_time, read_json, ContainerFiles, ContainerRecord, ShimState};
use crate::{ContainerState, ContainerStatus, Error, Result};

/// Kubernetes keeps at most this much of a termination message.
const MAX_MESSAGE: usize = 4096;

impl Inner {
    pub(crate) fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let dir = self.layout.container(id);
        let record: ContainerRecord = read_json(&dir.join(ContainerFiles::RECORD))
            .map_err(|_| Error::ContainerNotFound(id.to_string()))?;
        let state: Option<ShimState> = read_json(&dir.join(ContainerFiles::STATE)).ok();
        let state = match state {
            None => ContainerState::Created,
            Some(s) if s.status.is_exited() => {
                let exit_code = s.exit_code.unwrap_or(255);
                let reason = if s.oom_killed {
                    "OOMKilled"
                } else if exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                };
                ContainerState::Exited {
                    exit_code,
                    reason: reason.to_string(),
                    started_at: s.started_at.unwrap_or(record.created_at),
                    finished_at: s.finished_at.unwrap_or_else(SystemTime::now),
                    message: termination_message(&dir),
                }
            }
            Some(s) if process_start_time(s.pid).is_none() && !shim_alive(&dir) => {
                // The shim died without recording the exit (it was killed).
                ContainerState::Exited {
                    exit_code: 255,
                    reason: "Error".to_string(),
                    started_at: s.started_at.unwrap_or(record.created_at),
                    finished_at: SystemTime::now(),
                    message: Some("the container's shim exited without recording its exit".into()),
                }
            }
            Some(s) => match s.started_at {
                Some(started_at) => ContainerState::Running { started_at },
                None => ContainerState::Created,
            },
        };
        Ok(ContainerStatus {
            id: record.id,
            pod_uid: record.pod_uid,
            name: record.name,
            attempt: record.attempt,
            state,
            image: record.image,
            image_id: record.image_id,
            log_path: record.log_path,
        })
    }

    /// Ids of the containers of one pod (or all), oldest first.
    pub(crate) fn container_ids_of(&self, pod_uid: Option<&str>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(self.layout.containers())
            .map_err(|e| Error::Other(format!("{}: {e}", self.layout.containers().display())))?;
        for e in entries.flatten() {
            let Ok(r) = read_json::<ContainerRecord>(&e.path().join(ContainerFiles::RECORD)) else {
                continue;
            };
            if pod_uid.is_none_or(|u| u == r.pod_uid) {
                out.push((r.created_at, r.id));
            }
        }
        out.sort();
        Ok(out.into_iter().map(|(_, id)| id).collect())
    }

    pub(crate) fn list_containers(&self, pod_uid: Option<&str>) -> Result<Vec<ContainerStatus>> {
        let mut out = Vec::new();
        for id in self.container_ids_of(pod_uid)? {
            match self.container_status(&id) {
                Ok(s) => out.push(s),
                // Removed while listing.
                Err(Error::ContainerNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

fn shim_alive(dir: &std::path::Path) -> bool {
    UnixStream::connect(dir.join(ContainerFiles::SOCKET)).is_ok()
}

fn termination_message(dir: &std::path::Path) -> Option<String> {
    let data = std::fs::read(dir.join(ContainerFiles::TERMINATION_LOG)).ok()?;
    if data.is_empty() {
        return None;
    }
    let data = &data[..data.len().min(MAX_MESSAGE)];
    Some(String::from_utf8_lossy(data).into_owned())
}
