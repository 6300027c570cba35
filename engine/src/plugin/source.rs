//! The `source` resource a metadata extractor reads: a file (read with `pread`, never loaded
//! whole) or bytes already in memory, with a count of the bytes handed to the guest.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest single `read` the host serves; guests ask again for more.
pub const MAX_READ_BYTES: u32 = 16 * 1024 * 1024;

#[derive(Debug)]
enum Data {
    File(File),
    Bytes(Arc<[u8]>),
}

/// A readable source shared with plugins. Cheap to clone (the data is shared).
#[derive(Debug, Clone)]
pub struct SourceHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    data: Data,
    size: u64,
    served: AtomicU64,
}

impl SourceHandle {
    /// A source backed by a file on disk.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok(Self::new(Data::File(file), size))
    }

    /// A source backed by bytes in memory.
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes = bytes.into();
        let size = bytes.len() as u64;
        Self::new(Data::Bytes(bytes), size)
    }

    fn new(data: Data, size: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                data,
                size,
                served: AtomicU64::new(0),
            }),
        }
    }

    /// Total size in bytes.
    pub fn size(&self) -> u64 {
        self.inner.size
    }

    /// Bytes handed to guests so far (all reads of all plugins).
    pub fn bytes_served(&self) -> u64 {
        self.inner.served.load(Ordering::Relaxed)
    }

    /// Read up to `len` bytes at `offset` (capped at [`MAX_READ_BYTES`]); `None` past the end.
    pub fn read_at(&self, offset: u64, len: u32) -> std::io::Result<Option<Vec<u8>>> {
        if offset >= self.inner.size {
            return Ok(None);
        }
        let len = u64::from(len.min(MAX_READ_BYTES)).min(self.inner.size - offset) as usize;
        let out = match &self.inner.data {
            Data::Bytes(b) => b[offset as usize..offset as usize + len].to_vec(),
            Data::File(f) => {
                let mut buf = vec![0u8; len];
                let mut filled = 0;
                while filled < len {
                    match f.read_at(&mut buf[filled..], offset + filled as u64)? {
                        0 => break,
                        n => filled += n,
                    }
                }
                buf.truncate(filled);
                buf
            }
        };
        self.inner
            .served
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_clamped_to_the_end_and_counted() {
        let s = SourceHandle::from_bytes(vec![1u8, 2, 3, 4, 5]);
        assert_eq!(s.read_at(3, 10).ok().flatten(), Some(vec![4, 5]));
        assert_eq!(s.read_at(5, 1).ok().flatten(), None);
        assert_eq!(s.bytes_served(), 2);
    }

    #[test]
    fn file_sources_read_with_pread() -> std::io::Result<()> {
        let mut f = tempfile::NamedTempFile::new()?;
        std::io::Write::write_all(&mut f, b"hello world")?;
        let s = SourceHandle::open(f.path())?;
        assert_eq!(s.size(), 11);
        assert_eq!(s.read_at(6, 5)?, Some(b"world".to_vec()));
        Ok(())
    }
}
