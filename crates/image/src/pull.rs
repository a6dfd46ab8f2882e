//! Pulling from OCI/Docker registries with `oci-client`: mirrors in order,
//! then the registry itself; anonymous bearer tokens, basic auth; image
//! indexes resolved to linux on this architecture; every blob checked
//! against its digest. Nothing is recorded until all layers are in place.

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::digest::sha256;
use crate::oci::{is_layer_media_type, pick_platform, ConfigFile, Document};
use crate::reference::ImageRef;
use crate::registries::{Credentials, Endpoint, Transport};
use crate::store::{ImageStore, LayerRecord};
use crate::{Error, Image, Result};

const ACCEPT: &[&str] = &[
    crate::oci::OCI_MANIFEST,
    crate::oci::DOCKER_MANIFEST,
    crate::oci::OCI_INDEX,
    crate::oci::DOCKER_LIST,
];

pub(crate) async fn pull(
    store: &ImageStore,
    r: &ImageRef,
    auth: Option<Credentials>,
) -> Result<Image> {
    let locked = store.clone();
    let _lock = tokio::task::spawn_blocking(move || locked.inner.lock(false))
        .await
        .map_err(|e| {
            Error::io(
                "locking the image store",
                std::io::Error::other(e.to_string()),
            )
        })??;
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for endpoint in store.inner.registries.endpoints(&r.registry) {
        let mut result = pull_from(store, r, &endpoint, Transport::Https, auth.clone()).await;
        if endpoint.transport == Transport::Loopback {
            // Not speaking TLS (or not at all): ask again in plain HTTP,
            // and report that answer.
            if let Err(Error::Registry { .. } | Error::RegistryUnreachable { .. }) = &result {
                result = pull_from(store, r, &endpoint, Transport::Http, auth.clone()).await;
            }
        }
        match result {
            Ok(image) => {
                tracing::info!(image = %r, from = %endpoint.host, id = %image.digest, size = image.size, elapsed = ?started.elapsed(), "pulled image");
                return Ok(image);
            }
            Err(e) => {
                tracing::info!(image = %r, endpoint = %endpoint.host, error = %e, "pull attempt failed");
                failures.push((endpoint.host, e));
            }
        }
    }
    Err(combine(r, failures))
}

/// One error for all endpoints tried: the registry's own verdict when
/// every failure came from a registry, listing each endpoint's answer.
fn combine(r: &ImageRef, mut failures: Vec<(String, Error)>) -> Error {
    if failures.len() == 1 {
        return failures.remove(0).1;
    }
    let details: Vec<String> = failures
        .iter()
        .map(|(host, e)| match e {
            Error::NotFound { detail, .. }
            | Error::RegistryUnreachable { detail, .. }
            | Error::Unauthorized { detail, .. }
            | Error::Registry { detail, .. } => detail.clone(),
            other => format!("{host}: {other}"),
        })
        .collect();
    let detail = details.join("; ");
    let reference = r.to_string();
    let any = |f: fn(&Error) -> bool| failures.iter().any(|(_, e)| f(e));
    if let Some(pos) = failures.iter().position(|(_, e)| {
        !matches!(
            e,
            Error::NotFound { .. }
                | Error::RegistryUnreachable { .. }
                | Error::Unauthorized { .. }
                | Error::Registry { .. }
        )
    }) {
        return failures.remove(pos).1;
    }
    if any(|e| matches!(e, Error::NotFound { .. })) {
        Error::NotFound { reference, detail }
    } else if any(|e| matches!(e, Error::Unauthorized { .. })) {
        Error::Unauthorized { reference, detail }
    } else if failures
        .iter()
        .all(|(_, e)| matches!(e, Error::RegistryUnreachable { .. }))
    {
        Error::RegistryUnreachable { reference, detail }
    } else {
        Error::Registry { reference, detail }
    }
}

fn client_for(store: &ImageStore, endpoint: &Endpoint, transport: Transport) -> Result<Client> {
    // reqwest is built without a default TLS provider; pick ring, as the
    // rest of Orca does. Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = ClientConfig {
        protocol: match (endpoint.transport, transport) {
            (Transport::Http, _) | (Transport::Loopback, Transport::Http) => ClientProtocol::Http,
            _ => ClientProtocol::Https,
        },
        accept_invalid_certificates: endpoint.transport == Transport::Loopback,
        connect_timeout: Some(std::time::Duration::from_secs(15)),
        read_timeout: Some(std::time::Duration::from_secs(120)),
        platform_resolver: None,
        ..Default::default()
    };
    if let Some(tls) = store
        .inner
        .registries
        .host_config(&endpoint.host)
        .and_then(|c| c.tls.as_ref())
    {
        config.accept_invalid_certificates |= tls.insecure_skip_verify;
        if let Some(ca) = &tls.ca_file {
            let data = std::fs::read(ca).map_err(|e| {
                Error::io(
                    format!("reading CA file {} for {}", ca.display(), endpoint.host),
                    e,
                )
            })?;
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
    }
    Ok(Client::new(config))
}

