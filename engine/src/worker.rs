//! `mediaflow worker`: consume the job queue until SIGTERM/SIGINT. K jobs in flight; CPU work
//! on blocking threads; a heartbeat extends each message's visibility every third of the
//! timeout while its job runs; a message is deleted only after its job is recorded
//! (succeeded, or failed permanently with a failure manifest), in short batches (a stale
//! receipt is logged with the message id, never taken as deleted); transient failures are left to
//! reappear with backoff, and unparseable messages to reach the dead-letter queue. On a signal
//! the worker stops receiving at once, lets in-flight jobs finish within the drain deadline,
//! releases the rest (visibility 0) and exits 0. Each job's lifecycle event (`succeeded`,
//! `failed`, `retrying`, `dead-lettered` on the queue's last receive) goes through
//! [`crate::notify`]: rules run before the manifest is written, delivery in the background.
//!
//! Two backends: SQS + S3 when `worker.queue_url` is set, else local mode (the embedded queue
//! and filesystem buckets under `worker.data_dir`, with SQS/S3 semantics). Output keys are a pure function of (source key,
//! ETag, profile): `<output_prefix><profile>/<source key>/<etag>/…`, the manifest written last
//! with create-if-absent, so redelivery repeats no work and two workers never both win.

use crate::config::{Config, WorkerConfig};
use crate::error::{ErrorClass, JobError};
use crate::job::{self, JobSpec, ObjectRef, Parsed};
use crate::manifest::{self, Manifest, Status};
use crate::notify::{Attempt, Notifier};
use crate::pipeline::{Job, Processor};
use crate::process::Engine;
use crate::queue::Queue;
use crate::queue::batch::{BatchDeleter, DEFAULT_LINGER};
use crate::queue::local::LocalQueue;
use crate::queue::metered::Metered;
use crate::queue::sqs::SqsQueue;
use crate::queue::{QueueError, Received};
use crate::storage::s3::Multipart;
use crate::storage::{FsStorage, S3Storage, Storage};
use crate::telemetry::{health, metrics};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

