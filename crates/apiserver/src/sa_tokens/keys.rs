//! The service account signing key: an RSA key in
//! `DATA_DIR/tls/service-account.key` (PKCS#1 PEM, 0600), made on first
//! start and reused after. Every API server of a cluster must hold the same
//! file (kube-apiserver's --service-account-signing-key-file), so that any
//! of them verifies what another issued. A PKCS#8 key put there (kubeadm's
//! `sa.key`) is read as well.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256};

use crate::Error;

const KEY_FILE: &str = "service-account.key";

/// kubeadm's size for the service account key.
const BITS: usize = 2048;

/// What signing and verifying need, derived once from the key file.
pub struct SigningKey {
    pub encoding: jsonwebtoken::EncodingKey,
    pub decoding: jsonwebtoken::DecodingKey,
    /// Kubernetes' key id: the unpadded base64url SHA-256 of the public
    /// key's DER (PKIX) form.
    pub kid: String,
    /// The public key as a JWK: modulus and exponent, base64url.
    pub n: String,
    pub e: String,
}

fn key_err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Tls(format!(
        "service account key {}: {what} (remove it to have a new one made)",
        path.display()
    ))
}

/// Reads `tls_dir/service-account.key`, creating it first if missing.
pub fn load_or_create(tls_dir: &Path) -> Result<SigningKey, Error> {
    let path = tls_dir.join(KEY_FILE);
    let key = match std::fs::read_to_string(&path) {
        Ok(pem) => RsaPrivateKey::from_pkcs1_pem(&pem)
            .or_else(|_| RsaPrivateKey::from_pkcs8_pem(&pem))
            .map_err(|e| key_err(&path, format!("not an RSA private key: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = RsaPrivateKey::new(&mut rand_core::OsRng, BITS)
                .map_err(|e| key_err(&path, format!("generating: {e}")))?;
            let pem = key
                .to_pkcs1_pem(LineEnding::LF)
                .map_err(|e| key_err(&path, format!("encoding: {e}")))?;
            crate::tls::write_private(&path, pem.as_bytes())?;
            key
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    signing_key(&key).map_err(|e| key_err(&path, e))
}

fn signing_key(key: &RsaPrivateKey) -> Result<SigningKey, String> {
    let der = key.to_pkcs1_der().map_err(|e| e.to_string())?;
    let public = key.to_public_key();
    let spki = public.to_public_key_der().map_err(|e| e.to_string())?;
    let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
    Ok(SigningKey {
        encoding: jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
        decoding: jsonwebtoken::DecodingKey::from_rsa_components(&n, &e)
            .map_err(|e| e.to_string())?,
        kid: URL_SAFE_NO_PAD.encode(Sha256::digest(spki.as_bytes())),
        n,
        e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.kid, again.kid);
        assert_eq!(first.n, again.n);
        assert_eq!(first.e, "AQAB");
        // 43 characters: 32 bytes, unpadded base64url.
        assert_eq!(first.kid.len(), 43);
    }

    #[test]
    fn a_damaged_key_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        let err = load_or_create(dir.path()).err().unwrap().to_string();
        assert!(err.contains(KEY_FILE), "{err}");
    }
}
