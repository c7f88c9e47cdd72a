//! The lab's checks, in two halves.
//!
//! **Tests** (`cargo test -p labcheck`): what the lab's log stack is configured to do. Loki,
//! Alloy and Grafana come only from an image registry that CI cannot reach, so their
//! configuration is checked without them: the provisioning YAML and the dashboard parse and
//! agree with `grafana/queries.json`; the Alloy pipeline's JSON paths (read from
//! `deploy/alloy/config.alloy`, never copied) find what the dashboard needs in lines written
//! by the real `service` binary; a line that is not JSON still ships; every image is pinned
//! and every third-party config names the upstream version it was written for; every metric
//! panel guards against parse errors, means the same at every zoom and shows the unit its
//! query yields; `.env` and the compose file's defaults agree. Those live in `tests/`.
//!
//! The checks are in `tests/logstack/` and in `tests/kubernetes/` (the Kubernetes port against
//! the compose lab); [`alloy`], [`pipeline`] and [`repo`] are what both suites read the configs
//! with.
//!
//! **The `labcheck` binary**: the assertions of the container checks
//! (`deploy/ci/containers.sh`) on what the running lab produced — the compose file as Compose
//! renders it ([`compose`]), loadgen's JSON reports, read through loadgen's own report types
//! ([`report`]), the fleet's JSON logs ([`logs`]) and the canary's tokio-console endpoint,
//! spoken to with the console's real gRPC client ([`console`]). Each check but the console's
//! is a pure function of what it read, returning a [`Verdict`]; the shell script stays glue.

pub mod alloy;
pub mod cli;
pub mod compose;
pub mod console;
pub mod logs;
pub mod pipeline;
pub mod repo;
pub mod report;
pub mod verdict;

pub use verdict::Verdict;
