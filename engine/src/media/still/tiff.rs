//! TIFF structure: the first page's size and orientation, and the number of pages, read from
//! the chain of image file directories (classic and BigTIFF) without touching pixel data. The
//! chain is walked with every offset checked and every directory visited once, so a loop or a
//! chain of a million pages costs at most `max_frames` small reads before it is refused. Only
//! the first page is decoded (the `image` crate: 8/16-bit, grey, RGB(A), CMYK, LZW/Deflate/
//! PackBits); the job notes the pages left out.

use crate::error::JobError;
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};

/// What a TIFF's directories say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// First page's width.
    pub width: u32,
    /// First page's height.
    pub height: u32,
    /// First page's orientation tag (1 when absent or invalid).
    pub orientation: u8,
    /// First page's photometric interpretation (5 = CMYK/separated).
    pub photometric: u16,
    /// Pages in the main chain (counted up to `max_pages + 1`).
    pub pages: u64,
}

fn corrupt(msg: impl Into<String>) -> JobError {
    JobError::CorruptInput(msg.into())
}

fn read_n<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), JobError> {
    r.read_exact(buf)
        .map_err(|_| corrupt("TIFF is truncated: a directory runs past the end of the file"))
}

/// The file's byte order and flavour (classic or BigTIFF).
#[derive(Clone, Copy)]
struct Layout {
    le: bool,
    big: bool,
}

impl Layout {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }

    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }

    fn u64(self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        if self.le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }

    /// A directory offset (4 bytes classic, 8 BigTIFF).
    fn offset(self, b: &[u8]) -> u64 {
        if self.big {
            self.u64(b)
        } else {
            u64::from(self.u32(b))
        }
    }

    /// Bytes of an entry, of a directory's entry count and of its next-directory link.
    fn lens(self) -> (usize, usize, usize) {
        if self.big { (20, 8, 8) } else { (12, 2, 4) }
    }
}

/// Read the TIFF at the start of `r` (`bytes` long); pages are counted up to `max_pages + 1`.
pub fn header<R: Read + Seek>(r: &mut R, bytes: u64, max_pages: u64) -> Result<Header, JobError> {
    let mut h = [0u8; 16];
    read_n(r, &mut h[..8])?;
    let mut l = Layout {
        le: &h[..2] == b"II",
        big: false,
    };
    l.big = l.u16(&h[2..4]) == 43;
    if l.big {
        read_n(r, &mut h[8..16])?;
    }
    let mut ifd = l.offset(if l.big { &h[8..16] } else { &h[4..8] });
    let (entry_len, count_len, next_len) = l.lens();
    let mut out = Header {
        width: 0,
        height: 0,
        orientation: 1,
        photometric: 2,
        pages: 0,
    };
    let mut seen = HashSet::new();
    while ifd != 0 {
        if ifd >= bytes || ifd < 8 {
            if out.pages == 0 {
                return Err(corrupt(format!(
                    "TIFF directory offset {ifd} is outside the file"
                )));
            }
            // A bad link after the first page: the pages before it are still there.
            break;
        }
        if !seen.insert(ifd) {
            return Err(corrupt("TIFF directories form a loop"));
        }
        out.pages += 1;
        if out.pages > max_pages {
            break;
        }
        r.seek(SeekFrom::Start(ifd))
            .map_err(|_| corrupt("TIFF directory offset is outside the file"))?;
        let mut cb = [0u8; 8];
        read_n(r, &mut cb[..count_len])?;
        let count = if l.big {
            l.u64(&cb)
        } else {
            u64::from(l.u16(&cb))
        };
        if out.pages == 1 {
            first_page(r, l, count, &mut out)?;
        } else {
            let skip = count
                .checked_mul(entry_len as u64)
                .and_then(|s| i64::try_from(s).ok())
                .ok_or_else(|| corrupt("TIFF directory entry count overflows"))?;
            r.seek(SeekFrom::Current(skip))
                .map_err(|_| corrupt("TIFF directory runs past the end of the file"))?;
        }
        let mut nb = [0u8; 8];
        read_n(r, &mut nb[..next_len])?;
        ifd = l.offset(&nb);
    }
    Ok(out)
}

/// The first page's `count` directory entries: its size, photometric interpretation and
/// orientation into `out`.
fn first_page<R: Read>(r: &mut R, l: Layout, count: u64, out: &mut Header) -> Result<(), JobError> {
    let (entry_len, _, _) = l.lens();
    for _ in 0..count.min(4096) {
        let mut e = [0u8; 20];
        read_n(r, &mut e[..entry_len])?;
        let tag = l.u16(&e[0..2]);
        let ty = l.u16(&e[2..4]);
        let v = &e[if l.big { 12 } else { 8 }..];
        let value = match ty {
            3 => u64::from(l.u16(v)),
            4 => u64::from(l.u32(v)),
            16 => l.u64(v),
            _ => continue,
        };
        match tag {
            256 => out.width = u32::try_from(value).unwrap_or(u32::MAX),
            257 => out.height = u32::try_from(value).unwrap_or(u32::MAX),
            262 => out.photometric = u16::try_from(value).unwrap_or(0),
            274 if (1..=8).contains(&value) => out.orientation = value as u8,
            _ => {}
        }
    }
    if count > 4096 {
        return Err(corrupt(format!("TIFF directory claims {count} entries")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A little-endian TIFF with `pages` directories (each 1 entry: width), the last one
    /// linking to `last_next`.
    fn chain(pages: u32, last_next: u32) -> Vec<u8> {
        let mut b = vec![b'I', b'I', 42, 0, 8, 0, 0, 0];
        for p in 0..pages {
            let at = b.len() as u32;
            b.extend_from_slice(&2u16.to_le_bytes());
            b.extend_from_slice(&[0, 1, 3, 0, 1, 0, 0, 0, 64, 0, 0, 0]);
            b.extend_from_slice(&[1, 1, 3, 0, 1, 0, 0, 0, 48, 0, 0, 0]);
            let next = if p + 1 == pages { last_next } else { at + 30 };
            b.extend_from_slice(&next.to_le_bytes());
        }
        b
    }

    fn read(b: &[u8], max: u64) -> Result<Header, JobError> {
        header(&mut Cursor::new(b), b.len() as u64, max)
    }

    #[test]
    fn pages_are_counted_and_loops_refused() {
        let h = read(&chain(3, 0), 100).expect("ok");
        assert_eq!((h.width, h.height, h.pages), (64, 48, 3));
        assert_eq!(
            read(&chain(10_000, 0), 100).map(|h| h.pages).ok(),
            Some(101)
        );
        let e = read(&chain(3, 8), 100).expect_err("loop");
        assert_eq!(e.code(), "corrupt_input");
        let e = read(&chain(1, 0)[..12], 100).expect_err("cut");
        assert_eq!(e.code(), "corrupt_input");
        // A dangling link after the first page keeps the pages before it.
        assert_eq!(read(&chain(2, 1 << 30), 100).map(|h| h.pages).ok(), Some(2));
    }
}
