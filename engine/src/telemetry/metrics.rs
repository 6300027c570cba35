//! Prometheus metrics, through `prometheus-client`: the engine's metric families (jobs, stages,
//! messages, plugins, queue, task protection, notifications) as statics with their label names
//! fixed, the functions the engine calls when something observable happens, and the text
//! exposition format 0.0.4 that `/metrics` serves (`# HELP`/`# TYPE`, escaped label values,
//! cumulative `_bucket{le=…}` series ending in `+Inf`, `_sum` and `_count`).
//!
//! A new family is a `static` here plus an entry in `FAMILIES`. Recording is an atomic update
//! of the label set's metric (found under a read lock), small next to what is measured (the
//! smallest is a ~10 µs plugin call).

use crate::manifest::{Manifest, Status};
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, prometheus_text};
use prometheus_client::metrics::family::MetricConstructor;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Buckets of whole-job durations, in seconds.
const JOB_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];
/// Buckets of pipeline-stage durations, in seconds.
const STAGE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Buckets of plugin-call durations, in seconds (a call on a warm instance takes ~10 µs).
const PLUGIN_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Jobs recorded, by status and profile.
pub static JOBS: Counter = Counter::new(
    "mediaflow_jobs",
    "Jobs recorded, by status (succeeded, failed: a failure manifest was written; duplicate: \
     already recorded, acknowledged without work) and profile.",
    &["status", "profile"],
);
/// Queue messages settled, by outcome.
pub static MESSAGES: Counter = Counter::new(
    "mediaflow_messages",
    "Queue messages settled, by outcome (done: recorded, or nothing to do, and deleted; retry: \
     not done this time, left to reappear; dead_lettered: moved to the dead-letter queue with its \
     reason after its last receive; poison: a message that is not a job, dead-lettered; released: \
     handed back at shutdown). A message counts once as dead_lettered or poison.",
    &["outcome"],
);
/// Whole-job wall time.
pub static JOB_DURATION: Histogram = Histogram::new(
    "mediaflow_job_duration_seconds",
    "Wall time of a job, fetch to manifest (the manifest's timings_ms.total), by profile and status.",
    &["profile", "status"],
    JOB_BUCKETS,
);
/// Per-stage time of each job.
pub static STAGE_DURATION: Histogram = Histogram::new(
    "mediaflow_stage_duration_seconds",
    "Time each job spent in a pipeline stage (the manifest's timings_ms), by stage and profile.",
    &["stage", "profile"],
    STAGE_BUCKETS,
);
/// Messages being worked on.
pub static JOBS_IN_FLIGHT: Gauge = Gauge::new(
    "mediaflow_jobs_in_flight",
    "Queue messages being processed now (received, not yet settled).",
    &[],
);
/// Plugin calls by outcome.
pub static PLUGIN_CALLS: Counter = Counter::new(
    "mediaflow_plugin_calls",
    "Plugin calls, by plugin, version and outcome (ok, guest_error, timeout, memory_limit, fuel, \
     trap).",
    &["plugin", "version", "outcome"],
);
/// Plugin calls stopped by a trap or a limit.
pub static PLUGIN_TRAPS: Counter = Counter::new(
    "mediaflow_plugin_traps",
    "Plugin calls stopped by a trap or an exceeded limit, by plugin, version and reason \
     (timeout, memory_limit, fuel, trap).",
    &["plugin", "version", "reason"],
);
/// Plugin call wall time.
pub static PLUGIN_CALL_DURATION: Histogram = Histogram::new(
    "mediaflow_plugin_call_duration_seconds",
    "Wall time of a plugin call (instantiation included when the call made the instance), by \
     plugin and version.",
    &["plugin", "version"],
    PLUGIN_BUCKETS,
);
/// Largest linear memory any instance of a plugin reached.
pub static PLUGIN_MEMORY_HIGH_WATER: Gauge = Gauge::new(
    "mediaflow_plugin_memory_high_water_bytes",
    "Most linear memory any instance of the plugin has grown to, by plugin and version.",
    &["plugin", "version"],
);
/// Queue API calls.
pub static QUEUE_REQUESTS: Counter = Counter::new(
    "mediaflow_queue_requests",
    "Queue calls, by operation (receive, delete, change_visibility, dead_letter; a batch delete is \
     one call).",
    &["operation"],
);
/// Failed queue calls or batch entries.
pub static QUEUE_ERRORS: Counter = Counter::new(
    "mediaflow_queue_errors",
    "Failed queue calls or batch-delete entries, by operation and error (stale_receipt, failed).",
    &["operation", "error"],
);
/// Messages received and deleted.
pub static QUEUE_MESSAGES: Counter = Counter::new(
    "mediaflow_queue_messages",
    "Messages received and messages deleted, by operation.",
    &["operation"],
);
/// Requests to the ECS agent's task-protection endpoint.
pub static TASK_PROTECTION_REQUESTS: Counter = Counter::new(
    "mediaflow_task_protection_requests",
    "Requests to the ECS agent's task-protection endpoint, by protection (on, off) and result \
     (ok, failed).",
    &["protection", "result"],
);
/// Whether the ECS agent confirmed protection.
pub static TASK_PROTECTED: Gauge = Gauge::new(
    "mediaflow_task_protected",
    "1 while the ECS agent has confirmed scale-in protection for this task, else 0.",
    &[],
);

