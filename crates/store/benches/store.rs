//! Store benchmark (reports, asserts nothing): `cargo bench -p orca-store`.
//! Runs the embedded SQLite backend in a temp dir, and etcd too when
//! ORCA_TEST_ETCD names one (e.g. http://127.0.0.1:2379).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use orca_store::etcd::EtcdStore;
use orca_store::sqlite::{SqliteOptions, SqliteStore};
use orca_store::{ListOptions, Store};

const VALUE: usize = 1024;
const SEQUENTIAL: usize = 2_000;
const WRITERS: usize = 64;
const PER_WRITER: usize = 300;
const LIST_KEYS: usize = 10_000;
const WATCHERS: usize = 100;
const WATCH_EVENTS: usize = 200;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default())
            .expect("opening the SQLite store");
        run(
            "sqlite (embedded, WAL, synchronous=FULL)",
            Arc::new(sqlite),
            "/bench/",
        )
        .await;
        match std::env::var("ORCA_TEST_ETCD") {
            Ok(endpoint) => {
                let etcd = EtcdStore::connect(std::slice::from_ref(&endpoint))
                    .await
                    .unwrap_or_else(|e| panic!("connecting to etcd at {endpoint}: {e}"));
                let prefix = format!("/bench-{}/", std::process::id());
                run(&format!("etcd ({endpoint})"), Arc::new(etcd), &prefix).await;
            }
            Err(_) => println!("\netcd: skipped (set ORCA_TEST_ETCD=http://127.0.0.1:PORT)"),
        }
    });
}

/// CPU seconds (user + system, all threads) this process has used, so
/// that a rate can be read as a CPU cost per operation: on this 2-core VM
/// that, not wall time, is the budget everything in one process shares.
fn cpu_seconds() -> f64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .expect("the process CPU clock");
    t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn value(i: usize) -> Vec<u8> {
    let mut v = vec![b'v'; VALUE];
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v
}

async fn run(name: &str, store: Arc<dyn Store>, prefix: &str) {
    println!("\n== {name}");

    // Sequential creates: one writer, so each pays a full commit.
    let mut lat = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL {
        let t = Instant::now();
        store
            .create(&format!("{prefix}seq/{i:06}"), value(i))
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "sequential create ({SEQUENTIAL} x 1 KiB): p50 {} p99 {}",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );

    // 64 concurrent writers.
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, prefix) = (store.clone(), prefix.to_owned());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(PER_WRITER);
                for i in 0..PER_WRITER {
                    let t = Instant::now();
                    store
                        .create(&format!("{prefix}conc/{w:02}-{i:05}"), value(i))
                        .await
                        .unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    let cpu = cpu_seconds() - cpu0;
    lat.sort();
    println!(
        "concurrent create ({WRITERS} writers x {PER_WRITER} x 1 KiB): {:.0} creates/s, \
         latency p50 {} p99 {}, process CPU {:.1} us per create",
        (WRITERS * PER_WRITER) as f64 / elapsed.as_secs_f64(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        cpu * 1e6 / (WRITERS * PER_WRITER) as f64
    );

    // List 10,000 keys (the first 10,000 of the concurrent creates).
    let list_prefix = format!("{prefix}conc/");
    let mut lat = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let page = store
            .list(
                &list_prefix,
                ListOptions {
                    limit: LIST_KEYS,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(page.kvs.len(), LIST_KEYS);
    }
    lat.sort();
    let mut paged = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut opts = ListOptions {
            limit: 500,
            ..Default::default()
        };
        let mut n = 0;
        loop {
            let page = store.list(&list_prefix, opts.clone()).await.unwrap();
            n += page.kvs.len();
            if !page.more || n >= LIST_KEYS {
                break;
            }
            opts.start_after = page.kvs.last().map(|kv| kv.key.clone());
            opts.revision = Some(page.revision);
        }
        paged.push(t.elapsed());
    }
    paged.sort();
    println!(
        "list {LIST_KEYS} keys (1 KiB values): one request median {}, pages of 500 median {}",
        ms(lat[lat.len() / 2]),
        ms(paged[paged.len() / 2])
    );

    // Watch fan-out: 100 watchers, latency from the start of each write to
    // its delivery to every watcher.
    let watch_prefix = format!("{prefix}watch/");
    let from = store.current_revision().await.unwrap();
    let received: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut stream = store.watch(&watch_prefix, from).await.unwrap();
        let received = received.clone();
        watchers.push(tokio::spawn(async move {
            for _ in 0..WATCH_EVENTS {
                let ev = stream.next().await.unwrap().unwrap();
                received
                    .lock()
                    .unwrap()
                    .push((ev.revision(), Instant::now()));
            }
        }));
    }
    let mut sent = std::collections::HashMap::new();
    for i in 0..WATCH_EVENTS {
        let t = Instant::now();
        let kv = store
            .create(&format!("{watch_prefix}{i:04}"), value(i))
            .await
            .unwrap();
        sent.insert(kv.mod_revision, t);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in watchers {
        w.await.unwrap();
    }
    let mut lat: Vec<Duration> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(rev, at)| at.duration_since(sent[rev]))
        .collect();
    lat.sort();
    println!(
        "watch fan-out ({WATCHERS} watchers x {WATCH_EVENTS} writes, write start to delivery): \
         p50 {} p99 {}",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
    let status = store.status().await.unwrap();
    println!(
        "after: revision {}, database {:.1} MiB",
        status.revision,
        status.db_size_bytes as f64 / (1 << 20) as f64
    );
}
