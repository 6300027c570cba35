//! One job's record in the index and the rules for changing it. Every store applies a change
//! the same way — [`apply`] decides, from the record as read, what to write — and writes it
//! only if the record has not changed since (its `rev`), so two writers never undo each other
//! and a finished job's status never goes back.

use serde::{Deserialize, Serialize};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// An upload was created; its bytes have not arrived.
    AwaitingUpload,
    /// Waiting in the queue (or to run again after a transient failure).
    Queued,
    /// An attempt is running.
    Running,
    /// Its manifest says `succeeded`.
    Succeeded,
    /// Its manifest says `failed`, or it was dead-lettered.
    Failed,
    /// Stopped on request.
    Canceled,
    /// Its upload never arrived.
    Expired,
}

impl JobStatus {
    /// Every status, in the order of a job's life.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::AwaitingUpload,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
        JobStatus::Expired,
    ];

    /// Its name in the API and the stores.
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::AwaitingUpload => "awaiting_upload",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
            JobStatus::Expired => "expired",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<JobStatus> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }

    /// Whether the job is over (until someone retries it).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired
        )
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordError {
    /// The stable error code (`corrupt_input`, `dead_lettered`…).
    pub code: String,
    /// Plain words.
    pub message: String,
}

/// One output, as the index keeps it (its URL is made when it is read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRef {
    /// Rendition name.
    pub name: String,
    /// `image`, `video`, `playlist`, `poster`…
    pub kind: String,
    /// `jpeg`, `mp4`, `m3u8`…
    pub format: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub bytes: u64,
    /// Its key in the output bucket.
    pub key: String,
    /// The video codec (RFC 6381) of an MP4 rendition or an HLS playlist; not kept for media
    /// segments, to keep records small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
}

/// An upload the API handed out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRef {
    /// The upload's id.
    pub id: String,
    /// Where the bytes go: bucket and key.
    pub bucket: String,
    /// The object key (`<upload prefix><job id>/<file name>`).
    pub key: String,
    /// Declared size in bytes.
    pub bytes: u64,
    /// Declared content type.
    pub content_type: String,
    /// When the upload URL stops working (ms since the epoch).
    pub expires_ms: i64,
    /// Set when the bytes come in parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<MultipartRef>,
}

/// A multipart upload: every part `part_bytes` long but the last, numbered from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultipartRef {
    /// The size of each part but the last.
    pub part_bytes: u64,
    /// S3's id of the multipart upload (on AWS; locally the parts are `serve`'s own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_upload_id: Option<String>,
}

impl MultipartRef {
    /// How many parts `total` bytes make.
    pub fn parts(&self, total: u64) -> u32 {
        total.div_ceil(self.part_bytes.max(1)) as u32
    }

    /// The size part `n` (from 1) of `total` bytes must have, or `None` past the last.
    pub fn part_len(&self, total: u64, n: u32) -> Option<u64> {
        let start = u64::from(n.checked_sub(1)?) * self.part_bytes;
        (n >= 1 && start < total).then(|| self.part_bytes.min(total - start))
    }
}

/// How an earlier run of a job ended (a retry starts a new run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run, from 1.
    pub run: u32,
    /// How it ended.
    pub status: JobStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordError>,
    /// Its manifest's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
    /// When it ended (ms since the epoch).
    pub ended_ms: i64,
}

fn first_run() -> u32 {
    1
}

