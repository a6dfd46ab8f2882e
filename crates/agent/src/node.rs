//! The Node object: registration with the host's capacity and facts,
//! waiting for the control plane to assign a pod CIDR, status updates and
//! the heartbeat Lease in `kube-node-lease`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Namespace, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::{Config, Error};

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// Node status is posted at least this often even when nothing changed.
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(60);
pub const MAX_PODS: i64 = 110;

/// What the host reports about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostFacts {
    pub cpus: u64,
    pub memory_kib: u64,
    pub ephemeral_storage_kib: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub architecture: String,
    pub machine_id: String,
    pub boot_id: String,
    pub system_uuid: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl HostFacts {
    pub fn gather(data_dir: &std::path::Path) -> HostFacts {
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0);
        let ephemeral_storage_kib = nix::sys::statvfs::statvfs(data_dir)
            .map(|s| s.blocks() * s.fragment_size() / 1024)
            .unwrap_or(0);
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "Linux".into());
        let machine_id = read_trim("/etc/machine-id");
        let system_uuid = Some(read_trim("/sys/class/dmi/id/product_uuid"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| machine_id.clone());
        HostFacts {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1),
            memory_kib,
            ephemeral_storage_kib,
            kernel_version: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().to_string())
                .unwrap_or_default(),
            os_image,
            architecture: match std::env::consts::ARCH {
                "x86_64" => "amd64".into(),
                "aarch64" => "arm64".into(),
                other => other.into(),
            },
            machine_id,
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            system_uuid,
        }
    }
}

/// The version the node reports as kubelet version: the Kubernetes API
/// level Orca serves, tagged with Orca's own version.
pub fn kubelet_version() -> String {
    format!("v1.32.0+orca.{}", env!("CARGO_PKG_VERSION"))
}

fn q(s: impl Into<String>) -> Quantity {
    Quantity(s.into())
}

/// Capacity and allocatable as the kubelet computes them with its default
/// eviction thresholds (memory.available < 100Mi, nodefs.available < 10%).
pub fn capacity(f: &HostFacts) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut cap = BTreeMap::new();
    cap.insert("cpu".to_string(), q(f.cpus.to_string()));
    cap.insert("memory".to_string(), q(format!("{}Ki", f.memory_kib)));
    cap.insert(
        "ephemeral-storage".to_string(),
        q(format!("{}Ki", f.ephemeral_storage_kib)),
    );
    cap.insert("pods".to_string(), q(MAX_PODS.to_string()));
    cap.insert("hugepages-1Gi".to_string(), q("0"));
    cap.insert("hugepages-2Mi".to_string(), q("0"));
    let mut alloc = cap.clone();
    alloc.insert(
        "memory".to_string(),
        q(format!("{}Ki", f.memory_kib.saturating_sub(100 * 1024))),
    );
    let storage_bytes = f.ephemeral_storage_kib * 1024;
    alloc.insert(
        "ephemeral-storage".to_string(),
        q((storage_bytes - storage_bytes / 10).to_string()),
    );
    (cap, alloc)
}

/// The Ready condition's state: the problem that keeps the node from being
/// Ready (None: Ready), since when it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Readiness {
    pub problem: Option<String>,
    pub since: Time,
}

impl Readiness {
    /// Moves to `problem`, keeping the transition time unless Ready flips.
    pub fn update(&mut self, problem: Option<String>, now: Time) {
        if problem.is_some() != self.problem.is_some() {
            self.since = now;
        }
        self.problem = problem;
    }
}

/// The four node conditions: no pressure reported, Ready unless `ready`
/// names a problem.
pub fn conditions(now: Time, since: Time, ready: &Readiness) -> Vec<NodeCondition> {
    let c = |type_: &str, status: &str, reason: &str, message: &str, since: &Time| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(since.clone()),
    };
    let ready_condition = match &ready.problem {
        None => c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
            &ready.since,
        ),
        Some(problem) => c(
            "Ready",
            "False",
            crate::readiness::NOT_READY_REASON,
            problem,
            &ready.since,
        ),
    };
    vec![
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            &since,
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            &since,
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            &since,
        ),
        ready_condition,
    ]
}

