//! Job queues. The embedded local queue ([`local::LocalQueue`]) gives one machine the same
//! semantics SQS gives a fleet: a received message is hidden for a visibility timeout and
//! reappears if not deleted (a crashed worker loses nothing), receipts go stale on redelivery,
//! and a message received more than `max_receive_count` times moves to the dead-letter queue.
//! Completed messages are deleted in small batches ([`batch::BatchDeleter`]); [`metered::Metered`]
//! counts any queue's calls for the metrics. A message is moved to the dead-letter queue with
//! the reason it could not be done ([`Queue::dead_letter`]), so the entry explains itself.

pub mod batch;
pub mod local;
pub mod metered;
pub mod sqs;

use std::time::Duration;

/// Most deletes in one batch (SQS's `DeleteMessageBatch` limit).
pub const MAX_DELETE_BATCH: usize = 10;

/// A job queue with SQS semantics. Calls block: the worker makes them from blocking threads.
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Receive up to `max` messages, hiding each for `visibility`.
    fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError>;
    /// Delete received messages (at most [`MAX_DELETE_BATCH`] at once is the efficient size):
    /// one result per receipt, in order. A stale receipt is an error, never a success.
    fn delete_batch(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>>;
    /// Hide a received message for `visibility` from now (heartbeat); zero releases it.
    fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError>;
    /// The largest `max` one receive accepts.
    fn max_batch(&self) -> usize;
    /// Leave a received message to reappear after `wait`, recording `why` it was not done
    /// (the local queue keeps the reason for a later dead-lettering; SQS cannot).
    fn retry_later(&self, receipt: &str, wait: Duration, why: &str) -> Result<(), QueueError> {
        let _ = why;
        self.change_visibility(receipt, wait)
    }
    /// Enqueue `body` (the job API's explicit jobs and local uploads); the message id.
    fn send(&self, body: &str) -> Result<String, QueueError> {
        let _ = body;
        Err(QueueError::Failed("this queue cannot send".into()))
    }
    /// Move a received message to the dead-letter queue now, carrying `reason`. An error when
    /// this queue has no dead-letter queue it can write to: the message is then left to the
    /// queue's own redrive, and the reason is only in the log and the `dead-lettered` event.
    fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), QueueError> {
        let _ = (message, reason);
        Err(QueueError::Failed(
            "this queue has no dead-letter queue to move messages to".into(),
        ))
    }
}

impl Queue for local::LocalQueue {
    fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        local::LocalQueue::receive(self, max, visibility)
    }
    fn delete_batch(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>> {
        local::LocalQueue::delete_batch(self, receipts)
    }
    fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        local::LocalQueue::change_visibility(self, receipt, visibility)
    }
    fn max_batch(&self) -> usize {
        100
    }
    fn retry_later(&self, receipt: &str, wait: Duration, why: &str) -> Result<(), QueueError> {
        local::LocalQueue::retry_later(self, receipt, wait, why)
    }
    fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), QueueError> {
        local::LocalQueue::dead_letter(self, &message.receipt, reason)
    }
    fn send(&self, body: &str) -> Result<String, QueueError> {
        local::LocalQueue::send(self, body)
    }
}

/// A message handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Stable message id.
    pub id: String,
    /// The body.
    pub body: String,
    /// Proof of this receive; deleting or extending needs it, and it goes stale on redelivery.
    pub receipt: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// Queue failures, classed for retry decisions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The receipt no longer names a live receive (the message was redelivered or deleted).
    /// Never to be taken as a successful delete.
    #[error("stale receipt {0}: the message was redelivered or already deleted")]
    StaleReceipt(String),
    /// The queue could not be used (I/O, database, network).
    #[error("queue: {0}")]
    Failed(String),
}
