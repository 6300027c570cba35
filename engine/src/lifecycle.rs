//! One job's life, the same for every caller — the queue worker, `mediaflow process`, and the
//! job API: fetch the sources into the attempt's scratch directory → run the pipeline → store
//! the outputs → write the manifest (last) → send the notifications. One set of failure rules
//! decides what is recorded:
//!
//! - A **permanent** failure (the input's fault, or a profile's) is recorded: a failure manifest.
//! - A **transient** failure (storage or queue I/O, the machine out of disk, descriptors or
//!   memory, a fail-closed rule that could not decide) records nothing: on a queue the job
//!   runs again, and after the last receive it is dead-lettered with its reason; `process`
//!   (no second attempt) records it as failed.
//! - Nothing is acknowledged that is not durably recorded: if the manifest cannot be written
//!   the outcome is [`Outcome::Unrecorded`], whatever the class of the first failure.
//! - A job can be watched and cancelled through its [`JobControl`]: state changes and progress
//!   go to its observer; a requested cancel (the control's, or by id through
//!   [`Lifecycle::running`]) removes the outputs stored so far; a shutdown's releases the job
//!   for another worker.
//!
//! # Layout
//!
//! - [`events`]: the events of jobs that end without a manifest, and of bad messages.
//! - [`plan`]: from what a message asks for to a [`JobRequest`] (profile, destination, ETags,
//!   job id, output prefix).
//! - [`record`]: storing outputs, the manifest, the notifications of a recorded job.
//! - [`scratch`]: the engine's scratch directory and one directory per attempt.

pub mod events;
pub mod plan;
pub mod record;
pub mod scratch;

use crate::error::{CancelReason, ErrorClass, JobError};
use crate::job::control::{JobControl, JobState};
use crate::manifest::{self, Manifest, Status};
use crate::notify::Notifier;
use crate::pipeline::{Job, JobResult, Processor, Slide, Slideshow};
use crate::storage::{ObjectInfo, Storage, StorageError};
use scratch::Scratch;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Where a source is.
#[derive(Debug, Clone)]
pub enum SourceLocation {
    /// An object, fetched into the attempt's scratch directory, pinned to the source's ETag.
    Object {
        /// Its store.
        storage: Arc<dyn Storage>,
        /// Its key.
        key: String,
        /// What the store said about it when the job was planned (`None`: not there).
        current: Option<ObjectInfo>,
    },
    /// A local file, read where it is.
    File(PathBuf),
    /// It could not be looked at (its store cannot be opened, or did not answer).
    Unavailable(Arc<JobError>),
}

/// One source of a job.
#[derive(Debug, Clone)]
pub struct SourceRef {
    /// `s3://bucket/key` or `file:///path`.
    pub uri: String,
    /// The version the job is about (an object's ETag).
    pub etag: String,
    /// Its size, when the message said.
    pub size: Option<u64>,
    /// Where it is.
    pub location: SourceLocation,
}

/// How the manifest is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestWrite {
    /// Only if absent (queues: exactly one delivery records the job; a manifest already there
    /// makes the job a duplicate, acknowledged without work).
    CreateIfAbsent,
    /// Replacing any (`mediaflow process` into an output directory).
    Replace,
}

/// Where a job's outputs and manifest go.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The store.
    pub storage: Arc<dyn Storage>,
    /// Its bucket's name (empty for `mediaflow process`'s output directory).
    pub bucket: String,
    /// Key prefix of every output (empty, or ending in `/`).
    pub prefix: String,
    /// How the manifest is written.
    pub manifest: ManifestWrite,
}

impl Destination {
    /// The manifest's key.
    pub fn manifest_key(&self) -> String {
        format!("{}manifest.json", self.prefix)
    }
}

/// A job ready to run.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// Its id (in the manifest, the events, the logs).
    pub id: String,
    /// Its sources (several: images to video).
    pub sources: Vec<SourceRef>,
    /// The profile.
    pub profile: String,
    /// Where outputs go.
    pub destination: Destination,
}

/// Which attempt at a job this is.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// 1 for the first (a queue message's receive count).
    pub number: u32,
    /// Whether a transient failure may leave the job to run again (a queue); without, every
    /// failure is recorded (`mediaflow process`).
    pub retries: bool,
    /// Whether this is the queue's last receive: a failure now is dead-lettered.
    pub last: bool,
    /// When it began (the message's receive), for the events' `duration_ms`.
    pub started: Instant,
}

