//! `heliograph-load`: see the crate docs and `tests/load/README.md`.

fn main() -> std::process::ExitCode {
    heliograph_load::cli::main()
}