/// One job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id.
    pub id: String,
    /// Where it is.
    pub status: JobStatus,
    /// The stage running (while `running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// How far it is, 0..=100.
    #[serde(default)]
    pub percent: f32,
    /// The profile.
    pub profile: String,
    /// Its sources (`s3://bucket/key`).
    pub sources: Vec<String>,
    /// Created (ms since the epoch).
    pub created_ms: i64,
    /// Last changed (ms since the epoch).
    pub updated_ms: i64,
    /// The attempt running or last run (1 for the first; a retry adds a run, a redelivery
    /// counts as another attempt of the same run).
    #[serde(default)]
    pub attempt: u32,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordError>,
    /// The bucket its outputs and manifest are in.
    #[serde(default)]
    pub output_bucket: String,
    /// Its manifest's key, once recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
    /// Its outputs, once recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputRef>,
    /// What the metadata plugins extracted, once recorded (left out past
    /// [`MAX_METADATA_BYTES`]: the manifest has it).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    /// A cancel was asked for while it ran: the worker running it stops it.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Recorded, and its notifications not yet confirmed delivered (the outbox): a worker
    /// delivers them again from the manifest after `notify.outbox_redeliver_secs`.
    #[serde(default)]
    pub notify_pending: bool,
    /// The upload that starts it, for jobs created by `POST /v1/uploads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadRef>,
    /// A digest of the request that created it with an idempotency key: the same key with a
    /// different request is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
    /// The run: 1, and one more for each retry of the finished job.
    #[serde(default = "first_run")]
    pub run: u32,
    /// The earlier runs, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunSummary>,
    /// Changes written so far: a write succeeds only against the revision it read.
    #[serde(default)]
    pub rev: u64,
}

/// Metadata larger than this (as JSON) is not copied into the index record (DynamoDB items
/// are at most 400 KB): the manifest keeps it.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

impl JobRecord {
    /// A new record.
    pub fn new(id: &str, status: JobStatus, profile: &str, sources: Vec<String>, now: i64) -> Self {
        JobRecord {
            id: id.to_string(),
            status,
            stage: None,
            percent: 0.0,
            profile: profile.to_string(),
            sources,
            created_ms: now,
            updated_ms: now,
            attempt: 0,
            error: None,
            output_bucket: String::new(),
            manifest_key: None,
            outputs: Vec::new(),
            metadata: serde_json::Value::Null,
            cancel_requested: false,
            notify_pending: false,
            upload: None,
            request_digest: None,
            run: 1,
            runs: Vec::new(),
            rev: 0,
        }
    }
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An attempt started (created if the job is not in the index: a plain upload).
    Started {
        /// Attempt number.
        attempt: u32,
        /// The profile.
        profile: String,
        /// The sources.
        sources: Vec<String>,
        /// Where its outputs go.
        output_bucket: String,
    },
    /// Progress within the running attempt.
    Progress {
        /// The stage.
        stage: String,
        /// Percent, 0..=100.
        percent: f32,
    },
    /// Recorded: its manifest was written.
    Recorded {
        /// `succeeded` or `failed`.
        status: JobStatus,
        /// The error of a failed job.
        error: Option<RecordError>,
        /// The manifest's key.
        manifest_key: String,
        /// The outputs.
        outputs: Vec<OutputRef>,
        /// The metadata.
        metadata: serde_json::Value,
        /// Its notifications were already delivered (else they are pending: the outbox).
        notified: bool,
    },
    /// The attempt ended unrecorded: it will run again.
    Retrying {
        /// Why.
        reason: String,
    },
    /// It will never be recorded: it is in the dead-letter queue.
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// Stopped on request.
    Canceled,
    /// Stopped by a shutdown: it runs again elsewhere.
    Released,
    /// Someone asked for it to stop.
    CancelRequested,
    /// Its upload arrived (the job is queued).
    Uploaded,
    /// Its upload did not arrive in time.
    Expire,
    /// Run it again as a new attempt.
    Retry,
    /// The notifications of its recorded event were delivered (or given up on).
    Notified,
}

/// What to do with a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Write this (its `rev` one past the one read).
    Write(Box<JobRecord>),
    /// Nothing to write: the change does not apply to the job as it is (a late progress
    /// report, a redelivery of a finished job).
    Keep,
    /// The change is refused (cancelling a finished job, retrying a running one).
    Refuse(String),
    /// No such job, and the change cannot create it.
    Missing,
}

