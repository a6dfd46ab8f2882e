//! Test setup shared by the crates' integration tests (a dev-dependency
//! only): a real API server over the SQLite store in a directory the test
//! owns, an admin client for it over HTTPS, and polling with a deadline.
//!
//! For multi-node tests: machines on a LAN simulated with network
//! namespaces ([`lan`]), a real etcd cluster ([`etcd`]), and `orca server`
//! and `orca agent` processes with kubectl ([`orca`]).

pub mod etcd;
pub mod lan;
pub mod orca;
pub mod process;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use orca_apiserver::ApiServer;

/// Creates the `default` ServiceAccount of `namespace`, which the
/// ServiceAccount admission plugin wants for every pod (in a cluster, a
/// controller makes it).
pub async fn default_service_account(client: &kube::Client, namespace: &str) {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), namespace);
    let mut account = ServiceAccount::default();
    account.metadata.name = Some("default".into());
    match accounts.create(&Default::default(), &account).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating the default service account of {namespace}: {e}"),
    }
}

/// Starts an API server keeping its store, certificates and kubeconfig in
/// `dir`, on a free loopback port, with the `default` ServiceAccount of the
/// `default` namespace.
pub async fn api_server(dir: &Path) -> ApiServer {
    let store = orca_store::sqlite::SqliteStore::open(&dir.join("db/state.db"), Default::default())
        .expect("opening the SQLite store");
    let server = orca_apiserver::start(
        orca_apiserver::Config {
            data_dir: dir.to_path_buf(),
            https_port: 0,
            ..Default::default()
        },
        Arc::new(store),
    )
    .await
    .expect("the API server starts");
    default_service_account(
        &server.local_client(orca_apiserver::auth::UserInfo::admin()),
        "default",
    )
    .await;
    server
}

/// In-process clients with the identities `orca server` gives the
/// controllers: the controller manager's (`system:kube-controller-manager`,
/// for lists, watches and its leader Lease) and, by controller name, each
/// controller's service account in kube-system, so that the bootstrap
/// policy's roles are what lets them work. For `orca_controllers::Clients::new`.
pub fn controller_identities(
    server: &ApiServer,
) -> (
    kube::Client,
    impl Fn(&str) -> kube::Client + Send + Sync + 'static,
) {
    use orca_apiserver::auth::UserInfo;
    let local = server.local_clients();
    let manager = local.client(UserInfo::kube_controller_manager());
    (manager, move |name: &str| {
        local.client(UserInfo::controller(name))
    })
}

/// A client with the server's admin kubeconfig, as kubectl would connect.
pub async fn admin_client(server: &ApiServer) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig_path())
        .expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("loading the kubeconfig");
    kube::Client::try_from(config).expect("building the client")
}

/// Polls `check` every 100 ms until it returns `Some`, failing the test
/// after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
