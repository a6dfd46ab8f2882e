//! etcd v3 backend: revisions are etcd's, compare-and-swap is a Txn on the
//! key's mod_revision, watches are etcd watches with `prev_kv`, compaction is
//! etcd's own. The gRPC client is in-tree ([`client`], [`wire`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::Status;

use self::client::Client;
use self::wire::{
    CompactionRequest, Compare, CompareResult, DeleteRangeRequest, EventType, PutRequest,
    RangeRequest, Request, RequestOp, Response, ResponseHeader, TargetUnion, TxnRequest,
    WatchCreateRequest,
};
use crate::{
    prefix_end, Error, KeyValue, ListOptions, ListPage, Result, Revision, Store, StoreStatus,
    WatchEvent, WatchStream,
};

mod client;
mod wire;

/// Limit for one unary request; watches are long-lived and have none.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for etcd to name its compact revision (see
/// [`EtcdStore::discover_compact_revision`]).
const COMPACT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

// etcd's gRPC error messages (etcdserver/api/v3rpc/rpctypes).
const ERR_COMPACTED: &str = "required revision has been compacted";
const ERR_FUTURE_REV: &str = "required revision is a future revision";

/// The etcd store. Cheap to clone; usable as `Arc<dyn Store>`.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: Arc<str>,
    /// Newest compact revision this client knows of (etcd has no call that
    /// reports it directly).
    compact_revision: Arc<AtomicI64>,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (URLs such as `http://127.0.0.1:2379`;
    /// an entry may hold several, comma-separated, as `--datastore-endpoint`
    /// does) and checks that it answers.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        let list: Vec<String> = endpoints
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(String::from)
            .collect();
        if list.is_empty() {
            return Err(Error::Unavailable(
                "no etcd endpoint given; pass e.g. --datastore-endpoint http://127.0.0.1:2379"
                    .into(),
            ));
        }
        let joined: Arc<str> = list.join(",").into();
        let client = Client::new(&list).map_err(|e| unavailable(&joined, "connecting", "", e))?;
        let store = EtcdStore {
            client,
            endpoints: joined,
            compact_revision: Arc::new(AtomicI64::new(0)),
        };
        store.current_revision().await?;
        Ok(store)
    }

    async fn call<T, F>(&self, what: &str, key: &str, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T, Status>>,
    {
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(what, key, e)),
            Err(_) => Err(Error::Unavailable(format!(
                "etcd at {}: {what} {key}: no answer within {REQUEST_TIMEOUT:?}; \
                 check that etcd is running and reachable",
                self.endpoints
            ))),
        }
    }

    /// Maps an etcd error; compaction and future-revision errors get
    /// placeholder numbers that the caller fills in.
    fn classify(&self, what: &str, key: &str, status: Status) -> Error {
        if status.message().contains(ERR_COMPACTED) {
            return Error::Compacted {
                requested: 0,
                compacted: 0,
            };
        }
        if status.message().contains(ERR_FUTURE_REV) {
            return Error::FutureRevision {
                requested: 0,
                current: 0,
            };
        }
        unavailable(&self.endpoints, what, key, status)
    }

    /// etcd reports its compact revision only to a watch that starts before
    /// it: start one at revision 1 on an unused key and read the answer.
    async fn discover_compact_revision(&self) -> Revision {
        let known = self.compact_revision.load(Ordering::SeqCst);
        let probe = async {
            let mut watch = self
                .client
                .watch(WatchCreateRequest {
                    key: b"\0orca-compact-probe".to_vec(),
                    start_revision: 1,
                    ..Default::default()
                })
                .await
                .ok()?;
            while let Ok(Some(resp)) = watch.message().await {
                if resp.compact_revision > 0 {
                    return Some(resp.compact_revision);
                }
                if resp.canceled {
                    break;
                }
            }
            None
        };
        let found = tokio::time::timeout(COMPACT_PROBE_TIMEOUT, probe)
            .await
            .ok()
            .flatten()
            .unwrap_or(known);
        self.compact_revision.fetch_max(found, Ordering::SeqCst);
        found.max(known)
    }

    async fn get_raw(&self, key: &str) -> Result<Option<KeyValue>> {
        let range = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let resp = self.call("get", key, self.client.range(range)).await?;
        Ok(resp.kvs.into_iter().next().map(convert_kv))
    }

    /// The answer for a failed compare on `key`: it is gone, or it moved on.
    async fn conflict(&self, key: &str, expected: Revision) -> Error {
        match self.get_raw(key).await {
            Ok(None) => Error::NotFound(key.to_owned()),
            Ok(Some(kv)) => Error::Conflict {
                key: key.to_owned(),
                expected,
                current: kv.mod_revision,
            },
            Err(e) => e,
        }
    }
}

