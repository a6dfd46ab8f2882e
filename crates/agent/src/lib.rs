//! The node agent (kubelet): runs the pods bound to its node through orca-runtime.
