//! The scenarios. Orca's and podman's runs alternate (A B A B) so that
//! whatever else the machine does hits both alike.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::orca::{self, OrcaServer, PodWatch, Seen};
use crate::podman::Podman;
use crate::procs::{self, Mem};
use crate::results::{
    Batch, BatchRun, DeleteRun, Deletion, DeletionPair, ListResult, Overhead, Scale, Startup,
};

pub const IMAGE: &str = "docker.io/library/busybox:latest";
pub const GRACE_SECONDS: u32 = 2;
/// Exits on SIGTERM, taking its child along.
const COOPERATIVE: &str = "trap 'kill $! 2>/dev/null; exit 0' TERM; sleep 3600 & wait";
/// Ignores SIGTERM (the ignored disposition is inherited by `sleep`), so
/// only SIGKILL at the end of the grace period stops it.
const IGNORING: &str = "trap '' TERM; sleep 3600 & wait";

/// A busybox pod running `script`; `name` is also the shell's `$0`, so the
/// container's process can be found in /proc by its argv.
pub fn pod_json(name: &str, run: &str, script: &str, virtual_node: bool) -> serde_json::Value {
    let mut spec = json!({
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "containers": [{
            "name": "main",
            "image": IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", script, marker(name)],
        }],
    });
    if virtual_node {
        spec["tolerations"] = json!([{
            "key": "orca.dev/virtual-node",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        }]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench-run": run, "bench-pod": name}},
        "spec": spec,
    })
}

fn marker(name: &str) -> String {
    format!("orca-bench-marker-{name}")
}

fn pod(value: serde_json::Value) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(value)?)
}

