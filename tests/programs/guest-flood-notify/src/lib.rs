//! Hostile guest: a notification rule that floods — `count` notifications (config, default
//! 1,000) to the `log` sink, each with a body of `body_bytes` (default 100,000): 100 MB an
//! event. The host must refuse the result, naming the bound and its setting.
use mediaflow_plugin_sdk::{JobEvent, Notification, PluginError, config};

#[mediaflow_plugin_sdk::notification_rule]
fn evaluate(event: JobEvent) -> Result<Vec<Notification>, PluginError> {
    let count: usize = config::parse("count")?.unwrap_or(1_000);
    let body_bytes: usize = config::parse("body_bytes")?.unwrap_or(100_000);
    let body = "b".repeat(body_bytes);
    Ok((0..count)
        .map(|i| Notification {
            sink: "log".into(),
            subject: format!("flood {i} for {}", event.id),
            body: body.clone(),
            attributes: Vec::new(),
        })
        .collect())
}
