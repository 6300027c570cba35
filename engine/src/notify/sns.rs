//! The SNS sink: `Publish` to a topic, with the notification's attributes as `String` message
//! attributes (what subscription filter policies match on) plus `event_id`, and its subject
//! made acceptable to SNS (printable ASCII, no line breaks, under 100 characters; omitted when
//! empty). Transient failures are retried by the SDK (standard retry mode).

use super::sink::{DeliveryError, aws_attributes, aws_error};
use crate::plugin::types::Notification;
use aws_sdk_sns::types::MessageAttributeValue;

/// Largest message SNS accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Publishes to one topic.
#[derive(Debug)]
pub struct SnsSink {
    name: String,
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsSink {
    /// The sink `name` publishing to `topic_arn` through `client`.
    pub fn new(name: &str, client: aws_sdk_sns::Client, topic_arn: &str) -> Self {
        Self {
            name: name.into(),
            client,
            topic_arn: topic_arn.into(),
        }
    }

    /// Publish `n`.
    pub async fn deliver(&self, event_id: &str, n: &Notification) -> Result<(), DeliveryError> {
        check_body(&n.body, MAX_MESSAGE_BYTES)?;
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(&n.body);
        if let Some(subject) = subject(&n.subject) {
            req = req.subject(subject);
        }
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

/// A body SNS or SQS can take: not empty, at most `max` bytes.
pub(crate) fn check_body(body: &str, max: usize) -> Result<(), DeliveryError> {
    if body.is_empty() {
        return Err(DeliveryError::Permanent {
            reason: "the notification body is empty".into(),
        });
    }
    if body.len() > max {
        return Err(DeliveryError::Permanent {
            reason: format!(
                "the body is {} bytes, over the {max}-byte limit",
                body.len()
            ),
        });
    }
    Ok(())
}

/// `s` as an SNS subject: control characters and line breaks become spaces, other non-ASCII
/// characters `?`, cut to 99 characters (SNS wants fewer than 100); `None` if nothing is left.
pub fn subject(s: &str) -> Option<String> {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            c if c.is_control() => ' ',
            c if !c.is_ascii() => '?',
            c => c,
        })
        .collect::<String>()
        .trim()
        .to_string();
    if out.len() > 99 {
        out.truncate(96);
        out.push_str("...");
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects_fit_sns() {
        assert_eq!(super::subject(""), None);
        assert_eq!(super::subject(" \n "), None);
        assert_eq!(
            super::subject("job failed:\ncafé.jpg"),
            Some("job failed: caf?.jpg".to_string())
        );
        let long = super::subject(&"x".repeat(300)).expect("subject");
        assert_eq!(long.len(), 99);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn bodies_must_fit() {
        assert!(super::check_body("", 10).is_err());
        assert!(super::check_body("12345678901", 10).is_err());
        assert!(super::check_body("{}", 10).is_ok());
    }
}
