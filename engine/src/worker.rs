//! `mediaflow worker`: consume the job queue until SIGTERM/SIGINT, running each message's jobs
//! through the [`crate::lifecycle`]. K messages in flight; CPU work on blocking threads; a
//! heartbeat extends each message's visibility every third of the timeout while its job runs.
//! A message is deleted only once its outcome is durably recorded (a manifest, `succeeded` or
//! `failed`), in short batches; a job left unrecorded (a transient failure) reappears after a
//! backoff, and after the queue's last receive it is moved to the dead-letter queue with its
//! reason, as is a message that is not a job at all. On a signal the worker makes no new
//! receive (one still open is let end — SQS may hand it messages until then — and what it
//! returns is released at once), lets in-flight jobs finish within the drain deadline, then
//! stops the rest at their next check and releases their messages (visibility 0), and exits 0.
//!
//! Two backends: SQS + S3 when `worker.queue_url` is set, else local mode (the embedded queue
//! and filesystem buckets under `worker.data_dir`, with SQS/S3 semantics).
//!
//! # Layout
//!
//! - `backend`: SQS + S3 or the local queue and buckets; the redrive limit.
//! - `consume`: the receive loop, a task per message.
//! - `message`: one message: parse, plan, run its jobs, decide how to settle it.
//! - `heartbeat`: visibility extended while a message's jobs run.
//! - `deadline`: the job time limit; a job stuck past it makes the worker unhealthy.
//! - `settle`: delete, retry later, dead-letter with the reason, or release.
//! - `drain`: the end: the drain deadline, stopping jobs, flushing deletes.
//! - [`mod@submit`]: `mediaflow submit` (local mode).

mod backend;
mod consume;
mod deadline;
mod drain;
mod heartbeat;
mod message;
mod settle;
pub mod submit;

pub use submit::{local_queue, s3_event, submit};

