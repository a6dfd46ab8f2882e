//! Binds pending pods to nodes through the API, like kube-scheduler.
