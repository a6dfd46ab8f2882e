//! `/readyz` and `/livez` tell the truth about the datastore: a server on
//! its own single-member etcd answers 500 with kube-apiserver's
//! `[-]etcd failed: reason withheld` while etcd is frozen (SIGSTOP: the
//! check gives up after its timeout instead of hanging the probe) or gone
//! (SIGKILL), and ok again once etcd is back. The times are printed
//! (BENCHMARKS.md).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use orca_testkit::etcd::EtcdCluster;
use orca_testkit::orca::{Kubectl, Server, WAIT};
use orca_testkit::process::{wait_until, Signal};

const ORCA: &str = env!("CARGO_BIN_EXE_orca");
const FAILED: &str = "[-]etcd failed: reason withheld";

/// `kubectl get --raw PATH`, given up after 10 s: (success, stdout + stderr).
/// A probe that hung would end in kubectl's timeout, not in an answer.
fn raw(kubectl: &Kubectl, path: &str) -> (bool, String) {
    let out = kubectl.run(&["get", "--raw", path, "--request-timeout=10s"]);
    (out.success, format!("{}{}", out.stdout, out.stderr))
}

/// Waits until `/readyz?verbose` fails on etcd; returns how long it took.
fn wait_unready(kubectl: &Kubectl, since: Instant) -> Duration {
    let mut last = String::new();
    wait_until(
        "/readyz fails on etcd",
        WAIT,
        || {
            let (ok, out) = raw(kubectl, "/readyz?verbose");
            let failed = !ok && out.contains(FAILED);
            last = out;
            failed
        },
        String::new,
    );
    let elapsed = since.elapsed();
    // Every other check still passes: only the datastore is named.
    assert!(last.contains("[+]ping ok"), "{last}");
    assert!(
        last.contains("[-]etcd-readiness failed: reason withheld"),
        "{last}"
    );
    assert!(last.contains("readyz check failed"), "{last}");
    // kube-apiserver's /livez has the etcd check too.
    let (ok, out) = raw(kubectl, "/livez?verbose");
    assert!(!ok && out.contains(FAILED), "{out}");
    let (ok, out) = raw(kubectl, "/readyz/etcd");
    assert!(
        !ok && out.contains("internal server error: reason withheld"),
        "{out}"
    );
    elapsed
}

/// Waits until `/readyz` and `/livez` are ok again; returns how long it took.
fn wait_ready(kubectl: &Kubectl, server: &Server, since: Instant) -> Duration {
    wait_until(
        "/readyz is ok again",
        WAIT,
        || raw(kubectl, "/readyz").0,
        || server.process.log_tail(20),
    );
    let elapsed = since.elapsed();
    let (ok, out) = raw(kubectl, "/livez?verbose");
    assert!(ok && out.contains("[+]etcd ok"), "{out}");
    elapsed
}

#[test]
fn readyz_fails_while_the_datastore_is_frozen_or_gone() {
    let mut etcd = EtcdCluster::start(1);
    let endpoint = etcd.endpoints().remove(0);
    let server = Server::start(
        Path::new(ORCA),
        Ipv4Addr::LOCALHOST,
        &["--datastore-endpoint", &endpoint],
    );
    let kubectl = server.kubectl();
    let (ok, out) = raw(&kubectl, "/readyz?verbose");
    assert!(
        ok && out.contains("[+]etcd ok") && out.contains("[+]etcd-readiness ok"),
        "{out}"
    );

    // Frozen: connections open, no answers.
    let frozen = Instant::now();
    etcd.signal_member(0, Signal::SIGSTOP);
    let unready = wait_unready(&kubectl, frozen);
    let answered = Instant::now();
    let (ok, out) = raw(&kubectl, "/readyz");
    let probe = answered.elapsed();
    assert!(!ok, "{out}");
    let thawed = Instant::now();
    etcd.signal_member(0, Signal::SIGCONT);
    let ready = wait_ready(&kubectl, &server, thawed);
    eprintln!(
        "etcd frozen: /readyz failed after {unready:?} (one probe answered in {probe:?}); \
         ok {ready:?} after it thawed"
    );

    // Gone: connections refused.
    let killed = Instant::now();
    etcd.stop_member(0);
    let unready = wait_unready(&kubectl, killed);
    let restarted = Instant::now();
    etcd.start_member(0);
    let ready = wait_ready(&kubectl, &server, restarted);
    eprintln!("etcd killed: /readyz failed after {unready:?}; ok {ready:?} after its restart");

    // The server served on without its datastore and still does.
    let (ok, out) = raw(&kubectl, "/api/v1/namespaces/default");
    assert!(ok, "{out}");
}
