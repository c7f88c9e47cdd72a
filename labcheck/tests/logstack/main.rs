//! The log stack's checks, one module per concern. See the crate doc (`labcheck/src/lib.rs`).

mod alloy;
mod compose;
mod grafana;
mod pipeline;
mod service_lines;
mod support;
mod third_party;
