//! Time to a running container: sandbox (pause, veth, IP, volumes) plus
//! one busybox container created and started, with the image present.
//! Also the memory of the shim and pause processes, of one pod alone and
//! of each of ten pods running at once.
//!
//!   ORCA_TEST_IMAGES=DIR cargo bench -p orca-runtime --bench sandbox_start
//!
//! With ORCA_BENCH_SHIM_EXE=PATH, PATH (e.g. target/release/orca) is the
//! shim and pause binary instead of the bench itself.
//!
//! Reports; asserts nothing. The bench binary doubles as shim and pause.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use orca_runtime::{LinuxRuntime, Runtime, RuntimeConfig};

const RUNS: usize = 100;
const MEMORY_PODS: usize = 10;

/// Memory of one process, from /proc/PID/smaps_rollup, in KiB.
#[derive(Clone, Copy, Default)]
struct Memory {
    pss: u64,
    /// Private_Clean + Private_Dirty: pages no other process maps.
    private: u64,
    /// Private_Dirty alone: the process's own writes (heap, stack,
    /// relocated data), the part every extra shim costs.
    private_dirty: u64,
}

fn memory_kib(pid: u32) -> Memory {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Memory {
        pss: field("Pss:"),
        private: field("Private_Clean:") + field("Private_Dirty:"),
        private_dirty: field("Private_Dirty:"),
    }
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
    // ORCA_BENCH_SHIM_EXE=target/release/orca measures the shim and pause of
    // the real binary (its size and allocator) instead of this one.
    let custom = std::env::var_os("ORCA_BENCH_SHIM_EXE").map(|exe| {
        let mut config = RuntimeConfig::new(env.root(), env.images.clone());
        config.bridge = env.bridge.clone();
        config.pod_cidr = env.cidr.clone();
        config.shim_exe = exe.into();
        LinuxRuntime::new(config).unwrap()
    });
    let rt = custom.as_ref().unwrap_or(&env.runtime);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut times = Vec::with_capacity(RUNS);
    let mut phases = [Vec::new(), Vec::new(), Vec::new()];
    // Shim and pause memory: of the first pod alone, then of each of
    // MEMORY_PODS pods running at once (their shared code then counts once).
    let mut alone = None;
    let mut together = Vec::new();
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
            rt.remove_sandbox(&uid).await.unwrap();
        }
        let mut pods = Vec::new();
        for i in 0..MEMORY_PODS {
            let (uid, name) = (format!("mem-{i}"), format!("mem{i}"));
            rt.run_sandbox(&sandbox(&uid, &name)).await.unwrap();
            let id = rt
                .create_container(&uid, &busybox("main", "exec sleep 1000"))
                .await
                .unwrap();
            rt.start_container(&id).await.unwrap();
            let dir = env.root().join("containers").join(&id);
            let shim = find_process(&["__orca-shim", dir.to_str().unwrap()]).unwrap();
            let pause = find_process(&["__orca-pause", &name]).unwrap();
            if i == 0 {
                alone = Some((memory_kib(shim), memory_kib(pause)));
            }
            pods.push((uid, shim, pause));
        }
        for (_, shim, pause) in &pods {
            together.push((memory_kib(*shim), memory_kib(*pause)));
        }
        for (uid, _, _) in &pods {
            rt.remove_sandbox(uid).await.unwrap();
        }
    });
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
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
    let (shim, pause) = alone.unwrap();
    let median = |pick: &dyn Fn(&(Memory, Memory)) -> Memory| {
        let mut v: Vec<Memory> = together.iter().map(pick).collect();
        v.sort_by_key(|m| m.pss);
        v[v.len() / 2]
    };
    let show = |what: &str, m: Memory| {
        println!(
            "{what}: Pss {} KiB, private {} KiB (dirty {} KiB)",
            m.pss, m.private, m.private_dirty
        )
    };
    show("shim, one pod", shim);
    show("pause, one pod", pause);
    show(
        &format!("shim, median of {MEMORY_PODS} pods"),
        median(&|p| p.0),
    );
    show(
        &format!("pause, median of {MEMORY_PODS} pods"),
        median(&|p| p.1),
    );
}
