//! A queue that counts its calls: wraps any [`Queue`] and records each receive, batch delete
//! and visibility change, with its errors, in the queue metrics of
//! [`crate::telemetry::metrics`] (requests and errors by operation, messages received and
//! deleted).

use super::{Queue, QueueError, Received};
use crate::telemetry::metrics::{QUEUE_ERRORS, QUEUE_MESSAGES, QUEUE_REQUESTS};
use std::sync::Arc;
use std::time::Duration;

/// `inner`, with every call counted.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn Queue>,
}

impl Metered {
    /// Count the calls made to `inner`.
    pub fn new(inner: Arc<dyn Queue>) -> Self {
        Self { inner }
    }
}

fn error_label(e: &QueueError) -> &'static str {
    match e {
        QueueError::StaleReceipt(_) => "stale_receipt",
        QueueError::Failed(_) => "failed",
    }
}

impl Metered {
    /// One call of `operation`, counted with its error.
    fn count<T>(
        &self,
        operation: &'static str,
        call: impl FnOnce() -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        QUEUE_REQUESTS.inc(&[operation]);
        let r = call();
        if let Err(e) = &r {
            QUEUE_ERRORS.inc(&[operation, error_label(e)]);
        }
        r
    }
}

impl Queue for Metered {
    fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        QUEUE_REQUESTS.inc(&["receive"]);
        let r = self.inner.receive(max, visibility);
        match &r {
            Ok(m) => QUEUE_MESSAGES.inc_by(&["receive"], m.len() as u64),
            Err(e) => QUEUE_ERRORS.inc(&["receive", error_label(e)]),
        }
        r
    }

    fn delete_batch(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>> {
        QUEUE_REQUESTS.inc(&["delete"]);
        let results = self.inner.delete_batch(receipts);
        for r in &results {
            match r {
                Ok(()) => QUEUE_MESSAGES.inc(&["delete"]),
                Err(e) => QUEUE_ERRORS.inc(&["delete", error_label(e)]),
            }
        }
        results
    }

    fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        self.count("change_visibility", || {
            self.inner.change_visibility(receipt, visibility)
        })
    }

    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    fn send(&self, body: &str) -> Result<String, QueueError> {
        self.count("send", || self.inner.send(body))
    }

    fn retry_later(&self, receipt: &str, wait: Duration, why: &str) -> Result<(), QueueError> {
        self.count("change_visibility", || {
            self.inner.retry_later(receipt, wait, why)
        })
    }

    fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), QueueError> {
        self.count("dead_letter", || self.inner.dead_letter(message, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::local::LocalQueue;

    #[test]
    fn calls_messages_and_errors_are_counted_by_operation() {
        let dir = tempfile::tempdir().expect("tmp");
        let local = LocalQueue::open(&dir.path().join("q.db"), 3).expect("queue");
        for i in 0..2 {
            local.send(&format!("m{i}")).expect("send");
        }
        let q = Metered::new(Arc::new(local));
        let before = |op: &str| QUEUE_REQUESTS.get(&[op]);
        let (r0, d0, v0) = (
            before("receive"),
            before("delete"),
            before("change_visibility"),
        );
        let (m0, e0) = (
            QUEUE_MESSAGES.get(&["receive"]),
            QUEUE_ERRORS.get(&["delete", "stale_receipt"]),
        );
        let got = q.receive(10, Duration::from_secs(30)).expect("receive");
        assert_eq!(got.len(), 2);
        q.change_visibility(&got[0].receipt, Duration::from_secs(30))
            .expect("extend");
        let results = q.delete_batch(&[&got[0].receipt, "stale"]);
        assert!(results[0].is_ok() && results[1].is_err());
        // Other tests in this process count too: compare at least the deltas made here.
        assert!(QUEUE_REQUESTS.get(&["receive"]) - r0 >= 1.0);
        assert!(QUEUE_REQUESTS.get(&["delete"]) - d0 >= 1.0);
        assert!(QUEUE_REQUESTS.get(&["change_visibility"]) - v0 >= 1.0);
        assert!(QUEUE_MESSAGES.get(&["receive"]) - m0 >= 2.0);
        assert!(QUEUE_ERRORS.get(&["delete", "stale_receipt"]) - e0 >= 1.0);
    }
}
