//! `orca-bench workloads`: how fast Deployments scale and heal, measured
//! through the API like a user's `kubectl scale` and `kubectl delete pod`,
//! and printed as the "Workloads" section of BENCHMARKS.md (Markdown on
//! stdout). It reports; it asserts nothing about time.
//!
//! - `kubectl scale` 0 -> 100 with real containers (busybox), until the
//!   Deployment reports 100 ready replicas;
//! - a pod's deletion to its replacement Ready (real containers);
//! - 0 -> 10,000 on 1,000 virtual nodes, with the server's memory then.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::orca::{self, OrcaServer};
use crate::stats::percentile;

fn deployment(name: &str, virtual_node: bool) -> serde_json::Value {
    let mut spec = json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "main",
            "image": crate::scenarios::IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        }],
    });
    if virtual_node {
        spec["tolerations"] =
            json!([{"key": "orca.dev/virtual-node", "operator": "Exists", "effect": "NoSchedule"}]);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"bench-deploy": name}},
            "template": {"metadata": {"labels": {"bench-deploy": name}}, "spec": spec}},
    })
}

async fn create(
    server: &OrcaServer,
    name: &str,
    virtual_node: bool,
) -> anyhow::Result<Api<Deployment>> {
    let api: Api<Deployment> = Api::namespaced(server.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(deployment(name, virtual_node))?,
    )
    .await?;
    Ok(api)
}

async fn scale(api: &Api<Deployment>, name: &str, replicas: i32) -> anyhow::Result<()> {
    api.patch_scale(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await?;
    Ok(())
}

/// Waits until the Deployment reports `n` ready (and, for 0, no) replicas.
async fn until_ready(
    api: &Api<Deployment>,
    name: &str,
    n: i32,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let d = api.get(name).await?;
        let s = d.status.unwrap_or_default();
        let current = s.replicas.unwrap_or(0);
        if s.ready_replicas.unwrap_or(0) == n && (n > 0 || current == 0) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!(
                "{name}: {} of {n} ready after {limit:?}",
                s.ready_replicas.unwrap_or(0)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deletes the Deployments, waiting (up to 2 minutes) until the garbage
/// collector has removed them with their ReplicaSets and pods: pods deleted
/// while their ReplicaSet lives are replaced, and would outlive the server.
async fn delete_deployments(server: &OrcaServer) {
    let api: Api<Deployment> = Api::namespaced(server.client.clone(), "default");
    let _ = api
        .delete_collection(&DeleteParams::foreground(), &ListParams::default())
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(list) if list.items.is_empty() => break,
            Err(_) => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(bin: &Path, images: &Path, quick: bool) -> anyhow::Result<String> {
    let (scale_runs, replacements, virtual_nodes, virtual_pods) = if quick {
        (1, 5, 100, 1000)
    } else {
        (3, 40, 1000, 10_000)
    };
    let mut out = String::new();

    eprintln!("== workloads: real containers");
    let server = OrcaServer::start(bin, images, &[]).await?;
    let outcome = async {
        let api = create(&server, "scale", false).await?;
        let mut times = Vec::new();
        for run in 0..scale_runs {
            let start = Instant::now();
            scale(&api, "scale", 100).await?;
            until_ready(&api, "scale", 100, Duration::from_secs(300)).await?;
            times.push(start.elapsed());
            eprintln!("   0 -> 100 ready, run {run}: {:.2} s", start.elapsed().as_secs_f64());
            scale(&api, "scale", 0).await?;
            until_ready(&api, "scale", 0, Duration::from_secs(300)).await?;
            orca::delete_and_wait(&server.pods(), "bench-deploy=scale").await?;
        }
        let secs: Vec<String> = times.iter().map(|t| format!("{:.2} s", t.as_secs_f64())).collect();
        out.push_str(&format!(
            "- `kubectl scale` 0 → 100 (busybox, real containers on this machine) until the Deployment reports 100 ready: **{}** ({} runs).\n",
            secs.join(", "),
            times.len()
        ));

        let api = create(&server, "heal", false).await?;
        scale(&api, "heal", 10).await?;
        until_ready(&api, "heal", 10, Duration::from_secs(120)).await?;
        let pods = server.pods();
        let mut samples = Vec::new();
        for _ in 0..replacements {
            let sel = ListParams::default().labels("bench-deploy=heal");
            let listed = pods.list(&sel).await?.items;
            let before: HashSet<String> = listed.iter().map(|p| p.name_any()).collect();
            // Not the last victim, which may still be terminating: deleting
            // it again would not be replaced.
            let Some(victim) = listed
                .iter()
                .find(|p| p.metadata.deletion_timestamp.is_none() && orca::is_ready(p))
                .map(|p| p.name_any())
            else {
                bail!("no ready pod of the Deployment to delete");
            };
            let start = Instant::now();
            pods.delete(&victim, &DeleteParams::default()).await?;
            loop {
                let list = pods.list(&sel).await?.items;
                if list.iter().any(|p| !before.contains(&p.name_any()) && orca::is_ready(p)) {
                    break;
                }
                if start.elapsed() > Duration::from_secs(60) {
                    bail!("no replacement for {victim} within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            samples.push(ms(start.elapsed()));
            until_ready(&api, "heal", 10, Duration::from_secs(60)).await?;
        }
        out.push_str(&format!(
            "- A pod of a 10-replica Deployment deleted → its replacement Ready (real containers): **p50 {:.0} ms, p99 {:.0} ms** ({} deletions).\n",
            percentile(&samples, 50.0).unwrap_or(0.0),
            percentile(&samples, 99.0).unwrap_or(0.0),
            samples.len()
        ));
        anyhow::Ok(())
    }
    .await;
    delete_deployments(&server).await;
    server.stop(true).await?;
    outcome?;

    eprintln!("== workloads: {virtual_pods} replicas on {virtual_nodes} virtual nodes");
    let server = OrcaServer::start(
        bin,
        images,
        &[
            "--disable-agent",
            "--virtual-nodes",
            &virtual_nodes.to_string(),
        ],
    )
    .await?;
    let outcome = async {
        crate::scenarios::wait_virtual_nodes(&server, virtual_nodes).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = server.memory();
        let api = create(&server, "big", true).await?;
        let start = Instant::now();
        scale(&api, "big", virtual_pods).await?;
        until_ready(&api, "big", virtual_pods, Duration::from_secs(900)).await?;
        let took = start.elapsed();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let full = server.memory();
        out.push_str(&format!(
            "- `kubectl scale` 0 → {virtual_pods} on {virtual_nodes} virtual nodes until {virtual_pods} ready: **{:.1} s** ({:.0} pods/s).\n",
            took.as_secs_f64(),
            virtual_pods as f64 / took.as_secs_f64()
        ));
        out.push_str(&format!(
            "- `orca server` memory (all controllers, scheduler, API server and store in one process): {:.1} MiB RSS with the virtual nodes and no pods, {:.1} MiB RSS with the {virtual_pods} pods of the Deployment running (PSS {:.1} MiB).\n",
            idle.rss_kib as f64 / 1024.0,
            full.rss_kib as f64 / 1024.0,
            full.pss_kib as f64 / 1024.0
        ));
        anyhow::Ok(())
    }
    .await;
    server.stop(false).await?;
    outcome?;
    Ok(out)
}
