//! The started binary: a [`Process`] the test owns (killed when dropped, so a failing test
//! leaves nothing running), and a [`Server`]: a process that said where it listens and whose
//! stdout lines are collected.

use std::{
    net::SocketAddr,
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::{Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use crate::lines::{Lines, LogLine, Missing};

/// A child process, killed and reaped when dropped.
pub struct Process {
    child: Mutex<Child>,
    pid: u32,
}

impl Process {
    /// Spawns `cmd`, or fails the test.
    pub fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        let pid = child.id();
        Self {
            child: Mutex::new(child),
            pid,
        }
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends SIGTERM (without waiting).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// The exit status, if the process has exited.
    pub fn try_exit(&self) -> Option<ExitStatus> {
        self.child().try_wait().expect("wait for the child")
    }

    /// Waits for the process to exit, or fails the test at `deadline`.
    pub fn wait_exit(&self, deadline: Instant) -> ExitStatus {
        crate::poll(deadline, || self.try_exit())
            .unwrap_or_else(|| panic!("process {} did not exit in time", self.pid))
    }

    fn take_stdout(&self) -> Option<ChildStdout> {
        self.child().stdout.take()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A started service: its address, taken from its `listening` line, and every line of its
/// stdout.
pub struct Server {
    pub addr: SocketAddr,
    process: Process,
    lines: Lines,
}

impl Server {
    /// Starts `cmd` (from [`crate::command`]) with stdout piped into a line collector and
    /// returns once it logged `listening`; fails the test if it exits or `deadline` passes
    /// first.
    pub fn start(mut cmd: Command, deadline: Instant) -> Self {
        let process = Process::spawn(cmd.stdout(Stdio::piped()));
        let lines = Lines::collect(process.take_stdout().expect("stdout is piped"));
        let mut server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            process,
            lines,
        };
        let listening = server.wait_for_line(deadline, |l| l.message() == Some("listening"));
        server.addr = listening
            .listening_addr()
            .unwrap_or_else(|| panic!("no address in {}", listening.raw));
        server
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// A snapshot of every line so far.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.snapshot()
    }

    /// Every line so far, one per line (for failure messages).
    pub fn dump(&self) -> String {
        self.lines()
            .iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The first line that matches `pred`, waiting (blocking) for it; fails the test if the
    /// service exits or `deadline` passes first.
    pub fn wait_for_line(&self, deadline: Instant, pred: impl Fn(&LogLine) -> bool) -> LogLine {
        let outcome = self.lines.wait_for(deadline, pred);
        self.found(outcome, deadline)
    }

    /// [`Server::wait_for_line`] for async tests, whose runtime must go on running their
    /// requests meanwhile.
    pub async fn wait_for_line_async(
        &self,
        deadline: Instant,
        pred: impl Fn(&LogLine) -> bool,
    ) -> LogLine {
        let outcome = self.lines.wait_for_async(deadline, pred).await;
        self.found(outcome, deadline)
    }

    fn found(&self, outcome: Result<LogLine, Missing>, deadline: Instant) -> LogLine {
        match outcome {
            Ok(line) => line,
            Err(Missing::Deadline) => {
                panic!("no matching log line in time; got:\n{}", self.dump())
            }
            Err(Missing::Closed) => panic!(
                "service exited with {} before the line appeared:\n{}",
                self.process.wait_exit(deadline),
                self.dump()
            ),
        }
    }

    /// Sends SIGTERM, waits for the exit and for the last line; fails the test at `deadline`.
    pub fn terminate(self, deadline: Instant) -> (ExitStatus, Vec<LogLine>) {
        self.process.sigterm();
        let status = self.process.wait_exit(deadline);
        assert!(
            self.lines.wait_closed(deadline),
            "stdout still open after the exit"
        );
        (status, self.lines())
    }
}

/// A `/proc/<pid>/status` value in KiB (`VmRSS`, `VmHWM`, …).
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}
