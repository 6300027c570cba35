//! Uploads: `POST /v1/uploads` makes a job (`awaiting_upload`) and says where its bytes go —
//! on AWS an S3 presigned PUT bound to the declared size and type, locally `serve`'s own
//! `PUT /v1/uploads/{id}?token=…` — under `<api.upload_prefix><job id>/<file name>` in the
//! source bucket. The object landing starts the job through the usual S3 event (locally,
//! `serve` enqueues the event S3 would send). The local target streams the body to a scratch
//! file, bounded by the declared size and a per-chunk timeout, and stores it only when it is
//! whole and exactly as declared. Uploads that do not arrive in time become `expired`.

use super::ApiState;
use super::error::{
    ApiError, BadRequest, Conflict, Forbidden, Json, Stalled, TooLarge, Unauthorized, Unavailable,
    Unprocessable, UnsupportedType,
};
use super::jobs::{JobView, known_profile, load, view};
use super::multipart;
use crate::index::record::UploadRef;
use crate::index::{Change, JobRecord, JobStatus, now_ms};
use crate::shutdown::CancellationToken;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

/// Longest file name accepted, in bytes.
const MAX_FILENAME: usize = 255;

/// `POST /v1/uploads`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUpload {
    /// The file's name: one path segment, 1 to 255 bytes, no control characters.
    #[schema(example = "holiday.mp4")]
    filename: String,
    /// Its content type, as the `PUT` will send it.
    #[schema(example = "video/mp4")]
    content_type: String,
    /// Its exact size in bytes.
    bytes: u64,
    /// The profile to process it with (default: `default_profile`).
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

