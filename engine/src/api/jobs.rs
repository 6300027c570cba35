//! Jobs: create one (an explicit job message, DESIGN §2.5, honouring `Idempotency-Key`), read
//! one, list them newest first, cancel one; and the job as the API shows it (its outputs with
//! URLs a client can fetch).

use super::ApiState;
use super::error::{
    ApiError, BadRequest, Conflict, Forbidden, Json, NotFound, Unauthorized, Unavailable,
    Unprocessable,
};
use crate::index::{Change, Cursor, JobRecord, JobStatus, now_ms};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Most sources of one job (images to video).
const MAX_SOURCES: usize = 500;

/// `POST /v1/jobs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// `s3://bucket/key` each (several images make one video).
    #[schema(example = json!(["s3://uploads/photos/cat.jpg"]))]
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
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "get_job",
    tag = "jobs",
    summary = "Read a job",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable)
    )
)]
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
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs with this status.
    #[param(schema_with = status_schema)]
    status: Option<String>,
    /// Jobs per page, 1 to 100 (default: `api.page_size`).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

/// `GET /v1/jobs`.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "list_jobs",
    tag = "jobs",
    summary = "List jobs, newest first",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable)
    )
)]
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
    let next_cursor = page.next.map(|c| c.encode());
    Ok(axum::Json(JobPage { jobs, next_cursor }).into_response())
}

/// `POST /v1/jobs`: enqueue an explicit job.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    operation_id = "create_job",
    tag = "jobs",
    summary = "Create a job from objects already stored",
    description = "An explicit job (DESIGN §2.5) over sources already in a bucket. With an `Idempotency-Key`, the same request again returns the same job (header `Idempotent-Replayed: true`); the same key with another request is 422.",
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters, scoped to the API key")),
    request_body = NewJob,
    responses(
        (status = 201, description = "The job, queued", body = JobView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable)
    )
)]
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
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    operation_id = "cancel_job",
    tag = "jobs",
    summary = "Cancel a job",
    description = "A queued job is canceled at once; a running one within about a second, its partial outputs removed. A finished job is 409.",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Canceled, or the cancel asked of the worker running it", body = JobView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable)
    )
)]
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
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/retry",
    operation_id = "retry_job",
    tag = "jobs",
    summary = "Run a finished job again",
    description = "A new run of the same job, with the profile and plugin versions current now; its outputs are kept apart from the earlier run's until it succeeds. A job not finished is 409.",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "The job, queued for its new run", body = JobView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable)
    )
)]
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
    Err(ApiError::unprocessable(state.config.unknown_profile(p)))
}

/// RFC 3339 (UTC) of `ms` since the epoch.
fn timestamp(ms: i64) -> String {
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
    DateTime::from_millis(ms)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}

/// A job as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// The job id.
    id: String,
    /// Where the job is.
    #[schema(schema_with = status_schema)]
    status: JobStatus,
    /// How far it is.
    progress: ProgressView,
    /// The profile it runs with.
    profile: String,
    /// Its sources, `s3://bucket/key` each.
    sources: Vec<String>,
    /// When it was created (RFC 3339, UTC).
    created_at: String,
    /// When it last changed (RFC 3339, UTC).
    updated_at: String,
    /// The attempt running or last run of this run (a redelivery is another attempt).
    attempt: u32,
    /// Its outputs, once it succeeded.
    outputs: Vec<OutputView>,
    /// What the metadata plugins extracted, by plugin (`{}` until recorded, and when it is
    /// too large for the index: the manifest has it).
    #[schema(value_type = Object)]
    metadata: Value,
    /// Why it failed.
    error: Option<ErrorView>,
    /// Where its manifest is, once recorded.
    manifest_url: Option<String>,
    /// Its event stream (`GET /v1/jobs/{id}/events`) with a token for this job in the URL, for
    /// a client that cannot send headers (a browser's `EventSource`).
    events_url: String,
    /// A cancel was asked for and the worker running it has not stopped yet.
    cancel_requested: bool,
    /// The run: 1, and one more for each retry.
    run: u32,
    /// How earlier runs ended, oldest first.
    runs: Vec<RunView>,
    /// The upload that starts the job, for jobs created by `POST /v1/uploads`.
    #[serde(skip_serializing_if = "Option::is_none")]
    upload: Option<UploadView>,
}

impl JobView {
    /// When its upload URL stops working, for an upload.
    pub fn upload_expires_at(&self) -> Option<&str> {
        self.upload.as_ref().map(|u| u.expires_at.as_str())
    }
}

/// The statuses, as the schema's enum.
fn status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(JobStatus::ALL.iter().map(|s| s.name())))
        .build()
}

/// How far a job is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    /// The stage running (`fetch`, `decode`, `encode 720p`, `upload`…), while `running`.
    stage: Option<String>,
    /// 0 to 100.
    percent: f32,
}

