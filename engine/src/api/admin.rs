//! The operators' commands over the job index, the same one `serve` and the worker use:
//! `mediaflow api-key create|list|revoke`, `mediaflow jobs list|show|cancel` and `mediaflow
//! index rebuild|create-table`.

use crate::cli::{ApiKeyCommand, IndexCommand, JobsCommand};
use crate::config::Config;
use crate::index::{Change, IndexError, JobIndex, JobStatus, dynamodb, keys, now_ms};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use std::path::Path;
use std::sync::Arc;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad arguments or configuration.
    #[error("{0}")]
    Usage(String),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The rebuild failed.
    #[error(transparent)]
    Rebuild(#[from] crate::index::rebuild::RebuildError),
}

/// The index of a configuration, with the runtime its DynamoDB calls block on.
struct Opened {
    index: Arc<dyn JobIndex>,
    config: Config,
    runtime: tokio::runtime::Runtime,
}

impl std::ops::Deref for Opened {
    type Target = dyn JobIndex;
    fn deref(&self) -> &Self::Target {
        &*self.index
    }
}

/// Open the index of the configuration at `path`.
fn open(path: Option<&Path>) -> Result<Opened, AdminError> {
    let config = Config::load(path).map_err(|e| AdminError::Usage(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| AdminError::Usage(e.to_string()))?;
    let index = runtime
        .block_on(crate::index::open(&config))?
        .ok_or_else(|| {
            AdminError::Usage("this configuration has no job index (set api.index_table)".into())
        })?;
    Ok(Opened {
        index,
        config,
        runtime,
    })
}

fn date(ms: i64) -> String {
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
    DateTime::from_millis(ms)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}

/// `mediaflow api-key …`.
pub fn api_key(cmd: ApiKeyCommand) -> Result<(), AdminError> {
    match cmd {
        ApiKeyCommand::Create {
            name,
            scopes,
            config,
        } => {
            let scopes = if scopes.is_empty() {
                keys::SCOPES.iter().map(|s| s.to_string()).collect()
            } else {
                scopes
            };
            if let Some(s) = keys::unknown_scope(&scopes) {
                return Err(AdminError::Usage(format!(
                    "unknown scope {s:?} (scopes: read, write)"
                )));
            }
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                return Err(AdminError::Usage(
                    "--name must be 1..=64 printable characters".into(),
                ));
            }
            let index = open(config.as_deref())?;
            let (secret, key) = keys::generate(&name, &scopes, now_ms());
            index.put_key(&key)?;
            eprintln!(
                "API key {name:?} ({}) created; it is shown once:",
                scopes.join(", ")
            );
            println!("{secret}");
            Ok(())
        }
        ApiKeyCommand::List { config } => {
            for k in open(config.as_deref())?.keys()? {
                let revoked = k
                    .revoked_ms
                    .map(|r| format!("revoked {}", date(r)))
                    .unwrap_or_default();
                println!(
                    "{:<24} {:<12} created {} {revoked}",
                    k.name,
                    k.scopes.join(","),
                    date(k.created_ms)
                );
            }
            Ok(())
        }
        ApiKeyCommand::Revoke { name, config } => {
            let index = open(config.as_deref())?;
            let Some(mut key) = index.keys()?.into_iter().find(|k| k.name == name) else {
                return Err(AdminError::Usage(format!(
                    "no API key named {name:?} (mediaflow api-key list)"
                )));
            };
            key.revoked_ms.get_or_insert(now_ms());
            index.put_key(&key)?;
            eprintln!("API key {name:?} revoked");
            Ok(())
        }
    }
}

