//! Where buckets live, by name: directories under `data_dir/buckets/` (local mode) or S3. The
//! worker, `mediaflow submit` and the job API open sources and outputs through this, so a
//! bucket name means the same thing to all of them.

use super::s3::Multipart;
use super::{FsStorage, S3Storage, Storage, StorageError};
use crate::error::ErrorClass;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Buckets by name.
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
    pub fn bucket(&self, bucket: &str) -> Result<Arc<dyn Storage>, StorageError> {
        if !crate::config::valid_bucket_name(bucket) {
            return Err(StorageError::Failed {
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
                let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(s) = open.get(bucket) {
                    return Ok(s.clone());
                }
                let s: Arc<dyn Storage> = Arc::new(FsStorage::new(root.join(bucket))?);
                open.insert(bucket.to_string(), s.clone());
                Ok(s)
            }
        }
    }

    /// Local mode: remove the writes in progress that stopped processes left in any bucket
    /// (see [`FsStorage::sweep`]). Returns how many.
    pub fn sweep(&self) -> usize {
        let Buckets::Local { root, .. } = self else {
            return 0;
        };
        let Ok(entries) = std::fs::read_dir(root) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| FsStorage::new(e.path()).ok()?.sweep().ok())
            .sum()
    }
}
