//! Multipart uploads: an upload of at least `api.multipart_threshold_bytes` comes in parts,
//! each PUT to its own URL — on AWS the presigned `UploadPart` URLs of one S3 multipart upload
//! (each bound to its part's size), locally `serve`'s own
//! `PUT /v1/uploads/{id}/parts/{n}?token=…` — and is finished by
//! `POST /v1/uploads/{id}/complete?token=…` with every part's number and the `ETag` its PUT
//! answered (S3's own model: the client names what it sent), which assembles the object only
//! when every part is there as named: S3's `CompleteMultipartUpload` (whose event starts the
//! job), or locally the parts joined, stored and the event enqueued. A part may be sent again,
//! so a client retries a failed part alone. The parts of an upload that expires are dropped.

use super::ApiState;
use super::error::{
    ApiError, BadRequest, Conflict, ErrorBody, Forbidden, Json, NotFound, Stalled, TooLarge,
    Unavailable,
};
use super::jobs::{JobView, view};
use super::uploads::{TokenQuery, awaiting, land, pending, receive_body, scratch_dir};
use crate::index::record::{MultipartRef, UploadRef};
use crate::index::{Change, JobRecord};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

/// S3's most parts in one upload.
const MAX_PARTS: u64 = 10_000;

/// Where one part of a multipart upload goes.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartTarget {
    /// The part's number, from 1.
    number: u32,
    /// Its exact size in bytes.
    bytes: u64,
    /// Where to `PUT` it.
    url: String,
}

/// A part stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartReceived {
    /// The part's number.
    number: u32,
    /// Its size in bytes.
    bytes: u64,
    /// Its digest, as the `ETag` header gives it.
    etag: String,
}

/// The parts of a multipart upload and how to finish it.
#[derive(Debug)]
pub(super) struct Parts {
    /// The size of every part but the last.
    pub part_bytes: u64,
    /// The parts, in order.
    pub parts: Vec<PartTarget>,
    /// `POST` here once every part is sent.
    pub complete_url: String,
}

/// Make `record`'s upload multipart; the part URLs and the completion URL for the client.
pub(super) async fn start(
    state: &Arc<ApiState>,
    headers: &HeaderMap,
    record: &mut JobRecord,
) -> Result<Parts, ApiError> {
    let api = &state.config.api;
    let Some(upload) = record.upload.as_mut() else {
        return Err(ApiError::invalid("not an upload"));
    };
    let mut mp = MultipartRef {
        part_bytes: api
            .multipart_part_bytes
            .max(upload.bytes.div_ceil(MAX_PARTS)),
        s3_upload_id: None,
    };
    let token = state.auth.token("upload", &upload.id, upload.expires_ms);
    let base = format!("{}/v1/uploads/{}", state.public_url(headers), upload.id);
    let numbers = 1..=mp.parts(upload.bytes);
    let part = |n: u32, url: String| PartTarget {
        number: n,
        bytes: mp.part_len(upload.bytes, n).unwrap_or(0),
        url,
    };
    let parts: Vec<PartTarget> = match &state.s3 {
        None => numbers
            .map(|n| part(n, format!("{base}/parts/{n}?token={token}")))
            .collect(),
        Some(s3) => {
            let s3_id = create_s3(s3, upload).await?;
            let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(
                api.upload_expiry_secs,
            ))
            .map_err(|e| ApiError::unavailable(format!("presigning: {e}")))?;
            let mut parts = Vec::new();
            for n in numbers {
                let len = mp.part_len(upload.bytes, n).unwrap_or(0);
                let url = s3
                    .upload_part()
                    .bucket(&upload.bucket)
                    .key(&upload.key)
                    .upload_id(&s3_id)
                    .part_number(n as i32)
                    .content_length(len as i64)
                    .presigned(cfg.clone())
                    .await
                    .map_err(|e| ApiError::unavailable(format!("presigning part {n}: {e}")))?;
                parts.push(part(n, url.uri().to_string()));
            }
            mp.s3_upload_id = Some(s3_id);
            parts
        }
    };
    let answer = Parts {
        part_bytes: mp.part_bytes,
        parts,
        complete_url: format!("{base}/complete?token={token}"),
    };
    upload.multipart = Some(mp);
    Ok(answer)
}

/// Start the S3 multipart upload; its id.
async fn create_s3(s3: &aws_sdk_s3::Client, upload: &UploadRef) -> Result<String, ApiError> {
    let created = s3
        .create_multipart_upload()
        .bucket(&upload.bucket)
        .key(&upload.key)
        .content_type(&upload.content_type)
        .send()
        .await
        .map_err(|e| {
            ApiError::unavailable(format!(
                "starting the S3 multipart upload: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ))
        })?;
    created
        .upload_id()
        .map(str::to_string)
        .ok_or_else(|| ApiError::unavailable("S3 gave no multipart upload id"))
}

/// The multipart description of `upload`, or 409 for a single-PUT upload.
fn parts_of(upload: &UploadRef) -> Result<&MultipartRef, ApiError> {
    upload.multipart.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this upload is one PUT to its URL, not multipart",
        )
    })
}