/// Problems that stop the worker from starting or running (exit code 2 or 1).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Setting up (config, plugins).
    #[error(transparent)]
    Setup(#[from] crate::process::SetupError),
    /// The queue cannot be used.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Storage cannot be used.
    #[error("storage: {0}")]
    Storage(String),
    /// The command does not apply to this configuration.
    #[error("{0}")]
    Usage(String),
    /// The ops listener could not start.
    #[error(transparent)]
    Ops(#[from] crate::telemetry::OpsError),
}

/// Where buckets live: directories under `data_dir/buckets/` (local mode) or S3.
#[derive(Debug)]
pub enum Buckets {
    /// Filesystem buckets.
    Local {
        /// `data_dir/buckets`.
        root: PathBuf,
        /// Opened buckets.
        open: Mutex<HashMap<String, Arc<dyn Storage>>>,
    },
    /// S3 buckets.
    S3 {
        /// The client.
        client: aws_sdk_s3::Client,
        /// The runtime SDK calls block on.
        runtime: tokio::runtime::Handle,
        /// When outputs go up in parts.
        multipart: Multipart,
    },
}

impl Buckets {
    /// Filesystem buckets under `data_dir`.
    pub fn local(data_dir: &Path) -> Self {
        Buckets::Local {
            root: data_dir.join("buckets"),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The store for `bucket`.
    pub fn bucket(&self, bucket: &str) -> Result<Arc<dyn Storage>, JobError> {
        if crate::storage::validate_key(bucket).is_err() || bucket.contains('/') {
            return Err(JobError::Storage {
                message: format!("invalid bucket name {bucket:?}"),
                class: ErrorClass::Permanent,
            });
        }
        match self {
            Buckets::S3 {
                client,
                runtime,
                multipart,
            } => Ok(Arc::new(
                S3Storage::new(client.clone(), bucket, runtime.clone()).with_multipart(*multipart),
            )),
            Buckets::Local { root, open } => {
                let mut open = open.lock().map_err(|_| JobError::Storage {
                    message: "bucket table poisoned".into(),
                    class: ErrorClass::Transient,
                })?;
                if let Some(s) = open.get(bucket) {
                    return Ok(s.clone());
                }
                let s: Arc<dyn Storage> = Arc::new(FsStorage::new(root.join(bucket))?);
                open.insert(bucket.to_string(), s.clone());
                Ok(s)
            }
        }
    }
}

/// Open the local queue of `w`.
pub fn local_queue(w: &WorkerConfig) -> Result<LocalQueue, QueueError> {
    LocalQueue::open(&w.data_dir.join("queue.db"), w.max_receive_count)
}

/// `mediaflow submit`: put each file into the source bucket and enqueue an S3-style
/// `ObjectCreated:Put` event for it. Returns (key, message id) per file.
pub fn submit(config: &Config, files: &[PathBuf]) -> Result<Vec<(String, String)>, WorkerError> {
    let w = &config.worker;
    if let Some(url) = &w.queue_url {
        return Err(WorkerError::Usage(format!(
            "submit is for local mode; this configuration consumes {url}: upload to the source bucket instead \
             (its S3 notification enqueues the job)"
        )));
    }
    let queue = local_queue(w)?;
    let buckets = Buckets::local(&w.data_dir);
    let store = buckets
        .bucket(&w.source_bucket)
        .map_err(|e| WorkerError::Storage(e.to_string()))?;
    let mut out = Vec::new();
    for file in files {
        let data = std::fs::read(file)
            .map_err(|e| WorkerError::Storage(format!("reading {}: {e}", file.display())))?;
        let key = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = store
            .put(&key, &data, "application/octet-stream")
            .map_err(|e| WorkerError::Storage(e.to_string()))?;
        let event = s3_event(&w.source_bucket, &key, info.bytes, &info.etag);
        let id = queue.send(&event)?;
        out.push((key, id));
    }
    Ok(out)
}

/// An S3 `ObjectCreated:Put` notification, key URL-encoded as S3 encodes it.
pub fn s3_event(bucket: &str, key: &str, size: u64, etag: &str) -> String {
    serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": { "name": bucket },
                "object": { "key": url_encode_key(key), "size": size, "eTag": etag }
            }
        }]
    })
    .to_string()
}

/// Encode a key as S3 event notifications do: space as `+`, reserved bytes as `%XX`.
pub fn url_encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// How one message ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Recorded (succeeded, or failed permanently with a manifest), or nothing to do: delete.
    Done,
    /// A passing failure: leave it to reappear after a backoff.
    Retry(String),
    /// Not a message we accept: leave it for the dead-letter queue.
    Poison(String),
}

/// Run the worker until SIGTERM/SIGINT.
pub fn run(config_path: Option<&Path>) -> Result<(), WorkerError> {
    let config =
        crate::config::Config::load(config_path).map_err(crate::process::SetupError::from)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| WorkerError::Storage(format!("starting runtime: {e}")))?;
    // The ops listener first: /healthz answers while plugins compile, /readyz says why not yet.
    let ops = runtime.block_on(crate::telemetry::Ops::start(&config.ops))?;
    let mut engine = Engine::with_config(config)?;
    engine.poll_registry();
    ops.health.set_plugins_loaded();
    let result = runtime.block_on(async move {
        let result = run_async(engine, &ops).await;
        ops.shutdown().await;
        result
    });
    // Past the drain deadline a receive may still be open on a blocking thread: don't wait.
    runtime.shutdown_background();
    result
}

