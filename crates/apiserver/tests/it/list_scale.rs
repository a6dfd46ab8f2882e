//! Lists at scale, served from the watch cache: chunked lists stay one
//! snapshot while writes go on, selectors return exactly the matching pods,
//! and continue tokens or exact revisions older than a compaction get 410.

use crate::common;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const NS_PODS: &str = "/api/v1/namespaces/default/pods";

fn name(i: usize) -> String {
    format!("p-{i:04}")
}

/// Pod `i` has labels group=g(i%7) and tier=db for every fifth pod, web otherwise.
fn pod(name: &str, i: usize) -> Pod {
    let tier = if i.is_multiple_of(5) { "db" } else { "web" };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"group": format!("g{}", i % 7), "tier": tier}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod")
}

async fn create_pods(pods: &Api<Pod>, n: usize) {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let pods = pods.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(8) {
                    pods.create(&PostParams::default(), &pod(&name(i), i))
                        .await
                        .unwrap_or_else(|e| panic!("create {}: {e}", name(i)));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("create task");
    }
}

async fn get(client: &kube::Client, path: &str) -> Result<Value, kube::Error> {
    let req = http::Request::get(path).body(Vec::new()).expect("request");
    let text = client.request_text(req).await?;
    Ok(serde_json::from_str(&text).expect("list JSON"))
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().expect("name").to_string())
        .collect()
}