/// Where the local target keeps the parts of upload `id`.
fn parts_dir(state: &ApiState, id: &str) -> std::path::PathBuf {
    scratch_dir(state).join(format!("{id}.parts"))
}

/// `PUT /v1/uploads/{id}/parts/{n}?token=…` (local mode): one part's bytes, exactly its size.
#[utoipa::path(
    put,
    path = "/v1/uploads/{id}/parts/{n}",
    operation_id = "put_upload_part",
    tag = "uploads",
    summary = "Send one part of a multipart upload (local mode)",
    params(
        ("id" = String, Path, description = "The upload's id"),
        ("n" = u32, Path, description = "The part's number, from 1"),
        ("token" = String, Query, description = "The token in the part's URL")
    ),
    request_body(content = [u8], content_type = "*/*", description = "The part: exactly its `bytes`"),
    security(()),
    responses(
        (status = 200, description = "Stored (a part sent again replaces the earlier one)", body = PartReceived,
            headers(("ETag" = String, description = "The part's digest"))),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 408, response = Stalled),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 503, response = Unavailable)
    )
)]
pub async fn receive_part(
    State(state): State<Arc<ApiState>>,
    Path((id, number)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, upload) = awaiting(&state, &id, q.token.as_deref()).await?;
    let mp = parts_of(&upload)?;
    let Some((n, len)) = number
        .parse::<u32>()
        .ok()
        .and_then(|n| Some((n, mp.part_len(upload.bytes, n)?)))
    else {
        return Err(ApiError::not_found(&format!(
            "such part: this upload's parts are 1..={}",
            mp.parts(upload.bytes)
        )));
    };
    let (file, sha256) = receive_body(&state, body, len).await?;
    let dir = parts_dir(&state, &id);
    let io = |e: std::io::Error| ApiError::unavailable(format!("storing part {n}: {e}"));
    std::fs::create_dir_all(&dir).map_err(io)?;
    let digest = &sha256[..32];
    file.persist(dir.join(part_name(n, digest)))
        .map_err(|e| io(e.error))?;
    let etag = format!("\"{digest}\"");
    Ok((
        StatusCode::OK,
        [(header::ETAG, etag.clone())],
        axum::Json(PartReceived {
            number: n,
            bytes: len,
            etag,
        }),
    )
        .into_response())
}

/// `POST /v1/uploads/{id}/complete?token=…`: assemble the parts once all are there.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/complete",
    operation_id = "complete_upload",
    tag = "uploads",
    summary = "Finish a multipart upload",
    description = "Names every part with the `ETag` its PUT answered; the object is assembled only when each is there as named, which starts the job. 409 `incomplete` names a part that is missing or not as named: send it and complete again.",
    params(
        ("id" = String, Path, description = "The upload's id"),
        ("token" = String, Query, description = "The token in `complete_url`")
    ),
    request_body = Completion,
    security(()),
    responses(
        (status = 200, description = "Assembled; the job is queued", body = JobView),
        (status = 400, response = BadRequest),
        (status = 403, description = "A wrong or expired token", body = ErrorBody),
        (status = 404, description = "No such upload", body = ErrorBody),
        (status = 409, description = "A part is missing or not as named, or the upload is finished", body = ErrorBody),
        (status = 422, description = "A part listed twice, or one the upload does not have", body = ErrorBody),
        (status = 503, response = Unavailable)
    )
)]
pub async fn complete(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    Json(body): Json<Completion>,
) -> Result<Response, ApiError> {
    let record = match state.s3.clone() {
        Some(s3) => {
            let (_, upload) = pending(&state, &id, q.token.as_deref()).await?;
            let named = named_parts(&upload, &body)?;
            complete_s3(&state, &s3, &upload, named).await?
        }
        None => {
            let (_, upload) = awaiting(&state, &id, q.token.as_deref()).await?;
            let named = named_parts(&upload, &body)?;
            complete_local(&state, upload, named).await?
        }
    };
    Ok((
        StatusCode::OK,
        axum::Json(view(&state, &headers, &record).await),
    )
        .into_response())
}

/// `POST /v1/uploads/{id}/complete`: the parts as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// Every part, each once.
    parts: Vec<SentPart>,
}

/// A part as its PUT answered.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SentPart {
    /// The part's number.
    number: u32,
    /// The `ETag` header its PUT answered (quotes and all).
    etag: String,
}

