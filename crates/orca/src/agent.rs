//! `orca agent`: a node agent on another machine joining a control plane
//! with the server's node token (`DATA_DIR/token` on the server).
//!
//! The token reads `K10<sha256 of the CA certificate>::node:<secret>`: the
//! agent fetches the CA from `/cacerts` and trusts it only if its hash
//! matches, then authenticates with the whole token as a bearer token.

use std::path::Path;

use anyhow::{bail, Context};

use crate::cli::AgentArgs;
use crate::node;

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(join(args))
}

/// The CA hash a node token pins.
pub fn token_ca_hash(token: &str) -> anyhow::Result<&str> {
    let Some(rest) = token.strip_prefix("K10") else {
        bail!("the node token does not start with K10: copy it from DATA_DIR/token on the server")
    };
    let (hash, _) = rest
        .split_once("::")
        .context("the node token has no '::' separator")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("the node token's CA hash is not 64 hex digits");
    }
    Ok(hash)
}

async fn join(args: AgentArgs) -> anyhow::Result<()> {
    let (client, ca_pem) = join_client(&args.server, &args.token_file).await?;
    let agent = node::run_agent(
        client,
        node::AgentSetup {
            data_dir: args.data_dir,
            node: args.node,
            cluster_ca_pem: ca_pem,
        },
    );
    // Stopping drops the agent, which removes the node's pod network
    // routes; its pods keep running and are adopted again at the next start.
    tokio::select! {
        r = agent => r,
        _ = crate::server::shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

/// An API client for `server` authenticated with the node token in
/// `token_file`, trusting only the CA the token pins; also returns that CA.
pub async fn join_client(
    server: &str,
    token_file: &Path,
) -> anyhow::Result<(kube::Client, Vec<u8>)> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading the node token {}", token_file.display()))?;
    let token = token.trim().to_string();
    let expected = token_ca_hash(&token)?;
    let ca_pem = fetch_ca(server).await?;
    let actual = sha256_hex(&ca_pem);
    if actual != expected {
        bail!(
            "the server at {server} presented a CA whose hash {actual} does not match the token's {expected}: \
             wrong server or wrong token"
        );
    }
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("--server {server}"))?;
    let mut config = kube::Config::new(url);
    config.root_cert = Some(pem_certificates(&ca_pem)?);
    config.auth_info.token = Some(token.into());
    let client = kube::Client::try_from(config)?;
    Ok((client, ca_pem))
}

/// Downloads the server's CA certificate. The connection is not verified:
/// the caller checks the certificate against the hash pinned in the token.
async fn fetch_ca(server: &str) -> anyhow::Result<Vec<u8>> {
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("--server {server}"))?;
    let mut config = kube::Config::new(url);
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config).context("building an HTTPS client")?;
    let request = http::Request::get("/cacerts").body(Vec::new())?;
    let pem = client.request_text(request).await.with_context(|| {
        format!("fetching the cluster CA from {server}/cacerts: is the server reachable?")
    })?;
    Ok(pem.into_bytes())
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn pem_certificates(pem: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|cert| cert.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .context("the cluster CA is not PEM")?;
    if certs.is_empty() {
        bail!("the server's /cacerts holds no certificate");
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_pins_a_ca_hash() {
        let hash = "ab".repeat(32);
        assert_eq!(
            token_ca_hash(&format!("K10{hash}::node:secret")).unwrap(),
            hash
        );
        assert!(token_ca_hash("K10abc::node:secret").is_err());
        assert!(token_ca_hash("secret").is_err());
    }

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