/// The node's status fields the agent owns, as a JSON merge patch body.
pub fn status_patch(
    config: &Config,
    facts: &HostFacts,
    port: u16,
    now: Time,
    since: Time,
    ready: &Readiness,
) -> serde_json::Value {
    let (cap, alloc) = capacity(facts);
    let info = NodeSystemInfo {
        architecture: facts.architecture.clone(),
        boot_id: facts.boot_id.clone(),
        container_runtime_version: format!("orca://{}", env!("CARGO_PKG_VERSION")),
        kernel_version: facts.kernel_version.clone(),
        kube_proxy_version: kubelet_version(),
        kubelet_version: kubelet_version(),
        machine_id: facts.machine_id.clone(),
        operating_system: "linux".into(),
        os_image: facts.os_image.clone(),
        system_uuid: facts.system_uuid.clone(),
    };
    serde_json::json!({
        "status": {
            "addresses": [
                NodeAddress { type_: "InternalIP".into(), address: config.node_ip.to_string() },
                NodeAddress { type_: "Hostname".into(), address: config.node_name.clone() },
            ],
            "capacity": cap,
            "allocatable": alloc,
            "conditions": conditions(now, since, ready),
            "daemonEndpoints": NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: port as i32 }),
            },
            "nodeInfo": info,
        }
    })
}

fn labels(name: &str, arch: &str) -> BTreeMap<String, String> {
    [
        ("beta.kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api {
        what,
        source: Box::new(source),
    }
}

/// Registers (or re-registers) the node and posts its status. A node
/// registered again (after its Node was deleted) asks for the pod CIDR it
/// already uses, which node IPAM keeps.
pub async fn register(
    client: &kube::Client,
    config: &Config,
    facts: &HostFacts,
    port: u16,
    ready: &Readiness,
) -> Result<Node, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = &config.node_name;
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels(name, &facts.architecture)),
            annotations: Some(
                [(
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        spec: config.pod_cidr.as_ref().map(|cidr| NodeSpec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(vec![cidr.clone()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %name, "registered the node"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Already registered (agent restart): refresh the labels.
            let patch =
                serde_json::json!({"metadata": {"labels": labels(name, &facts.architecture)}});
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err(format!("updating the labels of node {name}")))?;
        }
        Err(e) => return Err(api_err(format!("registering node {name}"))(e)),
    }
    let now = Time(Utc::now());
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&status_patch(config, facts, port, now.clone(), now, ready)),
        )
        .await
        .map_err(api_err(format!("posting the status of node {name}")))
}

/// Waits until the control plane assigns `spec.podCIDR`.
pub async fn wait_for_pod_cidr(client: &kube::Client, config: &Config) -> Result<String, Error> {
    if let Some(cidr) = &config.pod_cidr {
        return Ok(cidr.clone());
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + config.pod_cidr_wait;
    loop {
        let node = nodes
            .get(&config.node_name)
            .await
            .map_err(api_err(format!("reading node {}", config.node_name)))?;
        if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
            return Ok(cidr);
        }
        if Instant::now() >= deadline {
            return Err(Error::NoPodCidr {
                node: config.node_name.clone(),
                waited: config.pod_cidr_wait,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How often the runtime's status is checked (the kubelet's 5 s).
const RUNTIME_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Posts the node status when its facts or readiness change and at least
/// every minute, keeping the conditions' transition times; registers the
/// node again if its Node object was deleted.
pub async fn status_loop(
    client: kube::Client,
    config: Config,
    port: u16,
    runtime: std::sync::Arc<dyn orca_runtime::Runtime>,
    mut ready: Readiness,
) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let since = Time(Utc::now());
    let mut last_facts = HostFacts::gather(&config.data_dir);
    let mut last_post = Instant::now();
    let mut last_check = Instant::now();
    let mut network = config.network_problem.clone();
    loop {
        let network_changed = async {
            match network.as_mut() {
                Some(n) => n.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(RUNTIME_CHECK_INTERVAL) => {}
            changed = network_changed => if !changed {
                network = None;
            },
        }
        let problem =
            crate::readiness::problem(Some(runtime.as_ref()), network.as_ref(), &config.node_name)
                .await;
        let ready_changed = problem != ready.problem;
        ready.update(problem, Time(Utc::now()));
        let facts = HostFacts::gather(&config.data_dir);
        let due =
            facts != last_facts || ready_changed || last_post.elapsed() >= STATUS_REPORT_INTERVAL;
        if !due && last_check.elapsed() < LEASE_RENEW_INTERVAL {
            continue;
        }
        last_check = Instant::now();
        if !due {
            // Nothing to post: only make sure the Node still exists.
            match nodes.get_opt(&config.node_name).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(node = %config.node_name, "reading the node failed, retrying: {e}");
                    continue;
                }
            }
        }
        let patch = status_patch(
            &config,
            &facts,
            port,
            Time(Utc::now()),
            since.clone(),
            &ready,
        );
        let posted = match nodes
            .patch_status(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tracing::warn!(node = %config.node_name, "the node's Node object was deleted; registering it again");
                register(&client, &config, &facts, port, &ready)
                    .await
                    .map(drop)
            }
            other => other.map(drop).map_err(api_err(format!(
                "posting the status of node {}",
                config.node_name
            ))),
        };
        match posted {
            Ok(()) => {
                last_facts = facts;
                last_post = Instant::now();
            }
            Err(e) => {
                tracing::warn!(node = %config.node_name, "posting node status failed, retrying: {e}")
            }
        }
    }
}

/// Renews the node's Lease every 10 s; the control plane marks the node
/// NotReady when renewals stop.
pub async fn lease_loop(client: kube::Client, node_name: String) -> Result<(), Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        if let Err(e) = renew(&client, &leases, &nodes, &node_name).await {
            tracing::warn!(node = %node_name, "renewing the node lease failed, retrying in 10s: {e}");
        }
        tokio::time::sleep(LEASE_RENEW_INTERVAL).await;
    }
}

