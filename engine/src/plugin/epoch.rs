//! The epoch ticker: advances the wasmtime engine's epoch every [`EPOCH_TICK`] on a thread
//! of its own, so a call's wall-time limit is checked at that granularity; it stops when its
//! token is cancelled (the host is dropped).

use crate::shutdown::CancellationToken;
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::Engine;

/// How often the epoch advances; the wall-time limit is checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(super) struct EpochTicker {
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(super) fn start(engine: Engine) -> Self {
        let stop = CancellationToken::new();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.is_cancelled() {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