/// Several pods as one multi-document YAML file (JSON is YAML).
fn manifest(docs: &[serde_json::Value]) -> String {
    docs.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// One pod, created and watched until Ready, then removed; untimed, to
/// warm caches (images unpacked, podman's pause image built).
pub async fn warm_up(orca: &OrcaServer, podman: Option<&Podman>) -> anyhow::Result<()> {
    let api = orca.pods();
    let name = "warm-up";
    let sel = format!("bench-run={name}");
    // The namespace's default ServiceAccount may not exist yet right after start.
    let started = Instant::now();
    let mut watch = PodWatch::open(&api, &sel).await?;
    let t0 = Instant::now();
    loop {
        match api
            .create(
                &PostParams::default(),
                &pod(pod_json(name, name, COOPERATIVE, false))?,
            )
            .await
        {
            Ok(_) => break,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("   (warm-up create failed, retrying: {e})");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context("creating the warm-up pod"),
        }
    }
    watch
        .until(&mut Seen::default(), t0, Duration::from_secs(120), |s| {
            s.ready.contains_key(name)
        })
        .await
        .map_err(|e| e.context(orca::log_tail(orca.dir.path())))?;
    orca::delete_and_wait(&api, &sel).await?;
    if let Some(p) = podman {
        let file = p.manifest(name, &manifest(&[pod_json(name, name, COOPERATIVE, false)]))?;
        blocking(|| -> anyhow::Result<()> {
            p.play(&file)?;
            p.down(&file)?;
            Ok(())
        })?;
    }
    Ok(())
}

/// Scenario 1.
pub async fn startup(
    orca: &OrcaServer,
    podman: Option<&Podman>,
    runs: usize,
) -> anyhow::Result<Startup> {
    let api = orca.pods();
    let mut out = Startup::default();
    for i in 0..runs {
        let name = format!("start-{i}");
        let sel = format!("bench-run={name}");
        let mut watch = PodWatch::open(&api, &sel).await?;
        let t0 = Instant::now();
        api.create(
            &PostParams::default(),
            &pod(pod_json(&name, &name, COOPERATIVE, false))?,
        )
        .await?;
        let mut seen = Seen::default();
        watch
            .until(&mut seen, t0, Duration::from_secs(60), |s| {
                s.ready.contains_key(&name)
            })
            .await?;
        out.orca_ms.push(ms(seen.ready[&name]));
        orca::delete_and_wait(&api, &sel).await?;

        if let Some(p) = podman {
            let file = p.manifest(
                &name,
                &manifest(&[pod_json(&name, &name, COOPERATIVE, false)]),
            )?;
            let took = blocking(|| p.play(&file))?;
            out.podman_ms.push(ms(took));
            blocking(|| p.down(&file))?;
        }
        if (i + 1) % 10 == 0 {
            eprintln!("   {} / {runs} runs", i + 1);
        }
    }
    Ok(out)
}

/// What scenario 2 measured of memory while the biggest batch was running.
pub struct BatchMemory {
    pub pods: usize,
    pub server: Mem,
    pub orca_overhead: Overhead,
    pub podman_overhead: Option<Overhead>,
}

/// Scenario 2: `sizes` pods at once, `rounds` times each. While the last
/// round of the largest size runs, measures memory (scenario 6).
pub async fn batches(
    orca: &OrcaServer,
    orca_bin: &Path,
    podman: Option<&Podman>,
    sizes: &[usize],
    rounds: usize,
) -> anyhow::Result<(Vec<Batch>, Option<BatchMemory>)> {
    let api = orca.pods();
    let mut out = Vec::new();
    let mut memory = None;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    for &n in sizes {
        orca.set_phase(&format!("{n} pods at once"));
        let mut batch = Batch {
            pods: n,
            ..Default::default()
        };
        for round in 0..rounds {
            let measure_memory = n == largest && round + 1 == rounds;
            let run = format!("batch-{n}-{round}");
            let sel = format!("bench-run={run}");
            let docs: Vec<serde_json::Value> = (0..n)
                .map(|i| pod_json(&format!("b{n}-{round}-{i}"), &run, COOPERATIVE, false))
                .collect();
            let pods = docs
                .iter()
                .cloned()
                .map(pod)
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut watch = PodWatch::open(&api, &sel).await?;
            let t0 = Instant::now();
            // Twenty requests in flight, as a controller creating a ReplicaSet's pods would.
            let (created, seen) = tokio::join!(orca::create_all(&api, pods, 20, t0), async {
                let mut seen = Seen::default();
                let result = watch
                    .until(&mut seen, t0, Duration::from_secs(300), |s| {
                        s.ready.len() >= n
                    })
                    .await;
                (seen, result)
            });
            created?;
            let (seen, result) = seen;
            result?;
            let pod_ready_ms: Vec<f64> = seen.ready.values().copied().map(ms).collect();
            let all_ready_ms = pod_ready_ms.iter().copied().fold(0.0, f64::max);
            batch.orca.push(BatchRun {
                all_ready_ms,
                pod_ready_ms,
            });
            let mut orca_memory = None;
            if measure_memory {
                tokio::time::sleep(Duration::from_secs(2)).await;
                orca_memory = Some((
                    orca.memory(),
                    orca_overhead(orca.pid, orca_bin, orca.dir.path(), n),
                ));
            }
            orca::delete_and_wait(&api, &sel).await?;

            let mut podman_overhead = None;
            if let Some(p) = podman {
                let file = p.manifest(&run, &manifest(&docs))?;
                let took = blocking(|| p.play(&file))?;
                batch.podman.push(BatchRun {
                    all_ready_ms: ms(took),
                    pod_ready_ms: Vec::new(),
                });
                if measure_memory {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    podman_overhead = Some(p.overhead(n));
                }
                blocking(|| p.down(&file))?;
            }
            if let Some((server, orca_overhead)) = orca_memory {
                memory = Some(BatchMemory {
                    pods: n,
                    server,
                    orca_overhead,
                    podman_overhead,
                });
            }
            eprintln!(
                "   {n} pods, round {}: orca {:.0} ms{}",
                round + 1,
                all_ready_ms,
                batch
                    .podman
                    .last()
                    .map(|r| format!(", podman {:.0} ms", r.all_ready_ms))
                    .unwrap_or_default()
            );
        }
        out.push(batch);
    }
    Ok((out, memory))
}

/// Shim and pause processes of the server's pods.
pub fn orca_overhead(server_pid: u32, bin: &Path, data_dir: &Path, pods: usize) -> Overhead {
    let helpers = orca::helper_processes(server_pid, bin, data_dir);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total = Mem::default();
    for p in &helpers {
        *counts.entry(orca::role_of(p)).or_default() += 1;
        total = total + procs::mem(p.pid).unwrap_or_default();
    }
    let mut processes: Vec<(String, usize)> = counts.into_iter().collect();
    processes.sort();
    Overhead {
        pods,
        processes,
        total,
    }
}

/// Scenario 3.
pub async fn deletion(
    orca: &OrcaServer,
    podman: Option<&Podman>,
    cooperative_runs: usize,
    ignoring_runs: usize,
) -> anyhow::Result<Deletion> {
    orca.set_phase("deletions");
    let mut out = Deletion {
        grace_seconds: GRACE_SECONDS,
        ..Default::default()
    };
    for (kind, script, runs) in [
        ("coop", COOPERATIVE, cooperative_runs),
        ("ignore", IGNORING, ignoring_runs),
    ] {
        let mut pair = DeletionPair::default();
        for i in 0..runs {
            let name = format!("del-{kind}-{i}");
            pair.orca.push(orca_delete(orca, &name, script).await?);
            if let Some(p) = podman {
                pair.podman.push(blocking(|| {
                    podman_delete(p, &name, script, PodmanDelete::KubeDown)
                })?);
                pair.podman_stop.push(blocking(|| {
                    podman_delete(p, &name, script, PodmanDelete::StopRm)
                })?);
            }
        }
        let show = |runs: &[DeleteRun]| {
            runs.iter()
                .map(|r| format!("{:.0}", r.gone_ms))
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!(
            "   {kind}: orca gone after [{}] ms, podman kube down [{}] ms, pod stop+rm [{}] ms",
            show(&pair.orca),
            show(&pair.podman),
            show(&pair.podman_stop)
        );
        if kind == "coop" {
            out.cooperative = pair;
        } else {
            out.ignoring = pair;
        }
    }
    Ok(out)
}

async fn orca_delete(orca: &OrcaServer, name: &str, script: &str) -> anyhow::Result<DeleteRun> {
    let api = orca.pods();
    let sel = format!("bench-run={name}");
    let mut watch = PodWatch::open(&api, &sel).await?;
    let t0 = Instant::now();
    api.create(
        &PostParams::default(),
        &pod(pod_json(name, name, script, false))?,
    )
    .await?;
    watch
        .until(&mut Seen::default(), t0, Duration::from_secs(60), |s| {
            s.ready.contains_key(name)
        })
        .await?;
    let pid = find_container(name).await?;
    let t0 = Instant::now();
    let killed =
        tokio::task::spawn_blocking(move || procs::wait_dead(pid, t0, Duration::from_secs(60)));
    // The pod's own grace period applies: no override in the request.
    api.delete(name, &DeleteParams::default()).await?;
    let mut seen = Seen::default();
    watch
        .until(&mut seen, t0, Duration::from_secs(60), |s| {
            s.deleted.contains_key(name)
        })
        .await?;
    Ok(DeleteRun {
        killed_ms: killed.await?.map(ms),
        gone_ms: ms(seen.deleted[name]),
    })
}

#[derive(Clone, Copy)]
enum PodmanDelete {
    KubeDown,
    StopRm,
}

fn podman_delete(
    podman: &Podman,
    name: &str,
    script: &str,
    how: PodmanDelete,
) -> anyhow::Result<DeleteRun> {
    let file = podman.manifest(name, &manifest(&[pod_json(name, name, script, false)]))?;
    podman.play(&file)?;
    let pid = procs::find_by_marker(&marker(name))
        .with_context(|| format!("no process of podman pod {name} found"))?;
    let t0 = Instant::now();
    let killed = std::thread::spawn(move || procs::wait_dead(pid, t0, Duration::from_secs(60)));
    match how {
        PodmanDelete::KubeDown => podman.down(&file)?,
        PodmanDelete::StopRm => podman.stop_and_remove(name)?,
    };
    let gone = t0.elapsed();
    Ok(DeleteRun {
        killed_ms: killed.join().ok().flatten().map(ms),
        gone_ms: ms(gone),
    })
}

/// The pid of a Ready pod's container process (found by its argv).
async fn find_container(name: &str) -> anyhow::Result<u32> {
    let marker = marker(name);
    for _ in 0..100 {
        if let Some(pid) = procs::find_by_marker(&marker) {
            return Ok(pid);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("pod {name} is Ready but no process runs its command")
}

/// Waits until `count` virtual nodes are registered and Ready.
pub async fn wait_virtual_nodes(orca: &OrcaServer, count: usize) -> anyhow::Result<Duration> {
    let nodes: Api<Node> = Api::all(orca.client.clone());
    let start = Instant::now();
    loop {
        let list = nodes
            .list(&ListParams::default().labels("type=virtual"))
            .await?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= count {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(180) {
            bail!("only {ready} of {count} virtual nodes Ready after 180 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Scenarios 4 and 5 on a server with virtual nodes.
pub async fn scale(
    orca: &OrcaServer,
    virtual_nodes: usize,
    pods: usize,
    concurrency: usize,
) -> anyhow::Result<Scale> {
    let api = orca.pods();
    let run = "scale";
    let sel = format!("bench-run={run}");
    let objects = (0..pods)
        .map(|i| pod(pod_json(&format!("s-{i}"), run, COOPERATIVE, true)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    orca.set_phase(&format!("creating {pods} pods"));
    let mut watch = PodWatch::open(&api, &sel).await?;
    let t0 = Instant::now();
    let (created, seen) = tokio::join!(orca::create_all(&api, objects, concurrency, t0), async {
        let mut seen = Seen::default();
        let result = watch
            .until(&mut seen, t0, Duration::from_secs(600), |s| {
                s.ready.len() >= pods
            })
            .await;
        (seen, result)
    });
    let created = created?;
    let (seen, result) = seen;
    result?;
    let create_seconds = created
        .iter()
        .map(|(_, _, done)| done.as_secs_f64())
        .fold(0.0, f64::max);
    let sent: HashMap<&str, Duration> = created.iter().map(|(n, s, _)| (n.as_str(), *s)).collect();
    let create_to_bound_ms: Vec<f64> = seen
        .bound
        .iter()
        .filter_map(|(name, bound)| Some(ms(bound.checked_sub(*sent.get(name.as_str())?)?)))
        .collect();
    let all_bound_seconds = seen
        .bound
        .values()
        .map(Duration::as_secs_f64)
        .fold(0.0, f64::max);
    let all_running_seconds = seen
        .ready
        .values()
        .map(Duration::as_secs_f64)
        .fold(0.0, f64::max);
    let timeline = timeline(
        &created.iter().map(|(_, _, done)| *done).collect::<Vec<_>>(),
        &seen.bound.values().copied().collect::<Vec<_>>(),
        &seen.ready.values().copied().collect::<Vec<_>>(),
        0.25,
    );
    orca.set_phase(&format!("listing {pods} pods"));
    let lists = lists(orca, pods).await?;
    Ok(Scale {
        virtual_nodes,
        pods,
        concurrency,
        create_seconds,
        creates_per_second: pods as f64 / create_seconds,
        create_request_ms: created.iter().map(|(_, s, d)| ms(*d - *s)).collect(),
        all_bound_seconds,
        bound_per_second: pods as f64 / all_bound_seconds,
        create_to_bound_ms,
        all_running_seconds,
        timeline,
        lists,
    })
}

/// Cumulative counts per `step` seconds.
pub fn timeline(
    created: &[Duration],
    bound: &[Duration],
    ready: &[Duration],
    step: f64,
) -> Vec<(f64, usize, usize, usize)> {
    let end = created
        .iter()
        .chain(bound)
        .chain(ready)
        .map(Duration::as_secs_f64)
        .fold(0.0, f64::max);
    let count = |xs: &[Duration], t: f64| xs.iter().filter(|d| d.as_secs_f64() <= t).count();
    let steps = (end / step).ceil() as usize;
    (0..=steps)
        .map(|i| {
            let t = i as f64 * step;
            (t, count(created, t), count(bound, t), count(ready, t))
        })
        .collect()
}

/// LIST latency with the pods stored.
async fn lists(orca: &OrcaServer, pods: usize) -> anyhow::Result<Vec<ListResult>> {
    let base = "/api/v1/namespaces/default/pods";
    let mut out = Vec::new();
    let one = format!("{base}?labelSelector=bench-pod%3Ds-{}", pods / 2);
    let single = format!("{base}/s-{}", pods / 3);
    for (what, path, runs) in [
        (
            format!("all {pods} pods in one response"),
            base.to_string(),
            5,
        ),
        (
            "one pod by label selector (labelSelector=bench-pod=…)".to_string(),
            one,
            20,
        ),
        ("GET of one pod".to_string(), single, 20),
    ] {
        let mut result = ListResult {
            what,
            ..Default::default()
        };
        for _ in 0..runs {
            let t0 = Instant::now();
            let body = get(orca, &path).await?;
            result.ms.push(ms(t0.elapsed()));
            result.bytes = body.len();
            let value: serde_json::Value = serde_json::from_str(&body)?;
            result.items = value["items"].as_array().map_or(1, Vec::len);
        }
        out.push(result);
    }
    // kubectl's own chunking: 500 per page.
    let mut paged = ListResult {
        what: format!("all {pods} pods, 500 per page (limit/continue)"),
        ..Default::default()
    };
    for _ in 0..3 {
        let t0 = Instant::now();
        let (mut items, mut bytes, mut cont) = (0, 0, String::new());
        loop {
            let path = format!("{base}?limit=500&continue={cont}");
            let body = get(orca, &path).await?;
            bytes += body.len();
            let value: serde_json::Value = serde_json::from_str(&body)?;
            items += value["items"].as_array().map_or(0, Vec::len);
            match value["metadata"]["continue"].as_str() {
                Some(c) if !c.is_empty() => cont = c.to_string(),
                _ => break,
            }
        }
        paged.ms.push(ms(t0.elapsed()));
        (paged.items, paged.bytes) = (items, bytes);
    }
    out.push(paged);
    // What a person waits for: kubectl get pods, a server-side Table.
    let mut kubectl = ListResult {
        what: format!("`kubectl get pods` ({pods} rows, process included)"),
        ..Default::default()
    };
    let kubeconfig = orca.dir.path().join("kubeconfig");
    for _ in 0..3 {
        let t0 = Instant::now();
        let out = blocking(|| {
            std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["get", "pods", "--no-headers"])
                .output()
        })
        .context("running kubectl")?;
        kubectl.ms.push(ms(t0.elapsed()));
        if !out.status.success() {
            bail!(
                "kubectl get pods failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        kubectl.items = out
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        kubectl.bytes = out.stdout.len();
    }
    out.push(kubectl);
    Ok(out)
}

async fn get(orca: &OrcaServer, path: &str) -> anyhow::Result<String> {
    let request = http::Request::get(path).body(Vec::new())?;
    Ok(orca.client.request_text(request).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_valid_and_carry_their_marker() {
        let value = pod_json("p-1", "run-1", COOPERATIVE, true);
        let pod = pod(value).unwrap();
        let spec = pod.spec.unwrap();
        let command = spec.containers[0].command.clone().unwrap();
        assert_eq!(command.last().unwrap(), "orca-bench-marker-p-1");
        assert_eq!(spec.termination_grace_period_seconds, Some(2));
        assert_eq!(
            spec.tolerations.unwrap()[0].key.as_deref(),
            Some("orca.dev/virtual-node")
        );
        assert_eq!(pod.metadata.labels.unwrap()["bench-run"], "run-1");
    }

    #[test]
    fn manifests_are_yaml_documents() {
        let docs = [json!({"a": 1}), json!({"b": 2})];
        assert_eq!(manifest(&docs), "{\"a\":1}\n---\n{\"b\":2}");
    }

    #[test]
    fn timeline_counts_cumulatively() {
        let s = Duration::from_secs_f64;
        let t = timeline(&[s(0.1), s(0.2)], &[s(0.3)], &[s(0.6)], 0.25);
        assert_eq!(
            t,
            vec![
                (0.0, 0, 0, 0),
                (0.25, 2, 0, 0),
                (0.5, 2, 1, 0),
                (0.75, 2, 1, 1)
            ]
        );
    }
}