async fn run_async(engine: Engine, ops: &crate::telemetry::Ops) -> Result<(), WorkerError> {
    let processor = engine.processor.clone();
    let w = processor.config().worker.clone();
    // Which receive is the last (for `dead-lettered` events): on SQS, the queue's redrive.
    let mut max_receive = Some(w.max_receive_count);
    let (queue, buckets, mode): (Arc<dyn Queue>, Arc<Buckets>, &str) = match &w.queue_url {
        Some(url) => {
            let aws = crate::aws::Clients::load(w.s3_path_style).await;
            ops.health.set_backend(health::Backend::Aws {
                sqs: aws.sqs.clone(),
                s3: aws.s3.clone(),
                queue_url: url.clone(),
                output_bucket: w.output_bucket.clone(),
            });
            let runtime = tokio::runtime::Handle::current();
            let queue = SqsQueue::new(aws.sqs, url.clone(), runtime.clone())
                .with_wait(Duration::from_secs(w.receive_wait_secs));
            max_receive = redrive_limit(&queue, &w).await;
            (
                Arc::new(queue),
                Arc::new(Buckets::S3 {
                    client: aws.s3,
                    runtime,
                    multipart: Multipart {
                        threshold_bytes: w.s3_multipart_threshold_bytes,
                        part_bytes: w.s3_part_bytes,
                    },
                }),
                "sqs",
            )
        }
        None => {
            ops.health.set_backend(health::Backend::Local {
                queue: Arc::new(local_queue(&w)?),
                data_dir: w.data_dir.clone(),
            });
            (
                Arc::new(local_queue(&w)?),
                Arc::new(Buckets::local(&w.data_dir)),
                "local",
            )
        }
    };
    let queue: Arc<dyn Queue> = Arc::new(Metered::new(queue));
    let notifier = Arc::new(
        Notifier::start(&processor.config().notify, processor.catalog_source())
            .await
            .map_err(crate::process::SetupError::from)?,
    );
    let k = if w.concurrency == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        w.concurrency
    };
    let visibility = Duration::from_secs(w.visibility_timeout_secs);
    let (stop_tx, stop_rx) = watch::channel(false);
    let health = ops.health.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        health.set_draining();
        tracing::info!("shutdown requested: no new receives; draining in-flight jobs");
        let _ = stop_tx.send(true);
    });
    let (deleter, deleter_task) = BatchDeleter::spawn(queue.clone(), DEFAULT_LINGER);
    let slots = Arc::new(Semaphore::new(k));
    let in_flight: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut tasks = tokio::task::JoinSet::new();
    tracing::info!(
        queue = mode,
        concurrency = k,
        visibility_s = w.visibility_timeout_secs,
        "worker started"
    );
    let mut stop = stop_rx.clone();
    'receive: loop {
        if *stop.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break 'receive,
        };
        let want = (slots.available_permits() + 1).min(queue.max_batch());
        let q = queue.clone();
        let mut receive = tokio::task::spawn_blocking(move || q.receive(want, visibility));
        let got = tokio::select! {
            got = &mut receive => got,
            _ = stop.changed() => {
                // A long poll may still deliver: hand anything it returns straight back (the
                // drain waits for it; abandoned, its messages would stay hidden for the
                // visibility timeout).
                let q = queue.clone();
                tasks.spawn(async move {
                    if let Ok(Ok(late)) = receive.await {
                        for m in late {
                            if let Err(e) = release(&q, m.receipt).await {
                                tracing::warn!(message_id = %m.id, error = %e, "could not release");
                            }
                        }
                    }
                });
                break 'receive;
            }
        };
        let messages = match got {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "receive failed; retrying");
                drop(permit);
                sleep_or_stop(&mut stop, Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "receive task failed");
                continue;
            }
        };
        if messages.is_empty() {
            drop(permit);
            sleep_or_stop(&mut stop, Duration::from_millis(w.poll_interval_ms)).await;
            continue;
        }
        let mut permit = Some(permit);
        for msg in messages {
            let permit = match permit.take() {
                Some(p) => p,
                None => match slots.clone().try_acquire_owned() {
                    Ok(p) => p,
                    // More than we have room for (should not happen): release it at once.
                    Err(_) => {
                        if let Err(e) = release(&queue, msg.receipt).await {
                            tracing::warn!(message_id = %msg.id, error = %e, "could not release");
                        }
                        continue;
                    }
                },
            };
            if let Ok(mut f) = in_flight.lock() {
                f.insert(msg.id.clone(), msg.receipt.clone());
            }
            let attempt = Attempt::new(notifier.clone(), &msg.id, msg.receive_count, max_receive);
            let ctx = (
                processor.clone(),
                queue.clone(),
                buckets.clone(),
                in_flight.clone(),
                deleter.clone(),
            );
            let span = tracing::info_span!("message", message_id = %msg.id, receive_count = msg.receive_count);
            let busy = ops.activity.start();
            tasks.spawn(async move {
                let (processor, queue, buckets, in_flight, deleter) = ctx;
                let outcome = process(&processor, &queue, &buckets, &msg, visibility, attempt)
                    .instrument(span.clone())
                    .await;
                // The job is over: its slot is free while the delete waits for its batch.
                if let Ok(mut f) = in_flight.lock() {
                    f.remove(&msg.id);
                }
                drop(permit);
                settle(&queue, &deleter, &msg, outcome, visibility)
                    .instrument(span)
                    .await;
                drop(busy);
            });
        }
        while tasks.try_join_next().is_some() {}
    }

    // Drain: let in-flight jobs finish within the deadline, then release the rest.
    let deadline = Duration::from_secs(w.drain_timeout_secs);
    let drained = tokio::time::timeout(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // Stop the jobs' heartbeats first, so none extends a message after its release.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let left: Vec<(String, String)> = in_flight
            .lock()
            .map(|f| f.iter().map(|(a, b)| (a.clone(), b.clone())).collect())
            .unwrap_or_default();
        for (id, receipt) in left {
            match release(&queue, receipt).await {
                Ok(()) => {
                    tracing::warn!(message_id = %id, "drain deadline passed: released for another worker")
                }
                Err(e) => tracing::warn!(message_id = %id, error = %e, "could not release"),
            }
        }
    }
    // Send the deletes still waiting for a batch.
    drop(deleter);
    if tokio::time::timeout(Duration::from_secs(10), deleter_task)
        .await
        .is_err()
    {
        tracing::warn!(
            "pending deletes not sent in time: those messages will reappear and be acknowledged by their manifests"
        );
    }
    // Deliveries still pending get the flush window (notify.flush_timeout_ms).
    notifier.shutdown().await;
    tracing::info!("worker stopped");
    Ok(())
}

