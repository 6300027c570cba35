//! CloudWatch embedded metric format (EMF): each recorded job as one JSON line on stdout that
//! CloudWatch Logs turns into metrics when the line reaches it — through the awslogs driver of
//! the ECS task as deployed, with no agent, no `PutMetricData` call and no IAM permission. Off
//! unless `ops.emf_namespace` names the CloudWatch namespace.
//!
//! A line carries `Jobs` (1) and `JobDuration` (milliseconds) under the dimension sets
//! `[Status]` and `[Profile, Status]` (what the stack's dashboard plots), and the job's id,
//! source and error code as plain properties for CloudWatch Logs Insights.

use crate::manifest::{Manifest, Status};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static NAMESPACE: OnceLock<String> = OnceLock::new();

/// The dimension sets of every line (what a dashboard may filter by).
pub const DIMENSION_SETS: &[&[&str]] = &[&["Status"], &["Profile", "Status"]];

/// The metrics of every line: name and CloudWatch unit.
pub const METRICS: &[(&str, &str)] = &[("Jobs", "Count"), ("JobDuration", "Milliseconds")];

/// From now on, write every recorded job's metrics under `namespace` (empty: never).
pub fn enable(namespace: &str) {
    if !namespace.is_empty() {
        let _ = NAMESPACE.set(namespace.to_string());
    }
}

/// A job's manifest was written: its EMF line on stdout, when enabled.
pub fn job_recorded(m: &Manifest) {
    let Some(namespace) = NAMESPACE.get() else {
        return;
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let line = line(namespace, m, now_ms);
    // One write of one line: the log driver makes each line its own log event.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// The EMF document of `m`, stamped `now_ms` (milliseconds since the epoch).
pub fn line(namespace: &str, m: &Manifest, now_ms: u64) -> Value {
    let status = match m.status {
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
    };
    let metrics: Vec<Value> = METRICS
        .iter()
        .map(|(name, unit)| json!({ "Name": name, "Unit": unit }))
        .collect();
    let mut doc = json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": DIMENSION_SETS,
                "Metrics": metrics,
            }]
        },
        "Status": status,
        "Profile": m.profile,
        "Jobs": 1,
        "JobDuration": m.timings_ms.get("total").copied().unwrap_or(0.0),
        "job_id": m.job_id,
        "source": m.source.uri,
    });
    if let Some(e) = &m.error {
        doc["error_code"] = json!(e.code);
    }
    doc
}
