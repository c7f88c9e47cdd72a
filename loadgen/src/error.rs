//! The library's errors. Each one is a single line a person can act on. Every one of them
//! means "loadgen could not do what was asked" and exits with 2; exit code 1 is reserved for
//! a run that completed but failed a gate (`--max-p99`, `--max-error-rate`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid target '{input}': {reason}")]
    Target { input: String, reason: String },
    #[error("invalid --resolve '{input}': {reason}")]
    Resolve { input: String, reason: String },
    #[error("cannot resolve host '{host}': {reason}")]
    Lookup { host: String, reason: String },
    #[error("scenario file {}: {reason}", path.display())]
    Scenario { path: PathBuf, reason: String },
    #[error("target {target} is unreachable: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("cannot write the report to {}: {source}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error: always 2 (1 means a gate failed).
    pub fn exit_code(&self) -> u8 {
        2
    }
}
