//! The `ResourceLimiter` that enforces a plugin's memory cap ([`PluginLimits::memory_bytes`],
//! the limits themselves are configuration: [`crate::config::PluginLimits`]), remembers when it
//! was hit (so the error can name the limit) and the most memory the instance held (for the
//! high-water metric).

pub use crate::config::{DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT_MS, MAX_MEMORY_BYTES, PluginLimits};

/// Enforces [`PluginLimits::memory_bytes`] across all memories of an instance and records the first
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
}
