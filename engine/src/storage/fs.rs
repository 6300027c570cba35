//! The filesystem object store: objects are files under a root directory, written to a
//! temporary file and renamed (or hard-linked, for create-if-absent) into place.

use super::{ObjectInfo, Storage, StorageError, validate_key};
use crate::error::ErrorClass;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Objects as files under `root`.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

fn failed(context: &str, e: std::io::Error) -> StorageError {
    // Local disk errors don't fix themselves on retry, except running out of space.
    let class = if e.raw_os_error() == Some(28) {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    };
    StorageError::Failed {
        message: format!("{context}: {e}"),
        class,
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
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(|e| failed("creating temp file", e))?;
        tmp.write_all(data)
            .map_err(|e| failed("writing temp file", e))?;
        tmp.as_file()
            .sync_data()
            .map_err(|e| failed("syncing temp file", e))?;
        Ok(tmp)
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

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path(key)?;
        if !path.is_file() {
            return Ok(None);
        }
        Self::info(&path).map(Some)
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
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("a"))
            .map_err(|e| failed("ls", e))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temp files cleaned up");
        Ok(())
    }
}
