//! Prometheus metrics: a small process-wide registry of counters, gauges and histograms with
//! labels, the engine's metric families (jobs, stages, plugins, queue, task protection), the
//! functions the engine calls when something observable happens, and the text exposition
//! format 0.0.4 that `/metrics` serves (`# HELP`/`# TYPE` lines, escaped label values,
//! cumulative `_bucket{le=…}` series ending in `+Inf`, `_sum` and `_count`).
//!
//! Families are statics (a new one is a `static` here plus an entry in `FAMILIES`): recording
//! is a mutex-guarded map update keyed by the label values (the key is built per call, a few
//! small allocations), small next to what is measured (the smallest is a ~10 µs plugin call).

use crate::manifest::{Manifest, Status};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    "mediaflow_jobs_total",
    "Jobs recorded, by status (succeeded, failed: a failure manifest was written; duplicate: \
     already recorded, acknowledged without work) and profile.",
    &["status", "profile"],
);
/// Queue messages settled, by outcome.
pub static MESSAGES: Counter = Counter::new(
    "mediaflow_messages_total",
    "Queue messages settled, by outcome (done: recorded and deleted; retry: a transient failure, \
     left to reappear; poison: not a job, left for the dead-letter queue).",
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
    "mediaflow_plugin_calls_total",
    "Plugin calls, by plugin, version and outcome (ok, guest_error, timeout, memory_limit, fuel, \
     trap).",
    &["plugin", "version", "outcome"],
);
/// Plugin calls stopped by a trap or a limit.
pub static PLUGIN_TRAPS: Counter = Counter::new(
    "mediaflow_plugin_traps_total",
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
    "mediaflow_queue_requests_total",
    "Queue calls, by operation (receive, delete, change_visibility; a batch delete is one call).",
    &["operation"],
);
/// Failed queue calls or batch entries.
pub static QUEUE_ERRORS: Counter = Counter::new(
    "mediaflow_queue_errors_total",
    "Failed queue calls or batch-delete entries, by operation and error (stale_receipt, failed).",
    &["operation", "error"],
);
/// Messages received and deleted.
pub static QUEUE_MESSAGES: Counter = Counter::new(
    "mediaflow_queue_messages_total",
    "Messages received and messages deleted, by operation.",
    &["operation"],
);
/// Requests to the ECS agent's task-protection endpoint.
pub static TASK_PROTECTION_REQUESTS: Counter = Counter::new(
    "mediaflow_task_protection_requests_total",
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

/// A message was settled: `done`, `retry` or `poison`.
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
    PLUGIN_MEMORY_HIGH_WATER.set_max(&[plugin, version], memory_bytes as f64);
}

/// The whole registry in the text exposition format 0.0.4.
pub fn render() -> String {
    let mut out = String::with_capacity(8 * 1024);
    for f in FAMILIES {
        f.render(&mut out);
    }
    out
}

// --- The registry --------------------------------------------------------------------------

/// Name, help text and label names of a family.
#[derive(Debug)]
struct Desc {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

impl Desc {
    /// `# HELP` and `# TYPE` lines.
    fn head(&self, out: &mut String, kind: &str) {
        let help = self.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {} {help}", self.name);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
    }

    /// `values` as a key of exactly as many label values as the family has labels.
    fn key(&self, values: &[&str]) -> Vec<String> {
        (0..self.labels.len())
            .map(|i| values.get(i).copied().unwrap_or_default().to_string())
            .collect()
    }

    /// `{a="x",b="y"}` (with `extra` appended), or nothing when there are no labels.
    fn labels(&self, key: &[String], extra: Option<(&str, &str)>) -> String {
        let mut pairs: Vec<String> = self
            .labels
            .iter()
            .zip(key)
            .map(|(n, v)| format!("{n}=\"{}\"", escape_label(v)))
            .collect();
        if let Some((n, v)) = extra {
            pairs.push(format!("{n}=\"{}\"", escape_label(v)));
        }
        if pairs.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", pairs.join(","))
        }
    }
}

/// A label value as the text format needs it: `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A sample value as the text format writes it (`+Inf`, `-Inf`, `NaN`, else a decimal).
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain numbers behind: still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

trait Family: Sync {
    fn render(&self, out: &mut String);
}