/// Notifications by sink and outcome.
pub static NOTIFICATIONS: Counter = Counter::new(
    "mediaflow_notifications",
    "Notifications, by sink, sink kind (log, sns, sqs, webhook) and outcome (delivered; failed: \
     refused, or every attempt failed; dropped: the delivery queue was full, or still pending when \
     the shutdown flush window ended).",
    &["sink", "kind", "outcome"],
);
/// Notification-rule plugin failures.
pub static NOTIFY_RULE_FAILURES: Counter = Counter::new(
    "mediaflow_notify_rule_failures",
    "Notification-rule plugin failures (trap, timeout, error value), by rule (name@version).",
    &["rule"],
);
/// Notifications addressed to a sink that is not configured.
pub static NOTIFICATIONS_UNKNOWN_SINK: Counter = Counter::new(
    "mediaflow_notifications_unknown_sink",
    "Notifications a rule addressed to a sink that is not configured (they go nowhere).",
    &[],
);

/// Every family, in exposition order.
static FAMILIES: &[&dyn Family] = &[
    &JOBS,
    &MESSAGES,
    &JOB_DURATION,
    &STAGE_DURATION,
    &JOBS_IN_FLIGHT,
    &PLUGIN_CALLS,
    &PLUGIN_TRAPS,
    &PLUGIN_CALL_DURATION,
    &PLUGIN_MEMORY_HIGH_WATER,
    &QUEUE_REQUESTS,
    &QUEUE_ERRORS,
    &QUEUE_MESSAGES,
    &TASK_PROTECTION_REQUESTS,
    &TASK_PROTECTED,
    &NOTIFICATIONS,
    &NOTIFY_RULE_FAILURES,
    &NOTIFICATIONS_UNKNOWN_SINK,
];

// --- What the engine reports -------------------------------------------------------------

/// A job's manifest was written (or lost the create-if-absent race to another worker's):
/// counts it by status and profile, and observes its total and per-stage timings.
pub fn job_recorded(m: &Manifest) {
    let status = match m.status {
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
    };
    JOBS.inc(&[status, &m.profile]);
    for (stage, ms) in &m.timings_ms {
        let secs = ms / 1e3;
        if stage == "total" {
            JOB_DURATION.observe(&[&m.profile, status], secs);
        } else {
            STAGE_DURATION.observe(&[stage, &m.profile], secs);
        }
    }
}

/// A message named a job whose manifest already exists: acknowledged without work.
pub fn job_duplicate(profile: &str) {
    JOBS.inc(&["duplicate", profile]);
}

/// A message was settled: `done`, `retry`, `dead_lettered`, `poison` or `released`.
pub fn message_settled(outcome: &'static str) {
    MESSAGES.inc(&[outcome]);
}

/// A plugin call ended after `elapsed` with `outcome` (`ok` or a plugin error's detail code);
/// its instance's linear memory had grown to at most `memory_bytes`.
pub fn plugin_call(
    plugin: &str,
    version: &str,
    outcome: &str,
    elapsed: Duration,
    memory_bytes: u64,
) {
    PLUGIN_CALLS.inc(&[plugin, version, outcome]);
    if matches!(outcome, "timeout" | "memory_limit" | "fuel" | "trap") {
        PLUGIN_TRAPS.inc(&[plugin, version, outcome]);
    }
    PLUGIN_CALL_DURATION.observe(&[plugin, version], elapsed.as_secs_f64());
    PLUGIN_MEMORY_HIGH_WATER.set_max(&[plugin, version], memory_bytes as i64);
}

/// Every family in the Prometheus text exposition format 0.0.4.
pub fn render() -> String {
    let mut registry = Registry::default();
    for f in FAMILIES {
        f.register(&mut registry);
    }
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

// --- The families: prometheus-client metrics with the label names fixed -----------------

type Labels = Vec<(&'static str, String)>;
type PCounter = prometheus_client::metrics::counter::Counter;
type PGauge = prometheus_client::metrics::gauge::Gauge;
type PHistogram = prometheus_client::metrics::histogram::Histogram;

/// Name, help text and label names of a family.
#[derive(Debug)]
struct Desc {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

impl Desc {
    /// The label set for `values` (in the family's label order; missing values are empty).
    fn label_set(&self, values: &[&str]) -> Labels {
        self.labels
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, values.get(i).copied().unwrap_or_default().to_string()))
            .collect()
    }

    /// The help text as the registry wants it (it adds the final full stop).
    fn help(&self) -> &'static str {
        self.help.strip_suffix('.').unwrap_or(self.help)
    }
}

