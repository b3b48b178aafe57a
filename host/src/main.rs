//! The `heliograph` binary: see [`heliograph::cli`].

fn main() -> std::process::ExitCode {
    heliograph::cli::main()
}
