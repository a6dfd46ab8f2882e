//! The real kubectl (/usr/bin/kubectl, v1.32) against the in-process API
//! server with no node agent: pods stay Pending and delete at once.

use crate::common;

use common::Harness;

/// The seed's pod: nginx on port 80 with labels, env and a command.
const SEED_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: myapp-pod
  labels:
    app: myapp
    type: front-end
spec:
  containers:
  - name: nginx-container
    image: nginx
    ports:
    - containerPort: 80
    env:
    - name: DEMO_GREETING
      value: "Hello from the environment"
    command: ["nginx", "-g", "daemon off;"]
"#;

const REF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/kubernetes-v1.32"
);

/// A reference capture without its `$ command` line.
fn reference(name: &str) -> String {
    std::fs::read_to_string(format!("{REF}/{name}"))
        .unwrap_or_else(|e| panic!("reading {REF}/{name}: {e}"))
        .lines()
        .filter(|l| !l.starts_with("$ "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn header_words(table: &str) -> Vec<String> {
    let first = table.lines().next().unwrap_or_default();
    // Two-word headers ("NOMINATED NODE") are separated by single spaces,
    // columns by at least two.
    first
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{table}"))
        .split_whitespace()
        .collect()
}

async fn write_file(h: &Harness, name: &str, contents: &str) -> String {
    let p = h.dir.path().join(name);
    std::fs::write(&p, contents).expect("write manifest");
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_describe_delete_the_seed_pod() {
    let h = Harness::start().await;
    let file = write_file(&h, "pod-definition.yaml", SEED_POD).await;

    let out = h.kubectl(&["create", "-f", &file]).await;
    assert_eq!(out.trim(), "pod/myapp-pod created");

    let get = h.kubectl(&["get", "pods"]).await;
    assert_eq!(
        header_words(&get),
        header_words(&reference("v8-get-pods.stdout.txt")),
        "get pods columns differ from Kubernetes':\n{get}"
    );
    let r = row(&get, "myapp-pod");
    assert_eq!(&r[1..4], &["0/1", "Pending", "0"], "{get}");

    let wide = h.kubectl(&["get", "pods", "-o", "wide"]).await;
    assert_eq!(
        header_words(&wide),
        header_words(&reference("a-running.wide.txt")),
        "{wide}"
    );
    let r = row(&wide, "myapp-pod");
    assert_eq!(&r[5..], &["<none>", "<none>", "<none>", "<none>"], "{wide}");

    // The stored pod carries what was sent plus Kubernetes' defaults.
    let yaml = h.kubectl(&["get", "pod", "myapp-pod", "-o", "yaml"]).await;
    for want in [
        "containerPort: 80",
        "DEMO_GREETING",
        "daemon off;",
        "app: myapp",
        "restartPolicy: Always",
        "terminationGracePeriodSeconds: 30",
        "dnsPolicy: ClusterFirst",
        "schedulerName: default-scheduler",
        "imagePullPolicy: Always",
        "phase: Pending",
        "qosClass: BestEffort",
        "uid: ",
        "creationTimestamp: ",
        "resourceVersion: ",
        "tolerationSeconds: 300",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in:\n{yaml}");
    }

    // `get -o yaml` output creates the same pod in another namespace.
    h.kubectl(&["create", "namespace", "copy"]).await;
    common::default_service_account(&h.client().await, "copy").await;
    let copied = yaml.replace("namespace: default", "namespace: copy");
    let copy_file = write_file(&h, "copy.yaml", &copied).await;
    let out = h.kubectl(&["create", "-f", &copy_file]).await;
    assert_eq!(out.trim(), "pod/myapp-pod created");
    let copy = h
        .kubectl(&[
            "get",
            "pod",
            "myapp-pod",
            "-n",
            "copy",
            "-o",
            "jsonpath={.metadata.uid} {.spec.containers[0].image}",
        ])
        .await;
    let orig = h
        .kubectl(&["get", "pod", "myapp-pod", "-o", "jsonpath={.metadata.uid}"])
        .await;
    let (copy_uid, image) = copy.split_once(' ').expect("uid and image");
    assert_eq!(image, "nginx");
    assert_ne!(copy_uid, orig, "a created copy gets its own uid");

    let describe = h.kubectl(&["describe", "pod", "myapp-pod"]).await;
    for want in [
        "Name:             myapp-pod",
        "Namespace:        default",
        "Labels:           app=myapp",
        "Status:           Pending",
        "nginx-container:",
        "Image:",
        "Port:       80/TCP",
        "DEMO_GREETING:  Hello from the environment",
        "QoS Class:                   BestEffort",
        "Events:",
    ] {
        assert!(
            describe.contains(want),
            "missing {want:?} in describe:\n{describe}"
        );
    }

    let out = h.kubectl(&["delete", "-f", &file]).await;
    assert_eq!(out.trim(), "pod \"myapp-pod\" deleted");
    let err = h.kubectl_fails(&["get", "pod", "myapp-pod"], None).await;
    assert!(err.contains("pods \"myapp-pod\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_label_annotate_patch_and_delete() {
    let h = Harness::start().await;
    let out = h
        .kubectl(&[
            "run",
            "sleeper",
            "--image=busybox",
            "--",
            "/bin/sh",
            "-c",
            "sleep 3600",
        ])
        .await;
    assert_eq!(out.trim(), "pod/sleeper created");
    let args = h
        .kubectl(&[
            "get",
            "pod",
            "sleeper",
            "-o",
            "jsonpath={.spec.containers[0].args}",
        ])
        .await;
    assert_eq!(args, r#"["/bin/sh","-c","sleep 3600"]"#);
    let labels = h.kubectl(&["get", "pod", "sleeper", "--show-labels"]).await;
    assert!(labels.contains("run=sleeper"), "{labels}");

    assert_eq!(
        h.kubectl(&["label", "pod", "sleeper", "tier=web"])
            .await
            .trim(),
        "pod/sleeper labeled"
    );
    assert_eq!(
        h.kubectl(&["annotate", "pod", "sleeper", "note=hello"])
            .await
            .trim(),
        "pod/sleeper annotated"
    );
    let selected = h
        .kubectl(&["get", "pods", "-l", "tier=web", "-o", "name"])
        .await;
    assert_eq!(selected.trim(), "pod/sleeper");
    let none = h.kubectl_out(&["get", "pods", "-l", "tier=db"], None).await;
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("No resources found in default namespace.")
    );

    // Strategic merge patch (kubectl's default) on a container, by name.
    let out = h
        .kubectl(&[
            "patch",
            "pod",
            "sleeper",
            "-p",
            r#"{"spec":{"containers":[{"name":"sleeper","image":"busybox:1.36"}]}}"#,
        ])
        .await;
    assert_eq!(out.trim(), "pod/sleeper patched");
    let image = h
        .kubectl(&[
            "get",
            "pod",
            "sleeper",
            "-o",
            "jsonpath={.spec.containers[0].image} {.metadata.annotations.note}",
        ])
        .await;
    assert_eq!(image, "busybox:1.36 hello");
    // Merge and JSON patches too.
    h.kubectl(&[
        "patch",
        "pod",
        "sleeper",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":null}}}"#,
    ])
    .await;
    h.kubectl(&[
        "patch",
        "pod",
        "sleeper",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#,
    ])
    .await;
    let labels = h
        .kubectl(&["get", "pod", "sleeper", "-o", "jsonpath={.metadata.labels}"])
        .await;
    assert_eq!(labels, r#"{"run":"sleeper","x":"y"}"#);
    // The spec is immutable apart from images and a few fields.
    let err = h
        .kubectl_fails(
            &[
                "patch",
                "pod",
                "sleeper",
                "-p",
                r#"{"spec":{"restartPolicy":"Never"}}"#,
            ],
            None,
        )
        .await;
    assert!(
        err.contains("Pod \"sleeper\" is invalid") && err.contains("spec: Forbidden"),
        "{err}"
    );

    // No node agent: the unbound pod goes at once.
    let out = h.kubectl(&["delete", "pod", "sleeper"]).await;
    assert_eq!(out.trim(), "pod \"sleeper\" deleted");
    let list = h.kubectl_out(&["get", "pods"], None).await;
    assert!(String::from_utf8_lossy(&list.stderr).contains("No resources found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_is_unchanged() {
    let h = Harness::start().await;
    let file = write_file(&h, "web.yaml", SEED_POD).await;
    assert_eq!(
        h.kubectl(&["apply", "-f", &file]).await.trim(),
        "pod/myapp-pod created"
    );
    assert_eq!(
        h.kubectl(&["apply", "-f", &file]).await.trim(),
        reference("v8-apply-2.stdout.txt")
            .trim()
            .replace("v8-create", "myapp-pod")
    );
    let changed = SEED_POD.replace("type: front-end", "type: back-end");
    let file2 = write_file(&h, "web2.yaml", &changed).await;
    assert_eq!(
        h.kubectl(&["apply", "-f", &file2]).await.trim(),
        "pod/myapp-pod configured"
    );
    let label = h
        .kubectl(&[
            "get",
            "pod",
            "myapp-pod",
            "-o",
            "jsonpath={.metadata.labels.type}",
        ])
        .await;
    assert_eq!(label, "back-end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_openapi_schema() {
    let h = Harness::start().await;
    let out = h.kubectl(&["explain", "pod.spec"]).await;
    assert!(
        out.starts_with("KIND:       Pod\nVERSION:    v1\n"),
        "{out}"
    );
    assert!(out.contains("FIELD: spec <PodSpec>"), "{out}");
    assert!(
        out.contains("containers\t<[]Container> -required-"),
        "{out}"
    );
    let out = h.kubectl(&["explain", "pod.spec.containers"]).await;
    let want = reference("v8-explain.stdout.txt");
    // The reference explains initContainers; the Container fields match.
    let fields = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.contains('\t'))
            .map(str::to_string)
            .collect()
    };
    // The reference file is cut after a few fields; those must match.
    let (got, want) = (fields(&out), fields(&want));
    assert!(want.len() >= 4 && got.starts_with(&want), "{out}");
    assert!(
        got.iter().any(|f| f == "  name\t<string> -required-"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_sees_changes() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let h = Harness::start().await;
    h.kubectl(&["run", "watched", "--image=busybox", "--", "sleep", "3600"])
        .await;
    let mut child = tokio::process::Command::new(common::KUBECTL)
        .arg("--kubeconfig")
        .arg(h.kubeconfig())
        .arg("--cache-dir")
        .arg(h.dir.path().join("kubectl-cache"))
        .args(["get", "pods", "-w"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl get -w");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let header = lines.next_line().await.expect("read").expect("header");
    assert!(header.starts_with("NAME"), "{header}");
    let first = lines.next_line().await.expect("read").expect("first row");
    assert!(first.starts_with("watched"), "{first}");
    h.kubectl(&["run", "second", "--image=busybox", "--", "sleep", "3600"])
        .await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("watch delivers the new pod")
        .expect("read")
        .expect("a row");
    assert!(next.starts_with("second"), "{next}");
    h.kubectl(&["delete", "pod", "watched"]).await;
    let gone = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("watch delivers the delete")
        .expect("read")
        .expect("a row");
    assert!(gone.starts_with("watched"), "{gone}");
    child.kill().await.expect("stop kubectl");
}

/// kubectl validates the items of a `List` itself, against the protobuf
/// `/openapi/v2` (no group version describes `v1 List`), before creating
/// them one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_apply_a_list_with_validation() {
    let h = Harness::start().await;
    let json_list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"}, "data": {"a": "1"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}, "data": {"b": "2"}},
        ],
    });
    let file = write_file(&h, "list.json", &json_list.to_string()).await;
    let out = h.kubectl(&["create", "-f", &file]).await;
    assert_eq!(out.trim(), "configmap/one created\nconfigmap/two created");

    let yaml_list = r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: two
  data:
    b: "3"
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: three
"#;
    let file = write_file(&h, "list.yaml", yaml_list).await;
    let out = h.kubectl(&["apply", "-f", &file]).await;
    assert_eq!(
        out.trim(),
        "configmap/two configured\nconfigmap/three created"
    );
    let b = h
        .kubectl(&["get", "configmap", "two", "-o", "jsonpath={.data.b}"])
        .await;
    assert_eq!(b, "3");

    // An unknown field in an item fails kubectl's own strict check, and
    // nothing of the list is created.
    let bad = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "four"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "five"}, "bogus": true}]}"#;
    let file = write_file(&h, "bad.json", bad).await;
    let err = h.kubectl_fails(&["create", "-f", &file], None).await;
    assert!(
        err.contains(r#"error validating data: ValidationError(ConfigMap): unknown field "bogus" in io.k8s.api.core.v1.ConfigMap"#),
        "{err}"
    );
    let err = h.kubectl_fails(&["get", "configmap", "four"], None).await;
    assert!(err.contains("not found"), "{err}");
}
