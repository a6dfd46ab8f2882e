//! The ServiceAccount admission plugin, on pod create: the pod runs as a
//! service account that exists (`default` unless it names one), gets the
//! account's image pull secrets if it has none, and unless automounting is
//! off (pod, else account) the `kube-api-access-*` projected volume with
//! its token, the cluster CA and the namespace, mounted read-only at
//! /var/run/secrets/kubernetes.io/serviceaccount in every container.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use serde_json::{json, Value};

use crate::resources;
use crate::server::State;
use crate::status::ApiError;

/// Marks a static pod's mirror, which may not use service accounts.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// As kube-apiserver: the `default` account is made by a controller just
/// after its namespace, so a pod created meanwhile waits for it a little.
const DEFAULT_ACCOUNT_ATTEMPTS: usize = 10;

fn forbidden(pod: &str, why: String) -> ApiError {
    ApiError::forbidden(format!("pods \"{pod}\" is forbidden: {why}"))
        .with_details(json!({"name": pod, "kind": "pods"}))
}

async fn service_account(
    state: &State,
    namespace: &str,
    name: &str,
) -> Result<Option<ServiceAccount>, ApiError> {
    let def = resources::find("", "v1", "serviceaccounts").expect("serviceaccounts are served");
    let attempts = if name == "default" {
        DEFAULT_ACCOUNT_ATTEMPTS
    } else {
        1
    };
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 + rand::random_range(0..100))).await;
        }
        let found = crate::sa_tokens::lookup(state, def, Some(namespace), name).await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

pub async fn admit(state: &State, obj: &mut Value) -> Result<(), ApiError> {
    let namespace = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pod_name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut pod: Pod = serde_json::from_value(obj.take())
        .map_err(|e| ApiError::bad_request(format!("cannot decode the pod: {e}")))?;
    let result = admit_pod(state, &namespace, &pod_name, &mut pod).await;
    *obj = serde_json::to_value(&pod)
        .map_err(|e| ApiError::internal(format!("cannot encode the pod: {e}")))?;
    result
}

async fn admit_pod(
    state: &State,
    namespace: &str,
    pod_name: &str,
    pod: &mut Pod,
) -> Result<(), ApiError> {
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    let spec = pod.spec.get_or_insert_with(Default::default);
    let named = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| spec.service_account.clone().filter(|s| !s.is_empty()));
    if mirror {
        if named.is_some() {
            return Err(forbidden(
                pod_name,
                "a mirror pod may not reference service accounts".into(),
            ));
        }
        return Ok(());
    }
    let name = named.unwrap_or_else(|| "default".into());
    spec.service_account_name = Some(name.clone());
    spec.service_account = Some(name.clone());
    let sa = service_account(state, namespace, &name)
        .await?
        .ok_or_else(|| {
            forbidden(
                pod_name,
                format!(
                    "error looking up service account {namespace}/{name}: serviceaccount \"{name}\" not found"
                ),
            )
        })?;
    if spec
        .image_pull_secrets
        .as_ref()
        .is_none_or(|s| s.is_empty())
    {
        if let Some(secrets) = sa.image_pull_secrets.filter(|s| !s.is_empty()) {
            spec.image_pull_secrets = Some(secrets);
        }
    }
    let random: [u8; 5] = rand::random();
    orca_api::defaults::mount_service_account_token(
        pod,
        sa.automount_service_account_token,
        &orca_api::defaults::name_suffix(&random),
    );
    Ok(())
}
