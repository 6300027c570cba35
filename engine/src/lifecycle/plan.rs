//! From what a message asks for ([`JobSpec`]) to a job to run ([`JobRequest`]): the profile
//! (named, else routed by the first source's bucket and key; a key no route matches gets
//! `default_profile`), where outputs go (named, else `worker.output_bucket` under
//! `worker.output_prefix`), each source pinned to its ETag (the event's, else the object's
//! now), the job id, and the output prefix — a pure function of (source key, ETag, profile):
//! `<output_prefix><profile>/<key>/<etag>/`, and for several sources
//! `<output_prefix><profile>/<first key>/slideshow-<hash of every bucket, key and ETag>/` —
//! so a redelivered message finds the manifest of the first delivery.

use super::{
    Attempt, Destination, JobRequest, Lifecycle, ManifestWrite, Outcome, SourceLocation, SourceRef,
};
use crate::config::{Config, Routes};
use crate::error::{ErrorClass, JobError};
use crate::job::{self, JobSpec, ObjectRef};
use crate::notify::{Event, EventStatus};
use crate::storage::Buckets;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A job that cannot be planned: its destination cannot be used.
#[derive(Debug)]
pub struct Unplanned {
    /// The job's id as far as it is known.
    pub job_id: String,
    /// Its first source's URI.
    pub source: String,
    /// Its profile.
    pub profile: String,
    /// Why.
    pub error: JobError,
}

/// Plans jobs against the configured buckets, routes and output location.
#[derive(Debug, Clone)]
pub struct Planner {
    buckets: Arc<Buckets>,
    routes: Arc<Routes>,
    output_bucket: String,
    output_prefix: String,
    /// `api.upload_prefix`: keys under it carry their job's id.
    upload_prefix: String,
}

impl Planner {
    /// Plans for `config` (routes compiled once, here), opening buckets through `buckets`.
    pub fn new(config: &Config, buckets: Arc<Buckets>) -> Planner {
        Planner {
            buckets,
            routes: Arc::new(config.routes()),
            output_bucket: config.worker.output_bucket.clone(),
            output_prefix: config.worker.output_prefix.clone(),
            upload_prefix: config.api.upload_prefix.clone(),
        }
    }

    /// The profile of `spec`: named by it, else routed by its first source.
    pub fn profile(&self, spec: &JobSpec) -> String {
        match (&spec.profile, spec.sources.first()) {
            (Some(p), _) => p.clone(),
            (None, Some(s)) => self.routes.profile(&s.bucket, &s.key).to_string(),
            (None, None) => self.routes.profile("", "").to_string(),
        }
    }

    /// The job id an upload's key carries (a job the API created), if `spec` is such an upload.
    pub fn upload_id(&self, spec: &JobSpec) -> Option<String> {
        let first = spec.sources.first()?;
        upload_job_id(&self.upload_prefix, &first.key)
    }

    /// Plan `spec`: HEAD each source (to pin its ETag), derive the id and output prefix.
    pub fn plan(&self, spec: &JobSpec) -> Result<JobRequest, Box<Unplanned>> {
        let profile = self.profile(spec);
        let unplanned = |error: JobError| {
            Box::new(Unplanned {
                job_id: spec.id.clone().unwrap_or_default(),
                source: spec.sources.first().map(ObjectRef::uri).unwrap_or_default(),
                profile: profile.clone(),
                error,
            })
        };
        let Some(first) = spec.sources.first() else {
            return Err(unplanned(JobError::UnsupportedFormat(
                "the job names no source".into(),
            )));
        };
        let (bucket, out_prefix) = spec
            .output
            .clone()
            .unwrap_or_else(|| (self.output_bucket.clone(), self.output_prefix.clone()));
        let storage = self
            .buckets
            .bucket(&bucket)
            .map_err(|e| unplanned(e.into()))?;
        let sources: Vec<SourceRef> = spec.sources.iter().map(|s| self.pin(s)).collect();
        let (id, version) = if let [only] = sources.as_slice() {
            let pinned = ObjectRef {
                etag: Some(only.etag.clone()),
                ..first.clone()
            };
            (job::derive_id(&pinned, &profile), only.etag.clone())
        } else {
            let combined = slideshow_version(&sources);
            (combined.clone(), combined)
        };
        Ok(JobRequest {
            id: spec
                .id
                .clone()
                .or_else(|| upload_job_id(&self.upload_prefix, &first.key))
                .unwrap_or(id),
            profile: profile.clone(),
            destination: Destination {
                storage,
                bucket,
                prefix: match spec.run {
                    0 | 1 => output_prefix(&out_prefix, &profile, &first.key, &version),
                    run => format!(
                        "{}run-{run}/",
                        output_prefix(&out_prefix, &profile, &first.key, &version)
                    ),
                },
                manifest: ManifestWrite::CreateIfAbsent,
            },
            sources,
        })
    }

