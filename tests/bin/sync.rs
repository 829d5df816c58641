//! The `sync` command line (the same program as the `sync` example), built as a binary of
//! this package so that the end-to-end tests run it as `CARGO_BIN_EXE_sync`: always fresh,
//! built by the same `cargo test` as the tests.

fn main() -> std::process::ExitCode {
    sync_examples::main()
}
