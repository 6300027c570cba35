//! The SQS queue: long-polling receives (20 s), visibility changes for heartbeats and
//! releases, and batch deletes (`DeleteMessageBatch`, ≤ 10 per call) with partial failures
//! handled entry by entry: an invalid or stale receipt is an error for that entry, never a
//! success; any other failed entry (or a whole failed call) is retried once as a single
//! `DeleteMessage`. A message is dead-lettered with its reason by sending it to the queue's
//! redrive target (the same body, the reason in message attributes) and deleting it here. The
//! SDK is async; these calls block on the runtime from the worker's blocking threads.

use super::{Queue, QueueError, Received};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};
use std::time::Duration;
use tokio::runtime::Handle;

/// Seconds a receive waits for messages by default (SQS's maximum long poll).
pub const LONG_POLL_SECS: i32 = 20;

/// An SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    runtime: Handle,
    wait_secs: i32,
    /// Where dead letters go (the redrive policy's target), once known.
    dead_letter_url: Option<String>,
}

/// What a queue's `RedrivePolicy` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// `maxReceiveCount`: the receive at or past it is the last.
    pub max_receive_count: u32,
    /// The dead-letter queue's URL (same region and account as the queue, as SQS requires).
    pub dead_letter_url: Option<String>,
}

impl SqsQueue {
    /// The queue at `url`, called through `client` on `runtime`.
    pub fn new(client: Client, url: impl Into<String>, runtime: Handle) -> Self {
        Self {
            client,
            url: url.into(),
            runtime,
            wait_secs: LONG_POLL_SECS,
            dead_letter_url: None,
        }
    }

    /// Dead letters go to the queue at `url`.
    pub fn with_dead_letter_queue(mut self, url: Option<String>) -> Self {
        self.dead_letter_url = url;
        self
    }

