//! Uploads: `POST /v1/uploads` makes a job (`awaiting_upload`) and says where its bytes go —
//! on AWS an S3 presigned PUT bound to the declared size and type, locally `serve`'s own
//! `PUT /v1/uploads/{id}?token=…` — under `<api.upload_prefix><job id>/<file name>` in the
//! source bucket. The object landing starts the job through the usual S3 event (locally,
//! `serve` enqueues the event S3 would send). The local target streams the body to a scratch
//! file, bounded by the declared size and a per-chunk timeout, and stores it only when it is
//! whole and exactly as declared. Uploads that do not arrive in time become `expired`.

use super::ApiState;
use super::error::{ApiError, Json};
use super::jobs::{known_profile, load, view};
use crate::index::record::UploadRef;
use crate::index::{Change, JobRecord, JobStatus, now_ms};
use crate::shutdown::CancellationToken;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// Longest file name accepted, in bytes.
const MAX_FILENAME: usize = 255;
/// How long the local target waits for the next piece of a body.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// `POST /v1/uploads`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUpload {
    filename: String,
    content_type: String,
    bytes: u64,
    profile: Option<String>,
}

/// A file name as it may appear in a key: one path segment, no control characters.
fn check_filename(name: &str) -> Result<(), ApiError> {
    let problem = if name.is_empty() || name.len() > MAX_FILENAME {
        Some(format!("must be 1..={MAX_FILENAME} bytes"))
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else if name.contains(['/', '\\']) || name == "." || name == ".." {
        Some("must be a plain file name, with no `/`, `\\`, `.` or `..`".into())
    } else {
        None
    };
    match problem {
        Some(p) => Err(ApiError::unprocessable(format!("filename {p}"))),
        None => Ok(()),
    }
}

/// The upload's name, type and size, against `[api]` and `[limits]`.
fn check_upload(state: &ApiState, body: &NewUpload) -> Result<(), ApiError> {
    check_filename(&body.filename)?;
    let api = &state.config.api;
    if !api.accepts(&body.content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type {:?} is not accepted (api.content_types: {})",
                body.content_type,
                api.content_types.join(", ")
            ),
        ));
    }
    let max = api
        .max_upload_bytes
        .min(state.config.limits.max_input_bytes);
    if body.bytes > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{} bytes is over the limit of {max} (api.max_upload_bytes, limits.max_input_bytes)",
                body.bytes
            ),
        ));
    }
    if body.bytes == 0 {
        return Err(ApiError::unprocessable("bytes must be greater than 0"));
    }
    Ok(())
}

/// `POST /v1/uploads`.
pub async fn create(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Json(body): Json<NewUpload>,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, "write").await?;
    check_upload(&state, &body)?;
    let api = &state.config.api;
    let profile = match &body.profile {
        Some(p) => known_profile(&state, p)?,
        None => state.config.default_profile.clone(),
    };
    let id = crate::index::new_id();
    let now = now_ms();
    let bucket = state.config.worker.source_bucket.clone();
    let key = format!("{}{id}/{}", api.upload_prefix, body.filename);
    let expires_ms = now + (api.upload_expiry_secs * 1000) as i64;
    let mut record = JobRecord::new(
        &id,
        JobStatus::AwaitingUpload,
        &profile,
        vec![format!("s3://{bucket}/{key}")],
        now,
    );
    record.output_bucket = state.config.worker.output_bucket.clone();
    record.upload = Some(UploadRef {
        id: id.clone(),
        bucket: bucket.clone(),
        key: key.clone(),
        bytes: body.bytes,
        content_type: body.content_type.clone(),
        expires_ms,
    });
    let url = match &state.s3 {
        Some(s3) => presigned_put(s3, &record, api.upload_expiry_secs).await?,
        None => format!(
            "{}/v1/uploads/{id}?token={}",
            state.public_url(&headers),
            state.auth.token("upload", &id, expires_ms)
        ),
    };
    let stored = record.clone();
    state
        .blocking(move |s| {
            s.index.create(&stored)?;
            Ok(())
        })
        .await?;
    let job = view(&state, &headers, &record).await;
    let answer = json!({
        "upload_id": id,
        "job_id": id,
        "method": "PUT",
        "url": url,
        "headers": {"Content-Type": body.content_type},
        "expires_at": job["upload"]["expires_at"],
        "job": job,
    });
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// An S3 presigned PUT bound to the upload's size and type.
async fn presigned_put(
    s3: &aws_sdk_s3::Client,
    job: &JobRecord,
    secs: u64,
) -> Result<String, ApiError> {
    let Some(u) = &job.upload else {
        return Err(ApiError::invalid("not an upload"));
    };
    let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(secs))
        .map_err(|e| ApiError::unavailable(format!("presigning: {e}")))?;
    let req = s3
        .put_object()
        .bucket(&u.bucket)
        .key(&u.key)
        .content_type(&u.content_type)
        .content_length(u.bytes as i64)
        .presigned(cfg)
        .await
        .map_err(|e| ApiError::unavailable(format!("presigning: {e}")))?;
    Ok(req.uri().to_string())
}