/// The upload's name, type and size, against its profile, `[api]` and `[limits]`.
fn check_upload(state: &ApiState, body: &NewUpload, profile: &str) -> Result<(), ApiError> {
    check_filename(&body.filename)?;
    let api = &state.config.api;
    let limits = state.config.profiles.get(profile);
    let (types, types_from) = match limits.filter(|p| !p.upload_content_types.is_empty()) {
        Some(p) => (
            &p.upload_content_types,
            format!("profiles.{profile}.upload_content_types"),
        ),
        None => (&api.content_types, "api.content_types".to_string()),
    };
    if !crate::config::content_type_allowed(types, &body.content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type {:?} is not accepted for profile {profile:?} ({types_from}: {})",
                body.content_type,
                types.join(", ")
            ),
        ));
    }
    let (max, max_from) = match limits.and_then(|p| p.max_upload_bytes) {
        Some(m) => (m, format!("profiles.{profile}.max_upload_bytes")),
        None => (api.max_upload_bytes, "api.max_upload_bytes".to_string()),
    };
    let max = max.min(state.config.limits.max_input_bytes);
    if body.bytes > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{} bytes is over the limit of {max} for profile {profile:?} ({max_from}, limits.max_input_bytes)",
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
#[utoipa::path(
    post,
    path = "/v1/uploads",
    operation_id = "create_upload",
    tag = "uploads",
    summary = "Create an upload and its job",
    description = "Makes a job (`awaiting_upload`) and says where its bytes go: one `PUT` to `url`, or (from `api.multipart_threshold_bytes`) each of `parts` to its URL and then `POST complete_url`. On AWS the URLs are S3 presigned URLs bound to the declared size and type; locally they are this server's, with a short-lived token. The job starts when the bytes have landed and expires if they do not arrive in time.",
    request_body = NewUpload,
    responses(
        (status = 201, description = "The upload and its job", body = UploadTarget),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedType),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable)
    )
)]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Json(body): Json<NewUpload>,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, "write").await?;
    let profile = match &body.profile {
        Some(p) => known_profile(&state, p)?,
        None => state.config.default_profile.clone(),
    };
    check_upload(&state, &body, &profile)?;
    let api = &state.config.api;
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
        multipart: None,
    });
    let mut answer = UploadTarget {
        upload_id: id.clone(),
        job_id: id.clone(),
        method: "PUT",
        url: None,
        headers: [("Content-Type".to_string(), body.content_type.clone())].into(),
        part_bytes: None,
        parts: Vec::new(),
        complete_url: None,
        expires_at: String::new(),
        job: None,
    };
    if body.bytes >= api.multipart_threshold_bytes {
        let parts = multipart::start(&state, &headers, &mut record).await?;
        answer.method = "multipart";
        answer.part_bytes = Some(parts.part_bytes);
        answer.parts = parts.parts;
        answer.complete_url = Some(parts.complete_url);
    } else {
        answer.url = Some(match &state.s3 {
            Some(s3) => presigned_put(s3, &record, api.upload_expiry_secs).await?,
            None => format!(
                "{}/v1/uploads/{id}?token={}",
                state.public_url(&headers),
                state.auth.token("upload", &id, expires_ms)
            ),
        });
    }
    let stored = record.clone();
    state
        .blocking(move |s| {
            s.index.create(&stored)?;
            Ok(())
        })
        .await?;
    let job = view(&state, &headers, &record).await;
    answer.expires_at = job.upload_expires_at().unwrap_or_default().to_string();
    answer.job = Some(job);
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// Where an upload's bytes go.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadTarget {
    /// The upload's id.
    upload_id: String,
    /// The job it starts (the same id).
    job_id: String,
    /// `PUT`: the whole file to `url`. `multipart`: each of `parts` to its URL, then `POST`
    /// to `complete_url`.
    #[schema(value_type = String, example = "PUT")]
    method: &'static str,
    /// Where to `PUT` the file (`method` `PUT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// Headers the `PUT` must carry.
    headers: std::collections::BTreeMap<String, String>,
    /// The size of every part but the last (`method` `multipart`).
    #[serde(skip_serializing_if = "Option::is_none")]
    part_bytes: Option<u64>,
    /// The parts (`method` `multipart`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parts: Vec<multipart::PartTarget>,
    /// `POST` here once every part is sent (`method` `multipart`).
    #[serde(skip_serializing_if = "Option::is_none")]
    complete_url: Option<String>,
    /// When the URLs stop working; the job expires if nothing arrived by then (RFC 3339).
    expires_at: String,
    /// The job, `awaiting_upload`.
    job: Option<JobView>,
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
#[utoipa::path(
    put,
    path = "/v1/uploads/{id}",
    operation_id = "put_upload",
    tag = "uploads",
    summary = "Send an upload's bytes (local mode)",
    params(
        ("id" = String, Path, description = "The upload's id"),
        ("token" = String, Query, description = "The token in the URL `POST /v1/uploads` gave")
    ),
    request_body(content = [u8], content_type = "*/*", description = "The file: exactly the declared bytes, with the declared `Content-Type`"),
    security(()),
    responses(
        (status = 200, description = "Stored; the job is queued", body = JobView),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 408, response = Stalled),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 503, response = Unavailable)
    )
)]
pub async fn receive(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, upload) = awaiting(&state, &id, q.token.as_deref()).await?;
    if upload.multipart.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this upload is multipart: PUT each part to its URL, then call its complete URL",
        ));
    }
    check_headers(&headers, &upload)?;
    let (file, _) = receive_body(&state, body, upload.bytes).await?;
    let queued = land(&state, upload, file).await?;
    Ok((
        StatusCode::OK,
        axum::Json(view(&state, &headers, &queued).await),
    )
        .into_response())
}

/// The local upload `id` still waiting for its bytes, if `token` is its upload token.
pub(super) async fn awaiting(
    state: &Arc<ApiState>,
    id: &str,
    token: Option<&str>,
) -> Result<(JobRecord, UploadRef), ApiError> {
    if state.s3.is_some() {
        return Err(ApiError::invalid(
            "on AWS uploads go to the presigned S3 URLs",
        ));
    }
    pending(state, id, token).await
}

