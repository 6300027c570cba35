//! What the worker consumes and writes to: SQS + S3 when `worker.queue_url` is set, else the
//! embedded local queue and filesystem buckets under `worker.data_dir`. Either way the queue is
//! metered, readiness checks it, and the queue's last receive is known (on SQS, from its
//! redrive policy, whose target also takes the dead letters and their reasons).

use super::WorkerError;
use crate::config::Config;
use crate::queue::Queue;
use crate::queue::metered::Metered;
use crate::queue::sqs::SqsQueue;
use crate::storage::Buckets;
use crate::storage::s3::Multipart;
use crate::telemetry::{Ops, health};
use std::sync::Arc;
use std::time::Duration;

/// The queue and buckets in use.
#[derive(Debug)]
pub(super) struct Backend {
    /// The jobs queue, metered.
    pub queue: Arc<dyn Queue>,
    /// Sources and outputs.
    pub buckets: Arc<Buckets>,
    /// Which receive is the last (for dead-lettering); `None` without a dead-letter queue.
    pub max_receive: Option<u32>,
    /// `sqs` or `local`.
    pub mode: &'static str,
}

impl Backend {
    /// Connect to what `config` names and tell readiness what to check.
    pub async fn connect(config: &Config, ops: &Ops) -> Result<Backend, WorkerError> {
        let w = &config.worker;
        let Some(url) = &w.queue_url else {
            let queue = Arc::new(super::local_queue(w)?);
            ops.health.set_backend(health::Backend::Local {
                queue: queue.clone(),
                data_dir: w.data_dir.clone(),
            });
            return Ok(Backend {
                queue: Arc::new(Metered::new(queue)),
                buckets: Arc::new(Buckets::local(&w.data_dir)),
                max_receive: Some(w.max_receive_count),
                mode: "local",
            });
        };
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
        // Which receive is the last, and where dead letters go: the queue's redrive policy.
        let (max_receive, dead_letters) = match queue.redrive().await {
            Ok(Some(r)) => (Some(r.max_receive_count), r.dead_letter_url),
            Ok(None) => (None, None),
            Err(e) => {
                tracing::warn!(error = %e, fallback = w.max_receive_count, "could not read the queue's RedrivePolicy: using worker.max_receive_count");
                (Some(w.max_receive_count), None)
            }
        };
        let queue = queue.with_dead_letter_queue(dead_letters);
        Ok(Backend {
            queue: Arc::new(Metered::new(Arc::new(queue))),
            buckets: Arc::new(Buckets::S3 {
                client: aws.s3,
                runtime,
                multipart: Multipart::of(w),
            }),
            max_receive,
            mode: "sqs",
        })
    }
}