/// `?token=`.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    /// The short-lived token from the URL the API gave.
    pub token: Option<String>,
}

/// `PUT /v1/uploads/{id}?token=…` (local mode): the upload's bytes.
pub async fn receive(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let token = q.token.unwrap_or_default();
    if !state.auth.verify("upload", &id, &token, now_ms()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the upload URL's token is missing, wrong or expired: ask POST /v1/uploads for a new one",
        ));
    }
    if state.s3.is_some() {
        return Err(ApiError::invalid(
            "on AWS uploads go to the presigned S3 URL",
        ));
    }
    let job = load(&state, &id).await?;
    let Some(upload) = job.upload.clone() else {
        return Err(ApiError::not_found("such upload"));
    };
    if job.status != JobStatus::AwaitingUpload {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("the upload is {}: it takes no more bytes", job.status),
        ));
    }
    check_headers(&headers, &upload)?;
    let dir = state.config.worker.data_dir.join("uploads.tmp");
    let file = receive_body(body, &dir, upload.bytes).await?;
    let queued = state
        .blocking(move |s| {
            let store = s
                .buckets
                .bucket(&upload.bucket)
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
            let info = store
                .put_file(&upload.key, file.path(), &upload.content_type)
                .map_err(|e| ApiError::unavailable(format!("storing the upload: {e}")))?;
            let event = crate::job::s3_event::object_created(
                &upload.bucket,
                &upload.key,
                info.bytes,
                &info.etag,
            );
            let record = s.index.update(&upload.id, &Change::Uploaded)?;
            s.queue
                .send(&event)
                .map_err(|e| ApiError::unavailable(format!("queueing the job: {e}")))?;
            Ok(record)
        })
        .await?;
    Ok((
        StatusCode::OK,
        axum::Json(view(&state, &headers, &queued).await),
    )
        .into_response())
}

/// The request must say what the upload declared (as S3 checks a presigned PUT's signed
/// headers).
fn check_headers(headers: &HeaderMap, upload: &UploadRef) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.eq_ignore_ascii_case(&upload.content_type) {
        return Err(ApiError::invalid(format!(
            "Content-Type is {ct:?}, the upload declared {:?}",
            upload.content_type
        )));
    }
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len = len.to_str().ok().and_then(|l| l.parse::<u64>().ok());
        if len != Some(upload.bytes) {
            return Err(ApiError::invalid(format!(
                "Content-Length is not the {} bytes the upload declared",
                upload.bytes
            )));
        }
    }
    Ok(())
}

/// Stream `body` into a scratch file in `dir`: exactly `declared` bytes, each piece within
/// [`CHUNK_TIMEOUT`].
async fn receive_body(
    body: Body,
    dir: &std::path::Path,
    declared: u64,
) -> Result<tempfile::NamedTempFile, ApiError> {
    let io = |e: std::io::Error| ApiError::unavailable(format!("upload scratch space: {e}"));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let mut stream = body.into_data_stream();
    let mut got: u64 = 0;
    loop {
        let next = tokio::time::timeout(CHUNK_TIMEOUT, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    "the upload stalled: nothing arrived for 30 s",
                )
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the upload: {e}")))?;
        got += chunk.len() as u64;
        if got > declared {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is longer than the {declared} bytes the upload declared"),
            ));
        }
        tokio::task::block_in_place(|| file.write_all(&chunk)).map_err(io)?;
    }
    if got != declared {
        return Err(ApiError::invalid(format!(
            "the body is {got} bytes, the upload declared {declared}"
        )));
    }
    file.flush().map_err(io)?;
    Ok(file)
}

/// Mark uploads that did not arrive in time `expired`, every few seconds until `stop`.
pub async fn expire(state: Arc<ApiState>, stop: CancellationToken) {
    let every = Duration::from_secs(state.config.api.upload_expiry_secs.clamp(1, 30));
    while !crate::shutdown::sleep_or_cancelled(&stop, every).await {
        let swept = state
            .blocking(|s| {
                let now = now_ms();
                let mut cursor = None;
                let mut n = 0;
                loop {
                    let page =
                        s.index
                            .list(Some(JobStatus::AwaitingUpload), 100, cursor.as_ref())?;
                    for job in &page.jobs {
                        if job.upload.as_ref().is_some_and(|u| u.expires_ms <= now) {
                            s.index.update(&job.id, &Change::Expire)?;
                            n += 1;
                        }
                    }
                    match page.next {
                        Some(c) => cursor = Some(c),
                        None => return Ok(n),
                    }
                }
            })
            .await;
        match swept {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "uploads that never arrived are expired"),
            Err(e) => tracing::warn!(error = %e.message, "could not expire uploads"),
        }
    }
}
