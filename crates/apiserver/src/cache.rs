//! The watch cache: one store watch over `/registry/` keeps an in-memory copy
//! of every object (as ready-to-send JSON with its resourceVersion) plus a
//! window of recent events. Lists and watches are served from here, so a
//! thousand watchers cost one store watch.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use orca_store::{Revision, Store, WatchEvent};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::resources::{self, ResourceDef, RESOURCES};
use crate::selectors::{self, Fields, Labels};

/// How many past events each resource keeps for watches that start from an
/// older resourceVersion. Older starts fall back to a store watch.
const HISTORY: usize = 2_000;
/// Events a slow watcher may fall behind before its watch is closed (it
/// re-watches from its last resourceVersion, as Kubernetes clients do).
const FANOUT: usize = 4_096;
/// Snapshots of paginated lists kept per resource, and for how long: later
/// pages are cut from them. A continue token whose snapshot is gone is
/// served from the store at the token's revision instead.
const SNAPSHOTS: usize = 4;
const SNAPSHOT_TTL: Duration = Duration::from_secs(60);

/// What selectors look at, extracted once per object version.
pub struct ObjMeta {
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub labels: Labels,
    pub fields: Fields,
}

pub struct CachedObj {
    pub key: Box<str>,
    /// The object as JSON, resourceVersion included.
    pub bytes: Bytes,
    pub meta: Arc<ObjMeta>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

pub struct CacheEvent {
    pub kind: EventType,
    pub rev: Revision,
    /// The new version, or for a delete the last version (its
    /// resourceVersion set to the delete's revision).
    pub obj: Arc<CachedObj>,
    /// The previous version's summary (not its bytes, which can go).
    pub prev: Option<Arc<ObjMeta>>,
}

struct ResourceState {
    objects: BTreeMap<String, Arc<CachedObj>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Events with revision > this are all in `history`.
    history_floor: Revision,
}

/// The objects under a prefix at one revision, sorted by key.
pub struct Snapshot {
    pub rev: Revision,
    prefix: Box<str>,
    objs: Vec<Arc<CachedObj>>,
    taken: Instant,
}

impl Snapshot {
    /// The objects under `prefix` (which must lie within this snapshot's
    /// prefix) whose keys sort after `after`.
    pub fn range(&self, prefix: &str, after: Option<&str>) -> &[Arc<CachedObj>] {
        let lo = self
            .objs
            .partition_point(|o| &*o.key < prefix || after.is_some_and(|a| &*o.key <= a));
        let rest = &self.objs[lo..];
        &rest[..rest.partition_point(|o| o.key.starts_with(prefix))]
    }

    fn covers(&self, prefix: &str, rev: Revision) -> bool {
        self.rev == rev && prefix.starts_with(&*self.prefix) && self.taken.elapsed() < SNAPSHOT_TTL
    }
}

pub struct ResourceCache {
    pub def: &'static ResourceDef,
    state: RwLock<ResourceState>,
    snapshots: Mutex<VecDeque<Arc<Snapshot>>>,
    tx: broadcast::Sender<Arc<CacheEvent>>,
    /// Shared with [`Cache`]; bumped while the resource lock is held so a
    /// snapshot and the revision read under that lock agree.
    revision: Arc<watch::Sender<Revision>>,
}

pub struct Cache {
    by_name: HashMap<&'static str, Arc<ResourceCache>>,
    revision: Arc<watch::Sender<Revision>>,
    store: Arc<dyn Store>,
    hooks: Vec<Arc<dyn CacheHook>>,
}

/// Something kept in step with the cache (the RBAC index, the node
/// authorizer's graph): told of every change to the resources it wants,
/// under the cache's lock, before a write's answer is sent. It must not
/// call back into the cache.
pub trait CacheHook: Send + Sync {
    fn wants(&self, def: &ResourceDef) -> bool;
    /// `obj` is the new version, `None` when `key` was deleted.
    fn changed(&self, def: &'static ResourceDef, key: &str, obj: Option<&CachedObj>);
}

/// Parses stored bytes and sets metadata.resourceVersion.
pub fn decode_with_rv(value: &[u8], rev: Revision) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(value).ok()?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
    Some(v)
}

pub fn meta_of(def: &'static ResourceDef, v: &Value) -> ObjMeta {
    let md = &v["metadata"];
    ObjMeta {
        namespace: md["namespace"].as_str().unwrap_or_default().into(),
        name: md["name"].as_str().unwrap_or_default().into(),
        labels: selectors::labels_of(v),
        fields: selectors::field_set(def, v),
    }
}

pub fn build(
    def: &'static ResourceDef,
    key: &str,
    value: &[u8],
    rev: Revision,
) -> Option<Arc<CachedObj>> {
    // Only the summary's fields are decoded; the stored bytes get the
    // resourceVersion spliced in. Objects stored with one (not written by
    // this server) take the slow path that replaces it.
    let mut paths = vec![
        "metadata.name",
        "metadata.namespace",
        "metadata.labels",
        "metadata.resourceVersion",
    ];
    paths.extend(orca_api::selectors::supported_fields(def.kind));
    let summary = crate::rawjson::pruned(value, &paths).ok()?;
    let spliced = match summary["metadata"].get("resourceVersion") {
        None => {
            crate::rawjson::insert_first(value, "metadata", "resourceVersion", &rev.to_string())
        }
        Some(_) => None,
    };
    let bytes = match spliced {
        Some(b) => b,
        None => serde_json::to_vec(&decode_with_rv(value, rev)?).ok()?,
    };
    Some(Arc::new(CachedObj {
        key: key.into(),
        bytes: Bytes::from(bytes),
        meta: Arc::new(meta_of(def, &summary)),
    }))
}

impl Cache {
    /// Loads every object and starts following the store.
    pub async fn start(
        store: Arc<dyn Store>,
        hooks: Vec<Arc<dyn CacheHook>>,
    ) -> Result<Arc<Cache>, orca_store::Error> {
        let revision = Arc::new(watch::channel(0).0);
        let by_name = RESOURCES
            .iter()
            .map(|def| {
                (
                    def.name,
                    Arc::new(ResourceCache {
                        def,
                        state: RwLock::new(ResourceState {
                            objects: BTreeMap::new(),
                            history: VecDeque::new(),
                            history_floor: 0,
                        }),
                        tx: broadcast::channel(FANOUT).0,
                        snapshots: Mutex::new(VecDeque::new()),
                        revision: revision.clone(),
                    }),
                )
            })
            .collect();
        let cache = Arc::new(Cache {
            by_name,
            revision,
            store,
            hooks,
        });
        let rev = cache.load().await?;
        let stream = cache.store.watch("/registry/", rev).await?;
        let weak = Arc::downgrade(&cache);
        tokio::spawn(follow(weak, stream));
        Ok(cache)
    }

