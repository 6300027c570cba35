//! S3 event notifications (direct, or wrapped in an SNS envelope) and EventBridge
//! "Object Created" events. Notification keys are URL-encoded with `+` for space and are
//! decoded exactly once here; EventBridge keys arrive plain.

use super::{JobSpec, MessageError, ObjectRef, Parsed};
use serde_json::Value;

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn text<'a>(v: &'a Value, path: &[&str], what: &str) -> Result<&'a str, MessageError> {
    field(v, path)
        .and_then(Value::as_str)
        .ok_or_else(|| MessageError(format!("{what} missing ({})", path.join("."))))
}

fn etag(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(|e| e.trim_matches('"').to_string())
        .filter(|e| !e.is_empty())
}

/// `{"Records": [...]}` from S3.
pub fn parse_notification(v: &Value) -> Result<Parsed, MessageError> {
    let records = v
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| MessageError("Records is not a list".into()))?;
    let mut jobs = Vec::new();
    let mut skipped = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let name = text(r, &["eventName"], &format!("record {i} eventName"))?;
        if !name.starts_with("ObjectCreated:") {
            skipped.push(name.to_string());
            continue;
        }
        let bucket = text(r, &["s3", "bucket", "name"], &format!("record {i} bucket"))?;
        let raw_key = text(r, &["s3", "object", "key"], &format!("record {i} key"))?;
        let key = url_decode_key(raw_key).ok_or_else(|| {
            MessageError(format!(
                "record {i}: key {raw_key:?} is not valid URL encoding"
            ))
        })?;
        jobs.push(JobSpec {
            id: None,
            sources: vec![ObjectRef {
                bucket: bucket.to_string(),
                key,
                etag: etag(field(r, &["s3", "object", "eTag"])),
                size: field(r, &["s3", "object", "size"]).and_then(Value::as_u64),
            }],
            profile: None,
            output: None,
            plugins: serde_json::Map::new(),
            run: 1,
        });
    }
    if jobs.is_empty() {
        return Ok(Parsed::Ignore(if skipped.is_empty() {
            "S3 event with no records".into()
        } else {
            format!("not an object creation: {}", skipped.join(", "))
        }));
    }
    Ok(Parsed::Jobs(jobs))
}

/// An SNS envelope whose `Message` is an S3 event (or a test event).
pub fn parse_sns(v: &Value) -> Result<Parsed, MessageError> {
    let inner = text(v, &["Message"], "SNS Message")?;
    super::parse(inner).map_err(|e| MessageError(format!("inside SNS envelope: {}", e.0)))
}

/// An EventBridge event from `aws.s3`.
pub fn parse_eventbridge(v: &Value) -> Result<Parsed, MessageError> {
    let source = text(v, &["source"], "EventBridge source")?;
    let detail_type = text(v, &["detail-type"], "EventBridge detail-type")?;
    if source != "aws.s3" {
        return Err(MessageError(format!(
            "EventBridge event from {source:?}, not aws.s3"
        )));
    }
    if detail_type != "Object Created" {
        return Ok(Parsed::Ignore(format!("EventBridge {detail_type:?} event")));
    }
    let bucket = text(v, &["detail", "bucket", "name"], "EventBridge bucket")?;
    let key = text(v, &["detail", "object", "key"], "EventBridge key")?;
    if key.is_empty() {
        return Err(MessageError("EventBridge event with an empty key".into()));
    }
    Ok(Parsed::Jobs(vec![JobSpec {
        id: None,
        sources: vec![ObjectRef {
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: etag(field(v, &["detail", "object", "etag"])),
            size: field(v, &["detail", "object", "size"]).and_then(Value::as_u64),
        }],
        profile: None,
        output: None,
        plugins: serde_json::Map::new(),
        run: 1,
    }]))
}

/// How S3 event notifications encode a key: every byte but `A-Z a-z 0-9 - _ . ~ /` as `%XX`,
/// a space as `+`.
const KEY_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Decode an S3 notification key: `+` is a space, then percent-decoding, then UTF-8. A `%` not
/// followed by two hex digits makes it invalid (`None`), as does an empty key.
pub fn url_decode_key(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let escapes_ok = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return None;
    }
    let spaced = raw.replace('+', " ");
    let key = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!key.is_empty()).then_some(key)
}

