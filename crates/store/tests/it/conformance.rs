//! One suite, run against every backend: the contract the API server relies
//! on. Each backend gets a fixture (a store plus a key prefix no other test
//! uses) and the `conformance!` macro instantiates every case for it.

use crate::common;

use std::time::Duration;

use common::Fixture;
use futures::StreamExt;
use orca_store::{Error, ListOptions, Store, WatchEvent, WatchStream};

/// Guards against a hung stream; generous because it is not a timing check.
const STREAM_WAIT: Duration = Duration::from_secs(20);

async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(STREAM_WAIT, stream.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended unexpectedly"),
        Err(_) => panic!("no watch event within {STREAM_WAIT:?}"),
    }
}

/// Asserts nothing more is delivered, by writing a marker key and checking
/// it is the very next event.
async fn assert_next_is_marker(store: &dyn Store, stream: &mut WatchStream, prefix: &str) {
    let marker = format!("{prefix}zz-marker");
    let kv = store.create(&marker, b"m".to_vec()).await.unwrap();
    match next_event(stream).await {
        WatchEvent::Put { kv: got, .. } => assert_eq!(got, kv, "expected only the marker"),
        other => panic!("expected the marker put, got {other:?}"),
    }
}

fn put(ev: &WatchEvent) -> (&str, &[u8], Option<&[u8]>) {
    match ev {
        WatchEvent::Put { kv, prev } => (&kv.key, &kv.value, prev.as_ref().map(|p| &p.value[..])),
        other => panic!("expected a put, got {other:?}"),
    }
}

pub async fn create_get_and_exists(f: &Fixture) {
    let s = &*f.store;
    let key = f.key("a");
    let kv = s.create(&key, b"one".to_vec()).await.unwrap();
    assert_eq!(kv.key, key);
    assert_eq!(kv.value, b"one");
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert!(s.current_revision().await.unwrap() >= kv.mod_revision);
    assert_eq!(s.get(&key).await.unwrap(), Some(kv.clone()));
    match s.create(&key, b"two".to_vec()).await {
        Err(Error::AlreadyExists(k)) => assert_eq!(k, key),
        other => panic!("second create: {other:?}"),
    }
    assert_eq!(s.get(&key).await.unwrap().unwrap().value, b"one");
    assert_eq!(s.get(&f.key("missing")).await.unwrap(), None);
    let status = s.status().await.unwrap();
    assert!(status.revision >= kv.mod_revision);
}

pub async fn cas_conflicts(f: &Fixture) {
    let s = &*f.store;
    let key = f.key("cas");
    let v1 = s.create(&key, b"1".to_vec()).await.unwrap();
    let v2 = s
        .update(&key, b"2".to_vec(), v1.mod_revision)
        .await
        .unwrap();
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(v2.create_revision, v1.create_revision);

    // A writer still holding v1 loses, and learns the current revision.
    match s.update(&key, b"stale".to_vec(), v1.mod_revision).await {
        Err(Error::Conflict {
            key: k,
            expected,
            current,
        }) => {
            assert_eq!(k, key);
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(current, v2.mod_revision);
        }
        other => panic!("stale update: {other:?}"),
    }
    match s.delete(&key, Some(v1.mod_revision)).await {
        Err(Error::Conflict { current, .. }) => assert_eq!(current, v2.mod_revision),
        other => panic!("stale delete: {other:?}"),
    }
    assert_eq!(s.get(&key).await.unwrap(), Some(v2.clone()));

    let (prev, rev) = s.delete(&key, Some(v2.mod_revision)).await.unwrap();
    assert_eq!(prev, v2);
    assert!(rev > v2.mod_revision);
    assert_eq!(s.get(&key).await.unwrap(), None);
    assert!(matches!(
        s.delete(&key, None).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.update(&key, b"x".to_vec(), v2.mod_revision).await,
        Err(Error::NotFound(_))
    ));

    // A re-created key starts a new life.
    let again = s.create(&key, b"3".to_vec()).await.unwrap();
    assert!(again.create_revision > rev);
    assert_eq!(again.create_revision, again.mod_revision);
    let (prev, _) = s.delete(&key, None).await.unwrap();
    assert_eq!(prev, again);
}

