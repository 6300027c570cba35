//! ECS task scale-in protection: while the worker has jobs in flight, the task asks the ECS
//! container agent (`PUT $ECS_AGENT_URI/task-protection/v1/state`,
//! `{"ProtectionEnabled":true,"ExpiresInMinutes":N}`) not to be chosen when the service scales
//! in, renews that before it expires, and releases it (`{"ProtectionEnabled":false}`) once the
//! worker has been idle for a short grace period (so a steady trickle of short jobs doesn't
//! toggle it per job). The agent makes the `ecs:UpdateTaskProtection` call with the task
//! role's credentials; the worker calls the agent with the engine's hyper client. Failures are
//! logged and counted, never fatal: protection then simply lapses (it always expires by itself
//! after N minutes, so a killed worker leaves none behind).

use super::metrics::{TASK_PROTECTED, TASK_PROTECTION_REQUESTS};
use crate::shutdown::CancellationToken;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The agent's task-protection path, below `ECS_AGENT_URI`.
pub const STATE_PATH: &str = "/task-protection/v1/state";
/// How long one request to the agent may take (the agent itself calls the ECS API).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the agent.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a task-protection request did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ProtectionError {
    /// `ECS_AGENT_URI` is not an `http://host[:port]/path` URL.
    #[error("ECS_AGENT_URI {0:?} is not an http://host[:port]/path URL")]
    BadUri(String),
    /// Connecting, sending or reading failed or timed out.
    #[error("ECS agent at {authority}: {message}")]
    Io {
        /// `host:port`.
        authority: String,
        /// What went wrong.
        message: String,
    },
    /// The agent answered with an HTTP error.
    #[error("ECS agent answered HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The agent answered, but ECS did not apply the protection (e.g. `TASK_NOT_VALID` for a
    /// task outside a service, `AccessDeniedException` without `ecs:UpdateTaskProtection`).
    #[error("ECS did not apply task protection: {0}")]
    Refused(String),
}

/// The ECS container agent's task-protection endpoint.
#[derive(Debug, Clone)]
pub struct Agent {
    /// `host:port` to connect to.
    authority: String,
    /// `Host` header.
    host: String,
    /// Request path of the state endpoint.
    path: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Agent {
    /// The endpoint below `ECS_AGENT_URI` (`http://169.254.170.2/api/<id>`).
    pub fn from_uri(uri: &str) -> Result<Agent, ProtectionError> {
        let bad = || ProtectionError::BadUri(uri.to_string());
        let rest = uri.strip_prefix("http://").ok_or_else(bad)?;
        let (host, base) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if host.is_empty() || host.contains(['@', ' ', '?', '#']) {
            return Err(bad());
        }
        // A port is what follows the last ':' outside an IPv6 literal's brackets.
        let has_port = host
            .rfind(':')
            .is_some_and(|i| !host[i..].contains(']') && host[i + 1..].parse::<u16>().is_ok());
        let authority = if has_port {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(REQUEST_TIMEOUT));
        // One request now and then: no pooled connections; header names as the agent's docs
        // write them.
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .http1_title_case_headers(true)
            .build(connector);
        Ok(Agent {
            authority,
            host: host.to_string(),
            path: format!("{}{STATE_PATH}", base.trim_end_matches('/')),
            client,
        })
    }

    /// Turn protection on for `expires_minutes`, or off.
    pub async fn set(&self, enabled: bool, expires_minutes: u32) -> Result<(), ProtectionError> {
        let body = if enabled {
            format!(r#"{{"ProtectionEnabled":true,"ExpiresInMinutes":{expires_minutes}}}"#)
        } else {
            r#"{"ProtectionEnabled":false}"#.to_string()
        };
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.put(&body))
            .await
            .unwrap_or_else(|_| {
                Err(ProtectionError::Io {
                    authority: self.authority.clone(),
                    message: format!("no answer within {REQUEST_TIMEOUT:?}"),
                })
            });
        let label = if enabled { "on" } else { "off" };
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        TASK_PROTECTION_REQUESTS.inc(&[label, outcome]);
        result
    }

    async fn put(&self, body: &str) -> Result<(), ProtectionError> {
        let io = |message: String| ProtectionError::Io {
            authority: self.authority.clone(),
            message,
        };
        let request = Request::builder()
            .method(Method::PUT)
            .uri(format!("http://{}{}", self.authority, self.path))
            .header(header::HOST, &self.host)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| io(e.to_string()))?;
        let answer = self
            .client
            .request(request)
            .await
            .map_err(|e| io(error_chain(&e)))?;
        let status = answer.status().as_u16();
        let body = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| io(format!("reading the answer: {e}")))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status != 200 {
            return Err(ProtectionError::Status {
                status,
                body: body.chars().take(300).collect(),
            });
        }
        // The agent answers 200 with `protection`, or with `failure`/`error` when ECS refused.
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if json.get("protection").is_some_and(|p| p.is_object()) {
            return Ok(());
        }
        let reason = ["failure", "error"]
            .iter()
            .find_map(|k| json.get(*k))
            .map(|v| v.to_string())
            .unwrap_or_else(|| {
                format!(
                    "unexpected answer {:?}",
                    body.chars().take(300).collect::<String>()
                )
            });
        Err(ProtectionError::Refused(reason))
    }
}