/// What one change does to a record (`next`, a copy of the one read).
enum Step {
    Write,
    Keep,
    Refuse(String),
}

/// Decide how `change` applies to `current` (as read) at time `now`.
pub fn apply(current: Option<&JobRecord>, change: &Change, now: i64) -> Verdict {
    let Some(current) = current else {
        return create(change, now);
    };
    let mut next = current.clone();
    let step = match change {
        Change::Started {
            attempt,
            profile,
            sources,
            output_bucket,
        } => start(&mut next, *attempt, profile, sources, output_bucket),
        Change::Progress { stage, percent } => progress(&mut next, stage, *percent),
        Change::Recorded {
            status,
            error,
            manifest_key,
            outputs,
            metadata,
            notified,
        } => record(
            &mut next,
            *status,
            error,
            manifest_key,
            (outputs, metadata),
            *notified,
        ),
        Change::Retrying { reason } => unrecorded(&mut next, JobStatus::Queued, "retrying", reason),
        Change::DeadLettered { reason } => {
            unrecorded(&mut next, JobStatus::Failed, "dead_lettered", reason)
        }
        Change::Canceled => canceled(&mut next),
        Change::Released => released(&mut next),
        Change::CancelRequested => cancel_requested(&mut next),
        Change::Uploaded => awaited(&mut next, JobStatus::Queued),
        Change::Expire => awaited(&mut next, JobStatus::Expired),
        Change::Notified => notified(&mut next),
        Change::Retry => retry(&mut next),
    };
    match step {
        Step::Keep => Verdict::Keep,
        Step::Refuse(why) => Verdict::Refuse(why),
        Step::Write => {
            next.updated_ms = now.max(current.updated_ms);
            next.rev = current.rev + 1;
            Verdict::Write(Box::new(next))
        }
    }
}

/// A change to a job the index does not have: only an attempt's start creates one (a plain
/// upload's job).
fn create(change: &Change, now: i64) -> Verdict {
    match change {
        Change::Started {
            attempt,
            profile,
            sources,
            output_bucket,
        } => {
            let mut r = JobRecord::new("", JobStatus::Running, profile, sources.clone(), now);
            r.attempt = *attempt;
            r.output_bucket = output_bucket.clone();
            Verdict::Write(Box::new(r))
        }
        _ => Verdict::Missing,
    }
}

/// An attempt starts. A finished job is only run again by a retry (which queues it first); a
/// late redelivery finds its manifest and changes nothing.
fn start(
    next: &mut JobRecord,
    attempt: u32,
    profile: &str,
    sources: &[String],
    output_bucket: &str,
) -> Step {
    if next.status.is_terminal() {
        return Step::Keep;
    }
    next.status = JobStatus::Running;
    next.attempt = attempt;
    next.profile = profile.to_string();
    next.sources = sources.to_vec();
    next.output_bucket = output_bucket.to_string();
    next.stage = None;
    next.percent = 0.0;
    next.error = None;
    Step::Write
}

fn progress(next: &mut JobRecord, stage: &str, percent: f32) -> Step {
    if next.status != JobStatus::Running {
        return Step::Keep;
    }
    next.stage = Some(stage.to_string());
    next.percent = percent.clamp(0.0, 100.0);
    Step::Write
}

/// Its manifest was written: the result, and its notifications pending (the outbox).
fn record(
    next: &mut JobRecord,
    status: JobStatus,
    error: &Option<RecordError>,
    manifest_key: &str,
    (outputs, metadata): (&[OutputRef], &serde_json::Value),
    notified: bool,
) -> Step {
    if next.status.is_terminal() && next.status != JobStatus::Canceled {
        return Step::Keep;
    }
    next.status = status;
    next.error = error.clone();
    next.manifest_key = Some(manifest_key.to_string());
    next.outputs = outputs.to_vec();
    next.metadata = bounded(metadata);
    if status == JobStatus::Succeeded {
        next.percent = 100.0;
    }
    next.stage = None;
    next.cancel_requested = false;
    next.notify_pending = !notified;
    Step::Write
}

