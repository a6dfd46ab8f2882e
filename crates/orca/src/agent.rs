//! `orca agent`: a node agent on another machine joining a control plane
//! with the server's node token (`DATA_DIR/token` on the server).
//!
//! The token reads `K10<sha256 of the CA certificate>::node:<secret>`: the
//! agent fetches the CA from `/cacerts` and trusts it only if its hash
//! matches. The token is a bootstrap credential: with it the agent obtains
//! its own client certificate (see [`crate::credentials`]) and uses that
//! for everything else.

use std::path::Path;

use anyhow::{bail, Context};

use crate::cli::AgentArgs;
use crate::{credentials, node};

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
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
    let node_name = node::node_name(&args.node)?;
    let agent_dir = args.data_dir.join("agent");
    crate::server::create_private_dir(&agent_dir)?;
    let store = credentials::Store::new(&agent_dir);
    let (credential, ca_pem) = match store.load_current(&node_name) {
        Some(c) => (c, fetch_checked_ca(&args.server, &args.token_file).await?),
        None => {
            let (bootstrap, ca_pem) = join_client(&args.server, &args.token_file).await?;
            let c = credentials::request(&bootstrap, &node_name).await?;
            store.save(&c)?;
            (c, ca_pem)
        }
    };
    let ca = pem_certificates(&ca_pem)?;
    let rotating = credentials::Rotating::new(credentials::client_with(
        &args.server,
        ca.clone(),
        &credential,
    )?);
    tokio::spawn(credentials::keep_renewed(
        args.server.clone(),
        ca,
        node_name,
        store,
        credential,
        rotating.clone(),
    ));
    node::run_agent(
        rotating.client(),
        node::AgentSetup {
            data_dir: args.data_dir,
            node: args.node,
            cluster_ca_pem: ca_pem,
            cluster_cidr: args.cluster_cidr,
        },
        crate::server::shutdown_signal(),
    )
    .await
}

/// The server's CA, checked against the hash the token in `token_file`
/// pins; also the token.
async fn fetch_checked_ca(server: &str, token_file: &Path) -> anyhow::Result<Vec<u8>> {
    Ok(checked_ca(server, token_file).await?.0)
}

async fn checked_ca(server: &str, token_file: &Path) -> anyhow::Result<(Vec<u8>, String)> {
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
    Ok((ca_pem, token))
}

/// An API client for `server` authenticated with the node token in
/// `token_file` (the bootstrap identity), trusting only the CA the token
/// pins; also returns that CA.
pub async fn join_client(
    server: &str,
    token_file: &Path,
) -> anyhow::Result<(kube::Client, Vec<u8>)> {
    let (ca_pem, token) = checked_ca(server, token_file).await?;
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

pub(crate) fn pem_certificates(pem: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
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