/// Create the DynamoDB job index table `table` with its indexes (on-demand billing), as the
/// CloudFormation stack does: `mediaflow index create-table`, and the tests.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), IndexError> {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let gsi = |name: &str, hash: &str| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash)?)
            .key_schema(key("order", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
    };
    let built = (|| {
        Ok::<_, aws_sdk_dynamodb::error::BuildError>(
            client
                .create_table()
                .table_name(table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attr("pk")?)
                .attribute_definitions(attr("kind")?)
                .attribute_definitions(attr("status")?)
                .attribute_definitions(attr("order")?)
                .attribute_definitions(attr("outbox")?)
                .key_schema(key("pk", KeyType::Hash)?)
                .global_secondary_indexes(gsi(dynamodb::NEWEST, "kind")?)
                .global_secondary_indexes(gsi(dynamodb::BY_STATUS, "status")?)
                .global_secondary_indexes(gsi(dynamodb::OUTBOX, "outbox")?),
        )
    })()
    .map_err(|e| IndexError::Unavailable(format!("DynamoDB table definition: {e}")))?;
    built
        .send()
        .await
        .map_err(|e| crate::index::dynamodb::failed("CreateTable", &e))?;
    Ok(())
}

/// `mediaflow index …`.
pub fn index(cmd: IndexCommand) -> Result<(), AdminError> {
    match cmd {
        IndexCommand::Rebuild { config } => {
            let opened = open(config.as_deref())?;
            let w = &opened.config.worker;
            let buckets = match &w.queue_url {
                None => crate::storage::Buckets::local(&w.data_dir),
                Some(_) => {
                    let aws = opened
                        .runtime
                        .block_on(crate::aws::Clients::load(w.s3_path_style));
                    crate::storage::Buckets::S3 {
                        client: aws.s3,
                        runtime: opened.runtime.handle().clone(),
                        multipart: crate::storage::s3::Multipart::of(w),
                    }
                }
            };
            let store = buckets
                .bucket(&w.output_bucket)
                .map_err(|e| AdminError::Usage(e.to_string()))?;
            let done = crate::index::rebuild::rebuild(
                &*opened.index,
                &*store,
                &w.output_bucket,
                &w.output_prefix,
            )?;
            println!(
                "index rebuilt from the manifests: {} created, {} updated, {} unchanged, {} unreadable",
                done.created, done.updated, done.unchanged, done.unreadable
            );
            Ok(())
        }
        IndexCommand::CreateTable { config } => {
            let config =
                Config::load(config.as_deref()).map_err(|e| AdminError::Usage(e.to_string()))?;
            let Some(table) = &config.api.index_table else {
                return Err(AdminError::Usage(
                    "set api.index_table (MEDIAFLOW_API__INDEX_TABLE)".into(),
                ));
            };
            let runtime =
                tokio::runtime::Runtime::new().map_err(|e| AdminError::Usage(e.to_string()))?;
            runtime.block_on(async {
                let client = aws_sdk_dynamodb::Client::new(&crate::aws::sdk_config().await);
                create_table(&client, table).await
            })?;
            println!("created DynamoDB table {table}");
            Ok(())
        }
    }
}

/// `mediaflow jobs …`.
pub fn jobs(cmd: JobsCommand) -> Result<(), AdminError> {
    match cmd {
        JobsCommand::List {
            status,
            limit,
            config,
        } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(
                    JobStatus::parse(s)
                        .ok_or_else(|| AdminError::Usage(format!("unknown status {s:?}")))?,
                ),
            };
            let page = open(config.as_deref())?.list(status, limit.clamp(1, 1000), None)?;
            for j in page.jobs {
                let source = j.sources.first().map(String::as_str).unwrap_or("");
                println!(
                    "{}  {:<15} {:>3.0}%  {}  {:<12} {source}",
                    j.id,
                    j.status.name(),
                    j.percent,
                    date(j.created_ms),
                    j.profile
                );
            }
            Ok(())
        }
        JobsCommand::Show { id, config } => {
            let job = open(config.as_deref())?
                .get(&id)?
                .ok_or_else(|| AdminError::Index(IndexError::NotFound(id.clone())))?;
            println!("{}", serde_json::to_string_pretty(&job).unwrap_or_default());
            Ok(())
        }
        JobsCommand::Cancel { id, config } => {
            let job = open(config.as_deref())?.update(&id, &Change::CancelRequested)?;
            match job.status {
                JobStatus::Canceled => println!("{id}: canceled"),
                _ => println!(
                    "{id}: cancel requested (the worker running it stops it within about a second)"
                ),
            }
            Ok(())
        }
    }
}