/// The SQS queue's `maxReceiveCount` (none without a redrive policy); if it cannot be read,
/// `worker.max_receive_count`.
async fn redrive_limit(queue: &SqsQueue, w: &WorkerConfig) -> Option<u32> {
    match queue.max_receive_count().await {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, fallback = w.max_receive_count, "could not read the queue's RedrivePolicy: using worker.max_receive_count");
            Some(w.max_receive_count)
        }
    }
}

/// Make a received message visible again at once, for another worker.
async fn release(queue: &Arc<dyn Queue>, receipt: String) -> Result<(), QueueError> {
    let q = queue.clone();
    tokio::task::spawn_blocking(move || q.change_visibility(&receipt, Duration::ZERO))
        .await
        .map_err(|e| QueueError::Failed(format!("release task failed: {e}")))?
}

/// Aborts a task when dropped (a job's heartbeat ends with its job, even an aborted one).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Process one message with a heartbeat running until the job is over.
async fn process(
    processor: &Processor,
    queue: &Arc<dyn Queue>,
    buckets: &Arc<Buckets>,
    msg: &Received,
    visibility: Duration,
    attempt: Attempt,
) -> Outcome {
    let heartbeat = {
        let queue = queue.clone();
        let receipt = msg.receipt.clone();
        AbortOnDrop(tokio::spawn(async move {
            let every = visibility / 3;
            loop {
                tokio::time::sleep(every).await;
                let q = queue.clone();
                let r = receipt.clone();
                match tokio::task::spawn_blocking(move || q.change_visibility(&r, visibility)).await
                {
                    Ok(Ok(())) => tracing::debug!("visibility extended"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "heartbeat failed"),
                    Err(_) => break,
                }
            }
        }))
    };
    let work = {
        let (processor, buckets, body) = (processor.clone(), buckets.clone(), msg.body.clone());
        // Blocking threads don't inherit the span: carry the message's into the job.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| handle_body(&processor, &buckets, &body, &attempt))
        })
    };
    let outcome = work
        .await
        .unwrap_or_else(|e| Outcome::Retry(format!("job task failed: {e}")));
    drop(heartbeat);
    outcome
}

