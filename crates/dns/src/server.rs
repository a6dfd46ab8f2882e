//! The DNS server: hickory's UDP and TCP listeners, answering cluster names
//! from the index and forwarding the rest.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::PoisonError;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

use crate::forward::Forwarder;
use crate::index::{Lookup, SharedIndex};
use crate::DnsConfig;

/// How long an idle TCP client keeps its connection (CoreDNS's default).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// A bound cluster DNS server, not yet serving.
pub struct DnsServer {
    server: Server<Handler>,
    local_addr: SocketAddr,
}

impl DnsServer {
    /// Binds UDP and TCP on `config.listen` (port 0: one free port for
    /// both) to answer from `index`.
    pub async fn bind(config: &DnsConfig, index: SharedIndex) -> io::Result<DnsServer> {
        let (udp, tcp) = bind_pair(config.listen).await?;
        let local_addr = udp.local_addr()?;
        let upstreams = usable_upstreams(config, local_addr);
        if upstreams.is_empty() {
            warn!(
                "cluster DNS on {local_addr}: no upstream resolver; names outside {} will \
                 fail (give the node's resolvers, from its resolv.conf)",
                config.cluster_domain
            );
        }
        let (zone, soa) = {
            let index = index.read().unwrap_or_else(PoisonError::into_inner);
            (index.zone().clone(), index.soa().clone())
        };
        let handler = Handler {
            index,
            zone,
            soa,
            forwarder: Forwarder::new(upstreams, config.upstream_timeout),
        };
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, 32);
        info!("cluster DNS listening on {local_addr} (UDP and TCP)");
        Ok(DnsServer { server, local_addr })
    }

    /// The address both listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then lets queries in flight finish.
    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let token = self.server.shutdown_token().clone();
        let done = self.server.block_until_done();
        tokio::pin!(done);
        tokio::select! {
            result = &mut done => result,
            () = shutdown => {
                token.cancel();
                done.await
            }
        }
        .map_err(|e| io::Error::other(format!("cluster DNS on {}: {e}", self.local_addr)))
    }
}

async fn bind_pair(listen: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let context = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cluster DNS cannot listen on {listen}: {e} (is the address on this node?)"),
        )
    };
    let mut attempts = 0;
    loop {
        let udp = UdpSocket::bind(listen).await.map_err(context)?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // A free UDP port may be taken for TCP: pick another pair.
            Err(e) if listen.port() == 0 && attempts < 10 => {
                attempts += 1;
                debug!("TCP port {} taken ({e}), trying another", addr.port());
            }
            Err(e) => return Err(context(e)),
        }
    }
}

/// The configured resolvers less any that is this server: forwarding to
/// ourselves would loop until every query timed out.
fn usable_upstreams(config: &DnsConfig, local: SocketAddr) -> Vec<SocketAddr> {
    let is_self = |up: &SocketAddr| {
        *up == local
            || *up == config.listen
            || *up == SocketAddr::new(IpAddr::V4(config.cluster_dns), 53)
            || (local.ip().is_unspecified() && up.port() == local.port() && up.ip().is_loopback())
    };
    config
        .upstreams
        .iter()
        .filter(|up| {
            let own = is_self(up);
            if own {
                warn!("cluster DNS: not forwarding to {up}: that is this server itself");
            }
            !own
        })
        .copied()
        .collect()
}

