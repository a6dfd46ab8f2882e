//! The agent's streaming server: container logs with kubectl's options,
//! exec and attach over each channel protocol, and port-forward.

use super::*;

pub(crate) async fn streaming_logs_honour_kubectl_options() {
    let env = Env::new(11).await;
    env.create(&format!(
        r#"
metadata: {{name: talker}}
spec:
  restartPolicy: Never
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sh, -c, "echo one; sleep 0.5; echo two >&2; sleep 2; echo three; sleep 1"]}}
"#,
        busybox()
    ))
    .await;
    env.wait("talker", T, "running", |p| is_running(p, "main"))
        .await;
    let base = "/containerLogs/default/talker/main";
    // follow streams until the container exits.
    let (code, body) = env.streaming_get(&format!("{base}?follow=true")).await;
    assert_eq!((code, body.as_str()), (200, "one\ntwo\nthree\n"));
    let (_, body) = env.streaming_get(&format!("{base}?tailLines=1")).await;
    assert_eq!(body, "three\n");
    let (_, body) = env.streaming_get(&format!("{base}?limitBytes=6")).await;
    assert_eq!(body, "one\ntw");
    let (_, body) = env
        .streaming_get(&format!("{base}?timestamps=true&tailLines=1"))
        .await;
    let (ts, rest) = body.split_once(' ').unwrap();
    assert_eq!(rest, "three\n");
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    let future = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, body) = env
        .streaming_get(&format!("{base}?sinceTime={future}"))
        .await;
    assert_eq!(body, "");
    let (_, body) = env
        .streaming_get(&format!("{base}?sinceSeconds=3600"))
        .await;
    assert_eq!(body, "one\ntwo\nthree\n");
    let (code, body) = env
        .streaming_get("/containerLogs/default/nosuch/main")
        .await;
    assert_eq!(code, 404, "{body}");
    // No client certificate, no logs.
    let denied = match env.streaming_tls(false).await {
        Err(_) => true,
        Ok(mut tls) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tls
                .write_all(b"GET /containerLogs/default/talker/main HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            matches!(tls.read_to_end(&mut buf).await, Err(_) | Ok(0))
        }
    };
    assert!(
        denied,
        "the streaming server served a client without a certificate"
    );
    env.teardown().await;
}

pub(crate) async fn streaming_exec_speaks_v5_and_v4_with_tty() {
    let env = Env::new(12).await;
    env.create(&format!(
        r#"
metadata: {{name: shell}}
spec:
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
"#,
        busybox()
    ))
    .await;
    env.wait("shell", T, "running", |p| is_running(p, "main"))
        .await;
    // v5 with a terminal: resize, type a command, read the exit code.
    let mut ws = env
        .streaming_ws(
            "/exec/default/shell/main?command=sh&stdin=true&stdout=true&tty=true",
            "v5.channel.k8s.io",
        )
        .await;
    ws.send(4, br#"{"Width":100,"Height":40}"#).await;
    // The resize reaches the terminal on its own path, so under load the
    // typed line can overtake it (as in Kubernetes): wait for a size first.
    // The terminal echoes the input, hence output matched with line ends.
    ws.send(
        0,
        b"for i in $(seq 50); do stty size >/dev/null 2>&1 && break; sleep 0.1; done; stty size; echo hi; exit 3\n",
    )
    .await;
    let out = ws.finish().await;
    assert!(out.stdout.contains("\n40 100\r\n"), "{out:?}");
    assert!(out.stdout.contains("\nhi\r\n"), "{out:?}");
    let status = out.status.expect("exit status on the error channel");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    // v5 without a terminal: stdin closed by the client's close frame.
    let mut ws = env
        .streaming_ws(
            "/exec/default/shell/main?command=cat&stdin=true&stdout=true&stderr=true",
            "v5.channel.k8s.io",
        )
        .await;
    ws.send(0, b"abc").await;
    ws.send(255, &[0]).await;
    let out = ws.finish().await;
    assert_eq!(out.stdout, "abc");
    assert_eq!(out.status.unwrap()["status"], "Success");
    // v4: separate stderr, exit status.
    let ws = env
        .streaming_ws(
            "/exec/default/shell/main?command=sh&command=-c&command=echo%20out%3B%20echo%20err%20%3E%262%3B%20exit%205&stdout=true&stderr=true",
            "v4.channel.k8s.io",
        )
        .await;
    let out = ws.finish().await;
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
    assert_eq!(out.status.unwrap()["details"]["causes"][0]["message"], "5");
    // attach to a container's own stdin and stdout.
    env.create(&format!(
        r#"
metadata: {{name: reader}}
spec:
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, stdin: true, command: [sh, -c, "read x; echo got $x; sleep 3600"]}}
"#,
        busybox()
    ))
    .await;
    env.wait("reader", T, "running", |p| is_running(p, "main"))
        .await;
    let mut ws = env
        .streaming_ws(
            "/attach/default/reader/main?stdin=true&stdout=true&stderr=true",
            "v5.channel.k8s.io",
        )
        .await;
    ws.send(0, b"hello\n").await;
    let mut out = stream::Output::default();
    ws.read_until(&mut out, "got hello").await;
    assert!(out.stdout.contains("got hello"), "{out:?}");

    // The protocols before v4, which the upstream e2e suite still uses: no
    // Status, the failure as text on the error channel.
    let ws = env
        .streaming_ws(
            "/exec/default/shell/main?command=sh&command=-c&command=echo%20remote%20execution%20test%3B%20exit%204&stdout=1&stderr=1",
            "channel.k8s.io",
        )
        .await;
    let out = ws.finish().await;
    assert_eq!(out.stdout, "remote execution test\n", "{out:?}");
    assert_eq!(
        out.error_text,
        "command terminated with non-zero exit code: error executing command, exit code 4"
    );
    // base64: text frames, the channel as a digit; stdin travels the same way.
    let mut ws = env
        .streaming_ws(
            "/exec/default/shell/main?command=sh&command=-c&command=read%20x%3B%20echo%20got%20%24x&stdin=1&stdout=1",
            "base64.channel.k8s.io",
        )
        .await;
    ws.send_base64(0, b"b64\n").await;
    let out = ws.finish().await;
    assert_eq!(out.stdout, "got b64\n", "{out:?}");
    assert_eq!(out.error_text, "", "success sends nothing: {out:?}");

    // Port-forward over the WebSocket channel protocol (as the e2e suite's
    // "should support forwarding over websockets"): each channel first says
    // its port, then data flows on channel 0.
    env.create(&format!(
        r#"
metadata: {{name: greeter}}
spec:
  containers:
  - {{name: main, image: "{}", imagePullPolicy: IfNotPresent, command: [sh, -c, "while true; do echo hello from the pod | nc -l -p 8080; done"]}}
"#,
        busybox()
    ))
    .await;
    env.wait("greeter", T, "running", |p| is_running(p, "main"))
        .await;
    let mut ws = env
        .streaming_ws(
            "/portForward/default/greeter?port=8080",
            "v4.channel.k8s.io",
        )
        .await;
    let mut out = stream::Output::default();
    assert_eq!(ws.next_on(&mut out, 0).await, 8080u16.to_le_bytes());
    assert_eq!(ws.next_on(&mut out, 1).await, 8080u16.to_le_bytes());
    ws.send(0, b"hi\n").await;
    let data = ws.next_on(&mut out, 0).await;
    assert_eq!(String::from_utf8_lossy(&data), "hello from the pod\n");
    env.teardown().await;
}
