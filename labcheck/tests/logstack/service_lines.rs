//! The Alloy pipeline against lines written by the real `service` binary.
//!
//! The binary is built with the same cargo (a no-op when `cargo test --workspace` already
//! built it) and started on a loopback port chosen by the OS, both by the workspace's
//! `test-support` crate; it is sent one request per route with known `x-request-id`s, and its
//! stdout is captured until every request's span has closed. The lines then go through the
//! model of `deploy/alloy/config.alloy`, whose JSON paths are read from the file. No fixture:
//! the lines cannot drift from what the service writes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use labcheck::pipeline::{self, Entry, Labels, Timestamp};
use labcheck::repo;
use test_support::Server;

/// One request the capture sends: the path, and the route pattern the access line must name.
const REQUESTS: &[(&str, &str)] = &[
    ("/healthz", "/healthz"),
    ("/api/orders/7", "/api/orders/{id}"),
    ("/config/sync/app.toml", "/config/sync/{name:.*}"),
    ("/config/async/app.toml", "/config/async/{name:.*}"),
    ("/lock/std", "/lock/std"),
    ("/cpu/inline?ms=60", "/cpu/inline"),
    ("/no/such/route", "unmatched"),
];

struct Sent {
    request_id: String,
    route: &'static str,
    status: u16,
}

struct Capture {
    sent: Vec<Sent>,
    lines: Vec<String>,
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(run_service_and_capture)
}

fn run_service_and_capture() -> Capture {
    let mut cmd = test_support::command(test_support::service_binary());
    // The default CONFIG_DIR is found at run time: `service/sample-config` from the root.
    cmd.current_dir(repo::root())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("WORKERS", "2")
        // Long enough to cross the watchdog's threshold with room to spare.
        .env("SLOW_DISK_MS", "120")
        .env("LONG_POLL_MS", "20")
        .env("INSTANCE", "labcheck");
    let deadline = Instant::now() + Duration::from_secs(60);
    let service = Server::start(cmd, deadline);

    let run = std::process::id();
    let sent: Vec<Sent> = REQUESTS
        .iter()
        .enumerate()
        .map(|(i, (path, route))| {
            let request_id = format!("labcheck-{run}-{i}");
            let status = get(service.addr, path, &request_id);
            Sent {
                request_id,
                route,
                status,
            }
        })
        .collect();

    // The access line comes after the handler's lines: once every request's access line is
    // in, the capture has all of that request's lines.
    for sent in &sent {
        service.wait_for_line(deadline, |l| {
            l.message() == Some("request finished")
                && l.request_id() == Some(sent.request_id.as_str())
        });
    }
    let lines = service.lines().into_iter().map(|l| l.raw).collect();
    Capture { sent, lines }
}

/// A plain HTTP/1.1 GET (the service speaks HTTP/1.1; a client crate would add nothing but a
/// dependency). Returns the status code.
fn get(addr: SocketAddr, path: &str, request_id: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connects to the service");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nx-request-id: {request_id}\r\nConnection: close\r\n\r\n"
    )
    .expect("request written");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in the response to {path}: {response:?}"))
}

/// A target as `discovery.docker` would describe an api replica, through the config's rules.
fn api_container_labels() -> Labels {
    let config = repo::alloy_config();
    let target = BTreeMap::from([
        (
            "__meta_docker_container_id".to_string(),
            "3f2a9c1b7d4e5f60718293a4b5c6d7e8f9012345678901234567890abcdef12".to_string(),
        ),
        (
            "__meta_docker_container_label_com_docker_compose_service".to_string(),
            "api".to_string(),
        ),
        (
            "__meta_docker_container_label_lab_flavor".to_string(),
            "release".to_string(),
        ),
    ]);
    let relabelled = pipeline::relabel(config.only("discovery.relabel"), target)
        .expect("an api container is kept");
    pipeline::entry_labels(&relabelled)
}

fn ship(line: &str) -> Option<Entry> {
    let config = repo::alloy_config();
    pipeline::process(config.only("loki.process"), api_container_labels(), line)
}

fn parsed(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str(line).ok()
}

