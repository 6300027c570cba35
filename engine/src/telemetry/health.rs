//! Readiness: can this worker take jobs? It is ready when its plugins are loaded, it is not
//! draining, its queue and store answer — on AWS, `GetQueueAttributes` on the queue and
//! `HeadBucket` on the output bucket (both at once, each bounded by a timeout); in local mode,
//! the queue database answers a query and the data directory takes a new file — and the work
//! itself is not failing: [`FAILING_AFTER`] queue calls or store writes failing in a row (a
//! full disk, a database that cannot write) make it unready until one succeeds. A check's
//! result is reused for a short while, so frequent probes and scrapes don't hammer AWS;
//! concurrent probes share one check.

use crate::queue::local::LocalQueue;
use crate::shutdown::CancellationToken;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the worker depends on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQS and S3.
    Aws {
        /// SQS client.
        sqs: aws_sdk_sqs::Client,
        /// S3 client.
        s3: aws_sdk_s3::Client,
        /// The jobs queue.
        queue_url: String,
        /// Where outputs go.
        output_bucket: String,
    },
    /// The embedded queue and filesystem buckets.
    Local {
        /// The queue.
        queue: Arc<LocalQueue>,
        /// `worker.data_dir`.
        data_dir: PathBuf,
    },
}

impl Backend {
    /// Check every dependency; `Err` lists what failed.
    async fn check(&self, timeout: Duration) -> Result<(), String> {
        match self {
            Backend::Aws {
                sqs,
                s3,
                queue_url,
                output_bucket,
            } => {
                // One attempt each, no retries: a probe wants the first failure, and soon.
                let queue = bounded(timeout, "sqs", async {
                    sqs.get_queue_attributes()
                        .queue_url(queue_url)
                        .customize()
                        .config_override(
                            aws_sdk_sqs::config::Builder::default()
                                .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled()),
                        )
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| describe(&e))
                });
                let store = bounded(timeout, "s3", async {
                    s3.head_bucket()
                        .bucket(output_bucket)
                        .customize()
                        .config_override(
                            aws_sdk_s3::config::Builder::default()
                                .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled()),
                        )
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| describe(&e))
                });
                let (q, s) = tokio::join!(queue, store);
                let problems: Vec<String> = [
                    q.err().map(|e| format!("queue {queue_url}: {e}")),
                    s.err().map(|e| format!("bucket {output_bucket}: {e}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                }
            }
            Backend::Local { queue, data_dir } => {
                let (queue, dir) = (queue.clone(), data_dir.clone());
                let work = tokio::task::spawn_blocking(move || {
                    queue.depth().map_err(|e| format!("local queue: {e}"))?;
                    tempfile::tempfile_in(&dir)
                        .map_err(|e| format!("data directory {}: {e}", dir.display()))?;
                    Ok::<(), String>(())
                });
                match tokio::time::timeout(timeout, work).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => Err(format!("local check failed: {e}")),
                    Err(_) => Err(format!(
                        "local queue and data directory: no answer in {timeout:?}"
                    )),
                }
            }
        }
    }
}

async fn bounded(
    timeout: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or_else(|_| Err(format!("{what}: no answer in {timeout:?}")))
}

fn describe<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::SdkError;
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => format!("{err}"),
            }
        }
        // Dispatch and timeout errors: the innermost cause says most ("Connection refused").
        other => {
            let mut source: &dyn std::error::Error = other;
            while let Some(next) = source.source() {
                source = next;
            }
            format!("{other}: {source}")
        }
    }
}

/// A check's answer: ready, or why not.
pub type Readiness = Result<(), String>;

/// Failures in a row of one part that make the worker unready.
pub const FAILING_AFTER: u32 = 3;

/// A part of the work whose failures readiness follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Receives, deletes, visibility changes.
    Queue,
    /// Storing outputs and manifests.
    Store,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Queue => "queue",
            Part::Store => "store",
        }
    }
}

/// How one part has been doing: failures in a row, since when, the last error.
#[derive(Debug, Default)]
struct Streak {
    failures: u32,
    since: Option<Instant>,
    last: String,
}

/// The worker's readiness, as `/readyz` reports it, and its liveness, as `/healthz` does.
#[derive(Debug)]
pub struct Health {
    plugins_loaded: AtomicBool,
    /// Jobs that did not stop when their time ran out, described: code that never reaches a
    /// check holds their slots, and only a new process frees them.
    stuck: Mutex<Option<String>>,
    /// Cancelled once the worker stops receiving.
    draining: CancellationToken,
    /// Queue, then store.
    streaks: Mutex<[Streak; 2]>,
    backend: Mutex<Option<Backend>>,
    cache_for: Duration,
    timeout: Duration,
    /// The last backend check and when it ended; the async lock makes concurrent probes
    /// wait for one check instead of each starting their own.
    last: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
}

