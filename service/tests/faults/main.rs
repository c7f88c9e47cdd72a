//! Fault and bad-input tests (issue 9): the logs survive bursts, signals and broken log
//! files, and the service survives malformed HTTP and ten thousand held connections.
//!
//! Most tests drive the real `service` binary, started by [`process`]: with stdout through a
//! pipe, parsed line by line, or redirected to a file instead, like a container runtime does,
//! where a check needs what a line reader hides.

mod burst;
mod connections;
mod log_files;
mod malformed_http;
mod process;
mod rawhttp;
mod sigterm;
