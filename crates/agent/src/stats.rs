//! What the node and its containers use, as the kubelet reports it: a
//! sampler takes the node's and every running container's CPU time and
//! memory every [`INTERVAL`] (cAdvisor's housekeeping), deriving CPU rates
//! between two samples; the streaming server shows them as the Summary API
//! (`/stats/summary`, from which the API server serves metrics.k8s.io) and
//! as the resource metrics (`/metrics/resource`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use orca_runtime::ContainerState;
use serde_json::{json, Value};

use crate::Ctx;

/// How often usage is sampled, and so the window CPU rates span.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One sample of a node or a container.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    pub time: SystemTime,
    pub cpu_core_nanoseconds: u64,
    /// The CPU rate since the previous sample; `None` on the first.
    pub nano_cores: Option<u64>,
    pub memory_usage_bytes: u64,
    pub memory_working_set_bytes: u64,
}

#[derive(Default)]
struct Samples {
    node: Option<Usage>,
    /// By container id.
    containers: HashMap<String, Usage>,
}

#[derive(Default)]
pub(crate) struct Sampler {
    latest: Mutex<Samples>,
}

impl Usage {
    fn after(mut self, prev: Option<&Usage>) -> Usage {
        self.nano_cores = prev.and_then(|p| {
            let dt = self.time.duration_since(p.time).ok()?.as_nanos();
            let used = self
                .cpu_core_nanoseconds
                .checked_sub(p.cpu_core_nanoseconds)?;
            (dt > 0).then(|| (used as u128 * 1_000_000_000 / dt) as u64)
        });
        self
    }
}

/// Samples until the agent stops.
pub(crate) async fn sample_loop(ctx: Arc<Ctx>) -> Result<(), crate::Error> {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let node = tokio::task::spawn_blocking(node_usage).await.ok().flatten();
        let mut containers = HashMap::new();
        for c in ctx.runtime.list_containers(None).await.unwrap_or_default() {
            if !matches!(c.state, ContainerState::Running { .. }) {
                continue;
            }
            if let Ok(Some(s)) = ctx.runtime.container_stats(&c.id).await {
                containers.insert(c.id, s);
            }
        }
        let mut latest = ctx.stats.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.node = node.map(|n| n.after(latest.node.as_ref()));
        latest.containers = containers
            .into_iter()
            .map(|(id, s)| {
                let u = Usage {
                    time: s.timestamp,
                    cpu_core_nanoseconds: s.cpu_usage_core_nanoseconds,
                    nano_cores: None,
                    memory_usage_bytes: s.memory_usage_bytes,
                    memory_working_set_bytes: s.memory_working_set_bytes,
                };
                let u = u.after(latest.containers.get(&id));
                (id, u)
            })
            .collect();
    }
}

/// The node's CPU time from /proc/stat (user, nice, system, irq, softirq
/// and steal) and memory from /proc/meminfo as cAdvisor reads a root
/// cgroup's: usage is what is not free, the working set that less the
/// inactive page cache.
fn node_usage() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(Usage {
        time: SystemTime::now(),
        cpu_core_nanoseconds: cpu_nanoseconds(&stat)?,
        nano_cores: None,
        memory_usage_bytes: mem_usage(&meminfo)?,
        memory_working_set_bytes: mem_usage(&meminfo)?
            .saturating_sub(meminfo_kib(&meminfo, "Inactive(file)").unwrap_or(0)),
    })
}

/// The jiffies of /proc/stat are USER_HZ ticks, 100 a second on every
/// architecture Orca runs on.
const NANOS_PER_TICK: u64 = 10_000_000;

fn cpu_nanoseconds(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| f.get(*i))
        .sum::<u64>();
    Some(busy * NANOS_PER_TICK)
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
    })
}

fn mem_usage(meminfo: &str) -> Option<u64> {
    Some(meminfo_kib(meminfo, "MemTotal")?.saturating_sub(meminfo_kib(meminfo, "MemFree")?) * 1024)
}

