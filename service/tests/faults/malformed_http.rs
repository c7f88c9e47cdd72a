//! Malformed and hostile HTTP: each request gets a 4xx or a closed connection, never a 5xx or
//! a hang, and the service answers the next ordinary request normally.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use test_support::{Server, DEADLINE};

use crate::{process::spawn, rawhttp::Conn};

/// What the server did with a request.
#[derive(Debug, PartialEq)]
enum Outcome {
    Status(u16),
    Closed,
}

impl Outcome {
    fn is_rejection(&self) -> bool {
        match self {
            Outcome::Status(status) => (400..500).contains(status),
            Outcome::Closed => true,
        }
    }
}

/// Reads until the server closes; a reset counts as closed. Fails if the server neither
/// answers nor closes within [`DEADLINE`].
fn read_outcome(mut stream: TcpStream) -> Outcome {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server neither answered nor closed within {DEADLINE:?}")
            }
            Err(_) => break, // reset
        }
    }
    match response
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
    {
        Some(status) => Outcome::Status(status.parse().unwrap()),
        None => Outcome::Closed,
    }
}

/// Sends `request` in one go (a write error means the server already closed) and reads.
fn exchange(addr: SocketAddr, request: &[u8]) -> Outcome {
    let mut stream = TcpStream::connect(addr).unwrap();
    let _ = stream.write_all(request);
    read_outcome(stream)
}

fn get_with(path: &[u8], headers: &[u8]) -> Vec<u8> {
    [
        b"GET ".as_slice(),
        path,
        b" HTTP/1.1\r\nHost: faults\r\nConnection: close\r\n",
        headers,
        b"\r\n",
    ]
    .concat()
}

/// The victim answers 200 on a fresh connection (a pooled one could race actix-web's 5 s
/// keep-alive timeout, which is not what these tests are about).
async fn assert_still_serving(app: &Server) {
    let mut conn = Conn::connect(app.addr).await.unwrap();
    assert_eq!(conn.get("/api/orders/1").await.unwrap(), 200);
}

async fn assert_rejected(app: &Server, case: &str, request: &[u8]) {
    let outcome = exchange(app.addr, request);
    assert!(outcome.is_rejection(), "{case}: {outcome:?}");
    assert_still_serving(app).await;
}

#[tokio::test]
async fn oversized_headers_are_rejected_and_the_service_stays_up() {
    let app = spawn(&[]);
    let many: String = (0..1024)
        .map(|i| format!("X-H{i:04}: {}\r\n", "b".repeat(54)))
        .collect();
    assert!(many.len() >= 64 * 1024);
    assert_rejected(
        &app,
        "1024 headers, 64 KB",
        &get_with(b"/api/orders/1", many.as_bytes()),
    )
    .await;
    // Beyond actix-http's fixed 128 KiB limit on a request head.
    let huge = format!("X-Big: {}\r\n", "a".repeat(256 * 1024));
    assert_rejected(
        &app,
        "one 256 KB header",
        &get_with(b"/api/orders/1", huge.as_bytes()),
    )
    .await;
}

/// A single 64 KB header: actix-http accepts request heads up to 128 KiB, so the service's own
/// limit (`startup::MAX_HEADER_BYTES`) answers 431.
#[tokio::test]
async fn a_single_64_kb_header_is_rejected() {
    let app = spawn(&[]);
    let one_big = format!("X-Big: {}\r\n", "a".repeat(64 * 1024));
    assert_rejected(
        &app,
        "one 64 KB header",
        &get_with(b"/api/orders/1", one_big.as_bytes()),
    )
    .await;
}

#[tokio::test]
async fn a_10_kb_path_is_rejected_and_the_service_stays_up() {
    let app = spawn(&[]);
    let digits = format!("/api/orders/{}", "1".repeat(10 * 1024));
    assert_rejected(&app, "10 KB order id", &get_with(digits.as_bytes(), b"")).await;
    let name = format!("/config/sync/{}", "a".repeat(10 * 1024));
    assert_rejected(&app, "10 KB config name", &get_with(name.as_bytes(), b"")).await;
    let segments = "/x".repeat(5 * 1024);
    assert_rejected(
        &app,
        "5 000 path segments",
        &get_with(segments.as_bytes(), b""),
    )
    .await;
}

#[tokio::test]
async fn invalid_utf8_in_the_path_is_rejected_and_the_service_stays_up() {
    let app = spawn(&[]);
    for path in [
        b"/config/sync/\xff\xfe.toml".as_slice(),
        b"/api/orders/\xc3\x28",
        b"/config/sync/%ff%fe.toml",
        b"/config/async/%c3%28",
        b"/api/orders/%ff",
    ] {
        let case = format!("path {}", String::from_utf8_lossy(path));
        assert_rejected(&app, &case, &get_with(path, b"")).await;
    }
}

/// A client that sends its headers one byte at a time and never finishes: the server must cut
/// it off (actix-web's client request timeout), and serve everyone else meanwhile.
#[tokio::test]
async fn a_client_trickling_headers_byte_by_byte_is_cut_off_while_others_are_served() {
    let app = spawn(&[]);
    let stream = TcpStream::connect(app.addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let trickle = std::thread::spawn(move || {
        let head = b"GET /api/orders/1 HTTP/1.1\r\nHost: faults\r\n".iter();
        let endless = b"X-Slow: 1\r\n".iter().cycle();
        let mut sent = 0usize;
        for byte in head.chain(endless) {
            if stop.load(Ordering::Relaxed) || writer.write_all(&[*byte]).is_err() {
                break;
            }
            sent += 1;
            // The pace under test, not synchronisation.
            std::thread::sleep(Duration::from_millis(20));
        }
        sent
    });
    let reader = std::thread::spawn(move || read_outcome(stream));

    // While the slow client holds its connection, ordinary requests are answered.
    for _ in 0..10 {
        assert_still_serving(&app).await;
    }
    let start = Instant::now();
    while !reader.is_finished() {
        assert!(
            start.elapsed() < DEADLINE,
            "the slow client was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outcome = reader.join().unwrap();
    done.store(true, Ordering::Relaxed);
    let sent = trickle.join().unwrap();
    assert!(
        outcome.is_rejection(),
        "slow client after {sent} bytes: {outcome:?}"
    );
    assert_still_serving(&app).await;
}
