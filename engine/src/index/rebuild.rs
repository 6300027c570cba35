//! `mediaflow index rebuild`: the index from the manifests, which stay the truth about what
//! was recorded. Every `manifest.json` under the output location gives its job's record (the
//! latest run of a retried job wins); records already as the manifests say are left alone, and
//! jobs the manifests don't know (uploads awaited, jobs queued) are kept.

use super::follow::recorded_at;
use super::record::{Change, JobRecord, JobStatus};
use super::{IndexError, JobIndex, now_ms};
use crate::manifest::Manifest;
use crate::storage::{Storage, StorageError};
use std::collections::BTreeMap;

/// What a rebuild did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Records made for jobs the index did not have.
    pub created: usize,
    /// Records brought in line with their manifest.
    pub updated: usize,
    /// Records that already said what their manifest says.
    pub unchanged: usize,
    /// Manifests that could not be read (logged).
    pub unreadable: usize,
}

/// What can stop a rebuild.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The output store could not be listed or read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The index could not be written.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The run a manifest key belongs to (`…/run-N/manifest.json`; 1 otherwise).
fn run_of(key: &str) -> u32 {
    key.strip_suffix("/manifest.json")
        .and_then(|k| k.rsplit('/').next())
        .and_then(|last| last.strip_prefix("run-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Rebuild `index` from the manifests under `prefix` in `store` (the bucket `bucket`).
pub fn rebuild(
    index: &dyn JobIndex,
    store: &dyn Storage,
    bucket: &str,
    prefix: &str,
) -> Result<Rebuilt, RebuildError> {
    let mut latest: BTreeMap<String, (u32, String, Manifest)> = BTreeMap::new();
    let mut done = Rebuilt::default();
    for (key, _) in store.list(prefix)? {
        if !key.ends_with("manifest.json") {
            continue;
        }
        let parsed = store
            .get(&key)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).map_err(|e| e.to_string()));
        let m = match parsed {
            Ok(m) => m,
            Err(why) => {
                tracing::warn!(%key, %why, "manifest skipped: unreadable");
                done.unreadable += 1;
                continue;
            }
        };
        let run = run_of(&key);
        if latest.get(&m.job_id).is_none_or(|(r, _, _)| run > *r) {
            latest.insert(m.job_id.clone(), (run, key, m));
        }
    }
    let base = store.uri("");
    for (id, (run, key, m)) in latest {
        let Change::Recorded {
            status,
            error,
            manifest_key,
            outputs,
            metadata,
            ..
        } = recorded_at(&m, &base, &key)
        else {
            continue;
        };
        let current = index.get(&id)?;
        if let Some(c) = &current
            && (c.run > run || (c.run == run && c.manifest_key.as_deref() == Some(key.as_str())))
        {
            done.unchanged += 1;
            continue;
        }
        let sources = if m.sources.is_empty() {
            vec![m.source.uri.clone()]
        } else {
            m.sources.iter().map(|s| s.uri.clone()).collect()
        };
        let now = now_ms();
        let mut record = current
            .clone()
            .unwrap_or_else(|| JobRecord::new(&id, status, &m.profile, sources, now));
        record.status = status;
        record.error = error;
        record.manifest_key = Some(manifest_key);
        record.outputs = outputs;
        record.metadata = metadata;
        record.run = run;
        record.stage = None;
        record.percent = if status == JobStatus::Succeeded {
            100.0
        } else {
            record.percent
        };
        record.output_bucket = bucket.to_string();
        record.updated_ms = now;
        record.rev = current.as_ref().map_or(0, |c| c.rev + 1);
        if index.put(&record, current.as_ref().map(|c| c.rev))? {
            if current.is_some() {
                done.updated += 1;
            } else {
                done.created += 1;
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::sqlite::SqliteIndex;

    #[test]
    fn runs_are_read_from_manifest_keys() {
        assert_eq!(run_of("p/a.png/e1/manifest.json"), 1);
        assert_eq!(run_of("p/a.png/e1/run-3/manifest.json"), 3);
        assert_eq!(run_of("p/run-x/manifest.json"), 1);
    }

    #[test]
    fn the_index_is_rebuilt_from_manifests_and_a_second_rebuild_changes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = crate::storage::FsStorage::new(dir.path().join("out")).expect("store");
        let index = SqliteIndex::open(&dir.path().join("index.db")).expect("index");
        let manifest = |id: &str, status: &str| {
            serde_json::json!({
                "schema": 1, "job_id": id, "status": status, "profile": "p",
                "source": {"uri": "s3://uploads/a.png", "etag": "e", "bytes": 1, "sha256": ""},
                "outputs": [], "metadata": {}, "plugins": [], "timings_ms": {},
            })
            .to_string()
        };
        store
            .put(
                "p/a.png/e/manifest.json",
                manifest("a", "succeeded").as_bytes(),
                "application/json",
            )
            .expect("put");
        store
            .put(
                "p/a.png/e/run-2/manifest.json",
                manifest("a", "failed").as_bytes(),
                "application/json",
            )
            .expect("put");
        store
            .put("p/b.png/e/manifest.json", b"{not json", "application/json")
            .expect("put");
        let queued = JobRecord::new("q", JobStatus::Queued, "p", vec![], 1);
        index.create(&queued).expect("create");
        let done = rebuild(&index, &store, "out", "").expect("rebuild");
        assert_eq!((done.created, done.updated, done.unreadable), (1, 0, 1));
        let a = index.get("a").expect("get").expect("a");
        assert_eq!(
            (a.status, a.run),
            (JobStatus::Failed, 2),
            "the latest run wins"
        );
        assert_eq!(
            index.get("q").expect("get"),
            Some(queued),
            "jobs without manifests are kept"
        );
        let again = rebuild(&index, &store, "out", "").expect("rebuild");
        assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 1));
    }
}
