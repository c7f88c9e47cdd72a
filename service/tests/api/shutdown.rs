use std::collections::HashSet;

use test_support::DEADLINE;

use crate::helpers::spawn_app;

/// SIGTERM in the middle of a few hundred concurrent requests: the process exits 0, and every
/// request that got a response has its access line in stdout and in the rolling log file.
#[tokio::test]
async fn nothing_is_lost_on_sigterm_mid_load() {
    let log_dir = tempfile::tempdir().unwrap();
    let app = spawn_app(&[
        ("WORKERS", "2"),
        ("DEPENDENCY_MS", "50"),
        ("LOG_DIR", log_dir.path().to_str().unwrap()),
    ])
    .await;
    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let mut requests = Vec::new();
    for i in 0..300 {
        let request = client
            .get(app.url(&format!("/api/orders/{i}")))
            .header("x-request-id", format!("shutdown-{i}"))
            .send();
        requests.push(tokio::spawn(request));
    }
    // Terminate once some requests are in flight and some have already been answered.
    app.wait_for_line(|l| l.message() == Some("request finished"))
        .await;
    let terminating = tokio::task::spawn_blocking(move || app.terminate());
    let mut answered = HashSet::new();
    for request in requests {
        if let Ok(Ok(response)) = request.await {
            if response.status() == 200 {
                answered.insert(
                    response.headers()["x-request-id"]
                        .to_str()
                        .unwrap()
                        .to_owned(),
                );
            }
        }
    }
    let (status, stdout_lines) = terminating.await.unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(!answered.is_empty(), "no request was answered");

    let access_ids = |lines: Vec<serde_json::Value>| -> HashSet<String> {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == "request finished")
            .filter_map(|l| l["span"]["request_id"].as_str().map(str::to_owned))
            .collect()
    };
    let in_stdout = access_ids(
        stdout_lines
            .into_iter()
            .map(|l| l.json.expect("a stdout line is not JSON"))
            .collect(),
    );
    let mut file_lines = Vec::new();
    for entry in std::fs::read_dir(log_dir.path()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            file_lines.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
    }
    let in_file = access_ids(file_lines);
    let missing_stdout: Vec<_> = answered.difference(&in_stdout).collect();
    let missing_file: Vec<_> = answered.difference(&in_file).collect();
    assert!(
        missing_stdout.is_empty(),
        "{} answered requests lack a stdout access line: {missing_stdout:?}",
        missing_stdout.len()
    );
    assert!(
        missing_file.is_empty(),
        "{} answered requests lack a file access line: {missing_file:?}",
        missing_file.len()
    );
}
