//! What a queue message asks for. Every form DESIGN §2 accepts — an S3 event notification,
//! the same wrapped in SNS, an EventBridge "Object Created" event, `s3:TestEvent`, and an
//! explicit job — parses to zero or more [`JobSpec`]s; anything else is a permanent
//! [`MessageError`] naming the reason, dead-lettered with it. [`control`] is the handle a
//! running job is watched (state, progress) and cancelled through.

pub mod control;
pub mod s3_event;
pub mod spec;

use sha2::{Digest, Sha256};

/// An object in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Bucket.
    pub bucket: String,
    /// Key, decoded (never URL-encoded).
    pub key: String,
    /// ETag from the event (quotes removed), if it carried one.
    pub etag: Option<String>,
    /// Size from the event, if it carried one.
    pub size: Option<u64>,
}

impl ObjectRef {
    /// `s3://bucket/key`.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// One job to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The job's id: given by an explicit job, else derived from the event.
    pub id: Option<String>,
    /// Sources (several: images to video).
    pub sources: Vec<ObjectRef>,
    /// Profile named by the message; `None` means "route by bucket and key".
    pub profile: Option<String>,
    /// Where outputs go (`bucket`, `prefix`); `None` means the configured output location.
    pub output: Option<(String, String)>,
    /// Per-job plugin configuration (plugin name → settings) over the profile's.
    pub plugins: serde_json::Map<String, serde_json::Value>,
    /// Which run of the job this is: 1, or more when the job API retries a finished job
    /// (its outputs go under `run-N/`, apart from the earlier run's).
    pub run: u32,
}

/// What a message turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Jobs to run (an S3 event may carry several records).
    Jobs(Vec<JobSpec>),
    /// Nothing to do (`s3:TestEvent`, a non-create event); acknowledge it. Says why.
    Ignore(String),
}

/// A message that is not any accepted form. Permanent: retrying cannot fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised message: {0}")]
pub struct MessageError(pub String);

/// Parse a message body.
pub fn parse(body: &str) -> Result<Parsed, MessageError> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| MessageError(format!("not JSON ({e})")))?;
    if value.get("Records").is_some() {
        return s3_event::parse_notification(&value);
    }
    match value.get("Type").and_then(|t| t.as_str()) {
        Some("Notification") => return s3_event::parse_sns(&value),
        Some("SubscriptionConfirmation") => {
            return Ok(Parsed::Ignore("SNS subscription confirmation".into()));
        }
        _ => {}
    }
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Ok(Parsed::Ignore("s3:TestEvent".into()));
    }
    if value.get("detail-type").is_some() && value.get("source").is_some() {
        return s3_event::parse_eventbridge(&value);
    }
    // `version` marks an explicit job: what is wrong with it is said in its own terms
    // ("explicit job: missing field `sources`"), not as "not any form".
    if value.get("version").is_some() || value.get("sources").is_some() {
        return spec::parse(&value).map(|j| Parsed::Jobs(vec![j]));
    }
    Err(MessageError(
        "not an S3 event, SNS notification, EventBridge event, s3:TestEvent or explicit job".into(),
    ))
}

/// What a message that is not a valid job still says about the job it meant — its first
/// source (`s3://bucket/key`) and its profile, as far as it names them (else empty) — so its
/// `dead-lettered` event can say which upload it was about.
pub fn hints(body: &str) -> (String, String) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return (String::new(), String::new());
    };
    let text = |v: &serde_json::Value, path: &[&str]| -> Option<String> {
        path.iter()
            .try_fold(v, |v, k| v.get(*k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let object = |bucket: Option<String>, key: Option<String>| match (bucket, key) {
        (Some(b), Some(k)) => format!("s3://{b}/{k}"),
        _ => String::new(),
    };
    let record = v.get("Records").and_then(|r| r.get(0));
    let source = if let Some(first) = v.get("sources").and_then(|s| s.get(0)) {
        first.as_str().unwrap_or_default().to_string()
    } else if let Some(r) = record {
        let key = text(r, &["s3", "object", "key"]).and_then(|k| s3_event::url_decode_key(&k));
        object(text(r, &["s3", "bucket", "name"]), key)
    } else {
        object(
            text(&v, &["detail", "bucket", "name"]),
            text(&v, &["detail", "object", "key"]),
        )
    };
    (source, text(&v, &["profile"]).unwrap_or_default())
}

/// A stable job id from what makes a job unique: the source (bucket, key, ETag) and profile.
/// The same upload processed twice gets the same id (and so the same output keys).
pub fn derive_id(source: &ObjectRef, profile: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        &source.bucket,
        &source.key,
        source.etag.as_deref().unwrap_or(""),
        profile,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anything_else_is_a_permanent_error_with_a_reason() {
        assert!(
            parse("not json")
                .expect_err("refused")
                .0
                .contains("not JSON")
        );
        assert!(
            parse(r#"{"hello": "world"}"#)
                .expect_err("refused")
                .0
                .contains("explicit job")
        );
        assert!(parse("[1, 2]").is_err());
        // An explicit job that lacks its sources is called what it is.
        let e = parse(r#"{"version": 1, "profile": "web"}"#).expect_err("no sources");
        assert!(
            e.0.contains("explicit job") && e.0.contains("sources"),
            "{}",
            e.0
        );
    }

    #[test]
    fn a_bad_message_still_names_the_job_it_meant() {
        assert_eq!(
            hints(r#"{"version": 2, "sources": ["s3://b/a.jpg"], "profile": "web"}"#),
            ("s3://b/a.jpg".to_string(), "web".to_string())
        );
        assert_eq!(
            hints(
                r#"{"Records": [{"s3": {"bucket": {"name": "u"}, "object": {"key": "a+b.png"}}}]}"#
            )
            .0,
            "s3://u/a b.png"
        );
        assert_eq!(hints("not json"), (String::new(), String::new()));
        assert_eq!(hints(r#"{"hello": "world"}"#).0, "");
    }

    #[test]
    fn test_events_are_ignored() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-01-01T00:00:00.000Z","Bucket":"uploads","RequestId":"R","HostId":"H"}"#;
        assert_eq!(parse(body), Ok(Parsed::Ignore("s3:TestEvent".into())));
    }

    #[test]
    fn ids_are_stable_and_distinguish_etag_and_profile() {
        let a = ObjectRef {
            bucket: "b".into(),
            key: "k.jpg".into(),
            etag: Some("e1".into()),
            size: None,
        };
        let b = ObjectRef {
            etag: Some("e2".into()),
            ..a.clone()
        };
        assert_eq!(derive_id(&a, "p"), derive_id(&a.clone(), "p"));
        assert_ne!(derive_id(&a, "p"), derive_id(&b, "p"));
        assert_ne!(derive_id(&a, "p"), derive_id(&a, "q"));
        assert_eq!(derive_id(&a, "p").len(), 24);
    }
}