/// It ended unrecorded: queued to run again, or failed in the dead-letter queue.
fn unrecorded(next: &mut JobRecord, status: JobStatus, code: &str, reason: &str) -> Step {
    if next.status.is_terminal() {
        return Step::Keep;
    }
    next.status = status;
    next.stage = None;
    next.error = Some(RecordError {
        code: code.into(),
        message: reason.to_string(),
    });
    Step::Write
}

fn canceled(next: &mut JobRecord) -> Step {
    if next.status.is_terminal() && next.status != JobStatus::Canceled {
        return Step::Keep;
    }
    next.status = JobStatus::Canceled;
    next.stage = None;
    next.cancel_requested = false;
    Step::Write
}

fn released(next: &mut JobRecord) -> Step {
    if next.status != JobStatus::Running {
        return Step::Keep;
    }
    next.status = JobStatus::Queued;
    next.stage = None;
    Step::Write
}

/// Queued or awaited: canceled at once; running: asked of its worker; finished: refused.
fn cancel_requested(next: &mut JobRecord) -> Step {
    match next.status {
        JobStatus::AwaitingUpload | JobStatus::Queued => {
            next.status = JobStatus::Canceled;
            next.stage = None;
        }
        JobStatus::Running if next.cancel_requested => return Step::Keep,
        JobStatus::Running => next.cancel_requested = true,
        done => return Step::Refuse(format!("the job is {done}: there is nothing to cancel")),
    }
    Step::Write
}

/// The upload arrived (`Queued`) or did not in time (`Expired`).
fn awaited(next: &mut JobRecord, to: JobStatus) -> Step {
    if next.status != JobStatus::AwaitingUpload {
        return Step::Keep;
    }
    next.status = to;
    Step::Write
}

fn notified(next: &mut JobRecord) -> Step {
    if !next.notify_pending {
        return Step::Keep;
    }
    next.notify_pending = false;
    Step::Write
}

/// A finished job runs again as a new run; the earlier run's outputs stay the job's until the
/// new run records its own.
fn retry(next: &mut JobRecord) -> Step {
    let status = next.status;
    if !matches!(
        status,
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
    ) {
        return Step::Refuse(format!(
            "the job is {status}: only a succeeded, failed or canceled job can be retried"
        ));
    }
    next.runs.push(RunSummary {
        run: next.run,
        status,
        error: next.error.clone(),
        manifest_key: next.manifest_key.clone(),
        ended_ms: next.updated_ms,
    });
    next.run += 1;
    next.attempt = 0;
    next.status = JobStatus::Queued;
    next.stage = None;
    next.percent = 0.0;
    next.error = None;
    next.cancel_requested = false;
    Step::Write
}

