//! Crash safety of the embedded store: a child process writes as fast as it
//! can and prints every acknowledged write; it is killed with SIGKILL
//! mid-stream; the reopened store must hold every acknowledged write intact.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use orca_store::sqlite::{SqliteOptions, SqliteStore};
use orca_store::{ListOptions, Store};

/// Set in the child: the database it writes to.
const CHILD_DB: &str = "ORCA_STORE_CRASH_CHILD_DB";
const WRITERS: usize = 32;
/// Acknowledgements to see before the kill.
const KILL_AFTER: usize = 3_000;

/// The value written under `key`, so the parent can check it is intact.
fn value_for(key: &str) -> Vec<u8> {
    key.as_bytes().iter().cycle().take(700).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    if let Ok(db) = std::env::var(CHILD_DB) {
        write_until_killed(Path::new(&db)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::acknowledged_writes_survive_sigkill",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("re-executing the test binary as the writer");
    let stdout = child.stdout.take().unwrap();
    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut lines = BufReader::new(stdout).lines();
    let mut killed = false;
    // After the kill, keep reading: lines already in the pipe were printed
    // after their write was acknowledged.
    while let Some(Ok(line)) = lines.next() {
        // Only whole lines count; "END" proves the line was not cut short.
        if let ["ACK", key, rev, "END"] = line.split(' ').collect::<Vec<_>>()[..] {
            acked.insert(key.to_owned(), rev.parse().unwrap());
        }
        if !killed && acked.len() >= KILL_AFTER {
            child.kill().expect("SIGKILL to the writer"); // std sends SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "the writer exited on its own ({status}) before {KILL_AFTER} writes"
    );

    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&db, SqliteOptions::default()).expect("reopening after SIGKILL"),
    );
    let mut newest = 0;
    for (key, rev) in &acked {
        let kv = store
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged key {key} (revision {rev}) is missing"));
        assert_eq!(kv.mod_revision, *rev, "{key}");
        assert_eq!(kv.value, value_for(key), "{key} is corrupt");
        newest = newest.max(*rev);
    }
    // Writes committed but not yet acknowledged at the kill may be there too;
    // whatever is there is intact.
    let all = store.list("/crash/", ListOptions::default()).await.unwrap();
    assert!(all.kvs.len() >= acked.len());
    for kv in &all.kvs {
        assert_eq!(kv.value, value_for(&kv.key), "{} is corrupt", kv.key);
    }
    assert!(store.current_revision().await.unwrap() >= newest);
    let after = store
        .create("/crash/after-restart", value_for("x"))
        .await
        .unwrap();
    assert!(after.mod_revision > newest);
    assert!(after.mod_revision > all.revision);
}

async fn write_until_killed(db: &Path) -> ! {
    let store = Arc::new(SqliteStore::open(db, SqliteOptions::default()).unwrap());
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{w:02}-{i:08}");
                    let kv = store.create(&key, value_for(&key)).await.unwrap();
                    println!("ACK {key} {} END", kv.mod_revision);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    unreachable!("the writers never stop");
}
