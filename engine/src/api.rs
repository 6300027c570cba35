//! `mediaflow serve`: the job API (DESIGN §10) on the engine's one HTTP stack. Clients create
//! uploads and jobs, follow them (a JSON record, or a Server-Sent Events stream), cancel them
//! and fetch their outputs; every job — also those that arrive by a plain upload — is in the
//! job index the worker writes. Locally `serve` runs a worker in the same process (unless
//! `--no-worker`) and is its own upload target and file server; on AWS uploads go straight to
//! S3 through presigned URLs and outputs come from a CDN or presigned GETs.
//!
//! # Layout
//!
//! - [`admin`]: the operators' commands (`mediaflow api-key`, `mediaflow jobs`).
//! - [`auth`]: API keys and short-lived tokens.
//! - `error`: the one error shape, axum's rejections included.
//! - `jobs`: create, read, list, cancel; the job as the API shows it.
//! - `uploads`: upload URLs, and the local upload target.
//! - `multipart`: large uploads in parts.
//! - `openapi`: the OpenAPI document, derived from the handlers.
//! - `files`: outputs served locally.
//! - `page`: the web page at `/`.
//! - `events`: a job's status and progress as Server-Sent Events.

pub mod admin;
pub mod auth;
mod error;
mod events;
mod files;
mod jobs;
mod multipart;
mod openapi;
mod page;
mod uploads;

pub use error::ApiError;

use crate::config::Config;
use crate::index::{IndexError, JobIndex};
use crate::queue::Queue;
use crate::shutdown::Shutdown;
use crate::storage::Buckets;
use crate::telemetry::server::{self, Connections};
use auth::Auth;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Problems that stop `serve` from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration cannot be served.
    #[error("{0}")]
    Usage(String),
    /// The index cannot be used.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The worker in the same process failed.
    #[error(transparent)]
    Worker(#[from] crate::worker::WorkerError),
    /// The address cannot be bound.
    #[error("api.listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What every request shares.
#[derive(Debug)]
pub struct ApiState {
    /// The job index.
    pub index: Arc<dyn JobIndex>,
    /// The configuration.
    pub config: Arc<Config>,
    /// Keys and tokens.
    pub auth: Arc<Auth>,
    /// Where explicit jobs and local uploads' events go.
    pub queue: Arc<dyn Queue>,
    /// Sources and outputs.
    pub buckets: Arc<Buckets>,
    /// S3, on AWS: presigned upload and output URLs.
    pub s3: Option<aws_sdk_s3::Client>,
}

impl ApiState {
    /// Run blocking index work off the async threads.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&ApiState) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| ApiError::unavailable(format!("request task failed: {e}")))?
    }

    /// The URL clients reach this API at: `api.public_url`, else `http://` + the request's
    /// `Host`.
    pub fn public_url(&self, headers: &HeaderMap) -> String {
        if let Some(u) = &self.config.api.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()) && !h.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| self.config.api.listen.to_string());
        format!("http://{host}")
    }
}

