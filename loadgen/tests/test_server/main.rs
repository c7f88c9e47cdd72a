//! loadgen against an in-process HTTP server on port 0 whose behaviour each test chooses
//! ([`server`]): the binary as a user runs it, the route mix and targets, and open-loop
//! behaviour. The tests against the real service are in `tests/suspects.rs`.

mod cli;
mod mix_and_targets;
mod open_loop;
mod server;
