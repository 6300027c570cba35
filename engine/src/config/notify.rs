//! `[notify]`: where job lifecycle events go. Rules (notification-rule plugins, resolved like a
//! profile's plugins) turn each event into notifications addressed to named sinks; the sinks
//! (`log`, `sns`, `sqs`, `webhook`) are declared here by name. With no rules, a default rule
//! sends `succeeded` and `failed` events to `default_sink`. A sink called `log` always exists.

use super::PluginLimits;
use super::PluginRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the log sink that exists even when no sink is declared.
pub const LOG_SINK: &str = "log";

/// Notification settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Sink the default rule sends `succeeded` and `failed` events to (used only when `rules`
    /// is empty). `log` is always defined.
    pub default_sink: String,
    /// Notification-rule plugins (`{ plugin = "notify-rules@^1", config = {…} }`); every event
    /// is evaluated by each of them. Empty: the default rule.
    pub rules: Vec<RuleConfig>,
    /// Sinks by name (lowercase letters, digits, `-`, `_`, so `MEDIAFLOW_NOTIFY__SINKS__NAME__…`
    /// variables can reach them).
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Events waiting for delivery, at most. Past it a new event is dropped (logged with its
    /// id and counted): the worker never waits for a sink.
    pub queue_capacity: usize,
    /// On shutdown, how long deliveries still pending may run before they are abandoned
    /// (each one logged with its event id and counted as dropped).
    pub flush_timeout_ms: u64,
    /// With a job index (the outbox), a recorded job whose notifications are still not
    /// delivered this many seconds after it was recorded — its worker was killed, or shut
    /// down before they went out — has them delivered again from its manifest, with the same
    /// event id (at least once).
    pub outbox_redeliver_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            default_sink: LOG_SINK.into(),
            rules: Vec::new(),
            sinks: BTreeMap::new(),
            queue_capacity: 1024,
            flush_timeout_ms: 5_000,
            outbox_redeliver_secs: 300,
        }
    }
}

/// One notification-rule plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `name@requirement`, resolved through the same catalog as a profile's plugins.
    pub plugin: PluginRef,
    /// Configuration over the plugin's defaults.
    #[serde(default)]
    pub config: toml::Table,
    /// Limits over the plugin's own.
    #[serde(default)]
    pub limits: Option<PluginLimits>,
    /// When the rule traps, times out or returns an error: `false` (default) logs and counts
    /// it and the job goes on (fail-open); `true` makes the job a transient failure, so its
    /// message is retried (and dead-lettered after the queue's last receive) — the job is
    /// recorded only once its notifications could be decided.
    #[serde(default)]
    pub fail_closed: bool,
}

impl RuleConfig {
    /// As a profile-style plugin use (for the catalog).
    pub fn plugin_use(&self) -> super::PluginUse {
        super::PluginUse {
            plugin: self.plugin.clone(),
            config: self.config.clone(),
            limits: self.limits,
            on_error: super::OnError::Fail,
        }
    }
}

/// One sink, by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// A line in the engine's log (target `mediaflow::notify`).
    Log(LogSinkConfig),
    /// Publish to an SNS topic; attributes become message attributes (for filter policies).
    Sns(SnsSinkConfig),
    /// Send to an SQS queue; attributes become message attributes.
    Sqs(SqsSinkConfig),
    /// POST to a URL, signed with HMAC-SHA256, retried with backoff.
    Webhook(WebhookSinkConfig),
}

impl SinkConfig {
    /// `log`, `sns`, `sqs` or `webhook`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Log(_) => "log",
            SinkConfig::Sns(_) => "sns",
            SinkConfig::Sqs(_) => "sqs",
            SinkConfig::Webhook(_) => "webhook",
        }
    }
}

/// The log sink has no settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSinkConfig {}

/// An SNS topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsSinkConfig {
    /// `arn:aws:sns:REGION:ACCOUNT:NAME`. AWS settings come from the SDK's standard
    /// environment, as for the worker.
    pub topic_arn: String,
}

/// An SQS queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsSinkConfig {
    /// The queue URL (standard queues; FIFO queues are refused).
    pub queue_url: String,
}