#[test]
fn the_alloy_json_paths_find_request_id_level_latency_and_route_in_real_access_lines() {
    let capture = capture();
    for sent in &capture.sent {
        // Found independently of the pipeline: the access event of this request.
        let access = capture
            .lines
            .iter()
            .find(|l| {
                parsed(l).is_some_and(|v| {
                    v["fields"]["message"] == "request finished"
                        && l.contains(&format!("\"{}\"", sent.request_id))
                })
            })
            .unwrap_or_else(|| panic!("no access line for {}", sent.request_id));
        let entry = ship(access).expect("the access line is shipped");
        let sm = &entry.structured_metadata;
        assert_eq!(sm.get("request_id"), Some(&sent.request_id), "{access}");
        assert_eq!(
            entry.labels.get("level").map(String::as_str),
            Some("INFO"),
            "{access}"
        );
        assert_eq!(
            sm.get("route").map(String::as_str),
            Some(sent.route),
            "{access}"
        );
        assert_eq!(sm.get("status"), Some(&sent.status.to_string()), "{access}");
        let latency: f64 = sm
            .get("latency_ms")
            .unwrap_or_else(|| panic!("no latency_ms from {access}"))
            .parse()
            .expect("latency_ms is a number Loki can unwrap");
        assert!(latency > 0.0, "latency_ms {latency} in {access}");
        assert!(
            matches!(entry.timestamp, Timestamp::FromLine(_)),
            "the entry keeps the line's own timestamp: {access}"
        );
    }
}

#[test]
fn every_line_of_a_request_carries_its_request_id_as_structured_metadata_not_a_label() {
    let capture = capture();
    for sent in &capture.sent {
        let quoted = format!("\"{}\"", sent.request_id);
        let lines: Vec<&String> = capture
            .lines
            .iter()
            .filter(|l| l.contains(&quoted))
            .collect();
        assert!(
            lines.iter().any(|l| l.contains("\"request finished\"")),
            "{}: no access line",
            sent.request_id
        );
        for line in lines {
            let entry = ship(line).expect("a request's line is shipped");
            assert_eq!(
                entry.structured_metadata.get("request_id"),
                Some(&sent.request_id),
                "{line}"
            );
            assert!(!entry.labels.contains_key("request_id"), "{line}");
        }
    }
}

/// The id comes from the line's top-level `request_id`, not from the nested `span`: a request's
/// line stripped of `span` and `spans` still yields it, and stripped of the top-level field
/// it yields none.
#[test]
fn the_request_id_metadata_comes_from_the_top_level_field_of_real_lines() {
    let capture = capture();
    for sent in &capture.sent {
        let lines: Vec<serde_json::Value> = capture
            .lines
            .iter()
            .filter_map(|l| parsed(l))
            .filter(|v| v["span"]["request_id"] == sent.request_id.as_str())
            .collect();
        assert!(!lines.is_empty(), "{}: no lines", sent.request_id);
        for line in lines {
            assert_eq!(line["request_id"], sent.request_id.as_str(), "{line}");
            let mut flat = line.clone();
            let object = flat.as_object_mut().expect("a JSON object");
            object.remove("span");
            object.remove("spans");
            let entry = ship(&flat.to_string()).expect("shipped");
            assert_eq!(
                entry.structured_metadata.get("request_id"),
                Some(&sent.request_id),
                "{flat}"
            );
            let mut nested_only = line.clone();
            nested_only
                .as_object_mut()
                .expect("a JSON object")
                .remove("request_id");
            let entry = ship(&nested_only.to_string()).expect("shipped");
            assert!(
                !entry.structured_metadata.contains_key("request_id"),
                "{nested_only}"
            );
        }
    }
}

#[test]
fn every_json_line_gets_only_the_contract_labels_with_its_level_and_own_timestamp() {
    let capture = capture();
    let json_lines: Vec<&String> = capture
        .lines
        .iter()
        .filter(|l| parsed(l).is_some())
        .collect();
    assert!(
        json_lines.len() > capture.sent.len() * 2,
        "the capture has the lines"
    );
    for line in json_lines {
        let entry = ship(line).expect("a JSON line is shipped");
        let names: Vec<&str> = entry.labels.keys().map(String::as_str).collect();
        assert_eq!(names, ["flavor", "instance", "level", "service"], "{line}");
        let level = parsed(line).expect("JSON")["level"]
            .as_str()
            .map(str::to_string);
        assert_eq!(entry.labels.get("level"), level.as_ref(), "{line}");
        assert!(matches!(entry.timestamp, Timestamp::FromLine(_)), "{line}");
    }
}

#[test]
fn a_line_outside_any_request_ships_without_request_id() {
    let capture = capture();
    let listening = capture
        .lines
        .iter()
        .find(|l| parsed(l).is_some_and(|v| v["fields"]["message"] == "listening"))
        .expect("the listening line was captured");
    let entry = ship(listening).expect("shipped");
    assert!(entry.structured_metadata.is_empty(), "{listening}");
    assert_eq!(entry.labels.get("level").map(String::as_str), Some("INFO"));
}

