//! Deletes collected briefly and sent in batches. A finished job hands its receipt to the
//! [`BatchDeleter`] and waits for that receipt's own result; the deleter sends a batch as soon
//! as [`MAX_DELETE_BATCH`] receipts are waiting or the first of them has waited `linger`, one
//! batch at a time (receipts arriving meanwhile form the next). Each entry's result goes back
//! to its job, so a stale receipt is reported for that message alone. At shutdown (its token
//! cancelled) it sends what it holds, refuses new deletes and ends.

use super::{MAX_DELETE_BATCH, Queue, QueueError};
use crate::shutdown::CancellationToken;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long the first receipt of a batch waits for others by default.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(50);

struct Pending {
    receipt: String,
    done: oneshot::Sender<Result<(), QueueError>>,
}

/// A handle to the batching task; clone it into every job. The task ends once its token is
/// cancelled (or every handle is dropped) and what was queued has been sent.
#[derive(Debug, Clone)]
pub struct BatchDeleter {
    tx: mpsc::UnboundedSender<Pending>,
}

impl BatchDeleter {
    /// Start the batching task on the current runtime, until `stop` is cancelled.
    pub fn spawn(
        queue: Arc<dyn Queue>,
        linger: Duration,
        stop: CancellationToken,
    ) -> (BatchDeleter, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(queue, rx, linger, stop));
        (BatchDeleter { tx }, task)
    }

    /// Delete the message with `receipt`, in the next batch; its own result.
    pub async fn delete(&self, receipt: String) -> Result<(), QueueError> {
        let (done, result) = oneshot::channel();
        self.tx
            .send(Pending { receipt, done })
            .map_err(|_| QueueError::Failed("the batch deleter has stopped".into()))?;
        result
            .await
            .map_err(|_| QueueError::Failed("the batch deleter dropped the delete".into()))?
    }
}

async fn run(
    queue: Arc<dyn Queue>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    linger: Duration,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            p = rx.recv() => p,
            _ = stop.cancelled() => {
                // No new deletes; those already handed over are still sent.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        let deadline = tokio::time::Instant::now() + linger;
        let mut batch = vec![first];
        while batch.len() < MAX_DELETE_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => batch.push(p),
                Ok(None) | Err(_) => break,
            }
        }
        let receipts: Vec<String> = batch.iter().map(|p| p.receipt.clone()).collect();
        let q = queue.clone();
        let n = receipts.len();
        let results = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = receipts.iter().map(String::as_str).collect();
            q.delete_batch(&refs)
        })
        .await
        .unwrap_or_else(|e| vec![Err(QueueError::Failed(format!("delete task failed: {e}"))); n]);
        tracing::debug!(batch = n, "deleted a batch");
        let mut results = results.into_iter();
        for p in batch {
            let r = results.next().unwrap_or_else(|| {
                Err(QueueError::Failed(
                    "the queue returned too few results".into(),
                ))
            });
            // The job may have stopped waiting (drain deadline); its result is then moot.
            let _ = p.done.send(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Received;
    use crate::queue::local::LocalQueue;
    use std::sync::Mutex;

    /// The local queue, recording the size of every delete batch.
    #[derive(Debug)]
    struct Counting(LocalQueue, Mutex<Vec<usize>>);

    impl Queue for Counting {
        fn receive(&self, max: usize, v: Duration) -> Result<Vec<Received>, QueueError> {
            self.0.receive(max, v)
        }
        fn delete_batch(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>> {
            self.1.lock().expect("lock").push(receipts.len());
            self.0.delete_batch(receipts)
        }
        fn change_visibility(&self, r: &str, v: Duration) -> Result<(), QueueError> {
            self.0.change_visibility(r, v)
        }
        fn max_batch(&self) -> usize {
            10
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deletes_are_batched_and_each_gets_its_own_result() {
        let dir = tempfile::tempdir().expect("tmp");
        let local = LocalQueue::open(&dir.path().join("q.db"), 5).expect("open");
        for i in 0..25 {
            local.send(&format!("m{i}")).expect("send");
        }
        let mut got = Vec::new();
        while got.len() < 25 {
            got.extend(local.receive(10, Duration::from_secs(60)).expect("receive"));
        }
        let counting = Arc::new(Counting(local, Mutex::new(Vec::new())));
        let (deleter, task) = BatchDeleter::spawn(
            counting.clone(),
            Duration::from_millis(50),
            CancellationToken::new(),
        );
        let mut jobs = tokio::task::JoinSet::new();
        for m in got {
            let d = deleter.clone();
            jobs.spawn(async move { d.delete(m.receipt).await });
        }
        let stale = deleter.clone();
        jobs.spawn(async move { stale.delete("not-a-receipt".into()).await });
        let mut ok = 0;
        let mut stale_errors = 0;
        while let Some(r) = jobs.join_next().await {
            match r.expect("join") {
                Ok(()) => ok += 1,
                Err(QueueError::StaleReceipt(r)) if r == "not-a-receipt" => stale_errors += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!((ok, stale_errors), (25, 1));
        drop(deleter);
        task.await
            .expect("the task ends when every handle is dropped");
        let sizes = counting.1.lock().expect("lock").clone();
        assert_eq!(sizes.iter().sum::<usize>(), 26, "{sizes:?}");
        assert!(
            sizes.iter().all(|&n| n <= MAX_DELETE_BATCH) && sizes.len() <= 5,
            "26 deletes sent at once go in a few batches of at most 10: {sizes:?}"
        );
        assert_eq!(counting.0.depth().expect("depth"), (0, 0));
    }
}
