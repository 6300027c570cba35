//! `[worker]`: the queue worker (`mediaflow worker`, `mediaflow submit`) — where local mode
//! keeps its queue and buckets, where outputs go, how many jobs run at once, the queue's
//! timeouts, and S3's multipart settings.

use super::{S3_MAX_PART_BYTES, S3_MIN_PART_BYTES, valid_bucket_name};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Queue worker settings. With no AWS configured, the worker uses an embedded local queue and
/// filesystem buckets under `data_dir`, with the same semantics as SQS and S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Root of local mode: `queue.db`, `index.db` and `buckets/<bucket>/<key>` (with the
    /// default plugin registry, `buckets/<output_bucket>/plugins/`). Default: per user, the same
    /// from every directory — `$XDG_DATA_HOME/mediaflow`, else `~/.local/share/mediaflow`. A
    /// relative path is relative to the current directory.
    pub data_dir: PathBuf,
    /// Bucket that `mediaflow submit` uploads sources to.
    pub source_bucket: String,
    /// Bucket outputs and manifests are written to.
    pub output_bucket: String,
    /// Prefix of every output key (empty, or ending in `/`).
    pub output_prefix: String,
    /// Jobs in flight per process; 0 = one per core.
    pub concurrency: usize,
    /// How long a received message stays hidden; a heartbeat extends it every third of this
    /// while its job runs.
    pub visibility_timeout_secs: u64,
    /// On SIGTERM/SIGINT, how long in-flight jobs may run before they are released.
    pub drain_timeout_secs: u64,
    /// How long one job may run; 0 = no limit. Past it the job is stopped at its next check
    /// and recorded as failed (`timed_out`, its partial outputs removed); one still running as
    /// long again later (at most 5 min) is stuck in code that never checks, and the worker reports
    /// itself unhealthy (`/healthz` 503) so that its orchestrator replaces it. The default, 6 h,
    /// is twice the longest source `limits.max_duration_s` admits by default (3 h): raise it
    /// for slow ladders on small tasks.
    pub job_timeout_secs: u64,
    /// Receives before a message is moved to the dead-letter queue.
    pub max_receive_count: u32,
    /// How often an idle worker polls the local queue.
    pub poll_interval_ms: u64,
    /// SQS queue URL. Set, the worker consumes SQS and reads and writes S3 (AWS settings come
    /// from the SDK's standard environment: `AWS_REGION`, `AWS_ENDPOINT_URL`, the credential
    /// chain including the ECS task role). Unset, it runs in local mode.
    pub queue_url: Option<String>,
    /// How long an SQS receive waits for messages (long polling; 0..=20, 0 = short polling).
    /// On SIGTERM the worker waits for an open receive to end, so that anything it returns is
    /// released at once: this also bounds how long an idle worker takes to exit (5 s by
    /// default; 20 s makes a quarter of the receive calls of an idle worker).
    pub receive_wait_secs: u64,
    /// Path-style S3 addressing (`endpoint/bucket/key`), for S3-compatible endpoints.
    pub s3_path_style: bool,
    /// Outputs at least this large are uploaded to S3 in parts (multipart upload).
    pub s3_multipart_threshold_bytes: u64,
    /// Size of each part of a multipart upload but the last (S3: 5 MiB..=5 GiB).
    pub s3_part_bytes: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("mediaflow-data"),
            source_bucket: "uploads".into(),
            output_bucket: "renditions".into(),
            output_prefix: String::new(),
            concurrency: 0,
            visibility_timeout_secs: 120,
            drain_timeout_secs: 90,
            job_timeout_secs: 6 * 3600,
            max_receive_count: 5,
            poll_interval_ms: 100,
            queue_url: None,
            receive_wait_secs: 5,
            s3_path_style: false,
            s3_multipart_threshold_bytes: 16 * 1024 * 1024,
            s3_part_bytes: 8 * 1024 * 1024,
        }
    }
}

impl WorkerConfig {
    /// Check the values; `Err((field, problem))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let w = self;
        if w.visibility_timeout_secs < 3 || w.visibility_timeout_secs > 43_200 {
            return Err((
                "visibility_timeout_secs".into(),
                format!(
                    "{} must be 3..=43200 (SQS's range, heartbeat needs ≥ 3)",
                    w.visibility_timeout_secs
                ),
            ));
        }
        if w.receive_wait_secs > 20 {
            return Err((
                "receive_wait_secs".into(),
                format!("{} must be 0..=20 (SQS's range)", w.receive_wait_secs),
            ));
        }
        let parts = S3_MIN_PART_BYTES..=S3_MAX_PART_BYTES;
        if !parts.contains(&w.s3_part_bytes) {
            return Err((
                "s3_part_bytes".into(),
                format!(
                    "{} must be {}..={} (S3's part sizes)",
                    w.s3_part_bytes,
                    parts.start(),
                    parts.end()
                ),
            ));
        }
        if w.s3_multipart_threshold_bytes < w.s3_part_bytes {
            return Err((
                "s3_multipart_threshold_bytes".into(),
                format!(
                    "{} must be at least worker.s3_part_bytes ({})",
                    w.s3_multipart_threshold_bytes, w.s3_part_bytes
                ),
            ));
        }
        if w.max_receive_count == 0 {
            return Err(("max_receive_count".into(), "must be at least 1".into()));
        }
        if !(w.output_prefix.is_empty() || w.output_prefix.ends_with('/')) {
            return Err((
                "output_prefix".into(),
                format!("{:?} must be empty or end with '/'", w.output_prefix),
            ));
        }
        for (name, bucket) in [
            ("source_bucket", &w.source_bucket),
            ("output_bucket", &w.output_bucket),
        ] {
            if !valid_bucket_name(bucket) {
                return Err((name.into(), format!("{bucket:?} is not a bucket name")));
            }
        }
        Ok(())
    }
}
