//! `loadgen`: parse the flags, build the runtime, run the rounds, exit 0 / 1 (gate) / 2 (error).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use loadgen::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::usage_error(e),
    };
    let runtime = match build_runtime(cli.worker_threads()) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::execute(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// One thread: a current-thread runtime, no cross-thread wake-ups. More: multi-thread.
fn build_runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .build()
        .context("building the tokio runtime")
}
