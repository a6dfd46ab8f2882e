//! Machines on one LAN, simulated on this one: a bridge in the host's
//! network namespace (holding `172.30.K.1/24`) and, per machine, a network
//! namespace of its own joined to it over a veth (`eth0`, `172.30.K.N/24`).
//! A machine's processes run under `nsenter --net` (not `ip netns exec`,
//! which remounts /sys and so hides the cgroup filesystem), sharing the
//! host's filesystem, cgroups and /proc.
//!
//! The namespaces have no default route: traffic goes only to the LAN and
//! to what the machines route themselves (pod networks).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Lan {
    pub bridge: String,
    /// K in 172.30.K.0/24.
    subnet: u8,
    next_host: std::sync::atomic::AtomicU8,
}

impl Lan {
    /// Claims a free bridge `orcalanK` (K from 0 to 249; tests in parallel
    /// get different ones) and gives it `172.30.K.1/24`.
    pub fn new() -> Lan {
        let start = (std::process::id() % 250) as u8;
        for i in 0..250u16 {
            let k = ((start as u16 + i) % 250) as u8;
            let bridge = format!("orcalan{k}");
            if !ip(&["link", "add", &bridge, "type", "bridge"])
                .status
                .success()
            {
                continue;
            }
            ip_ok(&["addr", "add", &format!("172.30.{k}.1/24"), "dev", &bridge]);
            ip_ok(&["link", "set", &bridge, "up"]);
            return Lan {
                bridge,
                subnet: k,
                next_host: 2.into(),
            };
        }
        panic!("no free orcalanN bridge name: delete stale ones with `ip link delete orcalanN`");
    }

    /// The host's address on the LAN.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(172, 30, self.subnet, 1)
    }

    /// A new machine on the LAN: network namespace `<bridge>-<name>`.
    pub fn add_machine(&self, name: &str) -> Machine {
        let n = self
            .next_host
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let netns = format!("{}-{name}", self.bridge);
        let _ = ip(&["netns", "delete", &netns]);
        ip_ok(&["netns", "add", &netns]);
        let host_end = format!("{}h{n}", self.bridge);
        let _ = ip(&["link", "delete", &host_end]);
        ip_ok(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip_ok(&["link", "set", &host_end, "master", &self.bridge, "up"]);
        let address = Ipv4Addr::new(172, 30, self.subnet, n);
        let machine = Machine {
            name: name.to_string(),
            netns,
            ip: address,
        };
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &format!("{address}/24"), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
        ] {
            let out = machine.command("ip").args(&args).output().unwrap();
            assert!(out.status.success(), "ip {args:?} in {}", machine.netns);
        }
        machine
    }
}

impl Default for Lan {
    fn default() -> Lan {
        Lan::new()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = ip(&["link", "delete", &self.bridge]);
    }
}

/// A simulated machine: a network namespace on the LAN.
pub struct Machine {
    pub name: String,
    /// Its name under /run/netns.
    pub netns: String,
    pub ip: Ipv4Addr,
}

impl Machine {
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    /// `program` to be run in this machine's network namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path().display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs `program args...` here and returns (success, stdout + stderr).
    pub fn run(&self, program: &str, args: &[&str]) -> (bool, String) {
        let out = self.command(program).args(args).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The machine's IPv4 routes, as `ip -4 route` prints them.
    pub fn routes(&self) -> String {
        self.run("ip", &["-4", "route"]).1
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // The veth goes with the namespace.
        let _ = ip(&["netns", "delete", &self.netns]);
    }
}
