//! Real containers, as root. The test binary doubles as the shim, pause
//! and exec helper (it calls `run_internal_command_if_requested` first),
//! which is why this target has its own `main` (harness = false).

mod common;

use std::time::Duration;

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use orca_runtime::{ContainerState, Runtime};

fn main() {
    orca_runtime::run_internal_command_if_requested();
    let args = Arguments::from_args();
    let tests: Vec<(&str, fn())> = vec![(
        "container_is_isolated_and_logs_in_cri_format",
        container_is_isolated_and_logs_in_cri_format,
    )];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            Trial::test(name, move || {
                std::panic::catch_unwind(f).map_err(|e| {
                    Failed::from(
                        e.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default(),
                    )
                })
            })
        })
        .collect();
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
             test -e {} && echo host-visible || echo host-hidden; echo oops >&2; hostname",
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
        let raw = std::fs::read_to_string(&st.log_path).unwrap();
        let ts = raw.split(' ').next().unwrap();
        assert!(
            ts.ends_with('Z') && ts.contains('T') && ts.len() == 30,
            "{ts}"
        );
        rt.remove_container(&id).await.unwrap();
        rt.remove_sandbox("pod-1").await.unwrap();
        env.assert_clean(&[id], &[]);
    });
}
