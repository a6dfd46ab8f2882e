//! etcd v3 backend: revisions are etcd's, compare-and-swap is a Txn on the
//! key's mod_revision, watches are etcd watches with `prev_kv`, compaction is
//! etcd's own.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};

use crate::{
    prefix_end, Error, KeyValue, ListOptions, ListPage, Result, Revision, Store, StoreStatus,
    WatchEvent, WatchStream,
};

/// Limit for one unary request; watches are long-lived and have none.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response accepted (a big list), as Kubernetes' etcd client does.
const MAX_MESSAGE: usize = i32::MAX as usize;
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
    kv: KvClient,
    watch: WatchClient,
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
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let client = Client::connect(&list, Some(options))
            .await
            .map_err(|e| unavailable(&joined, "connecting", "", e))?;
        let store = EtcdStore {
            kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            client,
            endpoints: joined,
            compact_revision: Arc::new(AtomicI64::new(0)),
        };
        store.current_revision().await?;
        Ok(store)
    }

    async fn call<T, F>(&self, what: &str, key: &str, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
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
    fn classify(&self, what: &str, key: &str, e: etcd_client::Error) -> Error {
        if let etcd_client::Error::GRpcStatus(status) = &e {
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
        }
        unavailable(&self.endpoints, what, key, e)
    }

    /// etcd reports its compact revision only to a watch that starts before
    /// it: start one at revision 1 on an unused key and read the answer.
    async fn discover_compact_revision(&self) -> Revision {
        let known = self.compact_revision.load(Ordering::SeqCst);
        let probe = async {
            let mut watch = self
                .watch
                .clone()
                .watch(
                    "\0orca-compact-probe",
                    Some(WatchOptions::new().with_start_revision(1)),
                )
                .await
                .ok()?;
            while let Ok(Some(resp)) = watch.message().await {
                if resp.compact_revision() > 0 {
                    return Some(resp.compact_revision());
                }
                if resp.canceled() {
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
        let resp = self
            .call("get", key, self.kv.clone().get(key, None))
            .await?;
        Ok(resp.kvs().first().map(convert_kv))
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

fn unavailable(endpoints: &str, what: &str, key: &str, e: etcd_client::Error) -> Error {
    Error::Unavailable(format!(
        "etcd at {endpoints}: {what} {key}: {e}; check that etcd is running and reachable"
    ))
}

fn convert_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        // Keys only ever enter as `&str`, so this is lossless.
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| Error::Internal("etcd answered without a response header".into()))
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
        let mut get = GetOptions::new()
            .with_range(end)
            .with_revision(requested.unwrap_or(0));
        if opts.limit > 0 {
            get = get.with_limit(opts.limit as i64);
        }
        let resp = match self
            .call("list", prefix, self.kv.clone().get(start, Some(get)))
            .await
        {
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
            None => header_revision(resp.header())?,
        };
        Ok(ListPage {
            kvs: resp.kvs().iter().map(convert_kv).collect(),
            revision,
            more: resp.more(),
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)]);
        let resp = self.call("create", key, self.kv.clone().txn(txn)).await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists(key.to_owned()));
        }
        let revision = header_revision(resp.header())?;
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
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )]);
        let resp = self.call("update", key, self.kv.clone().txn(txn)).await?;
        if !resp.succeeded() {
            return Err(self.conflict(key, expected).await);
        }
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(p) => p.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| {
                Error::Internal(format!("etcd put of {key} returned no previous value"))
            })?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: header_revision(resp.header())?,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let compare = match expected {
            Some(e) if e <= 0 => return Err(self.conflict(key, e).await),
            Some(e) => Compare::mod_revision(key, CompareOp::Equal, e),
            None => Compare::version(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new().when([compare]).and_then([TxnOp::delete(
            key,
            Some(DeleteOptions::new().with_prev_key()),
        )]);
        let resp = self.call("delete", key, self.kv.clone().txn(txn)).await?;
        if !resp.succeeded() {
            return Err(match expected {
                Some(e) => self.conflict(key, e).await,
                None => Error::NotFound(key.to_owned()),
            });
        }
        let prev = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Delete(d) => d.prev_kvs().first().map(convert_kv),
                _ => None,
            })
            // The compare guaranteed the key existed.
            .ok_or_else(|| Error::NotFound(key.to_owned()))?;
        Ok((prev, header_revision(resp.header())?))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .call(
                "reading the revision",
                "",
                self.client
                    .kv_client()
                    .get("\0", Some(GetOptions::new().with_count_only())),
            )
            .await?;
        header_revision(resp.header())
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let mut options = WatchOptions::new()
            .with_start_revision(after + 1)
            .with_prev_key();
        if !prefix.is_empty() {
            options = options.with_prefix();
        } else {
            options = options.with_all_keys();
        }
        let stream = self
            .call(
                "watch",
                prefix,
                self.watch.clone().watch(prefix, Some(options)),
            )
            .await?;
        let (requests, mut responses) = stream.split();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let store = self.clone();
        let prefix = prefix.to_owned();
        tokio::spawn(async move {
            // Dropping the request side would end the watch.
            let _requests = requests;
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
                if resp.compact_revision() > 0 {
                    store
                        .compact_revision
                        .fetch_max(resp.compact_revision(), Ordering::SeqCst);
                    let _ = tx
                        .send(Err(Error::Compacted {
                            requested: after + 1,
                            compacted: resp.compact_revision(),
                        }))
                        .await;
                    return;
                }
                if resp.canceled() {
                    let _ = tx
                        .send(Err(Error::Unavailable(format!(
                            "etcd at {} canceled the watch on {prefix}: {}",
                            store.endpoints,
                            resp.cancel_reason()
                        ))))
                        .await;
                    return;
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let prev = ev.prev_kv().map(convert_kv);
                    let event = match ev.event_type() {
                        EventType::Put => WatchEvent::Put {
                            kv: convert_kv(kv),
                            prev,
                        },
                        EventType::Delete => WatchEvent::Delete {
                            // etcd omits prev_kv when it was compacted away.
                            prev: prev.unwrap_or_else(|| KeyValue {
                                key: String::from_utf8_lossy(kv.key()).into_owned(),
                                value: Vec::new(),
                                create_revision: 0,
                                mod_revision: 0,
                            }),
                            revision: kv.mod_revision(),
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
                self.client
                    .kv_client()
                    .compact(revision, Some(CompactionOptions::new().with_physical())),
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
        let resp = self
            .call("status", "", self.client.maintenance_client().status())
            .await?;
        Ok(StoreStatus {
            backend: "etcd",
            revision: header_revision(resp.header())?,
            compact_revision: self.compact_revision.load(Ordering::SeqCst),
            db_size_bytes: resp.db_size().max(0) as u64,
        })
    }
}
