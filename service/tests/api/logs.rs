use test_support::fresh_id;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_line_is_json_and_request_lines_carry_the_request_span() {
    let app = spawn_app(&[("SLOW_DISK_MS", "5")]).await;
    let paths = [
        "/healthz",
        "/api/orders/7",
        "/config/sync/app.toml",
        "/config/async/app.toml",
        "/cpu/inline?ms=5",
        "/cpu/offload?ms=5",
        "/lock/std?hold_ms=5",
        "/lock/tokio?hold_ms=5",
        "/nope",
    ];
    let mut ids = Vec::new();
    for path in paths {
        let id = fresh_id("lines");
        app.get_with_id(path, &id).await;
        ids.push(id);
    }
    for id in &ids {
        app.wait_for_event(id, "request finished").await;
    }
    let lines = app.lines();
    for line in &lines {
        let json = line
            .json
            .as_ref()
            .unwrap_or_else(|| panic!("not JSON: {}", line.raw));
        for key in ["timestamp", "level", "target"] {
            assert!(json.get(key).is_some(), "no {key}: {}", line.raw);
        }
        assert!(
            json.pointer("/fields/message").is_some(),
            "no fields.message: {}",
            line.raw
        );
        if let Some(span) = json.get("span") {
            assert!(
                span["request_id"].is_string(),
                "a span without request_id: {}",
                line.raw
            );
        }
    }
    for (path, id) in paths.iter().zip(&ids) {
        let of_request = app.lines_of(id);
        assert!(!of_request.is_empty(), "{id}: no lines");
        let closes: Vec<serde_json::Value> = of_request
            .iter()
            .filter(|l| l.message() == Some("close"))
            .map(|l| l.json.clone().unwrap())
            .collect();
        // Handler spans close with their busy and idle time; the root span has no close line
        // (the access line reports the request).
        let has_handler_span = !["/healthz", "/api/orders/7", "/nope"].contains(path);
        assert_eq!(
            closes.len(),
            usize::from(has_handler_span),
            "{path}: {closes:?}"
        );
        for close in &closes {
            assert_ne!(close["span"]["name"], "request", "{close}");
            // The handler's span takes the id from the extractor: this request's.
            assert_eq!(close["span"]["request_id"], id.as_str(), "{close}");
            assert!(
                close["fields"]["time.busy"].is_string()
                    && close["fields"]["time.idle"].is_string(),
                "{close}"
            );
        }
    }
}

#[tokio::test]
async fn a_blocked_handler_shows_busy_far_above_idle_in_its_close_line() {
    let app = spawn_app(&[]).await;
    let id = fresh_id("busy");
    app.get_with_id("/config/sync/app.toml", &id).await;
    let close = app
        .wait_for_line(|l| {
            l.request_id() == Some(&id)
                && l.message() == Some("close")
                && l.json.as_ref().unwrap()["span"]["name"] == "config_sync"
        })
        .await;
    let busy = close.json.unwrap()["fields"]["time.busy"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(busy.ends_with("ms") && !busy.ends_with("µs"), "busy {busy}");
    let millis: f64 = busy.trim_end_matches("ms").parse().unwrap();
    assert!(millis >= 250.0, "busy {busy}");
}

#[tokio::test]
async fn rust_log_filters_per_target() {
    let app = spawn_app(&[("RUST_LOG", "warn,service=info")]).await;
    let id = fresh_id("filter");
    app.get_with_id("/api/orders/1", &id).await;
    app.wait_for_event(&id, "request finished").await;
    assert!(
        app.lines()
            .iter()
            .all(|l| l.json.as_ref().unwrap()["target"] != "actix_server::builder"),
        "actix info lines were not filtered"
    );
}

#[test]
fn pretty_format_is_for_people() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_service"))
        .env_clear()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "pretty")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        first_lines.push(line);
        if first_lines.iter().any(|l| l.contains("listening")) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        first_lines.iter().any(|l| l.contains("listening")),
        "{first_lines:?}"
    );
    assert!(
        first_lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "pretty output contained JSON: {first_lines:?}"
    );
}

/// The exact keys of each kind of line. A faster formatter must not drop (or rename) a field
/// the dashboards, Alloy and the tests rely on.
#[tokio::test]
async fn the_field_set_of_each_kind_of_line_is_pinned() {
    use std::collections::BTreeSet;
    let keys = |value: &serde_json::Value| -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };

    // A threshold above scheduling noise, so the warning names the handler (see tests/api/watchdog.rs).
    let app = spawn_app(&[("LONG_POLL_MS", "150")]).await;
    let id = fresh_id("fields");
    app.get_with_id("/config/sync/app.toml", &id).await;
    app.wait_for_event(&id, "request finished").await;
    app.wait_for_event(&id, "blocked poll ended").await;
    let line = |message: &str, span: &str| -> serde_json::Value {
        app.lines_of(&id)
            .into_iter()
            .filter_map(|l| l.json)
            .find(|l| l["fields"]["message"] == message && l["span"]["name"] == span)
            .unwrap_or_else(|| panic!("no {message:?} line in span {span}"))
    };
    let top = set(&[
        "timestamp",
        "level",
        "fields",
        "target",
        "request_id",
        "span",
        "spans",
    ]);
    let request_span = set(&["request_id", "method", "name"]);
    let handler_span = set(&["request_id", "config", "name"]);
    let cases = [
        (
            line("request finished", "request"),
            set(&["message", "method", "route", "status", "latency_ms"]),
            &request_span,
        ),
        (
            line("loading config", "config_sync"),
            set(&["message"]),
            &handler_span,
        ),
        (
            line("loaded config", "config_sync"),
            set(&["message", "bytes"]),
            &handler_span,
        ),
        (
            line("close", "config_sync"),
            set(&["message", "time.busy", "time.idle"]),
            &handler_span,
        ),
        (
            line("worker blocked", "config_sync"),
            set(&[
                "message",
                "handler",
                "request_id",
                "thread",
                "elapsed_ms",
                "threshold_ms",
            ]),
            &handler_span,
        ),
        (
            line("blocked poll ended", "request"),
            // With stack capture off (the tests' default), as before: no `stack`, no `samples`.
            set(&["message", "handler", "request_id", "thread", "blocked_ms"]),
            &request_span,
        ),
    ];
    for (json, fields, span) in cases {
        assert_eq!(keys(&json), top, "{json}");
        assert_eq!(keys(&json["fields"]), fields, "{json}");
        assert_eq!(&keys(&json["span"]), span, "{json}");
        assert_eq!(json["span"]["request_id"], id.as_str());
        assert_eq!(
            json["request_id"],
            id.as_str(),
            "top-level request_id: {json}"
        );
        let spans = json["spans"].as_array().unwrap();
        assert_eq!(
            keys(&spans[0]),
            request_span,
            "the root of `spans` is the request span: {json}"
        );
        assert_eq!(
            spans.last().unwrap(),
            &json["span"],
            "the last of `spans` is `span`: {json}"
        );
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // Inside a request, every line names it at the top level; outside one, none does.
    let lines: Vec<serde_json::Value> = app.lines().into_iter().filter_map(|l| l.json).collect();
    let (inside, outside): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l.get("span").is_some());
    assert!(!inside.is_empty() && !outside.is_empty(), "{lines:?}");
    for line in inside {
        assert_eq!(line["request_id"], line["spans"][0]["request_id"], "{line}");
        assert!(line["request_id"].is_string(), "{line}");
    }
    for line in outside {
        assert!(line.get("request_id").is_none(), "{line}");
        assert_eq!(
            keys(line),
            set(&["timestamp", "level", "fields", "target"]),
            "{line}"
        );
    }
}
