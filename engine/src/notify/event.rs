//! A job lifecycle event: what happened to a job (`succeeded`, `failed`, `retrying`,
//! `dead-lettered`), with the manifest's facts (source, profile, outputs, metadata, plugins,
//! timings, error), the attempt and the wall time so far. It serialises to the JSON the default
//! rule sends (README "Notifications"), and converts to the WIT `job-event` rule plugins see.

use crate::error::{ErrorClass, JobError};
use crate::manifest::{ErrorRecord, Manifest, Output, PluginRecord, Source, Status};
use crate::plugin::types;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventStatus {
    /// Recorded with every output.
    Succeeded,
    /// Failed permanently (a failure manifest is written when storage allows).
    Failed,
    /// Failed transiently; the message will be received again.
    Retrying,
    /// Failed on the queue's last receive: the message goes to the dead-letter queue.
    DeadLettered,
}

impl EventStatus {
    /// `succeeded`, `failed`, `retrying` or `dead-lettered`.
    pub fn name(self) -> &'static str {
        match self {
            EventStatus::Succeeded => "succeeded",
            EventStatus::Failed => "failed",
            EventStatus::Retrying => "retrying",
            EventStatus::DeadLettered => "dead-lettered",
        }
    }

    fn wit(self) -> types::JobStatus {
        match self {
            EventStatus::Succeeded => types::JobStatus::Succeeded,
            EventStatus::Failed => types::JobStatus::Failed,
            EventStatus::Retrying => types::JobStatus::Retrying,
            EventStatus::DeadLettered => types::JobStatus::DeadLettered,
        }
    }
}

/// The most metadata (as JSON) an event carries; past it the event points to the manifest.
pub const MAX_EVENT_METADATA_BYTES: usize = 64 * 1024;

/// Something that happened to a job. Field names follow `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Unique per event (a random UUID); webhooks carry it as `X-Mediaflow-Event-Id`, so a
    /// receiver can drop a delivery it has already seen.
    pub id: String,
    /// What happened.
    pub status: EventStatus,
    /// When the event was made, RFC 3339 UTC.
    pub time: String,
    /// The job.
    pub job_id: String,
    /// The source (for a message that is not a job: only `uri`, empty).
    pub source: Source,
    /// Every source of an images-to-video job, in order (absent otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    /// Profile used.
    pub profile: String,
    /// Files produced (`succeeded` only).
    pub outputs: Vec<Output>,
    /// Metadata by plugin name, then key (empty when it is too large to carry: see
    /// `metadata_omitted_bytes`).
    pub metadata: BTreeMap<String, BTreeMap<String, Value>>,
    /// Set when the job's metadata, this many bytes as JSON, is over
    /// [`MAX_EVENT_METADATA_BYTES`]: the event carries none of it, so every sink takes the
    /// event (SNS and SQS take 256 KB); the job's `manifest.json` has it all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_omitted_bytes: Option<usize>,
    /// Plugins that took part.
    pub plugins: Vec<PluginRecord>,
    /// Milliseconds per stage.
    pub timings_ms: BTreeMap<String, f64>,
    /// Wall time of the job so far (this attempt), in milliseconds.
    pub duration_ms: f64,
    /// How many times the job's message has been received (1 = first attempt).
    pub attempt: u32,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
}

impl Event {
    /// An event with nothing learned yet about the job but its identity.
    pub fn new(
        status: EventStatus,
        job_id: impl Into<String>,
        source_uri: impl Into<String>,
        profile: impl Into<String>,
    ) -> Event {
        Event {
            id: new_id(),
            status,
            time: rfc3339(SystemTime::now()),
            job_id: job_id.into(),
            source: Source {
                uri: source_uri.into(),
                etag: String::new(),
                bytes: 0,
                sha256: String::new(),
                media: None,
            },
            sources: Vec::new(),
            profile: profile.into(),
            outputs: Vec::new(),
            metadata: BTreeMap::new(),
            metadata_omitted_bytes: None,
            plugins: Vec::new(),
            timings_ms: BTreeMap::new(),
            duration_ms: 0.0,
            attempt: 1,
            error: None,
        }
    }

    /// The `succeeded` or `failed` event of a recorded job.
    pub fn from_manifest(m: &Manifest) -> Event {
        let status = match m.status {
            Status::Succeeded => EventStatus::Succeeded,
            Status::Failed => EventStatus::Failed,
        };
        let bytes = serde_json::to_vec(&m.metadata).map_or(0, |v| v.len());
        let (metadata, metadata_omitted_bytes) = if bytes > MAX_EVENT_METADATA_BYTES {
            (BTreeMap::new(), Some(bytes))
        } else {
            (m.metadata.clone(), None)
        };
        Event {
            source: m.source.clone(),
            sources: m.sources.clone(),
            outputs: m.outputs.clone(),
            metadata,
            metadata_omitted_bytes,
            plugins: m.plugins.clone(),
            timings_ms: m.timings_ms.clone(),
            duration_ms: m.timings_ms.get("total").copied().unwrap_or(0.0),
            error: m.error.clone(),
            ..Event::new(status, &m.job_id, &m.source.uri, &m.profile)
        }
    }