/// An error and its causes, on one line ("client error (Connect): tcp connect error:
/// Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// When to protect, renew and release.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// `ExpiresInMinutes` of each protection (1..=2880).
    pub expires_minutes: u32,
    /// How often protection is renewed while busy (before it expires).
    pub renew_every: Duration,
    /// How long after a failed request it is tried again while busy.
    pub retry_every: Duration,
    /// How long the worker must stay idle before protection is released.
    pub release_after_idle: Duration,
}

impl Schedule {
    /// Protection for `expires_minutes`, renewed at half of it, released after
    /// `release_after_idle`.
    pub fn new(expires_minutes: u32, release_after_idle: Duration) -> Self {
        let renew_every = Duration::from_secs(u64::from(expires_minutes.max(1)) * 60 / 2);
        Self {
            expires_minutes: expires_minutes.clamp(1, 2880),
            renew_every,
            retry_every: renew_every.min(Duration::from_secs(5)),
            release_after_idle,
        }
    }
}

/// The running protection task.
#[derive(Debug)]
pub struct Protection {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Protection {
    /// Follow `busy` (from [`super::activity::Activity::watch`]) on the current runtime until
    /// `stop` is cancelled.
    pub fn spawn(
        agent: Agent,
        schedule: Schedule,
        busy: watch::Receiver<bool>,
        stop: CancellationToken,
    ) -> Protection {
        let task = tokio::spawn(run(agent, schedule, busy, stop.clone()));
        Protection { stop, task }
    }

    /// Release any protection now (the worker is exiting) and end the task, waiting at most
    /// `within` for the agent (a release not answered by then lapses at its expiry).
    pub async fn stop(self, within: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(within, self.task).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn run(agent: Agent, s: Schedule, mut busy: watch::Receiver<bool>, stop: CancellationToken) {
    // Confirmed by the agent and not released since.
    let mut protected = false;
    // While busy (or idle within the grace period): when to protect or renew next.
    let mut renew_at: Option<Instant> = None;
    // While idle: when to release.
    let mut release_at: Option<Instant> = None;
    if *busy.borrow_and_update() {
        renew_at = Some(Instant::now());
    }
    loop {
        let wake = [renew_at, release_at].into_iter().flatten().min();
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = busy.changed() => {
                if changed.is_err() {
                    break;
                }
                if *busy.borrow_and_update() {
                    release_at = None;
                    // Idle → busy: protect now, unless still protected from before the grace.
                    renew_at.get_or_insert_with(Instant::now);
                } else {
                    release_at = Some(Instant::now() + s.release_after_idle);
                }
            }
            _ = sleep_until(wake) => {
                let now = Instant::now();
                if release_at.is_some_and(|t| t <= now) {
                    release_at = None;
                    renew_at = None;
                    if protected {
                        release(&agent).await;
                        protected = false;
                    }
                } else if renew_at.is_some_and(|t| t <= now) {
                    match agent.set(true, s.expires_minutes).await {
                        Ok(()) => {
                            if protected {
                                tracing::debug!(expires_minutes = s.expires_minutes, "task protection renewed");
                            } else {
                                tracing::info!(expires_minutes = s.expires_minutes, "task protected from scale-in while jobs run");
                            }
                            protected = true;
                            TASK_PROTECTED.set(&[], 1);
                            renew_at = Some(Instant::now() + s.renew_every);
                        }
                        Err(e) => {
                            tracing::warn!(error_code = "task_protection_failed", error = %e, retry_s = s.retry_every.as_secs_f64(), "could not protect the task from scale-in; jobs go on");
                            renew_at = Some(Instant::now() + s.retry_every);
                        }
                    }
                }
            }
        }
    }
    if protected {
        release(&agent).await;
    }
}

async fn release(agent: &Agent) {
    match agent.set(false, 0).await {
        Ok(()) => tracing::info!("task protection released: idle"),
        Err(e) => tracing::warn!(
            error_code = "task_protection_release_failed",
            error = %e,
            "could not release task protection; it expires by itself"
        ),
    }
    // Either way this worker no longer holds it (a failed release lapses at expiry).
    TASK_PROTECTED.set(&[], 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::activity::Activity;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A stand-in ECS agent on a free port: records (path, body) and answers each request
    /// with the next of `answers` (the last one repeats).
    async fn agent(answers: Vec<String>) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let k = s.read(&mut chunk).await.unwrap_or(0);
                    if k == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            let line = head.lines().next().unwrap_or_default().to_string();
                            log.lock().expect("log").push((line, body.to_string()));
                            break;
                        }
                    }
                }
                let answer = answers[n.min(answers.len() - 1)].clone();
                n += 1;
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (format!("http://{addr}/api/task-1"), seen)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{\"protection\":{\"ProtectionEnabled\":true,\"TaskArn\":\"arn:x:task\"}}";
    /// ECS's refusal, as the agent sends it, in a chunked body.
    fn refused() -> String {
        let body = r#"{"failure":{"Arn":"arn:x","Reason":"TASK_NOT_VALID"}}"#;
        let (a, b) = body.split_at(20);
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        )
    }
    const BROKEN: &str = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops";