/// Encode a key as S3 event notifications do (the inverse of [`url_decode_key`]).
pub fn url_encode_key(key: &str) -> String {
    key.split(' ')
        .map(|part| percent_encoding::utf8_percent_encode(part, KEY_ESCAPES).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// An S3 `ObjectCreated:Put` notification for `key` in `bucket`, as S3 sends it (what
/// `mediaflow submit` enqueues in local mode).
pub fn object_created(bucket: &str, key: &str, size: u64, etag: &str) -> String {
    serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": { "name": bucket },
                "object": { "key": url_encode_key(key), "size": size, "eTag": etag }
            }
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    const NOTIFICATION: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
        "eventTime":"2024-05-01T12:00:00.000Z","eventName":"ObjectCreated:Put",
        "s3":{"s3SchemaVersion":"1.0","bucket":{"name":"uploads","arn":"arn:aws:s3:::uploads"},
        "object":{"key":"photos/My+Holiday+%282024%29%2Fday%C3%A9+1.jpg","size":1024,"eTag":"\"0123abc\"","sequencer":"00A"}}}]}"#;

    fn only_job(p: Parsed) -> JobSpec {
        match p {
            Parsed::Jobs(mut j) if j.len() == 1 => j.remove(0),
            other => panic!("expected one job, got {other:?}"),
        }
    }

    #[test]
    fn s3_notification_keys_are_decoded_once() {
        let job = only_job(parse(NOTIFICATION).expect("parses"));
        let src = &job.sources[0];
        assert_eq!(src.bucket, "uploads");
        assert_eq!(src.key, "photos/My Holiday (2024)/dayé 1.jpg");
        assert_eq!(src.etag.as_deref(), Some("0123abc"));
        assert_eq!(src.size, Some(1024));
        assert_eq!(job.profile, None);
        // A literal "%2B" decodes to "+", not to a space: decoded exactly once.
        assert_eq!(url_decode_key("a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(url_decode_key("bad%zz"), None);
        assert_eq!(url_decode_key("cut%4"), None);
        for key in ["a.jpg", "my photo (1).jpg", "dir/sub dir/naïve+plus%.png"] {
            assert_eq!(url_decode_key(&url_encode_key(key)).as_deref(), Some(key));
        }
        assert_eq!(url_encode_key("a b+c/d é"), "a+b%2Bc/d+%C3%A9");
    }

    #[test]
    fn sns_wrapped_events_unwrap() {
        let envelope = serde_json::json!({
            "Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": NOTIFICATION, "Timestamp": "2024-05-01T12:00:01.000Z"
        });
        let job = only_job(parse(&envelope.to_string()).expect("parses"));
        assert_eq!(job.sources[0].key, "photos/My Holiday (2024)/dayé 1.jpg");
        let bad = serde_json::json!({"Type": "Notification", "Message": "{\"nope\": 1}"});
        assert!(
            parse(&bad.to_string())
                .expect_err("refused")
                .0
                .contains("inside SNS envelope")
        );
    }

    #[test]
    fn eventbridge_keys_are_taken_as_is() {
        let body = r#"{"version":"0","id":"e-1","detail-type":"Object Created","source":"aws.s3","account":"1",
            "time":"2024-05-01T12:00:00Z","region":"us-east-1","resources":["arn:aws:s3:::uploads"],
            "detail":{"version":"0","bucket":{"name":"uploads"},"object":{"key":"raw/a+b 2024:05.jpg","size":9,"etag":"e9"},
            "request-id":"r","requester":"1","reason":"PutObject"}}"#;
        let job = only_job(parse(body).expect("parses"));
        assert_eq!(job.sources[0].key, "raw/a+b 2024:05.jpg");
        assert_eq!(job.sources[0].etag.as_deref(), Some("e9"));
        let deleted = body.replace("Object Created", "Object Deleted");
        assert!(matches!(parse(&deleted), Ok(Parsed::Ignore(_))));
        let other = body.replace("aws.s3", "aws.ec2");
        assert!(parse(&other).is_err());
    }

    #[test]
    fn removal_events_are_ignored_and_broken_records_refused() {
        let removed = NOTIFICATION.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert_eq!(
            parse(&removed),
            Ok(Parsed::Ignore(
                "not an object creation: ObjectRemoved:Delete".into()
            ))
        );
        let no_key = NOTIFICATION.replace(
            r#""key":"photos/My+Holiday+%282024%29%2Fday%C3%A9+1.jpg","#,
            "",
        );
        assert!(parse(&no_key).expect_err("refused").0.contains("key"));
        let two = NOTIFICATION.replace("}}}]}", "}}},{\"eventName\":\"ObjectCreated:Copy\",\"s3\":{\"bucket\":{\"name\":\"b2\"},\"object\":{\"key\":\"x.png\"}}}]}");
        assert!(matches!(parse(&two), Ok(Parsed::Jobs(j)) if j.len() == 2));
    }
}