use crate::config::Config;
use crate::index::follow::Follow;
use crate::job::control::{Observer, Unobserved};
use crate::lifecycle::Lifecycle;
use crate::lifecycle::plan::Planner;
use crate::lifecycle::scratch::Scratch;
use crate::notify::Notifier;
use crate::queue::batch::{BatchDeleter, DEFAULT_LINGER};
use crate::queue::{Queue, QueueError};
use crate::services::{Services, SetupError};
use crate::shutdown::Shutdown;
use crate::telemetry::health::Health;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Problems that stop the worker from starting or running (exit code 2 or 1).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Setting up (config, plugins, notifications).
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The queue cannot be used.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Storage cannot be used.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The scratch directory cannot be used.
    #[error(
        "scratch directory {path}: {source} (set `scratch_dir`, MEDIAFLOW_SCRATCH_DIR, to a writable directory)"
    )]
    Scratch {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The command does not apply to this configuration.
    #[error("{0}")]
    Usage(String),
    /// The ops listener could not start.
    #[error(transparent)]
    Ops(#[from] crate::telemetry::OpsError),
}

/// What every message's task shares.
#[derive(Debug)]
struct Context {
    lifecycle: Lifecycle,
    planner: Planner,
    queue: Arc<dyn Queue>,
    deleter: BatchDeleter,
    health: Arc<Health>,
    shutdown: Shutdown,
    observer: Arc<dyn Observer>,
    /// The job index, when there is one: every state change is written to it.
    follow: Option<Arc<Follow>>,
    /// How long a received message stays hidden.
    visibility: Duration,
    /// The queue's last receive (redrive), if it has one.
    max_receive: Option<u32>,
    /// Messages being worked on: id → receipt (released if their jobs outlive the drain).
    in_flight: Mutex<HashMap<String, String>>,
}

impl Context {
    fn track(&self, id: &str, receipt: &str) {
        self.lock_in_flight()
            .insert(id.to_string(), receipt.to_string());
    }

    fn untrack(&self, id: &str) {
        self.lock_in_flight().remove(id);
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Run the worker until SIGTERM/SIGINT.
pub fn run(config_path: Option<&Path>) -> Result<(), WorkerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| WorkerError::Usage(format!("starting the async runtime: {e}")))?;
    let shutdown = Shutdown::new();
    let result = runtime.block_on(async {
        shutdown.on_signals();
        run_in(config_path, &shutdown).await
    });
    // A job that never reached a check may still run on a blocking thread: don't wait for it.
    runtime.shutdown_background();
    result
}

/// Run the worker on the current (multi-threaded) runtime until `shutdown` (`mediaflow
/// serve` runs one beside the API this way).
pub async fn run_in(config_path: Option<&Path>, shutdown: &Shutdown) -> Result<(), WorkerError> {
    let config = Config::load(config_path).map_err(SetupError::from)?;
    // The ops listener first: /healthz answers while plugins compile, /readyz says why not yet.
    let ops = crate::telemetry::Ops::start(&config.ops, shutdown).await?;
    let mut services = tokio::task::block_in_place(|| Services::with_config(config))?;
    services.poll_registry(shutdown.services().clone());
    warn_unresolved(&services.processor);
    ops.health.set_plugins_loaded();
    let result = serve(&services, &ops, shutdown).await;
    shutdown.stop_services();
    ops.shutdown().await;
    result
}

/// Say at start-up which profiles use a plugin this engine does not have: their jobs wait (a
/// transient failure, retried) until it is published to the registry, or fail without one.
fn warn_unresolved(processor: &crate::pipeline::Processor) {
    for name in processor.config().profiles.keys() {
        if let Err(e) = processor.check_profile(name) {
            tracing::warn!(profile = %name, "{e}; its jobs fail until that is fixed");
        }
    }
}

/// Consume until shut down, then drain.
async fn serve(
    services: &Services,
    ops: &crate::telemetry::Ops,
    shutdown: &Shutdown,
) -> Result<(), WorkerError> {
    let processor = services.processor.clone();
    let config = processor.config();
    let backend = backend::Backend::connect(config, ops).await?;
    let notifier = Arc::new(
        Notifier::start(&config.notify, processor.catalog_source())
            .await
            .map_err(SetupError::from)?,
    );
    let root = config.scratch_root();
    let scratch =
        Scratch::open(&root).map_err(|source| WorkerError::Scratch { path: root, source })?;
    let swept = backend.buckets.sweep();
    if swept > 0 {
        tracing::info!(
            removed = swept,
            "removed writes in progress that stopped workers left in the buckets"
        );
    }
    let lifecycle = Lifecycle::new(processor.clone(), Arc::new(scratch), notifier.clone());
    let (deleter, deleter_task) = BatchDeleter::spawn(
        backend.queue.clone(),
        DEFAULT_LINGER,
        shutdown.services().clone(),
    );
    if config.worker.job_timeout_secs > 0 {
        let limit = Duration::from_secs(config.worker.job_timeout_secs);
        tokio::spawn(deadline::watch(
            lifecycle.running_shared(),
            ops.health.clone(),
            limit,
            limit.min(deadline::STUCK_AFTER),
            shutdown.services().clone(),
        ));
    }
    let follow = open_index(config).await?;
    if let Some(follow) = &follow {
        tokio::spawn(
            follow
                .clone()
                .watch_cancels(lifecycle.running_shared(), shutdown.services().clone()),
        );
        notifier.set_outbox(follow.clone());
        tokio::spawn(follow.clone().redeliver(
            notifier.clone(),
            backend.buckets.clone(),
            Duration::from_secs(config.notify.outbox_redeliver_secs),
            shutdown.services().clone(),
        ));
    }
    let ctx = Arc::new(Context {
        planner: Planner::new(config, backend.buckets.clone()),
        lifecycle,
        queue: backend.queue.clone(),
        deleter,
        health: ops.health.clone(),
        shutdown: shutdown.clone(),
        observer: match &follow {
            Some(f) => f.clone(),
            None => Arc::new(Unobserved),
        },
        follow,
        visibility: Duration::from_secs(config.worker.visibility_timeout_secs),
        max_receive: backend.max_receive,
        in_flight: Mutex::new(HashMap::new()),
    });
    let concurrency = match config.worker.concurrency {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        k => k,
    };
    tracing::info!(
        queue = backend.mode,
        concurrency,
        visibility_s = config.worker.visibility_timeout_secs,
        "worker started"
    );
    let poll = Duration::from_millis(config.worker.poll_interval_ms);
    let tasks = consume::run(&ctx, &ops.activity, concurrency, poll).await;
    let drain = Duration::from_secs(config.worker.drain_timeout_secs);
    drain::drain(&ctx, tasks, deleter_task, drain).await;
    // Deliveries still pending get the flush window (notify.flush_timeout_ms).
    notifier.shutdown().await;
    tracing::info!("worker stopped");
    Ok(())
}

/// The index the worker writes to, if the configuration has one.
async fn open_index(config: &Config) -> Result<Option<Arc<Follow>>, WorkerError> {
    let index = crate::index::open(config)
        .await
        .map_err(|e| WorkerError::Usage(e.to_string()))?;
    let interval = Duration::from_millis(config.api.progress_interval_ms);
    Ok(index.map(|i| Arc::new(Follow::new(i, interval))))
}
