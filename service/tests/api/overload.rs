//! A lock route under more load than it can serve sheds it (a bounded wait, then a 503), and a
//! waiting handler whose client has gone is dropped instead of doing work nobody reads. Timing
//! assertions are generous ratios of the hold time.

use std::{
    io::Write,
    net::TcpStream,
    time::{Duration, Instant},
};

use test_support::fresh_id;

use crate::helpers::{raw_get, spawn_app, TestApp};

/// The hold every request asks for in the overload test.
const HOLD_MS: u64 = 200;
/// The longest a request may take when the route sheds: the wait bound (the hold plus 100 ms)
/// plus its own hold.
const BOUND: Duration = Duration::from_millis(2 * HOLD_MS + 100);
/// Far more than one lock serves in the time a request may take (one per hold).
const CONCURRENT: usize = 60;

/// One request to `/lock/tokio?hold_ms=HOLD_MS`: (status, latency, body).
async fn lock_request(app: &TestApp) -> (u16, Duration, String) {
    let sent = Instant::now();
    let response = app
        .client
        .get(app.url(&format!("/lock/tokio?hold_ms={HOLD_MS}")))
        // Far beyond the bound: without shedding, most of these would time out here.
        .timeout(BOUND * 6)
        .send()
        .await
        .expect("a request to /lock/tokio did not end within 6x its bound");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, sent.elapsed(), body)
}

#[tokio::test]
async fn lock_tokio_sheds_what_it_cannot_serve_and_keeps_no_backlog() {
    let app = spawn_app(&[]).await;
    // A first request warms the process up, so the RSS baseline includes its first allocations.
    assert_eq!(lock_request(&app).await.0, 200);
    let rss_before = app.rss_kib();

    let requests: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let app = &app;
            lock_request(app)
        })
        .collect();
    let outcomes = futures_util::future::join_all(requests).await;

    let (mut served, mut shed) = (0, 0);
    for (status, latency, body) in &outcomes {
        assert!(
            *latency < BOUND * 3,
            "a request took {latency:?}, the bound is {BOUND:?}"
        );
        match status {
            200 => served += 1,
            503 => {
                let json: serde_json::Value = serde_json::from_str(body).unwrap();
                assert!(
                    json["error"].as_str().unwrap().contains("gave up"),
                    "{body}"
                );
                shed += 1;
            }
            other => panic!("status {other}: {body}"),
        }
    }
    assert!(served >= 1, "nothing was served");
    assert!(shed >= 1, "nothing was shed: {served} served");

    // No backlog: the lock is free at once, so a probe is served within its own bound.
    let (status, latency, body) = lock_request(&app).await;
    assert_eq!(status, 200, "{body}");
    assert!(latency < BOUND * 3, "the probe took {latency:?}");
    let rss_after = app.rss_kib();
    println!("RSS {rss_before} KiB before {CONCURRENT} requests, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS {rss_before} KiB before the load, {rss_after} KiB after"
    );
}

/// Sends `path` on a raw connection and returns the open stream (the client, still waiting).
fn start_raw(app: &TestApp, path: &str, request_id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).unwrap();
    let request = raw_get(path, &format!("x-request-id: {request_id}\r\n"));
    stream.write_all(&request).unwrap();
    stream
}

fn message_of(app: &TestApp, request_id: &str, message: &str) -> bool {
    app.lines_of(request_id)
        .iter()
        .any(|l| l.message() == Some(message))
}

#[tokio::test]
async fn a_lock_waiter_whose_client_left_is_dropped_and_never_takes_the_lock() {
    let app = spawn_app(&[]).await;
    let holder_id = fresh_id("holder");
    let holder = app.hold_lock("/lock/tokio?hold_ms=1500", &holder_id).await;

    let waiter_id = fresh_id("waiter");
    let waiter = start_raw(&app, "/lock/tokio?hold_ms=1500", &waiter_id);
    app.wait_for_event(&waiter_id, "waiting for lock").await;
    drop(waiter); // the client gives up

    let abandoned = app.wait_for_event(&waiter_id, "request abandoned").await;
    let fields = &abandoned.json.unwrap()["fields"];
    assert_eq!(fields["waiting_for"], "lock", "{fields}");
    // Dropped when its client left, long before its own 1.6 s bound.
    assert!(fields["waited_ms"].as_u64().unwrap() < 1500, "{fields}");

    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    app.wait_for_event(&holder_id, "request finished").await;
    assert!(
        !message_of(&app, &waiter_id, "lock acquired"),
        "the abandoned waiter took the lock:\n{}",
        app.dump()
    );
}

#[tokio::test]
async fn a_lock_holder_whose_client_left_releases_the_lock_early() {
    let app = spawn_app(&[]).await;
    let holder_id = fresh_id("holder");
    let holder = start_raw(&app, "/lock/tokio?hold_ms=2000", &holder_id);
    app.wait_for_event(&holder_id, "lock acquired").await;
    drop(holder);
    let abandoned = app.wait_for_event(&holder_id, "request abandoned").await;
    assert_eq!(
        abandoned.json.unwrap()["fields"]["waiting_for"],
        "lock hold"
    );

    // The probe waits at most 10 + 100 ms: it is served only if the lock was released.
    let probe = app.get("/lock/tokio?hold_ms=10").await;
    assert_eq!(
        probe.status(),
        200,
        "the lock is still held although its holder's client has gone: {}",
        probe.text().await.unwrap()
    );
}
