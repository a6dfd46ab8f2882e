//! Binds pending pods to nodes through the API, like kube-scheduler.
//!
//! Informers (watches) over pods and nodes feed a [`cache::Cache`]: the
//! nodes, what the pods on each request, and a priority queue of pods with
//! no `spec.nodeName` for this scheduler. One loop takes pods off the queue,
//! filters and scores nodes, assumes the pod onto the chosen node at once
//! (so the next decision counts it) and binds through `pods/binding` with
//! bounded concurrency. Pods that fit nowhere get PodScheduled=False and a
//! FailedScheduling event, and are retried when nodes or pods change.

pub mod cache;
pub mod filter;
pub mod node;
pub mod podinfo;
pub mod quantity;
pub mod queue;
pub mod score;
pub mod writer;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Notify;

use cache::{Cache, Decision};
use orca_leader_election::{LeaderElectionConfig, LeaseLock};
use podinfo::PodInfo;
use writer::{PodRef, Write, Writer};

/// How often parked pods are checked for having waited too long.
const STALE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this are ours.
    pub scheduler_name: String,
    /// Schedule only while holding the Lease `lease_namespace/lease_name`.
    pub leader_elect: bool,
    /// This instance's name in the Lease and in events' reportingInstance.
    pub identity: String,
    pub lease_namespace: String,
    pub lease_name: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    /// Bindings in flight at once.
    pub bind_parallelism: usize,
    /// Event and status writes in flight at once.
    pub write_parallelism: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: "default-scheduler".to_string(),
            leader_elect: true,
            identity: default_identity(),
            lease_namespace: "kube-system".to_string(),
            lease_name: "orca-scheduler".to_string(),
            // kube-scheduler's defaults.
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            bind_parallelism: 64,
            write_parallelism: 16,
        }
    }
}

pub use orca_leader_election::default_identity;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid scheduler configuration: {0}")]
    InvalidConfig(String),
}

/// Runs the scheduler until the future is dropped. With `leader_elect`, it
/// schedules only while holding the Lease and pauses (dropping in-flight
/// work) whenever leadership is lost.
pub async fn run(client: Client, config: Config) -> Result<(), Error> {
    run_until(client, config, std::future::pending()).await
}

/// As [`run`], until `shutdown` resolves; then the Lease is released, so
/// that another scheduler takes over at once rather than after it expires.
pub async fn run_until(
    client: Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    if config.bind_parallelism == 0 || config.write_parallelism == 0 {
        return Err(Error::InvalidConfig(
            "bind_parallelism and write_parallelism must be at least 1".into(),
        ));
    }
    if config.leader_elect && config.renew_deadline >= config.lease_duration {
        return Err(Error::InvalidConfig(format!(
            "renew_deadline ({:?}) must be shorter than lease_duration ({:?})",
            config.renew_deadline, config.lease_duration
        )));
    }
    // Outcome reports outlive a leadership term: a bind that succeeded
    // before stepping down is still reported.
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let writer = Writer::new(client.clone(), &config.scheduler_name, &config.identity);
    let reports = writer.run(rx, config.write_parallelism);
    let scheduling = async {
        if !config.leader_elect {
            schedule(client, &config, tx).await;
            return;
        }
        let mut lock = LeaseLock::new(
            client.clone(),
            LeaderElectionConfig {
                namespace: config.lease_namespace.clone(),
                name: config.lease_name.clone(),
                identity: config.identity.clone(),
                lease_duration: config.lease_duration,
                renew_deadline: config.renew_deadline,
                retry_period: config.retry_period,
            },
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = lock.acquire() => {}
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = schedule(client.clone(), &config, tx.clone()) => return,
                _ = lock.hold() => {
                    tracing::warn!(identity = %config.identity, "lost scheduler leadership; waiting to re-acquire it");
                }
            }
        }
        lock.release().await;
    };
    // Once scheduling ends its sender is gone: the reports of binds
    // already made are written, then they end too.
    tokio::join!(reports, scheduling);
    Ok(())
}

struct Shared {
    cache: Mutex<Cache>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Cache> {
        // Cache updates do not panic midway; if one did, carrying on with
        // the cache beats taking the whole control plane down.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One leadership term: fresh informers and cache, so nothing decided by a
/// previous term (or another leader meanwhile) is trusted.
async fn schedule(client: Client, config: &Config, tx: UnboundedSender<Write>) {
    let shared = Arc::new(Shared {
        cache: Mutex::new(Cache::new(&config.scheduler_name)),
        wake: Notify::new(),
    });
    tokio::join!(
        watch_nodes(client.clone(), &shared),
        watch_pods(client.clone(), &shared),
        schedule_loop(client, &shared, tx, config.bind_parallelism),
    );
}

async fn watch_nodes(client: Client, shared: &Shared) {
    let stream = watcher(Api::<Node>::all(client));
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!("watching nodes failed (retrying with backoff): {e}");
                continue;
            }
        };
        let now = Instant::now();
        let wake = {
            let mut c = shared.lock();
            match ev {
                Event::Init => {
                    c.nodes_relist_started();
                    false
                }
                Event::InitApply(n) | Event::Apply(n) => c.node_applied(&n, now),
                Event::Delete(n) => {
                    c.node_deleted(n.metadata.name.as_deref().unwrap_or_default());
                    false
                }
                Event::InitDone => c.nodes_relist_done(now),
            }
        };
        if wake {
            shared.wake.notify_one();
        }
    }
}

