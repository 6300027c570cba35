//! The job time limit (`worker.job_timeout_secs`), checked every quarter of it (at most 5 s):
//! jobs running past it are told to stop (recorded as failed, `timed_out`); one still running
//! as long again later (at most [`STUCK_AFTER`]) is in code that never reaches a check (a hung
//! native library), so the worker says it is unhealthy (`/healthz` 503, `/readyz` too) and
//! logs it as an error: an orchestrator (ECS's health check) replaces the process, whose
//! messages come back after their visibility timeout (the heartbeat dies with it), counted
//! against the queue's receives.

use crate::lifecycle::Running;
use crate::shutdown::{CancellationToken, sleep_or_cancelled};
use crate::telemetry::health::Health;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a job told to stop may take to reach its next check before it counts as stuck
/// (a check comes at least per frame and between outputs; storing one large output to S3 is
/// the longest stretch without one); a shorter limit gives as long again.
pub(super) const STUCK_AFTER: Duration = Duration::from_secs(300);

/// Keep `limit` on the jobs in `running` until `stop`.
pub(super) async fn watch(
    running: Arc<Running>,
    health: Arc<Health>,
    limit: Duration,
    grace: Duration,
    stop: CancellationToken,
) {
    let every = (limit / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut was_stuck = false;
    while !sleep_or_cancelled(&stop, every).await {
        let stuck = running.enforce(limit, grace, Instant::now());
        if stuck.is_empty() {
            if was_stuck {
                tracing::info!("no job is stuck any more: healthy again");
                health.set_stuck(None);
                was_stuck = false;
            }
            continue;
        }
        let why = stuck
            .iter()
            .map(|s| {
                format!(
                    "job {} has run {} s, past worker.job_timeout_secs ({} s), and did not stop when told",
                    s.job_id,
                    s.running.as_secs(),
                    limit.as_secs()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        if !was_stuck {
            tracing::error!(error_code = "job_stuck", reason = %why, "a job is stuck: reporting unhealthy so the process is replaced");
        }
        health.set_stuck(Some(why));
        was_stuck = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::control::JobControl;

    #[tokio::test]
    async fn a_job_that_does_not_stop_makes_the_worker_unhealthy_until_it_ends() {
        let running = Arc::new(Running::default());
        let health = Arc::new(Health::new(Duration::ZERO, Duration::from_secs(1)));
        let stop = CancellationToken::new();
        let limit = Duration::from_millis(300);
        tokio::spawn(watch(
            running.clone(),
            health.clone(),
            limit,
            limit,
            stop.clone(),
        ));
        let control = JobControl::detached("j-stuck");
        let guard = running.enter(&control);
        // A job that never checks: told to stop past the limit, stuck as long again later.
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            control.canceled(),
            Some(crate::error::CancelReason::TimedOut)
        );
        assert!(health.liveness().is_ok(), "not stuck yet");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let why = health.liveness().expect_err("stuck");
        assert!(
            why.contains("job j-stuck") && why.contains("job_timeout_secs"),
            "{why}"
        );
        drop(guard);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(health.liveness().is_ok(), "healthy once it ended");
        stop.cancel();
    }
}
