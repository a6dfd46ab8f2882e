//! The store: an MVCC key-value contract shaped like etcd v3, which is what
//! Kubernetes' API server needs. Every write gets a store-wide revision (the
//! API's `resourceVersion`), updates are compare-and-swap on a key's
//! `mod_revision`, and watches replay every change after a given revision.
//!
//! Two backends implement [`Store`]: an embedded SQLite log (default) and etcd.

use std::pin::Pin;

pub mod etcd;
pub mod sqlite;

use futures::Stream;

/// A store-wide, strictly increasing write counter. 0 means "nothing yet".
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last delete).
    pub create_revision: Revision,
    /// Revision of the write that produced this value.
    pub mod_revision: Revision,
}

/// One change seen by a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A create (`prev` is `None`) or an update (`prev` is the value replaced).
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A delete. `prev` is the value that was deleted; `revision` is the
    /// revision of the delete itself.
    Delete { prev: KeyValue, revision: Revision },
}

impl WatchEvent {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// At most this many keys (0 = no limit).
    pub limit: usize,
    /// Only keys strictly greater than this one (a continuation).
    pub start_after: Option<String>,
    /// Read at this revision instead of the newest (so a paginated list is
    /// consistent). Errors with [`Error::Compacted`] if compacted away.
    pub revision: Option<Revision>,
}

/// One page of a list.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub kvs: Vec<KeyValue>,
    /// The revision the page was read at.
    pub revision: Revision,
    /// True when more keys match after the last one returned.
    pub more: bool,
}

/// Size and health of a backend, for `/readyz` and operators.
#[derive(Clone, Debug)]
pub struct StoreStatus {
    pub backend: &'static str,
    pub revision: Revision,
    pub compact_revision: Revision,
    pub db_size_bytes: u64,
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// The key's current mod revision is not the expected one.
    #[error("key {key} was modified: expected revision {expected}, current is {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// The requested revision is older than the oldest one kept (for a
    /// watch, `requested` is the first revision it needs: `after + 1`).
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision has not been written yet.
    #[error("revision {requested} is in the future; the current revision is {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The contract both backends implement. Keys are UTF-8 paths such as
/// `/registry/pods/default/web`; values are opaque bytes.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys starting with `prefix`, in key order, read at one revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage>;
    /// Fails with [`Error::AlreadyExists`] if the key exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;
    /// Compare-and-swap: succeeds only if the key's mod revision is `expected`.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;
    /// Deletes the key (only if its mod revision is `expected`, when given).
    /// Returns the deleted value and the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;
    async fn current_revision(&self) -> Result<Revision>;
    /// Every change to keys under `prefix` with revision > `after`, in order,
    /// then live changes. If `after` is too old, [`Error::Compacted`] comes
    /// either from this call or as the stream's last item (etcd only learns
    /// it after the watch is set up). A watch ends with an error item if the
    /// backend can no longer follow (e.g. it fell behind a compaction).
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;
    /// Forgets history before `revision`, as etcd does: afterwards lists at
    /// older revisions and watches needing events older than `revision`
    /// (`after < revision - 1`) fail with [`Error::Compacted`]; the state at
    /// `revision` and every later event are kept. Compacting to an already
    /// compacted revision is a no-op.
    async fn compact(&self, revision: Revision) -> Result<()>;
    async fn status(&self) -> Result<StoreStatus>;
}

/// The first byte string greater than every string starting with `prefix`
/// (`None`: no upper bound).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_revision_is_the_write_revision() {
        let kv = KeyValue {
            key: "/a".into(),
            value: b"1".to_vec(),
            create_revision: 3,
            mod_revision: 5,
        };
        assert_eq!(
            WatchEvent::Put {
                kv: kv.clone(),
                prev: None
            }
            .revision(),
            5
        );
        assert_eq!(
            WatchEvent::Delete {
                prev: kv,
                revision: 7
            }
            .revision(),
            7
        );
    }

    #[test]
    fn prefix_end_is_the_next_byte_string() {
        assert_eq!(prefix_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
