//! `[api]`: `mediaflow serve` — where it listens, the job index it reads and the worker writes
//! (DynamoDB on AWS, SQLite locally), uploads (where they land, how long their URLs work, how
//! large they may be, which types), the output URLs it hands out, and API keys.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The scopes an API key may have: `read` (jobs, outputs, events) and `write` (uploads,
/// jobs, cancel, retry).
pub const SCOPES: [&str; 2] = ["read", "write"];

/// The first of `scopes` that is not one of [`SCOPES`].
pub fn unknown_scope(scopes: &[String]) -> Option<&str> {
    scopes
        .iter()
        .map(String::as_str)
        .find(|s| !SCOPES.contains(s))
}

/// The API's default address: loopback, so a laptop's `serve` is not open to the network.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8080";

/// An API key brought by the deployment (e.g. from a secret): its SHA-256, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredKey {
    /// Who or what uses it.
    pub name: String,
    /// SHA-256 of the key, hex (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    /// `read` and/or `write`.
    #[serde(default = "all_scopes")]
    pub scopes: Vec<String>,
}

fn all_scopes() -> Vec<String> {
    vec!["read".into(), "write".into()]
}

/// `[api]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address `serve` binds, `IP:port`. With no API key anywhere (`[api] keys` or
    /// `mediaflow api-key create`) it must be a loopback address: an open API is refused on
    /// the network.
    pub listen: SocketAddr,
    /// DynamoDB table of the job index (on AWS). Unset: the SQLite index at
    /// `worker.data_dir/index.db` (local mode); with `worker.queue_url` set and no table, the
    /// worker keeps no index and `serve` refuses to start.
    pub index_table: Option<String>,
    /// Local mode keeps the SQLite job index (for `serve` and `mediaflow jobs`); `false` turns
    /// it off — the worker then writes none, and `serve` cannot start.
    pub local_index: bool,
    /// The URL clients reach this API at (`https://media.example.com`), for the upload and
    /// file URLs it hands out. Unset: `http://` + the `Host` of the request.
    pub public_url: Option<String>,
    /// Base URL of the outputs (a CDN in front of the output bucket): an output's URL is this
    /// + `/` + its key. Unset: presigned S3 GETs on AWS, `serve`'s own `/v1/files/…` locally.
    pub outputs_base_url: Option<String>,
    /// Key prefix of uploads in `worker.source_bucket`: `<prefix><job id>/<file name>`. The
    /// worker recognises the job id in such keys.
    pub upload_prefix: String,
    /// How long an upload URL works, in seconds; a job whose upload has not arrived by then is
    /// `expired`.
    pub upload_expiry_secs: u64,
    /// Largest upload accepted, in bytes (413 beyond; also bounded by `limits.max_input_bytes`).
    pub max_upload_bytes: u64,
    /// Uploads at least this large are multipart (a URL per part and a completion call);
    /// below, one PUT.
    pub multipart_threshold_bytes: u64,
    /// The size of each part of a multipart upload but the last (raised when an upload would
    /// need more than S3's 10,000 parts).
    pub multipart_part_bytes: u64,
    /// How long `serve`'s own upload target waits for the next bytes of a body before it gives
    /// up on a stalled client (408), in seconds.
    pub upload_idle_timeout_secs: u64,
    /// Content types an upload may declare (415 otherwise); `type/*` matches a family.
    pub content_types: Vec<String>,
    /// How long the short-lived tokens in file and event-stream URLs work, in seconds.
    pub token_ttl_secs: u64,
    /// Shortest time between two progress writes of one job to the index, in milliseconds.
    pub progress_interval_ms: u64,
    /// Jobs in a list page when the client does not say (at most 100).
    pub page_size: usize,
    /// API keys brought by the deployment, besides those `mediaflow api-key create` stores.
    pub keys: Vec<ConfiguredKey>,
    /// Days a finished job's record stays in the job index after its last change; 0 keeps
    /// records forever. DynamoDB removes them by its time to live (each finished record
    /// carries `expires_at`, epoch seconds; the table's TTL must be on that attribute);
    /// `serve` removes them from the SQLite index. Outputs are not touched, nor are records
    /// whose notifications are still undelivered.
    pub job_retention_days: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_API_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            index_table: None,
            local_index: true,
            public_url: None,
            outputs_base_url: None,
            upload_prefix: "uploads/".into(),
            upload_expiry_secs: 3600,
            max_upload_bytes: 5 << 30,
            multipart_threshold_bytes: 64 << 20,
            multipart_part_bytes: 16 << 20,
            upload_idle_timeout_secs: 30,
            content_types: vec!["image/*".into(), "video/*".into()],
            token_ttl_secs: 3600,
            progress_interval_ms: 1000,
            page_size: 20,
            keys: Vec::new(),
            job_retention_days: 0,
        }
    }
}

