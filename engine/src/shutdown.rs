//! Shutdown, one mechanism: tokio-util's [`CancellationToken`], in three phases that every
//! part of a running engine follows.
//!
//! 1. **Stop receiving** (SIGTERM/SIGINT, [`Shutdown::stop_receiving`]): the worker takes no
//!    new message (an open long poll is cancelled), `/readyz` answers 503 `draining`, jobs in
//!    flight go on.
//! 2. **Stop jobs** (the drain deadline passed, [`Shutdown::stop_jobs`]): every job's token is
//!    a child of this one, so jobs still running stop at their next check (between renditions,
//!    between frames) and their messages are released for another worker.
//! 3. **Stop services** ([`Shutdown::stop_services`]): background tasks — the batch deleter,
//!    the notifier's deliveries, the heartbeats, the registry poller, the ops listener and ECS
//!    task protection — flush what they hold and end.
//!
//! A component that runs until shut down takes the token of its phase and selects on
//! [`CancellationToken::cancelled`] (async) or checks [`CancellationToken::is_cancelled`]
//! (a thread); nothing else (no watch channels, oneshots, flags or abort-on-drop) stops it.

use std::time::Duration;
pub use tokio_util::sync::CancellationToken;

/// The three phases of a shutdown. Cheap to clone: clones share the tokens.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    receiving: CancellationToken,
    jobs: CancellationToken,
    services: CancellationToken,
}

impl Shutdown {
    /// Nothing stopped yet.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Stop receiving when the process gets SIGTERM or SIGINT (a task on the current runtime).
    pub fn on_signals(&self) {
        let receiving = self.receiving.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = wait_for_signal() => {
                    tracing::info!("shutdown requested: no new receives; draining in-flight jobs");
                    receiving.cancel();
                }
                _ = receiving.cancelled() => {}
            }
        });
    }

    /// Phase 1: take no new work.
    pub fn stop_receiving(&self) {
        self.receiving.cancel();
    }

    /// Cancelled once no new work is to be taken.
    pub fn receiving(&self) -> &CancellationToken {
        &self.receiving
    }

    /// Whether phase 1 has begun (`/readyz` says `draining`).
    pub fn is_draining(&self) -> bool {
        self.receiving.is_cancelled()
    }

    /// Phase 2: stop the jobs still running.
    pub fn stop_jobs(&self) {
        self.receiving.cancel();
        self.jobs.cancel();
    }

    /// A token for one job: cancelled by [`Shutdown::stop_jobs`], or on its own.
    pub fn job_token(&self) -> CancellationToken {
        self.jobs.child_token()
    }

    /// The token every job's is a child of.
    pub fn jobs(&self) -> &CancellationToken {
        &self.jobs
    }

    /// Phase 3: background services flush and end.
    pub fn stop_services(&self) {
        self.stop_jobs();
        self.services.cancel();
    }

    /// Cancelled when background services are to end.
    pub fn services(&self) -> &CancellationToken {
        &self.services
    }
}

/// Sleep for `d`, or less if `token` is cancelled first; `true` when cancelled.
pub async fn sleep_or_cancelled(token: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => token.is_cancelled(),
        _ = token.cancelled() => true,
    }
}

/// Block this thread — one outside the async runtime, such as the registry poller's — for `d`,
/// waking as soon as `token` is cancelled; `true` when cancelled.
pub fn park_or_cancelled(token: &CancellationToken, d: Duration) -> bool {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(timer) => timer.block_on(sleep_or_cancelled(token, d)),
        Err(_) => {
            std::thread::sleep(d);
            token.is_cancelled()
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_cascade_and_job_tokens_follow_the_jobs_phase() {
        let s = Shutdown::new();
        let job = s.job_token();
        let own = s.job_token();
        own.cancel();
        assert!(!s.jobs().is_cancelled(), "one job's cancel stops only it");
        s.stop_receiving();
        assert!(s.is_draining() && !job.is_cancelled());
        s.stop_services();
        assert!(job.is_cancelled() && s.services().is_cancelled());
        assert!(sleep_or_cancelled(s.services(), Duration::from_secs(60)).await);
    }

    #[test]
    fn a_parked_thread_wakes_when_cancelled() {
        let token = CancellationToken::new();
        assert!(!park_or_cancelled(&token, Duration::from_millis(1)));
        let t = token.clone();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            t.cancel();
        });
        let started = std::time::Instant::now();
        assert!(park_or_cancelled(&token, Duration::from_secs(60)));
        assert!(started.elapsed() < Duration::from_secs(5));
        waker.join().expect("waker");
    }
}
