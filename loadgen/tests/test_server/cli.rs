//! The binary as a user runs it: bad input, unreachable targets, gates, and the JSON report
//! checked against its documented schema (`loadgen/report.schema.json`).

use std::{process::Output, time::Duration};

use crate::server::{eventually, spawn, Behaviour};
use tokio::process::Command;

async fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .kill_on_drop(true)
        .output()
        .await
        .expect("loadgen runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_one_line_error(out: &Output, needle: &str, args: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?} printed {lines:?}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: {:?} lacks {needle:?}",
        lines[0]
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?} ran anyway: {}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_with_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let malformed = dir.path().join("bad.toml");
    std::fs::write(&malformed, "[mix\norders = 1\n").unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[mix]\norders = 1\nbogus = 2\n").unwrap();
    let malformed = malformed.to_str().unwrap();
    let unknown = unknown.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--rate", "0"], "rate must be above 0"),
        (&["--rate", "-5"], "rate must be above 0"),
        (&["--rate", "fast"], "'fast' is not a number"),
        (&["--duration", "0s"], "--duration"),
        (&["--duration", "10"], "--duration"),
        (&["not a url"], "invalid target URL 'not a url'"),
        (&["https://127.0.0.1:1"], "only http://"),
        (&["--mix", "orders=1,nope=2"], "unknown route 'nope'"),
        (&["--mix", "orders=0"], "weight above 0"),
        (&["--scenario", malformed], "scenario file"),
        (&["--scenario", unknown], "unknown route 'bogus'"),
        (&["--scenario", "/nonexistent/s.toml"], "scenario file"),
        (&["--max-error-rate", "2"], "between 0 and 1"),
        (&["--connections", "0"], "--connections"),
        (&["--bogus-flag"], "--bogus-flag"),
    ];
    for (args, needle) in cases {
        let out = loadgen(args).await;
        assert_one_line_error(&out, needle, args);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_the_environment_of_the_compose_lab() {
    let server = spawn(Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(&scenario, "[mix]\nhealthz = 1\n").unwrap();
    let report = dir.path().join("r.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--connections", "2", "--duration", "300ms", "--scenario"])
        .arg(&scenario)
        .arg("--output")
        .arg(&report)
        .env("LOADGEN_TARGETS", server.url())
        .env("LOADGEN_RATE", "100")
        .env("LOADGEN_MIX", "orders=1")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["mode"], "closed");
    assert_eq!(r["mix"], "healthz=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_reported_before_the_run() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let args = [url.as_str(), "--duration", "1s"];
    let out = loadgen(&args).await;
    assert_one_line_error(&out, "unreachable", &args);
    assert!(text(&out.stderr).contains(&url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_round_writes_a_json_line_that_matches_the_documented_schema() {
    let server = spawn(Behaviour {
        instance: Some(("api-1".into(), "release".into())),
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let url = server.url();
    let out = loadgen(&[
        &url,
        "--rate",
        "100",
        "--duration",
        "300ms",
        "--rounds",
        "2",
        "--mix",
        "orders=9,config_sync=1,lock_std=1",
        "--max-p99",
        "5s",
        "--output",
        path.to_str().unwrap(),
    ])
    .await;
    let stdout = text(&out.stdout);
    // lock_std answers 503 in the test server; no error-rate gate was set, so exit 0.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("round 2"), "{stdout}");
    assert!(stdout.contains("slowest"), "{stdout}");

    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../report.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let written = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<_> = written.lines().collect();
    assert_eq!(lines.len(), 2);
    for (i, line) in lines.iter().enumerate() {
        let report: serde_json::Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&report)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "round {}: {errors:#?}", i + 1);
        assert_eq!(report["round"], i as u64 + 1);
        assert_eq!(report["instances"][0]["instance"], "api-1");
        assert_eq!(report["total"]["requests"], 30);
        assert!(
            report["total"]["errors_by_kind"]["http_5xx"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert_eq!(report["gates"]["passed"], true);
    }
    // The schema is strict: an undocumented key is rejected.
    let mut extra: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    extra["total"]["surprise"] = serde_json::json!(1);
    assert!(!validator.is_valid(&extra));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_exit_1_when_exceeded() {
    let slow = spawn(Behaviour {
        delay: Some(Duration::from_millis(20)),
        ..Behaviour::default()
    })
    .await;
    let url = slow.url();
    // A short run at 50 req/s with `gate`'s flags.
    let gated = |gate: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let mut args = vec![url.as_str(), "--rate", "50", "--duration", "300ms"];
            args.extend_from_slice(gate);
            loadgen(&args).await
        }
    };
    let out = gated(&["--max-p99", "5ms"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("GATE FAILED: p99"));

    let out = gated(&["--mix", "orders=1,lock_std=1", "--max-error-rate", "0.1"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("GATE FAILED: error rate"));

    let out = gated(&["--max-p99", "1s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_rounds_stop_cleanly_on_sigterm() {
    let server = spawn(Behaviour::default()).await;
    let url = server.url();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([&url, "--rate", "50", "--duration", "200ms", "--rounds", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Past the first round: the endless run is under way.
    assert!(eventually(Duration::from_secs(10), || server.requests() >= 15).await);
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("loadgen exits promptly on SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
