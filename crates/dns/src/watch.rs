//! Keeping the index current from the API server: one watch of Services and
//! one of EndpointSlices (those of a Service). No pods are watched: pod
//! records are answered from the name, and pods' `hostname`/`subdomain`
//! records come from the hostname the EndpointSlice controller sets.

use std::fmt::Debug;
use std::sync::PoisonError;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tracing::{info, warn};

use crate::index::{ClusterIndex, SharedIndex};
use crate::records::SERVICE_NAME_LABEL;

/// Applies Service and EndpointSlice changes to `index` until the watches
/// end (they retry with backoff, so only when dropped).
pub async fn feed_index(client: Client, index: SharedIndex) {
    let services = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let slices = watcher(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
    );
    tokio::join!(
        follow(
            services,
            &index,
            "Services",
            ClusterIndex::apply_service,
            ClusterIndex::delete_service,
            ClusterIndex::replace_services,
        ),
        follow(
            slices,
            &index,
            "EndpointSlices",
            ClusterIndex::apply_endpoint_slice,
            ClusterIndex::delete_endpoint_slice,
            ClusterIndex::replace_endpoint_slices,
        ),
    );
}

async fn follow<K: Clone + Debug + Send + 'static>(
    events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    index: &SharedIndex,
    what: &str,
    apply: fn(&mut ClusterIndex, &K),
    delete: fn(&mut ClusterIndex, &K),
    replace: fn(&mut ClusterIndex, &[K]),
) {
    let events = events.default_backoff();
    futures::pin_mut!(events);
    // A (re)list arrives piecewise; it replaces the index's view at its end.
    let mut listing: Option<Vec<K>> = None;
    let write = || index.write().unwrap_or_else(PoisonError::into_inner);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listing = Some(Vec::new()),
            Ok(Event::InitApply(object)) => listing.get_or_insert_with(Vec::new).push(object),
            Ok(Event::InitDone) => {
                let objects = listing.take().unwrap_or_default();
                replace(&mut write(), &objects);
                info!("cluster DNS: {} {what} listed", objects.len());
            }
            Ok(Event::Apply(object)) => apply(&mut write(), &object),
            Ok(Event::Delete(object)) => delete(&mut write(), &object),
            Err(e) => warn!(
                "cluster DNS: watching {what} failed: {e}; retrying (answers keep the \
                 last known records meanwhile)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use hickory_server::proto::rr::{LowerName, Name, RecordType};
    use serde_json::json;

    use super::*;
    use crate::index::Lookup;

    fn service(name: &str, ip: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": ip},
        }))
        .unwrap()
    }

    fn exists(index: &SharedIndex, name: &str) -> bool {
        let name = LowerName::new(&Name::from_ascii(name).unwrap());
        matches!(
            index.read().unwrap().lookup(&name, RecordType::A),
            Lookup::Found(_)
        )
    }

    /// A relist replaces what the index had: a Service deleted while the
    /// watch was down goes away with the relist's end.
    #[tokio::test]
    async fn lists_and_relists_replace_and_events_apply() {
        let index: SharedIndex = Arc::new(RwLock::new(
            ClusterIndex::new("cluster.local", 5, "10.43.0.10".parse().unwrap()).unwrap(),
        ));
        index.write().unwrap().replace_endpoint_slices(&[]);
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(service("a", "10.43.0.1"))),
            Ok(Event::InitApply(service("b", "10.43.0.2"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(service("c", "10.43.0.3"))),
            Ok(Event::Delete(service("b", "10.43.0.2"))),
            // The watch broke and relisted: `a` is gone meanwhile.
            Ok(Event::Init),
            Ok(Event::InitApply(service("c", "10.43.0.3"))),
            Ok(Event::InitDone),
        ]);
        follow(
            events,
            &index,
            "Services",
            ClusterIndex::apply_service,
            ClusterIndex::delete_service,
            ClusterIndex::replace_services,
        )
        .await;
        assert!(index.read().unwrap().is_synced());
        assert!(!exists(&index, "a.default.svc.cluster.local."));
        assert!(!exists(&index, "b.default.svc.cluster.local."));
        assert!(exists(&index, "c.default.svc.cluster.local."));
    }
}
