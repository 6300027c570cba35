//! Rules: which notifications an event deserves. Each configured notification-rule plugin
//! (resolved through the plugin catalog, like a profile's plugins) evaluates every event in a
//! fresh instance; with none configured, the default rule sends `succeeded` and `failed` events
//! to `notify.default_sink` with the event JSON as the body.
//!
//! A rule that traps, times out or returns an error is logged (plugin name and version, event
//! id) and counted; its event goes on to the other rules (fail-open). A fail-closed rule's
//! failure is also returned, for the worker to retry the job. Notifications addressed to a
//! sink that is not configured are logged and counted, and go nowhere.

use super::counters::Counters;
use super::event::{Event, EventStatus};
use crate::config::{NotifyConfig, PluginUse};
use crate::error::JobError;
use crate::plugin::catalog::CatalogSource;
use crate::plugin::types::Notification;
use crate::plugin::{Plugin, PluginError, World};
use std::time::Instant;

/// Most notifications one rule may return for one event; the rest are logged and left out.
pub const MAX_NOTIFICATIONS_PER_RULE: usize = 100;

/// A fail-closed rule could not decide an event's notifications.
#[derive(Debug, thiserror::Error)]
#[error("notification rule {rule} failed and is fail_closed: {error}")]
pub struct RuleFailure {
    /// `name@version` of the rule plugin.
    pub rule: String,
    /// What went wrong.
    pub error: PluginError,
}

impl From<RuleFailure> for JobError {
    fn from(f: RuleFailure) -> JobError {
        JobError::NotifyRule {
            rule: f.rule,
            message: f.error.to_string(),
        }
    }
}

/// What the rules made of one event.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Notifications for configured sinks.
    pub notifications: Vec<Notification>,
    /// The first fail-closed rule that failed, if any.
    pub fail_closed: Option<RuleFailure>,
}

struct Rule {
    /// What the configuration asks for, resolved again for every event (the registry may have
    /// swapped in another version since).
    wanted: PluginUse,
    /// The version resolved at start-up: used when the current catalog has none that fits.
    plugin: Plugin,
    fail_closed: bool,
}

/// The configured rules (or the default rule).
pub struct Rules {
    rules: Vec<Rule>,
    default_sink: String,
    catalog: CatalogSource,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("rules", &self.labels())
            .field("default_sink", &self.default_sink)
            .finish()
    }
}

impl Rules {
    /// Resolve `config.rules` in `catalog` (each event resolves them again there, so a live
    /// catalog's new versions are used as soon as the registry swaps them in). The error names
    /// the rule (`rules[i]`) and why.
    pub fn resolve(
        config: &NotifyConfig,
        catalog: CatalogSource,
    ) -> Result<Rules, (String, String)> {
        let mut rules = Vec::new();
        for (i, r) in config.rules.iter().enumerate() {
            let field = format!("notify.rules[{i}].plugin");
            let plugin = catalog.resolve_use(&r.plugin_use()).ok_or_else(|| {
                (
                    field.clone(),
                    format!(
                        "{} is not available: {}",
                        r.plugin,
                        catalog
                            .snapshot()
                            .why_missing(&r.plugin.name, &r.plugin.req)
                    ),
                )
            })?;
            if plugin.world() != World::NotificationRule {
                return Err((
                    field,
                    format!(
                        "{}@{} is a {} plugin, not a notification-rule",
                        plugin.name(),
                        plugin.version(),
                        plugin.world()
                    ),
                ));
            }
            rules.push(Rule {
                wanted: r.plugin_use(),
                plugin,
                fail_closed: r.fail_closed,
            });
        }
        Ok(Rules {
            rules,
            default_sink: config.default_sink.clone(),
            catalog,
        })
    }