/// A monotonically increasing count, per label set.
#[derive(Debug)]
pub struct Counter {
    desc: Desc,
    values: Mutex<BTreeMap<Vec<String>, f64>>,
}

impl Counter {
    /// A family named `name` (ending in `_total`) with `labels`.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            desc: Desc { name, help, labels },
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Add one for the label values `labels` (in the family's label order).
    pub fn inc(&self, labels: &[&str]) {
        self.inc_by(labels, 1.0);
    }

    /// Add `v` (negative or non-finite amounts are ignored: counters only go up).
    pub fn inc_by(&self, labels: &[&str], v: f64) {
        if !(v.is_finite() && v >= 0.0) {
            return;
        }
        *lock(&self.values).entry(self.desc.key(labels)).or_default() += v;
    }

    /// The current count for `labels` (0 when never incremented).
    pub fn get(&self, labels: &[&str]) -> f64 {
        lock(&self.values)
            .get(&self.desc.key(labels))
            .copied()
            .unwrap_or(0.0)
    }
}

impl Family for Counter {
    fn render(&self, out: &mut String) {
        render_values(&self.desc, "counter", &lock(&self.values), out);
    }
}

/// A counter's or gauge's lines: HELP/TYPE, then one sample per label set (an unlabelled
/// family never set shows 0).
fn render_values(desc: &Desc, kind: &str, values: &BTreeMap<Vec<String>, f64>, out: &mut String) {
    desc.head(out, kind);
    if values.is_empty() && desc.labels.is_empty() {
        let _ = writeln!(out, "{} 0", desc.name);
    }
    for (key, v) in values.iter() {
        let _ = writeln!(out, "{}{} {}", desc.name, desc.labels(key, None), value(*v));
    }
}

/// A value that goes up and down, per label set.
#[derive(Debug)]
pub struct Gauge {
    desc: Desc,
    values: Mutex<BTreeMap<Vec<String>, f64>>,
}

impl Gauge {
    /// A family named `name` with `labels`.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            desc: Desc { name, help, labels },
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Set the value for `labels`.
    pub fn set(&self, labels: &[&str], v: f64) {
        lock(&self.values).insert(self.desc.key(labels), v);
    }

    /// Raise the value for `labels` to `v` if it is below (a high-water mark).
    pub fn set_max(&self, labels: &[&str], v: f64) {
        let mut values = lock(&self.values);
        let slot = values.entry(self.desc.key(labels)).or_insert(v);
        if v > *slot {
            *slot = v;
        }
    }

    /// The current value for `labels` (0 when never set).
    pub fn get(&self, labels: &[&str]) -> f64 {
        lock(&self.values)
            .get(&self.desc.key(labels))
            .copied()
            .unwrap_or(0.0)
    }
}

impl Family for Gauge {
    fn render(&self, out: &mut String) {
        render_values(&self.desc, "gauge", &lock(&self.values), out);
    }
}

/// Observations counted into fixed buckets, per label set.
#[derive(Debug)]
pub struct Histogram {
    desc: Desc,
    /// Upper bounds, ascending; `+Inf` is implied.
    bounds: &'static [f64],
    values: Mutex<BTreeMap<Vec<String>, Buckets>>,
}

/// One label set's observations: a count per bucket (not cumulative), the sum and the count.
#[derive(Debug, Clone, Default)]
struct Buckets {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
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
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Count `v` for `labels` (NaN is ignored).
    pub fn observe(&self, labels: &[&str], v: f64) {
        if v.is_nan() {
            return;
        }
        let mut values = lock(&self.values);
        let b = values.entry(self.desc.key(labels)).or_default();
        if b.counts.len() != self.bounds.len() {
            b.counts = vec![0; self.bounds.len()];
        }
        if let Some(i) = self.bounds.iter().position(|&le| v <= le) {
            b.counts[i] += 1;
        }
        b.sum += v;
        b.count += 1;
    }

