//! Checks, run by `cargo test`, of what the lab's log stack is configured to do.
//!
//! Loki, Alloy and Grafana come only from an image registry that CI cannot reach, so their
//! configuration is checked here without them: the provisioning YAML and the dashboard parse
//! and agree with `grafana/queries.json`; the Alloy pipeline's JSON paths (read from
//! `deploy/alloy/config.alloy`, never copied) find what the dashboard needs in lines written
//! by the real `service` binary; a line that is not JSON still ships; every image is pinned
//! and every third-party config names the upstream version it was written for; every metric
//! panel guards against parse errors, means the same at every zoom and shows the unit its
//! query yields; `.env` and the compose file's defaults agree.
//!
//! The checks are in `tests/logstack/` and in `tests/kubernetes/` (the Kubernetes port against
//! the compose lab). The library is what both suites read the configs with.

pub mod alloy;
pub mod pipeline;
pub mod repo;