fn auth_for(
    store: &ImageStore,
    endpoint: &Endpoint,
    explicit: Option<Credentials>,
) -> Result<RegistryAuth> {
    let configured = match store
        .inner
        .registries
        .host_config(&endpoint.host)
        .and_then(|c| c.auth.as_ref())
    {
        Some(auth) => auth
            .credentials()
            .map_err(|reason| Error::RegistriesConfig {
                path: "registries.yaml".into(),
                reason: format!("configs.{}.auth: {reason}", endpoint.host),
            })?,
        None => None,
    };
    Ok(match explicit.or(configured) {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    })
}

/// Maps the client's errors onto what an operator can act on.
fn registry_error(r: &ImageRef, host: &str, e: OciDistributionError) -> Error {
    let reference = r.to_string();
    let not_found = |what: &str| Error::NotFound {
        reference: reference.clone(),
        detail: format!("{host} has {what}"),
    };
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}", e.code))
                .collect();
            let message: Vec<String> = envelope.errors.iter().map(|e| e.message.clone()).collect();
            let message = message.join(", ");
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            }) {
                not_found(&format!("no such repository or tag ({message})"))
            } else if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Error::Unauthorized {
                    reference,
                    detail: format!("{host}: {message}"),
                }
            } else {
                Error::Registry {
                    reference,
                    detail: format!("{host}: {message} ({})", codes.join(", ")),
                }
            }
        }
        OciDistributionError::ImageManifestNotFoundError(m) => not_found(&m),
        OciDistributionError::ServerError { code: 404, .. } => {
            not_found("repository or tag not found (HTTP 404)")
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Error::Unauthorized {
            reference,
            detail: format!("{host}: {e}"),
        },
        OciDistributionError::RequestError(ref re) if error_chain(re).contains("certificate") => {
            Error::Registry {
                reference,
                detail: format!(
                    "{host}: TLS certificate not trusted: {} (give the registry's CA as configs.\"{host}\".tls.ca_file in registries.yaml, or set insecure_skip_verify)",
                    error_chain(re)
                ),
            }
        }
        OciDistributionError::RequestError(ref re) if re.is_connect() || re.is_timeout() => {
            Error::RegistryUnreachable {
                reference,
                detail: format!("{host}: {}", error_chain(re)),
            }
        }
        OciDistributionError::DigestError(d) => Error::DigestMismatch {
            what: format!("content of {reference} from {host}"),
            expected: "the digest the registry announced".to_string(),
            actual: d.to_string(),
        },
        other => Error::Registry {
            reference,
            detail: format!("{host}: {}", error_chain(&other)),
        },
    }
}

/// An error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn oci_reference(endpoint: &Endpoint, r: &ImageRef, digest: Option<&str>) -> Reference {
    match digest.or(r.digest.as_deref()) {
        Some(d) => Reference::with_digest(
            endpoint.host.clone(),
            endpoint.repository(&r.repository),
            d.to_string(),
        ),
        None => Reference::with_tag(
            endpoint.host.clone(),
            endpoint.repository(&r.repository),
            r.tag_or_digest().to_string(),
        ),
    }
}

