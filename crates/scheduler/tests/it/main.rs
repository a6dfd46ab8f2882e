//! The crate's integration tests, one binary: each module was a test binary of its own.

mod common;
mod leader_election;
mod scheduling;
