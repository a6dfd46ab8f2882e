//! Command-line interface: flags and subcommands, and the wiring behind them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "orca", version, about = "Kubernetes pods in one binary", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control plane (API server, store, scheduler, controllers) and a node agent.
    Server(ServerArgs),
    /// Run a node agent that joins a control plane on another machine.
    Agent(AgentArgs),
    /// Register simulated nodes (like kwok) with a control plane, for scale tests.
    VirtualNodes(VirtualNodesArgs),
    /// Manage the node's image store.
    Images(ImagesArgs),
    /// Print the version.
    Version,
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Where the store, certificates, kubeconfig and agent state live.
    #[arg(long, default_value = "/var/lib/orca")]
    pub data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: String,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub https_port: u16,
    /// Extra subject alternative names for the serving certificate.
    #[arg(long = "tls-san", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// etcd endpoints (comma-separated) instead of the embedded store.
    #[arg(long, value_delimiter = ',')]
    pub datastore_endpoint: Vec<String>,
    /// Join the cluster already in the datastore as another server: a file
    /// holding its token (DATA_DIR/token on its first server), which
    /// decrypts the cluster CA and keys stored there.
    #[arg(long, requires = "datastore_endpoint")]
    pub token_file: Option<PathBuf>,
    /// Run the control plane only, without a node agent on this machine.
    #[arg(long)]
    pub disable_agent: bool,
    /// Do not run the scheduler in this server.
    #[arg(long)]
    pub disable_scheduler: bool,
    /// Read-only API requests served at once; more get 429 (0: no limit).
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Mutating API requests served at once; more get 429 (0: no limit).
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// Lifetime of the client certificates the cluster CA signs for nodes,
    /// e.g. 8760h, 30m, 90s (kube-controller-manager's
    /// --cluster-signing-duration); agents renew at 80% of it.
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    pub cluster_signing_duration: std::time::Duration,
    /// Also register this many simulated nodes (for scale tests).
    #[arg(long, default_value_t = 0)]
    pub virtual_nodes: u32,
    /// The range node pod CIDRs (a /24 each) are carved from.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// The range Service cluster IPs come from; its first address is the
    /// `kubernetes` Service's.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// The range Service node ports come from.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// The address pods and other machines reach the API server at, listed
    /// in the `kubernetes` Service's endpoints (default: the bind address if
    /// it is a specific one, else the address of the default route's
    /// interface, where the server then listens too).
    #[arg(long)]
    pub advertise_address: Option<std::net::IpAddr>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// How this machine's node agent presents itself (`orca server` and `orca agent`).
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Name of this node (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// IP address this node advertises (default: the address of the default route's interface).
    #[arg(long)]
    pub node_ip: Option<String>,
    /// HTTPS port of the node agent's logs/exec/attach server (the kubelet's 10250).
    #[arg(long, default_value_t = 10250)]
    pub agent_port: u16,
    /// The bridge this node's pods are attached to.
    #[arg(long, default_value = "orca0")]
    pub pod_bridge: String,
    /// How pods reach pods on other nodes: vxlan (an overlay over UDP 8472,
    /// works wherever nodes reach each other), host-gw (routes to the other
    /// nodes' addresses; nodes must share a link) or none. Use the same on
    /// every node.
    #[arg(long, value_enum, default_value = "vxlan")]
    pub flannel_backend: FlannelBackend,
    /// The cluster DNS address (comma-separated for several): the
    /// nameserver of pods with `dnsPolicy: ClusterFirst`, served by every
    /// node on its `lo` (the kubelet's --cluster-dns). Its Service is
    /// `kube-system/kube-dns`.
    #[arg(long, value_delimiter = ',', default_value = "10.43.0.10")]
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain (the kubelet's --cluster-domain).
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The node's resolv.conf: what `dnsPolicy: Default` pods get and where
    /// cluster DNS forwards other names; "" for none (default:
    /// /etc/resolv.conf, or systemd-resolved's list of real resolvers when
    /// that file names only its local stub).
    #[arg(long)]
    pub resolv_conf: Option<PathBuf>,
}

/// `--flannel-backend`, as k3s names its values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlannelBackend {
    Vxlan,
    #[value(name = "host-gw")]
    HostGw,
    None,
}

