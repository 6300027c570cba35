//! `notify-rules`: a notification-rule plugin. Routes each job event to the sink configured for
//! its status, and slow jobs additionally to `on_slow`. Bodies are JSON summaries; attributes
//! (`status`, `profile`, `error_code`) let SNS/SQS subscriptions filter.

use mediaflow_plugin_sdk::{JobEvent, JobStatus, Notification, PluginError, config};

#[mediaflow_plugin_sdk::notification_rule]
fn evaluate(event: JobEvent) -> Result<Vec<Notification>, PluginError> {
    let prefix = config::get_or("subject_prefix", "[mediaflow]");
    let (key, default, word) = match event.status {
        JobStatus::Succeeded => ("on_succeeded", "events", "succeeded"),
        JobStatus::Failed => ("on_failed", "alerts", "failed"),
        JobStatus::Retrying => ("on_retrying", "", "retrying"),
        JobStatus::DeadLettered => ("on_dead_lettered", "alerts", "dead-lettered"),
    };
    let mut out = Vec::new();
    let sink = config::get_or(key, default);
    if !sink.trim().is_empty() {
        let subject = format!("{prefix} job {word}: {}", event.source_uri);
        out.push(notification(&event, sink.trim(), subject, word, None));
    }
    let slow_ms = config::parse::<f64>("slow_ms")?.unwrap_or(0.0);
    if slow_ms > 0.0 && event.duration_ms > slow_ms {
        let sink = config::get_or("on_slow", "alerts");
        if !sink.trim().is_empty() {
            let subject = format!(
                "{prefix} slow job ({:.0} ms > {slow_ms:.0} ms): {}",
                event.duration_ms, event.source_uri
            );
            out.push(notification(
                &event,
                sink.trim(),
                subject,
                word,
                Some(slow_ms),
            ));
        }
    }
    Ok(out)
}

fn notification(
    event: &JobEvent,
    sink: &str,
    subject: String,
    status: &str,
    slow_ms: Option<f64>,
) -> Notification {
    let error_code = event.error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
    let mut body = format!(
        "{{\"event_id\":{},\"job_id\":{},\"status\":{},\"source\":{},\"profile\":{},\"outputs\":{},\"duration_ms\":{:.1},\"attempt\":{}",
        json(&event.id),
        json(&event.job_id),
        json(status),
        json(&event.source_uri),
        json(&event.profile),
        event.outputs.len(),
        event.duration_ms,
        event.attempt,
    );
    if let Some(e) = &event.error {
        body.push_str(&format!(
            ",\"error\":{{\"class\":{},\"code\":{},\"message\":{}}}",
            json(&e.class),
            json(&e.code),
            json(&e.message)
        ));
    }
    if let Some(ms) = slow_ms {
        body.push_str(&format!(",\"slow_threshold_ms\":{ms:.0}"));
    }
    body.push('}');
    let mut attributes = vec![
        ("status".to_string(), status.to_string()),
        ("profile".to_string(), event.profile.clone()),
    ];
    if !error_code.is_empty() {
        attributes.push(("error_code".to_string(), error_code.to_string()));
    }
    if slow_ms.is_some() {
        attributes.push(("slow".to_string(), "true".to_string()));
    }
    Notification {
        sink: sink.to_string(),
        subject,
        body,
        attributes,
    }
}

/// A JSON string literal.
fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(super::json("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
