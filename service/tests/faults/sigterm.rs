//! SIGTERM in the middle of a burst of requests: the process exits cleanly and both outputs
//! (stdout redirected to a file, and the rolling log file) end with a complete JSON line —
//! no partial line, no line that is not JSON — the last one being the service's `stopped`.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use test_support::DEADLINE;

use crate::{
    process::{complete_lines, files_in, Service},
    rawhttp::Conn,
};

/// Clients hammering the victim on their own keep-alive connections.
const CLIENTS: usize = 32;
/// Lines on stdout before the signal: the burst is well under way.
const LINES_BEFORE_SIGNAL: usize = 5_000;

/// Every line of `bytes` is a JSON object and the output ends with a newline; returns the
/// parsed lines.
fn assert_whole_json_lines(what: &str, bytes: &[u8]) -> Vec<serde_json::Value> {
    assert!(!bytes.is_empty(), "{what} is empty");
    assert!(
        bytes.ends_with(b"\n"),
        "{what} ends in a partial line: {}",
        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(300)..])
    );
    complete_lines(bytes)
        .map(|line| {
            let json: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(line))
            });
            assert!(json.is_object(), "{what}: not an object");
            json
        })
        .collect()
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_leaves_only_complete_json_lines() {
    let log_dir = tempfile::tempdir().unwrap();
    let service = Service::start(&[
        ("WORKERS", "2"),
        ("SHUTDOWN_TIMEOUT_S", "3"),
        ("LOG_DIR", log_dir.path().to_str().unwrap()),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (addr, stop) = (service.addr, Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut answered = 0u64;
            let Ok(mut conn) = Conn::connect(addr).await else {
                return answered;
            };
            while !stop.load(Ordering::Relaxed) {
                match conn.get(&format!("/api/orders/{c}")).await {
                    Ok(200) => answered += 1,
                    Ok(status) => panic!("status {status} during the burst"),
                    Err(_) => break, // closed by the shutdown
                }
            }
            answered
        }));
    }

    let start = Instant::now();
    while count_lines(&service.stdout_path) < LINES_BEFORE_SIGNAL {
        assert!(start.elapsed() < DEADLINE, "the burst never got going");
        assert!(service.is_running(), "the service died during the burst");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    service.sigterm();
    let status = tokio::task::block_in_place(|| service.wait_exit());
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for client in clients {
        answered += client.await.unwrap();
    }
    assert!(status.success(), "exit status {status}");
    assert!(answered > 0);

    let stdout = assert_whole_json_lines("stdout", &std::fs::read(&service.stdout_path).unwrap());
    assert!(stdout.len() >= LINES_BEFORE_SIGNAL);
    let last = stdout.last().unwrap();
    assert_eq!(
        last["fields"]["message"], "stopped",
        "last stdout line: {last}"
    );

    let files = files_in(log_dir.path());
    assert_eq!(files.len(), 1, "one log file: {files:?}");
    let file = assert_whole_json_lines("the log file", &std::fs::read(&files[0]).unwrap());
    assert_eq!(file.last().unwrap()["fields"]["message"], "stopped");
    assert_eq!(
        file.len(),
        stdout.len(),
        "the file and stdout got the same lines"
    );
}
