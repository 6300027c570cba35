//! Locating the raw EXIF (TIFF-structured) block inside image containers, reading only
//! headers: segment and chunk payloads we don't need are skipped with `seek`.

use mediaflow_plugin_sdk::PluginError;
use std::io::{Read, Seek, SeekFrom};

/// Largest EXIF block accepted (JPEG caps APP1 at 64 KiB; other containers are looser).
const MAX_EXIF: u64 = 4 * 1024 * 1024;
/// Largest whole TIFF file read (TIFF offsets may point anywhere in the file).
const MAX_TIFF: u64 = 32 * 1024 * 1024;

fn invalid(msg: impl Into<String>) -> PluginError {
    PluginError::InvalidInput(msg.into())
}

fn io_err(e: std::io::Error) -> PluginError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        invalid("truncated container")
    } else {
        PluginError::Failed(format!("reading source: {e}"))
    }
}

fn read_vec<R: Read>(r: &mut R, len: u64, max: u64, what: &str) -> Result<Vec<u8>, PluginError> {
    if len > max {
        return Err(invalid(format!(
            "{what} of {len} bytes exceeds the {max}-byte cap"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).map_err(io_err)?;
    Ok(buf)
}

/// The raw EXIF block of a source in `format` (as probed by the host), if there is one.
pub fn find_exif<R: Read + Seek>(r: &mut R, format: &str) -> Result<Option<Vec<u8>>, PluginError> {
    let mut magic = [0u8; 12];
    let n = read_upto(r, &mut magic)?;
    r.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let magic = &magic[..n];
    if magic.starts_with(&[0xFF, 0xD8]) {
        jpeg(r)
    } else if magic.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(r)
    } else if magic.len() >= 12 && &magic[..4] == b"RIFF" && &magic[8..12] == b"WEBP" {
        webp(r)
    } else if magic.starts_with(b"II*\0") || magic.starts_with(b"MM\0*") {
        let len = r.seek(SeekFrom::End(0)).map_err(io_err)?;
        r.seek(SeekFrom::Start(0)).map_err(io_err)?;
        read_vec(r, len, MAX_TIFF, "TIFF file").map(Some)
    } else {
        // GIF, video containers…: there is no EXIF to find, which is not an error.
        mediaflow_plugin_sdk::debug!("no EXIF in a `{format}` source");
        Ok(None)
    }
}

fn read_upto<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, PluginError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]).map_err(io_err)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn jpeg<R: Read + Seek>(r: &mut R) -> Result<Option<Vec<u8>>, PluginError> {
    r.seek(SeekFrom::Start(2)).map_err(io_err)?;
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).map_err(io_err)?;
        if b[0] != 0xFF {
            return Err(invalid(format!(
                "JPEG marker expected, found byte {:#04x}",
                b[0]
            )));
        }
        let mut code = 0xFF;
        while code == 0xFF {
            r.read_exact(&mut b).map_err(io_err)?;
            code = b[0];
        }
        match code {
            0x01 | 0xD0..=0xD7 => continue,
            // Start of scan, end of image, or a frame header: EXIF comes before these.
            0xDA | 0xD9 | 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Ok(None);
            }
            _ => {}
        }
        let mut len = [0u8; 2];
        r.read_exact(&mut len).map_err(io_err)?;
        let len = u16::from_be_bytes(len);
        let payload = u64::from(
            len.checked_sub(2)
                .ok_or_else(|| invalid("JPEG segment length < 2"))?,
        );
        if code == 0xE1 && payload >= 6 {
            let mut id = [0u8; 6];
            r.read_exact(&mut id).map_err(io_err)?;
            if &id == b"Exif\0\0" {
                return read_vec(r, payload - 6, MAX_EXIF, "EXIF segment").map(Some);
            }
            r.seek(SeekFrom::Current((payload - 6) as i64))
                .map_err(io_err)?;
        } else {
            r.seek(SeekFrom::Current(payload as i64)).map_err(io_err)?;
        }
    }
}

fn png<R: Read + Seek>(r: &mut R) -> Result<Option<Vec<u8>>, PluginError> {
    let end = r.seek(SeekFrom::End(0)).map_err(io_err)?;
    let mut pos = r.seek(SeekFrom::Start(8)).map_err(io_err)?;
    while pos + 8 <= end {
        let mut head = [0u8; 8];
        r.read_exact(&mut head).map_err(io_err)?;
        let len = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        match &head[4..8] {
            b"eXIf" => return read_vec(r, len, MAX_EXIF, "eXIf chunk").map(Some),
            b"IEND" => return Ok(None),
            _ => {}
        }
        pos = r.seek(SeekFrom::Current(len as i64 + 4)).map_err(io_err)?;
    }
    Ok(None)
}

fn webp<R: Read + Seek>(r: &mut R) -> Result<Option<Vec<u8>>, PluginError> {
    let end = r.seek(SeekFrom::End(0)).map_err(io_err)?;
    let mut pos = r.seek(SeekFrom::Start(12)).map_err(io_err)?;
    while pos + 8 <= end {
        let mut head = [0u8; 8];
        r.read_exact(&mut head).map_err(io_err)?;
        let len = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
        if &head[..4] == b"EXIF" {
            let mut data = read_vec(r, len, MAX_EXIF, "EXIF chunk")?;
            // Some writers keep JPEG's "Exif\0\0" prefix inside the chunk.
            if data.starts_with(b"Exif\0\0") {
                data.drain(..6);
            }
            return Ok(Some(data));
        }
        // Chunks are padded to an even size.
        pos = r
            .seek(SeekFrom::Current((len + (len & 1)) as i64))
            .map_err(io_err)?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn jpeg_without_exif_stops_at_the_frame_header() {
        // SOI, APP0 (JFIF, 16 bytes), SOF0 … the walker must stop at SOF0.
        let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jpg.extend_from_slice(&[0u8; 14]);
        jpg.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11]);
        assert_eq!(find_exif(&mut Cursor::new(jpg), "jpeg").ok(), Some(None));
    }

    #[test]
    fn jpeg_app1_exif_is_found() {
        let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x10];
        jpg.extend_from_slice(b"Exif\0\0II*\0\x08\0\0\0");
        let raw = find_exif(&mut Cursor::new(jpg), "jpeg").ok().flatten();
        assert_eq!(raw.as_deref(), Some(&b"II*\0\x08\0\0\0"[..]));
    }

    #[test]
    fn truncated_segment_is_invalid_input() {
        let jpg = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, b'E', b'x'];
        assert!(matches!(
            find_exif(&mut Cursor::new(jpg), "jpeg"),
            Err(PluginError::InvalidInput(_))
        ));
    }

    #[test]
    fn png_exif_chunk_is_found_after_skipping_others() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&[0, 0, 0, 3]);
        png.extend_from_slice(b"abCD123");
        png.extend_from_slice(&[0, 0, 0, 0]);
        png.extend_from_slice(&[0, 0, 0, 4]);
        png.extend_from_slice(b"eXIfMM\0*");
        let raw = find_exif(&mut Cursor::new(png), "png").ok().flatten();
        assert_eq!(raw.as_deref(), Some(&b"MM\0*"[..]));
    }
}
