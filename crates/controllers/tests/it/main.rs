//! The crate's integration tests, one binary: each module was a test binary of its own.

mod deployment;
mod endpoints;
mod gc;
mod ipam;
mod leader_election;
mod node_lifecycle;
mod replicaset;
mod root_ca;