/// A webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// `https://…` (or `http://…`) URL the notification body is POSTed to.
    pub url: String,
    /// HMAC-SHA256 key: `X-Mediaflow-Signature: sha256=<hex HMAC of the body>`. Keep it out
    /// of files with `MEDIAFLOW_NOTIFY__SINKS__<NAME>__SECRET`.
    pub secret: Secret,
    /// Time one attempt may take (connect, send, response), in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts before giving up (1 = no retry). Retried: connection errors, timeouts, 408,
    /// 429 and 5xx; any other answer but 2xx is a permanent give-up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Backoff before the first retry is up to this, doubling each retry (full jitter), in
    /// milliseconds.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Longest wait between two attempts, in milliseconds (also caps `Retry-After`).
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5_000
}
fn default_max_attempts() -> u32 {
    5
}
fn default_backoff_base_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    30_000
}

/// A secret string: never shown by `Debug`. Accepts any TOML scalar, so an environment
/// override that looks like a number stays a secret.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret's bytes.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Text(String),
            Integer(i64),
            Float(f64),
            Boolean(bool),
        }
        Ok(Secret(match Scalar::deserialize(d)? {
            Scalar::Text(s) => s,
            Scalar::Integer(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Boolean(b) => b.to_string(),
        }))
    }
}

impl NotifyConfig {
    /// Check values and cross-references; the error is (field path within `notify`, problem).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.queue_capacity == 0 {
            return Err(("queue_capacity".into(), "must be at least 1".into()));
        }
        if self.flush_timeout_ms > 600_000 {
            return Err((
                "flush_timeout_ms".into(),
                format!("{} must be at most 600000 (10 min)", self.flush_timeout_ms),
            ));
        }
        if self.rules.is_empty() && !self.has_sink(&self.default_sink) {
            return Err((
                "default_sink".into(),
                format!(
                    "names sink {:?}, which is not defined (define [notify.sinks.{}] or use \"log\")",
                    self.default_sink, self.default_sink
                ),
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(l) = &rule.limits {
                l.validate()
                    .map_err(|e| (format!("rules[{i}].limits"), e))?;
            }
        }
        for (name, sink) in &self.sinks {
            let field = |f: &str| format!("sinks.{name}.{f}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err((
                    format!("sinks.{name}"),
                    "a sink name must be lowercase letters, digits, '-' or '_'".into(),
                ));
            }
            sink.validate(name)
                .map_err(|(f, problem)| (field(f), problem))?;
        }
        Ok(())
    }

    /// Whether `name` is a sink (declared, or the implicit `log`).
    pub fn has_sink(&self, name: &str) -> bool {
        name == LOG_SINK || self.sinks.contains_key(name)
    }
}

