//! What the worker tells the index about the jobs it runs: each attempt's start (a plain
//! upload's job is created then), its progress (at most one write per job per
//! `api.progress_interval_ms`), how it ended; and, the other way, which of its running jobs
//! were asked to stop (checked every second) and which queued ones were canceled before they
//! ran. The index is for watching: when it cannot be written the job goes on (its manifest is
//! the record) and the failure is logged.
//!
//! It is also the notifications' outbox: a recorded job is marked `notify_pending` in the same
//! write that records it, cleared when its notifier confirms every delivery ended; a worker
//! finds the jobs still pending `notify.outbox_redeliver_secs` after they were recorded (their
//! worker was killed or stopped first) and delivers their event again from the manifest, with
//! the same event id.

use super::{
    Change, IndexError, JobIndex, JobStatus, now_ms, record::OutputRef, record::RecordError,
};
use crate::job::JobSpec;
use crate::job::control::{Observer, Progress};
use crate::lifecycle::plan::Planner;
use crate::lifecycle::{Attempt, JobRequest, Outcome, Running};
use crate::manifest::{Manifest, Status};
use crate::notify::notifier::Outbox;
use crate::notify::{Event, Notifier};
use crate::shutdown::CancellationToken;
use crate::storage::Buckets;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The worker's writer to the index.
#[derive(Debug)]
pub struct Follow {
    index: Arc<dyn JobIndex>,
    interval: Duration,
    /// When each job's progress was last written.
    last: Mutex<HashMap<String, Instant>>,
    /// Jobs started here and not finished yet.
    running: Mutex<HashSet<String>>,
    /// Jobs whose notifications this process delivered before (or while) their record was
    /// written: they are recorded with nothing pending.
    confirmed: Arc<Mutex<HashSet<String>>>,
}

/// Whether to run a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Run it.
    Run,
    /// It was canceled (or its upload expired) before it ran: acknowledge without work.
    Skip(JobStatus),
}

impl Follow {
    /// Write to `index`, progress at most every `interval` per job.
    pub fn new(index: Arc<dyn JobIndex>, interval: Duration) -> Follow {
        Follow {
            index,
            interval,
            last: Mutex::new(HashMap::new()),
            running: Mutex::default(),
            confirmed: Arc::default(),
        }
    }

    /// The index.
    pub fn index(&self) -> &Arc<dyn JobIndex> {
        &self.index
    }

    /// `spec` as the index knows it: an upload the API created runs as that job (its id, and
    /// the profile it was created with).
    pub fn adopt(&self, spec: &JobSpec, planner: &Planner) -> JobSpec {
        let mut spec = spec.clone();
        if spec.id.is_some() {
            return spec;
        }
        let Some(id) = planner.upload_id(&spec) else {
            return spec;
        };
        match self.index.get(&id) {
            Ok(Some(record)) => {
                spec.profile.get_or_insert(record.profile);
            }
            Ok(None) => {}
            Err(e) => warn(&id, &e),
        }
        spec.id = Some(id);
        spec
    }