async fn watch_pods(client: Client, shared: &Shared) {
    let stream = watcher(Api::<Pod>::all(client));
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!("watching pods failed (retrying with backoff): {e}");
                continue;
            }
        };
        let now = Instant::now();
        let wake = {
            let mut c = shared.lock();
            match ev {
                Event::Init => {
                    c.pods_relist_started();
                    false
                }
                Event::InitApply(p) | Event::Apply(p) => c.pod_applied(p, now),
                Event::Delete(p) => c.pod_deleted(&p, now),
                Event::InitDone => c.pods_relist_done(now),
            }
        };
        if wake {
            shared.wake.notify_one();
        }
    }
}

fn watcher<K>(api: Api<K>) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

type BindOutcome = (PodInfo, String, Result<(), kube::Error>);

async fn bind(client: Client, pod: PodInfo, node: String) -> BindOutcome {
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let result = api
        .create_subresource::<serde_json::Value>(
            "binding",
            &pod.name,
            &PostParams::default(),
            binding.to_string().into_bytes(),
        )
        .await
        .map(|_| ());
    (pod, node, result)
}

fn failed_write(pod: &PodInfo, message: String) -> Write {
    let existing = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    let unchanged = existing.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message.as_str())
    });
    // The transition time moves only when the status does.
    let transition = existing
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(chrono::Utc::now()));
    Write::FailedScheduling {
        pod: PodRef::of(&pod.pod),
        message,
        condition: (!unchanged).then_some(transition),
    }
}

async fn schedule_loop(
    client: Client,
    shared: &Shared,
    tx: UnboundedSender<Write>,
    parallelism: usize,
) {
    let mut binds = FuturesUnordered::new();
    let mut next_flush = Instant::now() + STALE_FLUSH_INTERVAL;
    loop {
        // Decide as many pods as bind slots allow.
        while binds.len() < parallelism {
            let step = {
                let mut c = shared.lock();
                if !(c.pods_synced && c.nodes_synced) {
                    None
                } else {
                    let now = Instant::now();
                    c.queue.pop(now).map(|p| {
                        let d = c.schedule(&p, now);
                        (p, d)
                    })
                }
            };
            match step {
                None => break,
                Some((pod, Decision::Bind(node))) => binds.push(bind(client.clone(), pod, node)),
                Some((pod, Decision::Unschedulable(message))) => {
                    tracing::debug!(pod = %pod.key(), "unschedulable: {message}");
                    let _ = tx.unbounded_send(failed_write(&pod, message));
                }
            }
        }
        let now = Instant::now();
        let mut wake_at = next_flush;
        if let Some(t) = shared.lock().queue.next_backoff_expiry() {
            wake_at = wake_at.min(t);
        }
        tokio::select! {
            Some((pod, node, result)) = binds.next(), if !binds.is_empty() => {
                bound(shared, &tx, pod, node, result);
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at.max(now).into()) => {
                if Instant::now() >= next_flush {
                    shared.lock().queue.flush_stale_unschedulable(Instant::now());
                    next_flush = Instant::now() + STALE_FLUSH_INTERVAL;
                }
            }
        }
    }
}

fn bound(
    shared: &Shared,
    tx: &UnboundedSender<Write>,
    pod: PodInfo,
    node: String,
    result: Result<(), kube::Error>,
) {
    let err = match result {
        Ok(()) => {
            let _ = tx.unbounded_send(Write::Scheduled {
                pod: PodRef::of(&pod.pod),
                node,
            });
            return;
        }
        Err(e) => e,
    };
    let now = Instant::now();
    let mut c = shared.lock();
    let freed = c.forget(&pod.uid);
    let gone_or_taken = matches!(&err, kube::Error::Api(s) if s.code == 404 || s.code == 409);
    if gone_or_taken {
        // Deleted, or bound by someone else: the watch tells the rest.
        tracing::debug!(pod = %pod.key(), node = %node, "binding not applied: {err}");
        c.queue.remove(&pod.uid);
    } else {
        tracing::warn!(pod = %pod.key(), node = %node, "binding failed (will retry): {err}");
        c.queue.retry_later(&pod.uid, now);
        let _ = tx.unbounded_send(Write::FailedScheduling {
            pod: PodRef::of(&pod.pod),
            message: format!("Binding rejected: {err}"),
            condition: None,
        });
    }
    if freed {
        c.queue.move_all_unschedulable(now);
    }
    drop(c);
    shared.wake.notify_one();
}
