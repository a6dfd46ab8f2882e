//! Real containers, as root. The test binary doubles as the shim, pause
//! and exec helper (it calls `run_internal_command_if_requested` first),
//! which is why this target has its own `main` (harness = false).

mod common;

use std::time::Duration;

use common::*;
use libtest_mimic::{Arguments, Trial};
use orca_runtime::{ContainerState, Runtime};

/// Set in a child process that plays a short-lived agent (see
/// `runtime_reattaches_to_running_containers`): "<test dir> <bridge> <cidr>".
const AGENT_ROLE: &str = "ORCA_RUNTIME_TEST_AGENT";

fn main() {
    orca_runtime::run_internal_command_if_requested();
    if let Ok(spec) = std::env::var(AGENT_ROLE) {
        short_lived_agent(&spec);
        return;
    }
    let args = Arguments::from_args();
    // libtest-mimic turns a panicking test into a failure with its message.
    macro_rules! trials {
        ($($test:ident),* $(,)?) => {
            vec![$(Trial::test(stringify!($test), || {
                $test();
                Ok(())
            })),*]
        };
    }
    let trials = trials![
        container_is_isolated_and_logs_in_cri_format,
        pod_containers_share_ip_localhost_volume_and_ipc,
        pods_reach_each_other_and_nginx_serves_the_host,
        env_args_working_dir_and_user_are_applied,
        memory_hog_is_oom_killed,
        stop_sends_sigterm_then_sigkill_after_grace,
        exec_with_and_without_tty_returns_exit_code,
        runtime_reattaches_to_running_containers,
        attach_relays_stdin_and_stdout,
        file_volumes_sub_paths_read_only_and_termination_message,
        shared_pid_host_network_and_capabilities,
        pod_sysctls_are_set_in_the_pod_namespaces_only,
        seccomp_runtime_default_filters_and_unconfined_does_not,
        fs_group_owns_volumes_and_joins_the_groups,
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn container_is_isolated_and_logs_in_cri_format() {
    let env = Env::new(1);
    block_on(async {
        let rt = &env.runtime;
        let marker = env.dir.path().join("host-only-marker");
        std::fs::write(&marker, "x").unwrap();
        let sb = rt.run_sandbox(&sandbox("pod-1", "iso")).await.unwrap();
        assert!(sb.ready);
        let script = format!(
            "echo pid=$$; test -d /proc/{} && echo hostproc-visible || echo hostproc-hidden; \
             test -e {} && echo host-visible || echo host-hidden; echo oops >&2; hostname; \
             test -s /etc/resolv.conf && echo resolv-not-empty || echo resolv-empty",
            std::process::id(),
            marker.display()
        );
        let id = rt
            .create_container("pod-1", &busybox("main", &script))
            .await
            .unwrap();
        assert_eq!(
            rt.container_status(&id).await.unwrap().state,
            ContainerState::Created
        );
        rt.start_container(&id).await.unwrap();
        let st = wait_exited(rt, &id, Duration::from_secs(20)).await;
        assert_eq!(exit_code(&st), (0, "Completed".to_string()));
        let lines = log_lines(&st.log_path);
        assert!(lines.contains(&"stdout F pid=1".to_string()), "{lines:?}");
        assert!(
            lines.contains(&"stdout F hostproc-hidden".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"stdout F host-hidden".to_string()),
            "{lines:?}"
        );
        assert!(lines.contains(&"stderr F oops".to_string()), "{lines:?}");
        assert!(lines.contains(&"stdout F iso".to_string()), "{lines:?}");
        // No DNS settings given (dnsPolicy None without dnsConfig): an empty
        // resolv.conf, not the host's.
        assert!(
            lines.contains(&"stdout F resolv-empty".to_string()),
            "{lines:?}"
        );
        let raw = std::fs::read_to_string(&st.log_path).unwrap();
        let ts = raw.split(' ').next().unwrap();
        assert!(
            ts.ends_with('Z') && ts.contains('T') && ts.len() == 30,
            "{ts}"
        );
        rt.remove_container(&id).await.unwrap();
        rt.remove_sandbox("pod-1").await.unwrap();
        env.assert_clean(&[id]);
    });
}

fn emptydir(memory: bool) -> orca_runtime::VolumeSource {
    orca_runtime::VolumeSource::EmptyDir {
        memory,
        size_limit: None,
    }
}

fn mount(volume: &str, path: &str) -> orca_runtime::Mount {
    orca_runtime::Mount {
        volume: volume.into(),
        container_path: path.into(),
        ..Default::default()
    }
}

fn pod_containers_share_ip_localhost_volume_and_ipc() {
    let env = Env::new(2);
    block_on(async {
        let rt = &env.runtime;
        let mut sb = sandbox("pod-2", "shared");
        sb.volumes.insert("shared".into(), emptydir(false));
        sb.volumes.insert("mem".into(), emptydir(true));
        sb.dns = orca_runtime::DnsConfig {
            nameservers: vec!["10.43.0.10".into()],
            searches: vec!["default.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        let status = rt.run_sandbox(&sb).await.unwrap();
        let ip = status.ip.expect("pod IP").to_string();
        assert!(ip.starts_with("10.250.2."), "{ip}");
        // The pod's bridge port sends frames back where they came from, so
        // the pod can reach itself through a Service.
        let ports = std::fs::read_dir(format!("/sys/class/net/{}/brif", env.bridge)).unwrap();
        let modes: Vec<String> = ports
            .flatten()
            .map(|p| std::fs::read_to_string(p.path().join("hairpin_mode")).unwrap())
            .collect();
        assert_eq!(modes, ["1\n"], "one pod port, hairpin on");
        // Idempotent per pod uid.
        assert_eq!(rt.run_sandbox(&sb).await.unwrap().ip, status.ip);

        let mut a = busybox(
            "a",
            "mkdir /www && echo from-a > /www/index.html && echo shm-token > /dev/shm/tok && \
             readlink /proc/self/ns/ipc > /shared/ipc-a && readlink /proc/self/ns/net > /shared/net-a && \
             echo a-wrote > /shared/a && exec httpd -f -p 127.0.0.1:8080 -h /www",
        );
        a.mounts = vec![mount("shared", "/shared"), mount("mem", "/mem")];
        let a_id = rt.create_container("pod-2", &a).await.unwrap();
        rt.start_container(&a_id).await.unwrap();
        let host_shared = env.root().join("pods/pod-2/volumes/shared");
        for _ in 0..250 {
            if host_shared.join("a").exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            std::fs::read_to_string(host_shared.join("a")).unwrap(),
            "a-wrote\n"
        );
        let mem_dir = env.root().join("pods/pod-2/volumes/mem");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            mounts
                .lines()
                .any(|l| l.contains(&format!(" {} ", mem_dir.display())) && l.contains(" - tmpfs ")),
            "medium: Memory emptyDir is not a tmpfs"
        );

        let mut b = busybox(
            "b",
            "for i in $(seq 50); do wget -q -O- http://127.0.0.1:8080/ && break; sleep 0.1; done; \
             cat /shared/a; cat /dev/shm/tok; \
             test \"$(readlink /proc/self/ns/ipc)\" = \"$(cat /shared/ipc-a)\" && echo same-ipc; \
             test \"$(readlink /proc/self/ns/net)\" = \"$(cat /shared/net-a)\" && echo same-net; \
             ip -4 addr show eth0 | grep -o 'inet [0-9.]*'; cat /etc/resolv.conf",
        );
        b.mounts = vec![mount("shared", "/shared")];
        let st = run_to_exit(rt, "pod-2", &b).await;
        let lines = log_lines(&st.log_path);
        for want in [
            "stdout F from-a".to_string(),
            "stdout F a-wrote".to_string(),
            "stdout F shm-token".to_string(),
            "stdout F same-ipc".to_string(),
            "stdout F same-net".to_string(),
            format!("stdout F inet {ip}"),
            "stdout F search default.svc.cluster.local cluster.local".to_string(),
            "stdout F nameserver 10.43.0.10".to_string(),
            "stdout F options ndots:5".to_string(),
        ] {
            assert!(lines.contains(&want), "missing {want:?} in {lines:?}");
        }
        rt.stop_container(&a_id, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(
            rt.container_status(&a_id).await.unwrap().state,
            ContainerState::Exited { .. }
        ));
        let ids: Vec<String> = rt
            .list_containers(Some("pod-2"))
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids.len(), 2);
        rt.stop_sandbox("pod-2").await.unwrap();
        assert!(!rt.list_sandboxes().await.unwrap()[0].ready);
        rt.remove_sandbox("pod-2").await.unwrap();
        assert!(rt.list_containers(None).await.unwrap().is_empty());
        env.assert_clean(&ids);
    });
}

fn http_get(addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn pods_reach_each_other_and_nginx_serves_the_host() {
    let env = Env::new(3);
    block_on(async {
        let rt = &env.runtime;
        let web = rt.run_sandbox(&sandbox("pod-web", "web")).await.unwrap();
        let client = rt
            .run_sandbox(&sandbox("pod-client", "client"))
            .await
            .unwrap();
        assert_ne!(web.ip, client.ip);
        let web_ip = web.ip.unwrap().to_string();
        let nginx = orca_runtime::ContainerConfig {
            name: "nginx".into(),
            image: "nginx".into(),
            ..Default::default()
        };
        let nginx_id = rt.create_container("pod-web", &nginx).await.unwrap();
        rt.start_container(&nginx_id).await.unwrap();
        let mut page = String::new();
        for _ in 0..100 {
            if let Ok(p) = http_get(&format!("{web_ip}:80")) {
                page = p;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(page.contains("Welcome to nginx!"), "host got {page:?}");

        let st = run_to_exit(
            rt,
            "pod-client",
            &busybox(
                "wget",
                &format!("wget -q -O- http://{web_ip}:80/ && echo fetched"),
            ),
        )
        .await;
        assert_eq!(exit_code(&st).0, 0);
        let lines = log_lines(&st.log_path);
        assert!(
            lines.contains(&"stdout F <h1>Welcome to nginx!</h1>".to_string()),
            "{lines:?}"
        );
        // nginx's access log goes to stdout, so the request shows up in its log.
        wait_log(rt, &nginx_id, "GET / HTTP").await;

        // The image's StopSignal (SIGQUIT) makes nginx shut down gracefully.
        rt.stop_container(&nginx_id, Duration::from_secs(10))
            .await
            .unwrap();
        let st = rt.container_status(&nginx_id).await.unwrap();
        assert_eq!(exit_code(&st).0, 0, "{st:?}");
        let ids = vec![nginx_id, st.id.clone()];
        rt.remove_sandbox("pod-web").await.unwrap();
        rt.remove_sandbox("pod-client").await.unwrap();
        env.assert_clean(&ids);
    });
}

fn env_args_working_dir_and_user_are_applied() {
    let env = Env::new(4);
    block_on(async {
        let rt = &env.runtime;
        rt.run_sandbox(&sandbox("pod-4", "env")).await.unwrap();
        let c = orca_runtime::ContainerConfig {
            name: "env".into(),
            image: "busybox".into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec![
                // MIMALLOC_ARENA_RESERVE is set for the shim: the container
                // must not inherit it.
                "echo \"$GREETING $0\"; pwd; id -u; id -g; echo home=$HOME; echo inherited=$MIMALLOC_ARENA_RESERVE".into(),
                "zero".into(),
            ],
            env: vec![("GREETING".into(), "hello".into())],
            working_dir: Some("/work/dir".into()),
            security: orca_runtime::SecurityConfig {
                run_as_user: Some(33),
                run_as_group: Some(44),
                ..Default::default()
            },
            ..Default::default()
        };
        let st = run_to_exit(rt, "pod-4", &c).await;
        assert_eq!(
            log_lines(&st.log_path),
            [
                "stdout F hello zero",
                "stdout F /work/dir",
                "stdout F 33",
                "stdout F 44",
                "stdout F home=/var/www",
                "stdout F inherited="
            ]
        );
        // No command: the image's Cmd (`sh`) runs, reads an empty stdin and exits.
        let default = orca_runtime::ContainerConfig {
            name: "default".into(),
            image: "busybox".into(),
            ..Default::default()
        };
        assert_eq!(exit_code(&run_to_exit(rt, "pod-4", &default).await).0, 0);
        let mut ro = busybox(
            "ro",
            "touch /x 2>/dev/null && echo writable || echo read-only",
        );
        ro.security.read_only_root_filesystem = true;
        let st = run_to_exit(rt, "pod-4", &ro).await;
        assert_eq!(log_lines(&st.log_path), ["stdout F read-only"]);

        let mut root = busybox("root", "true");
        root.security.run_as_non_root = true;
        let err = rt
            .create_container("pod-4", &root)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("runAsNonRoot and image will run as root"),
            "{err}"
        );
        let err = rt
            .create_container("pod-4", &busybox("missing", "true").with_image("nope"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, orca_runtime::Error::ImageNotPresent(_)),
            "{err}"
        );
        let ids: Vec<String> = rt
            .list_containers(None)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids.len(), 3);
        rt.remove_sandbox("pod-4").await.unwrap();
        env.assert_clean(&ids);
    });
}

trait WithImage {
    fn with_image(self, image: &str) -> Self;
}

impl WithImage for orca_runtime::ContainerConfig {
    fn with_image(mut self, image: &str) -> Self {
        self.image = image.into();
        self
    }
}

fn memory_hog_is_oom_killed() {
    let env = Env::new(5);
    block_on(async {
        let rt = &env.runtime;
        rt.run_sandbox(&sandbox("pod-5", "oom")).await.unwrap();
        // `tail` keeps the current line in memory, and /dev/zero has no newline.
        let mut c = busybox("hog", "exec tail /dev/zero");
        c.resources.memory_limit_bytes = Some(32 << 20);
        let st = run_to_exit(rt, "pod-5", &c).await;
        assert_eq!(exit_code(&st), (137, "OOMKilled".to_string()));
        let id = st.id.clone();
        rt.remove_sandbox("pod-5").await.unwrap();
        env.assert_clean(&[id]);
    });
}

fn stop_sends_sigterm_then_sigkill_after_grace() {
    let env = Env::new(6);
    block_on(async {
        let rt = &env.runtime;
        rt.run_sandbox(&sandbox("pod-6", "stop")).await.unwrap();
        let stubborn = busybox(
            "stubborn",
            "trap '' TERM; echo ready; while true; do sleep 1; done",
        );
        let polite = busybox(
            "polite",
            "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        );
        let s_id = rt.create_container("pod-6", &stubborn).await.unwrap();
        let p_id = rt.create_container("pod-6", &polite).await.unwrap();
        rt.start_container(&s_id).await.unwrap();
        rt.start_container(&p_id).await.unwrap();
        wait_log(rt, &s_id, "ready").await;
        wait_log(rt, &p_id, "ready").await;
        rt.stop_container(&p_id, Duration::from_secs(20))
            .await
            .unwrap();
        let st = rt.container_status(&p_id).await.unwrap();
        assert_eq!(exit_code(&st), (3, "Error".to_string()));
        assert!(log_lines(&st.log_path).contains(&"stdout F got-term".to_string()));
        rt.stop_container(&s_id, Duration::from_millis(500))
            .await
            .unwrap();
        let st = rt.container_status(&s_id).await.unwrap();
        assert_eq!(exit_code(&st), (137, "Error".to_string()));
        // Stopping an exited container is a no-op.
        rt.stop_container(&s_id, Duration::from_secs(1))
            .await
            .unwrap();
        rt.remove_sandbox("pod-6").await.unwrap();
        env.assert_clean(&[s_id, p_id]);
    });
}

fn exec_with_and_without_tty_returns_exit_code() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new(7);
    block_on(async {
        let rt = &env.runtime;
        rt.run_sandbox(&sandbox("pod-7", "exec")).await.unwrap();
        let id = rt
            .create_container("pod-7", &busybox("main", "echo ready; exec sleep 1000"))
            .await
            .unwrap();
        let err = rt
            .exec(
                &id,
                orca_runtime::ExecRequest {
                    command: vec!["true".into()],
                    ..Default::default()
                },
            )
            .await
            .err()
            .expect("exec in a created container");
        assert!(
            matches!(err, orca_runtime::Error::NotRunning { .. }),
            "{err}"
        );
        rt.start_container(&id).await.unwrap();
        wait_log(rt, &id, "ready").await;

        let (code, out, err) = exec(
            rt,
            &id,
            &[
                "sh",
                "-c",
                "echo out; echo err >&2; echo pid=$$ >&2; exit 3",
            ],
        )
        .await;
        assert_eq!((code, out.as_str()), (3, "out\n"));
        assert!(err.starts_with("err\n"), "{err}");
        assert_ne!(err, "err\npid=1\n");
        let (code, out, _) = exec(rt, &id, &["cat", "/proc/1/comm"]).await;
        assert_eq!((code, out.as_str()), (0, "sleep\n"));

        // stdin
        let mut s = rt
            .exec(
                &id,
                orca_runtime::ExecRequest {
                    command: vec!["cat".into()],
                    stdin: true,
                    tty: false,
                },
            )
            .await
            .unwrap();
        let mut stdin = s.stdin.take().unwrap();
        stdin.write_all(b"piped input").await.unwrap();
        drop(stdin);
        let mut out = String::new();
        s.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "piped input");
        assert_eq!(s.exit.await.unwrap(), 0);

        // TTY, with a resize.
        let mut s = rt
            .exec(
                &id,
                orca_runtime::ExecRequest {
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        "read line; tty; stty size; exit 5".into(),
                    ],
                    stdin: true,
                    tty: true,
                },
            )
            .await
            .unwrap();
        assert!(s.stderr.is_none());
        s.resize
            .as_ref()
            .unwrap()
            .send(orca_runtime::TerminalSize {
                width: 100,
                height: 40,
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut stdin = s.stdin.take().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        let mut stdout = s.stdout.take().unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        // A pty master reads EIO once the process is gone: that is the end.
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("/dev/pts/"), "{out:?}");
        assert!(out.contains("40 100"), "{out:?}");
        assert_eq!(s.exit.await.unwrap(), 5);

        rt.stop_container(&id, Duration::ZERO).await.unwrap();
        rt.remove_sandbox("pod-7").await.unwrap();
        env.assert_clean(&[id]);
    });
}

/// Creates a pod with a ticking container, prints its id and pod IP, and
/// exits: the shim and pause process must outlive this "agent".
fn short_lived_agent(spec: &str) {
    let [dir, bridge, cidr] = spec.split(' ').collect::<Vec<_>>()[..] else {
        panic!("bad {AGENT_ROLE}: {spec:?}");
    };
    let rt = runtime_at(std::path::Path::new(dir), bridge, cidr);
    block_on(async {
        let sb = rt.run_sandbox(&sandbox("pod-8", "again")).await.unwrap();
        let id = rt
            .create_container(
                "pod-8",
                &busybox(
                    "ticker",
                    "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
                ),
            )
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        wait_log(&rt, &id, "tick 1").await;
        println!("{id} {}", sb.ip.unwrap());
    });
}

fn runtime_reattaches_to_running_containers() {
    let env = Env::new(8);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(
            AGENT_ROLE,
            format!("{} {} {}", env.dir.path().display(), env.bridge, env.cidr),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    let (id, ip) = out.trim().split_once(' ').unwrap();
    let id = id.to_string();
    // The agent process is gone; a new runtime takes over its containers.
    block_on(async {
        let rt = env.reopen();
        let st = rt.container_status(&id).await.unwrap();
        assert!(matches!(st.state, ContainerState::Running { .. }), "{st:?}");
        let sb = rt.run_sandbox(&sandbox("pod-8", "again")).await.unwrap();
        assert_eq!(sb.ip.unwrap().to_string(), ip);
        assert!(sb.ready);
        let before = std::fs::read_to_string(&st.log_path).unwrap().len();
        wait_log(&rt, &id, "tick 20").await;
        assert!(std::fs::read_to_string(&st.log_path).unwrap().len() > before);
        let (code, out, _) = exec(&rt, &id, &["hostname"]).await;
        assert_eq!((code, out.as_str()), (0, "again\n"));
        rt.stop_container(&id, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(exit_code(&rt.container_status(&id).await.unwrap()).0, 137);
        rt.remove_sandbox("pod-8").await.unwrap();
    });
    env.assert_clean(&[id]);
}

fn attach_relays_stdin_and_stdout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new(9);
    block_on(async {
        let rt = &env.runtime;
        rt.run_sandbox(&sandbox("pod-9", "attach")).await.unwrap();
        let mut c = busybox("cat", "echo ready >&2; exec cat");
        c.stdin = true;
        // Only with stdinOnce does an attach's end close the container's stdin.
        c.stdin_once = true;
        let id = rt.create_container("pod-9", &c).await.unwrap();
        rt.start_container(&id).await.unwrap();
        wait_log(rt, &id, "ready").await;
        // One session only watches, the other one types.
        let mut watcher = rt.attach(&id, false, false).await.unwrap();
        assert!(watcher.stdin.is_none());
        let mut s = rt.attach(&id, true, false).await.unwrap();
        let mut stdin = s.stdin.take().unwrap();
        stdin.write_all(b"ping\n").await.unwrap();
        for session in [&mut s, &mut watcher] {
            let mut stdout = session.stdout.take().unwrap();
            let mut buf = [0u8; 5];
            stdout.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping\n");
        }
        // Closing stdin (stdinOnce) ends `cat`; both sessions see the exit code.
        drop(stdin);
        assert_eq!(s.exit.await.unwrap(), 0);
        assert_eq!(watcher.exit.await.unwrap(), 0);
        let st = wait_exited(rt, &id, Duration::from_secs(10)).await;
        assert!(log_lines(&st.log_path).contains(&"stdout F ping".to_string()));
        rt.remove_sandbox("pod-9").await.unwrap();
        env.assert_clean(&[id]);
    });
}

fn file_volumes_sub_paths_read_only_and_termination_message() {
    let env = Env::new(10);
    block_on(async {
        let rt = &env.runtime;
        let mut sb = sandbox("pod-10", "files");
        let mut files = std::collections::BTreeMap::new();
        files.insert("app.conf".to_string(), (b"key=value".to_vec(), 0));
        sb.volumes.insert(
            "config".into(),
            orca_runtime::VolumeSource::Files {
                files,
                default_mode: 0o644,
            },
        );
        sb.volumes.insert("scratch".into(), emptydir(false));
        let host_dir = env.dir.path().join("host-data");
        std::fs::create_dir_all(&host_dir).unwrap();
        std::fs::write(host_dir.join("from-host"), "hostpath-content").unwrap();
        sb.volumes.insert(
            "host".into(),
            orca_runtime::VolumeSource::HostPath {
                path: host_dir.clone(),
            },
        );
        rt.run_sandbox(&sb).await.unwrap();
        let mut c = busybox(
            "files",
            "cat /etc/app.conf; echo; (echo x > /etc/app.conf) 2>/dev/null && echo ro-broken || echo ro-ok; \
             echo d > /data/f; cat /host/from-host; echo; echo bye > /dev/termination-log; exit 1",
        );
        c.termination_message_path = Some("/dev/termination-log".into());
        c.mounts = vec![
            orca_runtime::Mount {
                volume: "config".into(),
                container_path: "/etc/app.conf".into(),
                sub_path: Some("app.conf".into()),
                read_only: true,
            },
            orca_runtime::Mount {
                volume: "scratch".into(),
                container_path: "/data".into(),
                sub_path: Some("sub".into()),
                read_only: false,
            },
            mount("host", "/host"),
        ];
        let st = run_to_exit(rt, "pod-10", &c).await;
        assert_eq!(
            log_lines(&st.log_path),
            [
                "stdout F key=value",
                "stdout F ro-ok",
                "stdout F hostpath-content"
            ]
        );
        match &st.state {
            ContainerState::Exited {
                exit_code,
                reason,
                message,
                ..
            } => {
                assert_eq!((*exit_code, reason.as_str()), (1, "Error"));
                assert_eq!(message.as_deref(), Some("bye\n"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            std::fs::read_to_string(env.root().join("pods/pod-10/volumes/scratch/sub/f")).unwrap(),
            "d\n"
        );
        let id = st.id.clone();
        rt.remove_sandbox("pod-10").await.unwrap();
        // hostPath content is the host's: never deleted.
        assert!(host_dir.join("from-host").exists());
        env.assert_clean(&[id]);
    });
}

fn shared_pid_host_network_and_capabilities() {
    let env = Env::new(11);
    block_on(async {
        let rt = &env.runtime;
        let mut sb = sandbox("pod-11", "hostnet");
        sb.host_network = true;
        sb.share_process_namespace = true;
        let status = rt.run_sandbox(&sb).await.unwrap();
        assert_eq!(status.ip, None);
        let sleeper = rt
            .create_container("pod-11", &busybox("sleeper", "exec sleep 1000"))
            .await
            .unwrap();
        rt.start_container(&sleeper).await.unwrap();
        let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
        let mut c = busybox(
            "look",
            "ps -o comm | grep -x sleep; echo pid=$$; readlink /proc/self/ns/net; grep CapEff /proc/self/status",
        );
        c.security.capabilities_drop = vec!["ALL".into()];
        let st = run_to_exit(rt, "pod-11", &c).await;
        let lines = log_lines(&st.log_path);
        assert!(lines.contains(&"stdout F sleep".to_string()), "{lines:?}");
        assert!(!lines.contains(&"stdout F pid=1".to_string()), "{lines:?}");
        assert!(
            lines.contains(&format!("stdout F {}", host_net.display())),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"stdout F CapEff:\t0000000000000000".to_string()),
            "{lines:?}"
        );
        let ids = vec![sleeper, st.id.clone()];
        rt.remove_sandbox("pod-11").await.unwrap();
        env.assert_clean(&ids);
    });
}

fn pod_sysctls_are_set_in_the_pod_namespaces_only() {
    let env = Env::new(12);
    block_on(async {
        let rt = &env.runtime;
        let host_shm = std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap();
        let host_start =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
        let mut sb = sandbox("pod-12", "sysctl");
        sb.sysctls = vec![
            ("kernel.shm_rmid_forced".into(), "1".into()),
            ("net.ipv4.ip_unprivileged_port_start".into(), "80".into()),
        ];
        rt.run_sandbox(&sb).await.unwrap();
        let st = run_to_exit(
            rt,
            "pod-12",
            &busybox(
                "read",
                "cat /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_unprivileged_port_start",
            ),
        )
        .await;
        assert_eq!(log_lines(&st.log_path), ["stdout F 1", "stdout F 80"]);
        // The node keeps its own values.
        assert_eq!(
            std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap(),
            host_shm
        );
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap(),
            host_start
        );
        rt.stop_sandbox("pod-12").await.unwrap();
        rt.remove_sandbox("pod-12").await.unwrap();

        // A host-network pod may not change the node's network settings.
        let mut host = sandbox("pod-12h", "sysctl-host");
        host.host_network = true;
        host.sysctls = vec![("net.ipv4.ip_unprivileged_port_start".into(), "80".into())];
        let err = rt.run_sandbox(&host).await.unwrap_err().to_string();
        assert!(
            err.contains("would change the node's own network settings"),
            "{err}"
        );
        let _ = rt.remove_sandbox("pod-12h").await;
    });
}

/// What a container may do, as its own lines: seccomp mode, privileges,
/// and whether it could enter a new user namespace (no capability needed,
/// so only seccomp stops it, with EPERM) and mount a tmpfs.
const PROBE: &str = "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd):' /proc/self/status; \
    e=$(unshare -U true 2>&1) && echo userns=ok || echo \"userns=denied: $e\"; \
    mount -t tmpfs t /tmp 2>/dev/null && echo mount=ok || echo mount=denied; \
    (echo pong | nc -l -p 9000 &); sleep 0.3; echo ping | nc -w 1 127.0.0.1 9000";

/// Whether PROBE's unshare failed with EPERM, as the profile's default.
fn userns_eperm(lines: &[String]) -> bool {
    lines
        .iter()
        .any(|l| l.starts_with("stdout F userns=denied") && l.contains("Operation not permitted"))
}

fn seccomp_runtime_default_filters_and_unconfined_does_not() {
    use orca_runtime::SeccompProfile;
    // containerd's default capabilities, in /proc's hex.
    const DEFAULT_CAPS: &str = "00000000a80425fb";
    let env = Env::new(13);
    block_on(async {
        let rt = &env.runtime;
        rt.run_sandbox(&sandbox("pod-13", "seccomp")).await.unwrap();
        let mut ids = Vec::new();
        let probe = |name: &str, f: &dyn Fn(&mut orca_runtime::SecurityConfig)| {
            let mut c = busybox(name, PROBE);
            f(&mut c.security);
            c
        };

        // Root, default capabilities, privilege escalation allowed: the
        // filter is installed with CAP_SYS_ADMIN, which is then dropped.
        let c = probe("default", &|s| s.seccomp = SeccompProfile::RuntimeDefault);
        let st = run_to_exit(rt, "pod-13", &c).await;
        ids.push(st.id.clone());
        let lines = log_lines(&st.log_path);
        for want in [
            "Seccomp:\t2".to_string(),
            "NoNewPrivs:\t0".into(),
            format!("CapEff:\t{DEFAULT_CAPS}"),
            format!("CapBnd:\t{DEFAULT_CAPS}"),
            "mount=denied".into(),
            "pong".into(),
        ] {
            assert!(
                lines.contains(&format!("stdout F {want}")),
                "{want}: {lines:?}"
            );
        }
        assert!(userns_eperm(&lines), "{lines:?}");
        assert_eq!(exit_code(&st), (0, "Completed".into()), "{lines:?}");

        // Unconfined (Kubernetes' default): root may enter a user namespace.
        let st = run_to_exit(rt, "pod-13", &probe("unconfined", &|_| {})).await;
        ids.push(st.id.clone());
        let lines = log_lines(&st.log_path);
        assert!(
            lines.contains(&"stdout F Seccomp:\t0".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"stdout F userns=ok".to_string()),
            "{lines:?}"
        );

        // CAP_SYS_ADMIN makes mount and unshare legal under the profile.
        let c = probe("admin", &|s| {
            s.seccomp = SeccompProfile::RuntimeDefault;
            s.capabilities_add = vec!["SYS_ADMIN".into()];
        });
        let st = run_to_exit(rt, "pod-13", &c).await;
        ids.push(st.id.clone());
        let lines = log_lines(&st.log_path);
        assert!(
            lines.contains(&"stdout F Seccomp:\t2".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"stdout F mount=ok".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"stdout F userns=ok".to_string()),
            "{lines:?}"
        );

        // A non-root user with privilege escalation unset, and one with
        // no_new_privs: both run filtered, without capabilities.
        for (name, nnp) in [("nonroot", None), ("nonroot-nnp", Some(false))] {
            let c = probe(name, &|s| {
                s.seccomp = SeccompProfile::RuntimeDefault;
                s.run_as_user = Some(1000);
                s.allow_privilege_escalation = nnp;
            });
            let st = run_to_exit(rt, "pod-13", &c).await;
            ids.push(st.id.clone());
            let lines = log_lines(&st.log_path);
            for want in [
                "Seccomp:\t2".to_string(),
                format!("NoNewPrivs:\t{}", u8::from(nnp.is_some())),
                "CapEff:\t0000000000000000".into(),
                format!("CapBnd:\t{DEFAULT_CAPS}"),
                "pong".into(),
            ] {
                assert!(
                    lines.contains(&format!("stdout F {want}")),
                    "{name} {want}: {lines:?}"
                );
            }
            assert!(userns_eperm(&lines), "{name}: {lines:?}");
        }

        // A process exec'd into a filtered container is filtered too.
        let mut c = busybox("long", "echo ready; exec sleep 1000");
        c.security.seccomp = SeccompProfile::RuntimeDefault;
        let id = rt.create_container("pod-13", &c).await.unwrap();
        rt.start_container(&id).await.unwrap();
        wait_log(rt, &id, "ready").await;
        let (code, out, _) = exec(
            rt,
            &id,
            &[
                "sh",
                "-c",
                "grep -E '^(Seccomp|CapBnd):' /proc/self/status; unshare -U true",
            ],
        )
        .await;
        // Filtered, and without the CAP_SYS_ADMIN it was installed with.
        assert_eq!(out, format!("CapBnd:\t{DEFAULT_CAPS}\nSeccomp:\t2\n"));
        assert_ne!(code, 0);
        ids.push(id);

        // Profiles from the node's disk are not supported: said so at create.
        let mut c = busybox("local", "true");
        c.security.seccomp = SeccompProfile::Localhost("profiles/audit.json".into());
        let err = rt.create_container("pod-13", &c).await.unwrap_err();
        assert!(
            matches!(err, orca_runtime::Error::CreateContainer { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("Localhost"), "{err}");

        rt.remove_sandbox("pod-13").await.unwrap();
        env.assert_clean(&ids);
    });
}

/// fsGroup as the kubelet applies it: an emptyDir becomes 2777 with the
/// group, a secret-like file volume keeps its file modes plus group read,
/// files a non-root container creates there get the group (setgid).
fn fs_group_owns_volumes_and_joins_the_groups() {
    let env = Env::new(14);
    block_on(async {
        let rt = &env.runtime;
        let mut sb = sandbox("pod-14", "fsgroup");
        let mut files = std::collections::BTreeMap::new();
        files.insert("token".to_string(), (b"s3cret".to_vec(), 0));
        files.insert("private".to_string(), (b"key".to_vec(), 0o400));
        sb.volumes.insert(
            "secret".into(),
            orca_runtime::VolumeSource::Files {
                files,
                default_mode: 0o644,
            },
        );
        sb.volumes.insert("scratch".into(), emptydir(false));
        sb.volumes.insert("memory".into(), emptydir(true));
        let host_dir = env.dir.path().join("host-data");
        std::fs::create_dir_all(&host_dir).unwrap();
        sb.volumes.insert(
            "host".into(),
            orca_runtime::VolumeSource::HostPath {
                path: host_dir.clone(),
            },
        );
        sb.fs_group = Some((2000, orca_runtime::FsGroupChangePolicy::Always));
        rt.run_sandbox(&sb).await.unwrap();
        let mut c = busybox(
            "look",
            "id -G; stat -c '%n %g %a' /scratch /memory /secret/token /secret/private; \
             touch /scratch/mine && stat -c '%n %u %g' /scratch/mine; cat /secret/private",
        );
        c.security.run_as_user = Some(1000);
        c.security.supplemental_groups = vec![2000];
        c.mounts = vec![
            mount("scratch", "/scratch"),
            mount("memory", "/memory"),
            orca_runtime::Mount {
                read_only: true,
                ..mount("secret", "/secret")
            },
            mount("host", "/host"),
        ];
        let st = run_to_exit(rt, "pod-14", &c).await;
        let lines = log_lines(&st.log_path);
        assert_eq!(
            lines,
            [
                "stdout F 0 2000",
                "stdout F /scratch 2000 2777",
                "stdout F /memory 2000 3777",
                "stdout F /secret/token 2000 644",
                "stdout F /secret/private 2000 440",
                "stdout F /scratch/mine 1000 2000",
                // The secret has no newline: its line stays partial.
                "stdout P key",
            ]
        );
        // A host path is the node's: fsGroup never changes it.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&host_dir).unwrap().gid(), 0);
        let ids = vec![st.id.clone()];
        rt.remove_sandbox("pod-14").await.unwrap();
        env.assert_clean(&ids);
    });
}
