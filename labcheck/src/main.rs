//! `labcheck`: parse the subcommand, run its check, print the verdict; exit 0 / 1 (failed) /
//! 2 (bad usage).

use std::process::ExitCode;

use clap::Parser;
use labcheck::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return loadgen::cli::usage_error(e),
    };
    cli::report_verdict(cli::run(&cli.check))
}