    /// An attempt at `job` is about to run: record it, unless the job was canceled while it
    /// waited (then it is skipped).
    pub fn start(&self, job: &JobRequest, attempt: &Attempt) -> Gate {
        let change = Change::Started {
            attempt: attempt.number,
            profile: job.profile.clone(),
            sources: job.sources.iter().map(|s| s.uri.clone()).collect(),
            output_bucket: job.destination.bucket.clone(),
        };
        // One read and one write: a canceled or expired job is left as it is (a start does
        // not apply to a finished job) and read back as such.
        match self.index.update(&job.id, &change) {
            Ok(r) if matches!(r.status, JobStatus::Canceled | JobStatus::Expired) => {
                return Gate::Skip(r.status);
            }
            Ok(_) | Err(IndexError::NotFound(_)) => {}
            Err(e) => warn(&job.id, &e),
        }
        // The start said `running`, 0 %: the first progress write can wait an interval (a
        // short job then costs no progress write at all).
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id.clone(), Instant::now());
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id.clone());
        Gate::Run
    }

    /// The attempt at `job` ended with `outcome`.
    pub fn finish(&self, job: &JobRequest, attempt: &Attempt, outcome: &Outcome) {
        self.forget(&job.id);
        let notified = self.confirmed(&job.id);
        let change = match outcome {
            Outcome::Recorded(m) => recorded(job, m, notified),
            // Recorded before — perhaps by a worker stopped before it told the index (its
            // notifications then stay pending for the outbox): the manifest says how it ended.
            Outcome::Duplicate => match recorded_before(job) {
                Some(m) => recorded(job, &m, notified),
                None => return,
            },
            Outcome::Unrecorded(e) if attempt.retries && !attempt.last => Change::Retrying {
                reason: e.to_string(),
            },
            Outcome::Unrecorded(e) | Outcome::Unrecordable(e) => Change::DeadLettered {
                reason: e.to_string(),
            },
            Outcome::Canceled => Change::Canceled,
            Outcome::Released => Change::Released,
        };
        self.write(&job.id, &change);
        // Delivered while the record was being written: confirm it now.
        if self.confirmed(&job.id) {
            self.write(&job.id, &Change::Notified);
        }
    }

    /// Whether this process confirmed `id`'s notifications and has not told the index yet
    /// (taken: asked twice, `false`).
    fn confirmed(&self, id: &str) -> bool {
        self.confirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// Stop the jobs running in `running` that someone asked to cancel, checking every second
    /// until `stop`.
    pub async fn watch_cancels(self: Arc<Self>, running: Arc<Running>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
            let ids = running.ids();
            if ids.is_empty() {
                continue;
            }
            let me = self.clone();
            let running = running.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for id in ids {
                    match me.index.get(&id) {
                        Ok(Some(r)) if r.cancel_requested && running.cancel(&id) => {
                            tracing::info!(job_id = %id, "cancel requested through the API: stopping the job");
                        }
                        Ok(_) => {}
                        Err(e) => warn(&id, &e),
                    }
                }
            })
            .await;
        }
    }

    /// Deliver again, until `stop`, the notifications of recorded jobs still unconfirmed
    /// `after` they were recorded, reading their events from their manifests in `buckets`.
    pub async fn redeliver(
        self: Arc<Self>,
        notifier: Arc<Notifier>,
        buckets: Arc<Buckets>,
        after: Duration,
        stop: CancellationToken,
    ) {
        let every = (after / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let recent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        while !crate::shutdown::sleep_or_cancelled(&stop, every).await {
            let (me, notifier, buckets, recent) = (
                self.clone(),
                notifier.clone(),
                buckets.clone(),
                recent.clone(),
            );
            let _ = tokio::task::spawn_blocking(move || {
                me.redeliver_once(&notifier, &buckets, after, &recent)
            })
            .await;
        }
    }

    fn redeliver_once(
        &self,
        notifier: &Notifier,
        buckets: &Buckets,
        after: Duration,
        recent: &Mutex<HashMap<String, Instant>>,
    ) {
        let jobs = match self.index.outbox(100) {
            Ok(j) => j,
            Err(e) => return warn("(outbox)", &e),
        };
        let due = now_ms() - after.as_millis() as i64;
        for job in jobs.into_iter().filter(|j| j.updated_ms <= due) {
            {
                let mut recent = recent.lock().unwrap_or_else(|e| e.into_inner());
                recent.retain(|_, at| at.elapsed() < after);
                if recent.insert(job.id.clone(), Instant::now()).is_some() {
                    continue;
                }
            }
            let manifest = job.manifest_key.as_deref().and_then(|key| {
                let body = buckets.bucket(&job.output_bucket).ok()?.get(key).ok()?;
                Some((serde_json::from_slice::<Manifest>(&body).ok()?, body))
            });
            let Some((m, stored)) = manifest else {
                tracing::warn!(job_id = %job.id, "outbox: the manifest cannot be read; its notifications are given up");
                self.write(&job.id, &Change::Notified);
                continue;
            };
            let event = Event::from_manifest(&m)
                .identified_by(&stored)
                .at(job.attempt.max(1), Duration::ZERO);
            tracing::info!(job_id = %job.id, event_id = %event.id, "outbox: delivering again the notifications of a recorded job");
            notifier.emit(&event);
        }
    }

    fn write(&self, id: &str, change: &Change) {
        match self.index.update(id, change) {
            Ok(_) | Err(IndexError::NotFound(_)) => {}
            Err(e) => warn(id, &e),
        }
    }

    fn forget(&self, id: &str) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

impl Outbox for Follow {
    fn delivered(&self, job_id: &str) {
        let (index, id) = (self.index.clone(), job_id.to_string());
        let confirmed = self.confirmed.clone();
        confirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone());
        // Still running here (a job with no notifications is confirmed as its event is
        // emitted): the write that records it will say so, at no cost of its own.
        if self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
        {
            return;
        }
        let confirm = move || match index.update(&id, &Change::Notified) {
            // Recorded: confirmed in the index. Not yet: the record's write will say so.
            Ok(r) if r.status.is_terminal() && !r.notify_pending => {
                confirmed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            }
            Ok(_) | Err(IndexError::NotFound(_)) => {}
            Err(e) => warn(&id, &e),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(confirm)),
            Err(_) => confirm(),
        }
    }
}

