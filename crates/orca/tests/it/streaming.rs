//! kubectl's streaming commands against a real `orca server` running real
//! containers, over each protocol kubectl v1.32 speaks: port-forward (a SPDY
//! session tunnelled in a WebSocket, and plain SPDY), exec and attach over
//! SPDY, logs errors, attach's stdin, and config errors. Needs root,
//! ORCA_TEST_REGISTRY and ORCA_TEST_IMAGES (see scripts/test.sh).

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, Cluster};

const WEB: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: nginx
    image: nginx
    ports: [{containerPort: 80}]
"#;

/// A running `kubectl port-forward`, stopped on drop.
struct Forward {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_forward(
    cluster: &Cluster,
    env: &[(&str, &str)],
    target: &str,
    remote: u16,
) -> (Forward, u16) {
    let local = free_port();
    let mut child = cluster
        .kubectl_command(env, &["port-forward", target, &format!("{local}:{remote}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // For svc/NAME kubectl names the pod's target port here, not `remote`.
    while !line.contains(&format!("Forwarding from 127.0.0.1:{local} -> ")) {
        line.clear();
        assert!(Instant::now() < deadline, "port-forward never listened");
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.wait();
            panic!("kubectl port-forward ended: {}", stderr.lock().unwrap());
        }
    }
    // Keep draining stdout ("Handling connection for ...").
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).unwrap_or(0) > 0 {}
    });
    (Forward { child, stderr }, local)
}

/// A page through the forwarded port, which kubectl opened on the node.
fn get_page(cluster: &Cluster, port: u16) -> String {
    cluster.http_get(&format!("127.0.0.1:{port}"), "/")
}

