//! `projsync`: keep a project's memory in sync with a code repository. See `projsync
//! --help`, and the `sync_cli` library for the code.

fn main() -> std::process::ExitCode {
    sync_cli::run(&<sync_cli::Cli as clap::Parser>::parse())
}