    /// Lists everything at one revision into the caches; returns the revision.
    async fn load(&self) -> Result<Revision, orca_store::Error> {
        let mut opts = orca_store::ListOptions {
            limit: 5000,
            ..Default::default()
        };
        let mut at = None;
        loop {
            opts.revision = at;
            let page = self.store.list("/registry/", opts.clone()).await?;
            at = Some(page.revision);
            for kv in &page.kvs {
                if let Some(def) = resources::by_prefix(&kv.key) {
                    if let Some(obj) = build(def, &kv.key, &kv.value, kv.mod_revision) {
                        self.notify(def, &kv.key, Some(&obj));
                        let rc = &self.by_name[def.name];
                        rc.state
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .objects
                            .insert(kv.key.clone(), obj);
                    }
                }
            }
            if !page.more || page.kvs.is_empty() {
                break;
            }
            opts.start_after = page.kvs.last().map(|kv| kv.key.clone());
        }
        let rev = at.unwrap_or(0);
        for rc in self.by_name.values() {
            rc.state
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .history_floor = rev;
        }
        self.revision.send_replace(rev);
        Ok(rev)
    }

    pub fn resource(&self, def: &ResourceDef) -> &Arc<ResourceCache> {
        &self.by_name[def.name]
    }

    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache has seen revision `rev` (a write we just made),
    /// so a client that got our answer then lists sees its own write.
    pub async fn wait_for(&self, rev: Revision) {
        if !self.wait_until(rev, Duration::from_secs(5)).await {
            tracing::warn!(rev, "watch cache did not catch up with the store within 5s");
        }
    }