impl FlannelBackend {
    pub fn overlay(self) -> Option<orca_overlay::Backend> {
        match self {
            FlannelBackend::Vxlan => Some(orca_overlay::Backend::Vxlan),
            FlannelBackend::HostGw => Some(orca_overlay::Backend::HostGw),
            FlannelBackend::None => None,
        }
    }
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// URL of the API server to join, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    pub server: String,
    /// File holding the bearer token the agent authenticates with.
    #[arg(long)]
    pub token_file: PathBuf,
    /// Where the agent keeps images, pods and logs.
    #[arg(long, default_value = "/var/lib/orca")]
    pub data_dir: PathBuf,
    /// The range every node's pod addresses come from: the server's
    /// --cluster-cidr (the service proxy masquerades Service traffic from
    /// outside it, and pod traffic leaving it).
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Simulated nodes against a running control plane: either `--server` with
/// the server's node token, or a kubeconfig.
#[derive(Args, Debug)]
pub struct VirtualNodesArgs {
    /// How many nodes to register.
    #[arg(long)]
    pub count: usize,
    /// URL of the API server, e.g. https://10.0.0.1:6443 (with --token-file).
    #[arg(long, requires = "token_file", conflicts_with = "kubeconfig")]
    pub server: Option<String>,
    /// File holding the server's node token (DATA_DIR/token on the server).
    #[arg(long, requires = "server")]
    pub token_file: Option<PathBuf>,
    /// Kubeconfig to connect with instead of --server and --token-file.
    #[arg(long, required_unless_present = "server")]
    pub kubeconfig: Option<PathBuf>,
    /// Nodes are named PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "virtual-node-")]
    pub name_prefix: String,
    /// Node i gets the /24 pod range at this address plus 256 * i.
    #[arg(long, default_value = "10.128.0.0")]
    pub pod_cidr_base: std::net::Ipv4Addr,
    /// Each node's cpu capacity.
    #[arg(long, default_value = "32")]
    pub cpu: String,
    /// Each node's memory capacity.
    #[arg(long, default_value = "256Gi")]
    pub memory: String,
    /// Each node's pod capacity.
    #[arg(long, default_value = "110")]
    pub max_pods: String,
    /// Extra node labels, KEY=VALUE (comma-separated); type=virtual is always set.
    #[arg(long = "node-labels", value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Node taints KEY[=VALUE]:EFFECT (comma-separated), replacing the default
    /// orca.dev/virtual-node=true:NoSchedule; pass "" for untainted nodes
    /// that take any pod.
    #[arg(long = "register-with-taints", value_delimiter = ',')]
    pub register_with_taints: Option<Vec<String>>,
    /// Remove deleted pods at once instead of at the end of their grace period.
    #[arg(long)]
    pub immediate_termination: bool,
    /// API writes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub parallelism: usize,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// The data directory whose image store to manage.
    #[arg(long, default_value = "/var/lib/orca", global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Import `docker save` or OCI archives, or a plain root filesystem tarball.
    Import {
        /// Archives to import.
        files: Vec<PathBuf>,
        /// Treat the input as a plain root filesystem tarball.
        #[arg(long, requires = "name")]
        rootfs: Option<PathBuf>,
        /// Image name for `--rootfs`, e.g. busybox:latest.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the images on this node.
    List,
    /// Remove images by name or digest.
    Rm { images: Vec<String> },
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Version => {
                println!("orca {}", env!("CARGO_PKG_VERSION"));
                Ok(())
            }
            Command::Server(args) => crate::server::run(args),
            Command::Agent(args) => crate::agent::run(args),
            Command::VirtualNodes(args) => crate::virtual_nodes::run(args),
            Command::Images(args) => crate::images::run(args),
        }
    }
}

