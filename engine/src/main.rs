//! The `mediaflow` binary: everything lives in the library; see `mediaflow::cli`.

fn main() -> std::process::ExitCode {
    mediaflow::cli::main()
}
