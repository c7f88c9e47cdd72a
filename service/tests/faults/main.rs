//! Fault and bad-input tests (issue 9): the logs survive bursts, signals and broken log
//! files, and the service survives malformed HTTP and ten thousand held connections.
//!
//! Most tests drive the real `service` binary. [`helpers`] is the API suite's `spawn_app()`
//! (stdout through a pipe, parsed line by line); [`process`] starts the binary with stdout
//! redirected to a file instead, like a container runtime does, because two checks need what
//! a line reader hides — the raw bytes after SIGTERM (a partial last line) — or the process id
//! (its memory).

#[path = "../api/helpers.rs"]
#[allow(dead_code)] // this target uses only part of the API suite's helpers
mod helpers;

mod burst;
mod connections;
mod log_files;
mod malformed_http;
mod process;
mod rawhttp;
mod sigterm;