    /// How long a receive waits for messages (at most 20 s; zero is a short poll).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait_secs = wait.as_secs().min(LONG_POLL_SECS as u64) as i32;
        self
    }

    /// The queue's `RedrivePolicy`: its `maxReceiveCount` (the receive at or past it is the
    /// last before the message moves to the dead-letter queue) and its target. `None` when the
    /// queue has no dead-letter queue.
    pub async fn redrive(&self) -> Result<Option<Redrive>, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| QueueError::Failed(describe(&e)))?;
        match out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        {
            Some(policy) => parse_redrive(policy, &self.url).map(Some),
            None => Ok(None),
        }
    }

    /// The queue's redrive limit; see [`SqsQueue::redrive`].
    pub async fn max_receive_count(&self) -> Result<Option<u32>, QueueError> {
        Ok(self.redrive().await?.map(|r| r.max_receive_count))
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

impl SqsQueue {
    /// One `DeleteMessageBatch` call (≤ 10 receipts), then a single `DeleteMessage` for each
    /// entry that failed for any reason but a stale receipt.
    async fn delete_chunk(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>> {
        // Entry ids are the positions; a receipt repeated in one call would be refused
        // (`BatchEntryIdsNotDistinct`), so repeats are settled by the single-delete path.
        let mut results: Vec<Option<Result<(), QueueError>>> = vec![None; receipts.len()];
        let mut entries = Vec::new();
        for (i, receipt) in receipts.iter().enumerate() {
            if receipts[..i].contains(receipt) {
                continue;
            }
            match DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(*receipt)
                .build()
            {
                Ok(entry) => entries.push(entry),
                Err(e) => results[i] = Some(Err(QueueError::Failed(e.to_string()))),
            }
        }
        if !entries.is_empty() {
            let batch = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            match batch {
                Ok(out) => {
                    let slot = |id: &str| id.parse::<usize>().ok().filter(|&i| i < receipts.len());
                    for ok in out.successful() {
                        if let Some(i) = slot(ok.id()) {
                            results[i] = Some(Ok(()));
                        }
                    }
                    for failed in out.failed() {
                        let Some(i) = slot(failed.id()) else { continue };
                        if is_stale_code(failed.code()) {
                            results[i] =
                                Some(Err(QueueError::StaleReceipt(receipts[i].to_string())));
                        } else {
                            tracing::warn!(
                                code = failed.code(),
                                sender_fault = failed.sender_fault(),
                                message = failed.message().unwrap_or(""),
                                "batch delete entry failed: retrying it alone"
                            );
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %describe(&e), "batch delete failed: retrying each entry alone");
                }
            }
        }
        let mut out = Vec::with_capacity(receipts.len());
        for (receipt, result) in receipts.iter().zip(results) {
            out.push(match result {
                Some(r) => r,
                None => self.delete_one(receipt).await,
            });
        }
        out
    }

    /// A single `DeleteMessage`.
    async fn delete_one(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| settle_error(&e, receipt))
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

/// Whether an SQS error code says the receipt handle no longer names an in-flight receive.
fn is_stale_code(code: &str) -> bool {
    code.contains("ReceiptHandleIsInvalid")
        || code.contains("MessageNotInflight")
        || code.contains("InvalidParameterValue")
}

/// Whether an SQS error says the receipt handle no longer names an in-flight receive.
fn is_stale<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    is_stale_code(e.code().unwrap_or_default())
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

/// `maxReceiveCount` (AWS gives it as a number or a string) and the target's URL from a
/// `RedrivePolicy` JSON document of the queue at `queue_url`.
fn parse_redrive(policy: &str, queue_url: &str) -> Result<Redrive, QueueError> {
    let bad = |why: String| QueueError::Failed(format!("RedrivePolicy {policy:?}: {why}"));
    let v: serde_json::Value = serde_json::from_str(policy).map_err(|e| bad(e.to_string()))?;
    let n = match &v["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let max_receive_count = n
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| bad("no positive maxReceiveCount".into()))?;
    Ok(Redrive {
        max_receive_count,
        dead_letter_url: v["deadLetterTargetArn"]
            .as_str()
            .and_then(|arn| sibling_url(queue_url, arn)),
    })
}

/// The URL of the queue `arn` (`arn:aws:sqs:REGION:ACCOUNT:NAME`) on the endpoint of
/// `queue_url` (`…/ACCOUNT/NAME`): a dead-letter queue lives in its queue's region and account.
fn sibling_url(queue_url: &str, arn: &str) -> Option<String> {
    let mut parts = arn.rsplit(':');
    let (name, account) = (parts.next()?, parts.next()?);
    let base = queue_url.trim_end_matches('/');
    let base = base.rsplitn(3, '/').nth(2)?;
    (!name.is_empty() && !account.is_empty()).then(|| format!("{base}/{account}/{name}"))
}

/// An SQS string message attribute (values are cut to stay well inside SQS's message size).
fn text_attribute(value: &str) -> Option<MessageAttributeValue> {
    let mut end = value.len().min(4096);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(if end == 0 { "-" } else { &value[..end] })
        .build()
        .ok()
}

impl Queue for SqsQueue {
    fn send(&self, body: &str) -> Result<String, QueueError> {
        SqsQueue::send(self, body)
    }

    fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let max = max.clamp(1, 10) as i32;
        // An open long poll is never abandoned: SQS may hand out messages to it until it ends,
        // and abandoned they would stay hidden for `visibility`.
        let out = self
            .runtime
            .block_on(
                self.client
                    .receive_message()
                    .queue_url(&self.url)
                    .max_number_of_messages(max)
                    .wait_time_seconds(self.wait_secs)
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

    fn delete_batch(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>> {
        self.runtime.block_on(async {
            let mut results = Vec::with_capacity(receipts.len());
            for chunk in receipts.chunks(super::MAX_DELETE_BATCH) {
                results.extend(self.delete_chunk(chunk).await);
            }
            results
        })
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

    fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), QueueError> {
        let Some(dlq) = &self.dead_letter_url else {
            return Err(QueueError::Failed(format!(
                "{} has no dead-letter queue (no RedrivePolicy)",
                self.url
            )));
        };
        self.runtime.block_on(async {
            let mut send = self
                .client
                .send_message()
                .queue_url(dlq)
                .message_body(&message.body);
            for (name, value) in [
                ("mediaflow-reason", reason),
                ("mediaflow-source-queue", self.url.as_str()),
                ("mediaflow-message-id", message.id.as_str()),
                (
                    "mediaflow-receive-count",
                    &message.receive_count.to_string(),
                ),
            ] {
                if let Some(v) = text_attribute(value) {
                    send = send.message_attributes(name, v);
                }
            }
            send.send()
                .await
                .map_err(|e| QueueError::Failed(format!("sending to {dlq}: {}", describe(&e))))?;
            // Sent but not deleted (a failure here): the message comes back and is dead-lettered
            // again; the dead-letter queue may then hold it twice, never zero times.
            self.delete_one(&message.receipt).await
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redrive_policies_give_max_receive_count_as_number_or_string_and_the_target() {
        let url = "https://sqs.r.amazonaws.com/1/jobs";
        let f = |p| super::parse_redrive(p, url);
        let r = f(r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:dlq","maxReceiveCount":5}"#)
            .expect("policy");
        assert_eq!(r.max_receive_count, 5);
        assert_eq!(
            r.dead_letter_url.as_deref(),
            Some("https://sqs.r.amazonaws.com/1/dlq")
        );
        assert_eq!(
            f(r#"{"deadLetterTargetArn":"a","maxReceiveCount":"3"}"#)
                .ok()
                .map(|r| r.max_receive_count),
            Some(3)
        );
        assert!(f(r#"{"deadLetterTargetArn":"a"}"#).is_err());
        assert!(f("not json").is_err());
        assert_eq!(
            super::sibling_url(
                "http://localhost:5000/123456789012/jobs",
                "arn:aws:sqs:us-east-1:123456789012:jobs-dlq"
            )
            .as_deref(),
            Some("http://localhost:5000/123456789012/jobs-dlq")
        );
    }
}
