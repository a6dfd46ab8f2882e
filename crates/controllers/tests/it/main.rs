//! The crate's integration tests, one binary: each module was a test binary of its own.

mod common;
mod cronjob;
mod daemonset;
mod deployment;
mod endpoints;
mod gc;
mod ipam;
mod job;
mod leader_election;
mod node_lifecycle;
mod replicaset;
mod root_ca;
mod statefulset;