impl Attempt {
    /// Receive `receive_count` of a queue message; with `max_receive_count` (the queue's
    /// redrive limit, if it has one) a receive at or past it is the last.
    pub fn queued(receive_count: u32, max_receive_count: Option<u32>) -> Attempt {
        Attempt {
            number: receive_count.max(1),
            retries: true,
            last: max_receive_count.is_some_and(|m| receive_count >= m),
            started: Instant::now(),
        }
    }

    /// The one and only attempt (`mediaflow process`).
    pub fn once() -> Attempt {
        Attempt {
            number: 1,
            retries: false,
            last: true,
            started: Instant::now(),
        }
    }
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// Its manifest was written (`succeeded` or `failed`): acknowledge the message.
    Recorded(Box<Manifest>),
    /// It was recorded before (an earlier delivery, or another worker just now): acknowledge.
    Duplicate,
    /// Nothing durable was written: it must run again (or, after the last receive, be
    /// dead-lettered with this reason).
    Unrecorded(JobError),
    /// It can never be recorded (its destination is unusable): dead-letter it now.
    Unrecordable(JobError),
    /// Stopped on request; the outputs stored so far were removed: acknowledge.
    Canceled,
    /// Stopped by a shutdown: release the message for another worker.
    Released,
}

impl Outcome {
    /// The state an observer sees for it.
    pub fn state(&self, attempt: &Attempt) -> JobState {
        match self {
            Outcome::Recorded(m) => match (&m.status, &m.error) {
                (Status::Succeeded, _) => JobState::Succeeded,
                (Status::Failed, e) => JobState::Failed {
                    code: e.as_ref().map(|e| e.code.clone()).unwrap_or_default(),
                },
            },
            Outcome::Duplicate => JobState::Duplicate,
            // No second attempt (`mediaflow process`): a job left unrecorded failed.
            Outcome::Unrecorded(e) if !attempt.retries => JobState::Failed {
                code: e.code().to_string(),
            },
            Outcome::Unrecorded(e) if !attempt.last => JobState::Retrying {
                reason: e.to_string(),
            },
            Outcome::Unrecorded(e) | Outcome::Unrecordable(e) => JobState::DeadLettered {
                reason: e.to_string(),
            },
            Outcome::Canceled => JobState::Canceled,
            Outcome::Released => JobState::Released,
        }
    }
}

/// The jobs running now, by id: where a cancel request finds them, and where the job time
/// limit is kept ([`Running::enforce`]).
#[derive(Debug, Default)]
pub struct Running {
    jobs: std::sync::Mutex<Vec<Entry>>,
    next: std::sync::atomic::AtomicU64,
}

/// One running attempt.
#[derive(Debug)]
struct Entry {
    serial: u64,
    control: JobControl,
    started: std::time::Instant,
    /// When it was told it ran out of time.
    timed_out: Option<std::time::Instant>,
}

/// A job that did not stop after it was told it ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// The job.
    pub job_id: String,
    /// How long it has run.
    pub running: std::time::Duration,
}

impl Running {
    /// Ask every running attempt of `job_id` to stop (their partial outputs are removed);
    /// `false` when none runs here.
    pub fn cancel(&self, job_id: &str) -> bool {
        let jobs = self.lock();
        let found: Vec<&JobControl> = jobs
            .iter()
            .map(|e| &e.control)
            .filter(|c| c.job_id() == job_id)
            .collect();
        found.iter().for_each(|c| c.cancel());
        !found.is_empty()
    }

    /// The ids of the jobs running now.
    pub fn ids(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|e| e.control.job_id().to_string())
            .collect()
    }

    /// The time limit at `now`: every attempt running longer than `limit` is told to stop (it
    /// is recorded as failed, `timed_out`); those still running `grace` after that are stuck
    /// (in code that never reaches a check) and returned.
    pub fn enforce(
        &self,
        limit: std::time::Duration,
        grace: std::time::Duration,
        now: std::time::Instant,
    ) -> Vec<Stuck> {
        let mut stuck = Vec::new();
        for e in self.lock().iter_mut() {
            let running = now.saturating_duration_since(e.started);
            match e.timed_out {
                None if running > limit => {
                    tracing::warn!(job_id = %e.control.job_id(), limit_s = limit.as_secs(), "the job ran past worker.job_timeout_secs: stopping it");
                    e.control.time_out();
                    e.timed_out = Some(now);
                }
                Some(told) if now.saturating_duration_since(told) > grace => {
                    stuck.push(Stuck {
                        job_id: e.control.job_id().to_string(),
                        running,
                    });
                }
                _ => {}
            }
        }
        stuck
    }

    /// Count `control` as running until the guard is dropped.
    pub(crate) fn enter(&self, control: &JobControl) -> RunningGuard<'_> {
        let serial = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().push(Entry {
            serial,
            control: control.clone(),
            started: std::time::Instant::now(),
            timed_out: None,
        });
        RunningGuard {
            running: self,
            serial,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One running attempt; dropping it ends it.
pub(crate) struct RunningGuard<'a> {
    running: &'a Running,
    serial: u64,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.running.lock().retain(|e| e.serial != self.serial);
    }
}

