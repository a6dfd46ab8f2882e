//! Publishes the cluster CA as the ConfigMap `kube-root-ca.crt` (key
//! `ca.crt`) in every namespace, as kube-controller-manager's
//! root-ca-cert-publisher does: made when a namespace appears, made again
//! when deleted, and put back when edited. Pods read it through their
//! `kube-api-access-*` volume to trust the API server.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;

pub const NAME: &str = "kube-root-ca.crt";
pub const KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// How often a failed write is tried again.
const RETRY: Duration = Duration::from_secs(1);
const ATTEMPTS: usize = 5;

/// Keeps `kube-root-ca.crt` holding `ca_pem` in every namespace.
/// Watches as `reader` (the controller manager's informers) and writes as
/// `writer` (the root-ca-cert-publisher service account).
pub async fn run(reader: kube::Client, writer: kube::Client, ca_pem: String) -> anyhow::Result<()> {
    let client = reader;
    let namespaces = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .filter_map(|e| async move {
        match e {
            Ok(watcher::Event::Apply(ns) | watcher::Event::InitApply(ns))
                if ns.metadata.deletion_timestamp.is_none() =>
            {
                ns.metadata.name
            }
            _ => None,
        }
    });
    // The ConfigMaps themselves: an edit or a delete is repaired.
    let config_maps = watcher(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={NAME}")),
    )
    .default_backoff()
    .filter_map(|e| async move {
        match e {
            Ok(
                watcher::Event::Apply(cm)
                | watcher::Event::InitApply(cm)
                | watcher::Event::Delete(cm),
            ) => cm.metadata.namespace,
            _ => None,
        }
    });
    let mut names = stream::select(namespaces, config_maps).boxed();
    while let Some(namespace) = names.next().await {
        for attempt in 1..=ATTEMPTS {
            match sync(&client, &writer, &namespace, &ca_pem).await {
                Ok(()) => break,
                // A namespace being deleted takes no new content.
                Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => break,
                Err(err) if attempt == ATTEMPTS => tracing::warn!(
                    %namespace, %err,
                    "could not publish {NAME}; it is tried again when the namespace or the ConfigMap changes"
                ),
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        }
    }
    Ok(())
}

fn wanted_data(ca_pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(KEY.to_string(), ca_pem.to_string())])
}

/// Creates or repairs the ConfigMap of `namespace`.
async fn sync(
    reader: &kube::Client,
    writer: &kube::Client,
    namespace: &str,
    ca_pem: &str,
) -> Result<(), kube::Error> {
    let api = Api::<ConfigMap>::namespaced(writer.clone(), namespace);
    let data = wanted_data(ca_pem);
    let current = Api::<ConfigMap>::namespaced(reader.clone(), namespace)
        .get_opt(NAME)
        .await?;
    match current {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    annotations: Some(BTreeMap::from([(
                        DESCRIPTION_ANNOTATION.to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => {
                    tracing::info!(%namespace, "published {NAME}");
                    Ok(())
                }
                // Made meanwhile: its own watch event checks it.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(mut cm) => {
            let described = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                .is_some_and(|d| !d.is_empty());
            if cm.data.as_ref() == Some(&data) && described {
                return Ok(());
            }
            cm.data = Some(data);
            cm.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            // Kept as read, so a concurrent change is a conflict, retried.
            api.replace(NAME, &PostParams::default(), &cm).await?;
            tracing::info!(%namespace, "repaired {NAME}");
            Ok(())
        }
    }
}
