//! The "Side by side with podman" section of BENCHMARKS.md, generated from
//! a results file, and its splicing into the document (other sections
//! belong to other benchmarks and are left as they are).

use std::fmt::Write;

use crate::procs::Mem;
use crate::results::{DeleteRun, Report};
use crate::stats::{percentile, ratio, Summary};

pub const HEADING: &str = "## Side by side with podman";
pub const HOW_TO_RUN: &str = "How to run the benchmarks: `cargo run --release -p orca-bench -- all` \
(as root; about 10 minutes; installs podman when missing) measures Orca and podman side by side, \
writes bench/results/*.json and bench/plots/*.svg and regenerates the section \
\"Side by side with podman\" below; `cargo run --release -p orca-bench -- render` redraws them from \
the newest results file. Each other section names its own command.";

/// Replaces the section starting at `heading` (up to the next `## `
/// heading) with `body`, or appends it; and puts `how_to_run` as its own
/// paragraph before the first `## ` heading (replacing an older version).
pub fn splice(doc: &str, heading: &str, body: &str, how_to_run: &str) -> String {
    let lines: Vec<&str> = doc.lines().collect();
    let is_h2 = |l: &str| l.starts_with("## ");
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    let mut replaced = false;
    let mut how_done = false;
    let how_prefix = how_to_run.split(':').next().unwrap_or(how_to_run);
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with(how_prefix) {
            // An older version of the line: dropped here, re-added below.
            i += 1;
            if lines.get(i).is_some_and(|l| l.trim().is_empty()) {
                i += 1;
            }
            continue;
        }
        if is_h2(line) && !how_done {
            out.push(how_to_run.to_string());
            out.push(String::new());
            how_done = true;
        }
        if line.trim_end() == heading {
            out.extend(body.trim_end().lines().map(str::to_string));
            out.push(String::new());
            replaced = true;
            i += 1;
            while i < lines.len() && !is_h2(lines[i]) {
                i += 1;
            }
            continue;
        }
        out.push(line.to_string());
        i += 1;
    }
    if !how_done {
        out.push(String::new());
        out.push(how_to_run.to_string());
    }
    if !replaced {
        if out.last().is_some_and(|l| !l.trim().is_empty()) {
            out.push(String::new());
        }
        out.extend(body.trim_end().lines().map(str::to_string));
    }
    let mut text = out.join("\n");
    while text.ends_with("\n\n") || text.ends_with('\n') {
        text.pop();
    }
    text.push('\n');
    text
}

pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n", headers.join(" | "));
    let _ = writeln!(
        s,
        "|{}",
        headers
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { " --- |" } else { " ---: |" })
            .collect::<String>()
    );
    for row in rows {
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    s
}

/// Milliseconds as people read them: "0.8 ms", "42 ms", "1.25 s".
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        "–".to_string()
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

pub fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r < 0.095 => format!("{r:.3}×"),
        Some(r) => format!("{r:.2}×"),
        None => "–".to_string(),
    }
}

/// "3", "1 run", "5 runs".
fn runs(n: usize) -> String {
    if n == 1 {
        "1 run".to_string()
    } else {
        format!("{n} runs")
    }
}

pub fn fmt_bytes(bytes: usize) -> String {
    if bytes < 10 * 1024 {
        format!("{bytes} B")
    } else if bytes < 10 * 1024 * 1024 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
    }
}

pub fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn fmt_mem(m: Mem) -> (String, String) {
    (fmt_mib(m.rss_kib), fmt_mib(m.pss_kib))
}

fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0).unwrap_or(f64::NAN)
}

fn median_of<T>(runs: &[T], f: impl Fn(&T) -> Option<f64>) -> f64 {
    let v: Vec<f64> = runs.iter().filter_map(f).collect();
    median(&v)
}

fn max_of<T>(runs: &[T], f: impl Fn(&T) -> Option<f64>) -> f64 {
    runs.iter().filter_map(f).fold(f64::NAN, f64::max)
}

fn speed(r: Option<f64>) -> String {
    match r {
        Some(r) if r < 1.0 => format!("{:.1}× faster than podman", 1.0 / r),
        Some(r) => format!("{r:.1}× slower than podman"),
        None => "not compared".to_string(),
    }
}

