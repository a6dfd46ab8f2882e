//! Time to a running container: sandbox (pause, veth, IP, volumes) plus
//! one busybox container created and started, with the image present.
//! Also the private memory of one shim and one pause process.
//!
//!   ORCA_TEST_IMAGES=DIR cargo bench -p orca-runtime --bench sandbox_start
//!
//! Reports; asserts nothing. The bench binary doubles as shim and pause.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use orca_runtime::Runtime;

const RUNS: usize = 100;

/// Pss and private (clean + dirty) kB of a process, from smaps_rollup.
fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("Pss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    )
}

/// The pid of the process whose command line contains all of `parts`.
fn find_process(parts: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        parts.iter().all(|p| cmd.contains(p)).then_some(pid)
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    orca_runtime::run_internal_command_if_requested();
    // `cargo bench` passes --bench; nothing else is accepted.
    let env = Env::new(200);
    let rt = &env.runtime;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut times = Vec::with_capacity(RUNS);
    let mut phases = [Vec::new(), Vec::new(), Vec::new()];
    let mut memory = None;
    tokio.block_on(async {
        for i in 0..RUNS {
            let uid = format!("bench-{i}");
            let t = Instant::now();
            rt.run_sandbox(&sandbox(&uid, "bench")).await.unwrap();
            let t_sandbox = t.elapsed();
            let id = rt
                .create_container(&uid, &busybox("main", "exec sleep 1000"))
                .await
                .unwrap();
            let t_create = t.elapsed();
            rt.start_container(&id).await.unwrap();
            times.push(t.elapsed());
            phases[0].push(t_sandbox);
            phases[1].push(t_create - t_sandbox);
            phases[2].push(t.elapsed() - t_create);
            if i == RUNS - 1 {
                let dir = env.root().join("containers").join(&id);
                let shim = find_process(&["__orca-shim", dir.to_str().unwrap()]).unwrap();
                let pause = find_process(&["__orca-pause", "bench"]).unwrap();
                memory = Some((memory_kib(shim), memory_kib(pause)));
            }
            rt.remove_sandbox(&uid).await.unwrap();
        }
    });
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ((shim_pss, shim_private), (pause_pss, pause_private)) = memory.unwrap();
    println!(
        "sandbox + container to running, {RUNS} runs: median {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times[0]),
        ms(times[RUNS - 1])
    );
    for (name, p) in ["run_sandbox", "create_container", "start_container"]
        .iter()
        .zip(phases.iter_mut())
    {
        p.sort();
        println!("  {name}: median {:.1} ms", ms(percentile(p, 0.5)));
    }
    println!("shim:  Pss {shim_pss} KiB, private {shim_private} KiB");
    println!("pause: Pss {pause_pss} KiB, private {pause_private} KiB");
}
