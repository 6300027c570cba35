//! Settling a message once its jobs are over: delete it (in a batch) when its outcome is
//! recorded; leave it to reappear after a backoff (with the reason, for a later dead letter)
//! when it is not; move it to the dead-letter queue with its reason after its last receive, or
//! when it can never be recorded; release it (visibility 0) when a shutdown stopped its jobs.
//! Each ending is counted in `mediaflow_messages_total`, once per message for dead letters.

use super::Context;
use crate::lifecycle::{Attempt, Outcome};
use crate::queue::{QueueError, Received};
use crate::telemetry::health::Part;
use crate::telemetry::metrics;
use std::time::Duration;

/// How a message ends.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Settle {
    /// Recorded, or nothing to do: delete it.
    Delete,
    /// Not done this time: let it reappear after a backoff. Says why.
    Retry(String),
    /// Will never be done: into the dead-letter queue with this reason.
    DeadLetter(String),
    /// Not a message we accept, on its last receive: into the dead-letter queue.
    Poison(String),
    /// Stopped by a shutdown: visible again at once for another worker.
    Release,
}

impl Settle {
    /// How a job's outcome settles its message.
    pub fn of(outcome: Outcome, attempt: &Attempt) -> Settle {
        match outcome {
            Outcome::Recorded(_) | Outcome::Duplicate | Outcome::Canceled => Settle::Delete,
            Outcome::Unrecorded(e) if attempt.last => Settle::DeadLetter(e.to_string()),
            Outcome::Unrecorded(e) => Settle::Retry(e.to_string()),
            Outcome::Unrecordable(e) => Settle::DeadLetter(e.to_string()),
            Outcome::Released => Settle::Release,
        }
    }

    /// The message's ending when it has several jobs: the one that keeps it around longest.
    pub fn or(self, other: Settle) -> Settle {
        fn rank(s: &Settle) -> u8 {
            match s {
                Settle::Delete => 0,
                Settle::DeadLetter(_) | Settle::Poison(_) => 1,
                Settle::Retry(_) => 2,
                Settle::Release => 3,
            }
        }
        if rank(&other) > rank(&self) {
            other
        } else {
            self
        }
    }
}

/// Settle `msg` as `how`.
pub(super) async fn settle(ctx: &Context, msg: &Received, how: Settle) {
    let outcome = match &how {
        Settle::Delete => "done",
        Settle::Retry(_) => "retry",
        Settle::DeadLetter(_) => "dead_lettered",
        Settle::Poison(_) => "poison",
        Settle::Release => "released",
    };
    metrics::message_settled(outcome);
    match how {
        Settle::Delete => delete(ctx, msg).await,
        Settle::Retry(reason) => retry(ctx, msg, &reason).await,
        Settle::DeadLetter(reason) | Settle::Poison(reason) => dead_letter(ctx, msg, &reason).await,
        Settle::Release => {
            tracing::warn!(message_id = %msg.id, "drain deadline passed: released for another worker");
            release(ctx, msg).await;
        }
    }
}

/// Delete in the next batch. A stale receipt is never a success: the message reappears and
/// its manifest acknowledges it without work.
async fn delete(ctx: &Context, msg: &Received) {
    match ctx.deleter.delete(msg.receipt.clone()).await {
        Ok(()) => ctx.health.report(Part::Queue, Ok(())),
        Err(e @ QueueError::StaleReceipt(_)) => {
            tracing::warn!(message_id = %msg.id, error_code = "stale_receipt", error = %e, "delete refused: the message was not deleted and will reappear");
        }
        Err(e) => {
            ctx.health.report(Part::Queue, Err(&e.to_string()));
            tracing::warn!(message_id = %msg.id, error_code = "settle_failed", error = %e, "could not delete: the message will reappear and be acknowledged by its manifest");
        }
    }
}

/// Leave it to reappear after the backoff, recording why.
async fn retry(ctx: &Context, msg: &Received, reason: &str) {
    let backoff = redelivery_delay(msg.receive_count, ctx.visibility);
    tracing::warn!(%reason, backoff_s = backoff.as_secs(), "not done this time: will be retried");
    let (q, receipt, why) = (ctx.queue.clone(), msg.receipt.clone(), reason.to_string());
    let result = tokio::task::spawn_blocking(move || q.retry_later(&receipt, backoff, &why)).await;
    report(ctx, msg, result);
}

/// Into the dead-letter queue with the reason; if that cannot be done, leave it to the queue's
/// own redrive (the reason then stays in the log and the `dead-lettered` event).
async fn dead_letter(ctx: &Context, msg: &Received, reason: &str) {
    tracing::error!(%reason, "left for the dead-letter queue, with its reason");
    let (q, m, why) = (ctx.queue.clone(), msg.clone(), reason.to_string());
    let moved = tokio::task::spawn_blocking(move || q.dead_letter(&m, &why)).await;
    match moved {
        Ok(Ok(())) => ctx.health.report(Part::Queue, Ok(())),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not move it to the dead-letter queue now: the queue's redrive will");
            retry(ctx, msg, reason).await;
        }
        Err(e) => tracing::error!(error = %e, "dead-letter task failed"),
    }
}

/// Make `msg` visible again at once, for another worker.
pub(super) async fn release(ctx: &Context, msg: &Received) {
    let (q, receipt) = (ctx.queue.clone(), msg.receipt.clone());
    let result =
        tokio::task::spawn_blocking(move || q.change_visibility(&receipt, Duration::ZERO)).await;
    report(ctx, msg, result);
}

/// Log and report how a visibility change went.
fn report(
    ctx: &Context,
    msg: &Received,
    result: Result<Result<(), QueueError>, tokio::task::JoinError>,
) {
    match result {
        Ok(Ok(())) => ctx.health.report(Part::Queue, Ok(())),
        // Another worker owns the message now: nothing of ours to settle.
        Ok(Err(e @ QueueError::StaleReceipt(_))) => {
            tracing::warn!(message_id = %msg.id, error_code = "stale_receipt", error = %e, "could not settle message")
        }
        Ok(Err(e)) => {
            ctx.health.report(Part::Queue, Err(&e.to_string()));
            tracing::warn!(message_id = %msg.id, error_code = "settle_failed", error = %e, "could not settle message: it reappears after its visibility timeout");
        }
        Err(e) => tracing::error!(error = %e, "settle task failed"),
    }
}

/// How long a message not done waits before it reappears: 1 s, 2 s, 4 s… by receive count,
/// capped at the visibility timeout.
fn redelivery_delay(receive_count: u32, visibility: Duration) -> Duration {
    Duration::from_secs(1u64 << receive_count.saturating_sub(1).min(16)).min(visibility)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redelivery_delay_doubles_and_is_capped() {
        let v = Duration::from_secs(30);
        assert_eq!(redelivery_delay(1, v), Duration::from_secs(1));
        assert_eq!(redelivery_delay(3, v), Duration::from_secs(4));
        assert_eq!(redelivery_delay(9, v), v);
    }

    #[test]
    fn a_message_with_several_jobs_settles_as_its_longest_lived_job() {
        let retry = || Settle::Retry("disk full".into());
        assert_eq!(Settle::Delete.or(retry()), retry());
        assert_eq!(retry().or(Settle::DeadLetter("x".into())), retry());
        assert_eq!(
            Settle::DeadLetter("x".into()).or(Settle::Release),
            Settle::Release
        );
        assert_eq!(Settle::Delete.or(Settle::Delete), Settle::Delete);
    }
}