/// Delete the message (in a batch), or back off and leave it to reappear.
async fn settle(
    queue: &Arc<dyn Queue>,
    deleter: &BatchDeleter,
    msg: &Received,
    outcome: Outcome,
    visibility: Duration,
) {
    metrics::message_settled(match &outcome {
        Outcome::Done => "done",
        Outcome::Retry(_) => "retry",
        Outcome::Poison(_) => "poison",
    });
    let q = queue.clone();
    let receipt = msg.receipt.clone();
    let result = match outcome {
        Outcome::Done => match deleter.delete(receipt).await {
            Ok(()) => Ok(Ok(())),
            // Never a success: another worker may own the message now. It reappears and its
            // manifest acknowledges it without work.
            Err(e @ QueueError::StaleReceipt(_)) => {
                tracing::warn!(message_id = %msg.id, error_code = "stale_receipt", error = %e, "delete refused: the message was not deleted and will reappear");
                return;
            }
            Err(e) => Ok(Err(e)),
        },
        Outcome::Retry(reason) => {
            let backoff = backoff(msg.receive_count, visibility);
            tracing::warn!(%reason, backoff_s = backoff.as_secs(), "transient failure: will be retried");
            tokio::task::spawn_blocking(move || q.change_visibility(&receipt, backoff)).await
        }
        Outcome::Poison(reason) => {
            let backoff = backoff(msg.receive_count, visibility);
            tracing::error!(%reason, body = %truncate(&msg.body, 200), "bad message: left for the dead-letter queue");
            tokio::task::spawn_blocking(move || q.change_visibility(&receipt, backoff)).await
        }
    };
    match result {
        Ok(Ok(())) => {}
        // A stale receipt means another worker now owns the message: not our success.
        Ok(Err(e)) => {
            tracing::warn!(message_id = %msg.id, error_code = "settle_failed", error = %e, "could not settle message")
        }
        Err(e) => tracing::error!(error = %e, "settle task failed"),
    }
}

/// Exponential backoff by receive count: 1 s, 2 s, 4 s… capped at the visibility timeout.
fn backoff(receive_count: u32, visibility: Duration) -> Duration {
    Duration::from_secs(1u64 << receive_count.saturating_sub(1).min(16)).min(visibility)
}

