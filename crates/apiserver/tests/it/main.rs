//! The crate's integration tests, one binary: each module was a test binary of its own.

mod bad_input;
mod client;
mod common;
mod dry_run;
mod ephemeral_containers;
mod eviction;
mod inflight;
mod kubectl;
mod list_scale;
mod metrics;
mod node_identity;
mod pod_lifecycle;
mod pod_security;
mod protobuf;
mod proxy;
mod rbac;
mod runtime_class;
mod server_side_apply;
mod service_accounts;
mod service_allocation;
mod services;
mod storage;
mod workloads_api;