    /// Its id derived from the manifest as stored (a version 8 UUID of the bytes' SHA-256),
    /// so the event delivered again from the stored manifest — the outbox after a crash — has
    /// the same id.
    pub fn identified_by(mut self, stored_manifest: &[u8]) -> Event {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(stored_manifest);
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        self.id = uuid(b, 0x80);
        self
    }

    /// With `error`.
    pub fn with_error(mut self, error: &JobError) -> Event {
        self.error = Some(error.into());
        self
    }

    /// With the attempt number and the wall time so far.
    pub fn at(mut self, attempt: u32, elapsed: Duration) -> Event {
        self.attempt = attempt;
        self.duration_ms = elapsed.as_secs_f64() * 1e3;
        self
    }

    /// Compact JSON.
    pub fn to_json(&self) -> String {
        // Plain data with string keys and finite floats: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The WIT `job-event` a rule plugin evaluates.
    pub fn to_wit(&self) -> types::JobEvent {
        let media = self.source.media.as_ref().map(|m| types::MediaInfo {
            uri: self.source.uri.clone(),
            kind: if m.kind == "video" {
                types::MediaKind::Video
            } else {
                types::MediaKind::Image
            },
            format: m.format.clone(),
            codec: m.codec.clone(),
            width: m.width,
            height: m.height,
            orientation: m.orientation,
            duration_s: m.duration_s,
            fps: m.fps,
            has_audio: m.has_audio,
            bytes: self.source.bytes,
        });
        types::JobEvent {
            id: self.id.clone(),
            status: self.status.wit(),
            job_id: self.job_id.clone(),
            source_uri: self.source.uri.clone(),
            media,
            profile: self.profile.clone(),
            outputs: self
                .outputs
                .iter()
                .map(|o| types::JobOutput {
                    name: o.name.clone(),
                    uri: o.uri.clone(),
                    kind: o.kind.clone(),
                    format: o.format.clone(),
                    width: o.width,
                    height: o.height,
                    bytes: o.bytes,
                })
                .collect(),
            metadata: self
                .metadata
                .iter()
                .map(|(plugin, entries)| types::PluginMetadata {
                    plugin: plugin.clone(),
                    entries: entries
                        .iter()
                        .map(|(k, v)| types::MetadataEntry {
                            key: k.clone(),
                            value: metadata_value(v),
                        })
                        .collect(),
                })
                .collect(),
            plugins: self
                .plugins
                .iter()
                .map(|p| types::PluginUse {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    digest: p.digest.clone(),
                })
                .collect(),
            timings: self
                .timings_ms
                .iter()
                .map(|(stage, ms)| types::Timing {
                    stage: stage.clone(),
                    ms: *ms,
                })
                .collect(),
            duration_ms: self.duration_ms,
            attempt: self.attempt,
            error: self.error.as_ref().map(|e| types::JobError {
                class: match e.class {
                    ErrorClass::Permanent => "permanent".into(),
                    ErrorClass::Transient => "transient".into(),
                },
                code: e.code.clone(),
                message: e.message.clone(),
            }),
        }
    }
}

/// A manifest metadata value (see `pipeline::metadata_json`) back as a typed WIT value.
fn metadata_value(v: &Value) -> types::MetadataValue {
    use types::MetadataValue as V;
    let int = |v: &Value| v.as_i64();
    let float = |v: &Value| v.as_f64();
    match v {
        Value::String(s) => V::Text(s.clone()),
        Value::Bool(b) => V::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => V::Integer(i),
            None => V::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Object(o) => {
            if let (Some(n), Some(d)) = (
                o.get("numerator").and_then(int),
                o.get("denominator").and_then(int),
            ) {
                return V::Rational(types::Rational {
                    numerator: n,
                    denominator: d,
                });
            }
            if let Some(seconds) = o.get("unix_seconds").and_then(int) {
                return V::Timestamp(types::Timestamp {
                    seconds,
                    nanoseconds: o
                        .get("nanoseconds")
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    utc_offset_minutes: o
                        .get("utc_offset_minutes")
                        .and_then(int)
                        .and_then(|m| i16::try_from(m).ok()),
                });
            }
            if let (Some(latitude), Some(longitude)) = (
                o.get("latitude").and_then(float),
                o.get("longitude").and_then(float),
            ) {
                return V::Gps(types::GpsPosition {
                    latitude,
                    longitude,
                    altitude_m: o.get("altitude_m").and_then(float),
                });
            }
            V::Text(v.to_string())
        }
        Value::Null | Value::Array(_) => V::Text(v.to_string()),
    }
}

/// A random (version 4) UUID.
fn new_id() -> String {
    uuid(fastrand::u128(..).to_be_bytes(), 0x40)
}

/// A UUID of `version` (the high nibble of byte 6) from `b`.
fn uuid(mut b: [u8; 16], version: u8) -> String {
    b[6] = (b[6] & 0x0f) | version;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-11-05T09:30:00.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Media, SCHEMA};

