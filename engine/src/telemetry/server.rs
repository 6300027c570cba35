//! The operations HTTP listener, on the engine's one HTTP stack (axum routes served by hyper's
//! HTTP/1 connections over tokio): `GET` (and `HEAD`) of `/healthz` (the process is alive and
//! serving: 200, or 503 when a job is stuck past its time limit), `/readyz` (200 `ready`, or 503
//! with the reasons) and `/metrics` (Prometheus text format 0.0.4). One request per connection; a
//! request head over [`MAX_HEAD_BYTES`] is refused (431), slow clients are cut off, and connections
//! beyond a small cap wait their turn. It stops when the shutdown's services token is cancelled.

use super::health::Health;
use super::metrics;
use crate::shutdown::CancellationToken;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Longest request head accepted (request line and headers).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// hyper's own cap on what it buffers of a request head (beyond it: 431 at once).
const MAX_BUFFER_BYTES: usize = 64 * 1024;
/// How long a client may take to send its request and read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 32;

/// The listener; serving stops when its token is cancelled.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
}

impl Server {
    /// Bind `addr` and serve `health` and the metrics on the current runtime until `stop`.
    pub async fn start(
        addr: SocketAddr,
        health: Arc<Health>,
        stop: CancellationToken,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(serve(listener, router(health), stop, Connections::OPS));
        Ok(Server { addr })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The ops routes.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /healthz, /readyz or /metrics\n",
            )
        })
        .layer(middleware::from_fn(limits))
        .with_state(health)
}

async fn healthz(State(health): State<Arc<Health>>) -> Response {
    match health.liveness() {
        Ok(()) => "ok\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    match health.readiness().await {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(),
    )
        .into_response()
}

/// Refuse oversized request heads; answers are never cached.
async fn limits(request: Request, next: Next) -> Response {
    let head = request.uri().to_string().len()
        + request
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    let mut response = if head > MAX_HEAD_BYTES {
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large\n",
        )
            .into_response()
    } else {
        next.run(request).await
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How a listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    /// Connections served at once (more wait their turn).
    pub max: usize,
    /// Several requests per connection.
    pub keep_alive: bool,
    /// How long a client may take to send a request head.
    pub head_timeout: Duration,
    /// How long a whole connection may last (`None`: as long as its requests take — the job
    /// API's uploads and event streams guard their own bodies).
    pub lifetime: Option<Duration>,
}

impl Connections {
    /// The ops listener: one short request per connection.
    pub const OPS: Connections = Connections {
        max: MAX_CONNECTIONS,
        keep_alive: false,
        head_timeout: IO_TIMEOUT,
        lifetime: Some(IO_TIMEOUT),
    };
}

/// Serve `router` on `listener` until `stop`: the engine's one HTTP/1 serve loop (the ops
/// listener and the job API).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    connections: Connections,
) {
    let slots = Arc::new(Semaphore::new(connections.max));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.cancelled() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "ops listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(connections.keep_alive)
                .title_case_headers(true)
                .max_buf_size(MAX_BUFFER_BYTES)
                .timer(TokioTimer::new())
                .header_read_timeout(connections.head_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let lifetime = connections.lifetime.unwrap_or(Duration::MAX);
            tokio::select! {
                _ = tokio::time::timeout(lifetime, connection) => {}
                _ = stop.cancelled() => {}
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn routes_methods_and_malformed_requests() {
        let health = Arc::new(Health::new(Duration::ZERO, Duration::from_secs(1)));
        let stop = CancellationToken::new();
        let server = Server::start(
            "127.0.0.1:0".parse().expect("addr"),
            health.clone(),
            stop.clone(),
        )
        .await
        .expect("bind");
        let addr = server.addr();
        let r = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nok\n"),
            "{r}"
        );
        assert!(r.contains("Content-Length: 3\r\n"), "{r}");
        // An HTTP/1.0 client gets an HTTP/1.0 answer.
        let r = get(addr, "GET /readyz HTTP/1.0\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.0 503 ") && r.contains("plugins"),
            "{r}"
        );
        let r = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        let r = get(addr, "GET /metrics?x=1 HTTP/1.1\r\n\r\n").await;
        assert!(r.contains("# TYPE mediaflow_jobs_in_flight gauge\n"), "{r}");
        assert!(
            get(addr, "POST /healthz HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405")
        );
        assert!(
            get(addr, "GET /nope HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            get(addr, "garbage\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 400")
        );
        let huge = format!("GET /healthz HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert!(get(addr, &huge).await.starts_with("HTTP/1.1 431"));
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener stops with its token"
        );
    }
}