pub async fn watch_replays_missed_events_in_order(f: &Fixture) {
    let s = &*f.store;
    let start = s.current_revision().await.unwrap();
    let a = s.create(&f.key("w/a"), b"a1".to_vec()).await.unwrap();
    let a2 = s
        .update(&f.key("w/a"), b"a2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    // Outside the watched prefix, though it shares its first characters.
    s.create(&f.key("wx"), b"other".to_vec()).await.unwrap();
    let b = s.create(&f.key("w/b"), b"b1".to_vec()).await.unwrap();
    let (_, del) = s.delete(&f.key("w/a"), None).await.unwrap();

    let prefix = f.key("w/");
    let mut w = s.watch(&prefix, start).await.unwrap();
    let e1 = next_event(&mut w).await;
    assert_eq!(put(&e1), (&*f.key("w/a"), &b"a1"[..], None));
    assert_eq!(e1.revision(), a.mod_revision);
    let e2 = next_event(&mut w).await;
    assert_eq!(put(&e2), (&*f.key("w/a"), &b"a2"[..], Some(&b"a1"[..])));
    assert_eq!(e2.revision(), a2.mod_revision);
    let e3 = next_event(&mut w).await;
    assert_eq!(put(&e3), (&*f.key("w/b"), &b"b1"[..], None));
    assert_eq!(e3.revision(), b.mod_revision);
    match next_event(&mut w).await {
        WatchEvent::Delete { prev, revision } => {
            assert_eq!(prev, a2);
            assert_eq!(revision, del);
        }
        other => panic!("expected the delete, got {other:?}"),
    }
    // Then live events, with nothing duplicated at the boundary.
    assert_next_is_marker(s, &mut w, &prefix).await;

    // Watching from the middle replays only the suffix.
    let mut w = s.watch(&prefix, a2.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut w).await.revision(), b.mod_revision);
    assert_eq!(next_event(&mut w).await.revision(), del);
}

