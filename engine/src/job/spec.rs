//! The explicit job message: `{"version": 1, "id"?, "sources": ["s3://b/k", …],
//! "profile": "name", "output"?: "s3://b/prefix/", "run"?: N}` (`run` > 1: the job API's retry
//! of a finished job, its outputs apart from the earlier runs'). Several sources make images-to-video.

use super::{JobSpec, MessageError, ObjectRef};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: u32,
    #[serde(default)]
    id: Option<String>,
    sources: Vec<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    output: Option<String>,
    /// Per-job plugin settings (name → config), laid over the profile's.
    #[serde(default)]
    plugins: Option<serde_json::Map<String, serde_json::Value>>,
    /// The run (the job API's retries): 1 when absent.
    #[serde(default)]
    run: Option<u32>,
}

/// Parse an explicit job.
pub fn parse(v: &serde_json::Value) -> Result<JobSpec, MessageError> {
    let raw: Raw = serde_json::from_value(v.clone())
        .map_err(|e| MessageError(format!("explicit job: {e}")))?;
    if raw.version != 1 {
        return Err(MessageError(format!(
            "explicit job version {} (this engine reads version 1)",
            raw.version
        )));
    }
    if raw.sources.is_empty() {
        return Err(MessageError("explicit job with no sources".into()));
    }
    if let Some(id) = &raw.id
        && (id.is_empty()
            || id.len() > 128
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    {
        return Err(MessageError(format!(
            "explicit job id {id:?}: use 1-128 of A-Z a-z 0-9 - _ ."
        )));
    }
    let sources = raw
        .sources
        .iter()
        .map(|s| {
            let (bucket, key) = parse_s3_uri(s)
                .ok_or_else(|| MessageError(format!("source {s:?} is not s3://bucket/key")))?;
            Ok(ObjectRef {
                bucket,
                key,
                etag: None,
                size: None,
            })
        })
        .collect::<Result<Vec<_>, MessageError>>()?;
    let output = match &raw.output {
        Some(o) => {
            let (bucket, prefix) = parse_s3_prefix(o)
                .ok_or_else(|| MessageError(format!("output {o:?} is not s3://bucket/prefix/")))?;
            Some((bucket, prefix))
        }
        None => None,
    };
    Ok(JobSpec {
        id: raw.id,
        sources,
        profile: raw.profile,
        output,
        plugins: raw.plugins.unwrap_or_default(),
        run: raw.run.unwrap_or(1).max(1),
    })
}

/// `s3://bucket/key` → (bucket, key); the key must be non-empty.
pub fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (bucket.to_string(), key.to_string()))
}

/// `s3://bucket/prefix/` or `s3://bucket` → (bucket, prefix), the prefix empty or ending in `/`.
pub fn parse_s3_prefix(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    Some((bucket.to_string(), prefix))
}

#[cfg(test)]
mod tests {
    use super::super::{Parsed, parse as parse_message};

    #[test]
    fn explicit_jobs_parse_with_several_sources() {
        let body = r#"{"version":1,"id":"slideshow-7","sources":["s3://in/a.jpg","s3://in/b c.png"],"profile":"slideshow","output":"s3://out/shows"}"#;
        let Ok(Parsed::Jobs(jobs)) = parse_message(body) else {
            panic!("parses")
        };
        let job = &jobs[0];
        assert_eq!(job.id.as_deref(), Some("slideshow-7"));
        assert_eq!(job.sources.len(), 2);
        assert_eq!(
            job.sources[1].key, "b c.png",
            "explicit URIs are taken literally"
        );
        assert_eq!(job.profile.as_deref(), Some("slideshow"));
        assert_eq!(job.output, Some(("out".into(), "shows/".into())));
        assert!(job.plugins.is_empty());
        let with =
            r#"{"version":1,"sources":["s3://in/a.jpg"],"plugins":{"watermark":{"text":"hi"}}}"#;
        let Ok(Parsed::Jobs(jobs)) = parse_message(with) else {
            panic!("parses")
        };
        assert_eq!(jobs[0].plugins["watermark"]["text"], "hi");
    }

    #[test]
    fn bad_explicit_jobs_say_what_is_wrong() {
        for (body, needle) in [
            (r#"{"version":2,"sources":["s3://a/b"]}"#, "version 2"),
            (r#"{"version":1,"sources":[]}"#, "no sources"),
            (
                r#"{"version":1,"sources":["http://a/b"]}"#,
                "is not s3://bucket/key",
            ),
            (
                r#"{"version":1,"sources":["s3://a/"]}"#,
                "is not s3://bucket/key",
            ),
            (
                r#"{"version":1,"sources":["s3://a/b"],"id":"../etc"}"#,
                "explicit job id",
            ),
            (
                r#"{"version":1,"sources":["s3://a/b"],"colour":"red"}"#,
                "unknown field",
            ),
        ] {
            let err = parse_message(body).expect_err(body);
            assert!(err.0.contains(needle), "{body}: {err}");
        }
    }
}
