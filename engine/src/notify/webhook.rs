//! The webhook sink: `POST` the notification body to a URL, signed, retried.
//!
//! Headers: `Content-Type` (`application/json` when the body is JSON, else `text/plain`),
//! `X-Mediaflow-Signature: sha256=<hex HMAC-SHA256 of the exact body with the secret>`,
//! `X-Mediaflow-Event-Id` (the same on every attempt, so a receiver can de-duplicate),
//! `X-Mediaflow-Delivery-Attempt`, `X-Mediaflow-Subject`, and one `X-Mediaflow-Attr-<name>`
//! per notification attribute. A 2xx answer is a delivery; connection errors, timeouts, 408,
//! 429 and 5xx are retried up to `max_attempts` with exponential backoff and full jitter
//! (a `Retry-After` in seconds is honoured up to `backoff_max_ms`); any other answer
//! (redirects are not followed) is a permanent give-up.
//!
//! The HTTP client is hyper 1 over the same rustls (aws-lc-rs) stack the AWS SDK uses, with the
//! system's root certificates, shared by every webhook sink of a notifier.

use super::signature;
use super::sink::DeliveryError;
use crate::config::WebhookSinkConfig;
use crate::plugin::types::Notification;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::sync::Arc;
use std::time::Duration;

/// The HTTP client webhooks are sent with.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Longest response body read (for the log line of a refusal).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest part of a refusal's response body quoted in the log.
const QUOTED_RESPONSE_BYTES: usize = 300;

/// An HTTP(S) client with the system's root certificates. Without any (a bare container), it
/// still serves `http://` URLs, and fails only when `need_https`.
pub fn http_client(need_https: bool) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        Err(e) if need_https => {
            return Err(format!(
                "no usable system root certificates for https webhooks: {e}"
            ));
        }
        Err(e) => {
            tracing::debug!(error = %e, "no system root certificates: webhooks are http:// only");
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
    };
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(8)
        .build(connector))
}

/// Posts to one URL.
pub struct WebhookSink {
    name: String,
    url: Uri,
    secret: String,
    timeout: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    client: HttpClient,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// How one attempt ended, when not delivered.
enum Failure {
    /// Worth another attempt (after at least the given wait, from `Retry-After`).
    Retry(String, Option<Duration>),
    /// Not worth another attempt.
    GiveUp(String),
}

impl WebhookSink {
    /// The sink `name` posting to `c.url` through `client`.
    pub fn new(name: &str, c: &WebhookSinkConfig, client: HttpClient) -> Result<Self, String> {
        let url: Uri = c.url.parse().map_err(|e| format!("url {:?}: {e}", c.url))?;
        Ok(Self {
            name: name.into(),
            url,
            secret: c.secret.expose().to_string(),
            timeout: Duration::from_millis(c.timeout_ms),
            max_attempts: c.max_attempts.max(1),
            backoff_base: Duration::from_millis(c.backoff_base_ms),
            backoff_max: Duration::from_millis(c.backoff_max_ms),
            client,
        })
    }

    /// POST `n`, retrying passing failures.
    pub async fn deliver(&self, event_id: &str, n: &Notification) -> Result<(), DeliveryError> {
        let body = Bytes::from(n.body.clone().into_bytes());
        let headers = self.headers(event_id, n, &body);
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            match self.attempt(&headers, attempt, body.clone()).await {
                Ok(status) => {
                    tracing::debug!(target: "mediaflow::notify", sink = %self.name, event_id, attempt, %status, "webhook delivered");
                    return Ok(());
                }
                Err(Failure::GiveUp(reason)) => {
                    return Err(DeliveryError::Permanent { reason });
                }
                Err(Failure::Retry(reason, retry_after)) => {
                    if attempt < self.max_attempts {
                        let wait =
                            retry_delay(attempt, self.backoff_base, self.backoff_max, retry_after);
                        tracing::info!(
                            target: "mediaflow::notify",
                            sink = %self.name, event_id, attempt, max_attempts = self.max_attempts,
                            retry_in_ms = wait.as_millis() as u64, %reason,
                            "webhook attempt failed; will retry"
                        );
                        tokio::time::sleep(wait).await;
                    }
                    last = reason;
                }
            }
        }
        Err(DeliveryError::Transient {
            attempts: self.max_attempts,
            reason: last,
        })
    }

