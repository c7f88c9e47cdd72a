//! The lab's load generator, as a library so that its tests drive it in-process.
//!
//! The pipeline is schedule → send → record → report, one module each:
//! [`schedule`] decides *when* request `i` should start (open loop: `t0 + i/rate`; closed loop:
//! as soon as a connection is free), [`send`] owns one hyper HTTP/1.1 keep-alive connection per
//! worker, [`record`] folds outcomes into HdrHistograms per route and per target instance, and
//! [`report`] / [`render`] turn those into JSON and a table; at the end of a round [`suspects`]
//! joins the slow requests with each instance's record of blocked workers. [`run()`] wires them together; the
//! statistics in [`stats`] are pure functions with unit tests.

pub mod cli;
pub mod error;
pub mod links;
pub mod progress;
pub mod record;
pub mod render;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod send;
pub mod stats;
pub mod suspects;
pub mod target;

pub use error::Error;
pub use run::{run, RunConfig};
