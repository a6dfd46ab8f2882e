//! A real etcd cluster of several members on loopback ports (Debian's
//! etcd-server), each member a process of its own that a test can stop and
//! start again by pid.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{free_port, wait_until, Process, Signal};

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    process: Option<Process>,
}

pub struct EtcdCluster {
    // Before `dir`: the members stop before their data goes.
    members: Vec<Member>,
    token: String,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until the cluster has a leader.
    pub fn start(size: usize) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("orca-etcd-")
            .tempdir()
            .unwrap();
        let members = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                process: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            token: format!("orca-test-{}", std::process::id()),
            dir,
            members,
        };
        for i in 0..size {
            cluster.start_member(i);
        }
        cluster.wait_healthy(Duration::from_secs(60));
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    /// Starts member `i` (again, after [`EtcdCluster::stop_member`]).
    pub fn start_member(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let data = self.data_dir(i);
        let log = self
            .dir
            .path()
            .join(format!("{}.log", self.members[i].name));
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let process = Process::spawn(
            Command::new("etcd")
                .args(["--name", &m.name, "--data-dir"])
                .arg(&data)
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &self.token])
                // Fast elections on loopback, as a LAN allows.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"]),
            &log,
        );
        self.members[i].process = Some(process);
    }

    /// Stops member `i` with SIGKILL.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].process.take() {
            p.kill();
        }
    }

    /// Sends `signal` to member `i`: SIGSTOP freezes it (its port stays
    /// open, nothing answers), SIGCONT thaws it.
    pub fn signal_member(&self, i: usize, signal: Signal) {
        if let Some(p) = &self.members[i].process {
            p.signal(signal);
        }
    }

    /// `http://127.0.0.1:PORT` of every member, for --datastore-endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The members' pids (None for a stopped member).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.members
            .iter()
            .map(|m| m.process.as_ref().map(Process::pid))
            .collect()
    }

    /// Whether member `i` answers `/health` with `"health":"true"` (it is
    /// in a cluster with a leader).
    pub fn healthy(&self, i: usize) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.members[i].client_port))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = write!(
            s,
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        let mut response = String::new();
        let _ = s.read_to_string(&mut response);
        response.contains("\"health\":\"true\"")
    }

    pub fn wait_healthy(&self, limit: Duration) {
        wait_until(
            "every running etcd member is healthy",
            limit,
            || {
                (0..self.members.len())
                    .filter(|i| self.members[*i].process.is_some())
                    .all(|i| self.healthy(i))
            },
            || {
                self.members
                    .iter()
                    .filter_map(|m| m.process.as_ref().map(|p| p.log_tail(15)))
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        );
    }
}
