//! What the scheduler needs to know about a pod, computed once per pod
//! version instead of once per node it is checked against.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};

use crate::quantity::{parse_milli, parse_units};

/// Kubernetes' stand-ins for a container without requests, used only for
/// scoring so that BestEffort pods still spread (schedutil.GetNonzeroRequests).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 << 20;

/// Requested (or allocatable) amounts: CPU in millicores, the rest in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Resources {
    fn add(&mut self, other: &Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
    }

    pub fn sub(&mut self, other: &Resources) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
    }

    fn max(&mut self, other: &Resources) {
        self.cpu = self.cpu.max(other.cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
    }

    pub fn plus(mut self, other: &Resources) -> Resources {
        self.add(other);
        self
    }

    /// Reads cpu/memory/ephemeral-storage out of a resource list.
    pub fn from_list(
        list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    ) -> Resources {
        let mut r = Resources::default();
        if let Some(list) = list {
            if let Some(q) = list.get("cpu") {
                r.cpu = parse_milli(&q.0).unwrap_or(0);
            }
            if let Some(q) = list.get("memory") {
                r.memory = parse_units(&q.0).unwrap_or(0);
            }
            if let Some(q) = list.get("ephemeral-storage") {
                r.ephemeral_storage = parse_units(&q.0).unwrap_or(0);
            }
        }
        r
    }
}

/// A hostPort a pod occupies on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// "0.0.0.0" when the pod did not name an address (it then takes them all).
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// The resources a pod's presence on a node accounts for.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub requests: Resources,
    /// Requests with the non-zero defaults, for least-allocated scoring.
    pub nonzero_cpu: i64,
    pub nonzero_memory: i64,
    pub host_ports: Vec<HostPort>,
    /// UID of the controlling owner (ReplicaSet, Job, ...), for spreading.
    pub owner: Option<String>,
    pub priority: i32,
}

/// A pod plus everything derived from it that filters and scores use.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub usage: Arc<Usage>,
}

