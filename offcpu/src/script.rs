//! Parsing the text `perf script --show-switch-events -F comm,tid,time,event,trace,ip,sym,dso`
//! prints: one header line per record, then (for samples with a call graph) one indented line
//! per frame, leaf first, and a blank line.
//!
//! A header is `COMM TID SECONDS.FRACTION: EVENT…`. Thread names may contain spaces and digits
//! (`actix-rt|system:0|arbiter:0`, `opt cgu.4`), so the header is anchored on the first
//! `TID TIME:` token pair instead of on column positions.

use crate::FoldError;

/// One record of interest, as the folder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A `sched:sched_switch` sample: the thread `tid` leaves the CPU with this stack.
    SwitchOut {
        tid: u32,
        comm: String,
        time_ns: u64,
        /// `prev_state` from the payload, without the `+` perf adds for preemption.
        state: String,
        /// Leaf first, as perf prints it.
        stack: Vec<Frame>,
    },
    /// `PERF_RECORD_SWITCH IN` (or `_CPU_WIDE IN`): the thread `tid` is back on a CPU.
    SwitchIn { tid: u32, time_ns: u64 },
    /// Anything else (switch-out records, other events): not needed.
    Other,
}

/// One line of a call graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub sym: String,
    pub dso: String,
}

impl Frame {
    /// The name shown in the flamegraph: the symbol, or `[dso file name]` when perf could not
    /// resolve one. `;` separates frames in the folded format, so it is replaced by `:`.
    pub fn label(&self) -> String {
        let name = if self.sym == "[unknown]" && !self.dso.is_empty() && self.dso != "[unknown]" {
            let base = self.dso.rsplit('/').next().unwrap_or(&self.dso);
            if base.starts_with('[') {
                base.to_owned()
            } else {
                format!("[{base}]")
            }
        } else {
            self.sym.clone()
        };
        name.replace(';', ":")
    }
}

/// Streams [`Record`]s out of `perf script` lines.
pub struct Parser<I> {
    lines: I,
    line_no: usize,
    /// A header line read while looking for the end of a stack, handed out next.
    peeked: Option<String>,
}

/// What a header line announces.
enum Header {
    Switch {
        tid: u32,
        comm: String,
        time_ns: u64,
        state: String,
    },
    In {
        tid: u32,
        time_ns: u64,
    },
    Other,
}

impl<I> Parser<I>
where
    I: Iterator<Item = std::io::Result<String>>,
{
    pub fn new(lines: I) -> Self {
        Self {
            lines,
            line_no: 0,
            peeked: None,
        }
    }

    fn bad(&self, reason: impl Into<String>) -> FoldError {
        FoldError::BadLine {
            line: self.line_no,
            reason: reason.into(),
        }
    }

    /// The next record, `None` at the end of the input.
    pub fn next_record(&mut self) -> Result<Option<Record>, FoldError> {
        // Skip blank lines between records.
        let header = loop {
            let line = match self.peeked.take() {
                Some(line) => line,
                None => match self.lines.next() {
                    Some(line) => {
                        self.line_no += 1;
                        line?
                    }
                    None => return Ok(None),
                },
            };
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with(char::is_whitespace) {
                return Err(self.bad("stack frame outside a sample"));
            }
            break line;
        };
        let header = parse_header(&header).map_err(|reason| self.bad(reason))?;
        match header {
            Header::Switch {
                tid,
                comm,
                time_ns,
                state,
            } => {
                let stack = self.read_stack()?;
                Ok(Some(Record::SwitchOut {
                    tid,
                    comm,
                    time_ns,
                    state,
                    stack,
                }))
            }
            Header::In { tid, time_ns } => {
                self.read_stack()?;
                Ok(Some(Record::SwitchIn { tid, time_ns }))
            }
            Header::Other => {
                self.read_stack()?;
                Ok(Some(Record::Other))
            }
        }
    }

    /// Frame lines up to the blank line that ends a sample, the next header (switch records
    /// have no call graph and no blank line after them) or the end of the input.
    fn read_stack(&mut self) -> Result<Vec<Frame>, FoldError> {
        let mut stack = Vec::new();
        loop {
            let Some(line) = self.lines.next() else {
                return Ok(stack);
            };
            let line = line?;
            self.line_no += 1;
            if line.trim().is_empty() {
                return Ok(stack);
            }
            if !line.starts_with(char::is_whitespace) {
                self.peeked = Some(line);
                return Ok(stack);
            }
            if let Some(frame) = parse_frame(line.trim()).map_err(|reason| self.bad(reason))? {
                stack.push(frame);
            }
        }
    }
}

fn parse_header(line: &str) -> Result<Header, String> {
    let tokens: Vec<(usize, &str)> = line
        .split_whitespace()
        .map(|tok| (tok.as_ptr() as usize - line.as_ptr() as usize, tok))
        .collect();
    let anchor = tokens
        .windows(2)
        .position(|pair| parse_tid(pair[0].1).is_some() && parse_time(pair[1].1).is_some())
        .ok_or("not a perf script header (`COMM TID TIME: EVENT`)")?;
    let comm = tokens[..anchor]
        .iter()
        .map(|(_, tok)| *tok)
        .collect::<Vec<_>>()
        .join(" ");
    let tid = parse_tid(tokens[anchor].1).unwrap_or_default();
    let time_ns = parse_time(tokens[anchor + 1].1).unwrap_or_default();
    let (time_at, time_tok) = tokens[anchor + 1];
    let rest = line[time_at + time_tok.len()..].trim();

    if let Some(payload) = rest.strip_prefix("sched:sched_switch:") {
        let state = payload
            .split_whitespace()
            .find_map(|field| field.strip_prefix("prev_state="))
            .ok_or("sched_switch payload without prev_state (print the `trace` field)")?;
        return Ok(Header::Switch {
            tid,
            comm,
            time_ns,
            state: state.trim_end_matches('+').to_owned(),
        });
    }
    let mut words = rest.split_whitespace();
    match (words.next(), words.next()) {
        (Some("PERF_RECORD_SWITCH" | "PERF_RECORD_SWITCH_CPU_WIDE"), Some("IN")) => {
            Ok(Header::In { tid, time_ns })
        }
        (Some(_), _) => Ok(Header::Other),
        (None, _) => Err("header without an event name".to_owned()),
    }
}