    fn manifest() -> Manifest {
        Manifest {
            schema: SCHEMA,
            job_id: "job-1".into(),
            status: Status::Succeeded,
            source: Source {
                uri: "s3://uploads/cat.jpg".into(),
                etag: "e1".into(),
                bytes: 1234,
                sha256: "ab".into(),
                media: Some(Media {
                    kind: "image".into(),
                    format: "jpeg".into(),
                    codec: None,
                    width: 640,
                    height: 480,
                    duration_s: None,
                    fps: None,
                    has_audio: false,
                    frames: 1,
                    orientation: 6,
                    ..Media::default()
                }),
            },
            sources: Vec::new(),
            profile: "default".into(),
            outputs: vec![Output {
                name: "thumb".into(),
                uri: "s3://out/thumb.jpg".into(),
                kind: "image".into(),
                format: "jpeg".into(),
                width: 200,
                height: 150,
                bytes: 999,
                sha256: "cd".into(),
                bitrate_bps: None,
                codec: None,
                rate: None,
            }],
            metadata: BTreeMap::from([(
                "exif".to_string(),
                BTreeMap::from([
                    ("camera.make".to_string(), serde_json::json!("Canon")),
                    ("iso".to_string(), serde_json::json!(400)),
                    (
                        "exposure".to_string(),
                        serde_json::json!({"numerator": 1, "denominator": 250}),
                    ),
                    (
                        "gps.position".to_string(),
                        serde_json::json!({"latitude": 48.8, "longitude": 2.3, "altitude_m": null}),
                    ),
                ]),
            )]),
            plugins: vec![PluginRecord {
                name: "exif".into(),
                version: "1.0.0".into(),
                digest: "sha256:00".into(),
                world: "metadata-extractor".into(),
                duration_ms: 1.0,
                skipped: None,
            }],
            error: None,
            timings_ms: BTreeMap::from([("total".to_string(), 42.0)]),
            notes: Vec::new(),
        }
    }

    #[test]
    fn metadata_too_large_for_a_sink_is_left_in_the_manifest() {
        let mut m = manifest();
        let big: BTreeMap<String, Value> = (0..100)
            .map(|i| (format!("k{i:03}"), Value::from("v".repeat(1000))))
            .collect();
        m.metadata.insert("flood".into(), big);
        let e = Event::from_manifest(&m);
        assert!(e.metadata.is_empty());
        assert!(
            e.metadata_omitted_bytes
                .is_some_and(|b| b > MAX_EVENT_METADATA_BYTES)
        );
        assert!(e.to_json().len() < 16 * 1024, "the event is small again");
        assert!(
            Event::from_manifest(&manifest())
                .metadata_omitted_bytes
                .is_none()
        );
    }

    #[test]
    fn a_manifest_becomes_an_event_in_json_and_in_wit() {
        let e = Event::from_manifest(&manifest());
        let json: Value = serde_json::from_str(&e.to_json()).expect("JSON");
        assert_eq!(json["status"], "succeeded");
        assert_eq!(json["source"]["uri"], "s3://uploads/cat.jpg");
        assert_eq!(json["outputs"][0]["bytes"], 999);
        assert_eq!(json["metadata"]["exif"]["camera.make"], "Canon");
        assert_eq!(json["duration_ms"], 42.0);
        assert!(json.get("error").is_none());
        let w = e.to_wit();
        assert_eq!(w.status, types::JobStatus::Succeeded);
        assert_eq!(
            w.media.as_ref().map(|m| (m.width, m.bytes)),
            Some((640, 1234))
        );
        assert_eq!(w.outputs[0].uri, "s3://out/thumb.jpg");
        let entries = &w.metadata[0].entries;
        let get = |k: &str| {
            entries
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.clone())
                .expect(k)
        };
        assert_eq!(
            get("camera.make"),
            types::MetadataValue::Text("Canon".into())
        );
        assert_eq!(get("iso"), types::MetadataValue::Integer(400));
        assert!(
            matches!(get("exposure"), types::MetadataValue::Rational(r) if r.denominator == 250)
        );
        assert!(
            matches!(get("gps.position"), types::MetadataValue::Gps(g) if g.altitude_m.is_none())
        );
        assert_eq!(w.plugins[0].digest, "sha256:00");
    }

    #[test]
    fn transient_events_carry_the_error_attempt_and_a_fresh_id() {
        let err = JobError::Storage {
            message: "S3 503".into(),
            class: ErrorClass::Transient,
        };
        let a = Event::new(EventStatus::DeadLettered, "j", "s3://b/k", "p")
            .with_error(&err)
            .at(5, Duration::from_millis(1500));
        let b = Event::new(EventStatus::DeadLettered, "j", "s3://b/k", "p");
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 36);
        let json: Value = serde_json::from_str(&a.to_json()).expect("JSON");
        assert_eq!(json["status"], "dead-lettered");
        assert_eq!(json["attempt"], 5);
        assert_eq!(json["duration_ms"], 1500.0);
        assert_eq!(json["error"]["class"], "transient");
        assert_eq!(json["error"]["code"], "storage");
        let w = a.to_wit();
        assert_eq!(w.error.map(|e| e.class), Some("transient".to_string()));
        assert_eq!(w.status, types::JobStatus::DeadLettered);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
