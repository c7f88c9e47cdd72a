//! `spawn_app()`: starts the real binary on port 0 with a test's settings, learns the port from
//! its "listening" log line, and keeps every stdout line for assertions. Nothing here sleeps to
//! synchronise: waits poll the captured lines against a deadline.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

/// How long any wait in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// One stdout line of the service: raw text and, when it parsed, the JSON.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub raw: String,
    pub json: Option<Value>,
}

impl LogLine {
    pub fn message(&self) -> Option<&str> {
        self.json.as_ref()?.pointer("/fields/message")?.as_str()
    }

    /// The request id of the line's current span, if it is inside a request.
    pub fn request_id(&self) -> Option<&str> {
        self.json.as_ref()?.pointer("/span/request_id")?.as_str()
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    child: Mutex<Child>,
    lines: Arc<Mutex<Vec<LogLine>>>,
}

/// What a refused start wrote.
pub struct Refusal {
    pub stderr: String,
    pub stdout: Vec<u8>,
}

/// Runs the binary with only `env` set and asserts that it refused to start: exit code 2 and
/// one line on stderr (`what` names the case in failure messages).
pub fn refused_start(env: &[(&str, &str)], what: &str) -> Refusal {
    let output = Command::new(env!("CARGO_BIN_EXE_service"))
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{what}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr}");
    Refusal {
        stderr,
        stdout: output.stdout,
    }
}

/// Starts the service with one worker, a 300 ms slow disk, a 1 ms dependency and `extra`
/// settings (which win).
pub async fn spawn_app(extra: &[(&str, &str)]) -> TestApp {
    spawn_binary(Path::new(env!("CARGO_BIN_EXE_service")), None, extra).await
}

/// [`spawn_app`] with another copy of the binary, run from `cwd` (default: the test's).
pub async fn spawn_binary(binary: &Path, cwd: Option<&Path>, extra: &[(&str, &str)]) -> TestApp {
    let mut cmd = Command::new(binary);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd.env_clear()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("WORKERS", "1")
        .env("SLOW_DISK_MS", "300")
        .env("DEPENDENCY_MS", "1")
        .env("RUST_LOG", "info")
        // Stack capture's start-up self-test symbolizes a debug binary (a second of CPU); only
        // the tests about stacks turn it on (tests/api/stacks.rs).
        .env("BLOCKED_STACKS", "false")
        .env("INSTANCE", "test")
        // Canary builds open a console port: give each app its own.
        .env("TOKIO_CONSOLE_BIND", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in extra {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().expect("start the service binary");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for raw in BufReader::new(stdout).lines().map_while(Result::ok) {
            let json = serde_json::from_str(&raw).ok();
            sink.lock().unwrap().push(LogLine { raw, json });
        }
    });
    let mut app = TestApp {
        addr: "127.0.0.1:0".parse().unwrap(),
        client: reqwest::Client::new(),
        child: Mutex::new(child),
        lines,
    };
    let listening = app
        .wait_for_line(|l| l.message() == Some("listening"))
        .await;
    app.addr = listening.json.unwrap()["fields"]["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The service's process id (for the release build's CPU-starvation test).
    #[cfg(not(feature = "console"))]
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// GET `path` with an explicit request id.
    pub async fn get_with_id(&self, path: &str, request_id: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("x-request-id", request_id)
            .send()
            .await
            .expect("request failed")
    }

    /// Starts GET `path` (a lock route) with id `request_id` in the background and returns once
    /// that request holds the lock; await the handle for its response.
    pub async fn hold_lock(
        &self,
        path: &str,
        request_id: &str,
    ) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
        let holding = tokio::spawn(
            self.client
                .get(self.url(path))
                .header("x-request-id", request_id)
                .send(),
        );
        self.wait_for_event(request_id, "lock acquired").await;
        holding
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    /// The service's resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.lock().unwrap().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// A snapshot of every line so far.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().unwrap().clone()
    }

    /// Lines of one request.
    pub fn lines_of(&self, request_id: &str) -> Vec<LogLine> {
        self.lines()
            .into_iter()
            .filter(|l| l.request_id() == Some(request_id))
            .collect()
    }

    /// Waits until a line matching `pred` has been written, or fails after [`DEADLINE`].
    pub async fn wait_for_line(&self, pred: impl Fn(&LogLine) -> bool) -> LogLine {
        let start = Instant::now();
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return line.clone();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no matching log line within {DEADLINE:?}; got:\n{}",
                self.dump()
            );
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                panic!(
                    "service exited with {status} before the line appeared:\n{}",
                    self.dump()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits for a `worker stall` line whose lag is at least `min_lag_ms`: a real block's, not
    /// the few milliseconds a busy test machine adds on its own.
    pub async fn wait_for_stall(&self, min_lag_ms: u64) -> LogLine {
        self.wait_for_line(|l| {
            l.message() == Some("worker stall")
                && l.json.as_ref().unwrap()["fields"]["lag_ms"].as_u64() >= Some(min_lag_ms)
        })
        .await
    }

    /// Waits for the line `message` of request `request_id`.
    pub async fn wait_for_event(&self, request_id: &str, message: &str) -> LogLine {
        self.wait_for_line(|l| l.request_id() == Some(request_id) && l.message() == Some(message))
            .await
    }

    pub fn dump(&self) -> String {
        self.lines()
            .iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(self) -> (ExitStatus, Vec<LogLine>) {
        let pid = self.child.lock().unwrap().id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill failed");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "service did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        // The reader thread ends at EOF; give it the deadline to drain the pipe.
        let start = Instant::now();
        while Arc::strong_count(&self.lines) > 1 && start.elapsed() < DEADLINE {
            std::thread::sleep(Duration::from_millis(5));
        }
        let lines = self.lines();
        (status, lines)
    }

    /// Sends raw bytes as one HTTP/1.1 request and returns (status, headers+body text).
    pub fn raw_request(&self, request: &[u8]) -> (u16, String) {
        raw_request(self.addr, request)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One raw HTTP exchange with `Connection: close` semantics; returns the status and the text.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A raw GET of `path` with extra header lines.
pub fn raw_get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n").into_bytes()
}

/// The value of header `name` in a raw response.
pub fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
}

/// A request id unique to this test run.
pub fn fresh_id(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::now_v7().simple())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
