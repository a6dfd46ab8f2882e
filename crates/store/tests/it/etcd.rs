//! The etcd client with several endpoints, some of them down: requests go to
//! a member that answers.

use crate::common;

use std::time::Duration;

use futures::StreamExt;
use orca_store::etcd::EtcdStore;
use orca_store::{Error, ListOptions, Store, WatchEvent};

/// A loopback URL where nothing listens.
fn dead_endpoint() -> String {
    format!("http://127.0.0.1:{}", common::free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_endpoint_fails_over_to_a_live_one() {
    // One comma-separated entry, as `--datastore-endpoint` gives it.
    let endpoints = format!("{},{}", dead_endpoint(), common::etcd_endpoint());
    let store = EtcdStore::connect(&[endpoints])
        .await
        .expect("connecting with a dead first endpoint");
    let prefix = format!("/orca-test/{}/failover/", common::unique());

    let mut watch = store
        .watch(&prefix, store.current_revision().await.unwrap())
        .await
        .unwrap();
    // Enough requests that any of them reaching the dead member would show.
    let mut created = Vec::new();
    for i in 0..20 {
        let key = format!("{prefix}{i:02}");
        let kv = store.create(&key, b"v".to_vec()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap(), Some(kv.clone()));
        created.push(kv);
    }
    let page = store.list(&prefix, ListOptions::default()).await.unwrap();
    assert_eq!(page.kvs, created);
    for kv in &created {
        let event = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .expect("a watch event within 20s");
        match event {
            Some(Ok(WatchEvent::Put {
                kv: got,
                prev: None,
            })) => assert_eq!(&got, kv),
            other => panic!("expected the create of {}, got {other:?}", kv.key),
        }
    }
    store.status().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_live_endpoint_is_unavailable() {
    let endpoints = [dead_endpoint(), dead_endpoint()];
    match EtcdStore::connect(&endpoints).await {
        Err(Error::Unavailable(msg)) => {
            assert!(msg.contains(&endpoints[1]), "names the endpoints: {msg}")
        }
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("connected to endpoints where nothing listens"),
    }
}

/// Two single-member clusters stand in for two members of one: the client
/// cannot tell, and a key written only to the second shows where a request
/// went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_move_on_when_the_member_in_use_goes_away() {
    let first = common::EtcdServer::start();
    let second = common::EtcdServer::start();
    // Both answer before the client under test connects.
    first.connect().await;
    let second_alone = second.connect().await;
    let store = EtcdStore::connect(&[first.endpoint.clone(), second.endpoint.clone()])
        .await
        .unwrap();
    store.create("/a", b"1".to_vec()).await.unwrap();
    assert_eq!(
        second_alone.get("/a").await.unwrap(),
        None,
        "went to the first"
    );

    drop(first);
    // Gone for a moment, not mid-request: a request in flight when its member
    // dies fails (it may have been applied), the next ones must not.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kv = store.create("/a", b"2".to_vec()).await.unwrap();
    assert_eq!(second_alone.get("/a").await.unwrap(), Some(kv));
    assert_eq!(store.get("/a").await.unwrap().unwrap().value, b"2");
}