impl Health {
    /// Backend checks are reused for `cache_for` and each may take up to `timeout`.
    pub fn new(cache_for: Duration, timeout: Duration) -> Self {
        Self {
            plugins_loaded: AtomicBool::new(false),
            stuck: Mutex::new(None),
            draining: CancellationToken::new(),
            streaks: Mutex::new(Default::default()),
            backend: Mutex::new(None),
            cache_for,
            timeout,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The plugins are compiled and loaded.
    pub fn set_plugins_loaded(&self) {
        self.plugins_loaded.store(true, Ordering::SeqCst);
    }

    /// Jobs are stuck (described), or none is (`None`).
    pub fn set_stuck(&self, why: Option<String>) {
        *self.stuck.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// Alive and able to work, or why not: a job stuck past its time limit makes the
    /// process unhealthy, so that an orchestrator (ECS's health check) replaces it.
    pub fn liveness(&self) -> Readiness {
        match &*self.stuck.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// The worker stopped receiving (SIGTERM): no longer ready for new work.
    pub fn set_draining(&self) {
        self.draining.cancel();
    }

    /// Follow a shutdown: draining once `receiving` is cancelled.
    pub fn follow(&self, receiving: &CancellationToken) {
        let (draining, receiving) = (self.draining.clone(), receiving.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = receiving.cancelled() => draining.cancel(),
                _ = draining.cancelled() => {}
            }
        });
    }

    /// How a call of `part` went: failures in a row make the worker unready, a success
    /// ends the streak.
    pub fn report(&self, part: Part, result: Result<(), &str>) {
        let mut streaks = self.streaks.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut streaks[part as usize];
        match result {
            Ok(()) => {
                if s.failures >= FAILING_AFTER {
                    tracing::info!(
                        part = part.name(),
                        "working again after {} failures",
                        s.failures
                    );
                }
                *s = Streak::default();
            }
            Err(e) => {
                s.failures += 1;
                s.since.get_or_insert_with(Instant::now);
                s.last = e.to_string();
            }
        }
    }

    /// The parts failing now, described.
    fn failing(&self) -> Option<String> {
        let streaks = self.streaks.lock().unwrap_or_else(|e| e.into_inner());
        let parts: Vec<String> = [Part::Queue, Part::Store]
            .into_iter()
            .zip(streaks.iter())
            .filter(|(_, s)| s.failures >= FAILING_AFTER)
            .map(|(p, s)| {
                let secs = s.since.map_or(0, |t| t.elapsed().as_secs());
                format!(
                    "{}: {} calls failed in a row for {secs} s (last: {})",
                    p.name(),
                    s.failures,
                    s.last
                )
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// What to check from now on.
    pub fn set_backend(&self, backend: Backend) {
        *self.backend.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend);
    }

    /// Ready, or the reasons why not (every failing part, `; `-separated).
    pub async fn readiness(&self) -> Readiness {
        if self.draining.is_cancelled() {
            return Err("draining: shutting down, no new jobs".into());
        }
        if !self.plugins_loaded.load(Ordering::SeqCst) {
            return Err("plugins: still loading".into());
        }
        self.liveness()?;
        if let Some(why) = self.failing() {
            return Err(why);
        }
        let Some(backend) = self
            .backend
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return Err("queue and store: not connected yet".into());
        };
        let mut last = self.last.lock().await;
        if let Some((at, r)) = &*last
            && at.elapsed() < self.cache_for
        {
            return r.clone();
        }
        let r = backend.check(self.timeout).await;
        *last = Some((Instant::now(), r.clone()));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_readiness_follows_plugins_draining_and_the_data_directory() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data");
        let queue = Arc::new(LocalQueue::open(&data.join("queue.db"), 3).expect("queue"));
        let h = Health::new(Duration::ZERO, Duration::from_secs(2));
        assert!(h.readiness().await.is_err_and(|e| e.contains("plugins")));
        h.set_plugins_loaded();
        assert!(
            h.readiness()
                .await
                .is_err_and(|e| e.contains("not connected"))
        );
        h.set_backend(Backend::Local {
            queue,
            data_dir: data.clone(),
        });
        assert_eq!(h.readiness().await, Ok(()));
        std::fs::remove_dir_all(&data).expect("remove data dir");
        let e = h.readiness().await.expect_err("data dir gone");
        assert!(e.contains("data directory"), "{e}");
        std::fs::create_dir_all(&data).expect("data again");
        assert_eq!(h.readiness().await, Ok(()));
        // Receives failing in a row (a full disk): unready, naming the part, until one works.
        for _ in 0..FAILING_AFTER {
            h.report(Part::Queue, Err("database or disk is full"));
        }
        let e = h.readiness().await.expect_err("queue failing");
        assert!(
            e.contains("queue: 3 calls failed in a row") && e.contains("disk is full"),
            "{e}"
        );
        h.report(Part::Queue, Ok(()));
        assert_eq!(h.readiness().await, Ok(()));
        h.set_draining();
        assert!(h.readiness().await.is_err_and(|e| e.contains("draining")));
    }

    #[tokio::test]
    async fn a_result_is_reused_within_the_cache_window() {
        let dir = tempfile::tempdir().expect("tmp");
        let queue = Arc::new(LocalQueue::open(&dir.path().join("q.db"), 3).expect("queue"));
        let h = Health::new(Duration::from_secs(60), Duration::from_secs(2));
        h.set_plugins_loaded();
        h.set_backend(Backend::Local {
            queue,
            data_dir: dir.path().join("data"),
        });
        let first = h.readiness().await;
        assert!(first.is_err(), "no data dir yet");
        std::fs::create_dir_all(dir.path().join("data")).expect("data");
        assert_eq!(h.readiness().await, first, "cached, not checked again");
    }
}
