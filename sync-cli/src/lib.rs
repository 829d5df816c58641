#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// A command line prints: that is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod dburl;
mod embedder;
mod exit;
mod open;
mod quote;
mod report;

use std::process::ExitCode;

use clap::Parser as _;

pub use cli::Cli;
pub use exit::Exit;

/// Parses the process's arguments and runs the command: the whole of `projsync`.
///
/// A usage error prints clap's message and exits 2; `--help` and `--version` exit 0.
pub fn main() -> ExitCode {
    run(&Cli::parse())
}

/// Runs a parsed command line and returns its exit status (see [`Exit`]).
pub fn run(cli: &Cli) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let target = open::Target::new(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    let exit = match runtime.block_on(commands::dispatch(&target, &cli.command)) {
        Ok(exit) => exit,
        Err(e) => report::fail(&e, &target.db),
    };
    exit.into()
}