impl SinkConfig {
    /// Check the sink's settings; the error is (field within the sink, problem).
    fn validate(&self, name: &str) -> Result<(), (&'static str, String)> {
        match self {
            SinkConfig::Log(_) => {}
            SinkConfig::Sns(s) => {
                let parts: Vec<&str> = s.topic_arn.split(':').collect();
                if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" {
                    return Err((
                        "topic_arn",
                        format!(
                            "{:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
                            s.topic_arn
                        ),
                    ));
                }
            }
            SinkConfig::Sqs(s) => {
                check_url(&s.queue_url).map_err(|p| ("queue_url", p))?;
                if s.queue_url.ends_with(".fifo") {
                    return Err((
                    "queue_url",
                    "FIFO queues are not supported as sinks (they need a message group and de-duplication id); use a standard queue".into(),
                ));
                }
            }
            SinkConfig::Webhook(w) => {
                check_url(&w.url).map_err(|p| ("url", p))?;
                if w.secret.expose().is_empty() {
                    return Err((
                        "secret",
                        format!(
                            "is required (the HMAC-SHA256 key of X-Mediaflow-Signature); set it here or in MEDIAFLOW_NOTIFY__SINKS__{}__SECRET",
                            name.to_ascii_uppercase()
                        ),
                    ));
                }
                if !(1..=600_000).contains(&w.timeout_ms) {
                    return Err(("timeout_ms", format!("{} must be 1..=600000", w.timeout_ms)));
                }
                if !(1..=100).contains(&w.max_attempts) {
                    return Err((
                        "max_attempts",
                        format!("{} must be 1..=100", w.max_attempts),
                    ));
                }
                if w.backoff_base_ms == 0 || w.backoff_base_ms > w.backoff_max_ms {
                    return Err((
                        "backoff_base_ms",
                        format!(
                            "{} must be at least 1 and at most backoff_max_ms ({})",
                            w.backoff_base_ms, w.backoff_max_ms
                        ),
                    ));
                }
                if w.backoff_max_ms > 3_600_000 {
                    return Err((
                        "backoff_max_ms",
                        format!("{} must be at most 3600000 (1 h)", w.backoff_max_ms),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An absolute `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{url:?} must start with https:// or http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, SinkConfig};

    use crate::config::tests::env;

    const SINKS: &str = r#"
[notify]
default_sink = "hooks"
[notify.sinks.hooks]
type = "webhook"
url = "https://example.test/mediaflow"
secret = "from-file"
max_attempts = 3
[notify.sinks.events]
type = "sns"
topic_arn = "arn:aws:sns:eu-west-1:000000000000:events"
[notify.sinks.q]
type = "sqs"
queue_url = "https://sqs.eu-west-1.amazonaws.com/000000000000/q"
[notify.sinks.audit]
type = "log"
"#;

    #[test]
    fn sinks_parse_by_type_with_defaults_and_the_secret_comes_from_the_environment() {
        let c = Config::from_sources(
            Some(("f.toml", SINKS)),
            &env(&[("MEDIAFLOW_NOTIFY__SINKS__HOOKS__SECRET", "123456")]),
        )
        .expect("valid");
        let n = &c.notify;
        assert_eq!(n.default_sink, "hooks");
        let Some(SinkConfig::Webhook(w)) = n.sinks.get("hooks") else {
            panic!("webhook: {:?}", n.sinks)
        };
        assert_eq!(
            w.secret.expose(),
            "123456",
            "a numeric env value is a secret"
        );
        assert_eq!((w.max_attempts, w.timeout_ms), (3, 5_000));
        assert!(
            !format!("{w:?}").contains("123456"),
            "Debug hides the secret"
        );
        assert_eq!(n.sinks["events"].kind(), "sns");
        assert_eq!(n.sinks["q"].kind(), "sqs");
        assert_eq!(n.sinks["audit"].kind(), "log");
        let d = Config::from_sources(None, &[]).expect("defaults");
        assert_eq!(d.notify.default_sink, "log");
        assert!(d.notify.rules.is_empty());
    }

    #[test]
    fn bad_sinks_and_rules_are_refused_naming_the_field() {
        let cases: &[(&str, &str)] = &[
            ("[notify]\ndefault_sink = \"nope\"\n", "notify.default_sink"),
            ("[notify.sinks.x]\ntype = \"pigeon\"\n", "notify.sinks.x"),
            (
                "[notify.sinks.x]\ntype = \"webhook\"\nurl = \"ftp://a/b\"\nsecret = \"s\"\n",
                "notify.sinks.x.url",
            ),
            (
                "[notify.sinks.x]\ntype = \"webhook\"\nurl = \"https://a/b\"\nsecret = \"\"\n",
                "notify.sinks.x.secret",
            ),
            (
                "[notify.sinks.x]\ntype = \"webhook\"\nurl = \"https://a/b\"\nsecret = \"s\"\nmax_attempts = 0\n",
                "notify.sinks.x.max_attempts",
            ),
            (
                "[notify.sinks.x]\ntype = \"webhook\"\nurl = \"https://a/b\"\nsecret = \"s\"\nretries = 3\n",
                "retries",
            ),
            (
                "[notify.sinks.x]\ntype = \"sns\"\ntopic_arn = \"events\"\n",
                "notify.sinks.x.topic_arn",
            ),
            (
                "[notify.sinks.x]\ntype = \"sqs\"\nqueue_url = \"https://sqs.x/1/q.fifo\"\n",
                "notify.sinks.x.queue_url",
            ),
            ("[notify.sinks.Loud]\ntype = \"log\"\n", "notify.sinks.Loud"),
            ("[notify]\nqueue_capacity = 0\n", "notify.queue_capacity"),
            (
                "[[notify.rules]]\nplugin = \"notify-rules@^1\"\nfail_closed = \"yes\"\n",
                "notify.rules[0].fail_closed",
            ),
        ];
        for (text, field) in cases {
            let e = Config::from_sources(Some(("f.toml", text)), &[])
                .expect_err(text)
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        // Only the secret is given by the environment: the sink has no type.
        let e = Config::from_sources(
            None,
            &env(&[("MEDIAFLOW_NOTIFY__SINKS__HOOK__SECRET", "s")]),
        )
        .expect_err("no type")
        .to_string();
        assert!(e.contains("notify.sinks.hook") && e.contains("type"), "{e}");
    }
}