/// A family the registry exposes.
trait Family: Sync {
    fn register(&self, registry: &mut Registry);
}

/// A metric whose `# HELP`/`# TYPE` are exposed even before it has a sample (the registry
/// leaves out empty families), so dashboards and alerts see every family from the start.
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// One metric without labels, or a family of them by label values: a [`Counter`] or a
/// [`Gauge`].
#[derive(Debug)]
pub struct Series<M> {
    desc: Desc,
    metric: OnceLock<Metric<M>>,
}

#[derive(Debug)]
enum Metric<M> {
    Plain(M),
    Labelled(prometheus_client::metrics::family::Family<Labels, M>),
}

/// A monotonically increasing count, per label set.
pub type Counter = Series<PCounter>;
/// A whole number that goes up and down, per label set.
pub type Gauge = Series<PGauge>;

impl<M> Series<M>
where
    M: EncodeMetric + TypedMetric + Default + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    /// A family named `name` (a counter's gets `_total`) with `labels`.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            desc: Desc { name, help, labels },
            metric: OnceLock::new(),
        }
    }

    fn metric(&self) -> &Metric<M> {
        self.metric.get_or_init(|| {
            if self.desc.labels.is_empty() {
                Metric::Plain(M::default())
            } else {
                Metric::Labelled(Default::default())
            }
        })
    }

    /// Run `f` on the metric of `labels` (created at 0 if new).
    fn with<T>(&self, labels: &[&str], f: impl FnOnce(&M) -> T) -> T {
        match self.metric() {
            Metric::Plain(m) => f(m),
            Metric::Labelled(family) => f(&family.get_or_create(&self.desc.label_set(labels))),
        }
    }

    /// Run `f` on the metric of `labels` if it exists.
    fn peek<T>(&self, labels: &[&str], f: impl FnOnce(&M) -> T) -> Option<T> {
        match self.metric() {
            Metric::Plain(m) => Some(f(m)),
            Metric::Labelled(family) => family.get(&self.desc.label_set(labels)).map(|m| f(&m)),
        }
    }
}

impl<M> Family for Series<M>
where
    M: EncodeMetric + TypedMetric + Default + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    fn register(&self, registry: &mut Registry) {
        let (name, help) = (self.desc.name, self.desc.help());
        match self.metric() {
            Metric::Plain(m) => registry.register(name, help, m.clone()),
            Metric::Labelled(f) => registry.register(name, help, Declared(f.clone())),
        }
    }
}

impl Series<PCounter> {
    /// Add one for the label values `labels` (in the family's label order).
    pub fn inc(&self, labels: &[&str]) {
        self.inc_by(labels, 1);
    }

    /// Add `n`.
    pub fn inc_by(&self, labels: &[&str], n: u64) {
        self.with(labels, |c| c.inc_by(n));
    }

    /// The current count for `labels` (0 when never incremented).
    pub fn get(&self, labels: &[&str]) -> f64 {
        self.peek(labels, |c| c.get() as f64).unwrap_or(0.0)
    }
}

impl Series<PGauge> {
    /// Set the value for `labels`.
    pub fn set(&self, labels: &[&str], v: i64) {
        self.with(labels, |g| g.set(v));
    }

    /// Raise the value for `labels` to `v` if it is below (a high-water mark).
    pub fn set_max(&self, labels: &[&str], v: i64) {
        self.with(labels, |g| g.inner().fetch_max(v, Ordering::Relaxed));
    }

    /// The current value for `labels` (0 when never set).
    pub fn get(&self, labels: &[&str]) -> f64 {
        self.peek(labels, |g| g.get() as f64).unwrap_or(0.0)
    }
}

/// How a histogram of a family is made: with the family's bucket bounds.
#[derive(Debug, Clone, Copy)]
struct Bounds(&'static [f64]);

impl MetricConstructor<PHistogram> for Bounds {
    fn new_metric(&self) -> PHistogram {
        PHistogram::new(self.0.iter().copied())
    }
}

/// Observations counted into fixed buckets, per label set.
#[derive(Debug)]
pub struct Histogram {
    desc: Desc,
    bounds: &'static [f64],
    family: OnceLock<prometheus_client::metrics::family::Family<Labels, PHistogram, Bounds>>,
}

impl Histogram {
    /// A family named `name` with `labels` and bucket upper bounds `bounds` (ascending).
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        Self {
            desc: Desc { name, help, labels },
            bounds,
            family: OnceLock::new(),
        }
    }

    fn family(&self) -> &prometheus_client::metrics::family::Family<Labels, PHistogram, Bounds> {
        self.family.get_or_init(|| {
            prometheus_client::metrics::family::Family::new_with_constructor(Bounds(self.bounds))
        })
    }

    /// Count `v` for `labels` (NaN is ignored).
    pub fn observe(&self, labels: &[&str], v: f64) {
        if !v.is_nan() {
            self.family()
                .get_or_create(&self.desc.label_set(labels))
                .observe(v);
        }
    }
}

