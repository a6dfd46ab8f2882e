//! The namespaces that exist from the start, and the clean-up that empties a
//! deleted namespace before removing it (Kubernetes' namespace controller).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde_json::{json, Value};

use crate::handlers::{self, now, Ctx};
use crate::resources::{self, RESOURCES};
use crate::server::{Query, State};

pub const INITIAL: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

pub async fn bootstrap(state: &Arc<State>) -> Result<(), orca_store::Error> {
    let def = resources::namespaces();
    for name in INITIAL {
        let key = def.key(None, name);
        if state.store.get(&key).await?.is_some() {
            continue;
        }
        let mut v = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now()},
        });
        if let Err(e) = def.strategy.prepare_create(def, &mut v) {
            tracing::error!(name, error = %e.message, "built-in namespace failed validation");
            continue;
        }
        match state
            .store
            .create(&key, serde_json::to_vec(&v).unwrap_or_default())
            .await
        {
            Ok(kv) => state.cache.wait_for(kv.mod_revision).await,
            Err(orca_store::Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes everything in namespace `ns` (pods gracefully), then the
/// namespace itself. Runs until done, as Kubernetes does.
pub fn spawn_cleanup(state: Arc<State>, ns: String) {
    tokio::spawn(async move {
        let headers = HeaderMap::new();
        let query = Query::new();
        let user = crate::auth::UserInfo::apiserver();
        loop {
            let mut left = 0;
            for def in RESOURCES.iter().filter(|d| d.namespaced) {
                let (objs, _) = state.cache.resource(def).list(&def.ns_prefix(Some(&ns)));
                left += objs.len();
                let ctx = Ctx {
                    state: &state,
                    def,
                    namespace: Some(&ns),
                    query: &query,
                    headers: &headers,
                    user: &user,
                };
                for o in objs {
                    let v: Value = serde_json::from_slice(&o.bytes).unwrap_or(Value::Null);
                    if !v["metadata"]["deletionTimestamp"].is_null() {
                        continue;
                    }
                    if let Err(e) = handlers::delete(&ctx, &o.meta.name, b"").await {
                        if e.code != 404 {
                            tracing::warn!(
                                namespace = ns,
                                name = o.meta.name,
                                error = e.message,
                                "namespace clean-up could not delete an object"
                            );
                        }
                    }
                }
            }
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let def = resources::namespaces();
        let key = def.key(None, &ns);
        if let Ok(Some(kv)) = state.store.get(&key).await {
            match state.store.delete(&key, Some(kv.mod_revision)).await {
                Ok((_, rev)) => state.cache.wait_for(rev).await,
                Err(e) => {
                    tracing::warn!(namespace = ns, error = %e, "could not remove the emptied namespace")
                }
            }
        }
    });
}
