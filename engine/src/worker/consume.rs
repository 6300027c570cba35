//! The receive loop: take a free slot (K messages in flight), receive up to as many messages as
//! there are free slots, and start a task per message. On shutdown no new receive is made; one
//! still open (an SQS long poll, up to `worker.receive_wait_secs`) is let end, and anything it
//! returns is released right away — abandoned, SQS could hand it messages that would then stay
//! hidden for the visibility timeout. A failing receive is retried after a pause and reported
//! to readiness.

use super::{Context, message, settle};
use crate::queue::Received;
use crate::shutdown::sleep_or_cancelled;
use crate::telemetry::activity::Activity;
use crate::telemetry::health::Part;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Pause after a failed receive.
const RECEIVE_RETRY: Duration = Duration::from_secs(1);

/// Receive and start messages until the shutdown stops receiving; the tasks still running.
pub(super) async fn run(
    ctx: &Arc<Context>,
    activity: &Arc<Activity>,
    concurrency: usize,
    poll: Duration,
) -> JoinSet<()> {
    let stop = ctx.shutdown.receiving().clone();
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.cancelled() => break,
        };
        let want = (slots.available_permits() + 1).min(ctx.queue.max_batch());
        let mut receiving = Box::pin(receive(ctx.clone(), want));
        let got = tokio::select! {
            got = &mut receiving => got,
            _ = stop.cancelled() => {
                // Let the open receive end (the drain waits for it) and hand back what it got.
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    if let Ok(late) = receiving.await {
                        for m in late {
                            settle::release(&ctx, &m).await;
                        }
                    }
                });
                break;
            }
        };
        let messages = match got {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "receive failed; retrying");
                drop(permit);
                sleep_or_cancelled(&stop, RECEIVE_RETRY).await;
                continue;
            }
        };
        if messages.is_empty() {
            drop(permit);
            sleep_or_cancelled(&stop, poll).await;
            continue;
        }
        let mut permit = Some(permit);
        for msg in messages {
            let slot = match permit.take() {
                Some(p) => p,
                None => match slots.clone().try_acquire_owned() {
                    Ok(p) => p,
                    // More than there is room for (should not happen): release it at once.
                    Err(_) => {
                        settle::release(ctx, &msg).await;
                        continue;
                    }
                },
            };
            tasks.spawn(message::process(ctx.clone(), msg, slot, activity.start()));
        }
        while tasks.try_join_next().is_some() {}
    }
    tasks
}

/// One receive on a blocking thread, reported to readiness.
async fn receive(ctx: Arc<Context>, want: usize) -> Result<Vec<Received>, String> {
    let (q, visibility) = (ctx.queue.clone(), ctx.visibility);
    let got = tokio::task::spawn_blocking(move || q.receive(want, visibility))
        .await
        .map_err(|e| format!("receive task failed: {e}"))
        .and_then(|r| r.map_err(|e| e.to_string()));
    ctx.health.report(
        Part::Queue,
        got.as_ref().map(|_| ()).map_err(String::as_str),
    );
    got
}
