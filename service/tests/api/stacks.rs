//! Culprit stacks, black-box: the `worker blocked` line of each bug carries the stack of the
//! code that blocks, captured while it blocks, and the signal that takes it changes nothing the
//! handler sees. `GET /debug/blocked` serves the same blocks with their intervals.

use std::time::{Duration, Instant};

use test_support::{fresh_id, LogLine};

use crate::helpers::{spawn_app, TestApp};

/// The stack on request `id`'s line `message`, waiting for the line first. The id is read from
/// the line's own fields: a warning written after its poll already ended is outside the span.
async fn stack_of(app: &TestApp, id: &str, message: &str) -> String {
    let line = app
        .wait_for_line(|l| {
            l.message() == Some(message)
                && l.json.as_ref().unwrap()["fields"]["request_id"].as_str() == Some(id)
        })
        .await;
    line.json.as_ref().unwrap()["fields"]["stack"]
        .as_str()
        .unwrap_or_else(|| panic!("no stack on {message:?}: {:?}", line.raw))
        .to_owned()
}

fn blocked_line(app: &TestApp, id: &str) -> LogLine {
    app.lines_of(id)
        .into_iter()
        .find(|l| l.message() == Some("worker blocked"))
        .unwrap_or_else(|| panic!("no worker blocked line for {id}:\n{}", app.dump()))
}

/// Blocks last this long where a test also reads the closing line's shared frames: the samples
/// at 2× and 4× the threshold must be symbolized while the block goes on, and symbolizing a
/// debug build on a loaded test machine can take a few hundred milliseconds.
const LONG_BLOCK_MS: &str = "1500";

/// Capture turns on after its start-up self-test; the tests wait for its line.
async fn spawn_capturing_app(extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("BLOCKED_STACKS", "true")];
    settings.extend_from_slice(extra);
    let app = spawn_app(&settings).await;
    app.wait_for_line(|l| l.message() == Some("blocked-stack capture on"))
        .await;
    app
}

#[tokio::test]
async fn a_config_sync_block_names_the_sleep_and_read_config_blocking_and_the_body_is_intact() {
    let app = spawn_capturing_app(&[("LONG_POLL_MS", "50"), ("SLOW_DISK_MS", LONG_BLOCK_MS)]).await;
    let id = fresh_id("stack-sync");
    let started = Instant::now();
    let response = app.get_with_id("/config/sync/app.toml", &id).await;
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sample-config/app.toml"
    ))
    .unwrap();
    assert_eq!(body.as_ref(), file.as_slice(), "the body changed");
    assert!(
        took >= Duration::from_millis(300),
        "the sleep was cut short: {took:?}"
    );
    let stack = stack_of(&app, &id, "worker blocked").await;
    let sleep = stack
        .find("sleep")
        .unwrap_or_else(|| panic!("no sleep in {stack}"));
    let reader = stack
        .find("read_config_blocking")
        .unwrap_or_else(|| panic!("no read_config_blocking in {stack}"));
    assert!(sleep < reader, "innermost first: {stack}");
    let fields = &blocked_line(&app, &id).json.unwrap()["fields"];
    assert!(
        fields["stack_raw"]
            .as_str()
            .is_some_and(|raw| raw.contains("+0x")),
        "{fields}"
    );
    // The closing line carries the frames all samples (1×, 2×, 4× the threshold) shared.
    let ended = app
        .wait_for_event(&id, "blocked poll ended")
        .await
        .json
        .unwrap();
    assert!(ended["fields"]["samples"].as_u64().unwrap() >= 2, "{ended}");
    assert!(
        ended["fields"]["stack"]
            .as_str()
            .unwrap()
            .contains("read_config_blocking"),
        "{ended}"
    );
}

