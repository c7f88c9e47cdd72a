//! The lab's actix-web service: one fast "victim" route whose tail latency the lab watches,
//! beside a zoo of handlers that block an actix worker thread, each next to its fix.
//!
//! actix-web runs one single-threaded tokio runtime per worker thread and hands every accepted
//! connection to one worker for its whole life. There is no work stealing: while a handler
//! blocks its worker, every other connection of that worker waits. That is the tail the lab
//! reproduces, and these modules are the parts that show it.

pub mod config;
#[cfg(feature = "console")]
pub mod console;
pub mod errors;
pub mod healthcheck;
pub mod request_id;
pub mod request_telemetry;
pub mod routes;
pub mod startup;
pub mod telemetry;
pub mod watchdog;
