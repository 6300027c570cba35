//! Per-instance state: the WASI context (granting nothing: no files, environment, network),
//! the resource table, the memory limiter, the wall-time deadline, and the guest's captured
//! stdout/stderr, sent line by line to the engine log under the plugin's name.

use super::limits::MemoryLimiter;
use super::loaded::PluginInner;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-instance state: WASI context (granting nothing), resources, limits, captured output.
pub(crate) struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) plugin: Arc<PluginInner>,
    pub(super) stdout: MemoryOutputPipe,
    pub(super) stderr: MemoryOutputPipe,
    pub(super) logged_out: usize,
    pub(super) logged_err: usize,
    /// Host `log` calls so far.
    pub(super) log_lines: u32,
    /// When the current call's wall time runs out.
    pub(super) deadline: Instant,
    /// Set when the epoch callback interrupted a call.
    pub(super) timed_out: bool,
}

impl HostState {
    /// Send what the guest wrote to stdout/stderr since last time to the engine log.
    pub(super) fn flush_output(&mut self) {
        for (pipe, done, stream) in [
            (&self.stdout, &mut self.logged_out, "stdout"),
            (&self.stderr, &mut self.logged_err, "stderr"),
        ] {
            let all = pipe.contents();
            if all.len() <= *done {
                continue;
            }
            let text = String::from_utf8_lossy(&all[*done..]);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!(target: "mediaflow::plugin::guest", plugin = %self.plugin.label, stream, "{line}");
            }
            *done = all.len();
        }
    }

    pub(super) fn stderr_tail(&self) -> String {
        let all = self.stderr.contents();
        let text = String::from_utf8_lossy(&all);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        let mut cut = tail.len().min(600);
        while !tail.is_char_boundary(cut) {
            cut -= 1;
        }
        tail[..cut].to_string()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
