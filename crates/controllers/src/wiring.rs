//! What a controller's `run` wires up around its own logic, as kube-runtime's
//! Controller does: watches of every object of the kinds it reads, each
//! kept in a cache and mapping its objects to the keys to sync, one work
//! queue of those keys, and workers that start once every cache holds a
//! full list (client-go's `WaitForCacheSync`: a sync that sees a partial
//! list would, say, create pods that exist) and sync a failed key again
//! after a second.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use crate::pods;
use crate::queue::WorkQueue;

/// Most controllers' key: the namespace and name of the object synced.
pub type Key = (String, String);

/// A work queue's key, as logs name it.
pub trait QueueKey: Clone + Eq + Hash + Send + Sync + 'static {
    fn describe(&self) -> String;
}

impl QueueKey for Key {
    fn describe(&self) -> String {
        format!("{}/{}", self.0, self.1)
    }
}

/// The key of `o` itself.
pub fn key_of(o: &impl Resource) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// The key of `o`'s controller, if that is a `kind`.
pub fn controller_key(o: &impl Resource, kind: &str) -> Option<Key> {
    pods::controller_of(o.meta())
        .filter(|r| r.kind == kind)
        .map(|r| (o.namespace().unwrap_or_default(), r.name.clone()))
}

/// A failed sync is tried again after this.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A controller's watches and its work queue, to be run with its sync.
pub struct Wiring<K> {
    name: &'static str,
    informers: Client,
    queue: Arc<WorkQueue<K>>,
    rx: mpsc::UnboundedReceiver<K>,
    watches: Vec<BoxFuture<'static, ()>>,
    caches_synced: Vec<BoxFuture<'static, ()>>,
}

impl<K: QueueKey> Wiring<K> {
    /// For the controller `name` (in logs); lists and watches go through
    /// `informers`.
    pub fn new(name: &'static str, informers: Client) -> Self {
        let (queue, rx) = WorkQueue::new();
        Wiring {
            name,
            informers,
            queue: Arc::new(queue),
            rx,
            watches: Vec::new(),
            caches_synced: Vec::new(),
        }
    }

    /// Watches every `R` into the cache returned, and queues the keys
    /// `keys` maps each object listed, changed or deleted to.
    pub fn watch<R, I>(&mut self, keys: impl Fn(&R) -> I + Send + 'static) -> Store<R>
    where
        R: Watched,
        I: IntoIterator<Item = K>,
    {
        self.watch_events(move |ev: &Event<R>| match ev {
            Event::Apply(o) | Event::InitApply(o) | Event::Delete(o) => Some(keys(o)),
            Event::Init | Event::InitDone => None,
        })
    }

    /// [`Wiring::watch`] mapping each event, the start and end of a list
    /// included, to keys.
    pub fn watch_events<R, I>(
        &mut self,
        keys: impl Fn(&Event<R>) -> Option<I> + Send + 'static,
    ) -> Store<R>
    where
        R: Watched,
        I: IntoIterator<Item = K>,
    {
        let (store, writer) = reflector::store();
        let queue = self.queue.clone();
        let watch = watcher::watcher(Api::<R>::all(self.informers.clone()), Default::default())
            .default_backoff()
            .reflect(writer)
            .for_each(move |ev| {
                if let Ok(ev) = ev {
                    for key in keys(&ev).into_iter().flatten() {
                        queue.add(key);
                    }
                }
                futures::future::ready(())
            });
        self.watches.push(watch.boxed());
        let synced = store.clone();
        self.caches_synced.push(
            async move {
                let _ = synced.wait_until_ready().await;
            }
            .boxed(),
        );
        store
    }

    /// Watches every `R` into the cache returned, queuing nothing.
    pub fn cache<R: Watched>(&mut self) -> Store<R> {
        self.watch(|_: &R| None)
    }

    /// Runs the watches and, once every cache holds a full list, `sync`
    /// (given `ctx`) on the queued keys, `workers` at a time. A sync answers
    /// when to sync the key again, if time alone will change something.
    pub async fn run<C, F, Fut>(self, ctx: Arc<C>, workers: usize, sync: F)
    where
        C: Send + Sync + 'static,
        F: Fn(Arc<C>, K) -> Fut,
        Fut: Future<Output = anyhow::Result<Option<Duration>>> + Send + 'static,
    {
        let Wiring {
            name,
            queue,
            rx,
            watches,
            caches_synced,
            ..
        } = self;
        let work = async {
            futures::future::join_all(caches_synced).await;
            crate::queue::work(&queue, rx, workers, |key: K| {
                let synced = sync(ctx.clone(), key.clone());
                async move {
                    synced.await.unwrap_or_else(|e| {
                        tracing::warn!(
                            controller = name,
                            key = key.describe(),
                            "sync failed (will retry): {e:#}"
                        );
                        Some(RETRY_AFTER)
                    })
                }
            })
            .await
        };
        tokio::join!(futures::future::join_all(watches), work);
    }
}

/// What a watch can cache.
pub trait Watched:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + k8s_openapi::serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<R> Watched for R where
    R: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}
