//! kube-rs against the in-process API server: watches see every change in
//! order, stale updates conflict, streaming lists work.

use crate::common;

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"batch": "k"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_every_change_of_1000_pods_in_order() {
    let h = common::Harness::start().await;
    let client = h.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    const N: usize = 1000;

    let stream = watcher(pods.clone(), watcher::Config::default()).boxed();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let collector = tokio::spawn(async move {
        let mut stream = stream;
        let mut ready_tx = Some(ready_tx);
        // Per pod: the states seen (labels' "step"), and the global order.
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        let mut last_rv = 0u64;
        let mut deletes = 0;
        while deletes < N {
            let ev = stream
                .try_next()
                .await
                .expect("watch stream")
                .expect("stream open");
            let (p, what) = match ev {
                watcher::Event::Apply(p) => (p, "apply"),
                watcher::Event::Delete(p) => (p, "delete"),
                watcher::Event::InitDone => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                _ => continue,
            };
            let rv: u64 = p
                .metadata
                .resource_version
                .as_deref()
                .unwrap_or("0")
                .parse()
                .expect("numeric rv");
            assert!(rv > last_rv, "resourceVersion went from {last_rv} to {rv}");
            last_rv = rv;
            let step = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("step"))
                .cloned()
                .unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            if what == "delete" {
                deletes += 1;
            }
            seen.entry(name).or_default().push(format!("{what}{step}"));
        }
        seen
    });
    // The writes start once the watcher has listed (and so watches from
    // the list's resourceVersion).
    ready_rx.await.expect("watcher listed");

    futures::stream::iter(0..N)
        .for_each_concurrent(16, |i| {
            let pods = pods.clone();
            async move {
                let name = format!("p{i:04}");
                pods.create(&PostParams::default(), &pod(&name))
                    .await
                    .expect("create");
                let patch = serde_json::json!({"metadata": {"labels": {"step": "1"}}});
                pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .expect("patch");
                pods.delete(&name, &DeleteParams::default())
                    .await
                    .expect("delete");
            }
        })
        .await;

    let seen = tokio::time::timeout(std::time::Duration::from_secs(120), collector)
        .await
        .expect("watcher saw all deletes")
        .expect("collector");
    assert_eq!(seen.len(), N);
    for (name, states) in &seen {
        assert_eq!(states, &["apply", "apply1", "delete1"], "pod {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_update_conflicts() {
    let h = common::Harness::start().await;
    let pods: Api<Pod> = Api::namespaced(h.client().await, "default");
    let created = pods
        .create(&PostParams::default(), &pod("c1"))
        .await
        .expect("create");
    let patch = serde_json::json!({"metadata": {"labels": {"x": "1"}}});
    pods.patch("c1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let err = pods
        .replace("c1", &PostParams::default(), &created)
        .await
        .expect_err("stale resourceVersion must conflict");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("expected a 409 Status, got {other}"),
    }
    // Creating it again is AlreadyExists.
    let err = pods
        .create(&PostParams::default(), &pod("c1"))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err}"
    );
}

