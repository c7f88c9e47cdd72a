//! The service binary with stdout redirected to a file, its pid, and its memory.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::helpers::{free_port, DEADLINE};

/// A running service whose stdout goes to `stdout_path` and stderr to `stderr_path`.
pub struct Service {
    pub addr: SocketAddr,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the binary with one worker, no dependency latency, `RUST_LOG=info` and `extra`
    /// settings (which win); returns once it logged its "listening" line.
    pub fn start(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stdout_path = dir.path().join("stdout.jsonl");
        let stdout = std::fs::File::create(&stdout_path).unwrap();
        let stderr_path = dir.path().join("stderr.txt");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_service"));
        cmd.env_clear()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("WORKERS", "1")
            .env("DEPENDENCY_MS", "0")
            .env("RUST_LOG", "info")
            .env("BLOCKED_STACKS", "false")
            .env("INSTANCE", "faults")
            .env("TOKIO_CONSOLE_BIND", format!("127.0.0.1:{}", free_port()))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (key, value) in extra {
            cmd.env(key, value);
        }
        let child = cmd.spawn().expect("start the service binary");
        let mut service = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            stdout_path,
            stderr_path,
            child,
            _dir: dir,
        };
        let listening = service.wait_for_json(|l| l["fields"]["message"] == "listening");
        service.addr = listening["fields"]["addr"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        service
    }

    /// What the service wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The complete lines of stdout so far, parsed (a line that is not JSON fails the test).
    pub fn json_lines(&self) -> Vec<Value> {
        complete_lines(&std::fs::read(&self.stdout_path).unwrap())
            .map(|line| {
                serde_json::from_slice(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(line)))
            })
            .collect()
    }

    /// Polls stdout until a line matches, or fails after [`DEADLINE`] or if the process exits.
    pub fn wait_for_json(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(line) = self.json_lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "service exited with {status} before the line appeared; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no matching line within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM (without waiting).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, or fails after [`DEADLINE`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.child)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit, killing it and failing after [`DEADLINE`].
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("process did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The newline-terminated lines of `bytes` (a trailing partial line is left out).
pub fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes[..end]
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
}

/// A `/proc/<pid>/status` value in KiB (`VmRSS`, `VmHWM`, …).
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// How many file descriptors `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The soft limit on open files of this process (children inherit it).
pub fn nofile_soft_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .map(|v| {
            if v == "unlimited" {
                u64::MAX
            } else {
                v.parse().unwrap()
            }
        })
        .expect("Max open files in /proc/self/limits")
}

/// The files in `dir`.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}
