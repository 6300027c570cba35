//! `mediaflow submit`: put files into the local source bucket and enqueue, for each, the S3
//! `ObjectCreated:Put` event S3 itself would send — local mode's stand-in for an upload.

use super::WorkerError;
use crate::config::{Config, WorkerConfig};
use crate::queue::QueueError;
use crate::queue::local::LocalQueue;
use crate::storage::Buckets;
use std::path::PathBuf;

pub use crate::job::s3_event::object_created as s3_event;

/// Open the local queue of `w`.
pub fn local_queue(w: &WorkerConfig) -> Result<LocalQueue, QueueError> {
    LocalQueue::open(&w.data_dir.join("queue.db"), w.max_receive_count)
}

/// Put each file into the source bucket and enqueue an S3-style `ObjectCreated:Put` event for
/// it. Returns (key, message id) per file.
pub fn submit(config: &Config, files: &[PathBuf]) -> Result<Vec<(String, String)>, WorkerError> {
    let w = &config.worker;
    if let Some(url) = &w.queue_url {
        return Err(WorkerError::Usage(format!(
            "submit is for local mode; this configuration consumes {url}: upload to the source bucket instead \
             (its S3 notification enqueues the job)"
        )));
    }
    let queue = local_queue(w)?;
    let store = Buckets::local(&w.data_dir).bucket(&w.source_bucket)?;
    let mut out = Vec::new();
    for file in files {
        let data = std::fs::read(file)
            .map_err(|e| WorkerError::Usage(format!("reading {}: {e}", file.display())))?;
        let key = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = store.put(&key, &data, "application/octet-stream")?;
        let event = s3_event(&w.source_bucket, &key, info.bytes, &info.etag);
        let id = queue.send(&event)?;
        out.push((key, id));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{self, Parsed};

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
}
