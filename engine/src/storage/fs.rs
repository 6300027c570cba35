//! The filesystem object store: objects are files under a root directory, written to a
//! temporary file and renamed (or hard-linked, for create-if-absent) into place. Temporary
//! files live in the store's own `.tmp/` directory (never beside an object, so an interrupted
//! write can't leave one in an output folder), named after the writing process; [`FsStorage::sweep`]
//! removes those of processes that are gone (a `kill -9`). Every I/O failure but a missing file
//! is transient (a full disk, a lost mount: none is the input's fault).

use super::{ObjectInfo, Storage, StorageError, validate_key};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Objects as files under `root`.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

/// The directory (under the root) that holds writes in progress.
const TMP_DIR: &str = ".tmp";

fn failed(context: &str, e: std::io::Error) -> StorageError {
    StorageError::Failed {
        message: format!("{context}: {e}"),
        class: crate::error::io_class(&e),
    }
}

impl FsStorage {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| failed(&format!("creating {}", root.display()), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| failed(&format!("resolving {}", root.display()), e))?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file behind `key`.
    pub fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn write_temp(
        &self,
        path: &Path,
        data: &[u8],
    ) -> Result<tempfile::NamedTempFile, StorageError> {
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(&format!("creating {}", dir.display()), e))?;
        let tmp_dir = self.root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp_dir)
            .map_err(|e| failed(&format!("creating {}", tmp_dir.display()), e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempfile_in(&tmp_dir)
            .map_err(|e| failed("creating temp file", e))?;
        tmp.write_all(data)
            .map_err(|e| failed("writing temp file", e))?;
        tmp.as_file()
            .sync_data()
            .map_err(|e| failed("syncing temp file", e))?;
        Ok(tmp)
    }

    /// Remove the temporary files of writers that are gone (killed mid-write). Returns how many.
    pub fn sweep(&self) -> Result<usize, StorageError> {
        let dir = self.root.join(TMP_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(failed(&format!("listing {}", dir.display()), e)),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let writer = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if writer.is_some_and(crate::lifecycle::scratch::process_is_gone)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn info(path: &Path) -> Result<ObjectInfo, StorageError> {
        let m =
            std::fs::metadata(path).map_err(|e| failed(&format!("stat {}", path.display()), e))?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(ObjectInfo {
            bytes: m.len(),
            etag: format!("{mtime:x}-{:x}", m.len()),
        })
    }
}

impl Storage for FsStorage {
    fn put(&self, key: &str, data: &[u8], _content_type: &str) -> Result<ObjectInfo, StorageError> {
        let path = self.path(key)?;
        let tmp = self.write_temp(&path, data)?;
        tmp.persist(&path)
            .map_err(|e| failed(&format!("renaming into {}", path.display()), e.error))?;
        Self::info(&path)
    }

    fn put_file(
        &self,
        key: &str,
        src: &Path,
        _content_type: &str,
    ) -> Result<ObjectInfo, StorageError> {
        // Streamed: copied into a temp file beside the target, then renamed over it.
        let path = self.path(key)?;
        let mut tmp = self.write_temp(&path, &[])?;
        let mut from = std::fs::File::open(src)
            .map_err(|e| failed(&format!("opening {}", src.display()), e))?;
        std::io::copy(&mut from, tmp.as_file_mut()).map_err(|e| failed("copying", e))?;
        tmp.as_file()
            .sync_data()
            .map_err(|e| failed("syncing temp file", e))?;
        tmp.persist(&path)
            .map_err(|e| failed(&format!("renaming into {}", path.display()), e.error))?;
        Self::info(&path)
    }

    fn put_if_absent(
        &self,
        key: &str,
        data: &[u8],
        _content_type: &str,
    ) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path(key)?;
        let tmp = self.write_temp(&path, data)?;
        // link(2) fails if the target exists: exactly one writer wins.
        match std::fs::hard_link(tmp.path(), &path) {
            Ok(()) => Self::info(&path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(failed(&format!("linking {}", path.display()), e)),
        }
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let path = self.path(key)?;
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound(self.uri(key)),
            _ => failed(&format!("reading {}", path.display()), e),
        })
    }

    fn get_to_file(
        &self,
        key: &str,
        dest: &Path,
        etag: Option<&str>,
    ) -> Result<ObjectInfo, StorageError> {
        let path = self.path(key)?;
        if !path.is_file() {
            return Err(StorageError::NotFound(self.uri(key)));
        }
        let info = Self::info(&path)?;
        if let Some(expected) = etag
            && expected != info.etag
        {
            return Err(StorageError::Stale {
                uri: self.uri(key),
                expected: expected.to_string(),
                found: info.etag,
            });
        }
        std::fs::copy(&path, dest)
            .map_err(|e| failed(&format!("copying {}", path.display()), e))?;
        Ok(info)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(failed(&format!("removing {}", path.display()), e)),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path(key)?;
        if !path.is_file() {
            return Ok(None);
        }
        Self::info(&path).map(Some)
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, ObjectInfo)>, StorageError> {
        // Walk only the directory the prefix names (up to its last '/'), then filter by prefix.
        let dir_key = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let start = if dir_key.is_empty() {
            self.root.clone()
        } else {
            self.path(dir_key)?
        };
        let mut out = Vec::new();
        let mut stack = vec![(start, dir_key.to_string())];
        while let Some((dir, key)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(&format!("listing {}", dir.display()), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| failed(&format!("listing {}", dir.display()), e))?;
                // Names that are not UTF-8 cannot be keys; `.tmp/` holds writes in progress.
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if key.is_empty() && name == TMP_DIR {
                    continue;
                }
                let child = if key.is_empty() {
                    name
                } else {
                    format!("{key}/{name}")
                };
                // Symlinks are not followed: a store holds its own files only.
                let kind = entry
                    .file_type()
                    .map_err(|e| failed(&format!("stat {}", entry.path().display()), e))?;
                if kind.is_dir() {
                    stack.push((entry.path(), child));
                } else if kind.is_file() && child.starts_with(prefix) {
                    match Self::info(&entry.path()) {
                        Ok(info) => out.push((child, info)),
                        // Removed between the listing and the stat: not there any more.
                        Err(_) if !entry.path().exists() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn uri(&self, key: &str) -> String {
        format!("file://{}", self.root.join(key).display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_exactly_one_put_if_absent_wins() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| failed("tmp", e))?;
        let s = FsStorage::new(dir.path())?;
        s.put("a/b/c.txt", b"one", "text/plain")?;
        assert_eq!(s.get("a/b/c.txt")?, b"one");
        assert!(
            s.put_if_absent("a/m.json", b"first", "application/json")?
                .is_some()
        );
        assert!(
            s.put_if_absent("a/m.json", b"second", "application/json")?
                .is_none()
        );
        assert_eq!(s.get("a/m.json")?, b"first");
        assert!(matches!(s.get("nope"), Err(StorageError::NotFound(_))));
        assert!(matches!(
            s.put("../escape", b"x", "x"),
            Err(StorageError::InvalidKey { .. })
        ));
        assert!(
            !dir.path()
                .parent()
                .map(|p| p.join("escape").exists())
                .unwrap_or(false)
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(TMP_DIR))
            .map_err(|e| failed("ls", e))?
            .filter_map(Result::ok)
            .collect();
        assert!(leftovers.is_empty(), "temp files cleaned up");
        assert_eq!(
            std::fs::read_dir(dir.path().join("a"))
                .map_err(|e| failed("ls", e))?
                .count(),
            2,
            "nothing but the objects beside them"
        );
        s.delete("a/m.json")?;
        s.delete("a/m.json")?;
        assert!(
            s.head("a/m.json")?.is_none(),
            "deleted, and deleting again is fine"
        );
        Ok(())
    }

    #[test]
    fn list_returns_keys_under_a_prefix_in_order() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| failed("tmp", e))?;
        let s = FsStorage::new(dir.path())?;
        for key in ["p/b/2.txt", "p/a/1.txt", "p/ab.txt", "q/x.txt"] {
            s.put(key, key.as_bytes(), "text/plain")?;
        }
        let keys = |prefix: &str| -> Result<Vec<String>, StorageError> {
            Ok(s.list(prefix)?.into_iter().map(|(k, _)| k).collect())
        };
        assert_eq!(keys("p/")?, ["p/a/1.txt", "p/ab.txt", "p/b/2.txt"]);
        assert_eq!(keys("p/a")?, ["p/a/1.txt", "p/ab.txt"]);
        assert_eq!(keys("")?.len(), 4);
        assert!(keys("missing/")?.is_empty());
        // A write in progress of a process that is gone: swept; never listed.
        std::fs::write(dir.path().join(TMP_DIR).join("999999999-abc"), b"partial")
            .map_err(|e| failed("write", e))?;
        assert_eq!(keys("")?.len(), 4);
        assert_eq!(s.sweep()?, 1);
        let listed = s.list("q/")?;
        assert_eq!(listed[0].1, s.head("q/x.txt")?.expect("exists"));
        assert!(matches!(
            s.list("../"),
            Err(StorageError::InvalidKey { .. })
        ));
        Ok(())
    }
}
