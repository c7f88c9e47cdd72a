//! The service binary with the fault suite's settings, started in one of two ways: with stdout
//! through a pipe, parsed line by line (`test_support::Server`), or with stdout redirected to
//! a file like a container runtime does ([`Service`]), for the checks that need what a line
//! reader hides — the raw bytes after SIGTERM (a partial last line).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Instant,
};

use serde_json::Value;
use test_support::{free_port, Process, Server, DEADLINE};

/// The binary with one worker, no dependency latency, `RUST_LOG=info` and `extra` settings
/// (which win).
fn command(extra: &[(&str, &str)]) -> Command {
    let mut cmd = test_support::command(env!("CARGO_BIN_EXE_service"));
    cmd.env("WORKERS", "1")
        .env("DEPENDENCY_MS", "0")
        .env("RUST_LOG", "info")
        .env("BLOCKED_STACKS", "false")
        .env("INSTANCE", "faults")
        .env("TOKIO_CONSOLE_BIND", format!("127.0.0.1:{}", free_port()));
    for (key, value) in extra {
        cmd.env(key, value);
    }
    cmd
}

/// Starts the binary with stdout through a pipe; returns once it logged its "listening" line.
pub fn spawn(extra: &[(&str, &str)]) -> Server {
    Server::start(command(extra), Instant::now() + DEADLINE)
}

/// A running service whose stdout goes to `stdout_path` and stderr to `stderr_path`.
pub struct Service {
    pub addr: SocketAddr,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    process: Process,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the binary (see [`spawn`] for its settings) with stdout and stderr in files;
    /// returns once it logged its "listening" line.
    pub fn start(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stdout_path = dir.path().join("stdout.jsonl");
        let stderr_path = dir.path().join("stderr.txt");
        let process = Process::spawn(
            command(extra)
                .stdout(std::fs::File::create(&stdout_path).unwrap())
                .stderr(std::fs::File::create(&stderr_path).unwrap()),
        );
        let mut service = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            stdout_path,
            stderr_path,
            process,
            _dir: dir,
        };
        let listening = service.wait_for_json(|l| l["fields"]["message"] == "listening");
        service.addr = test_support::listening_addr(&listening).expect("the listening address");
        service
    }

    /// What the service wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
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
    pub fn wait_for_json(&self, pred: impl Fn(&Value) -> bool) -> Value {
        test_support::poll(Instant::now() + DEADLINE, || {
            if let Some(line) = self.json_lines().into_iter().find(|l| pred(l)) {
                return Some(line);
            }
            if let Some(status) = self.process.try_exit() {
                panic!(
                    "service exited with {status} before the line appeared; stderr:\n{}",
                    self.stderr()
                );
            }
            None
        })
        .unwrap_or_else(|| panic!("no matching line within {DEADLINE:?}"))
    }

    /// Sends SIGTERM (without waiting).
    pub fn sigterm(&self) {
        self.process.sigterm();
    }

    /// Waits for the process to exit, or fails after [`DEADLINE`].
    pub fn wait_exit(&self) -> ExitStatus {
        self.process.wait_exit(Instant::now() + DEADLINE)
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        self.process.try_exit().is_none()
    }
}

/// The newline-terminated lines of `bytes` (a trailing partial line is left out).
pub fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes[..end]
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
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
