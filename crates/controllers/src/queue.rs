//! A controller's work queue, as client-go's: each key waits once however
//! often it is added, a key being synced is not handed to a second worker
//! (it is synced again afterwards if added meanwhile), and a sync may ask to
//! run again after a delay.

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

pub struct WorkQueue<K> {
    tx: mpsc::UnboundedSender<K>,
    /// (waiting, being synced)
    state: Mutex<(HashSet<K>, HashSet<K>)>,
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new() -> (WorkQueue<K>, mpsc::UnboundedReceiver<K>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            WorkQueue {
                tx,
                state: Mutex::default(),
            },
            rx,
        )
    }

    pub fn add(&self, key: K) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0.insert(key.clone()) && !s.1.contains(&key) {
            let _ = self.tx.send(key);
        }
    }

    fn start(&self, key: &K) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.1.contains(key) || !s.0.remove(key) {
            return false;
        }
        s.1.insert(key.clone());
        true
    }

    fn done(&self, key: &K) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1.remove(key);
        if s.0.contains(key) {
            let _ = self.tx.send(key.clone());
        }
    }
}

/// Runs `sync` on queued keys, `workers` at a time, until the queue's
/// sender is dropped; a sync returning a delay is queued again after it.
pub async fn work<K, F, Fut>(
    queue: &Arc<WorkQueue<K>>,
    mut rx: mpsc::UnboundedReceiver<K>,
    workers: usize,
    sync: F,
) where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    F: Fn(K) -> Fut,
    Fut: Future<Output = Option<Duration>> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(workers));
    while let Some(key) = rx.recv().await {
        if !queue.start(&key) {
            continue;
        }
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let queue = queue.clone();
        let fut = sync(key.clone());
        tokio::spawn(async move {
            let retry = fut.await;
            queue.done(&key);
            drop(permit);
            if let Some(after) = retry {
                tokio::time::sleep(after).await;
                queue.add(key);
            }
        });
    }
}
