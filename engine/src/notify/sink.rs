//! A configured sink, ready to deliver: one of the four kinds, built once at start-up from
//! `[notify.sinks.NAME]`, and what a failed delivery means (permanent: the sink refused it;
//! transient: it kept failing until the attempts ran out). Also the message-attribute rules SNS
//! and SQS share (names, values, at most 10), applied before a request is made.

use super::log::LogSink;
use super::sns::SnsSink;
use super::sqs::SqsSink;
use super::webhook::WebhookSink;
use crate::plugin::types::Notification;

/// Why a notification was not delivered. Either way it is logged with the event id and counted
/// as failed for its sink; nothing retries it later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The sink refused it (a 4xx other than 408/429, an invalid request): retrying the same
    /// notification cannot help.
    #[error("refused: {reason}")]
    Permanent {
        /// What the sink said.
        reason: String,
    },
    /// A passing fault (connection, timeout, 5xx, throttling) that outlasted every attempt.
    #[error("gave up after {attempts} attempt(s): {reason}")]
    Transient {
        /// Attempts made (for SNS/SQS: calls, each with the SDK's own retries).
        attempts: u32,
        /// The last failure.
        reason: String,
    },
}

/// A sink ready to deliver.
#[derive(Debug)]
pub enum Sink {
    /// The engine's log.
    Log(LogSink),
    /// An SNS topic.
    Sns(SnsSink),
    /// An SQS queue.
    Sqs(SqsSink),
    /// A webhook (boxed: its HTTP client is large).
    Webhook(Box<WebhookSink>),
}

impl Sink {
    /// `log`, `sns`, `sqs` or `webhook`.
    pub fn kind(&self) -> &'static str {
        match self {
            Sink::Log(_) => "log",
            Sink::Sns(_) => "sns",
            Sink::Sqs(_) => "sqs",
            Sink::Webhook(_) => "webhook",
        }
    }

    /// Deliver `n` (of event `event_id`).
    pub async fn deliver(&self, event_id: &str, n: &Notification) -> Result<(), DeliveryError> {
        match self {
            Sink::Log(s) => {
                s.deliver(event_id, n);
                Ok(())
            }
            Sink::Sns(s) => s.deliver(event_id, n).await,
            Sink::Sqs(s) => s.deliver(event_id, n).await,
            Sink::Webhook(s) => s.deliver(event_id, n).await,
        }
    }
}

/// Most message attributes SNS and SQS accept on one message.
pub const MAX_AWS_ATTRIBUTES: usize = 10;

/// The attributes of `n` that SNS and SQS accept, plus `event_id` (unless the rule set it):
/// names of letters, digits, `_`, `-`, `.` (no leading, trailing or doubled `.`, no `AWS.` or
/// `Amazon.` prefix, ≤ 256 bytes), non-empty values, at most [`MAX_AWS_ATTRIBUTES`]. Anything
/// else is left out and logged with the event id.
pub fn aws_attributes(sink: &str, event_id: &str, n: &Notification) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in &n.attributes {
        let lower = name.to_ascii_lowercase();
        let valid_name = !name.is_empty()
            && name.len() <= 256
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !lower.starts_with("aws.")
            && !lower.starts_with("amazon.");
        let problem = if !valid_name {
            Some("the name is not a valid message attribute name")
        } else if value.is_empty() {
            Some("the value is empty")
        } else if out.iter().any(|(n, _)| n == name) {
            Some("the name is repeated")
        } else if out.len() == MAX_AWS_ATTRIBUTES - 1 {
            Some("more than 9 attributes (10 with event_id)")
        } else {
            None
        };
        match problem {
            Some(why) => tracing::warn!(
                target: "mediaflow::notify",
                sink, event_id, attribute = %name, error_code = "attribute_skipped",
                "message attribute left out: {why}"
            ),
            None => out.push((name.clone(), value.clone())),
        }
    }
    if !out.iter().any(|(n, _)| n == "event_id") {
        out.push(("event_id".into(), event_id.into()));
    }
    out
}

/// An SNS or SQS call's failure, after the SDK's own retries: a 5xx, throttling or a
/// network failure is transient; anything else the service said no to is permanent.
pub fn aws_error<E>(
    e: &aws_sdk_sns::error::SdkError<E, aws_sdk_sns::config::http::HttpResponse>,
) -> DeliveryError
where
    E: aws_sdk_sns::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_sns::error::{DisplayErrorContext, SdkError};
    match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("error");
            let reason = format!("{code} ({status}): {}", s.err().message().unwrap_or(""));
            if status >= 500 || code.contains("Throttl") {
                DeliveryError::Transient {
                    attempts: 1,
                    reason,
                }
            } else {
                DeliveryError::Permanent { reason }
            }
        }
        SdkError::ConstructionFailure(_) => DeliveryError::Permanent {
            reason: DisplayErrorContext(e).to_string(),
        },
        _ => DeliveryError::Transient {
            attempts: 1,
            reason: DisplayErrorContext(e).to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_attributes_keep_valid_ones_and_add_the_event_id() {
        let mut attributes: Vec<(String, String)> = vec![
            ("status".into(), "failed".into()),
            ("AWS.reserved".into(), "x".into()),
            ("bad name".into(), "x".into()),
            ("empty".into(), String::new()),
            ("status".into(), "again".into()),
            ("a..b".into(), "x".into()),
        ];
        for i in 0..12 {
            attributes.push((format!("k{i}"), "v".into()));
        }
        let n = Notification {
            sink: "s".into(),
            subject: String::new(),
            body: "{}".into(),
            attributes,
        };
        let out = aws_attributes("s", "evt-1", &n);
        assert_eq!(out.len(), MAX_AWS_ATTRIBUTES);
        assert_eq!(out[0], ("status".to_string(), "failed".to_string()));
        assert_eq!(out[1].0, "k0");
        assert_eq!(
            out.last(),
            Some(&("event_id".to_string(), "evt-1".to_string()))
        );
    }
}
