//! The embedded local queue: one SQLite database file (WAL, so several worker processes on one
//! machine can share it), a main queue and its dead-letter queue. Every operation is a single
//! transaction, so a worker killed at any point leaves the queue consistent; its messages
//! reappear when their visibility timeout runs out. Each message keeps the reason it was last
//! left undone, so a dead-lettered one says why it is there.

use super::{QueueError, Received};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAIN: &str = "main";
const DEAD: &str = "dead";

/// The table (the `reason` column comes from [`LocalQueue::migrate`]).
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        body TEXT NOT NULL,
        sent_ms INTEGER NOT NULL,
        visible_ms INTEGER NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        receipt TEXT
    );
    CREATE INDEX IF NOT EXISTS ready ON messages (queue, visible_ms, id);
    CREATE UNIQUE INDEX IF NOT EXISTS receipts ON messages (receipt);";

/// A local queue with SQS semantics.
#[derive(Debug)]
pub struct LocalQueue {
    conn: Mutex<Connection>,
    max_receive_count: u32,
}

fn failed(e: impl std::fmt::Display) -> QueueError {
    QueueError::Failed(e.to_string())
}

/// The reason a message moved to the dead-letter queue without any recorded.
fn unsettled(receive_count: i64) -> String {
    format!(
        "received {receive_count} times and never settled (its worker stopped or lost it each time)"
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn token() -> String {
    // Unique per receive: time, process, and a per-process counter.
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:x}-{:x}-{:x}",
        now_ms(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl LocalQueue {
    /// Open (creating if needed) the queue database at `path`. A message received more than
    /// `max_receive_count` times goes to the dead-letter queue instead of being delivered.
    pub fn open(path: &Path, max_receive_count: u32) -> Result<Self, QueueError> {
        let at = |e: &dyn std::fmt::Display| {
            QueueError::Failed(format!(
                "{}: {e} (the local queue of worker.data_dir: check that its filesystem has free \
                 space and that this user may write there)",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| at(&e))?;
        }
        let conn = crate::sqlite::open(path, SCHEMA).map_err(|e| at(&e))?;
        Self::migrate(&conn).map_err(|e| at(&e))?;
        Ok(Self {
            conn: Mutex::new(conn),
            max_receive_count: max_receive_count.max(1),
        })
    }

    /// The `reason` column added to a database from before it had one.
    fn migrate(conn: &Connection) -> rusqlite::Result<()> {
        let has_reason: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('messages') WHERE name = 'reason'",
            [],
            |r| r.get(0),
        )?;
        if !has_reason {
            // Another process opening the same new database (a `submit` beside a starting
            // worker) may add it between the check and here: that is the outcome wanted.
            match conn.execute_batch("ALTER TABLE messages ADD COLUMN reason TEXT") {
                Err(e) if e.to_string().contains("duplicate column name") => {}
                other => other?,
            }
        }
        Ok(())
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, QueueError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| QueueError::Failed("queue lock poisoned".into()))?;
        f(&mut conn).map_err(failed)
    }

    /// Enqueue `body`; returns its id.
    pub fn send(&self, body: &str) -> Result<String, QueueError> {
        self.with(|c| {
            let now = now_ms();
            c.execute(
                "INSERT INTO messages (queue, body, sent_ms, visible_ms) VALUES (?1, ?2, ?3, ?3)",
                params![MAIN, body, now],
            )?;
            Ok(c.last_insert_rowid().to_string())
        })
    }

    /// Receive up to `max` visible messages, hiding each for `visibility`. Messages already
    /// received `max_receive_count` times are moved to the dead-letter queue instead.
    pub fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let max_receives = i64::from(self.max_receive_count);
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            let mut out = Vec::new();
            {
                let mut pick = tx.prepare(
                    "SELECT id, body, receive_count FROM messages WHERE queue = ?1 AND visible_ms <= ?2 ORDER BY visible_ms, id LIMIT ?3",
                )?;
                let rows: Vec<(i64, String, i64)> = pick
                    .query_map(params![MAIN, now, (max * 2 + 8) as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                for (id, body, count) in rows {
                    if count >= max_receives {
                        tx.execute(
                            "UPDATE messages SET queue = ?1, receipt = NULL, visible_ms = ?2, reason = COALESCE(reason, ?3) WHERE id = ?4",
                            params![DEAD, now, unsettled(count), id],
                        )?;
                        tracing::warn!(message_id = id, receive_count = count, "moved to the dead-letter queue");
                        continue;
                    }
                    if out.len() == max {
                        break;
                    }
                    let receipt = token();
                    tx.execute(
                        "UPDATE messages SET receive_count = receive_count + 1, visible_ms = ?1, receipt = ?2 WHERE id = ?3",
                        params![now + visibility.as_millis() as i64, receipt, id],
                    )?;
                    out.push(Received { id: id.to_string(), body, receipt, receive_count: (count + 1) as u32 });
                }
            }
            tx.commit()?;
            Ok(out)
        })
    }

    /// Delete a received message. A stale receipt is an error, never a silent success.
    pub fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let n = self.with(|c| {
            c.execute(
                "DELETE FROM messages WHERE receipt = ?1 AND queue = ?2",
                params![receipt, MAIN],
            )
        })?;
        if n == 0 {
            Err(QueueError::StaleReceipt(receipt.to_string()))
        } else {
            Ok(())
        }
    }

    /// Delete several received messages in one transaction: one result per receipt, in order,
    /// each stale receipt its own error. If the transaction fails, every entry fails with it.
    pub fn delete_batch(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>> {
        let deleted = self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut deleted = Vec::with_capacity(receipts.len());
            {
                let mut delete =
                    tx.prepare("DELETE FROM messages WHERE receipt = ?1 AND queue = ?2")?;
                for receipt in receipts {
                    deleted.push(delete.execute(params![receipt, MAIN])? > 0);
                }
            }
            tx.commit()?;
            Ok(deleted)
        });
        match deleted {
            Ok(deleted) => receipts
                .iter()
                .zip(deleted)
                .map(|(receipt, ok)| {
                    if ok {
                        Ok(())
                    } else {
                        Err(QueueError::StaleReceipt((*receipt).to_string()))
                    }
                })
                .collect(),
            Err(e) => receipts.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Hide a received message for `visibility` from now (heartbeat), or release it at once
    /// with `Duration::ZERO`.
    pub fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE messages SET visible_ms = ?1 WHERE receipt = ?2 AND queue = ?3",
                params![now_ms() + visibility.as_millis() as i64, receipt, MAIN],
            )
        })?;
        if n == 0 {
            Err(QueueError::StaleReceipt(receipt.to_string()))
        } else {
            Ok(())
        }
    }

    /// Leave a received message to reappear after `wait`, recording `why` it was not done this
    /// time (a later dead-lettering carries it).
    pub fn retry_later(&self, receipt: &str, wait: Duration, why: &str) -> Result<(), QueueError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE messages SET visible_ms = ?1, reason = ?2 WHERE receipt = ?3 AND queue = ?4",
                params![now_ms() + wait.as_millis() as i64, why, receipt, MAIN],
            )
        })?;
        if n == 0 {
            Err(QueueError::StaleReceipt(receipt.to_string()))
        } else {
            Ok(())
        }
    }

    /// Move a received message to the dead-letter queue now, with `reason`.
    pub fn dead_letter(&self, receipt: &str, reason: &str) -> Result<(), QueueError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE messages SET queue = ?1, receipt = NULL, visible_ms = ?2, reason = ?3 WHERE receipt = ?4 AND queue = ?5",
                params![DEAD, now_ms(), reason, receipt, MAIN],
            )
        })?;
        if n == 0 {
            Err(QueueError::StaleReceipt(receipt.to_string()))
        } else {
            Ok(())
        }
    }

    /// The dead-letter queue, oldest first: each body with the reason it is there.
    pub fn dead_letters_with_reasons(&self) -> Result<Vec<(String, String)>, QueueError> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT body, receive_count, reason FROM messages WHERE queue = ?1 ORDER BY id",
            )?;
            s.query_map(params![DEAD], |r| {
                let count: i64 = r.get(1)?;
                let reason: Option<String> = r.get(2)?;
                Ok((r.get(0)?, reason.unwrap_or_else(|| unsettled(count))))
            })?
            .collect()
        })
    }

    /// Messages in the main queue (visible or in flight) and in the dead-letter queue.
    pub fn depth(&self) -> Result<(u64, u64), QueueError> {
        self.with(|c| {
            let count = |q: &str| -> rusqlite::Result<u64> {
                c.query_row(
                    "SELECT COUNT(*) FROM messages WHERE queue = ?1",
                    params![q],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as u64)
            };
            Ok((count(MAIN)?, count(DEAD)?))
        })
    }

    /// The bodies in the dead-letter queue, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<String>, QueueError> {
        self.with(|c| {
            let mut s = c.prepare("SELECT body FROM messages WHERE queue = ?1 ORDER BY id")?;
            s.query_map(params![DEAD], |r| r.get(0))?.collect()
        })
    }

    /// The receive count of message `id`, if it exists.
    pub fn receive_count(&self, id: &str) -> Result<Option<u32>, QueueError> {
        let id: i64 = id
            .parse()
            .map_err(|_| QueueError::Failed(format!("bad message id {id:?}")))?;
        self.with(|c| {
            c.query_row(
                "SELECT receive_count FROM messages WHERE id = ?1",
                params![id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|n| n.map(|n| n as u32))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max_receives: u32) -> (LocalQueue, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tmp");
        let q = LocalQueue::open(&dir.path().join("queue.db"), max_receives).expect("open");
        (q, dir)
    }

    #[test]
    fn a_received_message_is_hidden_then_redelivered_with_a_new_receipt() {
        let (q, _d) = queue(5);
        q.send("job-1").expect("send");
        let first = q.receive(10, Duration::from_millis(150)).expect("receive");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        assert!(
            q.receive(10, Duration::from_secs(30))
                .expect("receive")
                .is_empty(),
            "hidden while in flight"
        );
        std::thread::sleep(Duration::from_millis(200));
        let second = q.receive(10, Duration::from_secs(30)).expect("receive");
        assert_eq!(
            second.len(),
            1,
            "reappears after the visibility timeout (a crashed worker loses nothing)"
        );
        assert_eq!(second[0].receive_count, 2);
        // The first receipt is stale: deleting with it must fail, not succeed silently.
        assert!(matches!(
            q.delete(&first[0].receipt),
            Err(QueueError::StaleReceipt(_))
        ));
        q.delete(&second[0].receipt)
            .expect("delete with the live receipt");
        assert_eq!(q.depth().expect("depth"), (0, 0));
        assert!(
            matches!(
                q.delete(&second[0].receipt),
                Err(QueueError::StaleReceipt(_))
            ),
            "deleting twice is not a success"
        );
    }

    #[test]
    fn a_batch_delete_reports_each_stale_receipt_on_its_own() {
        let (q, _d) = queue(5);
        for body in ["a", "b", "c"] {
            q.send(body).expect("send");
        }
        let got = q.receive(10, Duration::from_secs(30)).expect("receive");
        assert_eq!(got.len(), 3);
        let receipts = [
            got[0].receipt.as_str(),
            "never-issued",
            got[1].receipt.as_str(),
            got[2].receipt.as_str(),
        ];
        let results = q.delete_batch(&receipts);
        assert_eq!(results.len(), 4);
        assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
        assert_eq!(
            results[1],
            Err(QueueError::StaleReceipt("never-issued".into()))
        );
        assert_eq!(q.depth().expect("depth"), (0, 0));
        // Deleting again: every receipt is stale now, none counts as a success.
        assert!(
            q.delete_batch(&receipts[..1])
                .iter()
                .all(|r| matches!(r, Err(QueueError::StaleReceipt(_))))
        );
    }

    #[test]
    fn heartbeat_extends_and_zero_releases() {
        let (q, _d) = queue(5);
        q.send("long job").expect("send");
        let m = q
            .receive(1, Duration::from_millis(100))
            .expect("receive")
            .remove(0);
        q.change_visibility(&m.receipt, Duration::from_secs(30))
            .expect("extend");
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            q.receive(1, Duration::from_secs(30))
                .expect("receive")
                .is_empty(),
            "extended: still hidden"
        );
        q.change_visibility(&m.receipt, Duration::ZERO)
            .expect("release");
        assert_eq!(
            q.receive(1, Duration::from_secs(30))
                .expect("receive")
                .len(),
            1,
            "released: another worker takes it at once"
        );
    }

    #[test]
    fn a_poison_message_reaches_the_dead_letter_queue_after_max_receives() {
        let (q, _d) = queue(3);
        q.send("poison").expect("send");
        q.send("good").expect("send");
        for attempt in 1..=3 {
            let got = q.receive(10, Duration::ZERO).expect("receive");
            let poison = got
                .iter()
                .find(|m| m.body == "poison")
                .expect("poison delivered");
            assert_eq!(poison.receive_count, attempt);
            if let Some(good) = got.iter().find(|m| m.body == "good") {
                q.delete(&good.receipt).expect("delete good");
            }
        }
        // The 4th receive would exceed maxReceiveCount = 3: dead-lettered, not delivered.
        assert!(q.receive(10, Duration::ZERO).expect("receive").is_empty());
        assert_eq!(q.depth().expect("depth"), (0, 1));
        assert_eq!(q.dead_letters().expect("dlq"), vec!["poison".to_string()]);
        assert!(
            q.dead_letters_with_reasons().expect("dlq")[0]
                .1
                .contains("received 3 times and never settled"),
            "a message nobody settled says so"
        );
    }

    #[test]
    fn a_dead_letter_keeps_the_reason_it_was_last_left_undone() {
        let (q, _d) = queue(5);
        q.send("held").expect("send");
        q.send("bad").expect("send");
        let got = q.receive(10, Duration::from_secs(30)).expect("receive");
        let (held, bad) = (&got[0], &got[1]);
        q.retry_later(&held.receipt, Duration::ZERO, "storage: disk full")
            .expect("retry");
        q.dead_letter(&bad.receipt, "not JSON")
            .expect("dead-letter");
        assert!(matches!(
            q.dead_letter(&bad.receipt, "again"),
            Err(QueueError::StaleReceipt(_))
        ));
        let again = q.receive(10, Duration::from_secs(30)).expect("receive");
        q.dead_letter(&again[0].receipt, "storage: disk full (last receive)")
            .expect("dead-letter");
        assert_eq!(
            q.dead_letters_with_reasons().expect("dlq"),
            [
                (
                    "held".to_string(),
                    "storage: disk full (last receive)".to_string()
                ),
                ("bad".to_string(), "not JSON".to_string())
            ]
        );
        assert_eq!(q.depth().expect("depth"), (0, 2));
    }

    #[test]
    fn two_consumers_never_get_the_same_message() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("queue.db");
        let producer = LocalQueue::open(&path, 5).expect("open");
        for i in 0..200 {
            producer.send(&format!("m{i}")).expect("send");
        }
        let seen = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    // Separate connections, as separate worker processes would have.
                    let q = LocalQueue::open(&path, 5).expect("open");
                    loop {
                        let got = q.receive(7, Duration::from_secs(60)).expect("receive");
                        if got.is_empty() {
                            break;
                        }
                        for m in got {
                            q.delete(&m.receipt).expect("delete");
                            seen.lock().expect("lock").push(m.body);
                        }
                    }
                });
            }
        });
        let mut seen = seen.into_inner().expect("seen");
        seen.sort();
        let before = seen.len();
        seen.dedup();
        assert_eq!(
            (before, seen.len()),
            (200, 200),
            "every message exactly once"
        );
    }
}