    /// Waits at most `timeout` for the cache to reach revision `rev`; false
    /// if it did not.
    pub async fn wait_until(&self, rev: Revision, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        let wait = rx.wait_for(|r| *r >= rev);
        tokio::time::timeout(timeout, wait)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn notify(&self, def: &'static ResourceDef, key: &str, obj: Option<&CachedObj>) {
        for h in self.hooks.iter().filter(|h| h.wants(def)) {
            h.changed(def, key, obj);
        }
    }

    fn apply(&self, ev: WatchEvent) {
        let (key, rev) = match &ev {
            WatchEvent::Put { kv, .. } => (kv.key.clone(), kv.mod_revision),
            WatchEvent::Delete { prev, revision } => (prev.key.clone(), *revision),
        };
        if let Some(def) = resources::by_prefix(&key) {
            let rc = &self.by_name[def.name];
            let mut st = rc.state.write().unwrap_or_else(|e| e.into_inner());
            let prev = st.objects.get(&key).map(|o| o.meta.clone());
            let event = match ev {
                WatchEvent::Put { kv, .. } => match build(def, &key, &kv.value, rev) {
                    Some(obj) => {
                        self.notify(def, &key, Some(&obj));
                        st.objects.insert(key.clone(), obj.clone());
                        Some(CacheEvent {
                            kind: if prev.is_some() {
                                EventType::Modified
                            } else {
                                EventType::Added
                            },
                            rev,
                            obj,
                            prev,
                        })
                    }
                    None => {
                        tracing::warn!(key, "undecodable object in store; skipped");
                        None
                    }
                },
                WatchEvent::Delete { prev: old, .. } => {
                    self.notify(def, &key, None);
                    st.objects.remove(&key);
                    build(def, &key, &old.value, rev).map(|obj| CacheEvent {
                        kind: EventType::Deleted,
                        rev,
                        obj,
                        prev,
                    })
                }
            };
            if let Some(event) = event {
                let event = Arc::new(event);
                st.history.push_back(event.clone());
                while st.history.len() > HISTORY {
                    if let Some(old) = st.history.pop_front() {
                        st.history_floor = old.rev;
                    }
                }
                // Sent under the lock so a watcher subscribing under the same
                // lock sees each event exactly once (history or channel).
                let _ = rc.tx.send(event);
            }
            self.revision.send_replace(rev);
            return;
        }
        self.revision.send_replace(rev);
    }
}

async fn follow(cache: std::sync::Weak<Cache>, mut stream: orca_store::WatchStream) {
    loop {
        match stream.next().await {
            Some(Ok(ev)) => match cache.upgrade() {
                Some(c) => c.apply(ev),
                None => return,
            },
            other => {
                let Some(c) = cache.upgrade() else { return };
                if let Some(Err(e)) = other {
                    tracing::error!(error = %e, "store watch failed; re-watching");
                }
                let from = c.revision();
                tokio::time::sleep(Duration::from_millis(200)).await;
                match c.store.watch("/registry/", from).await {
                    Ok(s) => stream = s,
                    Err(e) => {
                        tracing::error!(error = %e, from, "cannot re-watch the store");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }
}

/// A subscription: events with revision > `from` that were in the history,
/// then the live channel.
pub struct Subscription {
    pub backlog: Vec<Arc<CacheEvent>>,
    pub rx: broadcast::Receiver<Arc<CacheEvent>>,
}

impl ResourceCache {
    /// Objects under `prefix` and the cache revision they were read at.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<CachedObj>>, Revision) {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let objs = st
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (objs, *self.revision.borrow())
    }

    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// How many objects the resource has.
    pub fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .objects
            .len()
    }

    /// The objects under `prefix` now, as a snapshot (a kept one when
    /// nothing changed since it was taken, saving the copy).
    pub fn snapshot(&self, prefix: &str) -> Arc<Snapshot> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let rev = *self.revision.borrow();
        self.kept(prefix, rev)
            .unwrap_or_else(|| Arc::new(Self::collect(&st, prefix, rev)))
    }

    /// The objects under `prefix` at revision `rev`: a kept snapshot, or the
    /// live objects if the cache is still at `rev`. `None` when the cache
    /// cannot answer for that revision (the caller reads the store).
    pub fn snapshot_at(&self, prefix: &str, rev: Revision) -> Option<Arc<Snapshot>> {
        if let Some(s) = self.kept(prefix, rev) {
            return Some(s);
        }
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        // Under the resource lock: every change to this resource bumps the
        // revision while holding it, so an unchanged revision means
        // unchanged objects.
        (*self.revision.borrow() == rev).then(|| Arc::new(Self::collect(&st, prefix, rev)))
    }

    /// Keeps `snap` for the later pages of its list.
    pub fn keep(&self, snap: &Arc<Snapshot>) {
        let mut kept = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|s| s.taken.elapsed() < SNAPSHOT_TTL);
        if kept.iter().any(|s| Arc::ptr_eq(s, snap)) {
            return;
        }
        if kept.len() == SNAPSHOTS {
            kept.pop_front();
        }
        kept.push_back(snap.clone());
    }

    fn kept(&self, prefix: &str, rev: Revision) -> Option<Arc<Snapshot>> {
        let kept = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().rev().find(|s| s.covers(prefix, rev)).cloned()
    }

    fn collect(st: &ResourceState, prefix: &str, rev: Revision) -> Snapshot {
        Snapshot {
            rev,
            prefix: prefix.into(),
            objs: st
                .objects
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, v)| v.clone())
                .collect(),
            taken: Instant::now(),
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObj>> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .objects
            .get(key)
            .cloned()
    }

    /// Subscribes to events after `from`. `None` when `from` is older than the
    /// history window (the caller then watches the store itself).
    pub fn subscribe(&self, from: Revision) -> Option<Subscription> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        if from < st.history_floor {
            return None;
        }
        let backlog = st
            .history
            .iter()
            .filter(|e| e.rev > from)
            .cloned()
            .collect();
        Some(Subscription {
            backlog,
            rx: self.tx.subscribe(),
        })
    }

    /// A snapshot of all objects plus a subscription for what follows, taken
    /// atomically (for watches that start with the current state).
    pub fn snapshot_and_subscribe(
        &self,
        prefix: &str,
    ) -> (Vec<Arc<CachedObj>>, Revision, Subscription) {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let rev = *self.revision.borrow();
        let objs = st
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (
            objs,
            rev,
            Subscription {
                backlog: Vec::new(),
                rx: self.tx.subscribe(),
            },
        )
    }

    pub fn build_obj(&self, key: &str, value: &[u8], rev: Revision) -> Option<Arc<CachedObj>> {
        build(self.def, key, value, rev)
    }
}