#[test]
fn a_line_that_is_not_json_still_ships_unlabelled_by_the_json_stage() {
    let container = api_container_labels();
    for line in [
        "thread 'actix-rt|system:0|arbiter:1' panicked at service/src/routes/cpu.rs:40:9:",
        "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        "plain print from a library",
        "{\"truncated\": ",
        "42",
    ] {
        let entry = ship(line).unwrap_or_else(|| panic!("dropped: {line:?}"));
        assert_eq!(entry.line, line, "the line is shipped unchanged");
        assert_eq!(
            entry.labels, container,
            "only the container's labels: {line:?}"
        );
        assert!(entry.structured_metadata.is_empty(), "{line:?}");
        assert_eq!(
            entry.timestamp,
            Timestamp::Source,
            "Docker's timestamp: {line:?}"
        );
    }
}

#[test]
fn relabelling_names_service_flavor_and_instance_and_keeps_only_the_lab_services() {
    let config = repo::alloy_config();
    let rules = config.only("discovery.relabel");
    let id = "9b1e2c3d4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";
    // As discovery.docker describes a container of docker-compose.yml: its compose service
    // and the `lab.flavor` label the compose file sets (dots become underscores).
    let target = |service: &str, lab_flavor: Option<&str>| {
        let mut t = BTreeMap::from([
            ("__meta_docker_container_id".to_string(), id.to_string()),
            (
                "__meta_docker_container_label_com_docker_compose_service".to_string(),
                service.to_string(),
            ),
        ]);
        if let Some(f) = lab_flavor {
            t.insert(
                "__meta_docker_container_label_lab_flavor".to_string(),
                f.to_string(),
            );
        }
        t
    };
    for (service, lab_flavor, flavor) in [
        ("api", Some("release"), Some("release")),
        ("canary", Some("canary"), Some("canary")),
        ("loadgen", Some("none"), None),
        ("api", None, None),
    ] {
        let labels = pipeline::entry_labels(
            &pipeline::relabel(rules, target(service, lab_flavor))
                .unwrap_or_else(|| panic!("{service} dropped")),
        );
        assert_eq!(labels.get("service").map(String::as_str), Some(service));
        assert_eq!(
            labels.get("flavor").map(String::as_str),
            flavor,
            "{service} {lab_flavor:?}"
        );
        // Docker's default hostname: the first 12 characters of the container id.
        assert_eq!(labels.get("instance").map(String::as_str), Some(&id[..12]));
        assert_eq!(
            labels.len(),
            2 + usize::from(flavor.is_some()),
            "{labels:?}"
        );
    }
    for other in ["loki", "alloy", "grafana", "profiler", ""] {
        assert!(
            pipeline::relabel(rules, target(other, None)).is_none(),
            "{other:?} is shipped"
        );
    }
}

#[test]
fn the_sources_feed_the_pipeline_and_the_pipeline_feeds_loki() {
    let config = repo::alloy_config();
    let source = config.only("loki.source.docker");
    let process = config.only("loki.process");
    let write = config.only("loki.write");
    let expect_ref = |block: &labcheck::alloy::Block, attr: &str, expected: String| {
        let refs: Vec<String> = block
            .attr(attr)
            .and_then(labcheck::alloy::Value::as_list)
            .map(|l| l.iter().map(|v| format!("{v:?}")).collect())
            .unwrap_or_default();
        assert_eq!(
            refs,
            [format!("{:?}", labcheck::alloy::Value::Ref(expected))]
        );
    };
    expect_ref(
        source,
        "forward_to",
        format!(
            "loki.process.{}.receiver",
            process.label.as_deref().unwrap_or_default()
        ),
    );
    expect_ref(
        process,
        "forward_to",
        format!(
            "loki.write.{}.receiver",
            write.label.as_deref().unwrap_or_default()
        ),
    );
    assert_eq!(
        source.attr("targets"),
        Some(&labcheck::alloy::Value::Ref(format!(
            "discovery.relabel.{}.output",
            config
                .only("discovery.relabel")
                .label
                .as_deref()
                .unwrap_or_default()
        )))
    );
}

