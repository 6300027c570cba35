//! One received message: parse it (every form DESIGN §2 accepts), plan and run each of its jobs
//! through the lifecycle with a heartbeat running, and decide how to settle it. The work runs
//! on a blocking thread inside the message's span (`message_id`, `receive_count`).

use super::settle::{self, Settle};
use super::{Context, heartbeat};
use crate::error::JobError;
use crate::index::follow::Gate;
use crate::job::control::JobControl;
use crate::job::{self, MessageError, Parsed};
use crate::lifecycle::{Attempt, JobRequest, Outcome};
use crate::queue::Received;
use crate::telemetry::activity::Busy;
use crate::telemetry::health::Part;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

/// Work on `msg` in its slot, then settle it.
pub(super) async fn process(
    ctx: Arc<Context>,
    msg: Received,
    slot: OwnedSemaphorePermit,
    busy: Busy,
) {
    let span =
        tracing::info_span!("message", message_id = %msg.id, receive_count = msg.receive_count);
    async move {
        ctx.track(&msg.id, &msg.receipt);
        let beat = heartbeat::start(&ctx, &msg.receipt);
        let work = {
            let (ctx, msg) = (ctx.clone(), msg.clone());
            // Blocking threads don't inherit the span: carry the message's into the jobs.
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || span.in_scope(|| handle(&ctx, &msg)))
        };
        let settle = work
            .await
            .unwrap_or_else(|e| Settle::Retry(format!("job task failed: {e}")));
        drop(beat);
        ctx.untrack(&msg.id);
        // The jobs are over: the slot is free while the delete waits for its batch.
        drop(slot);
        settle::settle(&ctx, &msg, settle).await;
        drop(busy);
    }
    .instrument(span)
    .await
}

/// Run the message's jobs; how to settle it.
fn handle(ctx: &Context, msg: &Received) -> Settle {
    let attempt = Attempt::queued(msg.receive_count, ctx.max_receive);
    let jobs = match job::parse(&msg.body) {
        Ok(Parsed::Ignore(why)) => {
            tracing::info!(reason = %why, "nothing to do: acknowledged");
            return Settle::Delete;
        }
        Ok(Parsed::Jobs(jobs)) => jobs,
        Err(e) => return bad_message(ctx, msg, &attempt, &e),
    };
    let mut settle = Settle::Delete;
    for spec in &jobs {
        let adopted = ctx.follow.as_ref().map(|f| f.adopt(spec, &ctx.planner));
        let spec = adopted.as_ref().unwrap_or(spec);
        let outcome = match ctx.planner.plan(spec) {
            Ok(request) => match run(ctx, &request, &attempt) {
                Some(outcome) => outcome,
                None => continue,
            },
            Err(unplanned) => ctx.lifecycle.unplanned(&unplanned, &attempt),
        };
        report_store(ctx, &outcome);
        settle = settle.or(Settle::of(outcome, &attempt));
    }
    settle
}

/// Run one planned job, telling the index; `None` when the index says it was canceled before
/// it ran (nothing to do: the message is acknowledged).
fn run(ctx: &Context, request: &JobRequest, attempt: &Attempt) -> Option<Outcome> {
    if let Some(follow) = &ctx.follow
        && let Gate::Skip(status) = follow.start(request, attempt)
    {
        tracing::info!(job_id = %request.id, %status, "the job is {status} in the index: acknowledged without work");
        return None;
    }
    let control = JobControl::new(
        &request.id,
        ctx.shutdown.jobs().clone(),
        ctx.observer.clone(),
    );
    let outcome = ctx.lifecycle.run(request, attempt, &control);
    if let Some(follow) = &ctx.follow {
        follow.finish(request, attempt, &outcome);
    }
    Some(outcome)
}

/// Readiness follows the store: a job recorded says it works, one left unrecorded by a
/// storage or disk failure says it does not.
fn report_store(ctx: &Context, outcome: &Outcome) {
    match outcome {
        Outcome::Recorded(_) | Outcome::Duplicate => ctx.health.report(Part::Store, Ok(())),
        Outcome::Unrecorded(e @ (JobError::Storage { .. } | JobError::Exhausted { .. })) => {
            ctx.health.report(Part::Store, Err(&e.to_string()))
        }
        _ => {}
    }
}

/// A message that is not a job: retried until the queue's last receive, then dead-lettered
/// with the reason (and a `dead-lettered` event, error code `bad_message`).
fn bad_message(ctx: &Context, msg: &Received, attempt: &Attempt, e: &MessageError) -> Settle {
    let reason = e.to_string();
    if !attempt.last {
        tracing::warn!(%reason, "bad message: it will be dead-lettered on its last receive");
        return Settle::Retry(reason);
    }
    crate::lifecycle::events::bad_message(ctx.lifecycle.notifier(), &msg.id, attempt, e, &msg.body);
    Settle::Poison(format!("{reason}; body: {}", truncate(&msg.body, 200)))
}

fn truncate(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
