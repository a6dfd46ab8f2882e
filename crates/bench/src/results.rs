//! The raw results of one run, as written to bench/results/*.json and read
//! back by `orca-bench render`. Times are milliseconds unless named otherwise.

use serde::{Deserialize, Serialize};

use crate::procs::Mem;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub machine: Machine,
    /// RFC 3339, UTC.
    pub date: String,
    pub commit: String,
    pub podman_version: Option<String>,
    /// `--quick`: fewer runs, for trying the tool; not for publishing.
    pub quick: bool,
    pub startup: Option<Startup>,
    pub batches: Vec<Batch>,
    pub deletion: Option<Deletion>,
    pub scale: Option<Scale>,
    pub memory: Option<Memory>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub os: String,
}

/// Scenario 1: one pod created, until Ready; runs interleaved Orca, podman.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Startup {
    pub orca_ms: Vec<f64>,
    pub podman_ms: Vec<f64>,
}

/// Scenario 2: `pods` pods created at once, until all are Ready.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Batch {
    pub pods: usize,
    pub orca: Vec<BatchRun>,
    pub podman: Vec<BatchRun>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BatchRun {
    pub all_ready_ms: f64,
    /// Per pod, from the start of the batch until it was Ready (Orca only:
    /// `kube play` reports the batch as a whole).
    pub pod_ready_ms: Vec<f64>,
}

/// Scenario 3: deleting a pod whose container exits on SIGTERM, and one
/// whose container ignores it, both with terminationGracePeriodSeconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Deletion {
    pub grace_seconds: u32,
    pub cooperative: DeletionPair,
    pub ignoring: DeletionPair,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeletionPair {
    pub orca: Vec<DeleteRun>,
    /// `podman kube down`, the counterpart of deleting the pod.
    pub podman: Vec<DeleteRun>,
    /// `podman pod stop` then `podman pod rm`: podman's graceful stop.
    #[serde(default)]
    pub podman_stop: Vec<DeleteRun>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct DeleteRun {
    /// Until the container's main process was gone.
    pub killed_ms: Option<f64>,
    /// Until the pod was gone: the watch's DELETED event for Orca, the end
    /// of the podman commands for podman.
    pub gone_ms: f64,
}

/// Scenarios 4 and 5: one control plane with virtual nodes, pods created
/// as fast as the API accepts them, scheduled and reported Running.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Scale {
    pub virtual_nodes: usize,
    pub pods: usize,
    pub concurrency: usize,
    pub create_seconds: f64,
    pub creates_per_second: f64,
    /// Per create request.
    pub create_request_ms: Vec<f64>,
    /// From the first create until the last pod was bound.
    pub all_bound_seconds: f64,
    pub bound_per_second: f64,
    /// Per pod, from its create request until the watch showed it bound.
    pub create_to_bound_ms: Vec<f64>,
    pub all_running_seconds: f64,
    /// (seconds since the first create, pods created, pods bound, pods Ready).
    pub timeline: Vec<(f64, usize, usize, usize)>,
    pub lists: Vec<ListResult>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListResult {
    pub what: String,
    pub items: usize,
    pub bytes: usize,
    pub ms: Vec<f64>,
}

/// Scenario 6.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Memory {
    /// `orca server` with its node agent, no pods.
    pub orca_idle: Mem,
    /// The same server with `real_pods` pods running.
    pub orca_with_pods: Mem,
    pub real_pods: usize,
    /// Shim and pause processes of those pods (not the containers' own processes).
    pub orca_pod_overhead: Overhead,
    pub podman_pod_overhead: Option<Overhead>,
    /// `orca server --virtual-nodes N --disable-agent` before and after `virtual_pods` pods.
    pub orca_virtual_idle: Mem,
    pub orca_virtual_with_pods: Mem,
    pub virtual_nodes: usize,
    pub virtual_pods: usize,
    /// Server memory over the whole run: (seconds since its start, what it was doing, memory).
    pub timeline_real: Vec<MemSample>,
    pub timeline_virtual: Vec<MemSample>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Overhead {
    pub pods: usize,
    /// e.g. {"shim": 100, "pause": 100}.
    pub processes: Vec<(String, usize)>,
    pub total: Mem,
}

impl Overhead {
    pub fn per_pod(&self) -> Mem {
        let n = self.pods.max(1) as u64;
        Mem {
            rss_kib: self.total.rss_kib / n,
            pss_kib: self.total.pss_kib / n,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MemSample {
    pub t: f64,
    pub phase: String,
    pub mem: Mem,
}