async fn pull_from(
    store: &ImageStore,
    r: &ImageRef,
    endpoint: &Endpoint,
    transport: Transport,
    explicit_auth: Option<Credentials>,
) -> Result<Image> {
    let host = endpoint.host.as_str();
    let client = client_for(store, endpoint, transport)?;
    let auth = auth_for(store, endpoint, explicit_auth)?;
    let reference = r.to_string();
    let fetch = |digest: Option<String>| {
        let client = &client;
        let auth = &auth;
        async move {
            let oci_ref = oci_reference(endpoint, r, digest.as_deref());
            let (bytes, _) = client
                .pull_manifest_raw(&oci_ref, auth, ACCEPT)
                .await
                .map_err(|e| registry_error(r, host, e))?;
            let actual = sha256(&bytes);
            if let Some(expected) = digest.as_deref().or(r.digest.as_deref()) {
                if actual != expected {
                    return Err(Error::DigestMismatch {
                        what: format!("manifest of {r} from {host}"),
                        expected: expected.to_string(),
                        actual,
                    });
                }
            }
            Ok::<_, Error>(bytes.to_vec())
        }
    };

    let mut manifest = fetch(None).await?;
    let mut doc =
        Document::parse(&manifest, &format!("manifest of {reference}")).map_err(|reason| {
            Error::InvalidImage {
                reference: reference.clone(),
                reason,
            }
        })?;
    let mut index = None;
    if doc.is_index() {
        let manifests = doc.manifests.take().unwrap_or_default();
        let chosen = pick_platform(&manifests).ok_or_else(|| Error::InvalidImage {
            reference: reference.clone(),
            reason: format!("no linux/{} image in its index", crate::oci::host_arch()),
        })?;
        let child = fetch(Some(chosen.digest.clone())).await?;
        doc = Document::parse(
            &child,
            &format!("manifest {} of {reference}", chosen.digest),
        )
        .map_err(|reason| Error::InvalidImage {
            reference: reference.clone(),
            reason,
        })?;
        index = Some(std::mem::replace(&mut manifest, child));
    }
    let manifest_digest = sha256(&manifest);
    let oci_ref = oci_reference(endpoint, r, Some(&manifest_digest));

    let config_descriptor = doc.config.clone().ok_or_else(|| Error::InvalidImage {
        reference: reference.clone(),
        reason: "manifest has no config".to_string(),
    })?;
    let mut config_bytes = Vec::new();
    client
        .pull_blob(&oci_ref, &descriptor(&config_descriptor), &mut config_bytes)
        .await
        .map_err(|e| registry_error(r, host, e))?;
    let config = ConfigFile::parse(&config_bytes, &reference)?;
    if doc.layers.len() != config.rootfs.diff_ids.len() {
        return Err(Error::InvalidImage {
            reference,
            reason: format!(
                "manifest has {} layers but the config lists {} diff IDs",
                doc.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    if let Some(bad) = doc
        .layers
        .iter()
        .find(|l| !is_layer_media_type(&l.media_type))
    {
        return Err(Error::InvalidImage {
            reference,
            reason: format!(
                "layer {} has unsupported media type {}",
                bad.digest, bad.media_type
            ),
        });
    }

    let mut layers: Vec<LayerRecord> = Vec::new();
    for (layer, diff_id) in doc.layers.iter().zip(&config.rootfs.diff_ids) {
        let lock = store.inner.layer_lock(diff_id);
        let _guard = lock.lock().await;
        if let Some(present) = store.inner.layer_present(diff_id)? {
            layers.push(present);
            continue;
        }
        let blob = store.inner.tmp("blob");
        let file = tokio::fs::File::create(&blob.0)
            .await
            .map_err(|e| Error::io(format!("creating {}", blob.0.display()), e))?;
        client
            .pull_blob(&oci_ref, &descriptor(layer), file)
            .await
            .map_err(|e| registry_error(r, host, e))?;
        let unpacking = store.clone();
        let diff_id = diff_id.clone();
        let label = format!("{} of {reference}", layer.digest);
        let expected_blob = layer.digest.clone();
        let record = tokio::task::spawn_blocking(move || {
            unpacking
                .inner
                .install_layer(Some(&diff_id), &label, |dest| {
                    let unpacked = crate::unpack::unpack_file(&blob.0, dest, &label)?;
                    if unpacked.blob_digest != expected_blob {
                        return Err(Error::DigestMismatch {
                            what: format!("layer {label}"),
                            expected: expected_blob,
                            actual: unpacked.blob_digest,
                        });
                    }
                    Ok(unpacked)
                })
        })
        .await
        .map_err(|e| Error::io("unpacking task", std::io::Error::other(e.to_string())))??;
        layers.push(record);
    }

    let committing = store.clone();
    let names = vec![reference];
    let image_config = config.image_config();
    tokio::task::spawn_blocking(move || {
        committing.inner.commit(
            &names,
            &manifest,
            &config_bytes,
            index.as_deref(),
            layers,
            image_config,
        )
    })
    .await
    .map_err(|e| Error::io("recording image", std::io::Error::other(e.to_string())))?
}

fn descriptor(d: &crate::oci::Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        ..Default::default()
    }
}