/// The line filters (`|= "…"`, `|~ "…"`) of a LogQL expression, in order.
fn line_filters(expr: &str) -> Vec<(String, String)> {
    let re = regex::Regex::new(r#"\|([=~])\s*"((?:[^"\\]|\\.)*)""#).expect("regex");
    re.captures_iter(expr)
        .map(|c| {
            (
                c[1].to_string(),
                c[2].replace("\\\"", "\"").replace("\\\\", "\\"),
            )
        })
        .collect()
}

fn passes_line_filters(expr: &str, line: &str) -> bool {
    line_filters(expr)
        .iter()
        .all(|(op, arg)| match op.as_str() {
            "=" => line.contains(arg.as_str()),
            _ => regex::Regex::new(arg)
                .expect("line filter regex")
                .is_match(line),
        })
}

/// A Go duration as tracing writes `time.busy` (`304ms`, `19.1µs`), in milliseconds.
fn millis(duration: &str) -> f64 {
    let split = duration
        .find(|c: char| c.is_alphabetic() || c == '\u{b5}')
        .unwrap_or(duration.len());
    let (n, unit) = duration.split_at(split);
    let n: f64 = n
        .parse()
        .unwrap_or_else(|_| panic!("bad duration {duration:?}"));
    n * match unit {
        "ns" => 1e-6,
        "µs" | "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        other => panic!("unknown unit {other:?} in {duration:?}"),
    }
}

#[test]
fn the_blocking_query_finds_the_handler_that_held_a_worker_in_real_lines() {
    let expr = repo::query("blocking_handler_spans");
    // The query's own JSON paths, as LogQL writes them (`a["b.c"]`), read as JMESPath.
    let params = regex::Regex::new(r#"(\w+)=`([^`]*)`|(\w+)="([^"]*)""#).expect("regex");
    let json_part = expr.split("| json ").nth(1).expect("the query parses JSON");
    let json_part = json_part.split(" | ").next().expect("json parameters");
    let paths: BTreeMap<String, String> = params
        .captures_iter(json_part)
        .map(|c| {
            let name = c.get(1).or(c.get(3)).expect("name").as_str().to_string();
            let path = c.get(2).or(c.get(4)).expect("path").as_str();
            (name, path.replace("[\"", ".\"").replace("\"]", "\""))
        })
        .collect();
    assert!(expr.contains("span_name!=\"request\"") && expr.contains("busy >= 20ms"));
    let extract = |line: &str, name: &str| -> Option<String> {
        let doc: serde_json::Value = serde_json::from_str(line).ok()?;
        let found = jmespath::compile(&paths[name]).ok()?.search(&doc).ok()?;
        found.as_string().cloned()
    };
    let matched: Vec<(String, f64, String)> = capture()
        .lines
        .iter()
        .filter(|l| passes_line_filters(&expr, l))
        .filter_map(|l| {
            let span = extract(l, "span_name")?;
            let busy = millis(&extract(l, "busy")?);
            (span != "request" && busy >= 20.0).then(|| (span, busy, l.clone()))
        })
        .collect();
    let spans: BTreeSet<&str> = matched.iter().map(|(s, _, _)| s.as_str()).collect();
    assert!(
        spans.contains("config_sync"),
        "the blocking read: {matched:?}"
    );
    assert!(spans.contains("cpu_inline"), "the CPU loop: {matched:?}");
    assert!(
        !spans.contains("config_async"),
        "the fix awaits: {matched:?}"
    );
    for (_, _, line) in &matched {
        let entry = ship(line).expect("shipped");
        assert!(
            entry.structured_metadata.contains_key("request_id"),
            "{line}"
        );
    }
}

#[test]
fn the_watchdog_queries_match_the_real_watchdog_warnings() {
    let logs = repo::query("watchdog_warnings");
    let counted = repo::query("watchdog_warnings_by_instance");
    assert!(logs.contains("level=\"WARN\""));
    let warnings: Vec<&String> = capture()
        .lines
        .iter()
        .filter(|l| passes_line_filters(&logs, l))
        .collect();
    let sync_id = &capture()
        .sent
        .iter()
        .find(|s| s.route == "/config/sync/{name:.*}")
        .expect("a /config/sync request was sent")
        .request_id;
    let blocked = warnings
        .iter()
        .find(|l| passes_line_filters(&counted, l) && l.contains(sync_id.as_str()))
        .unwrap_or_else(|| panic!("no `worker blocked` warning for {sync_id}: {warnings:?}"));
    let entry = ship(blocked).expect("shipped");
    assert_eq!(entry.labels.get("level").map(String::as_str), Some("WARN"));
    assert_eq!(entry.structured_metadata.get("request_id"), Some(sync_id));
    for line in warnings {
        let entry = ship(line).expect("shipped");
        assert_eq!(
            entry.labels.get("level").map(String::as_str),
            Some("WARN"),
            "{line}"
        );
    }
}
