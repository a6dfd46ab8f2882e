//! Behaviour specific to the embedded backend: restarts, bounded growth
//! under churn, and watchers that fall behind the live buffer.

use std::time::Duration;

use futures::StreamExt;
use orca_store::sqlite::{SqliteOptions, SqliteStore};
use orca_store::{Error, Store, WatchEvent};

const STREAM_WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_in_use_cannot_be_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db/state.db");
    let first = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    let kv = first.create("/r/a", b"1".to_vec()).await.unwrap();
    match SqliteStore::open(&db, SqliteOptions::default()) {
        Err(Error::Unavailable(msg)) => assert!(msg.contains("in use by another process"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second store opened a database in use"),
    }
    // The refused open changed nothing, and once the first closes the
    // database opens again with its data.
    assert_eq!(first.get("/r/a").await.unwrap(), Some(kv.clone()));
    drop(first);
    let again = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    assert_eq!(again.get("/r/a").await.unwrap(), Some(kv));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data_history_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db/state.db");
    let (a, b, deleted_at) = {
        let s = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        let a = s.create("/r/a", b"1".to_vec()).await.unwrap();
        let a = s
            .update("/r/a", b"2".to_vec(), a.mod_revision)
            .await
            .unwrap();
        let b = s.create("/r/b", b"b".to_vec()).await.unwrap();
        let (_, deleted_at) = s.delete("/r/b", None).await.unwrap();
        (a, b, deleted_at)
    };
    let s = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), deleted_at);
    assert_eq!(s.get("/r/a").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get("/r/b").await.unwrap(), None);

    // History is replayable after the restart.
    let mut w = s.watch("/r/", 0).await.unwrap();
    let mut revisions = Vec::new();
    for _ in 0..4 {
        let ev = tokio::time::timeout(STREAM_WAIT, w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        revisions.push(ev.revision());
    }
    assert_eq!(
        revisions,
        vec![
            a.create_revision,
            a.mod_revision,
            b.mod_revision,
            deleted_at
        ]
    );

    let c = s.create("/r/b", b"again".to_vec()).await.unwrap();
    assert!(c.mod_revision > deleted_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_bounds_the_database_under_churn() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let opts = SqliteOptions {
        retain_revisions: 200,
        retain_duration: Duration::from_secs(3600),
        compaction_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let s = std::sync::Arc::new(SqliteStore::open(&db, opts).unwrap());
    // 8 keys rewritten 500 times each with 8 KiB values: ~32 MiB of writes.
    let tasks: Vec<_> = (0..8)
        .map(|k| {
            let s = s.clone();
            tokio::spawn(async move {
                let key = format!("/churn/{k}");
                let mut rev = s
                    .create(&key, vec![k as u8; 8192])
                    .await
                    .unwrap()
                    .mod_revision;
                for i in 0..500u32 {
                    let value = [i.to_le_bytes().to_vec(), vec![k as u8; 8188]].concat();
                    rev = s.update(&key, value, rev).await.unwrap().mod_revision;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let current = s.current_revision().await.unwrap();
    // The next compaction runs within one interval; wait for it (bounded
    // only to fail instead of hanging).
    // The WAL shrinks at the background checkpoint after it, which a loaded
    // machine may run a moment later.
    let mut status = s.status().await.unwrap();
    for _ in 0..400 {
        if status.compact_revision >= current - 200 && status.db_size_bytes < 16 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = s.status().await.unwrap();
    }
    assert_eq!(status.compact_revision, current - 200);
    // Latest values (8 x 8 KiB) plus 200 revisions of history (each row
    // holds the new and the previous value) is about 3.3 MiB, the whole
    // history about 64 MiB. The WAL's truncation is best effort (a reader
    // can delay it to the next compaction), so the bound leaves room for it.
    assert!(
        status.db_size_bytes < 16 << 20,
        "database and WAL are {} bytes after compaction",
        status.db_size_bytes
    );
    for k in 0..8u8 {
        let kv = s.get(&format!("/churn/{k}")).await.unwrap().unwrap();
        assert_eq!(kv.value[..4], 499u32.to_le_bytes());
    }
    match s.watch("/churn/", 1).await {
        Err(Error::Compacted { compacted, .. }) => assert_eq!(compacted, current - 200),
        Err(e) => panic!("watch from revision 1: {e}"),
        Ok(_) => panic!("watch from revision 1 should be compacted"),
    }
    // The retained window is still watchable.
    let mut w = s.watch("/churn/", current - 100).await.unwrap();
    let ev = tokio::time::timeout(STREAM_WAIT, w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.revision(), current - 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_catches_up_from_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        event_buffer: 4,
        max_batch: 1,
        ..Default::default()
    };
    let s = std::sync::Arc::new(SqliteStore::open(&dir.path().join("state.db"), opts).unwrap());
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch("/lag/", start).await.unwrap();
    // Nobody reads the watch while 1,000 single-write batches commit: far
    // more than the 4 buffered batches plus the stream's own queue.
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..125 {
                    s.create(&format!("/lag/{t}-{i:03}"), vec![1; 16])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let end = s.current_revision().await.unwrap();
    let mut expected = start;
    while expected < end {
        let ev = tokio::time::timeout(STREAM_WAIT, w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        expected += 1;
        assert_eq!(ev.revision(), expected, "events are complete and in order");
        assert!(matches!(ev, WatchEvent::Put { prev: None, .. }));
    }
    let last = s.create("/lag/last", vec![]).await.unwrap();
    let ev = tokio::time::timeout(STREAM_WAIT, w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.revision(), last.mod_revision);
}
