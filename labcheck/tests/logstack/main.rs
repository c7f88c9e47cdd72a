//! The log stack's checks, one module per concern. See the crate doc (`labcheck/src/lib.rs`).

mod compose;
mod grafana;
mod service_lines;
mod third_party;
