//! The `kubernetes` Service in `default` (the first address of the service
//! range, port 443 to this server's port) and its Endpoints and
//! EndpointSlice, which list the live API servers: kube-apiserver's
//! bootstrap controller and lease endpoint reconciler. Each server renews a
//! lease (`/registry/masterleases/<ip>`, its advertised address and port)
//! every 10 s; the endpoints are the addresses whose lease is younger than
//! 15 s. A server that shuts down removes its lease and itself from the
//! endpoints. Endpoints may not be loopback addresses: a server advertising
//! none (no `--advertise-address` and no default route) keeps the Service
//! without endpoints and says so once.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::server::State;

const LEASE_PREFIX: &str = "/registry/masterleases/";
const INTERVAL: Duration = Duration::from_secs(10);
const LEASE_TTL: chrono::TimeDelta = chrono::TimeDelta::seconds(15);
const NAMESPACE: &str = "default";
const NAME: &str = "kubernetes";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MasterLease {
    ip: String,
    port: u16,
    renew_time: String,
}

/// How the `kubernetes` endpoints are kept (kube-apiserver's
/// `--endpoint-reconciler-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EndpointReconciler {
    /// Leases in the store list the live API servers.
    #[default]
    Lease,
    /// The Service is kept, its endpoints are not (a server whose store is
    /// compared across time in tests, or endpoints kept by hand).
    None,
}

/// Keeps the Service and its endpoints until [`Reconciler::stop`].
pub struct Reconciler {
    state: Arc<State>,
    advertise: Option<IpAddr>,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Reconciler {
    /// Runs a first round (so a started server has its Service), then
    /// keeps going every 10 s.
    pub async fn start(
        state: Arc<State>,
        kind: EndpointReconciler,
        advertise: Option<IpAddr>,
        port: u16,
    ) -> Reconciler {
        let advertise = advertise.filter(|_| kind == EndpointReconciler::Lease);
        let advertise = advertise.filter(|a| {
            let usable = !a.is_loopback() && a.is_ipv4();
            if !usable {
                tracing::warn!(address = %a, "the kubernetes Service gets no endpoints: \
                    its endpoints may not be loopback (or, here, IPv6) addresses; \
                    start the server with --advertise-address set to an address pods can reach");
            }
            usable
        });
        if advertise.is_none() && kind == EndpointReconciler::Lease {
            tracing::warn!("the kubernetes Service gets no endpoints: this server advertises no address \
                (no --advertise-address and no default route); pods cannot reach the API through it");
        }
        let client = apiserver_client(&state);
        round(&state, &client, advertise, port).await;
        let task = tokio::spawn(run(state.clone(), advertise, port));
        Reconciler {
            state,
            advertise,
            port,
            task,
        }
    }

    pub fn advertised(&self) -> Option<IpAddr> {
        self.advertise
    }

    /// Stops renewing, then removes this server's lease and address.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Some(ip) = self.advertise {
            let key = format!("{LEASE_PREFIX}{ip}");
            let _ = self.state.store.delete(&key, None).await;
            let client = apiserver_client(&self.state);
            if let Err(e) = reconcile_endpoints(&self.state, &client, None, self.port).await {
                tracing::warn!(error = %e, "could not remove this server from the kubernetes endpoints");
            }
        }
    }
}

/// The server's own client for these writes, as kube-apiserver's loopback
/// client: `system:apiserver` in system:masters.
fn apiserver_client(state: &Arc<State>) -> kube::Client {
    crate::server::local_client(state.clone(), crate::auth::UserInfo::apiserver())
}

async fn run(state: Arc<State>, advertise: Option<IpAddr>, port: u16) {
    let client = apiserver_client(&state);
    let mut tick = tokio::time::interval(INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        round(&state, &client, advertise, port).await;
    }
}

async fn round(state: &State, client: &kube::Client, advertise: Option<IpAddr>, port: u16) {
    if let Err(e) = ensure_service(state, client, port).await {
        tracing::warn!(error = %e, "could not create or update the kubernetes Service; retrying in 10s");
    }
    let Some(ip) = advertise else { return };
    if let Err(e) = renew_lease(state, ip, port).await {
        tracing::warn!(error = %e, "could not renew this API server's endpoint lease; retrying in 10s");
        return;
    }
    if let Err(e) = reconcile_endpoints(state, client, Some(ip), port).await {
        tracing::warn!(error = %e, "could not update the kubernetes endpoints; retrying in 10s");
    }
}

fn desired_service(state: &State, port: u16) -> Service {
    let ip = state.service_network.first_ip().to_string();
    serde_json::from_value(json!({
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}
    }))
    .unwrap_or_default()
}