    /// `name@version` of every rule plugin as of now, in order (empty: the default rule).
    pub fn labels(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| {
                let p = self.current(r);
                format!("{}@{}", p.name(), p.version())
            })
            .collect()
    }

    /// The rule's plugin in the catalog as of now, else the one resolved at start-up.
    fn current(&self, rule: &Rule) -> Plugin {
        self.catalog
            .resolve_use(&rule.wanted)
            .filter(|p| p.world() == World::NotificationRule)
            .unwrap_or_else(|| rule.plugin.clone())
    }

    /// Evaluate `event` with every rule; `known` says whether a sink exists.
    pub fn evaluate(
        &self,
        event: &Event,
        known: impl Fn(&str) -> bool,
        counters: &Counters,
    ) -> Evaluation {
        let mut out = Evaluation::default();
        let accept = |rule: &str, n: Notification, out: &mut Evaluation| {
            if known(&n.sink) {
                out.notifications.push(n);
            } else {
                counters.unknown_sink();
                tracing::warn!(
                    target: "mediaflow::notify",
                    event_id = %event.id, rule, sink = %n.sink, error_code = "unknown_sink",
                    "notification addressed to a sink that is not configured: not delivered"
                );
            }
        };
        if self.rules.is_empty() {
            if let Some(n) = default_notification(event, &self.default_sink) {
                accept("default", n, &mut out);
            }
            return out;
        }
        let wit = event.to_wit();
        for rule in &self.rules {
            let plugin = self.current(rule);
            let label = format!("{}@{}", plugin.name(), plugin.version());
            let started = Instant::now();
            let result = plugin.evaluate(&wit);
            let ms = started.elapsed().as_secs_f64() * 1e3;
            match result {
                Ok(mut notifications) => {
                    tracing::debug!(
                        target: "mediaflow::notify",
                        event_id = %event.id, rule = %label, notifications = notifications.len(), ms,
                        "rule evaluated"
                    );
                    if notifications.len() > MAX_NOTIFICATIONS_PER_RULE {
                        tracing::warn!(
                            target: "mediaflow::notify",
                            event_id = %event.id, rule = %label, returned = notifications.len(),
                            error_code = "too_many_notifications",
                            "rule returned more than {MAX_NOTIFICATIONS_PER_RULE} notifications: the rest are left out"
                        );
                        notifications.truncate(MAX_NOTIFICATIONS_PER_RULE);
                    }
                    for n in notifications {
                        accept(&label, n, &mut out);
                    }
                }
                Err(error) => {
                    counters.rule_failed(&label);
                    tracing::warn!(
                        target: "mediaflow::notify",
                        event_id = %event.id, status = event.status.name(), job_id = %event.job_id,
                        plugin = plugin.name(), version = plugin.version(),
                        fail_closed = rule.fail_closed, error_code = error.detail_code(), %error, ms,
                        "notification rule failed"
                    );
                    if rule.fail_closed && out.fail_closed.is_none() {
                        out.fail_closed = Some(RuleFailure { rule: label, error });
                    }
                }
            }
        }
        out
    }
}

