//! The job index (DESIGN §10): one record per job — status, progress, sources, profile,
//! outputs, error, timestamps, attempt — that the job API reads and the worker writes at every
//! state change, including for jobs that arrive by a plain upload with no API call. The
//! manifests stay the truth about outputs; the index is how clients find and follow jobs.
//! It also keeps the API keys (hashed) and the secret that signs short-lived tokens.
//!
//! Two stores with one set of rules: SQLite in local mode ([`sqlite`]), DynamoDB on AWS
//! ([`dynamodb`]). A change is decided by [`record::apply`] from the record as read and
//! written only if nobody wrote it since (a conditional write on its revision), so a finished
//! job never goes back and duplicate deliveries don't fight.
//!
//! # Layout
//!
//! - [`record`]: the record, its statuses, and how each change applies.
//! - [`keys`]: API keys: made, hashed, scoped.
//! - [`sqlite`], [`dynamodb`]: the stores.
//! - [`follow`]: what the worker writes: a job's start, throttled progress, its outcome.
//! - [`rebuild`]: the index from the manifests (`mediaflow index rebuild`).

pub mod dynamodb;
pub mod follow;
pub mod keys;
pub mod rebuild;
pub mod record;
pub mod sqlite;

use crate::error::ErrorClass;
pub use keys::ApiKey;
pub use record::{Change, JobRecord, JobStatus, Verdict};
use std::time::{SystemTime, UNIX_EPOCH};

/// What can go wrong with the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The store could not be used (I/O, the network, throttling): try again later.
    #[error("job index: {0}")]
    Unavailable(String),
    /// The change does not apply to the job as it is (cancelling a finished job).
    #[error("{0}")]
    Conflict(String),
    /// No such job.
    #[error("no job {0}")]
    NotFound(String),
    /// A record could not be read back (written by something else, or damaged).
    #[error("job index: record {id} is unreadable: {why}")]
    Corrupt {
        /// The record.
        id: String,
        /// Why.
        why: String,
    },
}

impl IndexError {
    /// Whether trying again may work.
    pub fn class(&self) -> ErrorClass {
        match self {
            IndexError::Unavailable(_) => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The jobs.
    pub jobs: Vec<JobRecord>,
    /// Where the next page starts, if there is one.
    pub next: Option<Cursor>,
}

impl Page {
    /// A page from up to `limit + 1` jobs read newest first: the extra one only says that
    /// there is a next page, which starts after the last job kept.
    pub fn from_overfetch(mut jobs: Vec<JobRecord>, limit: usize) -> Page {
        let limit = limit.max(1);
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last().map(|j| Cursor {
                created_ms: j.created_ms,
                id: j.id.clone(),
            })
        } else {
            None
        };
        Page { jobs, next }
    }
}

/// A position in the newest-first order: the last job of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Its creation time.
    pub created_ms: i64,
    /// Its id (ties broken by id, descending).
    pub id: String,
}

impl Cursor {
    /// The opaque form clients pass back (`next_cursor`).
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", self.created_ms, self.id))
    }

    /// Read a client's cursor; `None` if it is not one of ours.
    pub fn decode(s: &str) -> Option<Cursor> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (ms, id) = raw.split_once(':')?;
        (!id.is_empty() && id.len() <= 128).then_some(())?;
        Some(Cursor {
            created_ms: ms.parse().ok()?,
            id: id.to_string(),
        })
    }
}

