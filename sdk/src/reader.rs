//! `SourceReader`: `std::io::Read + BufRead + Seek` over the host's lazy `source` resource,
//! so ordinary Rust parsers can read a source without the plugin ever holding all of it.

use crate::{ReadError, Source};
use std::io::{self, BufRead, Read, Seek, SeekFrom};

/// Buffered, seekable reads from a [`Source`]. Each refill asks the host for one chunk
/// (64 KiB by default), so a parser that stops early reads only what it looked at.
pub struct SourceReader<'a> {
    source: &'a Source,
    size: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    buf_pos: usize,
    chunk: u32,
    fetched: u64,
}

impl<'a> SourceReader<'a> {
    /// A reader at offset 0 that fetches 64 KiB at a time.
    pub fn new(source: &'a Source) -> Self {
        Self::with_chunk(source, 64 * 1024)
    }

    /// A reader that fetches `chunk` bytes at a time (at least 512).
    pub fn with_chunk(source: &'a Source, chunk: u32) -> Self {
        Self {
            size: source.size(),
            source,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
            buf_pos: 0,
            chunk: chunk.max(512),
            fetched: 0,
        }
    }

    /// Total size of the source in bytes.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether the source is empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// How many bytes were fetched from the host so far.
    pub fn bytes_fetched(&self) -> u64 {
        self.fetched
    }

    fn to_io(e: ReadError) -> io::Error {
        io::Error::other(crate::PluginError::from(e))
    }
}

impl BufRead for SourceReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.buf_pos >= self.buf.len() {
            if self.pos >= self.size {
                return Ok(&[]);
            }
            let want = u64::from(self.chunk).min(self.size - self.pos) as u32;
            self.buf = self.source.read(self.pos, want).map_err(Self::to_io)?;
            self.fetched += self.buf.len() as u64;
            self.buf_start = self.pos;
            self.buf_pos = 0;
        }
        Ok(&self.buf[self.buf_pos..])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.buf.len().saturating_sub(self.buf_pos));
        self.buf_pos += amt;
        self.pos += amt as u64;
    }
}

impl Read for SourceReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl Seek for SourceReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        // Keep the buffer when the target falls inside it.
        let buf_end = self.buf_start + self.buf.len() as u64;
        if target >= self.buf_start && target < buf_end {
            self.buf_pos = (target - self.buf_start) as usize;
        } else {
            self.buf.clear();
            self.buf_pos = 0;
        }
        self.pos = target;
        Ok(target)
    }
}