/// `pods/status` is validated as Kubernetes' pod status strategy does:
/// status changes are checked, the spec sent along is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_are_validated_as_status() {
    let h = common::Harness::start().await;
    let pods: Api<Pod> = Api::namespaced(h.client().await, "default");
    let mut p = pod("s1");
    p.spec.as_mut().expect("spec").restart_policy = Some("Never".into());
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create");
    let status = |body: serde_json::Value| {
        let pods = pods.clone();
        async move {
            pods.patch_status("s1", &PatchParams::default(), &Patch::Merge(&body))
                .await
        }
    };
    let code = |r: Result<Pod, kube::Error>| match r {
        Err(kube::Error::Api(s)) => (s.code, s.message),
        Ok(_) => (200, String::new()),
        Err(e) => panic!("{e}"),
    };
    let terminated = serde_json::json!({"status": {"containerStatuses": [{
        "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
    status(terminated).await.expect("terminated status");
    // A container of a pod that never restarts cannot come back.
    let revived = serde_json::json!({"status": {"containerStatuses": [{
        "name": "c", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0,
        "state": {"running": {}}}]}});
    let (c, msg) = code(status(revived).await);
    assert_eq!(c, 422, "{msg}");
    assert!(
        msg.contains("may not be transitioned to non-terminated state"),
        "{msg}"
    );
    let bad_ip =
        serde_json::json!({"status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.2"}]}});
    let (c, msg) = code(status(bad_ip).await);
    assert_eq!(c, 422, "{msg}");
    assert!(msg.contains("must be equal to `podIP`"), "{msg}");
    // A spec change sent to /status is ignored, not an error.
    let mut with_spec = pods.get("s1").await.expect("get");
    with_spec.spec.as_mut().expect("spec").containers[0].image = Some("other".into());
    with_spec.status.as_mut().expect("status").pod_ip = Some("10.0.0.9".into());
    let stored = pods
        .replace_status(
            "s1",
            &PostParams::default(),
            serde_json::to_vec(&with_spec).expect("json"),
        )
        .await
        .expect("status write with a changed spec");
    assert_eq!(
        stored.spec.expect("spec").containers[0].image.as_deref(),
        Some("busybox")
    );
    let st = stored.status.expect("status");
    assert_eq!(st.pod_ip.as_deref(), Some("10.0.0.9"));
    let qos = st.qos_class.clone();
    assert_eq!(qos.as_deref(), Some("BestEffort"));
    // As the conformance test "should patch a pod status" does: metadata
    // changes through /status; owner references and qosClass stay.
    let patch = serde_json::json!({
        "metadata": {"annotations": {"patchedstatus": "true"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u"}]},
        "status": {"message": "Patched by e2e test", "reason": "E2E", "qosClass": null},
    });
    let patched = status(patch).await.expect("patch /status");
    let ann = patched.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(ann.get("patchedstatus").map(String::as_str), Some("true"));
    assert!(patched.metadata.owner_references.is_none());
    let st = patched.status.expect("status");
    assert_eq!(st.message.as_deref(), Some("Patched by e2e test"));
    assert_eq!(st.reason.as_deref(), Some("E2E"));
    assert_eq!(st.qos_class, qos);
    let labels = patched.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("batch").map(String::as_str), Some("k"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_and_paginated_list() {
    let h = common::Harness::start().await;
    let pods: Api<Pod> = Api::namespaced(h.client().await, "default");
    for i in 0..7 {
        pods.create(&PostParams::default(), &pod(&format!("s{i}")))
            .await
            .expect("create");
    }
    // sendInitialEvents: every pod, then the initial-events-end bookmark.
    let mut stream = watcher(pods.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut names = Vec::new();
    loop {
        match stream.try_next().await.expect("stream").expect("open") {
            watcher::Event::InitApply(p) => names.push(p.metadata.name.unwrap_or_default()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    names.sort();
    assert_eq!(names, (0..7).map(|i| format!("s{i}")).collect::<Vec<_>>());

    // limit/continue walks all pods once, in key order.
    let mut all = Vec::new();
    let mut lp = kube::api::ListParams::default().limit(3);
    loop {
        let page = pods.list(&lp).await.expect("list page");
        all.extend(
            page.items
                .into_iter()
                .map(|p| p.metadata.name.unwrap_or_default()),
        );
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(all, (0..7).map(|i| format!("s{i}")).collect::<Vec<_>>());

    // Label and field selectors.
    let lp = kube::api::ListParams::default().fields("metadata.name=s3");
    assert_eq!(pods.list(&lp).await.expect("list").items.len(), 1);
    let lp = kube::api::ListParams::default().labels("batch=k,step");
    assert_eq!(pods.list(&lp).await.expect("list").items.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_gets_410() {
    use kube::api::{WatchEvent, WatchParams};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = common::open_store(dir.path()).await;
    let config = orca_apiserver::Config {
        data_dir: dir.path().to_path_buf(),
        bind_address: "127.0.0.1".into(),
        https_port: 0,
        tls_sans: vec![],
        ..Default::default()
    };
    let connect = |server: &orca_apiserver::ApiServer| {
        let path = server.kubeconfig_path().to_path_buf();
        async move {
            let kc = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("config");
            Api::<Pod>::namespaced(kube::Client::try_from(cfg).expect("client"), "default")
        }
    };
    let server = orca_apiserver::start(config.clone(), store.clone())
        .await
        .expect("start");
    common::default_service_account(
        &server.local_client(orca_apiserver::auth::UserInfo::admin()),
        "default",
    )
    .await;
    let pods = connect(&server).await;
    let first = pods
        .create(&PostParams::default(), &pod("old"))
        .await
        .expect("create");
    let first_rv = first.metadata.resource_version.clone().expect("rv");
    for i in 0..3 {
        let patch = serde_json::json!({"metadata": {"labels": {"n": i.to_string()}}});
        pods.patch("old", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch");
    }
    server.shutdown().await;
    let now = store.current_revision().await.expect("revision");
    store.compact(now - 1).await.expect("compact");

    // A restarted server's cache starts after that history; the store no
    // longer has it either.
    let server = orca_apiserver::start(config, store.clone())
        .await
        .expect("restart");
    let pods = connect(&server).await;
    let mut stream = pods
        .watch(&WatchParams::default(), &first_rv)
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410, "{e:?}");
            assert!(
                e.message.contains("too old resource version"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_compacts_history_older_than_one_interval() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = common::open_store(dir.path()).await;
    let server = common::start_compacting(
        dir.path(),
        store.clone(),
        std::time::Duration::from_millis(300),
    )
    .await;
    let h = common::Harness { dir, server };
    let pods = Api::<Pod>::namespaced(h.client().await, "default");
    let first = pods
        .create(&PostParams::default(), &pod("churn"))
        .await
        .expect("create");
    let first_rv: i64 = first.metadata.resource_version.unwrap().parse().unwrap();
    let mut last = first_rv;
    for i in 0..3 {
        let patch = serde_json::json!({"metadata": {"labels": {"n": i.to_string()}}});
        let p = pods
            .patch("churn", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch");
        last = p.metadata.resource_version.unwrap().parse().unwrap();
    }

    // Two intervals later everything up to the last write is history.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let compacted = store.status().await.expect("status").compact_revision;
        if compacted >= last {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never compacted past {last} (at {compacted})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The old revisions are gone from the store (watchers within the watch
    // cache's window are still served from memory, as in Kubernetes).
    let old = store
        .list(
            "/registry/pods/",
            orca_store::ListOptions {
                revision: Some(first_rv),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(old, Err(orca_store::Error::Compacted { .. })),
        "{old:?}"
    );
    // The current state is intact and still served, and still writable.
    let got = pods.get("churn").await.expect("get");
    assert_eq!(got.metadata.labels.unwrap()["n"], "2");
    pods.patch(
        "churn",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"n": "3"}}})),
    )
    .await
    .expect("patch after compaction");
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_client_speaks_the_same_api() {
    let h = common::Harness::start().await;
    let local: Api<Pod> = Api::namespaced(
        h.server
            .local_client(orca_apiserver::auth::UserInfo::admin()),
        "default",
    );
    let remote: Api<Pod> = Api::namespaced(h.client().await, "default");

    // A watch through the local client sees writes made over HTTPS.
    let mut events = local
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .expect("local watch")
        .boxed();
    let created = remote
        .create(&PostParams::default(), &pod("via-https"))
        .await
        .expect("create over HTTPS");
    match events.try_next().await.expect("event") {
        Some(kube::api::WatchEvent::Added(p)) => {
            assert_eq!(p.metadata.uid, created.metadata.uid)
        }
        other => panic!("expected ADDED, got {other:?}"),
    }

    // Writes, stale-write conflicts and errors come back as over HTTPS.
    let mut stale = local.get("via-https").await.expect("local get");
    let patch = serde_json::json!({"metadata": {"labels": {"by": "local"}}});
    local
        .patch("via-https", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("local patch");
    stale.metadata.labels = None;
    match local
        .replace("via-https", &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409, "{e:?}"),
        other => panic!("expected 409 Conflict, got {other:?}"),
    }
    match local.get("missing").await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 404);
            assert_eq!(e.message, "pods \"missing\" not found");
        }
        other => panic!("expected 404, got {other:?}"),
    }
    let seen = remote.get("via-https").await.expect("get over HTTPS");
    assert_eq!(seen.metadata.labels.unwrap()["by"], "local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_kinds_and_deletecollection() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
    let h = common::Harness::start().await;
    let client = h.client().await;

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "node-a"}, "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40},
    }))
    .expect("lease");
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create lease");
    let mut renewed = created.clone();
    renewed.spec.as_mut().expect("spec").lease_duration_seconds = Some(41);
    let renewed = leases
        .replace("node-a", &PostParams::default(), &renewed)
        .await
        .expect("renew lease");
    assert!(renewed.metadata.resource_version > created.metadata.resource_version);

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "b"}})).expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s: Secret = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"k": "v"}})).expect("secret");
    let s = secrets
        .create(&PostParams::default(), &s)
        .await
        .expect("secret");
    assert_eq!(s.type_.as_deref(), Some("Opaque"));

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let ev: Event = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u1"},
        "reason": "Scheduled", "message": "assigned", "type": "Normal",
        "source": {"component": "default-scheduler"},
    }))
    .expect("event");
    events
        .create(&PostParams::default(), &ev)
        .await
        .expect("event");
    let lp =
        kube::api::ListParams::default().fields("involvedObject.uid=u1,involvedObject.name=web");
    assert_eq!(events.list(&lp).await.expect("events").items.len(), 1);

    let pods: Api<Pod> = Api::namespaced(client, "default");
    for i in 0..3 {
        pods.create(&PostParams::default(), &pod(&format!("d{i}")))
            .await
            .expect("create");
    }
    pods.delete_collection(
        &DeleteParams::default(),
        &kube::api::ListParams::default().labels("batch=k"),
    )
    .await
    .expect("deletecollection");
    assert!(pods
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .is_empty());
}
