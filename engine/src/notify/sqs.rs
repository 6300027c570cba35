//! The SQS sink: `SendMessage` to a standard queue, with the notification's attributes as
//! `String` message attributes plus `event_id` (the subject is not sent: SQS has no such
//! field; rules put what matters in the body). Transient failures are retried by the SDK.

use super::sink::{DeliveryError, aws_attributes, aws_error};
use super::sns::check_body;
use crate::plugin::types::Notification;
use aws_sdk_sqs::types::MessageAttributeValue;

/// Largest message SQS accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Sends to one queue.
#[derive(Debug)]
pub struct SqsSink {
    name: String,
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsSink {
    /// The sink `name` sending to `queue_url` through `client`.
    pub fn new(name: &str, client: aws_sdk_sqs::Client, queue_url: &str) -> Self {
        Self {
            name: name.into(),
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Send `n`.
    pub async fn deliver(&self, event_id: &str, n: &Notification) -> Result<(), DeliveryError> {
        check_body(&n.body, MAX_MESSAGE_BYTES)?;
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&n.body);
        for (k, v) in aws_attributes(&self.name, event_id, n) {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| DeliveryError::Permanent {
                    reason: e.to_string(),
                })?;
            req = req.message_attributes(k, value);
        }
        req.send().await.map(|_| ()).map_err(|e| aws_error(&e))
    }
}
