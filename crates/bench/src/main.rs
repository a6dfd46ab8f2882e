//! `orca-bench`: Orca's benchmarks, side by side with podman `kube play`.
//!
//! `orca-bench all` builds the release `orca`, starts fresh servers on
//! temporary data dirs, runs the scenarios (interleaving podman's runs with
//! Orca's), writes bench/results/*.json, draws bench/plots/*.svg and
//! regenerates its section of BENCHMARKS.md. `orca-bench render` redraws
//! plots and tables from the newest results file. It asserts nothing about
//! time: it reports.

mod orca;
mod plots;
mod podman;
mod procs;
mod report;
mod results;
mod scenarios;
mod stats;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::orca::OrcaServer;
use crate::podman::Podman;
use crate::results::{Machine, Memory, Report};

#[derive(Parser)]
#[command(
    name = "orca-bench",
    about = "Orca's benchmarks, side by side with podman"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every scenario, then write results, plots and BENCHMARKS.md.
    All(AllArgs),
    /// Redraw plots and BENCHMARKS.md from a results file (default: the newest).
    Render { results: Option<PathBuf> },
    /// Deployments: scale 0 -> 100 (real containers) and 0 -> 10,000
    /// (virtual nodes), pod replacement, memory; prints the "Workloads"
    /// section of BENCHMARKS.md.
    Workloads(WorkloadsArgs),
}

#[derive(Args)]
struct WorkloadsArgs {
    /// Small sizes, to try the tool.
    #[arg(long)]
    quick: bool,
    /// The orca binary (default: build target/release/orca with cargo).
    #[arg(long)]
    orca_bin: Option<PathBuf>,
    /// Directory with busybox.docker.tar (default: $ORCA_TEST_IMAGES).
    #[arg(long)]
    images: Option<PathBuf>,
}

#[derive(Args)]
struct AllArgs {
    /// Few runs of each scenario, to try the tool (marked as such in the output).
    #[arg(long)]
    quick: bool,
    /// Measure Orca only.
    #[arg(long)]
    no_podman: bool,
    /// The orca binary (default: build target/release/orca with cargo).
    #[arg(long)]
    orca_bin: Option<PathBuf>,
    /// Directory with busybox.docker.tar and nginx.docker.tar (default:
    /// $ORCA_TEST_IMAGES, else built with scripts/build-test-images.sh).
    #[arg(long)]
    images: Option<PathBuf>,
}

