//! A job's outputs and manifest served by `serve` (local mode), with a token good for that job
//! only (or an API key with `read`): `GET /v1/jobs/{id}/files/{key}?token=…`, and the form the
//! API hands out, `GET /v1/jobs/{id}/signed/{token}/{key}`, whose token is part of the path so
//! that the relative references inside an output — an HLS master's playlists, a playlist's
//! segments, a WebVTT file's sprite — resolve to URLs that carry it too (a query string is
//! dropped by relative resolution, so native HLS players and hls.js alike would lose it). Only
//! keys the job's record names are served: a token cannot reach another job's files, nor
//! anything else in the bucket.

use super::ApiState;
use super::error::{ApiError, Forbidden, NotFound, Unauthorized, Unavailable};
use super::jobs::load;
use super::uploads::TokenQuery;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The content type of an output by its extension.
fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next().unwrap_or("") {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "gif" => "image/gif",
        "mp4" | "m4s" => "video/mp4",
        "m3u8" => "application/vnd.apple.mpegurl",
        "vtt" => "text/vtt",
        "json" => "application/json",
        "html" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /v1/jobs/{id}/files/{*key}`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/files/{key}",
    operation_id = "get_job_file",
    tag = "jobs",
    summary = "Fetch an output or the manifest (local mode)",
    params(
        ("id" = String, Path, description = "The job's id"),
        ("key" = String, Path, description = "The output's key, as in its `url`"),
        ("token" = Option<String>, Query, description = "The token in the output's `url`, instead of an API key")
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = [u8]),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable)
    )
)]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Path((id, key)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, id, key, q.token.as_deref(), &headers).await
}

/// `GET /v1/jobs/{id}/signed/{token}/{*key}`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/signed/{token}/{key}",
    operation_id = "get_signed_job_file",
    tag = "jobs",
    summary = "Fetch an output or the manifest by the URL the API gave (local mode)",
    description = "The token is a path segment, so relative references inside an output (an HLS playlist's segments, a WebVTT file's sprite) resolve to URLs that carry it.",
    security(()),
    params(
        ("id" = String, Path, description = "The job's id"),
        ("token" = String, Path, description = "The token in the output's `url`"),
        ("key" = String, Path, description = "The output's key")
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = [u8]),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable)
    )
)]
pub async fn get_signed(
    State(state): State<Arc<ApiState>>,
    Path((id, token, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, id, key, Some(&token), &headers).await
}

/// Job `id`'s file `key`, to a holder of `token` for the job or of a key with `read`.
async fn serve(
    state: Arc<ApiState>,
    id: String,
    key: String,
    token: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    state.auth.job_reader(headers, &id, token).await?;
    let job = load(&state, &id).await?;
    let named = job.manifest_key.as_deref() == Some(key.as_str())
        || job.outputs.iter().any(|o| o.key == key);
    if !named || state.s3.is_some() {
        return Err(ApiError::not_found("such file of this job"));
    }
    let bucket = job.output_bucket.clone();
    let data = state
        .blocking(move |s| {
            let store = s
                .buckets
                .bucket(&bucket)
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
            store
                .get(&key)
                .map(|d| (d, key))
                .map_err(|e| ApiError::unavailable(e.to_string()))
        })
        .await?;
    let (body, key) = data;
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&key)),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
