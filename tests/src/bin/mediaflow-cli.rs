//! The `mediaflow` command line, built inside the test package so integration tests run the
//! current code (`CARGO_BIN_EXE_mediaflow-cli`).
//!
//! With `PEAK_RSS_REPORT_FILE` set (not a `MEDIAFLOW_*` name: those are config overrides),
//! it writes its own peak resident set (`VmHWM` of `/proc/self/status`, in KiB) to that file
//! before exiting. That figure starts at `exec`; the `ru_maxrss` a parent gets from `wait4`
//! does not: it also carries the parent's own peak from before the `exec` (the child shared
//! or copied the parent's memory until then), so a big test process would make every child
//! look big.

fn main() -> std::process::ExitCode {
    let code = mediaflow::cli::main();
    if let Some(file) = std::env::var_os("PEAK_RSS_REPORT_FILE") {
        let peak = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            });
        if let Some(kib) = peak {
            let _ = std::fs::write(file, kib.to_string());
        }
    }
    code
}
