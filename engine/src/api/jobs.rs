//! Jobs: create one (an explicit job message, DESIGN §2.5, honouring `Idempotency-Key`), read
//! one, list them newest first, cancel one; and the job as the API shows it (its outputs with
//! URLs a client can fetch).

use super::ApiState;
use super::error::{ApiError, Json};
use crate::index::{Change, Cursor, JobRecord, JobStatus, now_ms};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Most sources of one job (images to video).
const MAX_SOURCES: usize = 500;

/// `POST /v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// `s3://bucket/key` each.
    sources: Vec<String>,
    /// The profile (default: routed by the first source).
    profile: Option<String>,
}

/// A job id as the API accepts it in a path: the shape of the ids it hands out.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The job `id`, or 404.
pub(super) async fn load(state: &Arc<ApiState>, id: &str) -> Result<JobRecord, ApiError> {
    if !valid_id(id) {
        return Err(ApiError::not_found("such job"));
    }
    let id = id.to_string();
    state
        .blocking(move |s| {
            s.index
                .get(&id)?
                .ok_or_else(|| ApiError::not_found("such job"))
        })
        .await
}

/// `GET /v1/jobs/{id}`.
pub async fn show(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, "read").await?;
    let job = load(&state, &id).await?;
    Ok(axum::Json(view(&state, &headers, &job).await).into_response())
}

/// `GET /v1/jobs?status=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/jobs`.
pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, "read").await?;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            let names: Vec<&str> = JobStatus::ALL.iter().map(|s| s.name()).collect();
            ApiError::invalid(format!("unknown status {s:?}: one of {}", names.join(", ")))
        })?),
    };
    let limit = match q.limit.as_deref() {
        None => state.config.api.page_size,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| ApiError::invalid("limit must be 1..=100"))?,
    };
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            Cursor::decode(c)
                .ok_or_else(|| ApiError::invalid("cursor is not one this API gave"))?,
        ),
    };
    let page = state
        .blocking(move |s| Ok(s.index.list(status, limit, cursor.as_ref())?))
        .await?;
    let mut jobs = Vec::with_capacity(page.jobs.len());
    for job in &page.jobs {
        jobs.push(view(&state, &headers, job).await);
    }
    let next = page.next.map(|c| c.encode());
    Ok(axum::Json(json!({"jobs": jobs, "next_cursor": next})).into_response())
}

/// `POST /v1/jobs`: enqueue an explicit job.
pub async fn create(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Json(body): Json<NewJob>,
) -> Result<Response, ApiError> {
    let caller = state.auth.check(&headers, "write").await?;
    let sources = parse_sources(&body.sources)?;
    let profile = match &body.profile {
        Some(p) => known_profile(&state, p)?,
        None => state.config.default_profile.clone(),
    };
    let digest = hex::encode(Sha256::digest(
        serde_json::to_vec(&json!([body.sources, profile])).unwrap_or_default(),
    ));
    let id = match idempotency_key(&headers)? {
        Some(key) => {
            let h = Sha256::digest(format!("{}\0{key}", caller.name()).as_bytes());
            hex::encode(&h[..12])
        }
        None => crate::index::new_id(),
    };
    let now = now_ms();
    let mut record = JobRecord::new(&id, JobStatus::Queued, &profile, body.sources.clone(), now);
    record.request_digest = Some(digest.clone());
    record.output_bucket = state.config.worker.output_bucket.clone();
    let message = json!({
        "version": 1, "id": id, "profile": profile,
        "sources": sources.iter().map(|(b, k)| format!("s3://{b}/{k}")).collect::<Vec<_>>(),
    })
    .to_string();
    let (created, record) = state
        .blocking(move |s| {
            if !s.index.create(&record)? {
                let existing = s
                    .index
                    .get(&record.id)?
                    .ok_or_else(|| ApiError::unavailable("job vanished"))?;
                return Ok((false, existing));
            }
            enqueue(s, &record.id, &message, "the job")?;
            Ok((true, record))
        })
        .await?;
    if !created && record.request_digest.as_deref() != Some(digest.as_str()) {
        return Err(ApiError::unprocessable(
            "this Idempotency-Key was used with a different request",
        ));
    }
    let mut response = (
        StatusCode::CREATED,
        axum::Json(view(&state, &headers, &record).await),
    )
        .into_response();
    if !created {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// `POST /v1/jobs/{id}/cancel`.
pub async fn cancel(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, "write").await?;
    load(&state, &id).await?;
    let record = state
        .blocking(move |s| Ok(s.index.update(&id, &Change::CancelRequested)?))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(view(&state, &headers, &record).await),
    )
        .into_response())
}

/// `POST /v1/jobs/{id}/retry`: run a finished job again as a new run (same id; its outputs
/// under `run-N/`, the earlier run's kept until the new one is recorded), with the profile and
/// plugin versions current now.
pub async fn retry(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, "write").await?;
    load(&state, &id).await?;
    let record = state
        .blocking(move |s| {
            let record = s.index.update(&id, &Change::Retry)?;
            let message = json!({
                "version": 1, "id": record.id, "profile": record.profile,
                "sources": record.sources, "run": record.run,
            })
            .to_string();
            enqueue(s, &record.id, &message, "the retry")?;
            Ok(record)
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(view(&state, &headers, &record).await),
    )
        .into_response())
}

