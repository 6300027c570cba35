//! The end of a worker's run, once it stopped receiving: in-flight jobs get the drain deadline
//! (`worker.drain_timeout_secs`); past it, they are stopped at their next check and their
//! messages released; a job that does not reach a check within a short grace is released from
//! here and left behind (the process exits). Then the deletes still waiting for a batch are
//! sent.

use super::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{JoinHandle, JoinSet};

/// How long stopped jobs have to reach a check and settle.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long the last deletes may take.
const FLUSH: Duration = Duration::from_secs(10);

/// Wait for `tasks` within `deadline`, then stop what is left; flush the deleter.
pub(super) async fn drain(
    ctx: &Arc<Context>,
    mut tasks: JoinSet<()>,
    deleter: JoinHandle<()>,
    deadline: Duration,
) {
    if tokio::time::timeout(deadline, join_all(&mut tasks))
        .await
        .is_err()
    {
        tracing::warn!(
            running = tasks.len(),
            "drain deadline passed: stopping the jobs still running"
        );
        // Heartbeats end with the jobs' phase, so none extends a message after its release.
        ctx.shutdown.stop_jobs();
        if tokio::time::timeout(STOP_GRACE, join_all(&mut tasks))
            .await
            .is_err()
        {
            release_stuck(ctx).await;
            tasks.detach_all();
        }
    }
    // Send the deletes still waiting for a batch.
    ctx.shutdown.stop_services();
    if tokio::time::timeout(FLUSH, deleter).await.is_err() {
        tracing::warn!(
            "pending deletes not sent in time: those messages will reappear and be acknowledged by their manifests"
        );
    }
}

async fn join_all(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

/// Release the messages of jobs that did not stop in time.
async fn release_stuck(ctx: &Arc<Context>) {
    let stuck: Vec<(String, String)> = ctx
        .lock_in_flight()
        .iter()
        .map(|(id, receipt)| (id.clone(), receipt.clone()))
        .collect();
    for (id, receipt) in stuck {
        let q = ctx.queue.clone();
        let released =
            tokio::task::spawn_blocking(move || q.change_visibility(&receipt, Duration::ZERO))
                .await;
        match released {
            Ok(Ok(())) => {
                tracing::warn!(message_id = %id, "drain deadline passed: released for another worker")
            }
            Ok(Err(e)) => tracing::warn!(message_id = %id, error = %e, "could not release"),
            Err(e) => tracing::warn!(message_id = %id, error = %e, "could not release"),
        }
    }
}