fn memory_total(meminfo: &str) -> Option<u64> {
    meminfo_kib(meminfo, "MemTotal").map(|k| k * 1024)
}

fn boot_time(stat: &str) -> Option<SystemTime> {
    let secs = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn cpu_json(u: &Usage) -> Value {
    let mut v = json!({"time": rfc3339(u.time), "usageCoreNanoSeconds": u.cpu_core_nanoseconds});
    if let Some(n) = u.nano_cores {
        v["usageNanoCores"] = json!(n);
    }
    v
}

fn memory_json(u: &Usage) -> Value {
    json!({
        "time": rfc3339(u.time),
        "usageBytes": u.memory_usage_bytes,
        "workingSetBytes": u.memory_working_set_bytes,
    })
}

/// A pod running here with the latest samples of its running containers.
pub(crate) struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub start: SystemTime,
    pub containers: Vec<(String, SystemTime, Usage)>,
}

impl PodUsage {
    /// The pod's total: the sum of its containers at the latest sample
    /// time; no rate unless every container has one.
    fn total(&self) -> Option<Usage> {
        let mut it = self.containers.iter().map(|(_, _, u)| *u);
        let first = it.next()?;
        Some(it.fold(first, |a, u| Usage {
            time: a.time.max(u.time),
            cpu_core_nanoseconds: a.cpu_core_nanoseconds + u.cpu_core_nanoseconds,
            nano_cores: a.nano_cores.zip(u.nano_cores).map(|(x, y)| x + y),
            memory_usage_bytes: a.memory_usage_bytes + u.memory_usage_bytes,
            memory_working_set_bytes: a.memory_working_set_bytes + u.memory_working_set_bytes,
        }))
    }
}

/// The node's latest sample and the pods with sampled containers.
pub(crate) async fn current(ctx: &Ctx) -> (Option<Usage>, Vec<PodUsage>) {
    let (node, samples) = {
        let l = ctx.stats.latest.lock().unwrap_or_else(|e| e.into_inner());
        (l.node, l.containers.clone())
    };
    let sandboxes = ctx.runtime.list_sandboxes().await.unwrap_or_default();
    let containers = ctx.runtime.list_containers(None).await.unwrap_or_default();
    let pods = sandboxes
        .into_iter()
        .map(|s| {
            let mut cs: Vec<(String, SystemTime, Usage)> = containers
                .iter()
                .filter(|c| c.pod_uid == s.pod_uid)
                .filter_map(|c| match c.state {
                    ContainerState::Running { started_at } => {
                        Some((c.name.clone(), started_at, *samples.get(&c.id)?))
                    }
                    _ => None,
                })
                .collect();
            cs.sort_by(|a, b| a.0.cmp(&b.0));
            PodUsage {
                namespace: s.namespace,
                name: s.pod_name,
                uid: s.pod_uid,
                start: s.created_at,
                containers: cs,
            }
        })
        .filter(|p| !p.containers.is_empty())
        .collect();
    (node, pods)
}

/// The kubelet's Summary API (stats/v1alpha1): the node's and each pod's
/// and container's CPU and memory.
pub(crate) async fn summary(ctx: &Ctx) -> Value {
    let (node, pods) = current(ctx).await;
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mut node_json = json!({"nodeName": ctx.config.node_name});
    if let Some(t) = boot_time(&stat) {
        node_json["startTime"] = json!(rfc3339(t));
    }
    if let Some(n) = &node {
        node_json["cpu"] = cpu_json(n);
        let mut mem = memory_json(n);
        if let Some(total) = memory_total(&meminfo) {
            mem["availableBytes"] = json!(total.saturating_sub(n.memory_working_set_bytes));
        }
        node_json["memory"] = mem;
    }
    let pods: Vec<Value> = pods
        .iter()
        .map(|p| {
            let containers: Vec<Value> = p
                .containers
                .iter()
                .map(|(name, start, u)| {
                    json!({"name": name, "startTime": rfc3339(*start), "cpu": cpu_json(u), "memory": memory_json(u)})
                })
                .collect();
            let mut v = json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "startTime": rfc3339(p.start),
                "containers": containers,
            });
            if let Some(t) = p.total() {
                v["cpu"] = cpu_json(&t);
                v["memory"] = memory_json(&t);
            }
            v
        })
        .collect();
    json!({"node": node_json, "pods": pods})
}

