//! What the topic modules share beyond `common`: the wait limit and
//! commands run in a pod through pods/exec.

use super::*;

pub(crate) const T: Duration = Duration::from_secs(60);

/// Runs a command through pods/exec; returns stdout and the exit code.
pub(crate) async fn exec(env: &Env, pod: &str, cmd: &[&str]) -> (String, Option<i32>) {
    use tokio::io::AsyncReadExt;
    let mut attached = env
        .pods()
        .exec(
            pod,
            cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &kube::api::AttachParams::default().stderr(false),
        )
        .await
        .expect("exec");
    let mut out = String::new();
    attached
        .stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let status = attached.take_status().unwrap().await;
    let code = status.map(|s| {
        if s.status.as_deref() == Some("Success") {
            0
        } else {
            s.details
                .and_then(|d| d.causes)
                .and_then(|c| {
                    c.into_iter()
                        .find(|c| c.reason.as_deref() == Some("ExitCode"))
                })
                .and_then(|c| c.message)
                .and_then(|m| m.parse().ok())
                .unwrap_or(-1)
        }
    });
    (out, code)
}

/// A shell script run through [`exec`].
pub(crate) async fn sh(env: &Env, pod: &str, script: &str) -> (String, Option<i32>) {
    exec(env, pod, &["sh", "-c", script]).await
}
