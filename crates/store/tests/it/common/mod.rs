//! Fixtures shared by the store's integration tests.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::any::Any;
use std::sync::Arc;

use orca_store::etcd::EtcdStore;
use orca_store::sqlite::{SqliteOptions, SqliteStore};
use orca_store::Store;

/// A store and a key prefix that no other test uses, plus whatever must
/// live as long as the store (temp dirs, child processes).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub prefix: String,
    _guard: Box<dyn Any + Send>,
}

impl Fixture {
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}

/// A fresh embedded store in a temp dir.
pub async fn sqlite(test: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let store = SqliteStore::open(&dir.path().join("db/state.db"), SqliteOptions::default())
        .expect("opening the SQLite store");
    Fixture {
        store: Arc::new(store),
        prefix: format!("/registry/{test}/"),
        _guard: Box::new(dir),
    }
}

/// The URL of the shared test etcd, from ORCA_TEST_ETCD.
pub fn etcd_endpoint() -> String {
    std::env::var("ORCA_TEST_ETCD").unwrap_or_else(|_| {
        panic!(
            "ORCA_TEST_ETCD is not set: run the tests through scripts/test.sh, or start etcd \
             and export ORCA_TEST_ETCD=http://127.0.0.1:PORT"
        )
    })
}

/// The shared test etcd named by ORCA_TEST_ETCD, with a prefix unique to
/// this test run.
pub async fn etcd(test: &str) -> Fixture {
    let endpoint = etcd_endpoint();
    let store = EtcdStore::connect(std::slice::from_ref(&endpoint))
        .await
        .unwrap_or_else(|e| panic!("connecting to ORCA_TEST_ETCD={endpoint}: {e}"));
    Fixture {
        store: Arc::new(store),
        prefix: format!("/orca-test/{}/{test}/", unique()),
        _guard: Box::new(()),
    }
}

/// A private etcd server, for cases that affect the whole keyspace (such as
/// compaction) and so must not share one with other tests.
pub async fn etcd_private(test: &str) -> Fixture {
    let server = EtcdServer::start();
    let store = server.connect().await;
    Fixture {
        store: Arc::new(store),
        prefix: format!("/{test}/"),
        _guard: Box::new(server),
    }
}

pub fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

/// An etcd process on loopback ports with a temporary data dir; killed (by
/// its pid) when dropped.
pub struct EtcdServer {
    child: std::process::Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl EtcdServer {
    pub fn start() -> EtcdServer {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = std::process::Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "orca-test"])
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("orca-test={peer_url}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting etcd: install Debian's etcd-server (scripts/test.sh does)");
        EtcdServer {
            child,
            endpoint,
            _dir: dir,
        }
    }

    pub async fn connect(&self) -> EtcdStore {
        let mut last_err = None;
        for _ in 0..100 {
            match EtcdStore::connect(std::slice::from_ref(&self.endpoint)).await {
                Ok(store) => return store,
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "etcd at {} never answered: {:?}",
            self.endpoint,
            last_err.unwrap()
        );
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
