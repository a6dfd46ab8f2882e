//! The crate's integration tests, one binary: each module was a test binary of its own.

mod auth;
mod common;
mod import;
mod pull;
mod remove;
mod tls;
mod unpack;
