//! Per-plugin resource limits (memory, wall time, fuel) and the `ResourceLimiter` that
//! enforces the memory cap, remembers when it was hit (so the error can name the limit) and
//! the most memory the instance held (for the high-water metric).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default linear-memory cap per plugin instance.
pub const DEFAULT_MEMORY_BYTES: u64 = 128 * 1024 * 1024;
/// Default wall-time limit per call.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Largest memory cap a plugin may ask for (the pooling allocator reserves this per slot).
pub const MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;

/// Limits for one plugin. Every field has a default; `plugin.toml` and profiles override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory an instance may grow to, in bytes (all its memories together).
    pub memory_bytes: u64,
    /// Wall time one call may take, in milliseconds (enforced by epoch interruption).
    pub timeout_ms: u64,
    /// Optional fuel (roughly, wasm instructions) one call may burn; `None` = unmetered.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            fuel: None,
        }
    }
}

impl Limits {
    /// The wall-time limit as a `Duration`.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Check the values are usable; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_bytes == 0 || self.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "memory_bytes = {} must be between 1 and {MAX_MEMORY_BYTES}",
                self.memory_bytes
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 10 * 60 * 1000 {
            return Err(format!(
                "timeout_ms = {} must be between 1 and 600000",
                self.timeout_ms
            ));
        }
        if self.fuel == Some(0) {
            return Err("fuel = 0 would stop every call; omit it for no fuel limit".into());
        }
        Ok(())
    }
}

/// Enforces [`Limits::memory_bytes`] across all memories of an instance and records the first
/// refused growth.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    in_use: usize,
    /// Most linear memory the instance has held, in bytes.
    pub peak: usize,
    /// `Some(bytes requested)` once a growth was refused.
    pub exceeded: Option<usize>,
}

impl MemoryLimiter {
    pub fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            in_use: 0,
            peak: 0,
            exceeded: None,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.in_use - current.min(self.in_use) + desired;
        if total > self.limit {
            self.exceeded = Some(total);
            // An error (not `Ok(false)`) so a guest cannot swallow the refusal and carry on.
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded (requested {total} bytes)",
                self.limit
            ));
        }
        self.in_use = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn limiter_counts_all_memories_and_records_the_refusal() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).is_ok());
        // A second memory of 50 brings the total to 110 > 100.
        assert!(l.memory_growing(0, 50, None).is_err());
        assert_eq!(l.exceeded, Some(110));
        assert_eq!(l.peak, 60, "the refused growth never happened");
    }

    #[test]
    fn limits_validate_names_the_field() {
        let bad = Limits {
            timeout_ms: 0,
            ..Limits::default()
        };
        assert!(
            bad.validate()
                .err()
                .is_some_and(|e| e.contains("timeout_ms"))
        );
        assert!(Limits::default().validate().is_ok());
    }
}
