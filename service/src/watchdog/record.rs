//! A bounded record of recent blocks, for `GET /debug/blocked` (and loadgen's suspects): each
//! blocked poll and each worker stall with its wall-clock interval, thread, handler, request id
//! and stack. The oldest entries go first when it holds more than [`MAX_ENTRIES`] entries or
//! about [`MAX_BYTES`] of text. Writers are the checker thread and a worker at the end of a
//! blocked poll; a reader copies the entries out under the lock, which is only ever held for
//! that copy or one small update, so reading never blocks a worker for long.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
};

/// The most entries kept.
pub const MAX_ENTRIES: usize = 256;
/// About the most bytes of text (names, ids, stacks) kept.
pub const MAX_BYTES: usize = 256 * 1024;

/// What blocked the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// A poll of a request's future or span ran past the threshold.
    Blocked,
    /// The worker's heartbeat woke late with no such poll: blocking code outside any request.
    Stall,
}

impl BlockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::Blocked => "blocked",
            BlockKind::Stall => "stall",
        }
    }
}

/// One recorded block.
#[derive(Debug, Clone)]
pub struct BlockEntry {
    pub seq: u64,
    pub kind: BlockKind,
    /// The handler span's name (`request` when the request had none); `stall` for a stall.
    pub handler: &'static str,
    pub request_id: Option<Arc<str>>,
    pub thread: Arc<str>,
    pub start: SystemTime,
    /// `None` while the block goes on.
    pub end: Option<SystemTime>,
    /// The blocked code's stack, rendered (the frames shared by every sample).
    pub stack: Option<Arc<str>>,
}

impl BlockEntry {
    fn bytes(&self) -> usize {
        128 + self.thread.len()
            + self.request_id.as_ref().map_or(0, |r| r.len())
            + self.stack.as_ref().map_or(0, |s| s.len())
    }
}

#[derive(Debug, Default)]
struct Record {
    entries: VecDeque<BlockEntry>,
    bytes: usize,
    next_seq: u64,
}

impl Record {
    /// Adds `entry` under the next sequence number, which it returns.
    fn insert(&mut self, mut entry: BlockEntry) -> u64 {
        entry.seq = self.next_seq;
        self.next_seq += 1;
        self.push(entry);
        self.next_seq - 1
    }

    fn push(&mut self, entry: BlockEntry) {
        self.bytes += entry.bytes();
        self.entries.push_back(entry);
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.bytes(),
                None => break,
            }
        }
    }

    fn find(&mut self, seq: u64) -> Option<&mut BlockEntry> {
        self.entries.iter_mut().rev().find(|e| e.seq == seq)
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static RECORD: Mutex<Record> = Mutex::new(Record {
    entries: VecDeque::new(),
    bytes: 0,
    next_seq: 0,
});

fn record() -> std::sync::MutexGuard<'static, Record> {
    RECORD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts keeping the record (the `DEBUG_BLOCKED` setting).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether the record is kept.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Records a block that has just been detected; its sequence number, to finish it later.
pub(super) fn begin(
    kind: BlockKind,
    handler: &'static str,
    request_id: Option<Arc<str>>,
    thread: &str,
    start: SystemTime,
    stack: Option<String>,
) -> Option<u64> {
    if !enabled() {
        return None;
    }
    Some(record().insert(BlockEntry {
        seq: 0,
        kind,
        handler,
        request_id,
        thread: thread.into(),
        start,
        end: None,
        stack: stack.map(Arc::from),
    }))
}

/// Replaces the stack of entry `seq` (a later sample narrowed it).
pub(super) fn set_stack(seq: u64, stack: String) {
    let mut record = record();
    let stack: Arc<str> = stack.into();
    let mut grown = 0;
    if let Some(entry) = record.find(seq) {
        let old = entry.stack.replace(Arc::clone(&stack));
        grown = stack.len() as isize - old.map_or(0, |s| s.len() as isize);
    }
    record.bytes = record.bytes.saturating_add_signed(grown);
}

/// Marks entry `seq` as ended at `end`.
pub(super) fn finish(seq: u64, end: SystemTime) {
    if let Some(entry) = record().find(seq) {
        entry.end = Some(end);
    }
}

/// Records a stall that has ended, unless a blocked poll on the same thread already explains
/// it (the heartbeat is late whenever a request blocks its worker).
pub(super) fn stall(thread: &str, start: SystemTime, end: SystemTime, stack: Option<String>) {
    if !enabled() {
        return;
    }
    let mut record = record();
    let explained = record.entries.iter().any(|e| {
        e.kind == BlockKind::Blocked
            && &*e.thread == thread
            && e.start <= end
            && e.end.is_none_or(|blocked_end| blocked_end >= start)
    });
    if explained {
        return;
    }
    record.insert(BlockEntry {
        seq: 0,
        kind: BlockKind::Stall,
        handler: "stall",
        request_id: None,
        thread: thread.into(),
        start,
        end: Some(end),
        stack: stack.map(Arc::from),
    });
}

/// The entries still going on or ended at or after `since` (all when `None`), oldest first.
pub fn recent(since: Option<SystemTime>) -> Vec<BlockEntry> {
    let record = record();
    record
        .entries
        .iter()
        .filter(|e| match (since, e.end) {
            (Some(since), Some(end)) => end >= since,
            _ => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_record_stays_bounded_and_keeps_the_newest() {
        enable();
        let start = SystemTime::now();
        for i in 0..(MAX_ENTRIES as u64 * 3) {
            let seq = begin(
                BlockKind::Blocked,
                "handler",
                Some(format!("id-{i}").into()),
                "worker-1",
                start,
                Some("x".repeat(2000)),
            )
            .unwrap();
            finish(seq, start + Duration::from_millis(i));
        }
        let entries = recent(None);
        assert!(entries.len() <= MAX_ENTRIES, "{}", entries.len());
        assert!(entries.len() * 2000 <= MAX_BYTES + 2000);
        let last = entries.last().unwrap();
        assert_eq!(
            last.request_id.as_deref(),
            Some(&*format!("id-{}", MAX_ENTRIES * 3 - 1))
        );
        // A stall during a recorded block of the same thread is not a second culprit.
        let before = recent(None).len();
        stall("worker-1", start, start + Duration::from_millis(1), None);
        assert_eq!(recent(None).len(), before.min(MAX_ENTRIES));
        assert!(recent(None).iter().all(|e| e.kind == BlockKind::Blocked));
        // Filtering by end time.
        let since = start + Duration::from_millis(MAX_ENTRIES as u64 * 3 - 2);
        assert_eq!(recent(Some(since)).len(), 2);
    }
}
