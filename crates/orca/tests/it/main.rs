//! The crate's integration tests, one binary: each module was a test binary of its own.

mod agent_join;
mod cheatsheet;
mod common;
mod datastore_health;
mod debug;
mod ha_servers;
mod hostname;
mod jobs;
mod multinode;
mod node_health;
mod resource_proxy;
mod runtime_class;
mod services;
mod services_bench;
mod statefulsets;
mod streaming;
mod subpaths;
mod top;
mod two_servers;
mod virtual_nodes;
mod workloads;
