//! Port forwarding (`kubectl port-forward`): a TCP connection to the pod's
//! own loopback, dialled from a short-lived thread inside the pod's network
//! namespace. A socket belongs to the namespace it was made in, so the
//! connection keeps working from any thread afterwards.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::linux::{blocking, Inner};
use crate::sandbox::pause_alive;
use crate::{Error, Result};

/// A pod that takes longer than this to accept on its loopback is not
/// listening there.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn connect(
    inner: &Arc<Inner>,
    pod_uid: &str,
    port: u16,
) -> Result<tokio::net::TcpStream> {
    let uid = pod_uid.to_string();
    let rec = blocking(inner, move |i| i.sandbox(&uid)).await?;
    if !pause_alive(&rec) {
        return Err(Error::SandboxNotFound(pod_uid.to_string()));
    }
    let ns_path = format!("/proc/{}/ns/net", rec.pause_pid);
    let sandbox = pod_uid.to_string();
    let stream = tokio::task::spawn_blocking(move || -> Result<TcpStream> {
        let dialled = if rec.host_network {
            dial_loopback(port, &sandbox)
        } else {
            std::fs::File::open(&ns_path)
                .and_then(|ns| {
                    crate::netlink::in_netns(&ns, || {
                        dial_loopback(port, &sandbox).map_err(std::io::Error::other)
                    })
                })
                .map_err(|e| e.to_string())
        };
        dialled.map_err(|e| {
            Error::Other(format!(
                "failed to execute portforward in network namespace {ns_path:?}: {e}"
            ))
        })
    })
    .await
    .map_err(|e| Error::Other(format!("port-forward task failed: {e}")))??;
    stream
        .set_nonblocking(true)
        .map_err(|e| Error::Other(format!("port-forward socket: {e}")))?;
    tokio::net::TcpStream::from_std(stream)
        .map_err(|e| Error::Other(format!("port-forward socket: {e}")))
}

/// Tries 127.0.0.1 then [::1], as containerd does, and words a double
/// failure as containerd does.
fn dial_loopback(port: u16, sandbox: &str) -> Result<TcpStream, String> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let err_v4 = match TcpStream::connect_timeout(&v4, DIAL_TIMEOUT) {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    let err_v6 = match TcpStream::connect_timeout(&v6, DIAL_TIMEOUT) {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    Err(format!(
        "failed to connect to localhost:{port} inside namespace {sandbox:?}, IPv4: dial tcp4 {v4}: connect: {} IPv6 dial tcp6 {v6}: connect: {} ",
        go_errno(&err_v4),
        go_errno(&err_v6)
    ))
}

/// An OS error in the words Go's syscall package uses, which is what
/// Kubernetes users see in these messages.
fn go_errno(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::EADDRNOTAVAIL) => "cannot assign requested address".into(),
        Some(libc::ENETUNREACH) => "network is unreachable".into(),
        Some(libc::EHOSTUNREACH) => "no route to host".into(),
        Some(libc::ETIMEDOUT) => "connection timed out".into(),
        _ if e.kind() == std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_lowercase()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_worded_as_containerd_does() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = dial_loopback(port, "abc").unwrap_err();
        assert!(
            err.starts_with(&format!(
                "failed to connect to localhost:{port} inside namespace \"abc\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: connect: "
            )),
            "{err}"
        );
    }

    #[test]
    fn a_listening_port_connects() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(dial_loopback(port, "abc").is_ok());
    }
}
