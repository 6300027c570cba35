//! The job index in local mode: `index.db` under `worker.data_dir`, SQLite in WAL mode so the
//! worker and `serve` (and several workers) share it. A job is a row — its id, status and
//! creation time as columns for the lists, the whole record as JSON — written only against the
//! revision it was read at (`UPDATE … WHERE rev = ?`). API keys and settings have tables of
//! their own.

use super::{ApiKey, Change, Cursor, IndexError, JobIndex, JobRecord, JobStatus, Page};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::Mutex;

/// The SQLite job index.
#[derive(Debug)]
pub struct SqliteIndex {
    conn: Mutex<Connection>,
}

fn unavailable(e: impl std::fmt::Display) -> IndexError {
    IndexError::Unavailable(e.to_string())
}

impl SqliteIndex {
    /// Open (creating if needed) the index at `path`.
    pub fn open(path: &Path) -> Result<SqliteIndex, IndexError> {
        let at = |e: &dyn std::fmt::Display| {
            IndexError::Unavailable(format!(
                "{}: {e} (the job index of worker.data_dir: check that its filesystem has free \
                 space and that this user may write there)",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| at(&e))?;
        }
        let conn = crate::sqlite::open(path, SCHEMA).map_err(|e| at(&e))?;
        Ok(SqliteIndex {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, IndexError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).map_err(unavailable)
    }
}

/// The tables.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        rev INTEGER NOT NULL,
        outbox INTEGER NOT NULL DEFAULT 0,
        record TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS jobs_outbox ON jobs (outbox) WHERE outbox = 1;
    CREATE INDEX IF NOT EXISTS jobs_newest ON jobs (created_ms DESC, id DESC);
    CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_ms DESC, id DESC);
    CREATE TABLE IF NOT EXISTS api_keys (
        name TEXT PRIMARY KEY,
        record TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );";

fn decode(id: &str, json: &str) -> Result<JobRecord, IndexError> {
    serde_json::from_str(json).map_err(|e| IndexError::Corrupt {
        id: id.to_string(),
        why: e.to_string(),
    })
}

fn encode(record: &JobRecord) -> String {
    // Plain data: serialising cannot fail.
    serde_json::to_string(record).unwrap_or_default()
}

/// Write `record` if the stored one is at revision `expected` (`None`: if there is none); the
/// rows changed.
fn write(c: &Connection, record: &JobRecord, expected: Option<u64>) -> rusqlite::Result<usize> {
    let json = encode(record);
    let status = record.status.name();
    match expected {
        None => c
            .prepare_cached(
                "INSERT INTO jobs (id, status, created_ms, rev, outbox, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![record.id, status, record.created_ms, record.rev as i64, record.notify_pending, json]),
        Some(rev) => c
            .prepare_cached(
                "UPDATE jobs SET status = ?2, rev = ?4, outbox = ?5, record = ?6 WHERE id = ?1 AND rev = ?3",
            )?
            .execute(params![record.id, status, rev as i64, record.rev as i64, record.notify_pending, json]),
    }
}

impl JobIndex for SqliteIndex {
    fn get(&self, id: &str) -> Result<Option<JobRecord>, IndexError> {
        let json: Option<String> = self.with(|c| {
            c.prepare_cached("SELECT record FROM jobs WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()
        })?;
        json.map(|j| decode(id, &j)).transpose()
    }

    fn put(&self, record: &JobRecord, expected: Option<u64>) -> Result<bool, IndexError> {
        Ok(self.with(|c| write(c, record, expected))? == 1)
    }

    /// One transaction (read, apply, write; the write lock taken first), so no other writer
    /// comes between and nothing is retried: a change costs one commit.
    fn update(&self, id: &str, change: &Change) -> Result<JobRecord, IndexError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let json: Option<String> = tx
            .prepare_cached("SELECT record FROM jobs WHERE id = ?1")
            .and_then(|mut q| q.query_row(params![id], |r| r.get(0)).optional())
            .map_err(unavailable)?;
        let current = json.map(|j| decode(id, &j)).transpose()?;
        match super::next(id, current.as_ref(), change)? {
            Some(next) => {
                write(&tx, &next, current.as_ref().map(|c| c.rev)).map_err(unavailable)?;
                tx.commit().map_err(unavailable)?;
                Ok(next)
            }
            None => current.ok_or_else(|| IndexError::NotFound(id.to_string())),
        }
    }

    fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page, IndexError> {
        let (after_ms, after_id) =
            after.map_or((i64::MAX, String::new()), |c| (c.created_ms, c.id.clone()));
        let take = limit.max(1) as i64 + 1;
        let rows: Vec<(String, String)> = self.with(|c| {
            let sql = if status.is_some() {
                "SELECT id, record FROM jobs WHERE status = ?1
                   AND (created_ms < ?2 OR (created_ms = ?2 AND ?3 <> '' AND id < ?3))
                 ORDER BY created_ms DESC, id DESC LIMIT ?4"
            } else {
                "SELECT id, record FROM jobs WHERE ?1 = ''
                   AND (created_ms < ?2 OR (created_ms = ?2 AND ?3 <> '' AND id < ?3))
                 ORDER BY created_ms DESC, id DESC LIMIT ?4"
            };
            let name = status.map_or("", JobStatus::name);
            c.prepare_cached(sql)?
                .query_map(params![name, after_ms, after_id, take], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
        })?;
        let jobs = rows
            .iter()
            .map(|(id, json)| decode(id, json))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(jobs, limit))
    }

    fn outbox(&self, limit: usize) -> Result<Vec<JobRecord>, IndexError> {
        let rows: Vec<(String, String)> = self.with(|c| {
            c.prepare_cached("SELECT id, record FROM jobs WHERE outbox = 1 LIMIT ?1")?
                .query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        rows.iter().map(|(id, json)| decode(id, json)).collect()
    }

    fn put_key(&self, key: &ApiKey) -> Result<(), IndexError> {
        let json = serde_json::to_string(key).unwrap_or_default();
        self.with(|c| {
            c.execute(
                "INSERT INTO api_keys (name, record) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                params![key.name, json],
            )
        })?;
        Ok(())
    }

    fn keys(&self) -> Result<Vec<ApiKey>, IndexError> {
        let rows: Vec<(String, String)> = self.with(|c| {
            c.prepare_cached("SELECT name, record FROM api_keys ORDER BY name")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        rows.iter()
            .map(|(name, json)| {
                serde_json::from_str(json).map_err(|e| IndexError::Corrupt {
                    id: format!("api key {name}"),
                    why: e.to_string(),
                })
            })
            .collect()
    }

    fn setting(&self, name: &str, value: &str) -> Result<String, IndexError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, value],
            )?;
            c.query_row(
                "SELECT value FROM settings WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
        })
    }

    fn forget_finished(&self, before_ms: i64) -> Result<usize, IndexError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'canceled', 'expired')
                 AND outbox = 0 AND json_extract(record, '$.updated_ms') < ?1",
                params![before_ms],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Change;

    #[test]
    fn records_change_by_the_rules_and_list_newest_first_in_pages() {
        let dir = tempfile::tempdir().expect("tmp");
        let index = SqliteIndex::open(&dir.path().join("index.db")).expect("open");
        for i in 0..7 {
            let mut r = JobRecord::new(
                &format!("j{i}"),
                JobStatus::Queued,
                "p",
                vec![],
                100 + i / 2,
            );
            r.status = if i % 2 == 0 {
                JobStatus::Queued
            } else {
                JobStatus::Failed
            };
            assert!(index.create(&r).expect("create"));
            assert!(!index.create(&r).expect("again"), "ids are unique");
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = index.list(None, 3, cursor.as_ref()).expect("list");
            seen.extend(page.jobs.iter().map(|j| j.id.clone()));
            match page.next {
                Some(c) => cursor = Some(Cursor::decode(&c.encode()).expect("cursor")),
                None => break,
            }
        }
        assert_eq!(seen, ["j6", "j5", "j4", "j3", "j2", "j1", "j0"]);
        let failed = index.list(Some(JobStatus::Failed), 10, None).expect("list");
        let ids: Vec<_> = failed.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["j5", "j3", "j1"]);
        assert!(failed.next.is_none());

        let running = index
            .update(
                "new",
                &Change::Started {
                    attempt: 1,
                    profile: "p".into(),
                    sources: vec!["s3://b/k".into()],
                    output_bucket: "o".into(),
                },
            )
            .expect("a plain upload's job is created when it starts");
        assert_eq!(
            (running.id.as_str(), running.status),
            ("new", JobStatus::Running)
        );
        let asked = index
            .update("new", &Change::CancelRequested)
            .expect("cancel");
        assert!(asked.cancel_requested);
        let stale = JobRecord {
            rev: 0,
            ..asked.clone()
        };
        assert!(
            !index.put(&stale, Some(0)).expect("put"),
            "a stale write loses"
        );
        assert!(matches!(
            index.update("j1", &Change::CancelRequested),
            Err(IndexError::Conflict(_))
        ));
        assert!(matches!(
            index.update("nope", &Change::Uploaded),
            Err(IndexError::NotFound(_))
        ));
        assert_eq!(index.setting("secret", "a").expect("set"), "a");
        assert_eq!(index.setting("secret", "b").expect("kept"), "a");
    }