/// The sizes of a run.
struct Plan {
    startup_runs: usize,
    batch_sizes: Vec<usize>,
    batch_rounds: usize,
    delete_cooperative: usize,
    delete_ignoring: usize,
    virtual_nodes: usize,
    virtual_pods: usize,
    concurrency: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                startup_runs: 5,
                batch_sizes: vec![5, 20],
                batch_rounds: 1,
                delete_cooperative: 2,
                delete_ignoring: 1,
                virtual_nodes: 100,
                virtual_pods: 1000,
                concurrency: 32,
            }
        } else {
            Plan {
                startup_runs: 100,
                batch_sizes: vec![20, 100],
                batch_rounds: 2,
                delete_cooperative: 10,
                delete_ignoring: 5,
                virtual_nodes: 1000,
                virtual_pods: 10_000,
                concurrency: 32,
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Cmd::All(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(run_all(&root, &args))?;
            let file = write_results(&root, &report)?;
            render(&root, &report, &file)
        }
        Cmd::Workloads(args) => {
            let bin = match &args.orca_bin {
                Some(bin) => bin.clone(),
                None => build_orca(&root)?,
            };
            let Some(images) = args
                .images
                .clone()
                .or_else(|| std::env::var_os("ORCA_TEST_IMAGES").map(PathBuf::from))
            else {
                bail!(
                    "give --images DIR or set ORCA_TEST_IMAGES (see scripts/build-test-images.sh)"
                );
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let text =
                runtime.block_on(workloads::run(&orca::bin_path(&bin), &images, args.quick))?;
            print!("{text}");
            Ok(())
        }
        Cmd::Render { results } => {
            let file = match results {
                Some(f) => f,
                None => newest_results(&root)?,
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let report: Report = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a results file", file.display()))?;
            render(&root, &report, &file)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/bench lives two levels below the workspace root")
        .to_path_buf()
}

async fn run_all(root: &Path, args: &AllArgs) -> anyhow::Result<Report> {
    let plan = Plan::new(args.quick);
    let orca_bin = match &args.orca_bin {
        Some(bin) => bin.clone(),
        None => build_orca(root)?,
    };
    let orca_bin = orca::bin_path(&orca_bin);
    let built_images;
    let images = match args
        .images
        .clone()
        .or_else(|| std::env::var_os("ORCA_TEST_IMAGES").map(PathBuf::from))
    {
        Some(dir) => dir,
        None => {
            built_images = tempfile::Builder::new()
                .prefix("orca-bench-images.")
                .tempdir()?;
            build_images(root, built_images.path())?;
            built_images.path().to_path_buf()
        }
    };
    let podman = if args.no_podman {
        None
    } else {
        eprintln!("== podman: private store, loading images");
        Some(Podman::start(&images)?)
    };
    let mut report = Report {
        machine: machine(),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit: git(root, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into()),
        podman_version: podman.as_ref().map(|p| p.version.clone()),
        quick: args.quick,
        ..Default::default()
    };
    let mut memory = Memory::default();

    eprintln!("== orca server with its node agent");
    let server = OrcaServer::start(&orca_bin, &images, &[]).await?;
    let outcome = async {
        server.set_phase("warm-up");
        scenarios::warm_up(&server, podman.as_ref()).await?;
        server.set_phase("idle");
        tokio::time::sleep(Duration::from_secs(3)).await;
        memory.orca_idle = server.memory();

        eprintln!(
            "== 1. one pod, create -> Ready ({} runs each)",
            plan.startup_runs
        );
        server.set_phase("one pod at a time");
        report.startup =
            Some(scenarios::startup(&server, podman.as_ref(), plan.startup_runs).await?);

        eprintln!("== 2. pods at once: {:?}", plan.batch_sizes);
        let (batches, batch_memory) = scenarios::batches(
            &server,
            &orca_bin,
            podman.as_ref(),
            &plan.batch_sizes,
            plan.batch_rounds,
        )
        .await?;
        report.batches = batches;
        if let Some(m) = batch_memory {
            memory.real_pods = m.pods;
            memory.orca_with_pods = m.server;
            memory.orca_pod_overhead = m.orca_overhead;
            memory.podman_pod_overhead = m.podman_overhead;
        }

        eprintln!("== 3. deletion");
        report.deletion = Some(
            scenarios::deletion(
                &server,
                podman.as_ref(),
                plan.delete_cooperative,
                plan.delete_ignoring,
            )
            .await?,
        );
        anyhow::Ok(())
    }
    .await;
    if let Err(err) = outcome {
        let tail = orca::log_tail(server.dir.path());
        let _ = server.stop(true).await;
        return Err(err.context(tail));
    }
    memory.timeline_real = server.stop(true).await?;
    drop(podman);

    eprintln!(
        "== 4, 5. API and scheduler: {} virtual nodes, {} pods",
        plan.virtual_nodes, plan.virtual_pods
    );
    let nodes = plan.virtual_nodes.to_string();
    let server = OrcaServer::start(
        &orca_bin,
        &images,
        &["--virtual-nodes", &nodes, "--disable-agent"],
    )
    .await?;
    let outcome = async {
        server.set_phase("registering virtual nodes");
        let took = scenarios::wait_virtual_nodes(&server, plan.virtual_nodes).await?;
        eprintln!(
            "   {} virtual nodes Ready after {took:.1?}",
            plan.virtual_nodes
        );
        server.set_phase("idle");
        tokio::time::sleep(Duration::from_secs(3)).await;
        memory.virtual_nodes = plan.virtual_nodes;
        memory.orca_virtual_idle = server.memory();
        let scale = scenarios::scale(
            &server,
            plan.virtual_nodes,
            plan.virtual_pods,
            plan.concurrency,
        )
        .await?;
        eprintln!(
            "   {:.0} creates/s, {:.0} bound/s, all Running after {:.1} s",
            scale.creates_per_second, scale.bound_per_second, scale.all_running_seconds
        );
        server.set_phase("idle");
        tokio::time::sleep(Duration::from_secs(2)).await;
        memory.virtual_pods = plan.virtual_pods;
        memory.orca_virtual_with_pods = server.memory();
        report.scale = Some(scale);
        anyhow::Ok(())
    }
    .await;
    if let Err(err) = outcome {
        let tail = orca::log_tail(server.dir.path());
        let _ = server.stop(false).await;
        return Err(err.context(tail));
    }
    // Virtual pods hold nothing on the machine: no need to delete them first.
    memory.timeline_virtual = server.stop(false).await?;
    report.memory = Some(memory);
    Ok(report)
}

fn build_orca(root: &Path) -> anyhow::Result<PathBuf> {
    eprintln!("== cargo build --release -p orca");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "orca"])
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build --release -p orca failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/orca"))
}

fn build_images(root: &Path, out: &Path) -> anyhow::Result<()> {
    eprintln!("== building the test images (scripts/build-test-images.sh)");
    let missing: Vec<&str> = ["skopeo", "busybox-static", "nginx-light"]
        .into_iter()
        .filter(|pkg| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", pkg])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if !missing.is_empty() {
        eprintln!("== installing {missing:?} with apt-get");
        let status = Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .status()?;
        if !status.success() {
            bail!("apt-get install {missing:?} failed");
        }
    }
    let status = Command::new("bash")
        .arg(root.join("scripts/build-test-images.sh"))
        .arg(out)
        .status()?;
    if !status.success() {
        bail!("scripts/build-test-images.sh failed");
    }
    Ok(())
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let value = |text: &str, key: &str, sep: char| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(sep))
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let mem_kib: f64 = value(&meminfo, "MemTotal", ':')
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or(0.0);
    Machine {
        cpu_model: value(&cpuinfo, "model name", ':'),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: mem_kib / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        os: value(&os, "PRETTY_NAME", '='),
    }
}

fn write_results(root: &Path, report: &Report) -> anyhow::Result<PathBuf> {
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let quick = if report.quick { "-quick" } else { "" };
    let file = dir.join(format!("{stamp}-{}{quick}.json", report.commit));
    std::fs::write(&file, serde_json::to_string_pretty(report)?)?;
    eprintln!("== wrote {}", file.display());
    Ok(file)
}

fn newest_results(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("bench/results");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}: run `orca-bench all` first", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files.pop().with_context(|| {
        format!(
            "no results in {}: run `orca-bench all` first",
            dir.display()
        )
    })
}

fn render(root: &Path, report: &Report, results_file: &Path) -> anyhow::Result<()> {
    let plots = plots::render(report, &root.join("bench/plots"))?;
    eprintln!("== drew bench/plots/{{{}}}", plots.join(","));
    let relative = results_file
        .strip_prefix(root)
        .unwrap_or(results_file)
        .display()
        .to_string();
    let section = report::section(report, &relative);
    let doc_path = root.join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let updated = report::splice(&doc, report::HEADING, &section, report::HOW_TO_RUN);
    std::fs::write(&doc_path, updated)?;
    eprintln!("== updated {} ({})", doc_path.display(), report::HEADING);
    Ok(())
}
