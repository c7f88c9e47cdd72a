//! Time-weighted off-CPU stacks from `perf script` text, for `inferno-flamegraph`.
//!
//! An on-CPU flamegraph samples running threads, so a worker parked in `clock_nanosleep` under
//! an async handler never appears in it. The off-CPU picture instead weights the stack a thread
//! had when it left the CPU by how long it stayed off. The usual recipes cannot be used on the
//! lab's machines: Debian's `perf` ignores `--off-cpu` (built without its BPF skeleton), the
//! kernel has no `sched:sched_stat_*` tracepoints (no SCHEDSTATS) so `perf inject -s` has
//! nothing to join, and `inferno-collapse-perf` can neither parse tracepoint payloads nor weight
//! by time (it counts samples, which makes frequent short parks look bigger than one long
//! block). Hence this small folder, written for the one input it needs:
//!
//! ```text
//! perf record -e sched:sched_switch --switch-events --call-graph dwarf -p PID -- sleep N
//! perf script --show-switch-events -F comm,tid,time,event,trace,ip,sym,dso | offcpu-fold
//! ```
//!
//! For each thread, a `sched_switch` sample (the thread leaving the CPU, with its stack and
//! `prev_state`) is paired with that thread's next `PERF_RECORD_SWITCH IN`, and the interval is
//! added to the stack, leaf labelled with the state (`[off-cpu S]`). Preemptions (`prev_state`
//! `R`) are waiting for a CPU rather than for something, so they are left out unless asked for.
//! Intervals with no switch-in before the end of the window (or before the thread's next switch
//! out, when perf lost a record) are dropped: their length is unknown.
//!
//! Pairing is keyed on the sample header's thread id, never on the payload's `prev_pid`: when
//! perf runs in a container sharing the target's PID namespace, the header carries namespaced
//! ids while the tracepoint payload carries the host's.

pub mod fold;
pub mod script;

pub use fold::{fold, FoldOptions, FoldStats, Folded};
pub use script::{Frame, Record};

/// Why the input could not be folded. Every variant renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error("reading perf script output: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("empty input: expected `perf script --show-switch-events` text")]
    Empty,
    #[error(
        "no sched:sched_switch samples in the input (record with `-e sched:sched_switch` and print the `trace` field)"
    )]
    NoSchedSwitch,
    #[error(
        "no PERF_RECORD_SWITCH records in the input (record with `--switch-events` and run `perf script --show-switch-events`)"
    )]
    NoSwitchEvents,
}