    #[test]
    fn only_old_finished_jobs_with_delivered_notifications_are_forgotten() {
        let dir = tempfile::tempdir().expect("tmp");
        let index = SqliteIndex::open(&dir.path().join("index.db")).expect("open");
        let job = |id: &str, status, updated_ms, notify_pending| {
            let mut r = JobRecord::new(id, status, "p", vec![], 1);
            r.updated_ms = updated_ms;
            r.notify_pending = notify_pending;
            assert!(index.create(&r).expect("create"));
        };
        job("old-done", JobStatus::Succeeded, 1_000, false);
        job("old-failed", JobStatus::Failed, 1_000, false);
        job("old-undelivered", JobStatus::Succeeded, 1_000, true);
        job("old-running", JobStatus::Running, 1_000, false);
        job("new-done", JobStatus::Succeeded, 9_000, false);
        assert_eq!(index.forget_finished(5_000).expect("forget"), 2);
        let left: Vec<String> = index
            .list(None, 10, None)
            .expect("list")
            .jobs
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");
        for id in ["old-undelivered", "old-running", "new-done"] {
            assert!(left.iter().any(|l| l == id), "{id} kept: {left:?}");
        }
        assert_eq!(index.forget_finished(5_000).expect("again"), 0);
    }

    #[test]
    fn concurrent_writers_never_lose_a_change() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("index.db");
        let index = SqliteIndex::open(&path).expect("open");
        index
            .create(&JobRecord::new("j", JobStatus::Running, "p", vec![], 1))
            .expect("create");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let index = SqliteIndex::open(&path).expect("open");
                    for i in 0..25 {
                        index
                            .update(
                                "j",
                                &Change::Progress {
                                    stage: format!("t{t}"),
                                    percent: i as f32,
                                },
                            )
                            .expect("progress");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        assert_eq!(index.get("j").expect("get").expect("there").rev, 100);
    }
}