/// Creates the Service, or puts back its type and ports if changed.
async fn ensure_service(
    state: &State,
    client: &kube::Client,
    port: u16,
) -> Result<(), kube::Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let want = desired_service(state, port);
    match api.get_opt(NAME).await? {
        None => match api.create(&PostParams::default(), &want).await {
            Ok(_) => {
                tracing::info!("created the kubernetes Service");
                Ok(())
            }
            // Another server created it first (its IP or name is taken).
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 422 => Ok(()),
            Err(e) => Err(e),
        },
        Some(mut current) => {
            let (Some(spec), Some(want_spec)) = (current.spec.as_mut(), want.spec) else {
                return Ok(());
            };
            let same_ports = spec.ports.as_ref().is_some_and(|ps| {
                ps.len() == 1
                    && want_spec.ports.as_ref().is_some_and(|w| {
                        ps[0].name == w[0].name
                            && ps[0].port == w[0].port
                            && ps[0].protocol == w[0].protocol
                            && ps[0].target_port == w[0].target_port
                    })
            });
            if same_ports && spec.type_.as_deref() == Some("ClusterIP") {
                return Ok(());
            }
            spec.ports = want_spec.ports;
            spec.type_ = Some("ClusterIP".into());
            api.replace(NAME, &PostParams::default(), &current).await?;
            Ok(())
        }
    }
}

async fn renew_lease(state: &State, ip: IpAddr, port: u16) -> Result<(), orca_store::Error> {
    let key = format!("{LEASE_PREFIX}{ip}");
    let value = serde_json::to_vec(&MasterLease {
        ip: ip.to_string(),
        port,
        renew_time: chrono::Utc::now().to_rfc3339(),
    })
    .unwrap_or_default();
    match state.store.get(&key).await? {
        None => match state.store.create(&key, value).await {
            Ok(_) | Err(orca_store::Error::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        },
        Some(kv) => match state.store.update(&key, value, kv.mod_revision).await {
            Ok(_) | Err(orca_store::Error::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        },
    }
}

/// The addresses with a live lease (plus `me`), removing expired leases.
async fn live_addresses(
    state: &State,
    me: Option<IpAddr>,
) -> Result<BTreeSet<String>, orca_store::Error> {
    let page = state
        .store
        .list(LEASE_PREFIX, orca_store::ListOptions::default())
        .await?;
    let now = chrono::Utc::now();
    let mut live: BTreeSet<String> = me.iter().map(ToString::to_string).collect();
    for kv in page.kvs {
        let lease: Option<MasterLease> = serde_json::from_slice(&kv.value).ok();
        let fresh = lease.as_ref().and_then(|l| {
            chrono::DateTime::parse_from_rfc3339(&l.renew_time)
                .ok()
                .map(|t| now - t.with_timezone(&chrono::Utc) <= LEASE_TTL)
        });
        match (lease, fresh) {
            (Some(l), Some(true)) => {
                live.insert(l.ip);
            }
            _ => {
                let _ = state.store.delete(&kv.key, Some(kv.mod_revision)).await;
            }
        }
    }
    Ok(live)
}

/// Writes the Endpoints and EndpointSlice for the live servers (`me` is
/// counted live even before its lease is seen).
async fn reconcile_endpoints(
    state: &State,
    client: &kube::Client,
    me: Option<IpAddr>,
    port: u16,
) -> Result<(), ReconcileError> {
    let addresses = live_addresses(state, me).await?;
    let endpoints: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": if addresses.is_empty() { json!([]) } else { json!([{
            "addresses": addresses.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }]) },
    }))?;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": "IPv4",
        "endpoints": addresses.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }))?;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    match eps.get_opt(NAME).await? {
        None => {
            create_ignoring_conflicts(&eps, &endpoints).await?;
        }
        Some(mut current) => {
            let same = current.subsets.clone().unwrap_or_default()
                == endpoints.subsets.clone().unwrap_or_default()
                && current.metadata.labels == endpoints.metadata.labels;
            if !same {
                current.subsets = endpoints.subsets;
                current.metadata.labels = endpoints.metadata.labels;
                replace_ignoring_conflicts(&eps, &current).await?;
            }
        }
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    match slices.get_opt(NAME).await? {
        None => {
            create_ignoring_conflicts(&slices, &slice).await?;
        }
        Some(mut current) => {
            let same = current.endpoints == slice.endpoints
                && current.ports == slice.ports
                && current.address_type == slice.address_type
                && current.metadata.labels == slice.metadata.labels;
            if !same {
                current.endpoints = slice.endpoints;
                current.ports = slice.ports;
                current.metadata.labels = slice.metadata.labels;
                replace_ignoring_conflicts(&slices, &current).await?;
            }
        }
    }
    Ok(())
}

/// Another server writing the same object at the same time is fine: the
/// next round compares again.
async fn create_ignoring_conflicts<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn replace_ignoring_conflicts<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.replace(&name, &PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why a reconcile round failed.
#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Store(#[from] orca_store::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}
