//! `offcpu-fold`: perf script text in, folded off-CPU stacks (microseconds) out.
//! Bad input exits 2 with one line on stderr; a failed write exits 1.

use std::{
    fs::File,
    io::{self, BufReader},
    path::PathBuf,
    process::ExitCode,
};

use clap::Parser;
use offcpu::{fold, FoldOptions};

/// Turns `perf script --show-switch-events -F comm,tid,time,event,trace,ip,sym,dso` output of a
/// `perf record -e sched:sched_switch --switch-events --call-graph dwarf` recording into folded
/// stacks weighted by microseconds off CPU, for `inferno-flamegraph --colors io --countname us`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// perf script output to read; `-` or nothing reads standard input.
    input: Option<PathBuf>,
    /// Also count preemptions (prev_state R: runnable, waiting for a CPU), labelled `[off-cpu R]`.
    #[arg(long, env = "OFFCPU_INCLUDE_PREEMPTED")]
    include_preempted: bool,
    /// Do not print the one-line summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = FoldOptions {
        include_preempted: args.include_preempted,
    };
    let folded = match &args.input {
        Some(path) if path.as_os_str() != "-" => match File::open(path) {
            Ok(file) => fold(BufReader::new(file), options),
            Err(err) => {
                eprintln!("offcpu-fold: cannot open {}: {err}", path.display());
                return ExitCode::from(2);
            }
        },
        _ => fold(io::stdin().lock(), options),
    };
    let folded = match folded {
        Ok(folded) => folded,
        Err(err) => {
            eprintln!("offcpu-fold: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = folded.write_to(io::stdout().lock()) {
        eprintln!("offcpu-fold: writing output: {err}");
        return ExitCode::FAILURE;
    }
    if !args.quiet {
        let s = folded.stats;
        eprintln!(
            "offcpu-fold: {} intervals, {:.3} s off CPU in {} stacks; {} preemptions left out, {} unpaired dropped",
            s.paired,
            s.off_cpu_ns as f64 / 1e9,
            folded.stacks.len(),
            s.preempted,
            s.unpaired
        );
    }
    ExitCode::SUCCESS
}
