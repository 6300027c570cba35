//! The SQLite files the engine keeps on local disk (the local queue, the local job index):
//! opened in WAL mode with a busy timeout, their schema made if missing. Processes starting
//! together on a new file (two workers, `serve` and a worker) race to switch it to WAL, and
//! SQLite answers the loser with "database is locked" at once — its busy handler is not
//! consulted for that lock — so the setup is retried for a while before giving up.

use rusqlite::{Connection, ErrorCode};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a statement waits for another process's lock, and how long setup is retried.
const PATIENCE: Duration = Duration::from_secs(10);

/// Open `path` (creating it), in WAL mode with `synchronous = NORMAL`, and run `schema`.
pub(crate) fn open(path: &Path, schema: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(PATIENCE)?;
    let setup = format!("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; {schema}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        match conn.execute_batch(&setup) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10 + fastrand::u64(0..40)));
            }
            other => return other.map(|()| conn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_opening_a_new_file_together_all_get_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("new.db");
        let opened: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    open(&path, "CREATE TABLE IF NOT EXISTS t (x INTEGER);").map(drop)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    }
}