    /// Protection following `activity` against the agent at `uri`.
    fn spawn(uri: &str, schedule: Schedule, activity: &Activity) -> Protection {
        Protection::spawn(
            Agent::from_uri(uri).expect("uri"),
            schedule,
            activity.watch(),
            CancellationToken::new(),
        )
    }

    async fn wait_for(seen: &Mutex<Vec<(String, String)>>, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = seen.lock().expect("log").clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn agent_uris_parse() {
        let a = Agent::from_uri("http://169.254.170.2/api/abc-123/").expect("uri");
        assert_eq!(a.authority, "169.254.170.2:80");
        assert_eq!(a.path, "/api/abc-123/task-protection/v1/state");
        let a = Agent::from_uri("http://127.0.0.1:5123/v4/x").expect("uri");
        assert_eq!(
            (a.authority.as_str(), a.host.as_str()),
            ("127.0.0.1:5123", "127.0.0.1:5123")
        );
        assert_eq!(
            Agent::from_uri("http://[::1]/a").expect("v6").authority,
            "[::1]:80"
        );
        for bad in [
            "https://x/a",
            "169.254.170.2/api",
            "http:///a",
            "http://u@h/a",
        ] {
            assert!(Agent::from_uri(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn protects_on_busy_renews_while_busy_and_releases_when_idle() {
        let (uri, seen) = agent(vec![OK.to_string()]).await;
        let activity = Arc::new(Activity::default());
        let schedule = Schedule {
            expires_minutes: 3,
            renew_every: Duration::from_millis(150),
            retry_every: Duration::from_millis(50),
            release_after_idle: Duration::from_millis(100),
        };
        let p = spawn(&uri, schedule, &activity);
        let job = activity.start();
        let got = wait_for(&seen, 3).await;
        assert!(got.len() >= 3, "protect then renewals: {got:?}");
        for (line, body) in &got[..3] {
            assert_eq!(line, "PUT /api/task-1/task-protection/v1/state HTTP/1.1");
            assert_eq!(body, r#"{"ProtectionEnabled":true,"ExpiresInMinutes":3}"#);
        }
        assert_eq!(TASK_PROTECTED.get(&[]), 1.0);
        drop(job);
        let before = seen.lock().expect("log").len();
        let got = wait_for(&seen, before + 1).await;
        assert_eq!(
            got.last().map(|r| r.1.as_str()),
            Some(r#"{"ProtectionEnabled":false}"#)
        );
        // A job right after release protects again at once.
        let job = activity.start();
        let got = wait_for(&seen, before + 2).await;
        assert_eq!(
            got.last().map(|r| r.1.as_str()),
            Some(r#"{"ProtectionEnabled":true,"ExpiresInMinutes":3}"#)
        );
        drop(job);
        p.stop(Duration::from_secs(2)).await;
        let got = seen.lock().expect("log").clone();
        assert_eq!(
            got.last().map(|r| r.1.as_str()),
            Some(r#"{"ProtectionEnabled":false}"#),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn refusals_and_errors_are_retried_and_never_released_unprotected() {
        let (uri, seen) = agent(vec![BROKEN.into(), refused(), OK.into()]).await;
        let agent_ = Agent::from_uri(&uri).expect("uri");
        let e = agent_.set(true, 5).await.expect_err("500");
        assert!(
            matches!(e, ProtectionError::Status { status: 500, .. }),
            "{e}"
        );
        let e = agent_.set(true, 5).await.expect_err("refused");
        assert!(e.to_string().contains("TASK_NOT_VALID"), "{e}");
        agent_.set(true, 5).await.expect("third answer is ok");
        let dead = Agent::from_uri("http://127.0.0.1:1/x").expect("uri");
        assert!(matches!(
            dead.set(true, 1).await,
            Err(ProtectionError::Io { .. })
        ));

        // Never confirmed → nothing to release when idle.
        let (uri, seen2) = agent(vec![BROKEN.into()]).await;
        let activity = Arc::new(Activity::default());
        let schedule = Schedule {
            expires_minutes: 1,
            renew_every: Duration::from_secs(30),
            retry_every: Duration::from_millis(40),
            release_after_idle: Duration::ZERO,
        };
        let p = spawn(&uri, schedule, &activity);
        let job = activity.start();
        let got = wait_for(&seen2, 3).await;
        assert!(got.len() >= 3, "retried: {got:?}");
        drop(job);
        p.stop(Duration::from_secs(2)).await;
        let got = seen2.lock().expect("log").clone();
        assert!(
            got.iter().all(|(_, b)| b.contains("true")),
            "no release without protection: {got:?}"
        );
        assert!(seen.lock().expect("log").len() == 3);
    }
}
