//! Pairing switch-outs with switch-ins per thread and adding the intervals to their stacks.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, Write},
};

use crate::{
    script::{Parser, Record},
    FoldError,
};

/// What to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct FoldOptions {
    /// Keep preemptions (`prev_state` R): time spent runnable, waiting for a CPU.
    pub include_preempted: bool,
}

/// Counts that say how much of the input became weight, for a one-line summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldStats {
    /// Switch-outs paired with a later switch-in of the same thread.
    pub paired: u64,
    /// Switch-outs left out as preemptions.
    pub preempted: u64,
    /// Switch-outs with no switch-in before the thread's next switch-out or the end of input.
    pub unpaired: u64,
    /// Total weight of the paired intervals, in nanoseconds.
    pub off_cpu_ns: u64,
}

/// Folded stacks (`comm;root;…;leaf;[off-cpu S]`) with their off-CPU time in nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    pub stacks: BTreeMap<String, u64>,
    pub stats: FoldStats,
}

impl Folded {
    /// Writes `stack microseconds` lines, sorted, leaving out stacks under half a microsecond.
    pub fn write_to(&self, mut out: impl Write) -> std::io::Result<()> {
        for (stack, ns) in &self.stacks {
            let us = (ns + 500) / 1000;
            if us > 0 {
                writeln!(out, "{stack} {us}")?;
            }
        }
        out.flush()
    }
}

/// A switch-out waiting for its thread's switch-in.
struct Pending {
    start_ns: u64,
    stack: String,
}

/// Folds `perf script` text (see the crate docs for the command) into time-weighted stacks.
pub fn fold(input: impl BufRead, options: FoldOptions) -> Result<Folded, FoldError> {
    let mut parser = Parser::new(input.lines());
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    let mut folded = Folded::default();
    let (mut records, mut switch_outs, mut switch_ins) = (0u64, 0u64, 0u64);

    while let Some(record) = parser.next_record()? {
        records += 1;
        match record {
            Record::SwitchOut {
                tid,
                comm,
                time_ns,
                state,
                stack,
            } => {
                switch_outs += 1;
                // A second switch-out before a switch-in: perf lost a record, length unknown.
                if pending.remove(&tid).is_some() {
                    folded.stats.unpaired += 1;
                }
                if state.starts_with('R') && !options.include_preempted {
                    folded.stats.preempted += 1;
                    continue;
                }
                let mut key = comm.replace(';', ":");
                for frame in stack.iter().rev() {
                    key.push(';');
                    key.push_str(&frame.label());
                }
                key.push_str(&format!(";[off-cpu {state}]"));
                pending.insert(
                    tid,
                    Pending {
                        start_ns: time_ns,
                        stack: key,
                    },
                );
            }
            Record::SwitchIn { tid, time_ns } => {
                switch_ins += 1;
                if let Some(open) = pending.remove(&tid) {
                    match time_ns.checked_sub(open.start_ns) {
                        Some(off) => {
                            *folded.stacks.entry(open.stack).or_default() += off;
                            folded.stats.paired += 1;
                            folded.stats.off_cpu_ns += off;
                        }
                        None => folded.stats.unpaired += 1,
                    }
                }
            }
            Record::Other => {}
        }
    }
    folded.stats.unpaired += pending.len() as u64;

    if records == 0 {
        return Err(FoldError::Empty);
    }
    if switch_outs == 0 {
        return Err(FoldError::NoSchedSwitch);
    }
    if switch_ins == 0 {
        return Err(FoldError::NoSwitchEvents);
    }
    Ok(folded)
}
