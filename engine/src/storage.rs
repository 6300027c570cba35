//! Where sources come from and outputs go: a key–value object store. The filesystem backend
//! ([`fs`], `file://DIR`) is the local default; S3 ([`s3`]) is the other; [`buckets`] opens
//! either by bucket name. Keys are `/`-separated relative paths and can never escape the
//! store's root. Every I/O failure but a missing object is transient.

pub mod buckets;
pub mod fs;
pub mod s3;

pub use buckets::Buckets;
pub use fs::FsStorage;
pub use s3::S3Storage;

use crate::error::ErrorClass;

/// What a store knows about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub bytes: u64,
    /// Version tag: changes whenever the object does.
    pub etag: String,
}

/// A storage failure, classed for retry decisions.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key is not acceptable (empty, absolute, `..`, control characters…).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// No such object.
    #[error("no object at {0}")]
    NotFound(String),
    /// The object was replaced since the event that named it.
    #[error("stale event: {uri} was replaced (event ETag {expected}, now {found})")]
    Stale {
        /// The object.
        uri: String,
        /// The ETag the event named.
        expected: String,
        /// The ETag it has now.
        found: String,
    },
    /// Anything else (I/O, network), with its class.
    #[error("{message}")]
    Failed {
        /// What failed.
        message: String,
        /// Permanent or transient.
        class: ErrorClass,
    },
}

impl StorageError {
    /// Permanent or transient.
    pub fn class(&self) -> ErrorClass {
        match self {
            StorageError::Failed { class, .. } => *class,
            _ => ErrorClass::Permanent,
        }
    }
}

impl From<StorageError> for crate::error::JobError {
    fn from(e: StorageError) -> Self {
        crate::error::JobError::Storage {
            class: e.class(),
            message: e.to_string(),
        }
    }
}

/// An object store.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Write `data` at `key`, replacing any object there (atomically: readers see the old or
    /// the new object, never a mix).
    fn put(&self, key: &str, data: &[u8], content_type: &str) -> Result<ObjectInfo, StorageError>;
    /// Write `data` at `key` only if nothing is there; `Ok(None)` if something was.
    fn put_if_absent(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<Option<ObjectInfo>, StorageError>;
    /// Write the file at `src` to `key`, replacing any object there. The default reads it
    /// into memory and calls [`Storage::put`]; backends that can stream override it.
    fn put_file(
        &self,
        key: &str,
        src: &std::path::Path,
        content_type: &str,
    ) -> Result<ObjectInfo, StorageError> {
        let data = std::fs::read(src).map_err(|e| StorageError::Failed {
            class: crate::error::io_class(&e),
            message: format!("reading {}: {e}", src.display()),
        })?;
        self.put(key, &data, content_type)
    }
    /// Read the whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError>;
    /// Stream the object to the file `dest` (never held whole in memory). With `etag`, only
    /// that version: a replaced object is an error, not different bytes.
    fn get_to_file(
        &self,
        key: &str,
        dest: &std::path::Path,
        etag: Option<&str>,
    ) -> Result<ObjectInfo, StorageError>;
    /// Remove the object at `key` (nothing there is fine).
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// The object's info, or `None`.
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError>;
    /// Every object whose key starts with `prefix` (a plain string prefix, as S3 has it; `""`
    /// lists everything), with its info, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<(String, ObjectInfo)>, StorageError>;
    /// A URI naming the object (`file:///…`, `s3://bucket/key`).
    fn uri(&self, key: &str) -> String;
}

/// Check a key: non-empty, relative, no `.`/`..`/empty segments, no backslashes or control
/// characters, at most 1024 bytes.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    match crate::config::key_problem(key) {
        None => Ok(()),
        Some(reason) => Err(StorageError::InvalidKey {
            key: key.to_string(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::validate_key;

    #[test]
    fn keys_cannot_escape_the_root() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a//b",
            "a/./b",
            "a\\b",
            "a\0b",
            "a/",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} must be refused");
        }
        for good in ["a", "photos/2024/cat.jpg", "x..y/z", ".hidden/f"] {
            assert!(validate_key(good).is_ok(), "{good:?} is fine");
        }
    }
}
