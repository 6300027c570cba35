//! Why a call failed, in the plugin's terms: the wall-time limit (the epoch deadline passed),
//! the memory cap (the limiter refused a growth), the fuel budget, or a trap with its reason
//! and the tail of what the guest wrote to stderr.

use super::error::{PluginError, PluginErrorKind};
use super::loaded::Plugin;
use super::state::HostState;
use wasmtime::{Store, Trap};

impl Plugin {
    /// Turn a wasmtime error from a call into a typed error naming the limit involved.
    pub(super) fn classify(&self, store: &Store<HostState>, e: wasmtime::Error) -> PluginError {
        let data = store.data();
        let limits = self.inner.spec.limits;
        if data.timed_out {
            return self.err(PluginErrorKind::Timeout {
                limit: limits.timeout(),
            });
        }
        if let Some(requested) = data.limiter.exceeded {
            return self.err(PluginErrorKind::MemoryLimit {
                limit: limits.memory_bytes,
                requested: requested as u64,
            });
        }
        let trap = e.downcast_ref::<Trap>().copied();
        if trap == Some(Trap::OutOfFuel)
            && let Some(budget) = limits.fuel
        {
            return self.err(PluginErrorKind::FuelExhausted { budget });
        }
        let reason = match trap {
            Some(Trap::StackOverflow) => "stack overflow (call stack exhausted)".to_string(),
            Some(t) => t.to_string(),
            None => first_line(&e),
        };
        self.err(PluginErrorKind::Trap {
            reason,
            stderr: data.stderr_tail(),
        })
    }
}

/// The first line of a wasmtime error and its causes.
pub(super) fn first_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}