/// `1234`, or `pid/tid` when the `pid` field was printed too.
fn parse_tid(tok: &str) -> Option<u32> {
    let tid = tok.rsplit('/').next()?;
    if tid.is_empty() || !tid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tid.parse().ok()
}

/// `1004.389446:` as nanoseconds, exactly (no float rounding); `--ns` prints nine digits.
fn parse_time(tok: &str) -> Option<u64> {
    let (secs, frac) = tok.strip_suffix(':')?.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    let scale = 10u64.pow(9 - frac.len() as u32);
    Some(secs.parse::<u64>().ok()? * 1_000_000_000 + frac.parse::<u64>().ok()? * scale)
}

/// `ffffffff821f8298 __schedule ([kernel.kallsyms])` or `d43b8 __libc_vfork (inlined)`.
/// `None` for the `ffffffffffffffff [unknown]` that ends DWARF-unwound user stacks: it is where
/// the unwinder stopped, not a function.
fn parse_frame(line: &str) -> Result<Option<Frame>, String> {
    let (addr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("stack frame without an address: {line:.60}"));
    }
    if addr.len() == 16 && addr.bytes().all(|b| b == b'f' || b == b'F') {
        return Ok(None);
    }
    let rest = rest.trim();
    let (sym, dso) = match rest.rfind(" (") {
        Some(at) if rest.ends_with(')') => (&rest[..at], &rest[at + 2..rest.len() - 1]),
        _ => (rest, ""),
    };
    let sym = if sym.is_empty() { "[unknown]" } else { sym };
    Ok(Some(Frame {
        sym: sym.to_owned(),
        dso: dso.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(line: &str) -> Header {
        parse_header(line).unwrap()
    }

    #[test]
    fn thread_names_with_spaces_and_digits_keep_the_right_tid() {
        match header("opt cgu.4 12 9324 1004.389446: sched:sched_switch: prev_comm=opt cgu.4 12 prev_pid=9324 prev_prio=120 prev_state=D ==> next_comm=x next_pid=1 next_prio=120") {
            Header::Switch { tid, comm, time_ns, state } => {
                assert_eq!((tid, comm.as_str(), time_ns, state.as_str()), (9324, "opt cgu.4 12", 1_004_389_446_000, "D"));
            }
            _ => panic!("not a switch"),
        }
    }

    #[test]
    fn preempted_state_loses_its_plus_and_nanosecond_times_are_exact() {
        match header("w 7 5.000000001: sched:sched_switch: prev_comm=w prev_pid=7 prev_prio=120 prev_state=R+ ==> next_comm=x next_pid=1 next_prio=120") {
            Header::Switch { state, time_ns, .. } => assert_eq!((state.as_str(), time_ns), ("R", 5_000_000_001)),
            _ => panic!("not a switch"),
        }
    }

    #[test]
    fn switch_in_and_out_records_are_told_apart() {
        assert!(matches!(
            header("sh  9319  1004.393663: PERF_RECORD_SWITCH IN         "),
            Header::In {
                tid: 9319,
                time_ns: 1_004_393_663_000
            }
        ));
        assert!(matches!(
            header("sh  9319  1004.393727: PERF_RECORD_SWITCH OUT        "),
            Header::Other
        ));
        assert!(matches!(
            header("sh 1/9319 1004.393727: PERF_RECORD_SWITCH_CPU_WIDE IN  next pid/tid: 1/2"),
            Header::In { tid: 9319, .. }
        ));
    }

    #[test]
    fn frames_keep_symbols_with_spaces_and_name_unknowns_by_dso() {
        let frame = parse_frame("5f2a1 <F as actix_web::Handler<(A, B)>>::call (inlined)")
            .unwrap()
            .unwrap();
        assert_eq!(frame.sym, "<F as actix_web::Handler<(A, B)>>::call");
        assert_eq!(frame.dso, "inlined");
        let unknown = parse_frame("d5a9 [unknown] (/usr/bin/dash)")
            .unwrap()
            .unwrap();
        assert_eq!(unknown.label(), "[dash]");
        let semi = parse_frame("1 core::ptr::drop<[u8; 4]> (/app/service)")
            .unwrap()
            .unwrap();
        assert_eq!(semi.label(), "core::ptr::drop<[u8: 4]>");
        assert_eq!(
            parse_frame("ffffffffffffffff [unknown] ([unknown])"),
            Ok(None)
        );
    }

    #[test]
    fn junk_is_rejected() {
        assert!(parse_header("hello world").is_err());
        assert!(parse_header("w 7 5.0: sched:sched_switch: prev_comm=w prev_pid=7").is_err());
        assert!(parse_frame("not-hex foo (bar)").is_err());
    }
}
