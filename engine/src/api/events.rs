//! `GET /v1/jobs/{id}/events`: a job's changes as Server-Sent Events — `status` when its status
//! changes, `progress` when only its progress does — each carrying the job as `GET
//! /v1/jobs/{id}` shows it, with the record's revision as the event id. A client that
//! reconnects with `Last-Event-ID` gets only what changed since. The stream ends after the
//! job's terminal status. It reads the index twice a second (the index is what every worker
//! writes to, on this machine or another); a `?token=` from the job's URLs or a key with
//! `read` may open it.

use super::ApiState;
use super::error::{ApiError, Forbidden, NotFound, Unauthorized, Unavailable};
use super::jobs::{load, view};
use super::uploads::TokenQuery;
use crate::index::{JobRecord, JobStatus};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often the index is read for changes.
const POLL: Duration = Duration::from_millis(500);

/// Where a stream is.
struct Follow {
    state: Arc<ApiState>,
    headers: HeaderMap,
    id: String,
    /// The revision last sent and the status it had.
    sent: Option<(u64, JobStatus)>,
    done: bool,
}

/// `GET /v1/jobs/{id}/events`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    operation_id = "job_events",
    tag = "jobs",
    summary = "Follow a job as Server-Sent Events",
    description = "Events `status` (the status changed) and `progress` (only the progress did), each with the job as `GET /v1/jobs/{id}` shows it and the record's revision as its id. Reconnect with `Last-Event-ID` to get only what changed since. The stream ends after a terminal status.",
    params(
        ("id" = String, Path, description = "The job's id"),
        ("token" = Option<String>, Query, description = "A token from the job's URLs, instead of an API key"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The id of the last event received")
    ),
    responses(
        (status = 200, description = "The event stream; each event's data is a job", content_type = "text/event-stream", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable)
    )
)]
pub async fn stream(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state
        .auth
        .job_reader(&headers, &id, q.token.as_deref())
        .await?;
    let job = load(&state, &id).await?;
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let follow = Follow {
        state,
        headers,
        id,
        sent: resumed.map(|rev| {
            (
                rev,
                if rev >= job.rev {
                    job.status
                } else {
                    JobStatus::Queued
                },
            )
        }),
        done: false,
    };
    let events = futures_util::stream::unfold(follow, next);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The next event: wait until the job's record changes past what was sent.
async fn next(mut f: Follow) -> Option<(Result<Event, Infallible>, Follow)> {
    if f.done {
        return None;
    }
    loop {
        let id = f.id.clone();
        let job: Option<JobRecord> = f
            .state
            .blocking(move |s| Ok(s.index.get(&id)?))
            .await
            .ok()
            .flatten();
        let Some(job) = job else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let fresh = f.sent.is_none_or(|(rev, _)| job.rev > rev);
        if fresh {
            let kind = match f.sent {
                Some((_, status)) if status == job.status => "progress",
                _ => "status",
            };
            f.sent = Some((job.rev, job.status));
            f.done = job.status.is_terminal();
            let data =
                serde_json::to_string(&view(&f.state, &f.headers, &job).await).unwrap_or_default();
            let event = Event::default()
                .id(job.rev.to_string())
                .event(kind)
                .data(data);
            return Some((Ok(event), f));
        }
        if job.status.is_terminal() {
            // Resumed after the end: nothing more will come.
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}
