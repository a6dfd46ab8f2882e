//! A small etcd v3 gRPC client: the KV, Watch and Maintenance calls the store
//! makes, over tonic with the messages of [`super::wire`]. It is ours because
//! etcd's client crates generate their code from .proto files when they are
//! built, which needs protoc; Orca must build with a Rust toolchain alone.
//!
//! The endpoints are members of one cluster. Requests go to the member that
//! last answered and move on to the next when a member cannot be reached.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};
use tonic_prost::ProstCodec;

use super::wire::{
    CompactionRequest, CompactionResponse, RangeRequest, RangeResponse, StatusRequest,
    StatusResponse, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest, WatchRequestUnion,
    WatchResponse,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings, also on idle connections, so that a member that went away
/// is noticed (and its watches end) within about 20 s.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response accepted (a big list), as Kubernetes' etcd client does.
const MAX_MESSAGE: usize = i32::MAX as usize;

/// Cheap to clone; clones share connections.
#[derive(Clone)]
pub(super) struct Client {
    members: Arc<[Grpc<Channel>]>,
    /// Index in `members` of the member tried first.
    current: Arc<AtomicUsize>,
}

impl Client {
    /// A client of the members at `urls` (`http://host:port`, or a bare
    /// `host:port`). Connections are made by the first request to each.
    pub(super) fn new(urls: &[String]) -> Result<Client, String> {
        let members = urls
            .iter()
            .map(|url| {
                let endpoint = Endpoint::from_shared(http_url(url)?)
                    .map_err(|e| format!("{url}: {e}"))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
                    .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                    .keep_alive_while_idle(true);
                Ok(Grpc::new(endpoint.connect_lazy()).max_decoding_message_size(MAX_MESSAGE))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Client {
            members: members.into(),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub(super) async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Status> {
        self.unary("/etcdserverpb.KV/Range", req).await
    }

    pub(super) async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        self.unary("/etcdserverpb.KV/Txn", req).await
    }

    pub(super) async fn compact(
        &self,
        req: CompactionRequest,
    ) -> Result<CompactionResponse, Status> {
        self.unary("/etcdserverpb.KV/Compact", req).await
    }

    pub(super) async fn status(&self) -> Result<StatusResponse, Status> {
        self.unary("/etcdserverpb.Maintenance/Status", StatusRequest {})
            .await
    }

    /// Opens a watch stream and creates one watch on it. The watch lasts
    /// until the returned stream is dropped.
    pub(super) async fn watch(
        &self,
        create: WatchCreateRequest,
    ) -> Result<Streaming<WatchResponse>, Status> {
        let request = WatchRequest {
            request_union: Some(WatchRequestUnion::CreateRequest(create)),
        };
        self.failover(|mut grpc| {
            let request = request.clone();
            async move {
                ready(&mut grpc).await?;
                // Nothing is sent after the create, but the request side
                // stays open: it never half-closes the stream.
                let requests =
                    futures::stream::once(async { request }).chain(futures::stream::pending());
                let response = grpc
                    .streaming(
                        tonic::Request::new(requests),
                        PathAndQuery::from_static("/etcdserverpb.Watch/Watch"),
                        ProstCodec::default(),
                    )
                    .await?;
                Ok(response.into_inner())
            }
        })
        .await
    }

    async fn unary<Req, Resp>(&self, path: &'static str, req: Req) -> Result<Resp, Status>
    where
        Req: prost::Message + Clone + Sync + 'static,
        Resp: prost::Message + Default + Sync + 'static,
    {
        self.failover(|mut grpc| {
            let req = req.clone();
            async move {
                ready(&mut grpc).await?;
                let response = grpc
                    .unary(
                        tonic::Request::new(req),
                        PathAndQuery::from_static(path),
                        ProstCodec::default(),
                    )
                    .await?;
                Ok(response.into_inner())
            }
        })
        .await
    }

    /// Runs `call` on the current member, then on the next ones while the
    /// member tried cannot be reached. Only a failed connection moves on: the
    /// request was not sent, so sending it elsewhere cannot apply it twice.
    async fn failover<T, F, Fut>(&self, call: F) -> Result<T, Status>
    where
        F: Fn(Grpc<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let first = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for i in 0..self.members.len() {
            let index = (first + i) % self.members.len();
            match call(self.members[index].clone()).await {
                Err(status) if not_connected(&status) => last_error = Some(status),
                answer => {
                    self.current.store(index, Ordering::Relaxed);
                    return answer;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Status::unavailable("no etcd endpoint")))
    }
}

async fn ready(grpc: &mut Grpc<Channel>) -> Result<(), Status> {
    grpc.ready()
        .await
        .map_err(|e| Status::from_error(Box::new(e)))
}

/// Orca speaks plain HTTP/2 to etcd, as a bare `host:port` implies.
fn http_url(url: &str) -> Result<String, String> {
    if url.starts_with("http://") {
        Ok(url.to_owned())
    } else if url.contains("://") {
        Err(format!("{url}: only http:// endpoints are supported"))
    } else {
        Ok(format!("http://{url}"))
    }
}

/// Whether the call failed because no connection to the member could be
/// made (tonic marks those errors with [`tonic::ConnectError`]).
fn not_connected(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}
