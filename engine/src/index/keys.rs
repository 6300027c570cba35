//! API keys: `mfk_` and 43 characters of randomness, shown once when made; only the SHA-256
//! of a key is kept (in the index, or in `[api] keys` for deployments that bring their own).
//! A key has scopes — `read` (look at jobs, outputs, events) and `write` (create uploads and
//! jobs, cancel, retry) — and can be revoked.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::config::{SCOPES, unknown_scope};

/// Every key starts with this (so it is recognised in logs and by secret scanners).
pub const PREFIX: &str = "mfk_";

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Its name (who or what uses it).
    pub name: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// Created (ms since the epoch).
    pub created_ms: i64,
    /// Revoked (ms since the epoch), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<i64>,
}

impl ApiKey {
    /// Whether it may act in `scope`.
    pub fn allows(&self, scope: &str) -> bool {
        self.revoked_ms.is_none() && self.scopes.iter().any(|s| s == scope)
    }
}

/// A new key: the secret to show once, and the record to keep.
pub fn generate(name: &str, scopes: &[String], now_ms: i64) -> (String, ApiKey) {
    use base64::Engine;
    let secret = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    );
    let key = ApiKey {
        name: name.to_string(),
        sha256: digest(&secret),
        scopes: scopes.to_vec(),
        created_ms: now_ms,
        revoked_ms: None,
    };
    (secret, key)
}

/// SHA-256 of `secret`, hex.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The OS source does not fail on a working Linux; if it ever does, a key must not be
    // made from zeros.
    if let Err(e) = getrandom::fill(&mut out) {
        panic!("the operating system's random source failed: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_hashed_and_scoped() {
        let (a, rec) = generate("ci", &["read".into()], 5);
        let (b, _) = generate("ci", &["read".into()], 5);
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43, "{a}");
        assert_eq!(rec.sha256, digest(&a));
        assert!(!rec.sha256.contains(&a[4..]));
        assert!(rec.allows("read") && !rec.allows("write"));
        let revoked = ApiKey {
            revoked_ms: Some(6),
            ..rec
        };
        assert!(!revoked.allows("read"));
        assert_eq!(
            unknown_scope(&["read".into(), "admin".into()]),
            Some("admin")
        );
    }
}