/// The default rule: `succeeded` and `failed` events to `sink`, the event JSON as the body,
/// attributes `status`, `profile` and (when failed) `error_code`.
pub fn default_notification(event: &Event, sink: &str) -> Option<Notification> {
    if !matches!(event.status, EventStatus::Succeeded | EventStatus::Failed) {
        return None;
    }
    let status = event.status.name();
    let mut attributes = vec![
        ("status".to_string(), status.to_string()),
        ("profile".to_string(), event.profile.clone()),
    ];
    if let Some(e) = &event.error {
        attributes.push(("error_code".to_string(), e.code.clone()));
    }
    Some(Notification {
        sink: sink.to_string(),
        subject: format!("[mediaflow] {status}: {}", event.source.uri),
        body: event.to_json(),
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorClass, JobError};
    use crate::plugin::catalog::Catalog;

    #[test]
    fn the_default_rule_sends_succeeded_and_failed_only() {
        let ok = Event::new(EventStatus::Succeeded, "j", "s3://b/a.jpg", "default");
        let n = default_notification(&ok, "log").expect("succeeded");
        assert_eq!(n.sink, "log");
        assert_eq!(n.subject, "[mediaflow] succeeded: s3://b/a.jpg");
        let body: serde_json::Value = serde_json::from_str(&n.body).expect("JSON");
        assert_eq!(body["id"], ok.id.as_str());
        let failed = Event::new(EventStatus::Failed, "j", "s3://b/a.jpg", "default")
            .with_error(&JobError::CorruptInput("truncated".into()));
        let n = default_notification(&failed, "hook").expect("failed");
        assert!(
            n.attributes
                .contains(&("error_code".into(), "corrupt_input".into()))
        );
        let retry = Event::new(EventStatus::Retrying, "j", "s3://b/a.jpg", "default").with_error(
            &JobError::Storage {
                message: "503".into(),
                class: ErrorClass::Transient,
            },
        );
        assert!(default_notification(&retry, "log").is_none());
        assert!(
            default_notification(
                &Event::new(EventStatus::DeadLettered, "j", "", "default"),
                "log"
            )
            .is_none()
        );
    }

    #[test]
    fn unknown_sinks_are_counted_not_delivered() {
        let config = NotifyConfig {
            default_sink: "nowhere".into(),
            ..NotifyConfig::default()
        };
        let rules =
            Rules::resolve(&config, (&Catalog::default()).into()).expect("no rules to resolve");
        let counters = Counters::new([("log", "log")], []);
        let e = Event::new(EventStatus::Succeeded, "j", "s3://b/a.jpg", "default");
        let out = rules.evaluate(&e, |s| s == "log", &counters);
        assert!(out.notifications.is_empty());
        assert_eq!(counters.snapshot().unknown_sink, 1);
    }
    #[test]
    fn rules_follow_the_live_catalog_when_the_registry_swaps_a_version_in() {
        use crate::plugin::catalog::{LiveCatalog, spec_for};
        use crate::plugin::{HostConfig, PluginHost, bundled};
        use std::sync::Arc;
        let host = PluginHost::new(&HostConfig {
            cache_dir: None,
            ..HostConfig::default()
        })
        .expect("host");
        let rule = bundled::get("notify-rules").expect("bundled notify-rules");
        let load = |version: &str, on_succeeded: &str| {
            let mut m = rule.manifest.clone();
            m.version = semver::Version::parse(version).expect("version");
            m.config.insert("on_succeeded".into(), on_succeeded.into());
            host.load(spec_for(&m), rule.wasm).expect("load")
        };
        let mut first = Catalog::default();
        first.insert(semver::Version::new(1, 0, 0), load("1.0.0", "events"));
        let live = Arc::new(LiveCatalog::new(first.clone()));
        let config: NotifyConfig =
            toml::from_str("[[rules]]\nplugin = \"notify-rules@^1\"\n").expect("config");
        let rules = Rules::resolve(&config, CatalogSource::Live(live.clone())).expect("resolves");
        let counters = Counters::new([("log", "log")], []);
        let event = Event::new(EventStatus::Succeeded, "j", "s3://b/a.jpg", "default");
        let sinks = |rules: &Rules| -> Vec<String> {
            rules
                .evaluate(&event, |_| true, &counters)
                .notifications
                .into_iter()
                .map(|n| n.sink)
                .collect()
        };
        assert_eq!(sinks(&rules), vec!["events"]);
        // The registry publishes 1.1.0 (another default sink): the next event uses it.
        let mut second = first;
        second.insert(semver::Version::new(1, 1, 0), load("1.1.0", "audit"));
        live.replace(second);
        assert_eq!(sinks(&rules), vec!["audit"]);
        assert_eq!(rules.labels(), vec!["notify-rules@1.1.0"]);
        // Every version gone from the catalog: the one resolved at start-up still answers.
        live.replace(Catalog::default());
        assert_eq!(sinks(&rules), vec!["events"]);
    }
}
