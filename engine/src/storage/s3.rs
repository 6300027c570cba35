//! The S3 object store (`aws-sdk-s3`, one HTTP stack, checksums on): GETs stream to a temp file
//! pinned to the event's ETag (`If-Match`), outputs are PUT with a CRC32 checksum, and the
//! manifest is written with `If-None-Match: *` so exactly one writer wins. Objects from
//! [`Multipart::threshold_bytes`] up go as a multipart upload (parts sent a few at a time, each
//! with its CRC32), and any failure aborts the upload so no parts are left behind. Listings
//! (`ListObjectsV2`) follow continuation tokens to the last page. The SDK is async; these calls
//! block on the runtime from the worker's blocking threads.

use super::{ObjectInfo, Storage, StorageError, validate_key};
use crate::error::ErrorClass;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use std::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;

pub use crate::config::{S3_MAX_PART_BYTES as MAX_PART_BYTES, S3_MIN_PART_BYTES as MIN_PART_BYTES};
/// S3's most parts in one upload.
const MAX_PARTS: u64 = 10_000;
/// Parts in flight at once for one object.
const PARTS_IN_FLIGHT: usize = 4;

/// When and how objects are uploaded in parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multipart {
    /// Objects at least this large go up as a multipart upload.
    pub threshold_bytes: u64,
    /// Size of every part but the last ([`MIN_PART_BYTES`]..=[`MAX_PART_BYTES`]; raised if the
    /// object would need more than 10,000 parts).
    pub part_bytes: u64,
}

impl Default for Multipart {
    fn default() -> Self {
        Self::of(&crate::config::WorkerConfig::default())
    }
}

impl Multipart {
    /// The multipart settings of `worker`.
    pub fn of(worker: &crate::config::WorkerConfig) -> Self {
        Self {
            threshold_bytes: worker.s3_multipart_threshold_bytes,
            part_bytes: worker.s3_part_bytes,
        }
    }

    /// The part size for an object of `len` bytes: within S3's limits, ≤ 10,000 parts.
    fn part_size(&self, len: u64) -> u64 {
        self.part_bytes
            .clamp(MIN_PART_BYTES, MAX_PART_BYTES)
            .max(len.div_ceil(MAX_PARTS))
    }
}

/// One S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    runtime: Handle,
    multipart: Multipart,
}

fn etag_of(e: Option<&str>) -> String {
    e.unwrap_or_default().trim_matches('"').to_string()
}

