//! The service's stdout, line by line: a reader thread keeps every line (parsed when it is
//! JSON) and wakes whoever waits for one, blocking or async.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use serde_json::Value;
use tokio::sync::Notify;

/// One stdout line of the service: the raw text and, when it parsed, the JSON.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub raw: String,
    pub json: Option<Value>,
}

impl LogLine {
    pub(crate) fn parse(raw: String) -> Self {
        let json = serde_json::from_str(&raw).ok();
        Self { raw, json }
    }

    /// The event's message (`fields.message`).
    pub fn message(&self) -> Option<&str> {
        self.json.as_ref()?.pointer("/fields/message")?.as_str()
    }

    /// The request id of the line's current span, if it is inside a request.
    pub fn request_id(&self) -> Option<&str> {
        self.json.as_ref()?.pointer("/span/request_id")?.as_str()
    }

    /// The bound address, if this is the `listening` line.
    pub fn listening_addr(&self) -> Option<SocketAddr> {
        listening_addr(self.json.as_ref()?)
    }
}

/// The bound address, if `line` is the service's `listening` line.
pub fn listening_addr(line: &Value) -> Option<SocketAddr> {
    if line.pointer("/fields/message")? != "listening" {
        return None;
    }
    line.pointer("/fields/addr")?.as_str()?.parse().ok()
}

/// Why a wait ended without its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// The deadline passed.
    Deadline,
    /// The stream ended (the process closed its stdout: it exited).
    Closed,
}

/// Every line read so far from one stream; clones share it.
#[derive(Clone)]
pub(crate) struct Lines {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes blocking waits.
    grew: Condvar,
    /// Wakes async waits.
    grew_async: Notify,
}

#[derive(Default)]
struct State {
    lines: Vec<LogLine>,
    closed: bool,
}

impl Lines {
    /// Reads `stream` on a thread of its own until it ends.
    pub(crate) fn collect(stream: impl Read + Send + 'static) -> Self {
        let lines = Self {
            shared: Arc::new(Shared {
                state: Mutex::default(),
                grew: Condvar::new(),
                grew_async: Notify::new(),
            }),
        };
        let sink = lines.clone();
        std::thread::spawn(move || {
            for raw in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.update(|state| state.lines.push(LogLine::parse(raw)));
            }
            sink.update(|state| state.closed = true);
        });
        lines
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state());
        self.shared.grew.notify_all();
        self.shared.grew_async.notify_waiters();
    }

    /// The state; a test that panicked in its predicate leaves the lines readable.
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self) -> Vec<LogLine> {
        self.state().lines.clone()
    }

    /// Looks for a match among the lines from `*checked` on (the earlier ones did not match)
    /// and moves `*checked` past them.
    fn scan(
        state: &State,
        checked: &mut usize,
        pred: &impl Fn(&LogLine) -> bool,
    ) -> Option<Result<LogLine, Missing>> {
        let found = state.lines[*checked..].iter().find(|l| pred(l)).cloned();
        *checked = state.lines.len();
        match found {
            Some(line) => Some(Ok(line)),
            None => state.closed.then_some(Err(Missing::Closed)),
        }
    }

    /// The first line that matches `pred`, waiting (blocking) for it until `deadline`.
    pub(crate) fn wait_for(
        &self,
        deadline: Instant,
        pred: impl Fn(&LogLine) -> bool,
    ) -> Result<LogLine, Missing> {
        let mut checked = 0;
        let mut state = self.state();
        loop {
            if let Some(outcome) = Self::scan(&state, &mut checked, &pred) {
                return outcome;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(Missing::Deadline);
            };
            state = self
                .shared
                .grew
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// [`Lines::wait_for`] for async tests, whose runtime must go on running their requests.
    pub(crate) async fn wait_for_async(
        &self,
        deadline: Instant,
        pred: impl Fn(&LogLine) -> bool,
    ) -> Result<LogLine, Missing> {
        let mut checked = 0;
        loop {
            // Created before the check, so a line pushed in between still wakes it.
            let grew = self.shared.grew_async.notified();
            if let Some(outcome) = Self::scan(&self.state(), &mut checked, &pred) {
                return outcome;
            }
            let woken = tokio::time::timeout_at(deadline.into(), grew).await;
            if woken.is_err() {
                return Err(Missing::Deadline);
            }
        }
    }

    /// Waits until the stream has ended; whether it did before `deadline`.
    pub(crate) fn wait_closed(&self, deadline: Instant) -> bool {
        match self.wait_for(deadline, |_| false) {
            Err(Missing::Closed) => true,
            Err(Missing::Deadline) => false,
            Ok(_) => unreachable!("no line matches"),
        }
    }
}
