//! The heartbeat: while a message's jobs run, its visibility is extended every third of the
//! timeout, so a long transcode is never handed to a second worker. It stops when its guard is
//! dropped (the jobs are over) or when the shutdown stops jobs (the message is then released).

use super::Context;
use crate::shutdown::{CancellationToken, sleep_or_cancelled};
use std::sync::Arc;
use tokio_util::sync::DropGuard;
use tracing::Instrument;

/// Start extending `receipt`'s visibility; the heartbeat ends when the guard is dropped.
pub(super) fn start(ctx: &Arc<Context>, receipt: &str) -> DropGuard {
    let stop: CancellationToken = ctx.shutdown.jobs().child_token();
    let guard = stop.clone().drop_guard();
    let (queue, receipt, visibility) = (ctx.queue.clone(), receipt.to_string(), ctx.visibility);
    tokio::spawn(
        async move {
            while !sleep_or_cancelled(&stop, visibility / 3).await {
                let (q, r) = (queue.clone(), receipt.clone());
                match tokio::task::spawn_blocking(move || q.change_visibility(&r, visibility)).await
                {
                    Ok(Ok(())) => tracing::debug!("visibility extended"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "heartbeat failed"),
                    Err(_) => break,
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
    guard
}
