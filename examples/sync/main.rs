//! The `sync` command line: `cargo build --release --examples` builds it as
//! `target/release/examples/sync`. See `sync --help`, and the `sync_examples` library for
//! the code.

fn main() -> std::process::ExitCode {
    sync_examples::main()
}
