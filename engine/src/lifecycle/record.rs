//! Recording a job: its outputs stored under the destination prefix, then its manifest (last:
//! it marks the job complete), then its notifications. The rules run before the manifest is
//! written, so a fail-closed rule that cannot decide leaves the job unrecorded; only the
//! delivery that writes the manifest sends the job's notifications.

use super::{Attempt, JobRequest, Lifecycle, ManifestWrite, Outcome, unread_source};
use crate::error::{CancelReason, ErrorClass, JobError};
use crate::job::control::JobControl;
use crate::manifest::{self, Manifest, Status};
use crate::notify::Event;
use crate::pipeline::JobResult;
use crate::telemetry::metrics;
use std::time::Instant;

/// After the pipeline: store the outputs and write the manifest, or fail by the rules.
pub(super) fn finish(
    lifecycle: &Lifecycle,
    job: &JobRequest,
    attempt: &Attempt,
    control: &JobControl,
    mut result: JobResult,
    started: Instant,
    fetch_ms: f64,
) -> Outcome {
    if let Some(error) = result.error.take() {
        return lifecycle.failed(job, attempt, error, Some(result.manifest));
    }
    let dest = &job.destination;
    let upload_started = Instant::now();
    let mut stored = Vec::with_capacity(result.files.len());
    let count = result.files.len().max(1) as f64;
    for (i, f) in result.files.iter_mut().enumerate() {
        control.progress("upload", i as f64 / count);
        if let Err(e) = control.check() {
            return stopped(lifecycle, job, attempt, &stored, e, result.manifest);
        }
        let key = format!("{}{}", dest.prefix, f.key);
        match f.store(&*dest.storage, &key) {
            Ok(_) => f.record.uri = dest.storage.uri(&key),
            Err(e) => return lifecycle.failed(job, attempt, e.into(), Some(result.manifest)),
        }
        stored.push(key);
    }
    control.progress("upload", 1.0);
    let mut m = result.manifest;
    m.outputs = result.files.iter().map(|f| f.record.clone()).collect();
    let timings = &mut m.timings_ms;
    timings.insert("fetch".into(), fetch_ms);
    timings.insert(
        "upload".into(),
        upload_started.elapsed().as_secs_f64() * 1e3,
    );
    timings.insert("total".into(), started.elapsed().as_secs_f64() * 1e3);
    write(lifecycle, job, attempt, m)
}

/// Canceled, timed out or shut down while storing outputs.
fn stopped(
    lifecycle: &Lifecycle,
    job: &JobRequest,
    attempt: &Attempt,
    stored: &[String],
    e: JobError,
    partial: Manifest,
) -> Outcome {
    match e {
        JobError::Canceled(CancelReason::Requested) => {
            remove_outputs(job, stored);
            tracing::info!(
                removed = stored.len(),
                "canceled on request: outputs stored so far removed"
            );
            Outcome::Canceled
        }
        JobError::Canceled(CancelReason::TimedOut) => {
            remove_outputs(job, stored);
            lifecycle.failed(job, attempt, e, Some(partial))
        }
        _ => Outcome::Released,
    }
}

/// Remove the outputs stored at `keys` (a canceled job leaves none behind).
fn remove_outputs(job: &JobRequest, keys: &[String]) {
    for key in keys {
        if let Err(e) = job.destination.storage.delete(key) {
            tracing::warn!(%key, error = %e, "could not remove a canceled job's output");
        }
    }
}

/// The failure manifest for `error`: what the pipeline learned (`partial`), no outputs.
pub fn failure_manifest(job: &JobRequest, error: &JobError, partial: Option<Manifest>) -> Manifest {
    let mut m = partial.unwrap_or_else(|| Manifest {
        schema: manifest::SCHEMA,
        job_id: job.id.clone(),
        status: Status::Failed,
        source: job.sources.first().map(unread_source).unwrap_or_default(),
        sources: if job.sources.len() > 1 {
            job.sources.iter().map(unread_source).collect()
        } else {
            Vec::new()
        },
        profile: job.profile.clone(),
        outputs: Vec::new(),
        metadata: Default::default(),
        plugins: Vec::new(),
        error: None,
        timings_ms: Default::default(),
        notes: Vec::new(),
    });
    m.status = Status::Failed;
    m.error = Some(error.into());
    m.outputs.clear();
    m
}

/// Write the manifest, last; then send the job's notifications. The rules run first: a
/// fail-closed rule that fails leaves the job unrecorded (on a queue, to be retried). A
/// manifest that cannot be written leaves the job unrecorded, whatever went wrong before.
pub(super) fn write(
    lifecycle: &Lifecycle,
    job: &JobRequest,
    attempt: &Attempt,
    m: Manifest,
) -> Outcome {
    let body = m.to_json();
    let event = Event::from_manifest(&m)
        .identified_by(&body)
        .at(attempt.number, attempt.started.elapsed());
    let mut pending = lifecycle.notifier.evaluate(&event);
    if let Some(failure) = pending.take_fail_closed()
        && attempt.retries
    {
        // `mediaflow process` has no retry: there the failure is only logged and counted.
        return Outcome::Unrecorded(failure.into());
    }
    let dest = &job.destination;
    let key = dest.manifest_key();
    let written = match dest.manifest {
        ManifestWrite::CreateIfAbsent => {
            dest.storage.put_if_absent(&key, &body, "application/json")
        }
        ManifestWrite::Replace => dest.storage.put(&key, &body, "application/json").map(Some),
    };
    match written {
        Ok(Some(_)) => {
            tracing::info!(status = %m.status, manifest = %dest.storage.uri(&key), "job recorded");
            metrics::job_recorded(&m);
            crate::telemetry::emf::job_recorded(&m);
            pending.send();
            Outcome::Recorded(Box::new(m))
        }
        Ok(None) => {
            tracing::info!("another worker recorded this job first");
            metrics::job_recorded(&m);
            Outcome::Duplicate
        }
        Err(e) => {
            tracing::warn!(error = %e, manifest = %dest.storage.uri(&key), "the manifest could not be written: the job is not recorded");
            Outcome::Unrecorded(JobError::Storage {
                message: format!("writing the manifest: {e}"),
                class: ErrorClass::Transient,
            })
        }
    }
}