/// The kubelet's `/metrics/resource`: cumulative CPU seconds and working
/// sets of the node, its pods and their containers, each sample with its
/// time in milliseconds.
pub(crate) async fn resource_metrics(ctx: &Ctx) -> String {
    use std::fmt::Write;
    let (node, pods) = current(ctx).await;
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    };
    let secs = |u: &Usage| u.cpu_core_nanoseconds as f64 / 1e9;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64, u128)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v, t) in rows {
            let _ = writeln!(out, "{name}{labels} {v} {t}");
        }
    };
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let c_labels = |p: &PodUsage, c: &str| {
        format!(
            "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
            esc(c),
            esc(&p.namespace),
            esc(&p.name)
        )
    };
    let p_labels = |p: &PodUsage| {
        format!(
            "{{namespace=\"{}\",pod=\"{}\"}}",
            esc(&p.namespace),
            esc(&p.name)
        )
    };
    let per_container = |f: &dyn Fn(&Usage) -> f64| {
        pods.iter()
            .flat_map(|p| {
                p.containers
                    .iter()
                    .map(move |(c, _, u)| (c_labels(p, c), f(u), ms(u.time)))
            })
            .collect::<Vec<_>>()
    };
    let per_pod = |f: &dyn Fn(&Usage) -> f64| {
        pods.iter()
            .filter_map(|p| p.total().map(|u| (p_labels(p), f(&u), ms(u.time))))
            .collect::<Vec<_>>()
    };
    let ws = |u: &Usage| u.memory_working_set_bytes as f64;
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        per_container(&secs),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the container in bytes",
        per_container(&ws),
    );
    let node_rows = |f: &dyn Fn(&Usage) -> f64| {
        node.iter()
            .map(|n| (String::new(), f(n), ms(n.time)))
            .collect::<Vec<_>>()
    };
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
        node_rows(&secs),
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the node in bytes",
        node_rows(&ws),
    );
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        per_pod(&secs),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the pod in bytes",
        per_pod(&ws),
    );
    family(
        "scrape_error",
        "gauge",
        "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
        vec![(String::new(), if node.is_some() { 0.0 } else { 1.0 }, 0)],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_stat_and_meminfo() {
        let stat = "cpu  100 5 50 9000 20 3 2 1 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\nbtime 1700000000\n";
        assert_eq!(cpu_nanoseconds(stat), Some(161 * NANOS_PER_TICK));
        assert_eq!(
            boot_time(stat),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        let mem = "MemTotal:        8000 kB\nMemFree:         3000 kB\nInactive(file):   1000 kB\n";
        assert_eq!(mem_usage(mem), Some(5000 * 1024));
        assert_eq!(meminfo_kib(mem, "Inactive(file)"), Some(1000));
    }

    #[test]
    fn rates_span_two_samples() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let a = Usage {
            time: t0,
            cpu_core_nanoseconds: 1_000_000_000,
            nano_cores: None,
            memory_usage_bytes: 0,
            memory_working_set_bytes: 0,
        };
        // Half a core over ten seconds.
        let b = Usage {
            time: t0 + Duration::from_secs(10),
            cpu_core_nanoseconds: 6_000_000_000,
            ..a
        }
        .after(Some(&a));
        assert_eq!(b.nano_cores, Some(500_000_000));
        assert_eq!(a.after(None).nano_cores, None);
    }
}
