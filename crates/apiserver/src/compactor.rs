//! Keeps the store's history bounded, as kube-apiserver does for etcd. Every
//! interval, history older than the revision seen one interval earlier is
//! forgotten: watchers can still resume from anything newer than that, and
//! older resourceVersions get 410 Gone, after which clients re-list.

use std::sync::Weak;
use std::time::Duration;

use orca_store::{Revision, Store};

use crate::cache::Cache;

pub async fn run(store: Weak<dyn Store>, cache: Weak<Cache>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<Revision> = None;
    loop {
        ticks.tick().await;
        // Held only for this step, so a shut-down server's store can close.
        let (Some(store), Some(cache)) = (store.upgrade(), cache.upgrade()) else {
            return;
        };
        let now = match store.current_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "compaction skipped: cannot read the store's revision");
                continue;
            }
        };
        // Never past what the watch cache has applied: its store watch must
        // stay resumable if it breaks.
        if let Some(target) = previous.map(|p| p.min(cache.revision())) {
            if target > 0 {
                match store.compact(target).await {
                    Ok(()) | Err(orca_store::Error::Compacted { .. }) => {
                        tracing::debug!(revision = target, "store history compacted")
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        revision = target,
                        "store compaction failed; retrying next interval"
                    ),
                }
            }
        }
        previous = Some(now);
    }
}