impl Observer for Follow {
    fn progress(&self, job_id: &str, progress: Progress) {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            match last.get(job_id) {
                Some(at) if now.duration_since(*at) < self.interval => return,
                _ => {
                    last.insert(job_id.to_string(), now);
                }
            }
        }
        self.write(
            job_id,
            &Change::Progress {
                stage: progress.stage.to_string(),
                percent: progress.percent,
            },
        );
    }
}

/// The change a written manifest makes.
fn recorded(job: &JobRequest, m: &Manifest, notified: bool) -> Change {
    let dest = &job.destination;
    match recorded_at(m, &dest.storage.uri(""), &dest.manifest_key()) {
        Change::Recorded {
            status,
            error,
            manifest_key,
            outputs,
            metadata,
            ..
        } => Change::Recorded {
            status,
            error,
            manifest_key,
            outputs,
            metadata,
            notified,
        },
        other => other,
    }
}

/// The change manifest `m` makes, read at `manifest_key` of a store whose URIs start with
/// `base` (an output's key is its URI without it).
pub fn recorded_at(m: &Manifest, base: &str, manifest_key: &str) -> Change {
    let outputs = m
        .outputs
        .iter()
        .map(|o| OutputRef {
            name: o.name.clone(),
            kind: o.kind.clone(),
            format: o.format.clone(),
            width: o.width,
            height: o.height,
            bytes: o.bytes,
            key: o.uri.strip_prefix(base).unwrap_or(&o.uri).to_string(),
            codec: o.codec.clone().filter(|_| o.format != "m4s"),
        })
        .collect();
    Change::Recorded {
        status: match m.status {
            Status::Succeeded => JobStatus::Succeeded,
            Status::Failed => JobStatus::Failed,
        },
        error: m.error.as_ref().map(|e| RecordError {
            code: e.code.clone(),
            message: e.message.clone(),
        }),
        manifest_key: manifest_key.to_string(),
        outputs,
        notified: false,
        metadata: serde_json::to_value(&m.metadata).unwrap_or_default(),
    }
}

/// The manifest a job already has.
fn recorded_before(job: &JobRequest) -> Option<Manifest> {
    let dest = &job.destination;
    let body = dest.storage.get(&dest.manifest_key()).ok()?;
    serde_json::from_slice(&body).ok()
}

fn warn(id: &str, e: &IndexError) {
    tracing::warn!(job_id = %id, error = %e, "the job index could not be updated (the job goes on; its manifest is its record)");
}
