//! `LOG_DIR` faults: unusable at start-up (the service refuses to start, in one line), and the
//! log file going away or filling up while running (the service keeps serving and keeps its
//! stdout output).
//!
//! Tests may run as root, for whom permission bits do not stop writes, so "not writable" is
//! made with paths no user can create: a directory below a regular file, and a regular file in
//! place of the directory. "Disk full" is the log file's name pointing at `/dev/full`, where
//! every write fails with `ENOSPC`, for root too. (Removing the file while the service runs
//! raises no error at all on Linux: the open descriptor keeps writing to the unlinked inode, and
//! those lines are gone until the next daily file.)

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use test_support::{fresh_id, Process, Server, DEADLINE};

use crate::{
    process::{files_in, spawn, Service},
    rawhttp::Conn,
};

/// Runs the binary with `LOG_DIR=log_dir`; returns its exit code, stdout and stderr.
fn start_with_log_dir(log_dir: &Path) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let process = Process::spawn(
        test_support::command(env!("CARGO_BIN_EXE_service"))
            .env("WORKERS", "1")
            .env("LOG_DIR", log_dir)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap()),
    );
    let status = process.wait_exit(Instant::now() + DEADLINE);
    let read = |p| std::fs::read_to_string(p).unwrap();
    (status.code(), read(&out), read(&err))
}

fn assert_refuses_to_start(log_dir: &Path) {
    let (code, stdout, stderr) = start_with_log_dir(log_dir);
    assert_eq!(code, Some(2), "exit code; stderr: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "an error line last: {stderr}");
    assert!(last.contains("LOG_DIR"), "the line names LOG_DIR: {stderr}");
    assert!(
        last.contains(&*log_dir.to_string_lossy()),
        "the line names the directory: {stderr}"
    );
    assert!(stdout.is_empty(), "nothing on stdout, got:\n{stdout}");
}

/// The file that stands where a directory should be, and a log directory below it.
fn file_in_the_way() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    (dir, file)
}

#[test]
fn a_log_dir_below_a_regular_file_stops_start_up_with_exit_2() {
    let (_dir, file) = file_in_the_way();
    assert_refuses_to_start(&file.join("logs"));
}

#[test]
fn a_log_dir_that_is_a_regular_file_stops_start_up_with_exit_2() {
    let (_dir, file) = file_in_the_way();
    assert_refuses_to_start(&file);
}

/// Exactly one line: the service checks the directory before tracing-appender's builder, which
/// would print its own `Error reading the log directory/files: …` first.
#[test]
fn an_unusable_log_dir_is_reported_in_exactly_one_line() {
    let (_dir, file) = file_in_the_way();
    for log_dir in [file.join("logs"), file.clone()] {
        let (code, _, stderr) = start_with_log_dir(&log_dir);
        assert_eq!(code, Some(2));
        assert_eq!(
            stderr.lines().count(),
            1,
            "one line on stderr, got:\n{stderr}"
        );
    }
}

/// GET `path` with the request id `id`; the response's status.
async fn get_with_id(app: &Server, path: &str, id: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .get(format!("http://{}{path}", app.addr))
        .header("x-request-id", id)
        .send()
        .await
        .expect("request failed")
        .status()
}

/// Sends `n` requests to the victim; each must answer 200 and leave its access line on stdout.
async fn serves_and_logs_to_stdout(app: &Server, n: usize) {
    for _ in 0..n {
        let id = fresh_id("logfault");
        assert_eq!(get_with_id(app, "/api/orders/1", &id).await, 200);
        app.wait_for_line_async(Instant::now() + DEADLINE, |l| {
            l.request_id() == Some(id.as_str()) && l.message() == Some("request finished")
        })
        .await;
    }
}

/// Polls until `pred` holds for the text of the files in `dir`, or fails after [`DEADLINE`].
fn wait_for_file_text(dir: &Path, pred: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let text: String = files_in(dir)
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect();
        if pred(&text) {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "log file never matched");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test]
async fn the_log_file_removed_while_running_does_not_stop_serving_or_stdout() {
    let log_dir = tempfile::tempdir().unwrap();
    let app = spawn(&[("LOG_DIR", log_dir.path().to_str().unwrap())]);
    let id = fresh_id("before-rm");
    assert_eq!(get_with_id(&app, "/api/orders/1", &id).await, 200);
    wait_for_file_text(log_dir.path(), |text| text.contains(&id));

    for file in files_in(log_dir.path()) {
        std::fs::remove_file(file).unwrap();
    }
    std::fs::remove_dir(log_dir.path()).unwrap();

    serves_and_logs_to_stdout(&app, 20).await;
    let health = reqwest::get(format!("http://{}/healthz", app.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// `service.YYYY-MM-DD.json` for `time` (UTC), the rolling appender's daily file name.
fn daily_file_name(time: SystemTime) -> String {
    let days = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("service.{year:04}-{month:02}-{day:02}.json")
}

#[test]
fn daily_file_names_follow_the_calendar() {
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    assert_eq!(daily_file_name(at(0)), "service.1970-01-01.json");
    assert_eq!(daily_file_name(at(951_782_400)), "service.2000-02-29.json");
    assert_eq!(
        daily_file_name(at(1_798_675_200)),
        "service.2026-12-31.json"
    );
}

/// A log directory whose current file is `/dev/full`: every write fails with ENOSPC.
fn disk_full_log_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    // Today's and tomorrow's file, in case the test runs across midnight UTC.
    for time in [now, now + Duration::from_secs(86_400)] {
        std::os::unix::fs::symlink("/dev/full", dir.path().join(daily_file_name(time))).unwrap();
    }
    dir
}

#[tokio::test]
async fn a_full_disk_under_the_log_file_does_not_stop_serving_or_stdout() {
    let log_dir = disk_full_log_dir();
    let app = spawn(&[("LOG_DIR", log_dir.path().to_str().unwrap())]);
    serves_and_logs_to_stdout(&app, 20).await;
    let health = reqwest::get(format!("http://{}/healthz", app.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// The failing file writes are reported once on stderr (the file writer's thread cannot log
/// through the subscriber it serves); serving and stdout go on, and SIGTERM still ends with
/// every stdout line flushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_log_file_is_reported_once_on_stderr() {
    let log_dir = disk_full_log_dir();
    let service = Service::start(&[("LOG_DIR", log_dir.path().to_str().unwrap())]);
    let reports = |service: &Service| {
        service
            .stderr()
            .lines()
            .filter(|l| l.contains("cannot write log lines"))
            .count()
    };
    let mut conn = Conn::connect(service.addr).await.unwrap();
    let start = Instant::now();
    while reports(&service) == 0 {
        assert_eq!(conn.get("/api/orders/1").await.unwrap(), 200);
        assert!(
            start.elapsed() < DEADLINE,
            "no report on stderr:\n{}",
            service.stderr()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..200 {
        assert_eq!(conn.get("/api/orders/1").await.unwrap(), 200);
    }
    drop(conn);
    service.sigterm();
    let status = tokio::task::block_in_place(|| service.wait_exit());
    assert!(status.success(), "exit status {status}");
    let stderr = service.stderr();
    assert_eq!(reports(&service), 1, "reported once, stderr:\n{stderr}");
    let stdout = service.json_lines();
    let finished = stdout
        .iter()
        .filter(|l| l["fields"]["message"] == "request finished")
        .count();
    assert!(finished >= 200, "{finished} access lines on stdout");
    assert_eq!(stdout.last().unwrap()["fields"]["message"], "stopped");
}
