//! The log sink: one `info` line per notification under the target `mediaflow::notify`, with
//! the sink name, event id, subject, attributes and body as fields (JSON logs keep them as
//! fields; the body is not re-encoded).

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
            body = %n.body,
            "notification"
        );
    }
}