#[test]
fn port_forward_over_websocket_tunnel_and_spdy() {
    let cluster = Cluster::start();
    let manifest = cluster.dir.path().join("web.yaml");
    std::fs::write(&manifest, WEB).unwrap();
    cluster.kubectl_ok(&["create", "-f", manifest.to_str().unwrap()]);
    cluster.kubectl_ok(&["expose", "pod", "web", "--port=8080", "--target-port=80"]);
    cluster.kubectl_ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=90s"]);

    // kubectl v1.32 first tries a WebSocket carrying SPDY.
    let (fwd, port) = port_forward(&cluster, &[], "pod/web", 80);
    let page = get_page(&cluster, port);
    assert!(page.contains("Welcome to nginx"), "{page}");
    // Several connections over one session, one after another.
    assert!(get_page(&cluster, port).contains("Welcome to nginx"));
    drop(fwd);

    // Its fallback: SPDY after an HTTP upgrade.
    let spdy = [("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")];
    let (fwd, port) = port_forward(&cluster, &spdy, "pod/web", 80);
    assert!(get_page(&cluster, port).contains("Welcome to nginx"));
    drop(fwd);

    // svc/NAME: kubectl picks a pod and maps the Service port to its target.
    let (fwd, port) = port_forward(&cluster, &[], "svc/web", 8080);
    assert!(get_page(&cluster, port).contains("Welcome to nginx"));
    drop(fwd);

    // Nothing listens on 81 in the pod: the connection closes and kubectl
    // reports the runtime's error (klog quotes it, hence the escapes).
    let (fwd, port) = port_forward(&cluster, &spdy, "pod/web", 81);
    let rest = cluster.node.run(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        rest
    });
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let uid = cluster.kubectl_ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]);
    let want = format!(
        "error forwarding port 81 to pod {uid}, uid : failed to execute portforward in network namespace \\\"/proc/"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fwd.stderr.lock().unwrap().contains(&want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = fwd.stderr.lock().unwrap().clone();
    assert!(stderr.contains(&want), "{stderr}");
    assert!(
        stderr.contains("IPv4: dial tcp4 127.0.0.1:81: connect: connection refused"),
        "{stderr}"
    );
    drop(fwd);

    // A pod that is not running: kubectl refuses before asking.
    cluster.kubectl_ok(&["run", "pending", "--image=nosuch.invalid/none"]);
    let out = cluster.kubectl(&["port-forward", "pod/pending", "18080:80"]);
    assert_eq!(
        out.stderr.trim(),
        "error: unable to forward port because pod is not running. Current status=Pending"
    );
}

#[test]
fn exec_attach_logs_and_config_errors() {
    let cluster = Cluster::start();
    cluster.kubectl_ok(&["run", "bb", "--image=busybox", "--", "sleep", "3600"]);
    let reader = cluster.dir.path().join("reader.yaml");
    std::fs::write(
        &reader,
        r#"apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  containers:
  - name: main
    image: busybox
    stdin: true
    command: [sh, -c, "while read x; do echo got $x; done; echo stdin closed"]
"#,
    )
    .unwrap();
    cluster.kubectl_ok(&["create", "-f", reader.to_str().unwrap()]);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/bb",
        "pod/reader",
        "--timeout=90s",
    ]);

    // exec over SPDY, as kubectl before v1.30 and client-go's fallback.
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let out = cluster.kubectl_env(
        &spdy,
        &[
            "exec",
            "bb",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        "",
    );
    assert_eq!(out.stdout, "out\n", "{out:?}");
    assert!(out.stderr.starts_with("err\n"), "{out:?}");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = cluster.kubectl_env(&spdy, &["exec", "-i", "bb", "--", "cat"], "piped in\n");
    assert_eq!(out.stdout, "piped in\n", "{out:?}");
    assert!(out.status.success(), "{out:?}");

    // attach -i with piped input, twice: without stdinOnce the container's
    // stdin stays open when a client's input ends, so it neither sees EOF
    // nor restarts. Each attach runs until kubectl is stopped.
    for (i, word) in ["hello", "again"].iter().enumerate() {
        let env: &[(&str, &str)] = if i == 0 { &spdy } else { &[] };
        let mut child = cluster
            .kubectl_command(env, &["attach", "-i", "reader"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, format!("{word}\n").as_bytes()).unwrap();
        drop(stdin);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let reader_thread = std::thread::spawn(move || {
            let mut seen = String::new();
            while out.read_line(&mut line).unwrap_or(0) > 0 {
                seen.push_str(&line);
                if line.contains("got") {
                    break;
                }
                line.clear();
            }
            seen
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !reader_thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        let seen = reader_thread.join().unwrap();
        assert!(seen.contains(&format!("got {word}")), "{seen}");
        assert!(!seen.contains("stdin closed"), "{seen}");
    }
    let restarts = cluster.kubectl_ok(&[
        "get",
        "pod",
        "reader",
        "-o",
        "jsonpath={.status.containerStatuses[0].restartCount}",
    ]);
    assert_eq!(restarts, "0");

    // logs of a container that never started: a Status in the kubelet's words.
    cluster.kubectl_ok(&["run", "badimage", "--image=busybox:nosuchtag"]);
    cluster.wait_until("the image pull fails", Duration::from_secs(60), || {
        let s = cluster.kubectl_ok(&[
            "get",
            "pod",
            "badimage",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
        ]);
        s == "ErrImagePull" || s == "ImagePullBackOff"
    });
    let out = cluster.kubectl(&["logs", "badimage"]);
    let err = out.stderr.trim();
    assert!(
        err == "Error from server (BadRequest): container \"badimage\" in pod \"badimage\" is waiting to start: trying and failing to pull image"
            || err == "Error from server (BadRequest): container \"badimage\" in pod \"badimage\" is waiting to start: image can't be pulled",
        "{out:?}"
    );

    // runAsNonRoot with an image that runs as root: a config error.
    let nonroot = cluster.dir.path().join("nonroot.yaml");
    std::fs::write(
        &nonroot,
        r#"apiVersion: v1
kind: Pod
metadata: {name: nonroot}
spec:
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: main, image: busybox, command: [sleep, "3600"]}
"#,
    )
    .unwrap();
    cluster.kubectl_ok(&["create", "-f", nonroot.to_str().unwrap()]);
    let uid = cluster.kubectl_ok(&["get", "pod", "nonroot", "-o", "jsonpath={.metadata.uid}"]);
    cluster.wait_until("the config error shows", Duration::from_secs(60), || {
        cluster
            .kubectl_ok(&["get", "pod", "nonroot"])
            .contains("CreateContainerConfigError")
    });
    let message = cluster.kubectl_ok(&[
        "get",
        "pod",
        "nonroot",
        "-o",
        "jsonpath={.status.containerStatuses[0].state.waiting.message}",
    ]);
    assert_eq!(
        message,
        format!("container has runAsNonRoot and image will run as root (pod: \"nonroot_default({uid})\", container: main)")
    );
}
