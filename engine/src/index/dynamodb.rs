//! The job index on AWS: one DynamoDB table (on demand), keyed by `pk` — `job#<id>`,
//! `key#<name>`, `setting#<name>` — with the record as JSON in `record`. A job item also has
//! `kind` = `job`, its `status` and `order` (`<created ms, 15 digits>#<id>`), which two global
//! secondary indexes sort by: `newest` (`kind`, `order`) and `by_status` (`status`, `order`),
//! both projecting everything, queried newest first; API keys are found through `newest` too
//! (`kind` = `key`), and jobs whose notifications are pending through `outbox` (a sparse
//! index: only they carry the attribute). Writes are conditional on the revision
//! read (`rev = :rev`, or `attribute_not_exists(pk)` for a new job). The SDK is async; these
//! calls block on the runtime, as the S3 store's do.

use super::{ApiKey, Cursor, IndexError, JobIndex, JobRecord, JobStatus, Page};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use tokio::runtime::Handle;

/// The index sorted by creation, newest first.
pub const NEWEST: &str = "newest";
/// The index of one status, sorted by creation.
pub const BY_STATUS: &str = "by_status";
/// The outbox: only jobs whose notifications are not confirmed carry `outbox`.
pub const OUTBOX: &str = "outbox";

/// The DynamoDB job index.
#[derive(Debug, Clone)]
pub struct DynamoIndex {
    client: Client,
    table: String,
    runtime: Handle,
    /// How long a finished job's record stays (`expires_at`); `None`: forever.
    retention_secs: Option<i64>,
}

pub(crate) fn failed<E: ProvideErrorMetadata + std::fmt::Debug>(
    what: &str,
    e: &SdkError<E>,
) -> IndexError {
    let detail = match e {
        SdkError::ServiceError(s) => format!(
            "{}: {}",
            s.err().code().unwrap_or("error"),
            s.err().message().unwrap_or("")
        ),
        other => format!("{other:?}"),
    };
    IndexError::Unavailable(format!("DynamoDB {what}: {detail}"))
}

fn conditional_failed<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    matches!(e, SdkError::ServiceError(s) if s.err().code() == Some("ConditionalCheckFailedException"))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn order(created_ms: i64, id: &str) -> String {
    format!("{:015}#{id}", created_ms.max(0))
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

impl DynamoIndex {
    /// The index in `table`, calls blocking on `runtime`.
    pub fn new(client: Client, table: &str, runtime: Handle) -> DynamoIndex {
        DynamoIndex {
            client,
            table: table.to_string(),
            runtime,
            retention_secs: None,
        }
    }

    /// Finished jobs' records carry `expires_at` (epoch seconds) `days` after their last
    /// change, for the table's time to live; 0 writes none.
    pub fn with_retention(mut self, days: u64) -> DynamoIndex {
        self.retention_secs = (days > 0).then(|| days.saturating_mul(86_400) as i64);
        self
    }

    fn job_item(&self, record: &JobRecord) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            ("pk".to_string(), s(format!("job#{}", record.id))),
            ("kind".to_string(), s("job")),
            ("status".to_string(), s(record.status.name())),
            ("order".to_string(), s(order(record.created_ms, &record.id))),
            ("rev".to_string(), AttributeValue::N(record.rev.to_string())),
            (
                "record".to_string(),
                s(serde_json::to_string(record).unwrap_or_default()),
            ),
        ]);
        if record.notify_pending {
            item.insert("outbox".to_string(), s("1"));
        }
        // A record whose notifications are undelivered stays until they are.
        if let Some(keep) = self.retention_secs
            && record.status.is_terminal()
            && !record.notify_pending
        {
            let at = record.updated_ms.div_euclid(1000).saturating_add(keep);
            item.insert("expires_at".to_string(), AttributeValue::N(at.to_string()));
        }
        item
    }

    fn decode(item: &HashMap<String, AttributeValue>) -> Result<JobRecord, IndexError> {
        let pk = text(item, "pk").unwrap_or_default();
        let json = text(item, "record").unwrap_or_default();
        serde_json::from_str(&json).map_err(|e| IndexError::Corrupt {
            id: pk,
            why: e.to_string(),
        })
    }
}