/// Runs jobs start to finish under one set of failure rules.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    processor: Processor,
    scratch: Arc<Scratch>,
    notifier: Arc<Notifier>,
    running: Arc<Running>,
}

impl Lifecycle {
    /// Jobs run by `processor`, their temporary files in `scratch`, their events through
    /// `notifier`.
    pub fn new(processor: Processor, scratch: Arc<Scratch>, notifier: Arc<Notifier>) -> Self {
        Self {
            processor,
            scratch,
            notifier,
            running: Arc::default(),
        }
    }

    /// The jobs running now (to cancel one by id).
    pub fn running(&self) -> &Running {
        &self.running
    }

    /// The jobs running now, shared (for a task that cancels them by id).
    pub fn running_shared(&self) -> Arc<Running> {
        self.running.clone()
    }

    /// The job runner.
    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    /// The notifier events go through.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// The engine's scratch directory.
    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    /// Run one attempt at `job`. Every line it logs is in a `job` span (id, source, profile).
    pub fn run(&self, job: &JobRequest, attempt: &Attempt, control: &JobControl) -> Outcome {
        let first = job.sources.first().map(|s| s.uri.as_str()).unwrap_or("");
        let span = if job.sources.len() > 1 {
            tracing::info_span!("job", job_id = %job.id, source = %first, sources = job.sources.len(), profile = %job.profile)
        } else {
            tracing::info_span!("job", job_id = %job.id, source = %first, profile = %job.profile)
        };
        let _in_job = span.enter();
        let _running = self.running.enter(control);
        control.state(&JobState::Running {
            attempt: attempt.number,
        });
        let outcome = self.attempt(job, attempt, control);
        if let Outcome::Unrecorded(e) | Outcome::Unrecordable(e) = &outcome {
            events::unrecorded(&self.notifier, job, attempt, e);
        }
        control.state(&outcome.state(attempt));
        outcome
    }

    fn attempt(&self, job: &JobRequest, attempt: &Attempt, control: &JobControl) -> Outcome {
        let started = Instant::now();
        let dest = &job.destination;
        if dest.manifest == ManifestWrite::CreateIfAbsent {
            match dest.storage.head(&dest.manifest_key()) {
                Ok(Some(_)) => {
                    tracing::info!(
                        "already processed (manifest exists): acknowledged without work"
                    );
                    crate::telemetry::metrics::job_duplicate(&job.profile);
                    return Outcome::Duplicate;
                }
                Ok(None) => {}
                Err(e) => return self.failed(job, attempt, e.into(), None),
            }
        }
        let dir = match self.scratch.attempt(&job.id) {
            Ok(d) => d,
            Err(e) => return self.failed(job, attempt, JobError::io("scratch space", e), None),
        };
        let control = control.with_scratch(dir.path());
        let fetch_started = Instant::now();
        control.progress("fetch", 0.0);
        let paths = match fetch(job, dir.path(), &control.within(0.0, 5.0)) {
            Ok(p) => p,
            Err(e) => return self.failed(job, attempt, e, None),
        };
        let fetch_ms = fetch_started.elapsed().as_secs_f64() * 1e3;
        let result = self.pipeline(job, &paths, &control.within(5.0, 90.0));
        record::finish(
            self,
            job,
            attempt,
            &control.within(90.0, 100.0),
            result,
            started,
            fetch_ms,
        )
    }

