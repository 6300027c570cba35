//! The `mediaflow` command line, built inside the test package so integration tests run the
//! current code (`CARGO_BIN_EXE_mediaflow-cli`).

fn main() -> std::process::ExitCode {
    mediaflow::cli::main()
}
