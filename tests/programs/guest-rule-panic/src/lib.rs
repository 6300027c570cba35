//! Hostile guest: a notification rule that panics (a trap) on every event. The host must log
//! it with the plugin's name and version and, unless the rule is fail-closed, go on.
use mediaflow_plugin_sdk::{JobEvent, Notification, PluginError};

#[mediaflow_plugin_sdk::notification_rule]
fn evaluate(event: JobEvent) -> Result<Vec<Notification>, PluginError> {
    panic!("deliberate panic while evaluating event {}", event.id);
}