    /// Run the pipeline on the fetched sources.
    fn pipeline(&self, job: &JobRequest, paths: &[PathBuf], control: &JobControl) -> JobResult {
        if let (1, [path]) = (job.sources.len(), paths) {
            let source = &job.sources[0];
            return self.processor.run(&Job {
                id: job.id.clone(),
                source_uri: source.uri.clone(),
                path,
                etag: source.etag.clone(),
                profile: job.profile.clone(),
                control,
            });
        }
        let slides = job
            .sources
            .iter()
            .zip(paths)
            .map(|(s, path)| Slide {
                uri: s.uri.clone(),
                etag: s.etag.clone(),
                path,
            })
            .collect();
        self.processor.run_slideshow(&Slideshow {
            id: job.id.clone(),
            slides,
            profile: job.profile.clone(),
            control,
        })
    }

    /// The attempt failed with `error` (`partial`: what the pipeline learned before): by the
    /// rules, record a failure manifest, leave the job unrecorded, or stop it.
    fn failed(
        &self,
        job: &JobRequest,
        attempt: &Attempt,
        error: JobError,
        partial: Option<Manifest>,
    ) -> Outcome {
        match &error {
            JobError::Canceled(CancelReason::Shutdown) => return Outcome::Released,
            JobError::Canceled(CancelReason::Requested) => {
                // Stopped before anything was stored: nothing to remove.
                tracing::info!("canceled on request");
                return Outcome::Canceled;
            }
            _ => {}
        }
        if error.class() == ErrorClass::Transient
            && attempt.retries
            && !(attempt.last && error.blames_input_when_repeated())
        {
            return Outcome::Unrecorded(error);
        }
        let manifest = record::failure_manifest(job, &error, partial);
        tracing::warn!(error_code = error.code(), %error, "job failed");
        record::write(self, job, attempt, manifest)
    }
}

/// Copy every object source into `dir` (pinned to its ETag) and give the path of each source.
/// A source that is gone or was replaced since the message named it fails permanently: the
/// message can never be processed as it was meant.
fn fetch(job: &JobRequest, dir: &Path, control: &JobControl) -> Result<Vec<PathBuf>, JobError> {
    let mut paths = Vec::with_capacity(job.sources.len());
    for (i, source) in job.sources.iter().enumerate() {
        control.check()?;
        control.progress("fetch", i as f64 / job.sources.len() as f64);
        let path = match &source.location {
            SourceLocation::File(path) => path.clone(),
            SourceLocation::Unavailable(e) => return Err(clone_error(e)),
            SourceLocation::Object {
                storage,
                key,
                current,
            } => {
                let message = match current {
                    None => Some(format!("source {} does not exist", source.uri)),
                    Some(c) if c.etag != source.etag => Some(format!(
                        "stale event: {} was replaced (event ETag {}, now {})",
                        source.uri, source.etag, c.etag
                    )),
                    Some(_) => None,
                };
                if let Some(message) = message {
                    return Err(JobError::Storage {
                        message,
                        class: ErrorClass::Permanent,
                    });
                }
                let dest = dir.join(format!("source-{i}"));
                storage
                    .get_to_file(key, &dest, Some(&source.etag))
                    .map_err(|e| match e {
                        // Local disk errors while copying name the machine, not the input.
                        StorageError::Failed { message, .. }
                            if crate::error::exhaustion_in(&message) =>
                        {
                            JobError::Storage {
                                message,
                                class: ErrorClass::Transient,
                            }
                        }
                        e => e.into(),
                    })?;
                dest
            }
        };
        paths.push(path);
    }
    Ok(paths)
}

/// A copy of a planning error (the request may be run more than once), its text unchanged.
fn clone_error(e: &JobError) -> JobError {
    JobError::Storage {
        message: match e {
            JobError::Storage { message, .. } => message.clone(),
            other => other.to_string(),
        },
        class: e.class(),
    }
}

