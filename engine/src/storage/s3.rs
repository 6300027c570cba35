//! The S3 object store (`aws-sdk-s3`, one HTTP stack, checksums on): GETs stream to a temp file
//! pinned to the event's ETag (`If-Match`), outputs are PUT with a CRC32 checksum, and the
//! manifest is written with `If-None-Match: *` so exactly one writer wins. The SDK is async;
//! these calls block on the runtime from the worker's blocking threads.

use super::{ObjectInfo, Storage, StorageError, validate_key};
use crate::error::ErrorClass;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use std::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;

/// One S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    runtime: Handle,
}

fn etag_of(e: Option<&str>) -> String {
    e.unwrap_or_default().trim_matches('"').to_string()
}

/// Class an SDK error: throttling, 5xx, timeouts and network failures are transient.
fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(
    context: &str,
    e: &SdkError<E, HttpResponse>,
) -> StorageError {
    let (class, detail) = match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("error");
            let transient = status >= 500
                || code.contains("Throttl")
                || code == "SlowDown"
                || code == "RequestTimeout";
            (
                if transient {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                },
                format!("{code} ({status}): {}", s.err().message().unwrap_or("")),
            )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => (
            ErrorClass::Transient,
            format!("{e:?}").chars().take(300).collect(),
        ),
        other => (
            ErrorClass::Permanent,
            format!("{other:?}").chars().take(300).collect(),
        ),
    };
    StorageError::Failed {
        message: format!("{context}: {detail}"),
        class,
    }
}

impl S3Storage {
    /// The bucket `bucket`, called through `client` on `runtime`.
    pub fn new(client: Client, bucket: impl Into<String>, runtime: Handle) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            runtime,
        }
    }

    fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
        match e {
            SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
            _ => None,
        }
    }
}

impl S3Storage {
    /// A PUT of `data` at `key` with a CRC32 checksum.
    fn put_request(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(data.to_vec()))
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
    }
}

impl Storage for S3Storage {
    fn put(&self, key: &str, data: &[u8], content_type: &str) -> Result<ObjectInfo, StorageError> {
        validate_key(key)?;
        let out = self
            .runtime
            .block_on(self.put_request(key, data, content_type).send())
            .map_err(|e| classify(&format!("PUT {}", self.uri(key)), &e))?;
        Ok(ObjectInfo {
            bytes: data.len() as u64,
            etag: etag_of(out.e_tag()),
        })
    }

    fn put_if_absent(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<Option<ObjectInfo>, StorageError> {
        validate_key(key)?;
        let result = self.runtime.block_on(
            self.put_request(key, data, content_type)
                .if_none_match("*")
                .send(),
        );
        match result {
            Ok(out) => Ok(Some(ObjectInfo {
                bytes: data.len() as u64,
                etag: etag_of(out.e_tag()),
            })),
            // 412: someone else wrote it first; 409: a concurrent conditional write is in progress.
            Err(e) if matches!(Self::status_of(&e), Some(412 | 409)) => Ok(None),
            Err(e) => Err(classify(&format!("PUT (if absent) {}", self.uri(key)), &e)),
        }
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        validate_key(key)?;
        self.runtime.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| {
                    if Self::status_of(&e) == Some(404) {
                        StorageError::NotFound(self.uri(key))
                    } else {
                        classify(&format!("GET {}", self.uri(key)), &e)
                    }
                })?;
            let bytes = out.body.collect().await.map_err(|e| StorageError::Failed {
                message: format!("reading {}: {e}", self.uri(key)),
                class: ErrorClass::Transient,
            })?;
            Ok(bytes.into_bytes().to_vec())
        })
    }

    fn get_to_file(
        &self,
        key: &str,
        dest: &Path,
        etag: Option<&str>,
    ) -> Result<ObjectInfo, StorageError> {
        validate_key(key)?;
        self.runtime.block_on(async {
            let mut req = self.client.get_object().bucket(&self.bucket).key(key);
            if let Some(etag) = etag {
                req = req.if_match(format!("\"{etag}\""));
            }
            let out = req.send().await.map_err(|e| match Self::status_of(&e) {
                Some(404) => StorageError::NotFound(self.uri(key)),
                Some(412) => StorageError::Stale {
                    uri: self.uri(key),
                    expected: etag.unwrap_or_default().to_string(),
                    found: "a newer version".into(),
                },
                _ => classify(&format!("GET {}", self.uri(key)), &e),
            })?;
            let info = ObjectInfo {
                bytes: out.content_length().unwrap_or(0).max(0) as u64,
                etag: etag_of(out.e_tag()),
            };
            let transient = |e: std::io::Error| StorageError::Failed {
                message: format!("streaming {} to disk: {e}", self.uri(key)),
                class: ErrorClass::Transient,
            };
            let mut file = tokio::fs::File::create(dest).await.map_err(transient)?;
            let mut body = out.body.into_async_read();
            tokio::io::copy(&mut body, &mut file)
                .await
                .map_err(transient)?;
            file.flush().await.map_err(transient)?;
            Ok(info)
        })
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        validate_key(key)?;
        match self.runtime.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        ) {
            Ok(out) => Ok(Some(ObjectInfo {
                bytes: out.content_length().unwrap_or(0).max(0) as u64,
                etag: etag_of(out.e_tag()),
            })),
            Err(e) if Self::status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(classify(&format!("HEAD {}", self.uri(key)), &e)),
        }
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}
