//! BMP headers: the file header and every common DIB header (OS/2 `BITMAPCOREHEADER`,
//! `BITMAPINFOHEADER` and its V2–V5 extensions, OS/2 2.x), read before any pixel is decoded.
//! Dimensions are checked against the limits, top-down (negative height) images are told
//! apart, embedded JPEG/PNG payloads are refused, and an uncompressed bitmap whose pixel array
//! cannot fit in the file is refused as truncated before the decoder allocates its frame.
//! The pixels themselves are decoded by the `image` crate's BMP decoder (1/4/8/16/24/32-bit,
//! RLE4/RLE8, bit fields, alpha).

use crate::error::JobError;
use std::io::{Read, Seek, SeekFrom};

/// What a BMP header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels (absolute).
    pub height: u32,
    /// Bits per pixel.
    pub bits: u16,
    /// Compression (0 RGB, 1 RLE8, 2 RLE4, 3 bit fields, 6 alpha bit fields).
    pub compression: u32,
    /// Rows stored top to bottom.
    pub top_down: bool,
    /// Where the pixel array starts.
    pub data_offset: u64,
}

fn corrupt(msg: impl Into<String>) -> JobError {
    JobError::CorruptInput(msg.into())
}

/// Read the headers of the BMP at the start of `r`.
pub fn header<R: Read + Seek>(r: &mut R) -> Result<Header, JobError> {
    let mut head = [0u8; 18];
    r.seek(SeekFrom::Start(0))
        .and_then(|_| r.read_exact(&mut head))
        .map_err(|_| corrupt("truncated BMP header"))?;
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let data_offset = u64::from(le32(&head[10..14]));
    let dib = le32(&head[14..18]);
    let (width, height, planes, bits, compression) = match dib {
        // OS/2 1.x: 16-bit unsigned sizes.
        12 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)
                .map_err(|_| corrupt("truncated BMP header"))?;
            (
                i64::from(u16::from_le_bytes([b[0], b[1]])),
                i64::from(u16::from_le_bytes([b[2], b[3]])),
                u16::from_le_bytes([b[4], b[5]]),
                u16::from_le_bytes([b[6], b[7]]),
                0,
            )
        }
        16 | 40 | 52 | 56 | 64 | 108 | 124 => {
            let mut b = [0u8; 16];
            r.read_exact(&mut b[..12])
                .map_err(|_| corrupt("truncated BMP header"))?;
            if dib >= 20 {
                r.read_exact(&mut b[12..16])
                    .map_err(|_| corrupt("truncated BMP header"))?;
            }
            let w = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let h = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            (
                i64::from(w),
                i64::from(h),
                u16::from_le_bytes([b[8], b[9]]),
                u16::from_le_bytes([b[10], b[11]]),
                le32(&b[12..16]),
            )
        }
        other => {
            return Err(JobError::UnsupportedCodec(format!(
                "BMP with a {other}-byte DIB header"
            )));
        }
    };
    if width <= 0 || height == 0 || planes != 1 {
        return Err(corrupt(format!(
            "BMP header declares a {width}x{height} image with {planes} planes"
        )));
    }
    match compression {
        4 => return Err(JobError::UnsupportedCodec("BMP carrying a JPEG".into())),
        5 => return Err(JobError::UnsupportedCodec("BMP carrying a PNG".into())),
        0..=3 | 6 => {}
        other => {
            return Err(JobError::UnsupportedCodec(format!(
                "BMP compression type {other}"
            )));
        }
    }
    if !matches!(bits, 1 | 4 | 8 | 16 | 24 | 32)
        || (compression == 1 && bits != 8)
        || (compression == 2 && bits != 4)
    {
        return Err(JobError::UnsupportedCodec(format!(
            "BMP with {bits} bits per pixel and compression {compression}"
        )));
    }
    let header = Header {
        width: u32::try_from(width).unwrap_or(u32::MAX),
        height: u32::try_from(height.unsigned_abs()).unwrap_or(u32::MAX),
        bits,
        compression,
        top_down: height < 0,
        data_offset,
    };
    Ok(header)
}

/// Refuse an uncompressed bitmap whose pixel array cannot be in a file of `bytes` bytes
/// (call after the size limits: a huge claim is a limit, a small lie is truncation). RLE data
/// can legitimately be far smaller than the picture, so it is not checked here.
pub fn check_size(h: &Header, bytes: u64) -> Result<(), JobError> {
    if !matches!(h.compression, 0 | 3 | 6) {
        return Ok(());
    }
    // Rows are padded to 4 bytes.
    let row = (u64::from(h.width) * u64::from(h.bits)).div_ceil(32) * 4;
    let need = h
        .data_offset
        .saturating_add(row.saturating_mul(u64::from(h.height)));
    // Some writers drop the last row's padding; allow one row of slack.
    if need > bytes.saturating_add(row) {
        return Err(corrupt(format!(
            "BMP is truncated: {}x{} at {} bits needs {need} bytes, the file has {bytes}",
            h.width, h.height, h.bits
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn bmp(w: i32, h: i32, bits: u16, compression: u32, pixels: usize) -> Vec<u8> {
        let mut b = b"BM".to_vec();
        b.extend_from_slice(&(54 + pixels as u32).to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&54u32.to_le_bytes());
        b.extend_from_slice(&40u32.to_le_bytes());
        b.extend_from_slice(&w.to_le_bytes());
        b.extend_from_slice(&h.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        b.extend_from_slice(&compression.to_le_bytes());
        b.extend_from_slice(&[0; 20]);
        b.extend(std::iter::repeat_n(0x80, pixels));
        b
    }

    fn read(b: &[u8]) -> Result<Header, JobError> {
        let h = header(&mut Cursor::new(b))?;
        check_size(&h, b.len() as u64)?;
        Ok(h)
    }

    #[test]
    fn top_down_and_sizes_are_read() {
        let h = read(&bmp(3, -2, 24, 0, 24)).expect("ok");
        assert_eq!((h.width, h.height, h.top_down), (3, 2, true));
        let h = read(&bmp(3, 2, 8, 1, 10)).expect("RLE8 may be small");
        assert_eq!((h.bits, h.compression), (8, 1));
    }

    #[test]
    fn lies_are_refused_before_decoding() {
        let e = read(&bmp(100_000, 100_000, 24, 0, 16)).expect_err("claims 30 GB");
        assert_eq!(e.code(), "corrupt_input", "{e}");
        assert_eq!(
            read(&bmp(0, 5, 24, 0, 0)).map_err(|e| e.code()),
            Err("corrupt_input")
        );
        assert_eq!(
            read(&bmp(4, 4, 24, 4, 64)).map_err(|e| e.code()),
            Err("unsupported_codec")
        );
        assert_eq!(
            read(&bmp(4, 4, 7, 0, 64)).map_err(|e| e.code()),
            Err("unsupported_codec")
        );
        assert_eq!(
            read(&bmp(4, 4, 24, 0, 0)[..20]).map_err(|e| e.code()),
            Err("corrupt_input")
        );
    }
}
