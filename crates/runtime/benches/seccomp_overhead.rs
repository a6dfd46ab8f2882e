//! What the RuntimeDefault seccomp filter costs a system call: busybox
//! `dd bs=1` (one read and one write per byte) in a container with and
//! without the filter, less the same container running `true`.
//!
//!   ORCA_TEST_IMAGES=DIR cargo bench -p orca-runtime --bench seccomp_overhead
//!
//! Reports; asserts nothing. The bench binary doubles as shim and pause.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use orca_runtime::{Runtime, SeccompProfile};

const BYTES: u64 = 2_000_000;
const RUNS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    orca_runtime::run_internal_command_if_requested();
    let env = Env::new(201);
    let rt = &env.runtime;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        rt.run_sandbox(&sandbox("seccomp-bench", "bench"))
            .await
            .unwrap();
        let dd = format!("dd if=/dev/zero of=/dev/null bs=1 count={BYTES} 2>/dev/null");
        let mut times = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        // Alternating, so that the machine's drift hits both alike.
        for i in 0..RUNS {
            for (p, profile) in [SeccompProfile::Unconfined, SeccompProfile::RuntimeDefault]
                .into_iter()
                .enumerate()
            {
                for (s, script) in ["true", dd.as_str()].into_iter().enumerate() {
                    let mut c = busybox(&format!("run-{i}-{p}-{s}"), script);
                    c.security.seccomp = profile.clone();
                    let t = Instant::now();
                    let st = run_to_exit(rt, "seccomp-bench", &c).await;
                    times[p][s].push(t.elapsed());
                    assert_eq!(exit_code(&st).0, 0);
                    rt.remove_container(&st.id).await.unwrap();
                }
            }
        }
        let calls = 2 * BYTES;
        let mut per_call = [0.0; 2];
        for (p, name) in ["Unconfined", "RuntimeDefault"].iter().enumerate() {
            let empty = median(times[p][0].clone());
            let full = median(times[p][1].clone());
            per_call[p] = (full.saturating_sub(empty)).as_nanos() as f64 / calls as f64;
            println!(
                "{name:>14}: `true` {empty:.1?}, dd of {BYTES} bytes {full:.1?}: {:.0} ns per system call",
                per_call[p]
            );
        }
        println!(
            "filter cost: {:.0} ns per system call ({:+.0}%), medians of {RUNS} runs",
            per_call[1] - per_call[0],
            100.0 * (per_call[1] / per_call[0] - 1.0)
        );
        rt.remove_sandbox("seccomp-bench").await.unwrap();
    });
}
