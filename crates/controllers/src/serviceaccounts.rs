//! Keeps a `default` ServiceAccount in every namespace, as Kubernetes'
//! service account controller does (pods default to it).

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{watcher, WatchStreamExt};

pub async fn run(clients: &crate::Clients) -> anyhow::Result<()> {
    let client = clients.controller("service-account-controller");
    let namespaces: Api<Namespace> = Api::all(clients.informers());
    let mut events = watcher(namespaces, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(namespace) = events.next().await {
        let Ok(namespace) = namespace else { continue };
        if namespace.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(name) = namespace.metadata.name else {
            continue;
        };
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => tracing::info!(namespace = %name, "created default service account"),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => {
                tracing::warn!(namespace = %name, %err, "could not create the default service account")
            }
        }
    }
    Ok(())
}
