//! The SQS queue: long-polling receives (20 s), visibility changes for heartbeats and
//! releases, deletes that treat a stale receipt as an error. The SDK is async; these calls
//! block on the runtime from the worker's blocking threads.

use super::{Queue, QueueError, Received};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use std::time::Duration;
use tokio::runtime::Handle;

/// Seconds a receive waits for messages (SQS's maximum long poll).
pub const LONG_POLL_SECS: i32 = 20;

/// An SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    runtime: Handle,
}

impl SqsQueue {
    /// The queue at `url`, called through `client` on `runtime`.
    pub fn new(client: Client, url: impl Into<String>, runtime: Handle) -> Self {
        Self {
            client,
            url: url.into(),
            runtime,
        }
    }

    /// Enqueue `body`; returns the message id.
    pub fn send(&self, body: &str) -> Result<String, QueueError> {
        let out = self
            .runtime
            .block_on(
                self.client
                    .send_message()
                    .queue_url(&self.url)
                    .message_body(body)
                    .send(),
            )
            .map_err(|e| QueueError::Failed(describe(&e)))?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }
}

fn describe<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
) -> String {
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("error"),
                err.message().unwrap_or("")
            )
        }
        other => format!("{other:?}").chars().take(300).collect(),
    }
}

/// Whether an SQS error says the receipt handle no longer names an in-flight receive.
fn is_stale<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    let code = e.code().unwrap_or_default();
    code.contains("ReceiptHandleIsInvalid")
        || code.contains("MessageNotInflight")
        || code.contains("InvalidParameterValue")
}

/// A failed delete or visibility change: a stale receipt is its own error, never a success.
fn settle_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
    receipt: &str,
) -> QueueError {
    if is_stale(e) {
        QueueError::StaleReceipt(receipt.to_string())
    } else {
        QueueError::Failed(describe(e))
    }
}

impl Queue for SqsQueue {
    fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let max = max.clamp(1, 10) as i32;
        let out = self
            .runtime
            .block_on(
                self.client
                    .receive_message()
                    .queue_url(&self.url)
                    .max_number_of_messages(max)
                    .wait_time_seconds(LONG_POLL_SECS)
                    .visibility_timeout(visibility.as_secs().min(43_200) as i32)
                    .message_system_attribute_names(
                        MessageSystemAttributeName::ApproximateReceiveCount,
                    )
                    .send(),
            )
            .map_err(|e| QueueError::Failed(describe(&e)))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Received {
                    id: m.message_id()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    receive_count,
                })
            })
            .collect())
    }

    fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.runtime
            .block_on(
                self.client
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(receipt)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| settle_error(&e, receipt))
    }

    fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        self.runtime
            .block_on(
                self.client
                    .change_message_visibility()
                    .queue_url(&self.url)
                    .receipt_handle(receipt)
                    .visibility_timeout(visibility.as_secs().min(43_200) as i32)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| settle_error(&e, receipt))
    }

    fn max_batch(&self) -> usize {
        10
    }
}