impl Family for Histogram {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            self.desc.name,
            self.desc.help(),
            Declared(self.family().clone()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_is_text_format_0_0_4_with_escaped_labels_and_cumulative_buckets() {
        static C: Counter = Counter::new("t_events", "Events.\nSecond \\ line.", &["a", "b"]);
        static H: Histogram = Histogram::new("t_seconds", "Times.", &["k"], &[0.25, 1.0]);
        static G: Gauge = Gauge::new("t_level", "Level.", &[]);
        C.inc(&["x\"y", "back\\slash\nnewline"]);
        C.inc_by(&["plain", "v"], 2);
        for v in [0.125, 0.25, 0.5, 3.0, f64::NAN] {
            H.observe(&["a"], v);
        }
        let mut registry = Registry::default();
        for f in [&C as &dyn Family, &H, &G] {
            f.register(&mut registry);
        }
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry).expect("encode");
        for line in [
            "# HELP t_events_total Events.\\nSecond \\\\ line.\n",
            "# TYPE t_events_total counter\n",
            "t_events_total{a=\"plain\",b=\"v\"} 2\n",
            "t_events_total{a=\"x\\\"y\",b=\"back\\\\slash\\nnewline\"} 1\n",
            "# TYPE t_seconds histogram\n",
            "t_seconds_bucket{k=\"a\",le=\"0.25\"} 2\n",
            "t_seconds_bucket{k=\"a\",le=\"1\"} 3\n",
            "t_seconds_bucket{k=\"a\",le=\"+Inf\"} 4\n",
            "t_seconds_sum{k=\"a\"} 3.875\n",
            "t_seconds_count{k=\"a\"} 4\n",
            "\nt_level 0\n",
        ] {
            assert!(out.contains(line), "{line:?} in:\n{out}");
        }
        assert_eq!(C.get(&["plain", "v"]), 2.0);
        static M: Gauge = Gauge::new("t_max", "Max.", &["p"]);
        M.set_max(&["x"], 5);
        M.set_max(&["x"], 3);
        assert_eq!(M.get(&["x"]), 5.0);
        M.set_max(&["x"], 9);
        assert_eq!(M.get(&["x"]), 9.0);
    }

    #[test]
    fn a_manifest_counts_the_job_and_observes_its_stages() {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "schema": 1, "job_id": "j", "status": "succeeded",
            "source": { "uri": "file:///x", "etag": "e", "bytes": 1, "sha256": "" },
            "profile": "metrics-unit-test", "outputs": [], "metadata": {}, "plugins": [],
            "timings_ms": { "probe": 2.0, "decode": 40.0, "total": 1500.0 }
        }))
        .expect("manifest");
        job_recorded(&m);
        m.status = Status::Failed;
        job_recorded(&m);
        assert_eq!(JOBS.get(&["succeeded", "metrics-unit-test"]), 1.0);
        assert_eq!(JOBS.get(&["failed", "metrics-unit-test"]), 1.0);
        let text = render();
        let sample = |series: &str| -> Option<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        };
        let stage = |s: &str| format!("{{stage=\"{s}\",profile=\"metrics-unit-test\"}}");
        let decode = stage("decode");
        assert_eq!(
            sample(&format!("mediaflow_stage_duration_seconds_count{decode}")),
            Some(2.0)
        );
        assert_eq!(
            sample(&format!("mediaflow_stage_duration_seconds_sum{decode}")),
            Some(0.08)
        );
        let job = "{profile=\"metrics-unit-test\",status=\"succeeded\"}";
        assert_eq!(
            sample(&format!("mediaflow_job_duration_seconds_count{job}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&format!("mediaflow_job_duration_seconds_sum{job}")),
            Some(1.5)
        );
        let total = stage("total");
        assert_eq!(
            sample(&format!("mediaflow_stage_duration_seconds_count{total}")),
            None
        );
        assert!(text.contains(
            "mediaflow_jobs_total{status=\"succeeded\",profile=\"metrics-unit-test\"} 1\n"
        ));
        assert!(text.contains("# TYPE mediaflow_stage_duration_seconds histogram\n"));
        for family in [
            "mediaflow_notifications_total",
            "mediaflow_notify_rule_failures_total",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} counter\n")),
                "{family}"
            );
        }
    }
}
