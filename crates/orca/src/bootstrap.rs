//! Servers of one cluster share its secrets through the datastore, as k3s
//! does: the first `orca server` on an etcd stores the cluster CA, the
//! service-account signing key and the node token there, encrypted with a
//! key derived from the token (PBKDF2-HMAC-SHA256, AES-256-GCM); another
//! server joins with `--token-file` holding that token, which decrypts them
//! and must pin the CA they hold (its `K10<sha256 of the CA>` prefix), as an
//! agent's join checks it.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;

/// Where the encrypted secrets live in the datastore (outside `/registry`,
/// which holds the API's objects).
const KEY: &str = "/orca/bootstrap";
/// The files shared, relative to the data dir.
const FILES: [&str; 4] = [
    "tls/ca.crt",
    "tls/ca.key",
    "tls/service-account.key",
    "token",
];
const PBKDF2_ITERATIONS: u32 = 100_000;
/// How long a joining server waits for the first one's secrets.
const JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn derive_key(token: &str, salt: &[u8]) -> LessSafeKey {
    let mut key = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(PBKDF2_ITERATIONS).expect("non-zero"),
        salt,
        token.as_bytes(),
        &mut key,
    );
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte key"))
}

/// `files` (name → content) encrypted with `token`.
fn seal(token: &str, files: &BTreeMap<String, String>) -> anyhow::Result<Vec<u8>> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt)
        .and_then(|()| rng.fill(&mut nonce))
        .map_err(|_| anyhow::anyhow!("no randomness for the bootstrap data"))?;
    let mut data = serde_json::to_vec(files)?;
    derive_key(token, &salt)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| anyhow::anyhow!("encrypting the bootstrap data failed"))?;
    Ok(serde_json::to_vec(&json!({
        "salt": B64.encode(salt),
        "nonce": B64.encode(nonce),
        "data": B64.encode(data),
    }))?)
}

/// What [`seal`] sealed, or None when `token` is not the one it used.
fn open(token: &str, sealed: &[u8]) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let v: serde_json::Value =
        serde_json::from_slice(sealed).context("the bootstrap data is not JSON")?;
    let field = |name: &str| -> anyhow::Result<Vec<u8>> {
        B64.decode(v[name].as_str().unwrap_or_default())
            .with_context(|| format!("the bootstrap data's {name}"))
    };
    let (salt, nonce, mut data) = (field("salt")?, field("nonce")?, field("data")?);
    let nonce = Nonce::try_assume_unique_for_key(&nonce)
        .map_err(|_| anyhow::anyhow!("the bootstrap data's nonce has the wrong length"))?;
    match derive_key(token, &salt).open_in_place(nonce, Aad::empty(), &mut data) {
        Ok(plain) => Ok(Some(serde_json::from_slice(plain)?)),
        Err(_) => Ok(None),
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token {}", path.display()))?;
    Ok(token.trim().to_string())
}

/// Before the API server starts: when the datastore holds a cluster's
/// secrets, writes them into `data_dir` (decrypted with `token_file`, else
/// with this server's own token), so that this server serves that cluster.
pub async fn join(
    store: &dyn orca_store::Store,
    data_dir: &Path,
    token_file: Option<&Path>,
) -> anyhow::Result<()> {
    let own_token = data_dir.join("token");
    // The first server stores its secrets just after it starts serving: a
    // server joining meanwhile waits a little for them.
    let deadline = tokio::time::Instant::now() + JOIN_WAIT;
    let sealed = loop {
        match store.get(KEY).await.context("reading the bootstrap data")? {
            Some(sealed) => break sealed,
            None => match token_file {
                None => return Ok(()),
                Some(path) if tokio::time::Instant::now() >= deadline => bail!(
                    "--token-file {}: the datastore holds no cluster to join (waited {JOIN_WAIT:?}); start the first server without --token-file",
                    path.display()
                ),
                Some(_) => {
                    tracing::info!("waiting for the first server to store the cluster's secrets in the datastore");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            },
        }
    };
    let token = match token_file {
        Some(path) => read_token(path)?,
        None if own_token.exists() => read_token(&own_token)?,
        None => bail!(
            "the datastore already holds a cluster: join it with --token-file FILE holding its token (DATA_DIR/token on its first server)"
        ),
    };
    let Some(files) = open(&token, &sealed.value)? else {
        bail!(
            "the token does not decrypt the cluster's bootstrap data in the datastore: wrong token"
        );
    };
    let ca = files
        .get("tls/ca.crt")
        .context("the bootstrap data has no CA")?;
    let (pinned, _) = token.split_once("::").unwrap_or_default();
    if orca_apiserver::tls::token_prefix(ca) != pinned {
        bail!("the cluster CA in the datastore does not match the token's CA hash: wrong token");
    }
    for (name, content) in &files {
        let path = data_dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(have) if have == *content => {}
            Ok(_) => bail!(
                "{} differs from the cluster's in the datastore: this data dir belongs to another cluster",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    crate::server::create_private_dir(dir)?;
                }
                orca_apiserver::tls::write_private(&path, content.as_bytes())?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(())
}

/// After the API server made its secrets: stores them, encrypted with the
/// node token, if the datastore holds none yet.
pub async fn publish(store: &dyn orca_store::Store, data_dir: &Path) -> anyhow::Result<()> {
    if store.get(KEY).await?.is_some() {
        return Ok(());
    }
    let mut files = BTreeMap::new();
    for name in FILES {
        let path = data_dir.join(name);
        let content = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        files.insert(name.to_string(), content);
    }
    let token = read_token(&data_dir.join("token"))?;
    match store.create(KEY, seal(&token, &files)?).await {
        Ok(_) => Ok(()),
        Err(orca_store::Error::AlreadyExists(_)) => bail!(
            "another server initialised this datastore at the same time with other certificates: restart this one with --token-file FILE holding that server's token"
        ),
        Err(e) => Err(e).context("storing the bootstrap data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_files_open_with_the_token_only() {
        let files: BTreeMap<String, String> =
            [("tls/ca.crt".to_string(), "pem".to_string())].into();
        let sealed = seal("K10abc::node:secret", &files).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("pem"));
        assert_eq!(open("K10abc::node:secret", &sealed).unwrap(), Some(files));
        assert_eq!(open("K10abc::node:other", &sealed).unwrap(), None);
    }
}