/// The whole generated section, headed by [`HEADING`].
pub fn section(r: &Report, results_file: &str) -> String {
    let mut s = String::new();
    let podman = r
        .podman_version
        .as_deref()
        .map(|v| format!("podman {v} `kube play` (runc, conmon, catatonit)"))
        .unwrap_or_else(|| "podman not measured".to_string());
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "Generated by `cargo run --release -p orca-bench -- all` on {} ({} cores, {:.0} GiB, {}, kernel {}) \
         at {}, commit `{}`{}. Peer: {podman}, measured in the same run on the same machine, \
         runs interleaved (Orca, podman, Orca, podman, ...) so that machine noise hits both. \
         Both run the same local busybox image (imagePullPolicy IfNotPresent, already imported), \
         each pod a container with a shell that traps SIGTERM. Raw results: \
         [{results_file}]({results_file}). Ratios are Orca / podman: below 1 Orca is faster or smaller.\n",
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.memory_gib,
        r.machine.os,
        r.machine.kernel,
        r.date,
        r.commit,
        if r.quick { " (**--quick run: few samples**)" } else { "" },
    );

    if let Some(st) = &r.startup {
        let _ = writeln!(
            s,
            "### 1. One pod: create → Ready ({} runs each)\n",
            st.orca_ms.len()
        );
        let so = Summary::of(&st.orca_ms);
        let sp = Summary::of(&st.podman_ms);
        let row = |name: &str, x: Option<Summary>| {
            let f = |g: fn(&Summary) -> f64| x.as_ref().map(g).map(fmt_ms).unwrap_or("–".into());
            vec![
                name.to_string(),
                f(|s| s.p50),
                f(|s| s.p90),
                f(|s| s.p99),
                f(|s| s.max),
            ]
        };
        let rat = |g: fn(&Summary) -> f64| match (&so, &sp) {
            (Some(a), Some(b)) => fmt_ratio(ratio(g(a), g(b))),
            _ => "–".to_string(),
        };
        let rows = vec![
            row("Orca", so),
            row("podman kube play", sp),
            vec![
                "Orca / podman".to_string(),
                rat(|s| s.p50),
                rat(|s| s.p90),
                rat(|s| s.p99),
                rat(|s| s.max),
            ],
        ];
        s.push_str(&table(&["", "p50", "p90", "p99", "max"], &rows));
        let _ = writeln!(
            s,
            "\nOrca: from the create request to the watch event that shows the pod Ready \
             (scheduled, sandbox and network set up, container started, status written back). \
             podman: the wall time of `podman kube play pod.yaml`, which returns once the \
             containers run (process start of the CLI included, as a user waits for it). \
             Nearest-rank percentiles: with {} runs p99 is the maximum.\n\n\
             ![create to Ready, CDF](bench/plots/startup_cdf.svg)\n",
            st.orca_ms.len()
        );
    }

    if !r.batches.is_empty() {
        let _ = writeln!(s, "### 2. Many pods at once → all Ready\n");
        let rows: Vec<Vec<String>> = r
            .batches
            .iter()
            .map(|b| {
                let o = median_of(&b.orca, |x| Some(x.all_ready_ms));
                let p = median_of(&b.podman, |x| Some(x.all_ready_ms));
                let per_pod: Vec<f64> = b
                    .orca
                    .iter()
                    .flat_map(|x| x.pod_ready_ms.iter().copied())
                    .collect();
                vec![
                    b.pods.to_string(),
                    b.orca.len().to_string(),
                    fmt_ms(o),
                    fmt_ms(p),
                    fmt_ratio(ratio(o, p)),
                    format!("{:.0}", b.pods as f64 / (o / 1000.0)),
                    format!("{:.0}", b.pods as f64 / (p / 1000.0)),
                    format!(
                        "{} / {}",
                        fmt_ms(median(&per_pod)),
                        fmt_ms(percentile(&per_pod, 99.0).unwrap_or(f64::NAN))
                    ),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "pods",
                "rounds",
                "Orca: all Ready (median)",
                "podman: all running (median)",
                "Orca / podman",
                "Orca pods/s",
                "podman pods/s",
                "Orca: each pod Ready p50 / p99",
            ],
            &rows,
        ));
        let _ = writeln!(
            s,
            "\nOrca: the pods are created through the API with 20 requests in flight (as a \
             controller creating a ReplicaSet's pods would), timed from the first request until \
             the watch has shown every pod Ready. podman: one multi-document YAML file given to \
             `podman kube play` (it creates the pods one after another).\n\n\
             ![many pods at once](bench/plots/batches.svg)\n"
        );
    }

    if let Some(d) = &r.deletion {
        let _ = writeln!(
            s,
            "### 3. Deleting a pod (terminationGracePeriodSeconds: {})\n",
            d.grace_seconds
        );
        let killed = |runs: &[DeleteRun]| {
            let v: Vec<f64> = runs.iter().filter_map(|x| x.killed_ms).collect();
            if v.is_empty() {
                return "–".to_string();
            }
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(0.0, f64::max);
            format!("{} … {}", fmt_ms(min), fmt_ms(max))
        };
        let gone = |runs: &[DeleteRun]| {
            if runs.is_empty() {
                return "–".to_string();
            }
            format!(
                "{} (max {})",
                fmt_ms(median_of(runs, |x| Some(x.gone_ms))),
                fmt_ms(max_of(runs, |x| Some(x.gone_ms)))
            )
        };
        let (c, i) = (&d.cooperative, &d.ignoring);
        let rows = vec![
            vec![
                "Orca: `DELETE` (the pod's grace period)".to_string(),
                killed(&c.orca),
                gone(&c.orca),
                killed(&i.orca),
                gone(&i.orca),
            ],
            vec![
                "podman kube down".to_string(),
                killed(&c.podman),
                gone(&c.podman),
                killed(&i.podman),
                gone(&i.podman),
            ],
            vec![
                "podman pod stop + pod rm".to_string(),
                killed(&c.podman_stop),
                gone(&c.podman_stop),
                killed(&i.podman_stop),
                gone(&i.podman_stop),
            ],
            vec![
                "Orca / podman kube down (pod gone, median)".to_string(),
                String::new(),
                fmt_ratio(ratio(
                    median_of(&c.orca, |x| Some(x.gone_ms)),
                    median_of(&c.podman, |x| Some(x.gone_ms)),
                )),
                String::new(),
                fmt_ratio(ratio(
                    median_of(&i.orca, |x| Some(x.gone_ms)),
                    median_of(&i.podman, |x| Some(x.gone_ms)),
                )),
            ],
        ];
        s.push_str(&table(
            &[
                "",
                &format!(
                    "exits on SIGTERM ({}): process gone, min … max",
                    runs(c.orca.len())
                ),
                "pod gone, median",
                &format!(
                    "ignores SIGTERM ({}): process gone, min … max",
                    runs(i.orca.len())
                ),
                "pod gone, median",
            ],
            &rows,
        ));
        let _ = writeln!(
            s,
            "\nTimed from the delete. Orca: an API `DELETE` without a grace override, so the pod's \
             {g} s apply; \"pod gone\" is the watch's DELETED event. podman: the command's wall \
             time. \"Process gone\" is when the container's shell stopped running (its pid polled \
             in /proc every 2 ms). For the pod that ignores SIGTERM, a process gone before {g} s \
             means the grace period was cut short, and long after it that SIGKILL came late. \
             podman does not read terminationGracePeriodSeconds: `kube down` removes the pods \
             with force (SIGKILL at once, no SIGTERM grace at all), and `pod stop` waits its own \
             10 s stop timeout.\n\n\
             ![deletion](bench/plots/deletion.svg)\n",
            g = d.grace_seconds
        );
    }

    if let Some(sc) = &r.scale {
        let req = Summary::of(&sc.create_request_ms);
        let bind = Summary::of(&sc.create_to_bound_ms);
        let _ = writeln!(
            s,
            "### 4. API: {} pods on {} virtual nodes (Orca only)\n",
            sc.pods, sc.virtual_nodes
        );
        let _ = writeln!(
            s,
            "`orca server --virtual-nodes {} --disable-agent` (simulated nodes: pods are bound, \
             get an IP and are reported Running by the simulator; no containers). {} pods created \
             with {} requests in flight: **{:.0} creates/s** ({:.1} s in all; each request p50 {}, \
             p99 {}). podman has no API server or scheduler to compare with.\n",
            sc.virtual_nodes,
            sc.pods,
            sc.concurrency,
            sc.creates_per_second,
            sc.create_seconds,
            req.map(|x| fmt_ms(x.p50)).unwrap_or_default(),
            req.map(|x| fmt_ms(x.p99)).unwrap_or_default(),
        );
        let rows: Vec<Vec<String>> = sc
            .lists
            .iter()
            .map(|l| {
                let x = Summary::of(&l.ms);
                vec![
                    l.what.clone(),
                    l.items.to_string(),
                    fmt_bytes(l.bytes),
                    x.map(|x| fmt_ms(x.p50)).unwrap_or_default(),
                    x.map(|x| fmt_ms(x.max)).unwrap_or_default(),
                    l.ms.len().to_string(),
                ]
            })
            .collect();
        let _ = writeln!(s, "LIST with all {} pods stored:\n", sc.pods);
        s.push_str(&table(
            &["request", "items", "response", "p50", "max", "runs"],
            &rows,
        ));
        let _ = writeln!(
            s,
            "\n### 5. Scheduler: {} pods onto {} virtual nodes (Orca only)\n",
            sc.pods, sc.virtual_nodes
        );
        let _ = writeln!(
            s,
            "All {} pods bound {:.1} s after the first create: **{:.0} pods/s** from create to \
             bound, end to end through the API (each pod: create → scheduler's watch → \
             `pods/binding`). Per pod, create → bound p50 {}, p99 {}, max {}. All reported \
             Running by the virtual nodes after {:.1} s. The pods were created at {:.0}/s, so \
             when the bound rate matches the create rate the scheduler kept up and its own \
             ceiling is higher than this.\n\n\
             ![create, bind, run over time](bench/plots/scale_timeline.svg)\n",
            sc.pods,
            sc.all_bound_seconds,
            sc.bound_per_second,
            bind.map(|x| fmt_ms(x.p50)).unwrap_or_default(),
            bind.map(|x| fmt_ms(x.p99)).unwrap_or_default(),
            bind.map(|x| fmt_ms(x.max)).unwrap_or_default(),
            sc.all_running_seconds,
            sc.creates_per_second,
        );
    }

    if let Some(m) = &r.memory {
        let _ = writeln!(s, "### 6. Memory\n");
        let per_orca = m.orca_pod_overhead.per_pod();
        let orca_total = m.orca_with_pods + m.orca_pod_overhead.total;
        let mut rows = vec![
            {
                let (a, b) = fmt_mem(m.orca_idle);
                vec![
                    "`orca server` idle (node agent, no pods)".into(),
                    a,
                    b,
                    "podman has no daemon: 0".into(),
                ]
            },
            {
                let (a, b) = fmt_mem(m.orca_with_pods);
                vec![
                    format!("`orca server` with {} pods running", m.real_pods),
                    a,
                    b,
                    "–".into(),
                ]
            },
        ];
        let procs_text = |o: &crate::results::Overhead| {
            o.processes
                .iter()
                .map(|(n, c)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (a, b) = fmt_mem(per_orca);
        let peer = m
            .podman_pod_overhead
            .as_ref()
            .map(|p| {
                let pp = p.per_pod();
                format!(
                    "{} RSS, {} PSS ({})",
                    fmt_mib(pp.rss_kib),
                    fmt_mib(pp.pss_kib),
                    procs_text(p)
                )
            })
            .unwrap_or("–".into());
        rows.push(vec![
            format!(
                "per pod: helpers ({} for {} pods)",
                procs_text(&m.orca_pod_overhead),
                m.real_pods
            ),
            a,
            b,
            peer,
        ]);
        let (a, b) = fmt_mem(orca_total);
        let peer_total = m
            .podman_pod_overhead
            .as_ref()
            .map(|p| {
                format!(
                    "{} RSS, {} PSS",
                    fmt_mib(p.total.rss_kib),
                    fmt_mib(p.total.pss_kib)
                )
            })
            .unwrap_or("–".into());
        rows.push(vec![
            format!("total for {} pods: server + helpers", m.real_pods),
            a,
            b,
            peer_total,
        ]);
        let (a, b) = fmt_mem(m.orca_virtual_idle);
        rows.push(vec![
            format!(
                "`orca server --virtual-nodes {} --disable-agent`, no pods",
                m.virtual_nodes
            ),
            a,
            b,
            "–".into(),
        ]);
        let (a, b) = fmt_mem(m.orca_virtual_with_pods);
        rows.push(vec![
            format!("the same with {} pods stored and Running", m.virtual_pods),
            a,
            b,
            "–".into(),
        ]);
        s.push_str(&table(&["", "Orca RSS", "Orca PSS", "podman"], &rows));
        let pss_ratio = m
            .podman_pod_overhead
            .as_ref()
            .and_then(|p| ratio(orca_total.pss_kib as f64, p.total.pss_kib as f64));
        let _ = writeln!(
            s,
            "\nRSS and PSS from /proc/PID/smaps_rollup (PSS divides shared pages among the \
             processes sharing them, so it adds up; RSS counts the shared binary in every \
             process). The containers' own processes (the busybox shells) are counted for neither. \
             Total PSS for {} pods, Orca / podman: {}.\n\n\
             ![memory](bench/plots/memory.svg)\n\n\
             ![server memory over the run](bench/plots/memory_timeline.svg)\n",
            m.real_pods,
            fmt_ratio(pss_ratio)
        );
    }

    s.push_str(&reading(r));
    s
}

/// The short reading of the numbers, written from them so that it stays true.
fn reading(r: &Report) -> String {
    let mut s = String::from("### Reading\n\n");
    if let Some(st) = &r.startup {
        let (o, p) = (median(&st.orca_ms), median(&st.podman_ms));
        let _ = writeln!(
            s,
            "- **Start-up:** a pod is Ready in {} at the median, {}. Orca pays for a control \
             plane podman does not have (an API write, a watch to the scheduler, a binding, a \
             watch to the node agent, a status write and a watch event back), but keeps every \
             step in one process with its images unpacked once; podman runs a new CLI process, \
             conmon and runc per container, and an infra (pause) container per pod.",
            fmt_ms(o),
            speed(ratio(o, p))
        );
    }
    if let (Some(first), Some(last)) = (r.batches.first(), r.batches.last()) {
        let o = median_of(&last.orca, |x| Some(x.all_ready_ms));
        let p = median_of(&last.podman, |x| Some(x.all_ready_ms));
        let o1 = median_of(&first.orca, |x| Some(x.all_ready_ms));
        let _ = writeln!(
            s,
            "- **Many at once:** {} pods are all Ready in {} ({} for {}), {}. Orca starts pods \
             in parallel (one worker per pod) while `kube play` goes one pod after another; on \
             2 cores the parallelism is bounded by the CPU.",
            last.pods,
            fmt_ms(o),
            fmt_ms(o1),
            first.pods,
            speed(ratio(o, p))
        );
    }
    if let Some(d) = &r.deletion {
        let grace = f64::from(d.grace_seconds) * 1000.0;
        let kills = |runs: &[DeleteRun]| -> (f64, f64) {
            let v: Vec<f64> = runs.iter().filter_map(|x| x.killed_ms).collect();
            (
                v.iter().copied().fold(f64::NAN, f64::min),
                v.iter().copied().fold(f64::NAN, f64::max),
            )
        };
        let (min, max) = kills(&d.ignoring.orca);
        let (_, down_max) = kills(&d.ignoring.podman);
        let (stop_min, _) = kills(&d.ignoring.podman_stop);
        let _ = writeln!(
            s,
            "- **Deletion:** a cooperative pod is gone in {} (podman `kube down` {}). The pod \
             that ignores SIGTERM was killed between {} and {} after the delete: the {} s grace \
             is {}{}. podman cannot express a grace period per pod: `kube down` killed it within \
             {}, before any grace, and `pod stop` after {} (its fixed 10 s).",
            fmt_ms(median_of(&d.cooperative.orca, |x| Some(x.gone_ms))),
            fmt_ms(median_of(&d.cooperative.podman, |x| Some(x.gone_ms))),
            fmt_ms(min),
            fmt_ms(max),
            d.grace_seconds,
            if min >= grace {
                "honoured"
            } else {
                "**not** honoured (killed early)"
            },
            if max - grace < 500.0 {
                format!(" and exceeded by at most {}", fmt_ms(max - grace))
            } else {
                format!(", but SIGKILL came up to {} late", fmt_ms(max - grace))
            },
            fmt_ms(down_max),
            fmt_ms(stop_min),
        );
    }
    if let Some(sc) = &r.scale {
        let kept_up = sc.bound_per_second >= 0.9 * sc.creates_per_second;
        let _ = writeln!(
            s,
            "- **Scale:** {:.0} creates/s and {:.0} binds/s through the API on 2 cores, with the \
             store, API server, scheduler and {} simulated nodes' status writes in one process \
             competing for them. {} A full LIST of {} pods takes {}.",
            sc.creates_per_second,
            sc.bound_per_second,
            sc.virtual_nodes,
            if kept_up {
                "The scheduler kept up with the creates (binds trail them by little), so its own \
                 ceiling is above this rate; the API's write path is the limit."
                    .to_string()
            } else {
                format!(
                    "The scheduler did not keep up: binds trail creates (create → bound p50 {}), \
                     so {:.0} pods/s is the scheduler's rate on this machine while it shares the \
                     CPU with the API server and the simulated nodes.",
                    fmt_ms(median(&sc.create_to_bound_ms)),
                    sc.bound_per_second
                )
            },
            sc.pods,
            sc.lists
                .first()
                .map(|l| fmt_ms(median(&l.ms)))
                .unwrap_or_default()
        );
    }
    if let Some(m) = &r.memory {
        let per = m.orca_pod_overhead.per_pod();
        let peer = m.podman_pod_overhead.as_ref().map(|p| p.per_pod());
        let heavier = peer.is_some_and(|p| per.pss_kib > p.pss_kib);
        let _ = writeln!(
            s,
            "- **Memory:** idle, `orca server` holds {} RSS that podman (daemonless) does not \
             need. Per pod, Orca's helpers take {} PSS{}.{} With {} pods stored the control \
             plane grows to {} RSS.",
            fmt_mib(m.orca_idle.rss_kib),
            fmt_mib(per.pss_kib),
            peer.map(|p| format!(
                " against podman's {} (a conmon per container and catatonit)",
                fmt_mib(p.pss_kib)
            ))
            .unwrap_or_default(),
            if heavier {
                " Orca is heavier here: its shim and pause processes are re-executions of the \
                 whole orca binary (Rust, with youki's libcontainer and an async runtime), where \
                 conmon and catatonit are small C programs; the binary's shared pages are counted \
                 once in PSS, so what remains is each helper's private heap and stacks."
            } else {
                ""
            },
            m.virtual_pods,
            fmt_mib(m.orca_virtual_with_pods.rss_kib)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Benchmarks\n\nIntro.\n\n## Store\n\nstore text\n\n## Side by side with podman\n\nold\n### old sub\nold\n\n## Scheduler\n\nsched\n";

    #[test]
    fn splice_replaces_only_its_section_and_adds_the_how_to_line() {
        let out = splice(
            DOC,
            HEADING,
            "## Side by side with podman\n\nnew\n",
            "How to run: x",
        );
        assert_eq!(
            out,
            "# Benchmarks\n\nIntro.\n\nHow to run: x\n\n## Store\n\nstore text\n\n## Side by side with podman\n\nnew\n\n## Scheduler\n\nsched\n"
        );
        // Idempotent, and an older how-to line is replaced, not duplicated.
        let again = splice(
            &out,
            HEADING,
            "## Side by side with podman\n\nnew\n",
            "How to run: y",
        );
        assert_eq!(again, out.replace("How to run: x", "How to run: y"));
    }

    #[test]
    fn splice_appends_a_missing_section() {
        let out = splice(
            "# B\n\n## Store\n\ns\n",
            HEADING,
            "## Side by side with podman\n\nn",
            "How to run: x",
        );
        assert_eq!(
            out,
            "# B\n\nHow to run: x\n\n## Store\n\ns\n\n## Side by side with podman\n\nn\n"
        );
    }

    #[test]
    fn tables_and_numbers() {
        let t = table(&["", "p50"], &[vec!["Orca".into(), fmt_ms(42.4)]]);
        assert_eq!(t, "|  | p50 |\n| --- | ---: |\n| Orca | 42 ms |\n");
        assert_eq!(fmt_ms(3.04), "3.0 ms");
        assert_eq!(fmt_ms(2012.0), "2.01 s");
        assert_eq!(fmt_ms(f64::NAN), "–");
        assert_eq!(fmt_ratio(Some(0.25)), "0.25×");
        assert_eq!(fmt_ratio(Some(0.0123)), "0.012×");
        assert_eq!(fmt_ratio(None), "–");
        assert_eq!(fmt_mib(2048), "2.0 MiB");
        assert_eq!(fmt_bytes(2213), "2213 B");
        assert_eq!(fmt_bytes(2_128_607), "2079 KiB");
        assert_eq!(fmt_bytes(21_286_070), "20.3 MiB");
        assert_eq!(runs(1), "1 run");
        assert_eq!(speed(Some(0.5)), "2.0× faster than podman");
        assert_eq!(speed(Some(1.5)), "1.5× slower than podman");
    }

    #[test]
    fn a_section_from_results() {
        let report = Report {
            commit: "abc1234".into(),
            startup: Some(crate::results::Startup {
                orca_ms: vec![100.0, 200.0],
                podman_ms: vec![400.0, 400.0],
            }),
            ..Default::default()
        };
        let s = section(&report, "bench/results/x.json");
        assert!(s.starts_with(HEADING));
        assert!(s.contains("commit `abc1234`"));
        assert!(
            s.contains("| Orca / podman | 0.25× | 0.50× | 0.50× | 0.50× |"),
            "{s}"
        );
        assert!(s.contains("2.0× faster than podman") || s.contains("4.0× faster than podman"));
    }
}