    /// A source pinned to its ETag: the event's, else the object's now (`unknown` when
    /// neither is known).
    fn pin(&self, source: &ObjectRef) -> SourceRef {
        let looked = self
            .buckets
            .bucket(&source.bucket)
            .and_then(|storage| Ok((storage.head(&source.key)?, storage)));
        let (location, now) = match looked {
            Ok((current, storage)) => {
                let now = current.as_ref().map(|c| c.etag.clone());
                let location = SourceLocation::Object {
                    storage,
                    key: source.key.clone(),
                    current,
                };
                (location, now)
            }
            Err(e) => (SourceLocation::Unavailable(Arc::new(e.into())), None),
        };
        SourceRef {
            uri: source.uri(),
            etag: source
                .etag
                .clone()
                .or(now)
                .unwrap_or_else(|| "unknown".into()),
            size: source.size,
            location,
        }
    }
}

impl Lifecycle {
    /// A job that could not be planned: its `retrying` or `dead-lettered` event, and the
    /// outcome — a transient failure runs again, a permanent one can never be recorded.
    pub fn unplanned(&self, job: &Unplanned, attempt: &Attempt) -> Outcome {
        let span = tracing::info_span!("job", job_id = %job.job_id, source = %job.source, profile = %job.profile);
        let _in_job = span.enter();
        let transient = job.error.class() == ErrorClass::Transient;
        let status = if transient && !attempt.last {
            EventStatus::Retrying
        } else {
            EventStatus::DeadLettered
        };
        tracing::warn!(error_code = job.error.code(), error = %job.error, "the job cannot be planned");
        let event = Event::new(status, &job.job_id, &job.source, &job.profile)
            .with_error(&job.error)
            .at(attempt.number, attempt.started.elapsed());
        self.notifier().emit(&event);
        let error = super::clone_error(&job.error);
        if transient {
            Outcome::Unrecorded(error)
        } else {
            Outcome::Unrecordable(error)
        }
    }
}

/// The job id in the key of an upload the API handed out (`<prefix><24 hex digits>/<name>`).
pub fn upload_job_id(prefix: &str, key: &str) -> Option<String> {
    let (id, name) = key.strip_prefix(prefix)?.split_once('/')?;
    let ours = id.len() == 24 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (ours && !name.is_empty()).then(|| id.to_string())
}

/// The version part of a slideshow's output prefix: a hash of every source's bucket, key and
/// pinned ETag.
fn slideshow_version(sources: &[SourceRef]) -> String {
    let mut h = Sha256::new();
    for s in sources {
        let (bucket, key) = s
            .uri
            .strip_prefix("s3://")
            .and_then(|r| r.split_once('/'))
            .unwrap_or(("", &s.uri));
        for part in [bucket, key, s.etag.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
    }
    format!("slideshow-{}", hex::encode(&h.finalize()[..12]))
}

/// Where a job's outputs go: a pure function of (source key, version, profile). The version
/// (an ETag) is made key-safe.
pub fn output_prefix(out_prefix: &str, profile: &str, key: &str, version: &str) -> String {
    let version: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{out_prefix}{profile}/{key}/{version}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uploads_key_names_its_job() {
        let id = "0123456789abcdef01234567";
        assert_eq!(
            upload_job_id("uploads/", &format!("uploads/{id}/a b.mov")).as_deref(),
            Some(id)
        );
        for key in [
            "uploads/0123/a.mov",
            "uploads/0123456789abcdef0123456g/a",
            "other/x/y",
            &format!("uploads/{id}/"),
        ] {
            assert_eq!(upload_job_id("uploads/", key), None, "{key}");
        }
    }

    #[test]
    fn output_keys_are_a_pure_function_of_key_version_and_profile() {
        assert_eq!(
            output_prefix("out/", "web", "a/b c.jpg", "\"e1/x\""),
            "out/web/a/b c.jpg/_e1_x_/"
        );
        let source = |etag: &str| SourceRef {
            uri: "s3://b/k.png".into(),
            etag: etag.into(),
            size: None,
            location: SourceLocation::File("/x".into()),
        };
        let a = slideshow_version(&[source("1"), source("2")]);
        assert_eq!(a, slideshow_version(&[source("1"), source("2")]));
        assert_ne!(a, slideshow_version(&[source("1"), source("3")]));
        assert!(a.starts_with("slideshow-") && a.len() == "slideshow-".len() + 24);
    }

    #[test]
    fn an_unusable_destination_is_named_once_without_doubled_prefixes() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = Config::from_sources(None, &[]).expect("config");
        let planner = Planner::new(&config, Arc::new(Buckets::local(dir.path())));
        let Ok(crate::job::Parsed::Jobs(jobs)) = crate::job::parse(
            r#"{"version":1,"sources":["s3://uploads/a.png"],"output":"s3://bad..name/x/"}"#,
        ) else {
            panic!("parses")
        };
        let spec = JobSpec {
            output: Some(("..".into(), "x/".into())),
            ..jobs[0].clone()
        };
        let unplanned = planner.plan(&spec).expect_err("no such bucket name");
        assert_eq!(unplanned.error.class(), ErrorClass::Permanent);
        let text = super::super::clone_error(&unplanned.error).to_string();
        assert_eq!(text.matches("storage:").count(), 1, "{text}");
        assert!(text.contains("invalid bucket name"), "{text}");
        assert_eq!(unplanned.source, "s3://uploads/a.png");
    }
}
