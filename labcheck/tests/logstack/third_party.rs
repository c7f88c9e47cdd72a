//! The Loki and Alloy configs: the upstream version each was written for (the one compose
//! pins), the settings the lab depends on, and what Alloy's timestamps do to a stream's order
//! and to the lines a restart re-sends.

use regex::Regex;

use labcheck::alloy::Value;
use labcheck::pipeline::{self, Labels, Timestamp};
use labcheck::repo::{self, ALLOY_CONFIG, LOKI_CONFIG};

/// The tag docker-compose.yml pins for `grafana/<name>`.
fn pinned_tag(name: &str) -> String {
    let image = Regex::new(&format!(r"image:\s*grafana/{name}:([^\s@]+)")).expect("regex");
    image
        .captures(&repo::read("docker-compose.yml"))
        .map(|c| c[1].to_string())
        .unwrap_or_else(|| panic!("docker-compose.yml does not pin grafana/{name}"))
}

/// The version a config's header says it was written for.
fn stated_version(file: &str, name: &str, pattern: &str) -> String {
    let header: String = repo::read(file)
        .lines()
        .take_while(|l| l.starts_with('#') || l.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let re = Regex::new(&format!(r"[Ww]ritten for grafana/{name} ({pattern})")).expect("regex");
    re.captures(&header)
        .map(|c| c[1].to_string())
        .unwrap_or_else(|| panic!("{file} does not state the upstream version in its header"))
}

#[test]
fn the_loki_config_states_the_upstream_version_compose_pins() {
    let stated = stated_version(LOKI_CONFIG, "loki", r"\d+\.\d+\.\d+");
    assert!(stated.starts_with("3."), "Loki 3.x");
    assert_eq!(stated, pinned_tag("loki"));
}

#[test]
fn the_alloy_config_states_the_upstream_version_compose_pins() {
    let stated = stated_version(ALLOY_CONFIG, "alloy", r"v\d+\.\d+\.\d+");
    assert_eq!(stated, pinned_tag("alloy"));
}

#[test]
fn loki_stores_structured_metadata_with_tsdb_v13_offline_and_with_raised_limits() {
    let cfg = repo::yaml(LOKI_CONFIG);
    assert_eq!(cfg["auth_enabled"].as_bool(), Some(false));
    let schemas = cfg["schema_config"]["configs"]
        .as_sequence()
        .expect("schema configs");
    let current = schemas.last().expect("a schema");
    assert_eq!(current["store"].as_str(), Some("tsdb"));
    assert_eq!(current["schema"].as_str(), Some("v13"));
    assert_eq!(current["object_store"].as_str(), Some("filesystem"));
    let limits = &cfg["limits_config"];
    assert_eq!(limits["allow_structured_metadata"].as_bool(), Some(true));
    assert!(
        limits["ingestion_rate_mb"]
            .as_f64()
            .is_some_and(|r| r > 4.0),
        "above the default 4"
    );
    assert!(limits["ingestion_burst_size_mb"]
        .as_f64()
        .is_some_and(|b| b > 6.0));
    assert_eq!(cfg["analytics"]["reporting_enabled"].as_bool(), Some(false));
    let prefix = cfg["common"]["path_prefix"].as_str().expect("path_prefix");
    for dir in ["chunks_directory", "rules_directory"] {
        let d = cfg["common"]["storage"]["filesystem"][dir]
            .as_str()
            .expect(dir);
        assert!(
            d.starts_with(prefix),
            "{dir} {d} is outside the volume at {prefix}"
        );
    }
}

#[test]
fn alloy_pushes_to_the_loki_service_on_the_port_loki_listens_on() {
    let port = repo::yaml(LOKI_CONFIG)["server"]["http_listen_port"]
        .as_u64()
        .expect("http_listen_port");
    let config = repo::alloy_config();
    let endpoint = config.only("loki.write").only("endpoint");
    assert_eq!(
        endpoint.attr("url"),
        Some(&Value::Str(format!("http://loki:{port}/loki/api/v1/push")))
    );
}

#[test]
fn alloy_never_drops_lines_for_failing_to_parse_them() {
    let config = repo::alloy_config();
    let process = config.only("loki.process");
    for stage in &process.blocks {
        assert!(
            !matches!(stage.attr("drop_malformed"), Some(Value::Bool(true))),
            "{} drops malformed lines",
            stage.name
        );
        assert!(
            !["stage.drop", "stage.match", "stage.limit", "stage.sampling"]
                .contains(&stage.name.as_str()),
            "{} can drop lines; the lab ships every line",
            stage.name
        );
    }
}

/// A JSON line as the service writes it, at `timestamp`, saying `message`.
fn service_line(timestamp: &str, message: &str) -> String {
    serde_json::json!({
        "timestamp": timestamp,
        "level": "INFO",
        "fields": { "message": message },
        "target": "service",
    })
    .to_string()
}

#[test]
fn lines_of_one_container_that_share_a_microsecond_keep_their_written_order() {
    let config = repo::alloy_config();
    let process = config.only("loki.process");
    let same = "2026-01-01T00:00:01.000001Z";
    let lines = [
        service_line(same, "first"),
        service_line(same, "second"),
        service_line(same, "third"),
    ];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let entries = pipeline::process_stream(process, &Labels::new(), &refs);
    let offsets: Vec<u64> = entries
        .iter()
        .map(|e| match &e.timestamp {
            Timestamp::FromLine(t) if t == same => 0,
            Timestamp::Nudged { from_line, plus_ns } if from_line == same => *plus_ns,
            other => panic!("not the line's own time: {other:?}"),
        })
        .collect();
    // Loki orders a stream by time: equal times list in any order.
    assert_eq!(
        offsets,
        [0, 1, 2],
        "equal times stay distinct and increasing"
    );
}

#[test]
fn a_restart_that_re_reads_from_a_whole_second_re_sends_identical_timestamps() {
    let config = repo::alloy_config();
    let process = config.only("loki.process");
    let before = service_line("2026-01-01T00:00:00.999999Z", "last of the second before");
    let a = service_line("2026-01-01T00:00:01.000001Z", "a");
    let b = service_line("2026-01-01T00:00:01.000001Z", "b");
    let c = service_line("2026-01-01T00:00:01.500000Z", "c");
    let first = pipeline::process_stream(process, &Labels::new(), &[&before, &a, &b, &c]);
    // loki.source.docker's saved position is a whole second: a restarted Alloy reads
    // everything from 00:00:01 again, with no state from before it.
    let again = pipeline::process_stream(process, &Labels::new(), &[&a, &b, &c]);
    for (sent, resent) in first[1..].iter().zip(&again) {
        assert_eq!(sent.line, resent.line);
        // Loki can drop a copy only if time, line and structured metadata are identical.
        assert_eq!(sent.timestamp, resent.timestamp, "{}", sent.line);
        assert_eq!(sent.structured_metadata, resent.structured_metadata);
    }
    assert_eq!(again.len(), 3);
}
