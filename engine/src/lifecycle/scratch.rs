//! The engine's scratch space: the one place a job's temporary files go (source copies,
//! renditions written before upload). Under the configured root (`scratch_dir`, by default
//! `$TMPDIR/mediaflow-$USER`) each running engine owns a directory of its own, locked for as
//! long as it runs; each attempt gets a subdirectory that is removed when the attempt ends,
//! whatever its outcome. At start-up an engine removes the directories of engines that are gone (killed
//! with `kill -9`, or stopped past their drain deadline): several engines may share the root.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The lock file in each engine's directory; held (an exclusive `flock`) while it runs.
const LOCK: &str = ".lock";
/// A directory without a lock younger than this may be an engine still starting: kept.
const STARTING_SECS: u64 = 60;

/// One engine's scratch directory.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    /// Held for the engine's life: others see the directory as taken.
    _lock: File,
    next: AtomicU64,
}

impl Scratch {
    /// Claim a directory of this engine's own under `root` (created if missing), after removing
    /// those of engines that are gone.
    pub fn open(root: &Path) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(root)?;
        let removed = sweep(root);
        if removed > 0 {
            tracing::info!(root = %root.display(), removed, "scratch: removed what stopped engines left behind");
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = root.join(format!("{}-{nanos:x}", std::process::id()));
        std::fs::create_dir(&dir)?;
        let lock = File::create(dir.join(LOCK))?;
        lock.try_lock().map_err(std::io::Error::other)?;
        Ok(Scratch {
            dir,
            _lock: lock,
            next: AtomicU64::new(0),
        })
    }

    /// This engine's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh directory for one attempt of `job_id`, removed when the guard is dropped.
    pub fn attempt(&self, job_id: &str) -> std::io::Result<AttemptDir> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let safe: String = job_id
            .chars()
            .take(40)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = self.dir.join(format!("job-{n}-{safe}"));
        std::fs::create_dir(&path)?;
        Ok(AttemptDir { path })
    }

    /// Files left in this engine's directory besides its lock (none between attempts).
    pub fn leftovers(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .map(|d| d.flatten().filter(|e| e.file_name() != LOCK).count())
            .unwrap_or(0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A clean stop leaves nothing behind (the lock is released as the file closes).
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "scratch: could not remove this engine's directory");
        }
    }
}

/// One attempt's scratch directory; removed (with everything in it) when dropped.
#[derive(Debug)]
pub struct AttemptDir {
    path: PathBuf,
}

impl AttemptDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AttemptDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.path.display(), error = %e, "scratch: could not remove an attempt's directory");
        }
    }
}

/// Remove the directories under `root` whose engine is gone: their lock can be taken (the
/// holder died), or they have none and are not new. Returns how many.
fn sweep(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let gone = match File::open(path.join(LOCK)) {
            Ok(lock) => lock.try_lock().is_ok(),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > STARTING_SECS),
        };
        if gone && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether no process `pid` runs on this machine (for files named after their writer).
pub fn process_is_gone(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_clean_up_and_a_dead_engines_directory_is_swept_a_live_ones_kept() {
        let root = tempfile::tempdir().expect("tmp");
        let live = Scratch::open(root.path()).expect("open");
        {
            let a = live.attempt("job/1").expect("attempt");
            std::fs::write(a.path().join("source"), b"bytes").expect("write");
            assert!(a.path().starts_with(live.dir()));
            assert_eq!(live.leftovers(), 1);
        }
        assert_eq!(live.leftovers(), 0, "an attempt's directory goes with it");
        // An engine killed mid-job: its lock is free, its files remain.
        let dead = root.path().join("1-dead");
        std::fs::create_dir_all(dead.join("job-0-x")).expect("mkdir");
        File::create(dead.join(LOCK)).expect("lock file");
        let second = Scratch::open(root.path()).expect("open");
        assert!(!dead.exists(), "the dead engine's directory is removed");
        assert!(live.dir().exists(), "a live engine's directory is kept");
        let second_dir = second.dir().to_path_buf();
        drop(second);
        assert!(!second_dir.exists(), "a clean stop leaves nothing");
        assert!(!process_is_gone(std::process::id()));
        assert!(process_is_gone(999_999_999));
    }
}