/// What a manifest's `source` says about a source the pipeline never read.
fn unread_source(s: &SourceRef) -> manifest::Source {
    manifest::Source {
        uri: s.uri.clone(),
        etag: s.etag.clone(),
        bytes: s.size.unwrap_or(0),
        sha256: String::new(),
        media: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::plugin::catalog::Catalog;
    use crate::storage::{FsStorage, ObjectInfo};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A store whose disk is full while `full` is set: every write fails with ENOSPC.
    #[derive(Debug)]
    struct NearlyFull {
        inner: FsStorage,
        full: AtomicBool,
        /// Only the manifest's write fails (the outputs fit).
        manifest_only: AtomicBool,
    }

    impl NearlyFull {
        fn refuse(&self, key: &str) -> Result<(), StorageError> {
            let manifest = key.ends_with("manifest.json");
            if self.full.load(Ordering::SeqCst)
                && (manifest || !self.manifest_only.load(Ordering::SeqCst))
            {
                let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
                return Err(StorageError::Failed {
                    message: format!("writing {key}: {e}"),
                    class: crate::error::io_class(&e),
                });
            }
            Ok(())
        }
    }

    impl Storage for NearlyFull {
        fn put(&self, key: &str, data: &[u8], ct: &str) -> Result<ObjectInfo, StorageError> {
            self.refuse(key)?;
            self.inner.put(key, data, ct)
        }
        fn put_if_absent(
            &self,
            key: &str,
            data: &[u8],
            ct: &str,
        ) -> Result<Option<ObjectInfo>, StorageError> {
            self.refuse(key)?;
            self.inner.put_if_absent(key, data, ct)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
            self.inner.get(key)
        }
        fn get_to_file(
            &self,
            key: &str,
            dest: &Path,
            etag: Option<&str>,
        ) -> Result<ObjectInfo, StorageError> {
            self.inner.get_to_file(key, dest, etag)
        }
        fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.inner.delete(key)
        }
        fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
            self.inner.head(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<(String, ObjectInfo)>, StorageError> {
            self.inner.list(prefix)
        }
        fn uri(&self, key: &str) -> String {
            self.inner.uri(key)
        }
    }

    /// A lifecycle with no plugins for `config`, its scratch under `dir`; the notifier runs
    /// on `runtime`.
    fn lifecycle(
        config: Config,
        dir: &Path,
        runtime: &tokio::runtime::Runtime,
    ) -> (Lifecycle, Arc<Scratch>, Arc<Notifier>) {
        let catalog = Arc::new(Catalog::default());
        let notifier = Arc::new(
            runtime
                .block_on(Notifier::start(&config.notify, catalog.clone()))
                .expect("notifier"),
        );
        let scratch = Arc::new(Scratch::open(&dir.join("scratch")).expect("scratch"));
        let lifecycle = Lifecycle::new(
            Processor::new(Arc::new(config), catalog),
            scratch.clone(),
            notifier.clone(),
        );
        (lifecycle, scratch, notifier)
    }

    /// The job of `source` into `storage` under `prefix`.
    fn job_of(
        source: PathBuf,
        profile: &str,
        storage: Arc<dyn Storage>,
        prefix: &str,
    ) -> JobRequest {
        JobRequest {
            id: "cat".into(),
            sources: vec![SourceRef {
                uri: "file:///cat.png".into(),
                etag: "e1".into(),
                size: None,
                location: SourceLocation::File(source),
            }],
            profile: profile.into(),
            destination: Destination {
                storage,
                bucket: "out".into(),
                prefix: prefix.into(),
                manifest: ManifestWrite::CreateIfAbsent,
            },
        }
    }

    fn png() -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_fn(32, 24, |x, y| image::Rgb([x as u8 * 8, y as u8 * 10, 90]))
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    }

    #[test]
    fn a_full_disk_leaves_the_job_unrecorded_never_failed_and_the_retry_records_it_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let source = dir.path().join("cat.png");
        std::fs::write(&source, png()).expect("source");
        let config = Config::from_sources(
            Some((
                "t.toml",
                "default_profile = \"p\"\n[profiles.p]\nrenditions = [{ name = \"s\", width = 16, format = \"png\" }]\n",
            )),
            &[],
        )
        .expect("config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (lifecycle, scratch, notifier) = lifecycle(config, dir.path(), &runtime);
        let out = Arc::new(NearlyFull {
            inner: FsStorage::new(dir.path().join("out")).expect("out"),
            full: AtomicBool::new(true),
            manifest_only: AtomicBool::new(false),
        });
        let job = job_of(source, "p", out.clone(), "p/cat.png/e1/");
        let control = JobControl::detached("cat");
        let run = |number| lifecycle.run(&job, &Attempt::queued(number, Some(5)), &control);

        // The outputs do not fit: transient, nothing recorded (the old rules wrote a `failed`
        // manifest — or, that failing too, deleted the message with no trace).
        let outcome = run(1);
        assert!(
            matches!(&outcome, Outcome::Unrecorded(e) if e.class() == ErrorClass::Transient && e.to_string().contains("No space left")),
            "{outcome:?}"
        );
        // The outputs fit but the manifest does not: still unrecorded, never acknowledged.
        out.manifest_only.store(true, Ordering::SeqCst);
        assert!(matches!(run(2), Outcome::Unrecorded(_)));
        assert!(
            out.head("p/cat.png/e1/manifest.json")
                .expect("head")
                .is_none()
        );
        assert_eq!(scratch.leftovers(), 0, "every attempt cleans its scratch");

        // Space again: recorded once, succeeded; a redelivery is a duplicate.
        out.full.store(false, Ordering::SeqCst);
        assert!(
            matches!(run(3), Outcome::Recorded(m) if m.status == Status::Succeeded),
            "recorded"
        );
        assert!(matches!(run(4), Outcome::Duplicate));
        runtime.block_on(notifier.shutdown());
        let log = notifier.counters().snapshot();
        assert_eq!(
            log.sink("log").map(|s| s.delivered),
            Some(1),
            "one `succeeded` event and no `failed` one: {log:?}"
        );
    }

    #[test]
    fn a_canceled_job_stops_at_its_next_check_and_a_shutdown_releases_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let source = dir.path().join("cat.png");
        std::fs::write(&source, png()).expect("source");
        let config = Config::from_sources(None, &[]).expect("config");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (lifecycle, _, _) = lifecycle(config, dir.path(), &runtime);
        let out: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path().join("out")).expect("out"));
        let job = job_of(source, "default", out.clone(), "cat/");
        let stop = crate::shutdown::CancellationToken::new();
        let control = JobControl::new(
            "cat",
            stop.clone(),
            Arc::new(crate::job::control::Unobserved),
        );
        control.cancel();
        assert!(matches!(
            lifecycle.run(&job, &Attempt::queued(1, None), &control),
            Outcome::Canceled
        ));
        let control = JobControl::new(
            "cat",
            stop.clone(),
            Arc::new(crate::job::control::Unobserved),
        );
        stop.cancel();
        assert!(matches!(
            lifecycle.run(&job, &Attempt::queued(1, None), &control),
            Outcome::Released
        ));
        assert!(out.list("").expect("list").is_empty(), "nothing stored");
        assert!(
            lifecycle.running().ids().is_empty(),
            "nothing runs any more"
        );
    }

    #[test]
    fn a_running_job_is_found_by_id_and_canceled() {
        let running = Running::default();
        let (a, b) = (JobControl::detached("a"), JobControl::detached("b"));
        let guard = running.enter(&a);
        let _b = running.enter(&b);
        assert!(running.cancel("a") && !running.cancel("c"));
        assert!(a.check().is_err() && b.check().is_ok());
        drop(guard);
        assert_eq!(running.ids(), ["b"]);
    }

    #[test]
    fn jobs_past_the_time_limit_are_told_to_stop_then_reported_stuck() {
        use std::time::{Duration, Instant};
        let running = Running::default();
        let at = Instant::now();
        let (a, b) = (JobControl::detached("a"), JobControl::detached("b"));
        let (ga, _gb) = (running.enter(&a), running.enter(&b));
        let (limit, grace) = (Duration::from_secs(60), Duration::from_secs(30));
        // In time: left alone.
        assert!(
            running
                .enforce(limit, grace, at + Duration::from_secs(59))
                .is_empty()
        );
        assert_eq!((a.canceled(), b.canceled()), (None, None));
        // Past the limit: told to stop, not stuck yet.
        assert!(
            running
                .enforce(limit, grace, at + Duration::from_secs(61))
                .is_empty()
        );
        assert_eq!(a.canceled(), Some(CancelReason::TimedOut));
        assert_eq!(b.canceled(), Some(CancelReason::TimedOut));
        assert!(
            running
                .enforce(limit, grace, at + Duration::from_secs(90))
                .is_empty()
        );
        // Still running past the grace after being told: stuck.
        let stuck = running.enforce(limit, grace, at + Duration::from_secs(92));
        let ids: Vec<&str> = stuck.iter().map(|s| s.job_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(stuck[0].running >= Duration::from_secs(91), "{stuck:?}");
        // One ends: only the other is left.
        drop(ga);
        let stuck = running.enforce(limit, grace, at + Duration::from_secs(93));
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].job_id, "b");
        let e = JobError::Canceled(CancelReason::TimedOut);
        assert_eq!((e.code(), e.class()), ("timed_out", ErrorClass::Permanent));
        assert!(e.to_string().contains("job_timeout_secs"), "{e}");
    }
}
