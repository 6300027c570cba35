//! Who may call the API. `Authorization: Bearer <key>`, checked against the SHA-256 of every
//! key in `[api] keys` and in the index (re-read every few seconds, so a key made or revoked
//! by `mediaflow api-key` takes effect without a restart): none → 401, a revoked key or one
//! without the scope → 403. With no key anywhere the API is open (and `serve` listens on
//! loopback only). Upload, file and event-stream URLs carry short-lived tokens instead —
//! `<expiry>.<HMAC-SHA256 of purpose, id and expiry>` under a secret kept in the index — each
//! good for one upload, one file or one job, so a browser never holds a key.

use super::error::ApiError;
use crate::config::ConfiguredKey;
use crate::index::{ApiKey, IndexError, JobIndex, keys};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the index's keys are reused before being read again.
const KEYS_TTL: Duration = Duration::from_secs(3);

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The API is open (no key exists).
    Anyone,
    /// A key, by name.
    Key(String),
}

impl Caller {
    /// A name for idempotency keys and logs.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anyone => "",
            Caller::Key(n) => n,
        }
    }
}

/// The API's key and token checks.
#[derive(Debug)]
pub struct Auth {
    index: Arc<dyn JobIndex>,
    configured: Vec<ApiKey>,
    cache: Mutex<Option<(Instant, Arc<Vec<ApiKey>>)>>,
    secret: Vec<u8>,
}

impl Auth {
    /// Keys from `configured` and `index`; the token secret from the index (made on first use).
    pub fn open(
        index: Arc<dyn JobIndex>,
        configured: &[ConfiguredKey],
    ) -> Result<Auth, IndexError> {
        let fresh = hex::encode(keys::random_bytes::<32>());
        let secret = hex::decode(index.setting("token_secret", &fresh)?)
            .map_err(|e| IndexError::Unavailable(format!("token secret: {e}")))?;
        let configured = configured
            .iter()
            .map(|k| ApiKey {
                name: k.name.clone(),
                sha256: k.sha256.to_ascii_lowercase(),
                scopes: k.scopes.clone(),
                created_ms: 0,
                revoked_ms: None,
            })
            .collect();
        Ok(Auth {
            index,
            configured,
            cache: Mutex::new(None),
            secret,
        })
    }

    /// Every key, configured and stored (blocking: call from a blocking thread).
    pub fn keys(&self) -> Result<Arc<Vec<ApiKey>>, IndexError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, keys)) = cache.as_ref()
            && at.elapsed() < KEYS_TTL
        {
            return Ok(keys.clone());
        }
        let mut all = self.configured.clone();
        all.extend(self.index.keys()?);
        let all = Arc::new(all);
        *cache = Some((Instant::now(), all.clone()));
        Ok(all)
    }

    /// Check the request's key for `scope`.
    pub async fn check(
        self: &Arc<Self>,
        headers: &HeaderMap,
        scope: &str,
    ) -> Result<Caller, ApiError> {
        let me = self.clone();
        let keys = tokio::task::spawn_blocking(move || me.keys())
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))??;
        if keys.is_empty() {
            return Ok(Caller::Anyone);
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(given) = given else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API needs a key: send `Authorization: Bearer <key>` (make one with `mediaflow api-key create`)",
            ));
        };
        let digest = keys::digest(given);
        let Some(key) = keys.iter().find(|k| constant_eq(&k.sha256, &digest)) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the API key is not known",
            ));
        };
        if key.revoked_ms.is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the API key {:?} was revoked", key.name),
            ));
        }
        if !key.allows(scope) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the API key {:?} lacks the {scope:?} scope", key.name),
            ));
        }
        Ok(Caller::Key(key.name.clone()))
    }

    /// Whether a request may read job `id`: a `token` for that job, else a key with `read`.
    pub async fn job_reader(
        self: &Arc<Self>,
        headers: &HeaderMap,
        id: &str,
        token: Option<&str>,
    ) -> Result<(), ApiError> {
        let now = crate::index::now_ms();
        if token.is_some_and(|t| self.verify("job", id, t, now)) {
            return Ok(());
        }
        self.check(headers, "read").await.map(drop)
    }

    /// A token good for `purpose` on `id` until `expires_ms`.
    pub fn token(&self, purpose: &str, id: &str, expires_ms: i64) -> String {
        let sig = self.sign(purpose, id, expires_ms);
        format!("{expires_ms}.{sig}")
    }

    /// Whether `token` is good for `purpose` on `id` now.
    pub fn verify(&self, purpose: &str, id: &str, token: &str, now_ms: i64) -> bool {
        let Some((exp, sig)) = token.split_once('.') else {
            return false;
        };
        let Ok(exp) = exp.parse::<i64>() else {
            return false;
        };
        exp > now_ms && constant_eq(&self.sign(purpose, id, exp), sig)
    }

    fn sign(&self, purpose: &str, id: &str, expires_ms: i64) -> String {
        // HMAC takes keys of any length.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        for part in [purpose, id, &expires_ms.to_string()] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// Compare without stopping at the first difference.
fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::sqlite::SqliteIndex;

    #[test]
    fn tokens_are_bound_to_purpose_id_and_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let index: Arc<dyn JobIndex> =
            Arc::new(SqliteIndex::open(&dir.path().join("i.db")).expect("open"));
        let auth = Auth::open(index.clone(), &[]).expect("auth");
        let t = auth.token("job", "a", 2_000);
        assert!(auth.verify("job", "a", &t, 1_000));
        assert!(!auth.verify("job", "b", &t, 1_000), "another job");
        assert!(!auth.verify("upload", "a", &t, 1_000), "another purpose");
        assert!(!auth.verify("job", "a", &t, 2_000), "expired");
        let forged = format!("9999999999999.{}", t.split_once('.').expect("dot").1);
        assert!(!auth.verify("job", "a", &forged, 1_000), "expiry is signed");
        let again = Auth::open(index, &[]).expect("auth");
        assert!(
            again.verify("job", "a", &t, 1_000),
            "the secret is shared through the index"
        );
    }
}