pub(crate) struct Handler {
    index: SharedIndex,
    zone: LowerName,
    soa: Record,
    forwarder: Forwarder,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        match self.respond(request, response).await {
            Ok(info) => info,
            Err(e) => {
                debug!("cluster DNS: answer to {} not sent: {e}", request.src());
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// Which records of a found name answer a query of `qtype`.
fn of_type(records: &[Record], qtype: RecordType) -> impl Iterator<Item = &Record> + Clone + Send {
    records
        .iter()
        .filter(move |r| qtype == RecordType::ANY || r.record_type() == qtype)
}

impl Handler {
    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let none = std::iter::empty::<&Record>;

        let queries = request.queries.queries();
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            meta.response_code = ResponseCode::NotImp;
            return response.send_response(builder.build_no_records(meta)).await;
        }
        let [query] = queries else {
            meta.response_code = ResponseCode::FormErr;
            return response.send_response(builder.build_no_records(meta)).await;
        };
        let name = query.name();
        let qtype = query.query_type();
        let cluster = self.zone.zone_of(name);
        if cluster
            && (query.query_class() != DNSClass::IN
                || matches!(qtype, RecordType::AXFR | RecordType::IXFR))
        {
            meta.response_code = ResponseCode::Refused;
            return response.send_response(builder.build_no_records(meta)).await;
        }

        let lookup = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .lookup(name, qtype);
        if !matches!(lookup, Lookup::NotCluster | Lookup::NotSynced) {
            meta.authoritative = true;
        }
        let soa = std::iter::once(&self.soa);
        match lookup {
            Lookup::NotCluster => {
                let payload = request.edns.as_ref().map_or(512, |e| e.max_payload());
                let tcp = request.protocol() == Protocol::Tcp;
                let Some(answer) = self
                    .forwarder
                    .exchange(request.as_slice(), query.original(), tcp, payload)
                    .await
                else {
                    meta.response_code = ResponseCode::ServFail;
                    return response.send_response(builder.build_no_records(meta)).await;
                };
                meta.response_code = answer.metadata.response_code;
                meta.authoritative = answer.metadata.authoritative;
                meta.recursion_available = answer.metadata.recursion_available;
                meta.authentic_data = answer.metadata.authentic_data;
                let message = builder.build(
                    meta,
                    answer.answers.iter(),
                    answer.authorities.iter(),
                    none(),
                    answer.additionals.iter(),
                );
                response.send_response(message).await
            }
            Lookup::NotSynced => {
                meta.response_code = ResponseCode::ServFail;
                response.send_response(builder.build_no_records(meta)).await
            }
            Lookup::NxDomain => {
                meta.response_code = ResponseCode::NXDomain;
                let message = builder.build(meta, none(), none(), soa, none());
                response.send_response(message).await
            }
            Lookup::NoData => {
                let message = builder.build(meta, none(), none(), soa, none());
                response.send_response(message).await
            }
            Lookup::Pod(record) => {
                let message =
                    builder.build(meta, std::iter::once(&*record), none(), none(), none());
                response.send_response(message).await
            }
            Lookup::Found(node) => {
                let cname = node
                    .records
                    .iter()
                    .find(|r| r.record_type() == RecordType::CNAME);
                if let Some(cname) =
                    cname.filter(|_| !matches!(qtype, RecordType::CNAME | RecordType::ANY))
                {
                    let chased = match &cname.data {
                        RData::CNAME(target) => self.chase(&target.0, qtype).await,
                        _ => Vec::new(),
                    };
                    let answers = std::iter::once(cname).chain(chased.iter());
                    let message = builder.build(meta, answers, none(), none(), none());
                    return response.send_response(message).await;
                }
                let mut answers = of_type(&node.records, qtype).peekable();
                if answers.peek().is_none() {
                    let message = builder.build(meta, none(), none(), soa, none());
                    return response.send_response(message).await;
                }
                let additionals: &[Record] = match qtype {
                    RecordType::SRV | RecordType::NS | RecordType::ANY => &node.additionals,
                    _ => &[],
                };
                let message = builder.build(meta, answers, none(), none(), additionals.iter());
                response.send_response(message).await
            }
        }
    }

    /// The records an ExternalName's target has for `qtype`: from the index
    /// when it is a cluster name, else from the node's resolvers.
    async fn chase(&self, target: &Name, qtype: RecordType) -> Vec<Record> {
        let lower = LowerName::new(target);
        if self.zone.zone_of(&lower) {
            let lookup = self
                .index
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .lookup(&lower, qtype);
            return match lookup {
                Lookup::Found(node) => of_type(&node.records, qtype).cloned().collect(),
                Lookup::Pod(record) => vec![*record],
                _ => Vec::new(),
            };
        }
        let question = Query::query(target.clone(), qtype);
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(question.clone());
        let Ok(bytes) = message.to_vec() else {
            return Vec::new();
        };
        match self.forwarder.exchange(&bytes, &question, false, 512).await {
            Some(answer) => answer.answers,
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_that_are_this_server_are_dropped() {
        let mut config = DnsConfig::new("10.43.0.10".parse().unwrap());
        let real: SocketAddr = "10.0.0.2:53".parse().unwrap();
        config.upstreams = vec![
            "10.43.0.10:53".parse().unwrap(),
            "127.0.0.1:5353".parse().unwrap(),
            real,
        ];
        let bound: SocketAddr = "10.43.0.10:53".parse().unwrap();
        assert_eq!(
            usable_upstreams(&config, bound),
            vec!["127.0.0.1:5353".parse().unwrap(), real]
        );
        // Listening on every address, loopback on our port is us too.
        config.listen = "0.0.0.0:5353".parse().unwrap();
        assert_eq!(usable_upstreams(&config, config.listen), vec![real]);
    }
}