fn unavailable(endpoints: &str, what: &str, key: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!(
        "etcd at {endpoints}: {what} {key}: {e}; check that etcd is running and reachable"
    ))
}

fn convert_kv(kv: wire::KeyValue) -> KeyValue {
    KeyValue {
        key: key_string(kv.key),
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
    }
}

/// Keys only ever enter as `&str`, so this is lossless.
fn key_string(key: Vec<u8>) -> String {
    String::from_utf8(key).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn header_revision(header: Option<&ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision)
        .ok_or_else(|| Error::Internal("etcd answered without a response header".into()))
}

/// A transaction of one compare and the operation done if it holds.
fn txn(compare: Compare, op: Request) -> TxnRequest {
    TxnRequest {
        compare: vec![compare],
        success: vec![RequestOp { request: Some(op) }],
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.get_raw(key).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage> {
        let mut start = prefix.as_bytes().to_vec();
        if let Some(after) = &opts.start_after {
            // The smallest key after `after`.
            let mut next = after.as_bytes().to_vec();
            next.push(0);
            start = start.max(next);
        }
        if start.is_empty() {
            start.push(0);
        }
        // "\0" as the range end means "no upper bound" to etcd.
        let end = prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0]);
        let requested = opts.revision.filter(|r| *r > 0);
        let range = RangeRequest {
            key: start,
            range_end: end,
            limit: opts.limit as i64,
            revision: requested.unwrap_or(0),
            ..Default::default()
        };
        let resp = match self.call("list", prefix, self.client.range(range)).await {
            Ok(resp) => resp,
            Err(Error::Compacted { .. }) => {
                return Err(Error::Compacted {
                    requested: requested.unwrap_or(0),
                    compacted: self.discover_compact_revision().await,
                })
            }
            Err(Error::FutureRevision { .. }) => {
                return Err(Error::FutureRevision {
                    requested: requested.unwrap_or(0),
                    current: self.current_revision().await?,
                })
            }
            Err(e) => return Err(e),
        };
        let revision = match requested {
            Some(r) => r,
            None => header_revision(resp.header.as_ref())?,
        };
        Ok(ListPage {
            kvs: resp.kvs.into_iter().map(convert_kv).collect(),
            revision,
            more: resp.more,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let txn = txn(
            Compare::new(key, CompareResult::Equal, TargetUnion::CreateRevision(0)),
            Request::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.clone(),
                prev_kv: false,
            }),
        );
        let resp = self.call("create", key, self.client.txn(txn)).await?;
        if !resp.succeeded {
            return Err(Error::AlreadyExists(key.to_owned()));
        }
        let revision = header_revision(resp.header.as_ref())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        if expected <= 0 {
            // No existing key has such a revision; a compare on it would
            // instead match a missing key and create it.
            return Err(self.conflict(key, expected).await);
        }
        let txn = txn(
            Compare::new(
                key,
                CompareResult::Equal,
                TargetUnion::ModRevision(expected),
            ),
            Request::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.clone(),
                prev_kv: true,
            }),
        );
        let resp = self.call("update", key, self.client.txn(txn)).await?;
        if !resp.succeeded {
            return Err(self.conflict(key, expected).await);
        }
        let create_revision = resp
            .responses
            .iter()
            .find_map(|r| match &r.response {
                Some(Response::Put(p)) => p.prev_kv.as_ref().map(|kv| kv.create_revision),
                _ => None,
            })
            .ok_or_else(|| {
                Error::Internal(format!("etcd put of {key} returned no previous value"))
            })?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: header_revision(resp.header.as_ref())?,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let compare = match expected {
            Some(e) if e <= 0 => return Err(self.conflict(key, e).await),
            Some(e) => Compare::new(key, CompareResult::Equal, TargetUnion::ModRevision(e)),
            None => Compare::new(key, CompareResult::Greater, TargetUnion::Version(0)),
        };
        let txn = txn(
            compare,
            Request::DeleteRange(DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                prev_kv: true,
            }),
        );
        let resp = self.call("delete", key, self.client.txn(txn)).await?;
        if !resp.succeeded {
            return Err(match expected {
                Some(e) => self.conflict(key, e).await,
                None => Error::NotFound(key.to_owned()),
            });
        }
        let revision = header_revision(resp.header.as_ref())?;
        let prev = resp
            .responses
            .into_iter()
            .find_map(|r| match r.response {
                Some(Response::DeleteRange(d)) => d.prev_kvs.into_iter().next().map(convert_kv),
                _ => None,
            })
            // The compare guaranteed the key existed.
            .ok_or_else(|| Error::NotFound(key.to_owned()))?;
        Ok((prev, revision))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let range = RangeRequest {
            key: vec![0],
            count_only: true,
            ..Default::default()
        };
        let resp = self
            .call("reading the revision", "", self.client.range(range))
            .await?;
        header_revision(resp.header.as_ref())
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // "\0" as both ends is every key to etcd.
        let key = match prefix {
            "" => vec![0],
            p => p.as_bytes().to_vec(),
        };
        let create = WatchCreateRequest {
            range_end: prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0]),
            key,
            start_revision: after + 1,
            prev_kv: true,
        };
        let mut responses = self
            .call("watch", prefix, self.client.watch(create))
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let store = self.clone();
        let prefix = prefix.to_owned();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = tx.closed() => return,
                    msg = responses.message() => msg,
                };
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => {
                        let _ = tx
                            .send(Err(Error::Unavailable(format!(
                                "etcd at {} closed the watch on {prefix}",
                                store.endpoints
                            ))))
                            .await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(store.classify("watch", &prefix, e))).await;
                        return;
                    }
                };
                if resp.compact_revision > 0 {
                    store
                        .compact_revision
                        .fetch_max(resp.compact_revision, Ordering::SeqCst);
                    let _ = tx
                        .send(Err(Error::Compacted {
                            requested: after + 1,
                            compacted: resp.compact_revision,
                        }))
                        .await;
                    return;
                }
                if resp.canceled {
                    let _ = tx
                        .send(Err(Error::Unavailable(format!(
                            "etcd at {} canceled the watch on {prefix}: {}",
                            store.endpoints, resp.cancel_reason
                        ))))
                        .await;
                    return;
                }
                for ev in resp.events {
                    let event_type = ev.r#type();
                    let Some(kv) = ev.kv else { continue };
                    let prev = ev.prev_kv.map(convert_kv);
                    let event = match event_type {
                        EventType::Put => WatchEvent::Put {
                            kv: convert_kv(kv),
                            prev,
                        },
                        EventType::Delete => WatchEvent::Delete {
                            revision: kv.mod_revision,
                            // etcd omits prev_kv when it was compacted away.
                            prev: prev.unwrap_or_else(|| KeyValue {
                                key: key_string(kv.key),
                                value: Vec::new(),
                                create_revision: 0,
                                mod_revision: 0,
                            }),
                        },
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let result = self
            .call(
                "compact",
                "",
                self.client.compact(CompactionRequest {
                    revision,
                    physical: true,
                }),
            )
            .await;
        match result {
            Ok(_) => {
                self.compact_revision.fetch_max(revision, Ordering::SeqCst);
                Ok(())
            }
            // Already compacted at or past `revision`.
            Err(Error::Compacted { .. }) => Ok(()),
            Err(Error::FutureRevision { .. }) => Err(Error::FutureRevision {
                requested: revision,
                current: self.current_revision().await?,
            }),
            Err(e) => Err(e),
        }
    }

    async fn status(&self) -> Result<StoreStatus> {
        let resp = self.call("status", "", self.client.status()).await?;
        Ok(StoreStatus {
            backend: "etcd",
            revision: header_revision(resp.header.as_ref())?,
            compact_revision: self.compact_revision.load(Ordering::SeqCst),
            db_size_bytes: resp.db_size.max(0) as u64,
        })
    }
}