impl JobIndex for DynamoIndex {
    fn get(&self, id: &str) -> Result<Option<JobRecord>, IndexError> {
        let out = self
            .runtime
            .block_on(
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(format!("job#{id}")))
                    .consistent_read(true)
                    .send(),
            )
            .map_err(|e| failed("GetItem", &e))?;
        out.item().map(Self::decode).transpose()
    }

    fn put(&self, record: &JobRecord, expected: Option<u64>) -> Result<bool, IndexError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.job_item(record)));
        let request = match expected {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(rev) => request
                .condition_expression("rev = :rev")
                .expression_attribute_values(":rev", AttributeValue::N(rev.to_string())),
        };
        match self.runtime.block_on(request.send()) {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(failed("PutItem", &e)),
        }
    }

    fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page, IndexError> {
        let limit = limit.max(1);
        let (index, hash, value) = match status {
            Some(st) => (BY_STATUS, "status", st.name()),
            None => (NEWEST, "kind", "job"),
        };
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#h = :h")
            .expression_attribute_names("#h", hash)
            .expression_attribute_values(":h", s(value))
            .scan_index_forward(false)
            .limit(limit as i32 + 1);
        if let Some(c) = after {
            query = query
                .exclusive_start_key("pk", s(format!("job#{}", c.id)))
                .exclusive_start_key(hash, s(value))
                .exclusive_start_key("order", s(order(c.created_ms, &c.id)));
        }
        let out = self
            .runtime
            .block_on(query.send())
            .map_err(|e| failed("Query", &e))?;
        let jobs = out
            .items()
            .iter()
            .map(Self::decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(jobs, limit))
    }

    fn outbox(&self, limit: usize) -> Result<Vec<JobRecord>, IndexError> {
        let out = self
            .runtime
            .block_on(
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(OUTBOX)
                    .key_condition_expression("outbox = :one")
                    .expression_attribute_values(":one", s("1"))
                    .limit(limit.max(1) as i32)
                    .send(),
            )
            .map_err(|e| failed("Query", &e))?;
        out.items().iter().map(Self::decode).collect()
    }

    fn put_key(&self, key: &ApiKey) -> Result<(), IndexError> {
        self.runtime
            .block_on(
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .item("pk", s(format!("key#{}", key.name)))
                    .item("kind", s("key"))
                    .item("order", s(&key.name))
                    .item("record", s(serde_json::to_string(key).unwrap_or_default()))
                    .send(),
            )
            .map_err(|e| failed("PutItem", &e))?;
        Ok(())
    }

    fn keys(&self) -> Result<Vec<ApiKey>, IndexError> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .runtime
                .block_on(
                    self.client
                        .query()
                        .table_name(&self.table)
                        .index_name(NEWEST)
                        .key_condition_expression("kind = :k")
                        .expression_attribute_values(":k", s("key"))
                        .set_exclusive_start_key(start)
                        .send(),
                )
                .map_err(|e| failed("Query", &e))?;
            for item in out.items() {
                let json = text(item, "record").unwrap_or_default();
                keys.push(
                    serde_json::from_str(&json).map_err(|e| IndexError::Corrupt {
                        id: text(item, "pk").unwrap_or_default(),
                        why: e.to_string(),
                    })?,
                );
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        keys.sort_by(|a: &ApiKey, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    fn setting(&self, name: &str, value: &str) -> Result<String, IndexError> {
        let pk = format!("setting#{name}");
        let put = self.runtime.block_on(
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(&pk))
                .item("value", s(value))
                .condition_expression("attribute_not_exists(pk)")
                .send(),
        );
        match put {
            Ok(_) => return Ok(value.to_string()),
            Err(e) if conditional_failed(&e) => {}
            Err(e) => return Err(failed("PutItem", &e)),
        }
        let out = self
            .runtime
            .block_on(
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .consistent_read(true)
                    .send(),
            )
            .map_err(|e| failed("GetItem", &e))?;
        out.item()
            .and_then(|i| text(i, "value"))
            .ok_or_else(|| IndexError::Unavailable(format!("setting {name} vanished")))
    }
}
