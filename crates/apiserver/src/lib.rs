//! The Kubernetes REST API over HTTPS, backed by orca-store.