/// `90s`, `30m` or `8760h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 30m or 8760h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?} is not a duration such as 90s, 30m or 8760h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_defaults_match_the_documented_contract() {
        let cli = Cli::try_parse_from(["orca", "server"]).unwrap();
        let Command::Server(args) = cli.command else {
            panic!("not server")
        };
        assert_eq!(args.data_dir, PathBuf::from("/var/lib/orca"));
        assert_eq!(args.https_port, 6443);
        assert_eq!(args.bind_address, "127.0.0.1");
        assert_eq!(args.service_cidr, "10.43.0.0/16");
        assert_eq!(args.service_node_port_range, "30000-32767");
        assert_eq!(args.advertise_address, None);
        assert_eq!(args.cluster_cidr, "10.42.0.0/16");
        assert_eq!(
            args.node.cluster_dns,
            ["10.43.0.10".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(args.node.cluster_domain, "cluster.local");
        assert_eq!(args.node.resolv_conf, None);
        assert_eq!(
            args.node.flannel_backend.overlay(),
            Some(orca_overlay::Backend::Vxlan)
        );
    }

    #[test]
    fn flannel_backends_are_k3s_names() {
        let backend = |name: &str| {
            let cli = Cli::try_parse_from([
                "orca",
                "agent",
                "--server",
                "https://s:6443",
                "--token-file",
                "t",
                "--flannel-backend",
                name,
            ])?;
            let Command::Agent(args) = cli.command else {
                panic!("not agent")
            };
            Ok::<_, clap::Error>(args.node.flannel_backend.overlay())
        };
        assert_eq!(
            backend("host-gw").unwrap(),
            Some(orca_overlay::Backend::HostGw)
        );
        assert_eq!(
            backend("vxlan").unwrap(),
            Some(orca_overlay::Backend::Vxlan)
        );
        assert_eq!(backend("none").unwrap(), None);
        assert!(backend("wireguard").is_err());
    }

    #[test]
    fn agent_takes_the_cluster_cidr_and_dns_settings_as_the_server_does() {
        let cli = Cli::try_parse_from([
            "orca",
            "agent",
            "--server",
            "https://10.0.0.1:6443",
            "--token-file",
            "t",
            "--cluster-dns",
            "10.96.0.10",
            "--cluster-domain",
            "example.internal",
        ])
        .unwrap();
        let Command::Agent(args) = cli.command else {
            panic!("not agent")
        };
        assert_eq!(args.cluster_cidr, "10.42.0.0/16");
        assert_eq!(
            args.node.cluster_dns,
            ["10.96.0.10".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(args.node.cluster_domain, "example.internal");
    }

    #[test]
    fn rootfs_import_requires_a_name() {
        assert!(Cli::try_parse_from(["orca", "images", "import", "--rootfs", "x.tar"]).is_err());
    }

    #[test]
    fn virtual_nodes_take_a_server_and_token_or_a_kubeconfig() {
        let cli = Cli::try_parse_from([
            "orca",
            "virtual-nodes",
            "--count",
            "3",
            "--server",
            "https://127.0.0.1:6443",
            "--token-file",
            "/tmp/token",
        ])
        .unwrap();
        let Command::VirtualNodes(args) = cli.command else {
            panic!("not virtual-nodes")
        };
        assert_eq!(args.count, 3);
        assert_eq!(args.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(args.name_prefix, "virtual-node-");
        assert_eq!(args.register_with_taints, None);
        let with_kubeconfig = [
            "orca",
            "virtual-nodes",
            "--count",
            "1",
            "--kubeconfig",
            "kc",
        ];
        assert!(Cli::try_parse_from(with_kubeconfig).is_ok());
        // One way to connect, and a complete one.
        assert!(Cli::try_parse_from(["orca", "virtual-nodes", "--count", "1"]).is_err());
        assert!(Cli::try_parse_from([
            "orca",
            "virtual-nodes",
            "--count",
            "1",
            "--server",
            "https://127.0.0.1:6443"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "orca",
            "virtual-nodes",
            "--count",
            "1",
            "--kubeconfig",
            "kc",
            "--server",
            "https://127.0.0.1:6443",
            "--token-file",
            "t"
        ])
        .is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