    /// How many observations there are for `labels`, and their sum.
    pub fn count_and_sum(&self, labels: &[&str]) -> (u64, f64) {
        lock(&self.values)
            .get(&self.desc.key(labels))
            .map(|b| (b.count, b.sum))
            .unwrap_or((0, 0.0))
    }
}

impl Family for Histogram {
    fn render(&self, out: &mut String) {
        self.desc.head(out, "histogram");
        let values = lock(&self.values);
        let empty = Buckets {
            counts: vec![0; self.bounds.len()],
            ..Buckets::default()
        };
        let unlabelled = [(Vec::new(), empty)];
        let rows: Box<dyn Iterator<Item = (&Vec<String>, &Buckets)>> =
            if values.is_empty() && self.desc.labels.is_empty() {
                Box::new(unlabelled.iter().map(|(k, b)| (k, b)))
            } else {
                Box::new(values.iter())
            };
        let name = self.desc.name;
        for (key, b) in rows {
            let mut cumulative = 0;
            for (i, le) in self.bounds.iter().enumerate() {
                cumulative += b.counts.get(i).copied().unwrap_or(0);
                let labels = self.desc.labels(key, Some(("le", &value(*le))));
                let _ = writeln!(out, "{name}_bucket{labels} {cumulative}");
            }
            let labels = self.desc.labels(key, Some(("le", "+Inf")));
            let _ = writeln!(out, "{name}_bucket{labels} {}", b.count);
            let labels = self.desc.labels(key, None);
            let _ = writeln!(out, "{name}_sum{labels} {}", value(b.sum));
            let _ = writeln!(out, "{name}_count{labels} {}", b.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_help_type_and_escaped_labels() {
        static C: Counter = Counter::new("t_events_total", "Events.\nSecond \\ line.", &["a", "b"]);
        C.inc(&["x\"y", "back\\slash\nnewline"]);
        C.inc_by(&["plain", "v"], 2.5);
        C.inc_by(&["plain", "v"], -1.0); // ignored
        let mut out = String::new();
        C.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_events_total Events.\\nSecond \\\\ line.\n\
             # TYPE t_events_total counter\n\
             t_events_total{a=\"plain\",b=\"v\"} 2.5\n\
             t_events_total{a=\"x\\\"y\",b=\"back\\\\slash\\nnewline\"} 1\n"
        );
        assert_eq!(C.get(&["plain", "v"]), 2.5);
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        static H: Histogram = Histogram::new("t_seconds", "Times.", &["k"], &[0.25, 1.0]);
        for v in [0.125, 0.25, 0.5, 3.0, f64::NAN] {
            H.observe(&["a"], v);
        }
        let mut out = String::new();
        H.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_seconds Times.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{k=\"a\",le=\"0.25\"} 2\n\
             t_seconds_bucket{k=\"a\",le=\"1\"} 3\n\
             t_seconds_bucket{k=\"a\",le=\"+Inf\"} 4\n\
             t_seconds_sum{k=\"a\"} 3.875\n\
             t_seconds_count{k=\"a\"} 4\n"
        );
        assert_eq!(H.count_and_sum(&["a"]).0, 4);
    }

    #[test]
    fn unlabelled_families_always_have_a_sample_and_gauges_keep_high_water() {
        static G: Gauge = Gauge::new("t_level", "Level.", &[]);
        static H: Histogram = Histogram::new("t_h", "H.", &[], &[1.0]);
        let mut out = String::new();
        G.render(&mut out);
        H.render(&mut out);
        assert!(out.contains("\nt_level 0\n"), "{out}");
        assert!(out.contains("t_h_bucket{le=\"+Inf\"} 0\nt_h_sum 0\nt_h_count 0\n"));
        static M: Gauge = Gauge::new("t_max", "Max.", &["p"]);
        M.set_max(&["x"], 5.0);
        M.set_max(&["x"], 3.0);
        assert_eq!(M.get(&["x"]), 5.0);
        M.set_max(&["x"], 9.0);
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
        let (n, sum) = STAGE_DURATION.count_and_sum(&["decode", "metrics-unit-test"]);
        assert_eq!((n, sum), (2, 0.08));
        let (n, sum) = JOB_DURATION.count_and_sum(&["metrics-unit-test", "succeeded"]);
        assert_eq!((n, sum), (1, 1.5));
        assert_eq!(
            STAGE_DURATION
                .count_and_sum(&["total", "metrics-unit-test"])
                .0,
            0
        );
        let text = render();
        assert!(text.contains(
            "mediaflow_jobs_total{status=\"succeeded\",profile=\"metrics-unit-test\"} 1\n"
        ));
        assert!(text.contains("# TYPE mediaflow_stage_duration_seconds histogram\n"));
    }
}
