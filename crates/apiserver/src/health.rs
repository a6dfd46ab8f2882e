//! `/healthz`, `/livez` and `/readyz` as kube-apiserver serves them: `ok`,
//! or with `?verbose` one `[+]name ok` line per check and `<endpoint> check
//! passed`; `?exclude=name` skips a check (with a warning line for names
//! that match none); `/<endpoint>/<check>` runs one check; a failing check
//! makes the answer 500 with `[-]name failed: reason withheld`.

use std::time::Duration;

use bytes::Bytes;
use http::Response;

use crate::server::{bytes_response, parse_query, Body, State};
use crate::status::ApiError;

/// The checks of each endpoint, in kube-apiserver's order (those Orca has).
fn checks(endpoint: &str) -> &'static [&'static str] {
    match endpoint {
        "readyz" => &[
            "ping",
            "log",
            "etcd",
            "etcd-readiness",
            "informer-sync",
            "poststarthook/start-system-namespaces-controller",
            "poststarthook/rbac/bootstrap-roles",
            "shutdown",
        ],
        _ => &[
            "ping",
            "log",
            "etcd",
            "poststarthook/start-system-namespaces-controller",
            "poststarthook/rbac/bootstrap-roles",
        ],
    }
}

/// How long the datastore has to answer a health check, as kube-apiserver's
/// `--etcd-healthcheck-timeout` and `--etcd-readycheck-timeout` (2 s): a
/// datastore that hangs fails the check instead of hanging the probe.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

async fn passes(state: &State, check: &str) -> bool {
    match check {
        // The store answers in time.
        "etcd" | "etcd-readiness" => matches!(
            tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.current_revision()).await,
            Ok(Ok(_))
        ),
        // The watch cache has loaded (it is built before the server listens).
        "informer-sync" => state.cache.revision() > 0,
        // Namespaces and the bootstrap policy are in place before the
        // server listens; ping, log and shutdown hold while it serves.
        _ => true,
    }
}

fn text(code: u16, s: String) -> Response<Body> {
    let mut r = bytes_response(code, "text/plain; charset=utf-8", Bytes::from(s));
    r.headers_mut().insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    r
}

/// Answers `/<endpoint>[/<check...>]`.
pub async fn serve(
    state: &State,
    endpoint: &str,
    check: &[&str],
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let all = checks(endpoint);
    if !check.is_empty() {
        let name = check.join("/");
        if !all.contains(&name.as_str()) {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        return Ok(if passes(state, &name).await {
            text(200, "ok".into())
        } else {
            text(500, "internal server error: reason withheld\n".into())
        });
    }
    let q = parse_query(query);
    let verbose = q.contains_key("verbose");
    let excluded: Vec<&str> = q
        .get("exclude")
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let names: Vec<&str> = all
        .iter()
        .copied()
        .filter(|c| !excluded.contains(c))
        .collect();
    // At once, so a hanging datastore costs one timeout, not one per check.
    let results = futures::future::join_all(names.iter().map(|n| passes(state, n))).await;
    let mut out = String::new();
    let mut failed = false;
    for (name, passed) in names.iter().zip(results) {
        if passed {
            out.push_str(&format!("[+]{name} ok\n"));
        } else {
            failed = true;
            out.push_str(&format!("[-]{name} failed: reason withheld\n"));
        }
    }
    let unknown: Vec<String> = excluded
        .iter()
        .filter(|e| !all.contains(e))
        .map(|e| format!("{e:?}"))
        .collect();
    if !unknown.is_empty() {
        out.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            unknown.join(",")
        ));
    }
    if failed {
        out.push_str(&format!("{endpoint} check failed\n"));
        return Ok(text(500, out));
    }
    Ok(if verbose {
        out.push_str(&format!("{endpoint} check passed\n"));
        text(200, out)
    } else {
        text(200, "ok".into())
    })
}