/// The upload `id` still waiting for its bytes, if `token` is its upload token.
pub(super) async fn pending(
    state: &Arc<ApiState>,
    id: &str,
    token: Option<&str>,
) -> Result<(JobRecord, UploadRef), ApiError> {
    if !state
        .auth
        .verify("upload", id, token.unwrap_or_default(), now_ms())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the upload URL's token is missing, wrong or expired: ask POST /v1/uploads for a new one",
        ));
    }
    let job = load(state, id).await?;
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
    Ok((job, upload))
}

/// Store the whole upload `file` as its object, mark the job queued and enqueue the event S3
/// would send (local mode).
pub(super) async fn land(
    state: &Arc<ApiState>,
    upload: UploadRef,
    file: tempfile::NamedTempFile,
) -> Result<JobRecord, ApiError> {
    state
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
        .await
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

/// Stream `body` into a scratch file under the data directory: exactly `declared` bytes,
/// each piece within `api.upload_idle_timeout_secs`. Returns the file and its SHA-256 (hex).
pub(super) async fn receive_body(
    state: &ApiState,
    body: Body,
    declared: u64,
) -> Result<(tempfile::NamedTempFile, String), ApiError> {
    let io = |e: std::io::Error| ApiError::unavailable(format!("upload scratch space: {e}"));
    let dir = scratch_dir(state);
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut file = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
    let idle = Duration::from_secs(state.config.api.upload_idle_timeout_secs);
    let mut stream = body.into_data_stream();
    let mut digest = Sha256::new();
    let mut got: u64 = 0;
    loop {
        let next = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!(
                        "the upload stalled: nothing arrived for {} s (api.upload_idle_timeout_secs)",
                        idle.as_secs()
                    ),
                )
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the upload: {e}")))?;
        got += chunk.len() as u64;
        if got > declared {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is longer than the {declared} bytes declared"),
            ));
        }
        digest.update(&chunk);
        tokio::task::block_in_place(|| file.write_all(&chunk)).map_err(io)?;
    }
    if got != declared {
        return Err(ApiError::invalid(format!(
            "the body is {got} bytes, {declared} were declared"
        )));
    }
    file.flush().map_err(io)?;
    Ok((file, hex::encode(digest.finalize())))
}

/// Where the local upload target keeps bodies (and parts) until they are whole.
pub(super) fn scratch_dir(state: &ApiState) -> std::path::PathBuf {
    state.config.worker.data_dir.join("uploads.tmp")
}

/// Mark uploads that did not arrive in time `expired` (and drop their parts), every few
/// seconds until `stop`.
pub async fn expire(state: Arc<ApiState>, stop: CancellationToken) {
    let every = Duration::from_secs(state.config.api.upload_expiry_secs.clamp(1, 30));
    while !crate::shutdown::sleep_or_cancelled(&stop, every).await {
        let swept = state
            .blocking(|s| {
                let now = now_ms();
                let mut cursor = None;
                let mut expired = Vec::new();
                loop {
                    let page =
                        s.index
                            .list(Some(JobStatus::AwaitingUpload), 100, cursor.as_ref())?;
                    for job in &page.jobs {
                        if let Some(u) = job.upload.as_ref().filter(|u| u.expires_ms <= now) {
                            s.index.update(&job.id, &Change::Expire)?;
                            expired.push(u.clone());
                        }
                    }
                    match page.next {
                        Some(c) => cursor = Some(c),
                        None => return Ok(expired),
                    }
                }
            })
            .await;
        match swept {
            Ok(expired) if expired.is_empty() => {}
            Ok(expired) => {
                tracing::info!(
                    expired = expired.len(),
                    "uploads that never arrived are expired"
                );
                for upload in &expired {
                    multipart::abort(&state, upload).await;
                }
            }
            Err(e) => tracing::warn!(error = %e.message, "could not expire uploads"),
        }
    }
}