/// One output of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputView {
    /// The rendition's name.
    name: String,
    /// `image`, `video`, `playlist`, `poster`, `thumbnails`…
    kind: String,
    /// `jpeg`, `webp`, `mp4`, `m3u8`…
    format: String,
    /// Width in pixels.
    width: u32,
    /// Height in pixels.
    height: u32,
    /// Size in bytes.
    bytes: u64,
    /// The video codec of an MP4 rendition or HLS playlist, as an RFC 6381 string for
    /// `MediaSource.isTypeSupported` / `canPlayType` (`av01.0.05M.08`, `avc1.4d4c1f`).
    #[serde(skip_serializing_if = "Option::is_none")]
    codec: Option<String>,
    /// Where to fetch it: the CDN, a presigned S3 GET, or `serve` itself with a token.
    url: String,
}

/// Why a job (or a run) failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorView {
    /// A stable code (`corrupt_input`, `unsupported_input`, `dead_lettered`…).
    code: String,
    /// Plain words.
    message: String,
}

impl ErrorView {
    fn of(e: &crate::index::record::RecordError) -> Self {
        ErrorView {
            code: e.code.clone(),
            message: e.message.clone(),
        }
    }
}

/// How an earlier run ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// The run's number.
    run: u32,
    /// How it ended.
    #[schema(schema_with = status_schema)]
    status: JobStatus,
    /// When (RFC 3339, UTC).
    ended_at: String,
    /// Why it failed.
    error: Option<ErrorView>,
}

/// The upload behind a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    /// The upload's id (the job's).
    id: String,
    /// When its URLs stop working and the job expires if nothing arrived (RFC 3339, UTC).
    expires_at: String,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// The jobs.
    jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// The job as the API shows it.
pub(super) async fn view(state: &Arc<ApiState>, headers: &HeaderMap, job: &JobRecord) -> JobView {
    let mut outputs = Vec::with_capacity(job.outputs.len());
    for o in &job.outputs {
        outputs.push(OutputView {
            name: o.name.clone(),
            kind: o.kind.clone(),
            format: o.format.clone(),
            width: o.width,
            height: o.height,
            bytes: o.bytes,
            codec: o.codec.clone(),
            url: output_url(state, headers, job, &o.key).await,
        });
    }
    let manifest_url = match &job.manifest_key {
        Some(k) => Some(output_url(state, headers, job, k).await),
        None => None,
    };
    let stage = job
        .stage
        .clone()
        .filter(|_| job.status == JobStatus::Running);
    JobView {
        id: job.id.clone(),
        status: job.status,
        progress: ProgressView {
            stage,
            percent: job.percent,
        },
        profile: job.profile.clone(),
        sources: job.sources.clone(),
        created_at: timestamp(job.created_ms),
        updated_at: timestamp(job.updated_ms),
        attempt: job.attempt,
        outputs,
        metadata: if job.metadata.is_null() {
            json!({})
        } else {
            job.metadata.clone()
        },
        error: job.error.as_ref().map(ErrorView::of),
        manifest_url,
        events_url: format!(
            "{}/v1/jobs/{}/events?token={}",
            state.public_url(headers),
            job.id,
            job_token(state, &job.id)
        ),
        cancel_requested: job.cancel_requested,
        run: job.run,
        runs: job
            .runs
            .iter()
            .map(|r| RunView {
                run: r.run,
                status: r.status,
                ended_at: timestamp(r.ended_ms),
                error: r.error.as_ref().map(ErrorView::of),
            })
            .collect(),
        upload: job.upload.as_ref().map(|u| UploadView {
            id: u.id.clone(),
            expires_at: timestamp(u.expires_ms),
        }),
    }
}

/// Remove finished jobs' records older than `api.job_retention_days` from an index that does
/// not expire them itself (SQLite; DynamoDB's time to live does), every ten minutes.
pub async fn forget_old(state: Arc<ApiState>, stop: crate::shutdown::CancellationToken) {
    let days = state.config.api.job_retention_days;
    if days == 0 {
        return;
    }
    let keep_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    let every = Duration::from_secs(600);
    loop {
        let before = now_ms().saturating_sub(keep_ms);
        match state
            .blocking(move |s| Ok(s.index.forget_finished(before)?))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                jobs = n,
                days,
                "finished jobs past their retention forgotten"
            ),
            Err(e) => tracing::warn!(error = %e.message, "could not forget old jobs"),
        }
        if crate::shutdown::sleep_or_cancelled(&stop, every).await {
            return;
        }
    }
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
    format!(
        "{}/v1/jobs/{}/signed/{}/{}",
        state.public_url(headers),
        job.id,
        job_token(state, &job.id),
        encode_key(key)
    )
}

/// A token for reading job `id` (its files and its event stream) for `api.token_ttl_secs`,
/// its expiry rounded up to the minute so that URLs stay the same for a while (and cacheable).
fn job_token(state: &ApiState, id: &str) -> String {
    let ttl = state.config.api.token_ttl_secs.saturating_mul(1000) as i64;
    let expires = (now_ms().saturating_add(ttl)) / 60_000 * 60_000 + 60_000;
    state.auth.token("job", id, expires)
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
