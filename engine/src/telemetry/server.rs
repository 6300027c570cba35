//! The operations HTTP listener: a minimal HTTP/1.x server on tokio for `GET` (and `HEAD`)
//! of `/healthz` (the process is alive and serving: always 200), `/readyz` (200 `ready`, or
//! 503 with the reasons) and `/metrics` (Prometheus text format 0.0.4). One request per
//! connection, answered with `Content-Length` and closed; slow or oversized requests are cut
//! off, and connections beyond a small cap wait their turn.

use super::health::Health;
use super::metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Longest request head accepted.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request and read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 32;

/// The listener; serving stops when it is dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Bind `addr` and serve `health` and the metrics registry on the current runtime.
    pub async fn start(addr: SocketAddr, health: Arc<Health>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, health));
        Ok(Server { addr, task })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, health: Arc<Health>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "ops listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let health = health.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(IO_TIMEOUT, handle(stream, &health)).await;
            drop(permit);
        });
    }
}

/// A response: status, content type, body.
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

async fn handle(mut stream: TcpStream, health: &Health) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD_BYTES {
            write(
                &mut stream,
                Response::text(431, "request head too large\n"),
                false,
            )
            .await?;
            // Read what the client still sends before closing: closing a socket with unread
            // input resets the connection, and the client might never see the answer.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let mut left: usize = 256 * 1024;
                while left > 0 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            })
            .await;
            return Ok(());
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return write(&mut stream, Response::text(400, "bad request\n"), false).await;
    };
    if !version.starts_with("HTTP/1.") {
        return write(&mut stream, Response::text(505, "HTTP/1.x only\n"), false).await;
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return write(
            &mut stream,
            Response::text(405, "GET or HEAD only\n"),
            false,
        )
        .await;
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let response = route(path, health).await;
    write(&mut stream, response, head_only).await
}

async fn route(path: &str, health: &Health) -> Response {
    match path {
        "/healthz" => Response::text(200, "ok\n"),
        "/readyz" => match health.readiness().await {
            Ok(()) => Response::text(200, "ready\n"),
            Err(why) => Response::text(503, format!("not ready: {why}\n")),
        },
        "/metrics" => Response {
            status: 200,
            content_type: metrics::CONTENT_TYPE,
            body: metrics::render(),
        },
        _ => Response::text(404, "not found: try /healthz, /readyz or /metrics\n"),
    }
}

async fn write(stream: &mut TcpStream, r: Response, head_only: bool) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    if r.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&r.body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let server = Server::start("127.0.0.1:0".parse().expect("addr"), health.clone())
            .await
            .expect("bind");
        let addr = server.addr();
        let r = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nok\n"),
            "{r}"
        );
        assert!(r.contains("Content-Length: 3\r\n"), "{r}");
        let r = get(addr, "GET /readyz HTTP/1.0\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 503 ") && r.contains("plugins"),
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
        drop(server);
    }
}