/// Live writes racing with the replay: every event arrives once, in order.
pub async fn watch_across_replay_boundary(f: &Fixture) {
    let s = f.store.clone();
    let prefix = f.key("race/");
    let start = s.current_revision().await.unwrap();
    let writer = {
        let (s, prefix) = (s.clone(), prefix.clone());
        tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..200 {
                revs.push(
                    s.create(&format!("{prefix}{i:04}"), vec![b'x'; 64])
                        .await
                        .unwrap()
                        .mod_revision,
                );
            }
            revs
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut w = s.watch(&prefix, start).await.unwrap();
    let revs = writer.await.unwrap();
    for (i, rev) in revs.iter().enumerate() {
        let ev = next_event(&mut w).await;
        assert_eq!(ev.revision(), *rev, "event {i}");
        assert_eq!(put(&ev).0, format!("{prefix}{i:04}"));
    }
    assert_next_is_marker(&*s, &mut w, &prefix).await;
}

pub async fn deletes_reach_watchers_with_previous_value(f: &Fixture) {
    let s = &*f.store;
    let prefix = f.key("d/");
    let key = f.key("d/k");
    let mut w = s
        .watch(&prefix, s.current_revision().await.unwrap())
        .await
        .unwrap();
    let v1 = s.create(&key, b"first".to_vec()).await.unwrap();
    let v2 = s
        .update(&key, b"second".to_vec(), v1.mod_revision)
        .await
        .unwrap();
    let (_, rev) = s.delete(&key, Some(v2.mod_revision)).await.unwrap();
    assert_eq!(put(&next_event(&mut w).await).1, b"first");
    assert_eq!(put(&next_event(&mut w).await).2, Some(&b"first"[..]));
    match next_event(&mut w).await {
        WatchEvent::Delete { prev, revision } => {
            assert_eq!(revision, rev);
            assert_eq!(prev.key, key);
            assert_eq!(prev.value, b"second");
            assert_eq!(prev.mod_revision, v2.mod_revision);
            assert_eq!(prev.create_revision, v1.create_revision);
        }
        other => panic!("expected a delete, got {other:?}"),
    }
}

/// Compacts the whole store: fixtures for this case must not share history
/// with other tests.
pub async fn watch_from_compacted_revision_errors(f: &Fixture) {
    let s = &*f.store;
    let key = f.key("c");
    let v1 = s.create(&key, b"1".to_vec()).await.unwrap();
    let v2 = s
        .update(&key, b"2".to_vec(), v1.mod_revision)
        .await
        .unwrap();
    let v3 = s
        .update(&key, b"3".to_vec(), v2.mod_revision)
        .await
        .unwrap();
    let v4 = s
        .update(&key, b"4".to_vec(), v3.mod_revision)
        .await
        .unwrap();
    s.compact(v3.mod_revision).await.unwrap();
    // Again: a no-op, not an error.
    s.compact(v2.mod_revision).await.unwrap();
    assert!(s.status().await.unwrap().compact_revision >= v3.mod_revision);

    // Replaying from v1 needs the event at v2, which is gone.
    let err = match s.watch(&f.key(""), v1.mod_revision).await {
        Err(e) => e,
        Ok(mut stream) => match tokio::time::timeout(STREAM_WAIT, stream.next()).await {
            Ok(Some(Err(e))) => e,
            other => panic!("watch from a compacted revision gave {other:?}"),
        },
    };
    match err {
        Error::Compacted {
            requested,
            compacted,
        } => {
            assert_eq!(requested, v2.mod_revision);
            assert_eq!(compacted, v3.mod_revision);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let listed = s
        .list(
            &f.key(""),
            ListOptions {
                revision: Some(v2.mod_revision),
                ..Default::default()
            },
        )
        .await;
    match listed {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, v2.mod_revision);
            assert_eq!(compacted, v3.mod_revision);
        }
        other => panic!("list at a compacted revision gave {other:?}"),
    }

    // The latest value survives; the state at the compact revision and the
    // history after it are still there.
    assert_eq!(s.get(&key).await.unwrap(), Some(v4.clone()));
    let mut w = s.watch(&f.key(""), v3.mod_revision).await.unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(put(&ev), (&*key, &b"4"[..], Some(&b"3"[..])));
    let page = s
        .list(
            &f.key(""),
            ListOptions {
                revision: Some(v3.mod_revision),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.kvs, vec![v3]);

    let future = s.compact(v4.mod_revision + 1_000).await;
    assert!(
        matches!(future, Err(Error::FutureRevision { .. })),
        "{future:?}"
    );
}

pub async fn list_pagination_is_consistent(f: &Fixture) {
    let s = f.store.clone();
    let prefix = f.key("l/");
    let mut originals = Vec::new();
    for i in 0..25 {
        originals.push(
            s.create(&format!("{prefix}{i:02}"), format!("v{i}").into_bytes())
                .await
                .unwrap(),
        );
    }
    let first = s
        .list(
            &prefix,
            ListOptions {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.kvs, originals[..10]);
    assert!(first.more);

    // Writes continue between pages: creates, updates and deletes.
    for i in 0..25 {
        let key = format!("{prefix}{i:02}");
        match i % 3 {
            0 => {
                s.delete(&key, None).await.unwrap();
            }
            1 => {
                let cur = s.get(&key).await.unwrap().unwrap();
                s.update(&key, b"changed".to_vec(), cur.mod_revision)
                    .await
                    .unwrap();
            }
            _ => {
                s.create(&format!("{key}-new"), b"new".to_vec())
                    .await
                    .unwrap();
            }
        }
    }

    let mut all = first.kvs.clone();
    let mut last_key = all.last().unwrap().key.clone();
    loop {
        let page = s
            .list(
                &prefix,
                ListOptions {
                    limit: 10,
                    start_after: Some(last_key.clone()),
                    revision: Some(first.revision),
                },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, first.revision);
        all.extend(page.kvs.iter().cloned());
        if !page.more {
            break;
        }
        last_key = page.kvs.last().unwrap().key.clone();
    }
    assert_eq!(all, originals, "pages read at one revision");

    let now = s.list(&prefix, ListOptions::default()).await.unwrap();
    assert!(!now.more);
    assert!(now.revision > first.revision);
    // 25 - 9 deleted + 8 new.
    assert_eq!(now.kvs.len(), 24);
    assert!(now.kvs.windows(2).all(|w| w[0].key < w[1].key));

    let future = now.revision + 1_000_000;
    let err = s
        .list(
            &prefix,
            ListOptions {
                revision: Some(future),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(err, Err(Error::FutureRevision { .. })), "{err:?}");
}

pub async fn concurrent_cas_never_loses_an_update(f: &Fixture) {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let key = f.key("counter");
    f.store.create(&key, b"0".to_vec()).await.unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (s, key) = (f.store.clone(), key.clone());
            tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..EACH {
                    loop {
                        let cur = s.get(&key).await.unwrap().unwrap();
                        let n: u64 = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                        match s
                            .update(&key, (n + 1).to_string().into_bytes(), cur.mod_revision)
                            .await
                        {
                            Ok(_) => break,
                            Err(Error::Conflict { .. }) => conflicts += 1,
                            Err(e) => panic!("update: {e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let end = f.store.get(&key).await.unwrap().unwrap();
    assert_eq!(end.value, (TASKS * EACH).to_string().into_bytes());
}

macro_rules! conformance {
    ($backend:ident, $fixture:path, $isolated_fixture:path) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident, $make:path) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let f = $make(stringify!($name)).await;
                        super::$name(&f).await;
                    }
                };
            }

            case!(create_get_and_exists, $fixture);
            case!(cas_conflicts, $fixture);
            case!(watch_replays_missed_events_in_order, $fixture);
            case!(watch_across_replay_boundary, $fixture);
            case!(deletes_reach_watchers_with_previous_value, $fixture);
            case!(watch_from_compacted_revision_errors, $isolated_fixture);
            case!(list_pagination_is_consistent, $fixture);
            case!(concurrent_cas_never_loses_an_update, $fixture);
        }
    };
}

conformance!(sqlite, common::sqlite, common::sqlite);
conformance!(etcd, common::etcd, common::etcd_private);