    /// One POST, bounded by the timeout (connecting, sending, and reading the answer).
    async fn attempt(
        &self,
        headers: &HeaderMap,
        attempt: u32,
        body: Bytes,
    ) -> Result<StatusCode, Failure> {
        let mut req = Request::post(self.url.clone())
            .body(Full::new(body))
            .map_err(|e| Failure::GiveUp(format!("building the request: {e}")))?;
        *req.headers_mut() = headers.clone();
        req.headers_mut().insert(
            HeaderName::from_static("x-mediaflow-delivery-attempt"),
            HeaderValue::from(attempt),
        );
        let exchange = async {
            let response = self.client.request(req).await.map_err(|e| {
                Failure::Retry(format!("POST {}: {}", self.url, error_chain(&e)), None)
            })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // Read the answer (a refusal's reason goes into the log; a fully read body also
            // lets the connection be reused).
            let text = match Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
            {
                Ok(b) => {
                    let b = b.to_bytes();
                    let cut = b.len().min(QUOTED_RESPONSE_BYTES);
                    String::from_utf8_lossy(&b[..cut]).trim().to_string()
                }
                Err(_) => String::new(),
            };
            Ok((status, retry_after, text))
        };
        let (status, retry_after, text) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                Failure::Retry(
                    format!(
                        "POST {}: no answer within {} ms",
                        self.url,
                        self.timeout.as_millis()
                    ),
                    None,
                )
            })??;
        if status.is_success() {
            return Ok(status);
        }
        let reason = if text.is_empty() {
            format!("POST {}: HTTP {status}", self.url)
        } else {
            format!("POST {}: HTTP {status}: {text}", self.url)
        };
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Err(Failure::Retry(reason, retry_after))
        } else {
            Err(Failure::GiveUp(reason))
        }
    }

    /// The headers every attempt carries.
    fn headers(&self, event_id: &str, n: &Notification, body: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        let json = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            }),
        );
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("mediaflow/", env!("CARGO_PKG_VERSION"))),
        );
        let mut put = |name: String, value: &str| match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(k), Ok(v)) => {
                h.append(k, v);
            }
            _ => tracing::warn!(
                target: "mediaflow::notify",
                sink = %self.name, event_id, header = %name, error_code = "attribute_skipped",
                "header left out: not a valid HTTP header name or value"
            ),
        };
        put("x-mediaflow-event-id".into(), event_id);
        put(
            "x-mediaflow-signature".into(),
            &signature::header_value(&self.secret, body),
        );
        let subject: String = n
            .subject
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_control() {
                    c
                } else {
                    '?'
                }
            })
            .take(500)
            .collect();
        if !subject.trim().is_empty() {
            put("x-mediaflow-subject".into(), subject.trim());
        }
        for (k, v) in &n.attributes {
            put(format!("x-mediaflow-attr-{}", k.to_ascii_lowercase()), v);
        }
        h
    }
}

/// The wait before retry number `attempt` (1 = after the first attempt): a uniformly random
/// time up to `base · 2^(attempt−1)`, capped at `max` (full jitter), but at least what the
/// server asked for with `Retry-After` (also capped at `max`).
pub fn retry_delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let jittered = Duration::from_millis(fastrand::u64(0..=ms));
    match retry_after {
        Some(r) => jittered.max(r.min(max)),
        None => jittered,
    }
}

/// An error and its sources, `: `-separated (hyper's own message is only "client error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_capped_ceiling() {
        let (base, max) = (Duration::from_millis(100), Duration::from_millis(1_000));
        for _ in 0..200 {
            assert!(retry_delay(1, base, max, None) <= Duration::from_millis(100));
            assert!(retry_delay(3, base, max, None) <= Duration::from_millis(400));
            assert!(retry_delay(30, base, max, None) <= max);
            let r = retry_delay(2, base, max, Some(Duration::from_millis(700)));
            assert!(r >= Duration::from_millis(700) && r <= max, "{r:?}");
            assert_eq!(
                retry_delay(1, base, max, Some(Duration::from_secs(60))),
                max,
                "Retry-After is capped"
            );
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| retry_delay(4, base, max, None)).collect();
        assert!(spread.len() > 5, "jittered: {spread:?}");
    }
}
