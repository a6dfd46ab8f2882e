//! The TTL-after-finished controller: deletes a finished Job (`Complete`
//! or `Failed`) `ttlSecondsAfterFinished` seconds after it finished, with
//! foreground propagation so its pods go first, as Kubernetes'
//! ttl-after-finished-controller does. The Job is read again before the
//! delete, so a TTL changed meanwhile is honoured.
//!
//! Reads and deletes: jobs (`system:controller:ttl-after-finished-controller`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::wiring::{key_of, Key, Wiring};

const NAME: &str = "ttl-after-finished-controller";
const WORKERS: usize = 5;

/// When the Job expires, if it finished and has a TTL.
fn expires_at(job: &Job) -> Option<DateTime<Utc>> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = job
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.status == "True" && matches!(c.type_.as_str(), "Complete" | "Failed"))?;
    let at = finished.last_transition_time.as_ref()?.0;
    Some(at + chrono::Duration::seconds(ttl.into()))
}

pub async fn run(clients: &crate::Clients) -> anyhow::Result<()> {
    let mut w = Wiring::new(NAME, clients.informers());
    let jobs = w.watch(|j: &Job| {
        (j.metadata.deletion_timestamp.is_none() && expires_at(j).is_some()).then(|| key_of(j))
    });
    let c = Arc::new(Controller {
        client: clients.controller(NAME),
        jobs,
    });
    w.run(c, WORKERS, |c, key| async move { Ok(c.sync(key).await) })
        .await;
    Ok(())
}

struct Controller {
    client: Client,
    jobs: Store<Job>,
}

impl Controller {
    /// Deletes the Job if it expired; answers when to look again.
    async fn sync(&self, (ns, name): Key) -> Option<Duration> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let cached = self.jobs.get(&ObjectRef::new(&name).within(&ns))?;
        let at = expires_at(&cached)?;
        let now = Utc::now();
        if at > now {
            return Some((at - now).to_std().unwrap_or_default() + Duration::from_millis(50));
        }
        // The cache may be behind: the Job as stored decides.
        let fresh = match api.get(&name).await {
            Ok(j) => j,
            Err(kube::Error::Api(s)) if s.code == 404 => return None,
            Err(_) => return Some(Duration::from_secs(1)),
        };
        match expires_at(&fresh) {
            Some(at) if at <= Utc::now() && fresh.metadata.deletion_timestamp.is_none() => {}
            Some(_) => return Some(Duration::from_millis(100)),
            None => return None,
        }
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: fresh.uid(),
                resource_version: fresh.resource_version(),
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => None,
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => {
                tracing::warn!(job = %format!("{ns}/{name}"), "deleting an expired Job failed (will retry): {e}");
                Some(Duration::from_secs(1))
            }
        }
    }
}