impl PodInfo {
    pub fn new(pod: Pod) -> PodInfo {
        let meta = &pod.metadata;
        let uid = meta.uid.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let usage = Arc::new(usage_of(&pod));
        PodInfo {
            pod: Arc::new(pod),
            uid,
            namespace,
            name,
            usage,
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn priority(&self) -> i32 {
        self.usage.priority
    }
}

fn container_requests(c: &Container) -> Resources {
    // The API server defaults missing requests to the limits; do the same in
    // case the object was written without defaulting.
    let (requests, limits) = match &c.resources {
        Some(ResourceRequirements {
            requests, limits, ..
        }) => (requests.as_ref(), limits.as_ref()),
        None => (None, None),
    };
    let req = Resources::from_list(requests);
    let lim = Resources::from_list(limits);
    let has = |list: Option<&BTreeMap<_, _>>, k: &str| list.is_some_and(|l| l.contains_key(k));
    Resources {
        cpu: if has(requests, "cpu") {
            req.cpu
        } else {
            lim.cpu
        },
        memory: if has(requests, "memory") {
            req.memory
        } else {
            lim.memory
        },
        ephemeral_storage: if has(requests, "ephemeral-storage") {
            req.ephemeral_storage
        } else {
            lim.ephemeral_storage
        },
    }
}

fn nonzero(r: &Resources) -> (i64, i64) {
    (
        if r.cpu == 0 {
            DEFAULT_MILLI_CPU_REQUEST
        } else {
            r.cpu
        },
        if r.memory == 0 {
            DEFAULT_MEMORY_REQUEST
        } else {
            r.memory
        },
    )
}

/// Effective requests as Kubernetes computes them: the sum over app
/// containers (plus restartable "sidecar" init containers, which keep
/// running), or the largest init container step if that is bigger, plus the
/// pod overhead.
pub fn usage_of(pod: &Pod) -> Usage {
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();

    let mut requests = Resources::default();
    let (mut nz_cpu, mut nz_mem) = (0, 0);
    for c in containers {
        let r = container_requests(c);
        requests.add(&r);
        let (a, b) = nonzero(&r);
        nz_cpu += a;
        nz_mem += b;
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    let (mut init_nz_cpu, mut init_nz_mem) = (0, 0);
    for c in init {
        let r = container_requests(c);
        let step = if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            requests.add(&r);
            let (a, b) = nonzero(&r);
            nz_cpu += a;
            nz_mem += b;
            sidecars
        } else {
            r.plus(&sidecars)
        };
        init_max.max(&step);
        let (a, b) = nonzero(&step);
        init_nz_cpu = init_nz_cpu.max(a);
        init_nz_mem = init_nz_mem.max(b);
    }
    requests.max(&init_max);
    let overhead = Resources::from_list(spec.and_then(|s| s.overhead.as_ref()));
    requests.add(&overhead);

    let mut host_ports = Vec::new();
    for c in containers.iter().chain(init.iter()) {
        for p in c.ports.iter().flatten() {
            if let Some(port) = p.host_port.filter(|p| *p > 0) {
                host_ports.push(HostPort {
                    ip: match p.host_ip.as_deref() {
                        None | Some("") => "0.0.0.0".to_string(),
                        Some(ip) => ip.to_string(),
                    },
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                    port,
                });
            }
        }
    }

    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone());

    Usage {
        requests,
        nonzero_cpu: nz_cpu.max(init_nz_cpu) + overhead.cpu,
        nonzero_memory: nz_mem.max(init_nz_mem) + overhead.memory,
        host_ports,
        owner,
        priority: spec.and_then(|s| s.priority).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, PodSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn container(name: &str, cpu: Option<&str>, mem: Option<&str>) -> Container {
        let mut requests = BTreeMap::new();
        if let Some(c) = cpu {
            requests.insert("cpu".to_string(), Quantity(c.to_string()));
        }
        if let Some(m) = mem {
            requests.insert("memory".to_string(), Quantity(m.to_string()));
        }
        Container {
            name: name.to_string(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn app_containers_sum_and_init_containers_take_the_max() {
        let p = pod(PodSpec {
            containers: vec![
                container("a", Some("100m"), Some("100Mi")),
                container("b", Some("200m"), None),
            ],
            init_containers: Some(vec![container("i", Some("1"), Some("50Mi"))]),
            ..Default::default()
        });
        let u = usage_of(&p);
        assert_eq!(u.requests.cpu, 1000);
        assert_eq!(u.requests.memory, 100 << 20);
        // b has no memory request: it counts as 200Mi for scoring.
        assert_eq!(u.nonzero_cpu, 1000);
        assert_eq!(u.nonzero_memory, (100 << 20) + DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn sidecars_add_to_the_running_total() {
        let mut sidecar = container("s", Some("500m"), None);
        sidecar.restart_policy = Some("Always".to_string());
        let p = pod(PodSpec {
            containers: vec![container("a", Some("1"), None)],
            init_containers: Some(vec![sidecar, container("i", Some("1200m"), None)]),
            ..Default::default()
        });
        // app 1000 + sidecar 500 = 1500 vs init step 1200 + 500 = 1700.
        assert_eq!(usage_of(&p).requests.cpu, 1700);
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let mut c = container("a", None, None);
        c.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "cpu".to_string(),
                Quantity("2".to_string()),
            )])),
            ..Default::default()
        });
        assert_eq!(
            usage_of(&pod(PodSpec {
                containers: vec![c],
                ..Default::default()
            }))
            .requests
            .cpu,
            2000
        );
    }

    #[test]
    fn host_ports_default_to_all_addresses_and_tcp() {
        let mut c = container("a", None, None);
        c.ports = Some(vec![
            ContainerPort {
                container_port: 80,
                host_port: Some(8080),
                ..Default::default()
            },
            ContainerPort {
                container_port: 81,
                ..Default::default()
            },
        ]);
        let u = usage_of(&pod(PodSpec {
            containers: vec![c],
            ..Default::default()
        }));
        assert_eq!(
            u.host_ports,
            vec![HostPort {
                ip: "0.0.0.0".into(),
                protocol: "TCP".into(),
                port: 8080
            }]
        );
        let specific = HostPort {
            ip: "127.0.0.1".into(),
            protocol: "TCP".into(),
            port: 8080,
        };
        assert!(u.host_ports[0].conflicts_with(&specific));
        let udp = HostPort {
            protocol: "UDP".into(),
            ..specific.clone()
        };
        assert!(!specific.conflicts_with(&udp));
    }
}
