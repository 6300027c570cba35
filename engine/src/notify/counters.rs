//! What happened to one notifier's notifications, per sink (delivered, failed after its
//! attempts or refused, dropped without an attempt: queue full or abandoned at shutdown), per
//! rule plugin (failures: trap, timeout, error value), and notifications addressed to a sink
//! that does not exist. Every count also goes to the process's `/metrics`
//! (`mediaflow_notifications_total`, `mediaflow_notify_rule_failures_total`,
//! `mediaflow_notifications_unknown_sink_total`); [`Counters::snapshot`] reads this notifier's.

use crate::telemetry::metrics;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one sink.
#[derive(Debug, Default)]
struct SinkCounters {
    kind: &'static str,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// Every notification counter of one notifier.
#[derive(Debug, Default)]
pub struct Counters {
    sinks: BTreeMap<String, SinkCounters>,
    rules: BTreeMap<String, AtomicU64>,
    unknown_sink: AtomicU64,
}

/// One sink's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkCount {
    /// Sink name.
    pub sink: String,
    /// `log`, `sns`, `sqs` or `webhook`.
    pub kind: &'static str,
    /// Notifications the sink accepted.
    pub delivered: u64,
    /// Notifications given up on: refused, or every attempt failed.
    pub failed: u64,
    /// Notifications never attempted or abandoned: queue full, or still pending when the
    /// shutdown flush window ended.
    pub dropped: u64,
}

/// All counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Per sink, by name.
    pub sinks: Vec<SinkCount>,
    /// Failures (trap, timeout, error value) per rule plugin (`name@version`).
    pub rule_failures: BTreeMap<String, u64>,
    /// Notifications addressed to a sink that is not configured.
    pub unknown_sink: u64,
}

impl Snapshot {
    /// The counts of sink `name`.
    pub fn sink(&self, name: &str) -> Option<&SinkCount> {
        self.sinks.iter().find(|s| s.sink == name)
    }
}

impl Counters {
    /// Counters for these sinks (name, kind) and rules (`name@version`).
    pub(crate) fn new<'a>(
        sinks: impl IntoIterator<Item = (&'a str, &'static str)>,
        rules: impl IntoIterator<Item = String>,
    ) -> Counters {
        Counters {
            sinks: sinks
                .into_iter()
                .map(|(name, kind)| {
                    (
                        name.to_string(),
                        SinkCounters {
                            kind,
                            ..SinkCounters::default()
                        },
                    )
                })
                .collect(),
            rules: rules.into_iter().map(|r| (r, AtomicU64::new(0))).collect(),
            unknown_sink: AtomicU64::new(0),
        }
    }

    fn bump(&self, sink: &str, outcome: &str, f: impl Fn(&SinkCounters) -> &AtomicU64) {
        if let Some(c) = self.sinks.get(sink) {
            f(c).fetch_add(1, Ordering::Relaxed);
            metrics::NOTIFICATIONS.inc(&[sink, c.kind, outcome]);
        }
    }

    pub(crate) fn delivered(&self, sink: &str) {
        self.bump(sink, "delivered", |c| &c.delivered);
    }

    pub(crate) fn failed(&self, sink: &str) {
        self.bump(sink, "failed", |c| &c.failed);
    }

    pub(crate) fn dropped(&self, sink: &str) {
        self.bump(sink, "dropped", |c| &c.dropped);
    }

    pub(crate) fn rule_failed(&self, rule: &str) {
        if let Some(c) = self.rules.get(rule) {
            c.fetch_add(1, Ordering::Relaxed);
            metrics::NOTIFY_RULE_FAILURES.inc(&[rule]);
        }
    }

    pub(crate) fn unknown_sink(&self) {
        self.unknown_sink.fetch_add(1, Ordering::Relaxed);
        metrics::NOTIFICATIONS_UNKNOWN_SINK.inc(&[]);
    }

    /// Every count now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            sinks: self
                .sinks
                .iter()
                .map(|(name, c)| SinkCount {
                    sink: name.clone(),
                    kind: c.kind,
                    delivered: get(&c.delivered),
                    failed: get(&c.failed),
                    dropped: get(&c.dropped),
                })
                .collect(),
            rule_failures: self
                .rules
                .iter()
                .map(|(r, c)| (r.clone(), get(c)))
                .collect(),
            unknown_sink: get(&self.unknown_sink),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_by_sink_and_rule() {
        let c = super::Counters::new([("log", "log"), ("hook", "webhook")], ["r@1.0.0".into()]);
        c.delivered("hook");
        c.delivered("hook");
        c.failed("hook");
        c.dropped("log");
        c.rule_failed("r@1.0.0");
        c.unknown_sink();
        c.delivered("nope");
        let s = c.snapshot();
        let hook = s.sink("hook").expect("hook");
        assert_eq!((hook.delivered, hook.failed, hook.dropped), (2, 1, 0));
        assert_eq!(hook.kind, "webhook");
        assert_eq!(s.sink("log").map(|l| l.dropped), Some(1));
        assert_eq!(s.rule_failures["r@1.0.0"], 1);
        assert_eq!(s.unknown_sink, 1);
        assert!(s.sink("nope").is_none());
        assert!(
            crate::telemetry::metrics::NOTIFICATIONS.get(&["hook", "webhook", "delivered"]) >= 2.0,
            "exported to /metrics too"
        );
    }
}
