//! gRPC probes: the standard health protocol (`grpc.health.v1.Health/Check`)
//! over cleartext HTTP/2, with the kubelet's words for each way it fails.

use std::time::Duration;

use tonic::transport::Endpoint;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::backoff::go_duration;

/// Asks `host:port` whether `service` ("" for the whole server) is serving.
pub async fn check(
    host: &str,
    port: u16,
    service: &str,
    timeout: Duration,
) -> Result<String, String> {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(concat!("kube-probe/", env!("CARGO_PKG_VERSION"))))
        .map_err(|e| format!("error: failed to connect service at {addr:?}: {e}"))?;
    let rpc = async {
        // The kubelet dials lazily: a refused connection surfaces as the
        // RPC's Unavailable error, so it is reported the same way here.
        let channel = endpoint.connect().await.map_err(|e| {
            tonic::Status::unavailable(format!(
                "connection error: desc = \"transport: Error while dialing: dial tcp {addr}: {}\"",
                source_text(&e)
            ))
        })?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
    };
    let response = match tokio::time::timeout(timeout, rpc).await {
        Err(_) => {
            return Err(format!(
                "timeout: health rpc did not complete within {}",
                go_duration(timeout)
            ))
        }
        Ok(Err(status)) => return Err(rpc_failure(&status, timeout)),
        Ok(Ok(r)) => r.into_inner(),
    };
    match response.status() {
        ServingStatus::Serving => Ok("service healthy".into()),
        other => Err(format!(
            "service unhealthy (responded with {:?})",
            other.as_str_name()
        )),
    }
}

fn rpc_failure(status: &tonic::Status, timeout: Duration) -> String {
    match status.code() {
        Code::Unimplemented => format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            status.message()
        ),
        Code::DeadlineExceeded => format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        ),
        // Debug names the codes as grpc-go does (`Unavailable`, `NotFound`).
        code => format!(
            "error: health rpc probe failed: rpc error: code = {code:?} desc = {}",
            status.message()
        ),
    }
}

/// The innermost cause of a connection error (e.g. "connection refused").
fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    match text.find(" (os error") {
        Some(i) => format!("connect: {}", text[..i].to_lowercase()),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_fails_as_the_kubelet_words_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = check("127.0.0.1", port, "", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!(
                "error: health rpc probe failed: rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:{port}: connect: connection refused\""
            )
        );
    }

    #[tokio::test]
    async fn a_serving_health_server_passes_and_an_unknown_service_fails() {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("db", tonic_health::ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        let t = Duration::from_secs(5);
        assert_eq!(
            check("127.0.0.1", port, "", t).await.unwrap(),
            "service healthy"
        );
        assert_eq!(
            check("127.0.0.1", port, "db", t).await.unwrap_err(),
            "service unhealthy (responded with \"NOT_SERVING\")"
        );
        assert_eq!(
            check("127.0.0.1", port, "nope", t).await.unwrap_err(),
            "error: health rpc probe failed: rpc error: code = NotFound desc = service not registered"
        );
        server.abort();
    }
}
