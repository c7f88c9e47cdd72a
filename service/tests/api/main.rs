//! Black-box tests of the service: the real `service` binary on a free loopback port, driven
//! over HTTP, its JSON log lines read from its stdout.

mod blocking;
mod config_names;
mod console;
mod health;
mod helpers;
mod logs;
mod request_ids;
mod shutdown;
mod stacks;
mod watchdog;
