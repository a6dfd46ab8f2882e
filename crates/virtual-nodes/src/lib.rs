//! Simulated nodes (like kwok) for scale tests: leases and plausible pod status, no containers.
