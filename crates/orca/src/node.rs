//! What `orca server` and `orca agent` share: building an API client and
//! running the node agent with the Linux runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::cli::NodeArgs;

/// How to run this machine's node agent.
pub struct AgentSetup {
    pub data_dir: PathBuf,
    pub node: NodeArgs,
    pub cluster_ca_pem: Vec<u8>,
    /// Every node's pod range (`--cluster-cidr`), for the service proxy.
    pub cluster_cidr: String,
}

/// The node's name: `--node-name`, else the hostname.
pub fn node_name(args: &NodeArgs) -> anyhow::Result<String> {
    match &args.node_name {
        Some(name) => Ok(name.clone()),
        None => hostname(),
    }
}

/// Runs the node agent, with the service proxy and cluster DNS, until
/// `shutdown` completes (then their rules and address are removed).
pub async fn run_agent(
    client: kube::Client,
    setup: AgentSetup,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let cluster_cidr: orca_agent::Ipv4Cidr = setup
        .cluster_cidr
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--cluster-cidr: {e}"))?;
    let node_name = node_name(&setup.node)?;
    let node_ip = match setup.node.node_ip {
        Some(ip) => ip
            .parse()
            .with_context(|| format!("--node-ip {ip} is not an IP address"))?,
        None => default_node_ip()?,
    };
    let agent_dir = setup.data_dir.join("agent");
    crate::server::create_private_dir(&agent_dir)?;
    let mut proxy = orca_agent::ProxyConfig::new(cluster_cidr);
    // The node answers the cluster DNS address itself (see orca-proxy's
    // node_local_cluster_ips): kube-dns must not be DNATed or rejected.
    proxy.node_local_cluster_ips = setup
        .node
        .cluster_dns
        .iter()
        .filter_map(|ip| match ip {
            std::net::IpAddr::V4(ip) => Some(*ip),
            std::net::IpAddr::V6(_) => None,
        })
        .take(1)
        .collect();
    let resolv_conf = match setup.node.resolv_conf {
        Some(path) if path.as_os_str().is_empty() => None,
        Some(path) => Some(path),
        None => Some(orca_dns::resolv_conf::node_resolv_conf_path()),
    };
    let mut config = orca_agent::Config {
        node_name,
        node_ip,
        data_dir: setup.data_dir.clone(),
        streaming_port: setup.node.agent_port,
        cluster_ca_pem: setup.cluster_ca_pem,
        cluster_dns: setup.node.cluster_dns,
        cluster_domain: setup.node.cluster_domain,
        resolv_conf,
        proxy: Some(proxy),
        serve_dns: true,
        ..Default::default()
    };

    let images = open_images(&setup.data_dir).await?;
    // The runtime hands out pod IPs from the node's pod CIDR, which the
    // control plane assigns once the node is registered.
    let pod_cidr = orca_agent::register_node(&client, &config).await?;
    let mut runtime_config = orca_runtime::RuntimeConfig::new(agent_dir, Arc::new(images));
    runtime_config.pod_cidr = pod_cidr.clone();
    runtime_config.bridge = setup.node.pod_bridge;
    let runtime = orca_runtime::LinuxRuntime::new(runtime_config)
        .context("starting the container runtime")?;
    let overlay = crate::pod_network::config(
        setup.node.flannel_backend.overlay(),
        &config.node_name,
        node_ip,
        &pod_cidr,
    );
    config.pod_cidr = Some(pod_cidr);
    // Ending the agent drops the overlay, which removes the node's routes
    // to the other nodes; its pods keep running and are adopted again at
    // the next start.
    crate::pod_network::run_with(client.clone(), overlay, |network_problem| {
        config.network_problem = network_problem;
        orca_agent::run_until(client, Arc::new(runtime), config, shutdown)
    })
    .await?;
    Ok(())
}

/// Opens the node's image store with `DATA_DIR/registries.yaml`, importing
/// the archives dropped in `DATA_DIR/agent/images/` (known ones are skipped).
async fn open_images(data_dir: &Path) -> anyhow::Result<orca_image::ImageStore> {
    let registries_file = data_dir.join("registries.yaml");
    let registries = if registries_file.exists() {
        orca_image::RegistriesConfig::load(&registries_file)?
    } else {
        Default::default()
    };
    let images_dir = data_dir.join("agent/images");
    let images = orca_image::ImageStore::open(&images_dir, registries)
        .with_context(|| format!("opening the image store {}", images_dir.display()))?;
    let report = images.import_dir(&images_dir).await?;
    for (archive, imported) in &report.imported {
        let names: Vec<&str> = imported.iter().map(|i| i.reference.as_str()).collect();
        tracing::info!(archive = %archive.display(), images = ?names, "imported image archive");
    }
    for (archive, err) in &report.failed {
        tracing::warn!(archive = %archive.display(), %err, "could not import image archive; fix or remove it");
    }
    Ok(images)
}

fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading this machine's hostname")?;
    Ok(name.trim().to_lowercase())
}

/// The address of the interface holding the default route, which is what a
/// node advertises as its InternalIP. A UDP connect sends no packet; it only
/// asks the kernel which source address it would use.
fn default_node_ip() -> anyhow::Result<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    match socket
        .connect("192.0.2.1:9")
        .and_then(|_| socket.local_addr())
    {
        Ok(addr) => Ok(addr.ip()),
        Err(_) => Ok(std::net::Ipv4Addr::LOCALHOST.into()),
    }
}