/// The API's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(page::index))
        .route("/page/{file}", get(page::asset))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/uploads", post(uploads::create))
        .route("/v1/uploads/{id}", axum::routing::put(uploads::receive))
        .route(
            "/v1/uploads/{id}/parts/{n}",
            axum::routing::put(multipart::receive_part),
        )
        .route("/v1/uploads/{id}/complete", post(multipart::complete))
        .route("/v1/jobs", post(jobs::create).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/jobs/{id}/events", get(events::stream))
        .route("/v1/jobs/{id}/files/{*key}", get(files::get))
        .route(
            "/v1/jobs/{id}/signed/{token}/{*key}",
            get(files::get_signed),
        )
        // Every matched request but health checks, by its route (never the path: file URLs
        // carry tokens), after routing.
        .route_layer(axum::middleware::from_fn(access_log))
        .fallback(|| async { ApiError::not_found("such route: see /v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        // JSON bodies are small; upload bodies are streamed with their own bound.
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// One log line per request: method, route template, status and time to the response head.
async fn access_log(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let response = next.run(request).await;
    if route != "/healthz" {
        tracing::info!(
            %method,
            route,
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }
    response
}

/// Run `serve` until SIGTERM/SIGINT: the API, and a worker unless `no_worker`.
pub fn run(config_path: Option<&Path>, no_worker: bool) -> Result<(), ServeError> {
    let config = Config::load(config_path).map_err(|e| ServeError::Usage(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ServeError::Usage(format!("starting the async runtime: {e}")))?;
    let shutdown = Shutdown::new();
    let result = runtime.block_on(async {
        shutdown.on_signals();
        let state = Arc::new(state(&config).await?);
        listen(&config, state.clone(), &shutdown).await?;
        tokio::spawn(jobs::forget_old(state.clone(), shutdown.services().clone()));
        tokio::spawn(uploads::expire(state, shutdown.services().clone()));
        let result = if no_worker {
            shutdown.receiving().cancelled().await;
            Ok(())
        } else {
            crate::worker::run_in(config_path, &shutdown)
                .await
                .map_err(ServeError::from)
        };
        shutdown.stop_services();
        result
    });
    runtime.shutdown_background();
    result
}

/// Connect to the index, the queue and the buckets.
async fn state(config: &Config) -> Result<ApiState, ServeError> {
    let index = crate::index::open(config).await?.ok_or_else(|| {
        ServeError::Usage(
            "serve needs a job index: set api.index_table (DynamoDB) when worker.queue_url is set"
                .into(),
        )
    })?;
    let (queue, buckets, s3): (Arc<dyn Queue>, Arc<Buckets>, _) = match &config.worker.queue_url {
        None => (
            Arc::new(
                crate::worker::local_queue(&config.worker)
                    .map_err(|e| ServeError::Usage(e.to_string()))?,
            ),
            Arc::new(Buckets::local(&config.worker.data_dir)),
            None,
        ),
        Some(url) => {
            let aws = crate::aws::Clients::load(config.worker.s3_path_style).await;
            let runtime = tokio::runtime::Handle::current();
            let queue = crate::queue::sqs::SqsQueue::new(aws.sqs, url.clone(), runtime.clone());
            let buckets = Buckets::S3 {
                client: aws.s3.clone(),
                runtime,
                multipart: crate::storage::s3::Multipart::of(&config.worker),
            };
            (Arc::new(queue), Arc::new(buckets), Some(aws.s3))
        }
    };
    let keys = config.api.keys.clone();
    let idx = index.clone();
    let auth = tokio::task::spawn_blocking(move || Auth::open(idx, &keys))
        .await
        .map_err(|e| ServeError::Usage(e.to_string()))??;
    Ok(ApiState {
        index,
        config: Arc::new(config.clone()),
        auth: Arc::new(auth),
        queue,
        buckets,
        s3,
    })
}

/// Bind and serve, refusing an open API anywhere but loopback.
async fn listen(
    config: &Config,
    state: Arc<ApiState>,
    shutdown: &Shutdown,
) -> Result<(), ServeError> {
    let addr = config.api.listen;
    let auth = state.auth.clone();
    let keys = tokio::task::spawn_blocking(move || auth.keys())
        .await
        .map_err(|e| ServeError::Usage(e.to_string()))??;
    if keys.is_empty() && !addr.ip().is_loopback() {
        return Err(ServeError::Usage(format!(
            "api.listen is {addr}, but no API key exists: an open API only listens on loopback. \
             Make a key (`mediaflow api-key create --name NAME`) or add one to [api] keys, or listen on 127.0.0.1"
        )));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let page = config
        .api
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    tracing::info!(addr = %bound, open = keys.is_empty(), page = %format!("{}/", page.trim_end_matches('/')), "job API listening; the page is at `page`");
    let connections = Connections {
        max: 512,
        keep_alive: true,
        head_timeout: Duration::from_secs(10),
        lifetime: None,
    };
    tokio::spawn(server::serve(
        listener,
        router(state),
        shutdown.services().clone(),
        connections,
    ));
    Ok(())
}