/// Send job `id`'s `message`; if it cannot be queued the record says so (failed,
/// `dead_lettered`) and the client gets 503 and may try again.
fn enqueue(s: &ApiState, id: &str, message: &str, what: &str) -> Result<(), ApiError> {
    s.queue.send(message).map(drop).map_err(|e| {
        let reason = format!("{what} could not be queued: {e}");
        let _ = s.index.update(
            id,
            &Change::DeadLettered {
                reason: reason.clone(),
            },
        );
        ApiError::unavailable(reason)
    })
}

/// The `Idempotency-Key` header, if sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key must be 1..=255 visible ASCII characters")
        })?;
    Ok(Some(v.to_string()))
}

/// `s3://bucket/key` sources as (bucket, key).
fn parse_sources(sources: &[String]) -> Result<Vec<(String, String)>, ApiError> {
    if sources.is_empty() || sources.len() > MAX_SOURCES {
        return Err(ApiError::unprocessable(format!(
            "sources: 1..={MAX_SOURCES} of them"
        )));
    }
    sources
        .iter()
        .map(|uri| {
            let (b, k) = crate::job::spec::parse_s3_uri(uri).ok_or_else(|| {
                ApiError::unprocessable(format!("source {uri:?} is not s3://bucket/key"))
            })?;
            crate::storage::validate_key(&k)
                .map_err(|e| ApiError::unprocessable(format!("source {uri:?}: {e}")))?;
            Ok((b, k))
        })
        .collect()
}

/// `p` if it is a profile, else 422 listing them.
pub(super) fn known_profile(state: &ApiState, p: &str) -> Result<String, ApiError> {
    if state.config.profiles.contains_key(p) {
        return Ok(p.to_string());
    }
    let names: Vec<&str> = state.config.profiles.keys().map(String::as_str).collect();
    Err(ApiError::unprocessable(format!(
        "unknown profile {p:?}: the profiles are {}",
        names.join(", ")
    )))
}

/// RFC 3339 (UTC) of `ms` since the epoch.
fn timestamp(ms: i64) -> String {
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
    DateTime::from_millis(ms)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}

/// The job as the API shows it.
pub(super) async fn view(state: &Arc<ApiState>, headers: &HeaderMap, job: &JobRecord) -> Value {
    let mut outputs = Vec::with_capacity(job.outputs.len());
    for o in &job.outputs {
        outputs.push(json!({
            "name": o.name, "kind": o.kind, "format": o.format, "width": o.width,
            "height": o.height, "bytes": o.bytes,
            "url": output_url(state, headers, job, &o.key).await,
        }));
    }
    let manifest_url = match &job.manifest_key {
        Some(k) => Some(output_url(state, headers, job, k).await),
        None => None,
    };
    let stage = if job.status == JobStatus::Running {
        job.stage.clone()
    } else {
        None
    };
    let mut v = json!({
        "id": job.id,
        "status": job.status.name(),
        "progress": {"stage": stage, "percent": job.percent},
        "profile": job.profile,
        "sources": job.sources,
        "created_at": timestamp(job.created_ms),
        "updated_at": timestamp(job.updated_ms),
        "attempt": job.attempt,
        "outputs": outputs,
        "metadata": if job.metadata.is_null() { json!({}) } else { job.metadata.clone() },
        "error": job.error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
        "manifest_url": manifest_url,
        "cancel_requested": job.cancel_requested,
        "run": job.run,
        "runs": job.runs.iter().map(|r| json!({
            "run": r.run, "status": r.status.name(), "ended_at": timestamp(r.ended_ms),
            "error": r.error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
        })).collect::<Vec<_>>(),
    });
    if let Some(u) = &job.upload {
        v["upload"] = json!({"id": u.id, "expires_at": timestamp(u.expires_ms)});
    }
    v
}

/// How a client fetches the output `key` of `job`: the configured base URL, a presigned S3
/// GET, or `serve`'s own file route with a token for this job.
async fn output_url(
    state: &Arc<ApiState>,
    headers: &HeaderMap,
    job: &JobRecord,
    key: &str,
) -> String {
    let api = &state.config.api;
    let ttl = Duration::from_secs(api.token_ttl_secs);
    if let Some(base) = &api.outputs_base_url {
        return format!("{}/{}", base.trim_end_matches('/'), encode_key(key));
    }
    if let Some(s3) = &state.s3 {
        let presigned = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .ok()
            .map(|cfg| {
                s3.get_object()
                    .bucket(&job.output_bucket)
                    .key(key)
                    .presigned(cfg)
            });
        if let Some(p) = presigned
            && let Ok(p) = p.await
        {
            return p.uri().to_string();
        }
        return String::new();
    }
    let expires = (now_ms() + ttl.as_millis() as i64) / 60_000 * 60_000 + 60_000;
    let token = state.auth.token("job", &job.id, expires);
    format!(
        "{}/v1/jobs/{}/files/{}?token={token}",
        state.public_url(headers),
        job.id,
        encode_key(key)
    )
}

/// A key as a URL path (each segment percent-encoded, `/` kept).
pub(super) fn encode_key(key: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    key.split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}
