//! The `projsync` command line of `sync-cli`, built again as a binary of this package so
//! that the end-to-end tests run it as `CARGO_BIN_EXE_projsync-e2e`: always fresh, built by
//! the same `cargo test` as the tests. (A second binary named `projsync` would collide
//! with `sync-cli`'s in the target directory.)

fn main() -> std::process::ExitCode {
    sync_cli::main()
}