impl ApiConfig {
    /// Check the values; `Err((field, problem))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let p = &self.upload_prefix;
        if p.is_empty() || !p.ends_with('/') || p.starts_with('/') || p.contains("..") {
            return Err((
                "upload_prefix".into(),
                format!("{p:?} must be a relative key prefix ending in `/` (e.g. \"uploads/\")"),
            ));
        }
        for (name, v) in [
            ("upload_expiry_secs", self.upload_expiry_secs),
            ("max_upload_bytes", self.max_upload_bytes),
            ("token_ttl_secs", self.token_ttl_secs),
            ("upload_idle_timeout_secs", self.upload_idle_timeout_secs),
        ] {
            if v == 0 {
                return Err((name.into(), "must be greater than 0".into()));
            }
        }
        if self.upload_expiry_secs > 7 * 24 * 3600 {
            return Err((
                "upload_expiry_secs".into(),
                "at most 604800 (S3 presigned URLs last at most 7 days)".into(),
            ));
        }
        for (name, v) in [
            ("multipart_threshold_bytes", self.multipart_threshold_bytes),
            ("multipart_part_bytes", self.multipart_part_bytes),
        ] {
            if !(5 << 20..=5 << 30).contains(&v) {
                return Err((
                    name.into(),
                    "must be 5 MiB..=5 GiB (S3's part sizes)".into(),
                ));
            }
        }
        if self.job_retention_days > 36_500 {
            return Err((
                "job_retention_days".into(),
                "at most 36500 (0 keeps records forever)".into(),
            ));
        }
        if self.page_size == 0 || self.page_size > 100 {
            return Err(("page_size".into(), "must be 1..=100".into()));
        }
        for k in &self.keys {
            let hex_ok = k.sha256.len() == 64 && k.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex_ok {
                return Err((
                    format!("keys.{}.sha256", k.name),
                    "must be 64 hex digits: the key's SHA-256, not the key".into(),
                ));
            }
            if let Some(s) = unknown_scope(&k.scopes) {
                return Err((
                    format!("keys.{}.scopes", k.name),
                    format!("unknown scope {s:?} (scopes: read, write)"),
                ));
            }
        }
        Ok(())
    }

    /// Whether uploads may declare `content_type`.
    pub fn accepts(&self, content_type: &str) -> bool {
        content_type_allowed(&self.content_types, content_type)
    }
}

/// Whether `content_type` (parameters ignored, any case) is one of `allowed`, where `type/*`
/// matches a family.
pub fn content_type_allowed(allowed: &[String], content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    allowed.iter().any(|allowed| {
        let allowed = allowed.to_ascii_lowercase();
        match allowed.strip_suffix("/*") {
            Some(family) => ct
                .split_once('/')
                .is_some_and(|(f, sub)| f == family && !sub.is_empty()),
            None => ct == allowed,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_match_exactly_or_by_family() {
        let c = ApiConfig::default();
        assert!(c.accepts("image/jpeg") && c.accepts("Video/MP4; codecs=avc1"));
        assert!(!c.accepts("image/") && !c.accepts("text/html") && !c.accepts("imagex/png"));
        assert!(c.validate().is_ok());
        let bad = ApiConfig {
            upload_prefix: "/abs/".into(),
            ..ApiConfig::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.0), Err("upload_prefix".into()));
    }
}