fn truncate(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn handle_body(processor: &Processor, buckets: &Buckets, body: &str, attempt: &Attempt) -> Outcome {
    let jobs = match job::parse(body) {
        Ok(Parsed::Ignore(why)) => {
            tracing::info!(reason = %why, "nothing to do: acknowledged");
            return Outcome::Done;
        }
        Ok(Parsed::Jobs(jobs)) => jobs,
        Err(e) => {
            attempt.bad_message(&e.to_string());
            return Outcome::Poison(e.to_string());
        }
    };
    let mut retry = None;
    for spec in &jobs {
        if let Err(e) = run_spec(processor, buckets, spec, attempt) {
            if e.class() == ErrorClass::Permanent {
                tracing::error!(code = e.code(), error = %e, "permanent failure before the job could be recorded");
            } else {
                retry = Some(e.to_string());
            }
            attempt.job_failed(processor.config(), spec, &e);
        }
    }
    match retry {
        Some(reason) => Outcome::Retry(reason),
        None => Outcome::Done,
    }
}

/// Run one job spec. `Err` when the job could not be recorded: transient (the message should
/// be retried) or permanent (no manifest could be written; the message is dropped).
fn run_spec(
    processor: &Processor,
    buckets: &Buckets,
    spec: &JobSpec,
    attempt: &Attempt,
) -> Result<(), JobError> {
    let config = processor.config();
    let Some(source) = spec.sources.first() else {
        return Ok(());
    };
    if spec.sources.len() > 1 {
        return run_slideshow_spec(processor, buckets, spec, attempt);
    }
    let (profile, out_bucket, out_prefix) = destination(config, spec, source);
    // Every line logged for this job carries its id (as soon as it is known), source and profile.
    let span = tracing::info_span!("job", job_id = tracing::field::Empty, source = %source.uri(), %profile);
    let _in_job = span.enter();
    let job_id = |etag: Option<&str>| {
        spec.id.clone().unwrap_or_else(|| {
            let source = ObjectRef {
                etag: etag.map(str::to_string),
                ..source.clone()
            };
            job::derive_id(&source, &profile)
        })
    };
    if spec.id.is_some() || source.etag.is_some() {
        span.record("job_id", job_id(source.etag.as_deref()).as_str());
    }
    let out = buckets.bucket(&out_bucket);
    let src_store = buckets.bucket(&source.bucket);
    let (out, src_store) = match (out, src_store) {
        (Ok(o), Ok(s)) => (o, s),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let started = Instant::now();
    // Pin to the event's version: a replaced object is a stale event, not a wrong output.
    let current = src_store.head(&source.key)?;
    let etag = source
        .etag
        .clone()
        .or_else(|| current.as_ref().map(|c| c.etag.clone()))
        .unwrap_or_else(|| "unknown".into());
    let id = job_id(Some(&etag));
    span.record("job_id", id.as_str());
    let prefix = output_prefix(&out_prefix, &profile, &source.key, &etag);
    let manifest_key = format!("{prefix}manifest.json");
    match out.head(&manifest_key) {
        Ok(Some(_)) => {
            tracing::info!(source = %source.uri(), %profile, "already processed (manifest exists): acknowledged without work");
            metrics::job_duplicate(&profile);
            return Ok(());
        }
        Ok(None) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(e) = missing_or_stale(source, current.as_ref(), &etag) {
        return record_failure(
            &*out,
            &manifest_key,
            spec,
            source,
            &etag,
            &profile,
            e,
            attempt,
        );
    }
    let tmp = tempfile::NamedTempFile::new().map_err(|e| JobError::Storage {
        message: format!("temp file: {e}"),
        class: ErrorClass::Transient,
    })?;
    let fetch_started = Instant::now();
    match src_store.get_to_file(&source.key, tmp.path(), Some(&etag)) {
        Ok(_) => {}
        Err(e @ crate::storage::StorageError::Stale { .. }) => {
            return record_failure(
                &*out,
                &manifest_key,
                spec,
                source,
                &etag,
                &profile,
                e.into(),
                attempt,
            );
        }
        Err(e) => return Err(e.into()),
    }
    let fetch_ms = fetch_started.elapsed().as_secs_f64() * 1e3;
    let job = Job {
        id,
        source_uri: source.uri(),
        path: tmp.path(),
        etag: etag.clone(),
        profile: profile.clone(),
    };
    let result = processor.run(&job);
    record(&*out, &prefix, result, started, Some(fetch_ms), attempt)
}

/// Store a finished job's outputs under `prefix`, then its manifest; a transient failure is
/// returned for retry instead.
fn record(
    out: &dyn Storage,
    prefix: &str,
    mut result: crate::pipeline::JobResult,
    started: Instant,
    fetch_ms: Option<f64>,
    attempt: &Attempt,
) -> Result<(), JobError> {
    if let Some(err) = &result.manifest.error
        && err.class == ErrorClass::Transient
    {
        return Err(JobError::Storage {
            message: err.message.clone(),
            class: ErrorClass::Transient,
        });
    }
    let upload_started = Instant::now();
    for f in &mut result.files {
        let key = format!("{prefix}{}", f.key);
        match f.store(out, &key) {
            Ok(_) => f.record.uri = out.uri(&key),
            Err(e) => return Err(e.into()),
        }
    }
    result.manifest.outputs = result.files.iter().map(|f| f.record.clone()).collect();
    let timings = &mut result.manifest.timings_ms;
    if let Some(ms) = fetch_ms {
        timings.insert("fetch".into(), ms);
    }
    timings.insert(
        "upload".into(),
        upload_started.elapsed().as_secs_f64() * 1e3,
    );
    timings.insert("total".into(), started.elapsed().as_secs_f64() * 1e3);
    write_manifest(
        out,
        &format!("{prefix}manifest.json"),
        &result.manifest,
        attempt,
    )
}

/// Several sources: images to video. Each source is pinned to its ETag like a single one; the
/// output prefix is a pure function of every (bucket, key, ETag) and the profile.
fn run_slideshow_spec(
    processor: &Processor,
    buckets: &Buckets,
    spec: &JobSpec,
    attempt: &Attempt,
) -> Result<(), JobError> {
    let config = processor.config();
    let Some(first) = spec.sources.first() else {
        return Ok(());
    };
    let (profile, out_bucket, out_prefix) = destination(config, spec, first);
    let span = tracing::info_span!("job", job_id = tracing::field::Empty, source = %first.uri(), sources = spec.sources.len(), %profile);
    let _in_job = span.enter();
    let out = buckets.bucket(&out_bucket)?;
    let started = Instant::now();
    let mut pinned: Vec<(
        ObjectRef,
        Arc<dyn Storage>,
        Option<crate::storage::ObjectInfo>,
    )> = Vec::new();
    for source in &spec.sources {
        let store = buckets.bucket(&source.bucket)?;
        let current = store.head(&source.key)?;
        let etag = source
            .etag
            .clone()
            .or_else(|| current.as_ref().map(|c| c.etag.clone()))
            .unwrap_or_else(|| "unknown".into());
        let mut source = source.clone();
        source.etag = Some(etag);
        pinned.push((source, store, current));
    }
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    for (s, _, _) in &pinned {
        for part in [&s.bucket, &s.key, s.etag.as_deref().unwrap_or("")] {
            sha2::Digest::update(&mut h, part.as_bytes());
            sha2::Digest::update(&mut h, [0]);
        }
    }
    let combined = format!(
        "slideshow-{}",
        hex::encode(&sha2::Digest::finalize(h)[..12])
    );
    let prefix = output_prefix(&out_prefix, &profile, &first.key, &combined);
    let manifest_key = format!("{prefix}manifest.json");
    match out.head(&manifest_key) {
        Ok(Some(_)) => {
            tracing::info!(sources = spec.sources.len(), %profile, "already processed (manifest exists): acknowledged without work");
            metrics::job_duplicate(&profile);
            return Ok(());
        }
        Ok(None) => {}
        Err(e) => return Err(e.into()),
    }
    let id = spec.id.clone().unwrap_or_else(|| combined.clone());
    span.record("job_id", id.as_str());
    let fail = |source: &ObjectRef, e: JobError| {
        let spec = JobSpec {
            id: Some(id.clone()),
            ..spec.clone()
        };
        record_failure(
            &*out,
            &manifest_key,
            &spec,
            source,
            &combined,
            &profile,
            e,
            attempt,
        )
    };
    let mut files = Vec::new();
    let fetch_started = Instant::now();
    for (source, store, current) in &pinned {
        let etag = source.etag.clone().unwrap_or_default();
        if let Some(e) = missing_or_stale(source, current.as_ref(), &etag) {
            return fail(source, e);
        }
        let tmp = tempfile::NamedTempFile::new().map_err(|e| JobError::Storage {
            message: format!("temp file: {e}"),
            class: ErrorClass::Transient,
        })?;
        match store.get_to_file(&source.key, tmp.path(), Some(&etag)) {
            Ok(_) => {}
            Err(e @ crate::storage::StorageError::Stale { .. }) => return fail(source, e.into()),
            Err(e) => return Err(e.into()),
        }
        files.push((source, tmp));
    }
    let fetch_ms = fetch_started.elapsed().as_secs_f64() * 1e3;
    let job = crate::pipeline::Slideshow {
        id,
        slides: files
            .iter()
            .map(|(s, tmp)| crate::pipeline::Slide {
                uri: s.uri(),
                etag: s.etag.clone().unwrap_or_default(),
                path: tmp.path(),
            })
            .collect(),
        profile,
    };
    record(
        &*out,
        &prefix,
        processor.run_slideshow(&job),
        started,
        Some(fetch_ms),
        attempt,
    )
}

/// A job's profile (named, else routed by its first source) and where its outputs go (named,
/// else `worker.output_bucket` + `worker.output_prefix`).
fn destination(
    config: &crate::config::Config,
    spec: &JobSpec,
    first: &ObjectRef,
) -> (String, String, String) {
    let w = &config.worker;
    let profile = spec
        .profile
        .clone()
        .unwrap_or_else(|| config.route(&first.bucket, &first.key).to_string());
    let (bucket, prefix) = spec
        .output
        .clone()
        .unwrap_or_else(|| (w.output_bucket.clone(), w.output_prefix.clone()));
    (profile, bucket, prefix)
}

/// A source that is gone, or was replaced since the event that named it (`etag`): a
/// permanent failure — the event can never be processed as it was meant.
fn missing_or_stale(
    source: &ObjectRef,
    current: Option<&crate::storage::ObjectInfo>,
    etag: &str,
) -> Option<JobError> {
    let message = match current {
        None => format!("source {} does not exist", source.uri()),
        Some(c) if c.etag != etag => format!(
            "stale event: {} was replaced (event ETag {etag}, now {})",
            source.uri(),
            c.etag
        ),
        Some(_) => return None,
    };
    Some(JobError::Storage {
        message,
        class: ErrorClass::Permanent,
    })
}

/// Where a job's outputs go: a pure function of (source key, ETag, profile).
fn output_prefix(out_prefix: &str, profile: &str, key: &str, etag: &str) -> String {
    let etag: String = etag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{out_prefix}{profile}/{key}/{etag}/")
}

#[allow(clippy::too_many_arguments)]
fn record_failure(
    out: &dyn Storage,
    manifest_key: &str,
    spec: &JobSpec,
    source: &ObjectRef,
    etag: &str,
    profile: &str,
    e: JobError,
    attempt: &Attempt,
) -> Result<(), JobError> {
    let manifest = Manifest {
        schema: manifest::SCHEMA,
        job_id: spec
            .id
            .clone()
            .unwrap_or_else(|| job::derive_id(source, profile)),
        status: Status::Failed,
        source: manifest::Source {
            uri: source.uri(),
            etag: etag.to_string(),
            bytes: source.size.unwrap_or(0),
            sha256: String::new(),
            media: None,
        },
        sources: Vec::new(),
        profile: profile.to_string(),
        outputs: Vec::new(),
        metadata: Default::default(),
        plugins: Vec::new(),
        error: Some((&e).into()),
        timings_ms: Default::default(),
        notes: Vec::new(),
    };
    tracing::error!(source = %source.uri(), code = e.code(), error = %e, "job failed permanently");
    write_manifest(out, manifest_key, &manifest, attempt)
}

/// The manifest goes last, create-if-absent: exactly one writer wins, and only the winner
/// sends the job's notifications. The rules run before the write: a fail-closed rule that
/// fails leaves the job unrecorded, to be retried.
fn write_manifest(
    out: &dyn Storage,
    key: &str,
    m: &Manifest,
    attempt: &Attempt,
) -> Result<(), JobError> {
    let notifications = attempt.prepare(m)?;
    match out.put_if_absent(key, &m.to_json(), "application/json") {
        Ok(Some(_)) => {
            tracing::info!(job_id = %m.job_id, status = ?m.status, manifest = %out.uri(key), "job recorded");
            metrics::job_recorded(m);
            notifications.send();
            Ok(())
        }
        Ok(None) => {
            tracing::info!(job_id = %m.job_id, "another worker recorded this job first");
            metrics::job_recorded(m);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_s3_event_encoding() {
        for key in ["a.jpg", "my photo (1).jpg", "dir/sub dir/naïve+plus%.png"] {
            let body = s3_event("uploads", key, 10, "e1");
            let Ok(Parsed::Jobs(jobs)) = job::parse(&body) else {
                panic!("parses")
            };
            assert_eq!(jobs[0].sources[0].key, key);
            assert_eq!(jobs[0].sources[0].etag.as_deref(), Some("e1"));
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let v = Duration::from_secs(30);
        assert_eq!(backoff(1, v), Duration::from_secs(1));
        assert_eq!(backoff(3, v), Duration::from_secs(4));
        assert_eq!(backoff(9, v), v);
    }
}