/// The ETag of each part 1..=N, in order, or 409 naming the first part not listed.
fn named_parts(upload: &UploadRef, body: &Completion) -> Result<Vec<String>, ApiError> {
    let mp = parts_of(upload)?;
    let total = mp.parts(upload.bytes);
    if let Some(p) = body
        .parts
        .iter()
        .find(|p| mp.part_len(upload.bytes, p.number).is_none())
    {
        return Err(ApiError::unprocessable(format!(
            "there is no part {}: this upload's parts are 1..={total}",
            p.number
        )));
    }
    (1..=total)
        .map(|n| {
            let mut named = body.parts.iter().filter(|p| p.number == n);
            match (named.next(), named.next()) {
                (Some(p), None) => Ok(p.etag.clone()),
                (Some(_), Some(_)) => {
                    Err(ApiError::unprocessable(format!("part {n} is listed twice")))
                }
                (None, _) => Err(incomplete(format!("part {n} of {total} is not listed"))),
            }
        })
        .collect()
}

/// 409 `incomplete`: what is wrong, and what to do.
fn incomplete(problem: String) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "incomplete",
        format!(
            "{problem}: send the part to its URL, then complete again with the ETag it answered"
        ),
    )
}

/// A local part's file name: its number and digest.
fn part_name(n: u32, digest: &str) -> String {
    format!("{n:05}.{digest}")
}

/// Join the local parts named by `etags` into the upload's object and start the job.
async fn complete_local(
    state: &Arc<ApiState>,
    upload: UploadRef,
    etags: Vec<String>,
) -> Result<JobRecord, ApiError> {
    let mp = parts_of(&upload)?.clone();
    let dir = parts_dir(state, &upload.id);
    let scratch = scratch_dir(state);
    let whole = {
        let upload = upload.clone();
        let dir = dir.clone();
        state
            .blocking(move |_| {
                let io = |e: std::io::Error| ApiError::unavailable(format!("joining parts: {e}"));
                let total = mp.parts(upload.bytes);
                let mut files = Vec::with_capacity(etags.len());
                for (n, etag) in (1..=total).zip(&etags) {
                    let digest = etag.trim_matches('"');
                    let ok = digest.len() == 32 && digest.bytes().all(|b| b.is_ascii_hexdigit());
                    let file = dir.join(part_name(n, digest));
                    let got = std::fs::metadata(&file).ok().map(|m| m.len());
                    if !ok || got != mp.part_len(upload.bytes, n) {
                        return Err(incomplete(format!(
                            "part {n} of {total} with ETag {etag} has not arrived"
                        )));
                    }
                    files.push(file);
                }
                std::fs::create_dir_all(&scratch).map_err(io)?;
                let mut whole = tempfile::NamedTempFile::new_in(&scratch).map_err(io)?;
                for file in files {
                    let mut part = std::fs::File::open(file).map_err(io)?;
                    std::io::copy(&mut part, &mut whole).map_err(io)?;
                }
                Ok(whole)
            })
            .await?
    };
    let record = land(state, upload, whole).await?;
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        tracing::warn!(error = %e, dir = %dir.display(), "could not remove an upload's parts");
    }
    Ok(record)
}

/// Complete the S3 multipart upload with the parts as named (S3 checks each is there with
/// that ETag; the presigned URLs bound their sizes); its event starts the job.
async fn complete_s3(
    state: &Arc<ApiState>,
    s3: &aws_sdk_s3::Client,
    upload: &UploadRef,
    etags: Vec<String>,
) -> Result<JobRecord, ApiError> {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let mp = parts_of(upload)?;
    let Some(s3_id) = &mp.s3_upload_id else {
        return Err(ApiError::unavailable("the upload has no S3 multipart id"));
    };
    let parts = etags
        .into_iter()
        .zip(1..)
        .map(|(etag, n)| CompletedPart::builder().part_number(n).e_tag(etag).build())
        .collect();
    let completed = s3
        .complete_multipart_upload()
        .bucket(&upload.bucket)
        .key(&upload.key)
        .upload_id(s3_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await;
    if let Err(e) = completed {
        let code = e.code().unwrap_or_default().to_string();
        return Err(match code.as_str() {
            "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" => {
                incomplete(format!("S3 refused the parts as named ({code})"))
            }
            "NoSuchUpload" => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "S3 no longer has this multipart upload: it was completed or aborted",
            ),
            _ => ApiError::unavailable(format!(
                "completing the S3 multipart upload: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )),
        });
    }
    let id = upload.id.clone();
    state
        .blocking(move |s| Ok(s.index.update(&id, &Change::Uploaded)?))
        .await
}

/// Drop the parts of an `upload` that will not be completed (it expired).
pub(super) async fn abort(state: &ApiState, upload: &UploadRef) {
    let Some(mp) = &upload.multipart else { return };
    match (&state.s3, &mp.s3_upload_id) {
        (Some(s3), Some(s3_id)) => {
            let aborted = s3
                .abort_multipart_upload()
                .bucket(&upload.bucket)
                .key(&upload.key)
                .upload_id(s3_id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(
                    upload = %upload.id,
                    error = %aws_sdk_s3::error::DisplayErrorContext(e),
                    "could not abort an expired multipart upload (the bucket's lifecycle rule will)"
                );
            }
        }
        _ => {
            let _ = tokio::fs::remove_dir_all(parts_dir(state, &upload.id)).await;
        }
    }
}
