//! `labcheck console` against a real console-subscriber server in this process: it sees the
//! task spans of a runtime instrumented under `tokio_unstable` (set for every build in
//! `.cargo/config.toml`), and `--short-locations` fails where no actix-server task exists.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use tracing_subscriber::prelude::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// A loopback address nothing listens on yet.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Polls until the console's server thread accepts connections.
fn wait_until_listening(addr: SocketAddr) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < DEADLINE,
            "the console never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_probe_sees_task_spans_of_a_real_console_and_requires_actix_for_short_locations() {
    let addr = free_addr();
    let layer = console_subscriber::ConsoleLayer::builder()
        .server_addr(addr)
        .publish_interval(Duration::from_millis(100))
        .spawn();
    // Thread-local, and a current-thread runtime: every task below is spawned on this thread.
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    wait_until_listening(addr);
    runtime.block_on(async {
        let idle = tokio::spawn(std::future::pending::<()>());
        let target = addr.to_string();

        let v = labcheck::console::probe(&target, DEADLINE, false).await;
        assert!(v.passed(), "{v:?}");

        let v = labcheck::console::probe(&target, DEADLINE, true).await;
        let why = v.failure().expect("no actix-server task here");
        assert!(
            why.starts_with(&format!("{target}: no actix-server task among")),
            "{why}"
        );
        idle.abort();
    });
}
