//! `orca server`: the store, the API server, and the in-process API clients
//! (controllers, scheduler, node agent, virtual nodes) wired together.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use orca_store::Store;

use crate::cli::ServerArgs;
use crate::node;

/// How long the node agent has to remove its rules and address at shutdown.
const AGENT_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    create_private_dir(&args.data_dir)?;
    let mut service_network =
        orca_apiserver::ServiceNetwork::new(&args.service_cidr, &args.service_node_port_range)
            .context("--service-cidr / --service-node-port-range")?;
    if let Some(std::net::IpAddr::V4(dns)) = args.node.cluster_dns.first() {
        service_network = service_network.with_cluster_dns(*dns);
    }
    let store = open_store(&args).await?;
    // Servers on one etcd serve one cluster: the first stores its CA and
    // keys there, the others take them.
    let shared = !args.datastore_endpoint.is_empty();
    if shared {
        crate::bootstrap::join(store.as_ref(), &args.data_dir, args.token_file.as_deref()).await?;
    }
    let api = orca_apiserver::start(
        orca_apiserver::Config {
            data_dir: args.data_dir.clone(),
            bind_address: args.bind_address.clone(),
            https_port: args.https_port,
            tls_sans: args.tls_san.clone(),
            advertise_address: args.advertise_address,
            service_network,
            endpoint_reconciler: orca_apiserver::EndpointReconciler::Lease,
            // The embedded store compacts its own log; etcd needs the API
            // server to do it, as kube-apiserver does.
            compaction_interval: if args.datastore_endpoint.is_empty() {
                std::time::Duration::ZERO
            } else {
                orca_apiserver::Config::default().compaction_interval
            },
            max_requests_inflight: args.max_requests_inflight,
            max_mutating_requests_inflight: args.max_mutating_requests_inflight,
            cluster_signing_duration: args.cluster_signing_duration,
        },
        store.clone(),
    )
    .await
    .context("starting the API server")?;
    if shared {
        crate::bootstrap::publish(store.as_ref(), &args.data_dir).await?;
    }
    tracing::info!(
        address = %api.addr(),
        advertise = ?api.advertise_address(),
        kubeconfig = %api.kubeconfig_path().display(),
        "API server ready"
    );
    // The in-process components use the API like any client, without the
    // TLS and TCP round trip a loopback connection would cost, each with
    // its own identity so that the authorizers judge them as remote ones.
    use orca_apiserver::auth::UserInfo;
    let clients = api.local_clients();

    let mut tasks = tokio::task::JoinSet::new();
    let cluster_cidr =
        orca_controllers::ipam::parse_cidr(&args.cluster_cidr).with_context(|| {
            format!(
                "--cluster-cidr {}: expected an IPv4 CIDR such as 10.42.0.0/16",
                args.cluster_cidr
            )
        })?;
    let ca_path = args.data_dir.join("tls/ca.crt");
    let root_ca_pem = std::fs::read_to_string(&ca_path)
        .with_context(|| format!("reading the cluster CA {}", ca_path.display()))?;
    let controllers = orca_controllers::Config {
        cluster_cidr,
        root_ca_pem: Some(root_ca_pem),
        ..Default::default()
    };
    let per_controller = clients.clone();
    let controller_clients = orca_controllers::Clients::new(
        clients.client(UserInfo::kube_controller_manager()),
        move |name| per_controller.client(UserInfo::controller(name)),
    );
    // The controllers stop on their own at shutdown, to release their
    // leader Lease for another server.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut controllers_task = tokio::spawn(named(
        "controllers",
        orca_controllers::run(controller_clients, controllers, async move {
            let _ = stop_rx.changed().await;
        }),
    ));
    // The scheduler too, to release its Lease.
    let mut scheduler = None;
    if !args.disable_scheduler {
        let config = orca_scheduler::Config::default();
        let mut stop = stop_tx.subscribe();
        let handle = tasks.spawn(named(
            "scheduler",
            orca_scheduler::run_until(
                clients.client(UserInfo::kube_scheduler()),
                config,
                async move {
                    let _ = stop.changed().await;
                },
            ),
        ));
        scheduler = Some(handle.id());
    }
    if args.virtual_nodes > 0 {
        let config = orca_virtual_nodes::Config {
            count: args.virtual_nodes as usize,
            ..Default::default()
        };
        tasks.spawn(named(
            "virtual nodes",
            // A simulator of many kubelets behind one client, as kwok (which
            // runs with cluster-admin): no single node identity fits it.
            orca_virtual_nodes::run(clients.client(UserInfo::virtual_nodes()), config),
        ));
    }
    // The agent is told to stop rather than cancelled: it then removes the
    // service proxy's rules and the cluster DNS address.
    let (stop_agent, agent_stopped) = tokio::sync::watch::channel(false);
    let mut agent = None;
    if !args.disable_agent {
        let ca =
            std::fs::read(args.data_dir.join("tls/ca.crt")).context("reading the cluster CA")?;
        // The embedded agent is judged as a remote one: the node authorizer
        // and NodeRestriction keep it to its own node.
        let node_client = clients.client(UserInfo::node(&node::node_name(&args.node)?));
        let setup = node::AgentSetup {
            data_dir: args.data_dir.clone(),
            node: args.node,
            cluster_ca_pem: ca,
            cluster_cidr: args.cluster_cidr.clone(),
        };
        let mut stopped = agent_stopped;
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let handle = tasks.spawn(named(
            "node agent",
            node::run_agent(node_client, setup, shutdown),
        ));
        agent = Some(handle.id());
    }

    let mut controllers_done = false;
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        Some(done) = tasks.join_next() => {
            let result = done.context("a component panicked")?;
            result?;
        }
        done = &mut controllers_task => {
            controllers_done = true;
            done.context("the controllers panicked")??;
        }
    }
    // The components stop before the API server, so that their requests in
    // flight do not fail (and log) as it goes away; the agent first, while
    // the others still run.
    if let Some(id) = agent {
        stop_agent.send_replace(true);
        let agent_done = async {
            while let Some(done) = tasks.join_next_with_id().await {
                if matches!(&done, Ok((done_id, _)) if *done_id == id) {
                    break;
                }
            }
        };
        if tokio::time::timeout(AGENT_STOP_TIMEOUT, agent_done)
            .await
            .is_err()
        {
            tracing::warn!("the node agent did not stop within {AGENT_STOP_TIMEOUT:?}");
        }
    }
    let _ = stop_tx.send(true);
    if let Some(id) = scheduler {
        let scheduler_done = async {
            while let Some(done) = tasks.join_next_with_id().await {
                if matches!(&done, Ok((done_id, _)) if *done_id == id) {
                    break;
                }
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(5), scheduler_done)
            .await
            .is_err()
        {
            tracing::warn!("the scheduler did not stop within 5s");
        }
    }
    if !controllers_done
        && tokio::time::timeout(std::time::Duration::from_secs(5), &mut controllers_task)
            .await
            .is_err()
    {
        controllers_task.abort();
    }
    tasks.shutdown().await;
    api.shutdown().await;
    Ok(())
}

async fn open_store(args: &ServerArgs) -> anyhow::Result<Arc<dyn Store>> {
    if args.datastore_endpoint.is_empty() {
        let db_dir = args.data_dir.join("db");
        create_private_dir(&db_dir)?;
        let path = db_dir.join("state.db");
        let store = orca_store::sqlite::SqliteStore::open(&path, Default::default())
            .with_context(|| format!("opening the embedded store at {}", path.display()))?;
        Ok(Arc::new(store))
    } else {
        let store = orca_store::etcd::EtcdStore::connect(&args.datastore_endpoint)
            .await
            .with_context(|| {
                format!(
                    "connecting to etcd at {}",
                    args.datastore_endpoint.join(",")
                )
            })?;
        Ok(Arc::new(store))
    }
}

async fn named<E>(
    name: &'static str,
    task: impl std::future::Future<Output = Result<(), E>>,
) -> anyhow::Result<()>
where
    E: Into<anyhow::Error>,
{
    task.await
        .map_err(Into::into)
        .with_context(|| format!("{name} stopped"))
}

pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