/// Class an SDK error. A request S3 refuses as malformed or too large for any object (400,
/// 405, 411, 413) is permanent; everything else — 5xx, throttling, timeouts, the network, and
/// also 403 or a missing bucket, which an operator fixes — is transient: the job is retried and
/// dead-lettered with the reason, never recorded as the input's failure.
fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(
    context: &str,
    e: &SdkError<E, HttpResponse>,
) -> StorageError {
    let (class, detail) = match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("error");
            let permanent = matches!(status, 400 | 405 | 411 | 413) && !code.contains("Timeout");
            (
                if permanent {
                    ErrorClass::Permanent
                } else {
                    ErrorClass::Transient
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
            multipart: Multipart::default(),
        }
    }

    /// The same bucket with other multipart settings.
    pub fn with_multipart(mut self, multipart: Multipart) -> Self {
        self.multipart = multipart;
        self
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

    /// Whether `data` goes up in parts.
    fn is_multipart(&self, data: &[u8]) -> bool {
        data.len() as u64 >= self.multipart.threshold_bytes
    }

    /// Upload `data` in parts (`If-None-Match: *` on completion when `if_absent`); `Ok(None)`
    /// if the object already existed. Any failure aborts the upload.
    async fn put_multipart(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
        if_absent: bool,
    ) -> Result<Option<ObjectInfo>, StorageError> {
        let uri = self.uri(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| classify(&format!("starting multipart upload of {uri}"), &e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(StorageError::Failed {
                message: format!("starting multipart upload of {uri}: no upload id returned"),
                class: ErrorClass::Transient,
            });
        };
        let result = self
            .upload_parts_and_complete(key, &upload_id, data, if_absent)
            .await;
        if !matches!(result, Ok(Some(_))) {
            // Failed, or someone else's object won: leave no parts behind.
            let abort = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            match abort {
                Ok(_) => tracing::info!(%uri, %upload_id, "multipart upload aborted"),
                Err(e) => tracing::error!(
                    %uri,
                    %upload_id,
                    error = %classify("aborting", &e),
                    "could not abort a multipart upload: its parts stay until a lifecycle rule removes them"
                ),
            }
        }
        result
    }

    async fn upload_parts_and_complete(
        &self,
        key: &str,
        upload_id: &str,
        data: &[u8],
        if_absent: bool,
    ) -> Result<Option<ObjectInfo>, StorageError> {
        let uri = self.uri(key);
        let part_size = self.multipart.part_size(data.len() as u64) as usize;
        let mut chunks = data.chunks(part_size.max(1)).enumerate();
        let mut uploads = tokio::task::JoinSet::new();
        let mut parts = Vec::new();
        loop {
            while uploads.len() < PARTS_IN_FLIGHT {
                let Some((i, chunk)) = chunks.next() else {
                    break;
                };
                let number = i as i32 + 1;
                let request = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk.to_vec()))
                    .checksum_algorithm(ChecksumAlgorithm::Crc32);
                uploads.spawn(async move { (number, request.send().await) });
            }
            let Some(joined) = uploads.join_next().await else {
                break;
            };
            let (number, sent) = joined.map_err(|e| StorageError::Failed {
                message: format!("uploading a part of {uri}: {e}"),
                class: ErrorClass::Transient,
            })?;
            // On error the JoinSet is dropped here, cancelling the other parts in flight.
            let out =
                sent.map_err(|e| classify(&format!("uploading part {number} of {uri}"), &e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                    .build(),
            );
        }
        parts.sort_by_key(|p| p.part_number());
        let mut complete = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if if_absent {
            complete = complete.if_none_match("*");
        }
        match complete.send().await {
            Ok(out) => Ok(Some(ObjectInfo {
                bytes: data.len() as u64,
                etag: etag_of(out.e_tag()),
            })),
            Err(e) if if_absent && matches!(Self::status_of(&e), Some(412 | 409)) => Ok(None),
            Err(e) => Err(classify(
                &format!("completing multipart upload of {uri}"),
                &e,
            )),
        }
    }
}

impl Storage for S3Storage {
    fn put(&self, key: &str, data: &[u8], content_type: &str) -> Result<ObjectInfo, StorageError> {
        validate_key(key)?;
        if self.is_multipart(data) {
            return self
                .runtime
                .block_on(self.put_multipart(key, data, content_type, false))?
                .ok_or_else(|| StorageError::Failed {
                    message: format!("PUT {}: multipart upload not completed", self.uri(key)),
                    class: ErrorClass::Transient,
                });
        }
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
        if self.is_multipart(data) {
            return self
                .runtime
                .block_on(self.put_multipart(key, data, content_type, true));
        }
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

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        self.runtime
            .block_on(
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| classify(&format!("DELETE {}", self.uri(key)), &e))
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

    fn list(&self, prefix: &str) -> Result<Vec<(String, ObjectInfo)>, StorageError> {
        let context = || format!("LIST s3://{}/{prefix}", self.bucket);
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| classify(&context(), &e))?;
                for o in page.contents() {
                    if let Some(key) = o.key() {
                        out.push((
                            key.to_string(),
                            ObjectInfo {
                                bytes: o.size().unwrap_or(0).max(0) as u64,
                                etag: etag_of(o.e_tag()),
                            },
                        ));
                    }
                }
                match page.next_continuation_token() {
                    Some(next) if page.is_truncated() == Some(true) => {
                        token = Some(next.to_string())
                    }
                    _ => break,
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_stay_within_s3_limits() {
        let m = Multipart {
            threshold_bytes: 1,
            part_bytes: 1024,
        };
        assert_eq!(m.part_size(10), MIN_PART_BYTES, "raised to S3's minimum");
        let m = Multipart::default();
        assert_eq!(m.part_size(100 << 20), 8 << 20);
        let huge: u64 = 200 * 1024 * 1024 * 1024;
        assert!(
            huge.div_ceil(m.part_size(huge)) <= MAX_PARTS,
            "at most 10,000 parts"
        );
    }
}
