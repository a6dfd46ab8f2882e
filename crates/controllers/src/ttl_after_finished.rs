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
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;

use crate::queue::WorkQueue;

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
    let writer = clients.controller(NAME);
    let (queue, rx) = WorkQueue::new();
    let queue = Arc::new(queue);
    let (jobs, job_writer) = reflector::store::<Job>();
    let watch = watcher::watcher(
        Api::<Job>::all(clients.informers()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(job_writer)
    .for_each({
        let queue = queue.clone();
        move |ev| {
            if let Ok(Event::Apply(j) | Event::InitApply(j)) = ev {
                if j.metadata.deletion_timestamp.is_none() && expires_at(&j).is_some() {
                    queue.add((j.namespace().unwrap_or_default(), j.name_any()));
                }
            }
            futures::future::ready(())
        }
    });
    let work = async {
        let _ = jobs.wait_until_ready().await;
        crate::queue::work(&queue, rx, WORKERS, move |(ns, name): (String, String)| {
            let jobs = jobs.clone();
            let api: Api<Job> = Api::namespaced(writer.clone(), &ns);
            async move {
                let cached = jobs.get(&reflector::ObjectRef::new(&name).within(&ns))?;
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
        })
        .await
    };
    tokio::join!(watch, work);
    Ok(())
}