#[tokio::test]
async fn every_stack_of_a_cpu_loop_names_the_loop() {
    let app = spawn_capturing_app(&[("LONG_POLL_MS", "50")]).await;
    let mut stacks = Vec::new();
    for round in 0..3 {
        let id = fresh_id(&format!("stack-cpu-{round}"));
        app.get_with_id(&format!("/cpu/inline?ms={LONG_BLOCK_MS}"), &id)
            .await;
        app.wait_for_event(&id, "blocked poll ended").await;
        for line in app.lines_of(&id) {
            let fields = &line.json.as_ref().unwrap()["fields"];
            if matches!(
                line.message(),
                Some("worker blocked" | "blocked poll ended")
            ) {
                stacks.push(fields["stack"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    // A spinning thread answers when the kernel next runs it; on a loaded test machine that
    // can exceed the capture's wait ("unavailable"). Every stack that was taken names the loop.
    let taken: Vec<&String> = stacks
        .iter()
        .filter(|s| !s.is_empty() && !s.starts_with("unavailable"))
        .collect();
    assert!(!taken.is_empty(), "no stack was taken: {stacks:?}");
    for stack in taken {
        assert!(stack.contains("burn_cpu"), "{stack}");
    }
}

#[tokio::test]
async fn a_std_mutex_waiters_stack_shows_the_lock_wait_under_its_handler() {
    let app = spawn_capturing_app(&[("LONG_POLL_MS", "150")]).await;
    let holder = fresh_id("stack-holder");
    let holding = app.hold_lock("/lock/std", &holder).await;
    let waiter = fresh_id("stack-waiter");
    app.get_with_id("/lock/std", &waiter).await;
    holding.await.unwrap().unwrap();
    let stack = stack_of(&app, &waiter, "worker blocked").await;
    let wait = stack
        .find("lock_std_bounded")
        .unwrap_or_else(|| panic!("{stack}"));
    let handler = stack
        .find("lock_std")
        .filter(|&h| h != wait)
        .or_else(|| stack.rfind("routes::lock::"));
    assert!(
        handler.is_some_and(|h| h >= wait),
        "the wait is not under the handler: {stack}"
    );
}

#[tokio::test]
async fn a_detached_block_yields_a_stall_with_its_stack() {
    let app = spawn_capturing_app(&[]).await;
    let id = fresh_id("stack-background");
    app.get_with_id("/background/blocking?ms=300", &id).await;
    let stall = app.wait_for_stall(200).await.json.unwrap();
    let stack = stall["fields"]["stack"]
        .as_str()
        .unwrap_or_else(|| panic!("{stall}"));
    assert!(stack.contains("background_blocking"), "{stack}");
}

#[tokio::test]
async fn with_capture_off_the_lines_are_as_before() {
    let app = spawn_app(&[("LONG_POLL_MS", "50")]).await; // capture is off by default here
    let id = fresh_id("stack-off");
    app.get_with_id("/config/sync/app.toml", &id).await;
    let ended = app
        .wait_for_event(&id, "blocked poll ended")
        .await
        .json
        .unwrap();
    let ended_keys = ended["fields"].as_object().unwrap();
    assert!(
        !ended_keys.contains_key("stack") && !ended_keys.contains_key("samples"),
        "{ended}"
    );
    let fields = blocked_line(&app, &id).json.unwrap()["fields"].clone();
    let mut keys: Vec<&str> = fields
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "elapsed_ms",
            "handler",
            "message",
            "request_id",
            "thread",
            "threshold_ms"
        ]
    );
    assert!(!app
        .lines()
        .iter()
        .any(|l| l.message() == Some("blocked-stack capture on")));
}

#[tokio::test]
async fn debug_blocked_serves_recent_blocks_with_their_interval_and_stack() {
    let app = spawn_capturing_app(&[("LONG_POLL_MS", "50"), ("INSTANCE", "api-test")]).await;
    let id = fresh_id("record");
    app.get_with_id("/config/sync/app.toml", &id).await;
    app.wait_for_event(&id, "blocked poll ended").await;
    let record: serde_json::Value = app.get("/debug/blocked").await.json().await.unwrap();
    assert_eq!(record["instance"], "api-test");
    let entry = record["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{record}"));
    assert_eq!(entry["kind"], "blocked");
    assert_eq!(entry["handler"], "config_sync");
    assert_eq!(entry["ongoing"], false);
    assert!(entry["blocked_ms"].as_f64().unwrap() >= 250.0, "{entry}");
    assert!(
        entry["stack"]
            .as_str()
            .unwrap()
            .contains("read_config_blocking"),
        "{entry}"
    );
    let start = humantime::parse_rfc3339(entry["start"].as_str().unwrap()).unwrap();
    let end = humantime::parse_rfc3339(entry["end"].as_str().unwrap()).unwrap();
    assert!(end > start);
    // `since` after the block's end leaves it out; a bad `since` is a JSON 400.
    let after = humantime::format_rfc3339_micros(end + Duration::from_millis(1));
    let later: serde_json::Value = app
        .get(&format!("/debug/blocked?since={after}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(later["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["request_id"] != id.as_str()));
    let bad = app.get("/debug/blocked?since=yesterday").await;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("since"), "{body}");
}

#[tokio::test]
async fn debug_blocked_is_off_with_its_setting() {
    let app = spawn_app(&[("DEBUG_BLOCKED", "false")]).await;
    let response = app.get("/debug/blocked").await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("DEBUG_BLOCKED"),
        "{body}"
    );
}