/// A job store: SQLite or DynamoDB. Calls block (the async API calls them on blocking
/// threads); each is one conditional operation.
pub trait JobIndex: Send + Sync + std::fmt::Debug {
    /// The job `id`.
    fn get(&self, id: &str) -> Result<Option<JobRecord>, IndexError>;
    /// Write `record` if the stored one is at revision `expected` (`None`: only if there is
    /// none). `Ok(false)` when another write came first.
    fn put(&self, record: &JobRecord, expected: Option<u64>) -> Result<bool, IndexError>;
    /// Jobs newest first (`status`: only those), `limit` of them, after `after`.
    fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page, IndexError>;
    /// Up to `limit` recorded jobs whose notifications are not confirmed delivered (the
    /// outbox), in no particular order.
    fn outbox(&self, limit: usize) -> Result<Vec<JobRecord>, IndexError>;
    /// Store an API key (by its hash), replacing one of the same name.
    fn put_key(&self, key: &ApiKey) -> Result<(), IndexError>;
    /// Every API key, revoked ones too.
    fn keys(&self) -> Result<Vec<ApiKey>, IndexError>;
    /// A value stored once under `name` (the first writer's `value` wins; the stored one is
    /// returned).
    fn setting(&self, name: &str, value: &str) -> Result<String, IndexError>;
    /// Remove the records of finished jobs last changed before `before_ms` whose
    /// notifications are delivered (outputs stay); how many went. DynamoDB keeps this
    /// default: its time to live removes them, by the `expires_at` each carries.
    fn forget_finished(&self, before_ms: i64) -> Result<usize, IndexError> {
        let _ = before_ms;
        Ok(0)
    }

    /// Create `record` unless a job with its id exists; `Ok(false)` if one does.
    fn create(&self, record: &JobRecord) -> Result<bool, IndexError> {
        self.put(record, None)
    }

    /// Apply `change` to job `id` by the rules of [`record::apply`], retrying when another
    /// write came between the read and the write. The record after the change.
    fn update(&self, id: &str, change: &Change) -> Result<JobRecord, IndexError> {
        for _ in 0..16 {
            let current = self.get(id)?;
            match next(id, current.as_ref(), change) {
                Ok(Some(next)) => {
                    if self.put(&next, current.as_ref().map(|c| c.rev))? {
                        return Ok(next);
                    }
                }
                Ok(None) => return current.ok_or_else(|| IndexError::NotFound(id.to_string())),
                Err(e) => return Err(e),
            }
        }
        Err(IndexError::Unavailable(format!(
            "job {id}: too many concurrent writes"
        )))
    }
}

/// What `change` makes of job `id`, read as `current`: the record to write (`None`: nothing to
/// write, the job stays as it is), or why it cannot apply.
pub(crate) fn next(
    id: &str,
    current: Option<&JobRecord>,
    change: &Change,
) -> Result<Option<JobRecord>, IndexError> {
    match record::apply(current, change, now_ms()) {
        Verdict::Write(mut next) => {
            next.id = id.to_string();
            Ok(Some(*next))
        }
        Verdict::Keep if current.is_some() => Ok(None),
        Verdict::Keep | Verdict::Missing => Err(IndexError::NotFound(id.to_string())),
        Verdict::Refuse(why) => Err(IndexError::Conflict(why)),
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new random id: 24 hex digits, the shape of the ids the worker derives.
pub fn new_id() -> String {
    hex::encode(keys::random_bytes::<12>())
}

/// The index `config` names: DynamoDB (`api.index_table`), else SQLite under
/// `worker.data_dir` in local mode; `None` for an AWS worker with no table.
pub async fn open(
    config: &crate::config::Config,
) -> Result<Option<std::sync::Arc<dyn JobIndex>>, IndexError> {
    if let Some(table) = &config.api.index_table {
        let shared = crate::aws::sdk_config().await;
        let client = aws_sdk_dynamodb::Client::new(&shared);
        let index = dynamodb::DynamoIndex::new(client, table, tokio::runtime::Handle::current())
            .with_retention(config.api.job_retention_days);
        return Ok(Some(std::sync::Arc::new(index)));
    }
    if config.worker.queue_url.is_some() || !config.api.local_index {
        return Ok(None);
    }
    let path = config.worker.data_dir.join("index.db");
    let index = tokio::task::spawn_blocking(move || sqlite::SqliteIndex::open(&path))
        .await
        .map_err(|e| IndexError::Unavailable(e.to_string()))??;
    Ok(Some(std::sync::Arc::new(index)))
}