async fn renew(
    client: &kube::Client,
    leases: &Api<Lease>,
    nodes: &Api<Node>,
    node_name: &str,
) -> Result<(), kube::Error> {
    let now = MicroTime(Utc::now());
    match leases.get_opt(node_name).await? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(node_name.to_string());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            spec.renew_time = Some(now);
            leases
                .replace(node_name, &PostParams::default(), &lease)
                .await?;
        }
        None => {
            let node = nodes.get(node_name).await?;
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node_name.to_string()),
                    namespace: Some(LEASE_NAMESPACE.to_string()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: node_name.to_string(),
                        uid: node.metadata.uid.unwrap_or_default(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node_name.to_string()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    // The lease namespace does not exist yet: create it, and
                    // the lease on the next tick. (A node identity may not
                    // create namespaces: the control plane makes this one at
                    // start, so only a control plane older than the agent
                    // lacks it.)
                    let ns = Namespace {
                        metadata: ObjectMeta {
                            name: Some(LEASE_NAMESPACE.into()),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    Api::<Namespace>::all(client.clone())
                        .create(&PostParams::default(), &ns)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_matches_kubernetes_shapes() {
        let reference: Node = serde_yaml::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/reference/node.yaml"
            ))
            .unwrap(),
        )
        .unwrap();
        let config = Config {
            node_name: "ref-node".into(),
            node_ip: "10.87.0.1".parse().unwrap(),
            ..Default::default()
        };
        let facts = HostFacts {
            cpus: 2,
            memory_kib: 24684084,
            ephemeral_storage_kib: 264212084,
            architecture: "amd64".into(),
            ..Default::default()
        };
        let t = Time("2026-11-28T10:38:54Z".parse().unwrap());
        let since = Time("2026-11-28T10:30:53Z".parse().unwrap());
        let ready = Readiness {
            problem: None,
            since: since.clone(),
        };
        let got = status_patch(&config, &facts, 10250, t, since, &ready);
        let want = serde_json::to_value(reference.status.unwrap()).unwrap();
        for field in ["addresses", "conditions", "daemonEndpoints", "capacity"] {
            assert_eq!(got["status"][field], want[field], "{field}");
        }
        assert_eq!(
            got["status"]["allocatable"]["memory"],
            want["allocatable"]["memory"]
        );
        assert_eq!(got["status"]["allocatable"]["pods"], "110");
        assert_eq!(
            got["status"]["nodeInfo"]["containerRuntimeVersion"],
            format!("orca://{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            labels("ref-node", "amd64"),
            reference.metadata.labels.unwrap()
        );
    }

    #[test]
    fn host_facts_are_read() {
        let f = HostFacts::gather(std::path::Path::new("/"));
        assert!(f.cpus >= 1);
        assert!(f.memory_kib > 0);
        assert!(f.ephemeral_storage_kib > 0);
        assert!(!f.kernel_version.is_empty());
    }
}
