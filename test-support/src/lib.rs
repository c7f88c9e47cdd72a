//! What every test suite that starts the real `service` binary needs, written once: the
//! command with an empty environment and a loopback port chosen by the OS ([`command`]), the
//! process owned by the test and killed when it is dropped ([`Process`]), and a started
//! [`Server`] that learned its address from its `listening` line and collects every stdout
//! line ([`LogLine`]) for the test to wait on.
//!
//! Nothing here sleeps to synchronise: a wait for a line is woken by the line itself, and the
//! other waits poll against a deadline. Each suite keeps its own settings and its domain
//! helpers (an API client, raw HTTP, the lines of one request).

mod binary;
mod lines;
mod process;

use std::{
    ffi::OsStr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

pub use binary::service_binary;
pub use lines::{listening_addr, LogLine};
pub use process::{proc_status_kib, Process, Server};

/// How long one wait of the service's suites may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// `binary` with an empty environment except `LISTEN_ADDR=127.0.0.1:0`, and no stdin: the
/// suite adds its settings, and the service tells its port in its `listening` line.
pub fn command(binary: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null());
    cmd
}

/// A loopback port that was free a moment ago, for a listener whose port a test must know
/// before the start (a canary build's tokio-console endpoint).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// A request id unique to this test run, starting with `tag`.
pub fn fresh_id(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::now_v7().simple())
}

/// Calls `probe` every few milliseconds until it returns `Some`; `None` once `deadline` passed.
pub fn poll<T>(deadline: Instant, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
