//! `mediaflow:plugin/host`: what every plugin may ask of the engine — write a log line (at most
//! [`MAX_LOG_LINES`] per instance, each cut to [`MAX_LOG_LINE`] bytes), read its configuration,
//! and see how much of its call's wall time is left.

use crate::plugin::bindings::extractor::mediaflow::plugin::host;
use crate::plugin::state::HostState;
use std::time::Instant;
use wasmtime::component::{HasSelf, Linker};

/// Log lines (host `log` calls) one instance may emit; the rest are counted and dropped.
pub const MAX_LOG_LINES: u32 = 1_000;
/// Longest log line kept, in bytes.
pub const MAX_LOG_LINE: usize = 4 * 1024;

/// Add the interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl host::Host for HostState {
    fn log(&mut self, level: host::LogLevel, message: String) -> wasmtime::Result<()> {
        use host::LogLevel;
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(plugin = %self.plugin.label, "plugin log line cap ({MAX_LOG_LINES}) reached; dropping further lines");
            }
            return Ok(());
        }
        let mut end = message.len().min(MAX_LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let msg = &message[..end];
        let plugin = &self.plugin.label;
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "mediaflow::plugin::guest", %plugin, "{msg}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "mediaflow::plugin::guest", %plugin, "{msg}")
            }
            LogLevel::Info => tracing::info!(target: "mediaflow::plugin::guest", %plugin, "{msg}"),
            LogLevel::Warn => tracing::warn!(target: "mediaflow::plugin::guest", %plugin, "{msg}"),
            LogLevel::Error => {
                tracing::error!(target: "mediaflow::plugin::guest", %plugin, "{msg}")
            }
        }
        Ok(())
    }

    fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.plugin.spec.config.get(&key).cloned())
    }

    fn config_keys(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.plugin.spec.config.keys().cloned().collect())
    }

    fn time_left_ms(&mut self) -> wasmtime::Result<u64> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        Ok(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }
}