fn rv(list: &Value) -> String {
    list["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_string()
}

fn continue_of(list: &Value) -> Option<String> {
    list["metadata"]["continue"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// Every page of `path` (which must already hold a `?`), following continue
/// tokens. `first` (resourceVersion, resourceVersionMatch) goes on the first
/// request only, as client-go's pager does.
async fn all_pages(client: &kube::Client, path: &str, first: &str, limit: usize) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = format!("{path}&limit={limit}{first}");
    loop {
        let page = get(client, &next).await.expect("list page");
        let cont = continue_of(&page);
        pages.push(page);
        match cont {
            Some(c) => next = format!("{path}&limit={limit}&continue={c}"),
            None => return pages,
        }
    }
}

fn api_error(r: Result<Value, kube::Error>) -> kube::core::ErrorResponse {
    match r {
        Err(kube::Error::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_list_during_writes_is_one_consistent_snapshot() {
    let h = common::Harness::start().await;
    let client = h.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_pods(&pods, 1200).await;

    // Page by page, writing between pages: a pod is created, one in a later
    // page is deleted and one in a later page relabelled.
    let mut pages = Vec::new();
    let mut cont = String::new();
    loop {
        let page = get(&client, &format!("{NS_PODS}?limit=500&continue={cont}"))
            .await
            .expect("list page");
        let next = continue_of(&page);
        pages.push(page);
        let Some(c) = next else { break };
        cont = c;
        let k = pages.len();
        pods.create(&PostParams::default(), &pod(&format!("late-{k}"), k))
            .await
            .expect("create late pod");
        pods.delete(&name(1100 - k), &DeleteParams::default())
            .await
            .expect("delete");
        let relabel = json!({"metadata": {"labels": {"changed": "yes"}}});
        pods.patch(&name(999), &PatchParams::default(), &Patch::Merge(&relabel))
            .await
            .expect("relabel");
    }
    assert_eq!(pages.len(), 3, "1200 pods in pages of 500");
    let first_rv = rv(&pages[0]);
    for p in &pages {
        assert_eq!(
            rv(p),
            first_rv,
            "every page is at the first page's revision"
        );
    }
    assert_eq!(pages[0]["metadata"]["remainingItemCount"], json!(700));
    let listed: Vec<String> = pages.iter().flat_map(names).collect();
    let want: Vec<String> = (0..1200).map(name).collect();
    assert_eq!(
        listed, want,
        "every pod exactly once, in order, none added later"
    );
    let p999 = pages[1]["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["metadata"]["name"] == "p-0999")
        .expect("p-0999 on page 2");
    assert!(
        p999["metadata"]["labels"].get("changed").is_none(),
        "p-0999 as it was at the list's revision: {p999}"
    );
    let first_rv_num: u64 = first_rv.parse().expect("numeric resourceVersion");
    for p in pages
        .iter()
        .flat_map(|p| p["items"].as_array().expect("items").clone())
    {
        let item_rv: u64 = p["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("item resourceVersion");
        assert!(item_rv <= first_rv_num, "item newer than the list: {p}");
    }

    // A new list sees the writes.
    let now = all_pages(&client, &format!("{NS_PODS}?"), "", 500).await;
    let now_names: BTreeSet<String> = now.iter().flat_map(names).collect();
    assert_eq!(now_names.len(), 1200 - 2 + 2);
    assert!(now_names.contains("late-1") && now_names.contains("late-2"));
    assert!(!now_names.contains("p-1099") && !now_names.contains("p-1098"));

    // An exact read at the old revision (all namespaces, so not a kept
    // snapshot): the old set again, at that revision.
    let old = all_pages(
        &client,
        "/api/v1/pods?",
        &format!("&resourceVersion={first_rv}&resourceVersionMatch=Exact"),
        500,
    )
    .await;
    for p in &old {
        assert_eq!(rv(p), first_rv);
    }
    assert_eq!(old.iter().flat_map(names).collect::<Vec<_>>(), want);

    // kubectl's own chunking (500 per page, server-side Table).
    let out = h
        .kubectl(&[
            "get",
            "pods",
            "--chunk-size=500",
            "--no-headers",
            "-o",
            "name",
        ])
        .await;
    let kubectl_names: BTreeSet<String> = out
        .lines()
        .map(|l| l.trim_start_matches("pod/").to_string())
        .collect();
    assert_eq!(kubectl_names, now_names);
    let table = h
        .kubectl(&["get", "pods", "--chunk-size=500", "--no-headers"])
        .await;
    assert_eq!(table.lines().count(), 1200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_list_exactly_the_matching_pods() {
    let h = common::Harness::start().await;
    let client = h.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let n = 300;
    create_pods(&pods, n).await;
    let matching =
        |f: &dyn Fn(usize) -> bool| -> Vec<String> { (0..n).filter(|i| f(*i)).map(name).collect() };

    let g3 = get(&client, &format!("{NS_PODS}?labelSelector=group%3Dg3"))
        .await
        .expect("list");
    assert_eq!(names(&g3), matching(&|i| i % 7 == 3));
    assert!(g3["metadata"].get("remainingItemCount").is_none());

    let set = get(
        &client,
        &format!("{NS_PODS}?labelSelector=group%20in%20(g1,g2),tier!%3Ddb,!missing"),
    )
    .await
    .expect("list");
    assert_eq!(
        names(&set),
        matching(&|i| (i % 7 == 1 || i % 7 == 2) && i % 5 != 0)
    );

    // The same selector in pages of 10: all matches once, then no token.
    let paged = all_pages(
        &client,
        &format!("{NS_PODS}?labelSelector=tier%3Ddb"),
        "",
        10,
    )
    .await;
    assert_eq!(paged.len(), 6, "60 db pods in pages of 10");
    assert_eq!(
        paged.iter().flat_map(names).collect::<Vec<_>>(),
        matching(&|i| i % 5 == 0)
    );

    let one = get(
        &client,
        &format!("{NS_PODS}?fieldSelector=metadata.name%3Dp-0042"),
    )
    .await
    .expect("list");
    assert_eq!(names(&one), vec!["p-0042".to_string()]);
    let none = get(
        &client,
        "/api/v1/pods?fieldSelector=metadata.namespace%3Dkube-system",
    )
    .await
    .expect("list");
    assert_eq!(names(&none), Vec::<String>::new());

    // A relabelled pod moves between selections at once.
    let relabel = json!({"metadata": {"labels": {"group": "g3"}}});
    pods.patch(&name(1), &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .expect("relabel");
    let g3 = get(&client, &format!("{NS_PODS}?labelSelector=group%3Dg3"))
        .await
        .expect("list");
    let mut want = matching(&|i| i % 7 == 3);
    want.insert(0, name(1));
    assert_eq!(names(&g3), want);

    // kubectl -l agrees.
    let out = h
        .kubectl(&["get", "pods", "-l", "group=g3,tier=db", "-o", "name"])
        .await;
    let got: Vec<&str> = out.lines().map(|l| l.trim_start_matches("pod/")).collect();
    assert_eq!(got, matching(&|i| i % 7 == 3 && i % 5 == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_and_exact_reads_from_before_a_compaction_get_410() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = common::open_store(dir.path()).await;
    // Only this test compacts.
    let server =
        common::start_compacting(dir.path(), store.clone(), std::time::Duration::ZERO).await;
    let h = common::Harness { dir, server };
    let client = h.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_pods(&pods, 5).await;

    let first = get(&client, &format!("{NS_PODS}?limit=2"))
        .await
        .expect("page 1");
    let token = continue_of(&first).expect("a continue token");
    let old_rv = rv(&first);
    // Still valid after a write: page 2 comes from the first page's revision.
    pods.create(&PostParams::default(), &pod("after", 5))
        .await
        .expect("create");
    let second = get(&client, &format!("{NS_PODS}?limit=2&continue={token}"))
        .await
        .expect("page 2 before compaction");
    assert_eq!(names(&second), vec![name(2), name(3)]);
    assert_eq!(rv(&second), old_rv);

    let now = store.current_revision().await.expect("revision");
    store.compact(now).await.expect("compact");

    let e = api_error(get(&client, &format!("{NS_PODS}?limit=2&continue={token}")).await);
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}");
    assert_eq!(
        e.message,
        "The provided continue parameter is too old to display a consistent list result. \
         You can start a new list without the continue parameter."
    );
    let e = api_error(
        get(
            &client,
            &format!("{NS_PODS}?resourceVersion={old_rv}&resourceVersionMatch=Exact"),
        )
        .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}");
    assert_eq!(
        e.message,
        "The resourceVersion for the provided list is too old."
    );

    // A new list after the compaction pages fine.
    let fresh = all_pages(&client, &format!("{NS_PODS}?"), "", 2).await;
    assert_eq!(fresh.iter().flat_map(names).count(), 6);
    // kubectl recovers from nothing here: its chunked list just works.
    assert_eq!(
        h.kubectl(&["get", "pods", "--chunk-size=2", "--no-headers"])
            .await
            .lines()
            .count(),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_options_are_checked_as_kubernetes_does() {
    let h = common::Harness::start().await;
    let client = h.client().await;

    let e = api_error(get(&client, &format!("{NS_PODS}?resourceVersionMatch=Exact")).await);
    assert_eq!(e.code, 422, "{e:?}");
    assert_eq!(
        e.message,
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: \
         resourceVersionMatch is forbidden unless resourceVersion is provided"
    );
    let e = api_error(
        get(
            &client,
            &format!("{NS_PODS}?resourceVersion=0&resourceVersionMatch=Exact"),
        )
        .await,
    );
    assert_eq!(e.code, 422, "{e:?}");
    assert!(
        e.message.contains("forbidden for resourceVersion \"0\""),
        "{e:?}"
    );
    let e = api_error(
        get(
            &client,
            &format!("{NS_PODS}?resourceVersion=1&resourceVersionMatch=Newest"),
        )
        .await,
    );
    assert_eq!(e.code, 422, "{e:?}");
    assert!(e.message.contains("Unsupported value: \"Newest\""), "{e:?}");

    let first = get(&client, "/api/v1/namespaces?limit=1")
        .await
        .expect("list");
    let token = continue_of(&first).expect("four namespaces, so a token");
    let e = api_error(
        get(
            &client,
            &format!("/api/v1/namespaces?limit=1&continue={token}&resourceVersion=5"),
        )
        .await,
    );
    assert_eq!(e.code, 400, "{e:?}");
    assert_eq!(
        e.message,
        "specifying resource version is not allowed when using continue"
    );

    // resourceVersion=0 and NotOlderThan a revision we have: from the cache.
    let current: u64 = rv(&first).parse().expect("numeric");
    let any = get(&client, "/api/v1/namespaces?resourceVersion=0")
        .await
        .expect("list");
    assert_eq!(names(&any).len(), 4);
    let newer = get(
        &client,
        &format!("/api/v1/namespaces?resourceVersion={current}&resourceVersionMatch=NotOlderThan"),
    )
    .await
    .expect("list");
    assert!(rv(&newer).parse::<u64>().expect("numeric") >= current);

    // A revision far ahead: kube-apiserver's 504 "Too large resource version".
    let ahead = current + 1_000_000;
    let e = api_error(
        get(
            &client,
            &format!(
                "/api/v1/namespaces?resourceVersion={ahead}&resourceVersionMatch=NotOlderThan"
            ),
        )
        .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (504, "Timeout"), "{e:?}");
    assert!(
        e.message
            .starts_with(&format!("Too large resource version: {ahead}, current: ")),
        "{e:?}"
    );
    let e = api_error(
        get(
            &client,
            &format!("/api/v1/namespaces?resourceVersion={ahead}&resourceVersionMatch=Exact"),
        )
        .await,
    );
    assert_eq!(e.code, 504, "{e:?}");
}
