//! `spawn_app()`: the real binary on port 0 with a test's settings (started, and its stdout
//! collected, by the workspace's `test-support` crate), and a `TestApp` with one method per
//! thing the tests do to it. Nothing here sleeps to synchronise: waits for a log line are
//! woken by the line, against a deadline.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, ExitStatus, Stdio},
    time::Instant,
};

use test_support::{free_port, LogLine, Server, DEADLINE};

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    server: Server,
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
    let mut cmd = test_support::command(binary);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd.env("WORKERS", "1")
        .env("SLOW_DISK_MS", "300")
        .env("DEPENDENCY_MS", "1")
        .env("RUST_LOG", "info")
        // Stack capture's start-up self-test symbolizes a debug binary (a second of CPU); only
        // the tests about stacks turn it on (tests/api/stacks.rs).
        .env("BLOCKED_STACKS", "false")
        .env("INSTANCE", "test")
        // Canary builds open a console port: give each app its own.
        .env("TOKIO_CONSOLE_BIND", format!("127.0.0.1:{}", free_port()))
        .stderr(Stdio::inherit());
    for (key, value) in extra {
        cmd.env(key, value);
    }
    let server = Server::start(cmd, Instant::now() + DEADLINE);
    TestApp {
        addr: server.addr,
        client: reqwest::Client::new(),
        server,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The service's process id (for the release build's CPU-starvation test).
    #[cfg(not(feature = "console"))]
    pub fn pid(&self) -> u32 {
        self.server.pid()
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
        test_support::proc_status_kib(self.server.pid(), "VmRSS")
    }

    /// A snapshot of every line so far.
    pub fn lines(&self) -> Vec<LogLine> {
        self.server.lines()
    }

    /// Lines of one request.
    pub fn lines_of(&self, request_id: &str) -> Vec<LogLine> {
        self.lines()
            .into_iter()
            .filter(|l| l.request_id() == Some(request_id))
            .collect()
    }

    /// Waits until a line matching `pred` has been written, or fails after [`DEADLINE`] or if
    /// the service exits first.
    pub async fn wait_for_line(&self, pred: impl Fn(&LogLine) -> bool) -> LogLine {
        self.server
            .wait_for_line_async(Instant::now() + DEADLINE, pred)
            .await
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
        self.server.dump()
    }

    /// Sends SIGTERM and waits for the process to exit and its last line.
    pub fn terminate(self) -> (ExitStatus, Vec<LogLine>) {
        self.server.terminate(Instant::now() + DEADLINE)
    }

    /// Sends raw bytes as one HTTP/1.1 request and returns (status, headers+body text).
    pub fn raw_request(&self, request: &[u8]) -> (u16, String) {
        raw_request(self.addr, request)
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