/// The metadata, or a note saying where it is when it is too large for the index.
fn bounded(metadata: &serde_json::Value) -> serde_json::Value {
    let size = serde_json::to_vec(metadata).map(|v| v.len()).unwrap_or(0);
    if size <= MAX_METADATA_BYTES {
        metadata.clone()
    } else {
        serde_json::json!({ "_omitted": format!("{size} bytes of metadata: see the manifest") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> Change {
        Change::Started {
            attempt: 1,
            profile: "p".into(),
            sources: vec!["s3://b/k".into()],
            output_bucket: "out".into(),
        }
    }

    fn recorded(status: JobStatus) -> Change {
        Change::Recorded {
            status,
            error: None,
            manifest_key: "m".into(),
            outputs: vec![],
            metadata: serde_json::json!({"exif": {"k": 1}}),
            notified: false,
        }
    }

    fn written(v: Verdict) -> JobRecord {
        match v {
            Verdict::Write(r) => *r,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn a_finished_job_never_goes_back_and_late_reports_change_nothing() {
        let mut r = written(apply(None, &started(), 10));
        r.id = "j".into();
        assert_eq!((r.status, r.rev, r.attempt), (JobStatus::Running, 0, 1));
        let r = written(apply(
            Some(&r),
            &Change::Progress {
                stage: "decode".into(),
                percent: 140.0,
            },
            11,
        ));
        assert_eq!((r.stage.as_deref(), r.percent), (Some("decode"), 100.0));
        let done = written(apply(Some(&r), &recorded(JobStatus::Succeeded), 12));
        assert_eq!(
            (done.status, done.rev, done.updated_ms),
            (JobStatus::Succeeded, 2, 12)
        );
        for late in [
            started(),
            Change::Progress {
                stage: "x".into(),
                percent: 1.0,
            },
            recorded(JobStatus::Failed),
            Change::Retrying { reason: "r".into() },
            Change::DeadLettered { reason: "d".into() },
            Change::Released,
            Change::Canceled,
        ] {
            assert_eq!(apply(Some(&done), &late, 13), Verdict::Keep, "{late:?}");
        }
        assert!(matches!(
            apply(Some(&done), &Change::CancelRequested, 13),
            Verdict::Refuse(_)
        ));
        let again = written(apply(Some(&done), &Change::Retry, 14));
        assert_eq!(
            (again.status, again.percent, again.run),
            (JobStatus::Queued, 0.0, 2)
        );
        assert_eq!(again.runs.len(), 1);
        assert_eq!(again.runs[0].status, JobStatus::Succeeded);
        assert_eq!(
            again.manifest_key, done.manifest_key,
            "the old outputs stay until the new run's"
        );
        assert!(matches!(
            apply(Some(&again), &Change::Retry, 15),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn cancel_is_at_once_when_queued_and_asked_of_the_worker_when_running() {
        let queued = JobRecord::new("j", JobStatus::Queued, "p", vec![], 1);
        assert_eq!(
            written(apply(Some(&queued), &Change::CancelRequested, 2)).status,
            JobStatus::Canceled
        );
        let mut running = queued.clone();
        running.status = JobStatus::Running;
        let asked = written(apply(Some(&running), &Change::CancelRequested, 2));
        assert!(asked.cancel_requested && asked.status == JobStatus::Running);
        assert_eq!(
            apply(Some(&asked), &Change::CancelRequested, 3),
            Verdict::Keep
        );
        let stopped = written(apply(Some(&asked), &Change::Canceled, 4));
        assert!(!stopped.cancel_requested && stopped.status == JobStatus::Canceled);
        // A job that finished before it saw the cancel keeps its result.
        assert_eq!(
            written(apply(Some(&asked), &recorded(JobStatus::Succeeded), 4)).status,
            JobStatus::Succeeded
        );
        assert_eq!(apply(None, &Change::CancelRequested, 1), Verdict::Missing);
    }

    #[test]
    fn uploads_expire_only_while_awaited_and_big_metadata_stays_in_the_manifest() {
        let waiting = JobRecord::new("j", JobStatus::AwaitingUpload, "p", vec![], 1);
        assert_eq!(
            written(apply(Some(&waiting), &Change::Expire, 2)).status,
            JobStatus::Expired
        );
        let queued = written(apply(Some(&waiting), &Change::Uploaded, 2));
        assert_eq!(queued.status, JobStatus::Queued);
        assert_eq!(apply(Some(&queued), &Change::Expire, 3), Verdict::Keep);
        let huge = serde_json::json!({ "flood": "x".repeat(MAX_METADATA_BYTES) });
        let done = written(apply(
            Some(&queued),
            &Change::Recorded {
                status: JobStatus::Succeeded,
                error: None,
                manifest_key: "m".into(),
                outputs: vec![],
                metadata: huge,
                notified: true,
            },
            3,
        ));
        assert!(
            done.metadata["_omitted"]
                .as_str()
                .is_some_and(|s| s.contains("manifest"))
        );
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.name()), Some(s));
        }
    }
}
