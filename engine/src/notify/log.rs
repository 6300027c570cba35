//! The log sink: one `info` line per notification under the target `mediaflow::notify`, with
//! the sink name, event id, subject and attributes as fields, and the body (the event JSON, often
//! kilobytes) on a `debug` line beside it (JSON logs keep it as a field, not re-encoded).

use crate::plugin::types::Notification;

/// Writes notifications to the engine's log.
#[derive(Debug)]
pub struct LogSink {
    name: String,
}

impl LogSink {
    /// The log sink called `name`.
    pub fn new(name: &str) -> Self {
        Self { name: name.into() }
    }

    /// Log `n`.
    pub fn deliver(&self, event_id: &str, n: &Notification) {
        let attributes: Vec<String> = n
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        tracing::info!(
            target: "mediaflow::notify",
            sink = %self.name,
            event_id,
            subject = %n.subject,
            attributes = %attributes.join(","),
            body_bytes = n.body.len(),
            "notification"
        );
        tracing::debug!(
            target: "mediaflow::notify",
            sink = %self.name,
            event_id,
            body = %n.body,
            "notification body"
        );
    }
}
