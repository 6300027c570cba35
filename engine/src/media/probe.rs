//! Probing: what a source is, from its magic bytes and headers only — format, stored
//! dimensions, EXIF orientation, frame count, colour model — and refusing it, before anything
//! is decoded or allocated, when it exceeds a limit. Every refusal names the limit and value.

use super::container::{self, Container};
use crate::config::Limits;
use crate::error::JobError;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Formats we recognise by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JPEG.
    Jpeg,
    /// PNG (and APNG).
    Png,
    /// GIF.
    Gif,
    /// WebP.
    Webp,
    /// TIFF.
    Tiff,
    /// What the isolated decoder reads: video containers, HEIF and AVIF.
    Container(Container),
}

impl Format {
    /// Lower-case name for manifests.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Webp => "webp",
            Format::Tiff => "tiff",
            Format::Container(c) => c.name(),
        }
    }

    /// Whether this is a still/animated image format.
    pub fn is_image(self) -> bool {
        match self {
            Format::Container(c) => c.is_still(),
            _ => true,
        }
    }

    /// Decoded by the isolated decoder (FFmpeg in a child process).
    pub fn in_child(self) -> bool {
        matches!(self, Format::Container(_))
    }
}

/// What probing found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The format.
    pub format: Format,
    /// Width as stored (before orientation).
    pub width: u32,
    /// Height as stored.
    pub height: u32,
    /// EXIF orientation, 1–8 (1 when absent).
    pub orientation: u8,
    /// Frames (1 for a still image).
    pub frames: u64,
    /// CMYK/YCCK JPEG.
    pub cmyk: bool,
    /// Size of the file in bytes.
    pub bytes: u64,
}

impl Probe {
    /// Dimensions as displayed: swapped when the orientation is a 90° rotation (5–8).
    pub fn display_size(&self) -> (u32, u32) {
        if (5..=8).contains(&self.orientation) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    /// Whether the image has more than one frame.
    pub fn animated(&self) -> bool {
        self.frames > 1
    }
}

fn corrupt(msg: impl Into<String>) -> JobError {
    JobError::CorruptInput(msg.into())
}

fn io(e: std::io::Error, what: &str) -> JobError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        corrupt(format!("truncated {what} header"))
    } else {
        JobError::Storage {
            message: format!("reading source: {e}"),
            class: crate::error::ErrorClass::Permanent,
        }
    }
}

/// Probe the file at `path` and enforce `limits`.
pub fn probe_file(path: &Path, limits: &Limits) -> Result<Probe, JobError> {
    let file = File::open(path).map_err(|e| io(e, "file"))?;
    let bytes = file.metadata().map_err(|e| io(e, "file"))?.len();
    if bytes == 0 {
        return Err(corrupt("the file is empty (0 bytes)"));
    }
    if bytes > limits.max_input_bytes {
        return Err(JobError::limit(
            "max_input_bytes",
            bytes,
            limits.max_input_bytes,
        ));
    }
    let mut r = BufReader::with_capacity(16 * 1024, file);
    let probe = probe_reader(&mut r, bytes, limits)?;
    check_limits(&probe, limits)?;
    Ok(probe)
}

/// Probe from a reader over `bytes` bytes (no limit checks beyond what parsing needs).
pub fn probe_reader<R: Read + Seek>(
    r: &mut R,
    bytes: u64,
    limits: &Limits,
) -> Result<Probe, JobError> {
    let mut magic = [0u8; container::HEAD];
    let n = read_upto(r, &mut magic).map_err(|e| io(e, "file"))?;
    let magic = &magic[..n];
    r.seek(SeekFrom::Start(0)).map_err(|e| io(e, "file"))?;
    let format = sniff(magic).ok_or_else(|| {
        let hex: Vec<String> = magic.iter().take(8).map(|b| format!("{b:02x}")).collect();
        JobError::UnsupportedFormat(format!(
            "not a recognised image or video format (starts with {})",
            hex.join(" ")
        ))
    })?;
    let mut p = Probe {
        format,
        width: 0,
        height: 0,
        orientation: 1,
        frames: 1,
        cmyk: false,
        bytes,
    };
    match format {
        Format::Jpeg => jpeg(r, &mut p, limits)?,
        Format::Png => png(r, &mut p)?,
        Format::Gif => gif(r, &mut p, limits.max_frames)?,
        Format::Webp => webp(r, &mut p)?,
        Format::Tiff => tiff(r, &mut p)?,
        // The decoder child reads these headers (and checks the limits) itself.
        Format::Container(_) => return Ok(p),
    }
    if p.width == 0 || p.height == 0 {
        return Err(corrupt(format!(
            "{} header declares a {}x{} image",
            format.name(),
            p.width,
            p.height
        )));
    }
    Ok(p)
}

/// Refuse sources over the configured limits.
pub fn check_limits(p: &Probe, limits: &Limits) -> Result<(), JobError> {
    let max_side = u64::from(p.width.max(p.height));
    if max_side > u64::from(limits.max_dimension) {
        return Err(JobError::limit(
            "max_dimension",
            max_side,
            u64::from(limits.max_dimension),
        ));
    }
    let pixels = u64::from(p.width) * u64::from(p.height);
    if pixels > limits.max_pixels {
        return Err(JobError::limit("max_pixels", pixels, limits.max_pixels));
    }
    if p.frames > limits.max_frames {
        return Err(JobError::limit("max_frames", p.frames, limits.max_frames));
    }
    Ok(())
}

/// The format from the first bytes.
pub fn sniff(m: &[u8]) -> Option<Format> {
    if m.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if m.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if m.starts_with(b"GIF87a") || m.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if m.len() >= 12 && &m[..4] == b"RIFF" && &m[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else if m.starts_with(b"II*\0") || m.starts_with(b"MM\0*") {
        Some(Format::Tiff)
    } else {
        container::sniff(m).map(Format::Container)
    }
}

fn read_upto<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn u8_at<R: Read>(r: &mut R, what: &str) -> Result<u8, JobError> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).map_err(|e| io(e, what))?;
    Ok(b[0])
}

fn bytes_n<R: Read, const N: usize>(r: &mut R, what: &str) -> Result<[u8; N], JobError> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).map_err(|e| io(e, what))?;
    Ok(b)
}

fn skip<R: Seek>(r: &mut R, n: i64, what: &str) -> Result<(), JobError> {
    r.seek(SeekFrom::Current(n))
        .map(|_| ())
        .map_err(|e| io(e, what))
}

fn jpeg<R: Read + Seek>(r: &mut R, p: &mut Probe, limits: &Limits) -> Result<(), JobError> {
    skip(r, 2, "JPEG")?;
    let mut have_frame = false;
    loop {
        let mut b = u8_at(r, "JPEG")?;
        if b != 0xFF {
            return Err(corrupt(format!(
                "JPEG marker expected, found byte {b:#04x}"
            )));
        }
        while b == 0xFF {
            b = u8_at(r, "JPEG")?;
        }
        let code = b;
        match code {
            0x01 | 0xD0..=0xD7 => continue,
            0xD9 => return Err(corrupt("JPEG ends before its image data")),
            0xDA if !have_frame => {
                return Err(corrupt("JPEG has no frame header before its image data"));
            }
            // Image data starts: the header is fully read. (Whether the data is complete is
            // checked at decode time, see `jpeg_is_complete`.)
            0xDA => return Ok(()),
            _ => {}
        }
        let len = u16::from_be_bytes(bytes_n::<R, 2>(r, "JPEG")?);
        let payload = i64::from(
            len.checked_sub(2)
                .ok_or_else(|| corrupt("JPEG segment length < 2"))?,
        );
        match code {
            // Start of frame: precision, height, width, components.
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                let h = bytes_n::<R, 6>(r, "JPEG")?;
                p.height = u32::from(u16::from_be_bytes([h[1], h[2]]));
                p.width = u32::from(u16::from_be_bytes([h[3], h[4]]));
                p.cmyk = h[5] == 4;
                if p.height == 0 {
                    return Err(JobError::UnsupportedCodec(
                        "JPEG with the height deferred to a DNL marker".into(),
                    ));
                }
                if matches!(code, 0xC3 | 0xC7 | 0xCB | 0xCF) {
                    return Err(JobError::UnsupportedCodec("lossless JPEG".into()));
                }
                if code >= 0xC9 {
                    return Err(JobError::UnsupportedCodec("arithmetic-coded JPEG".into()));
                }
                have_frame = true;
                // Refuse a huge claimed frame before reading any further.
                check_limits(p, limits)?;
                skip(r, payload - 6, "JPEG")?;
            }
            // APP1: EXIF orientation.
            0xE1 if payload >= 14 => {
                let mut seg = vec![0u8; payload as usize];
                r.read_exact(&mut seg).map_err(|e| io(e, "JPEG"))?;
                if let Some(tiff) = seg.strip_prefix(b"Exif\0\0") {
                    p.orientation = exif_orientation(tiff).unwrap_or(1);
                }
            }
            _ => skip(r, payload, "JPEG")?,
        }
    }
}

/// The length field of the marker segment starting at `i` (the `FF xx` bytes).
fn segment_len(data: &[u8], i: usize) -> Option<usize> {
    data.get(i + 2..i + 4)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
}

/// Whether a JPEG's image data runs to its end-of-image marker. Walks the entropy-coded data
/// (skipping stuffed `FF 00`, restart markers and fill bytes) and the segments between the
/// scans of a progressive JPEG, so data appended after EOI (a Motion Photo's video, an MPO's
/// second picture) does not confuse it. Lenient decoders fill a cut-off image with grey; this
/// is how a truncated upload is refused instead.
pub fn jpeg_is_complete(data: &[u8]) -> bool {
    let mut i = 2;
    // Segments before the first scan.
    loop {
        let Some(&[0xFF, code]) = data.get(i..i + 2) else {
            return false;
        };
        match code {
            0xFF => i += 1,
            0xD8 | 0x01 | 0xD0..=0xD7 => i += 2,
            0xD9 => return false,
            _ => {
                let Some(len) = segment_len(data, i) else {
                    return false;
                };
                i += 2 + len;
                if code == 0xDA {
                    break;
                }
            }
        }
    }
    // Entropy-coded data, with further scans and tables in between.
    loop {
        let Some(off) = data
            .get(i..)
            .and_then(|rest| rest.iter().position(|&b| b == 0xFF))
        else {
            return false;
        };
        i += off;
        let Some(&code) = data.get(i + 1) else {
            return false;
        };
        match code {
            0x00 | 0xD0..=0xD7 => i += 2,
            0xFF => i += 1,
            0xD9 => return true,
            _ => {
                let Some(len) = segment_len(data, i) else {
                    return false;
                };
                i += 2 + len;
            }
        }
    }
}

/// The orientation tag (0x0112) of a TIFF-structured EXIF block's IFD0, if valid.
pub fn exif_orientation(tiff: &[u8]) -> Option<u8> {
    let le = match tiff.get(..4)? {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u16> {
        let b = tiff.get(o..o + 2)?;
        Some(if le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    };
    let u32_at = |o: usize| -> Option<u32> {
        let b = tiff.get(o..o + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = u16_at(ifd)? as usize;
    for i in 0..count.min(512) {
        let e = ifd + 2 + i * 12;
        if u16_at(e)? == 0x0112 {
            let v = u16_at(e + 8)?;
            return (1..=8).contains(&v).then_some(v as u8);
        }
    }
    None
}

fn png<R: Read + Seek>(r: &mut R, p: &mut Probe) -> Result<(), JobError> {
    skip(r, 8, "PNG")?;
    let head = bytes_n::<R, 8>(r, "PNG")?;
    if &head[4..8] != b"IHDR" || u32::from_be_bytes([head[0], head[1], head[2], head[3]]) != 13 {
        return Err(corrupt("PNG does not start with a valid IHDR chunk"));
    }
    let ihdr = bytes_n::<R, 13>(r, "PNG")?;
    p.width = u32::from_be_bytes([ihdr[0], ihdr[1], ihdr[2], ihdr[3]]);
    p.height = u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]);
    skip(r, 4, "PNG")?; // CRC
    // Look for acTL (animation) before the image data.
    for _ in 0..1024 {
        let Ok(head) = bytes_n::<R, 8>(r, "PNG") else {
            break;
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        match &head[4..8] {
            b"acTL" => {
                let n = bytes_n::<R, 4>(r, "PNG")?;
                p.frames = u64::from(u32::from_be_bytes(n)).max(1);
                break;
            }
            b"IDAT" | b"IEND" => break,
            _ => skip(r, i64::from(len) + 4, "PNG")?,
        }
    }
    Ok(())
}

fn gif<R: Read + Seek>(r: &mut R, p: &mut Probe, max_frames: u64) -> Result<(), JobError> {
    let h = bytes_n::<R, 13>(r, "GIF")?;
    p.width = u32::from(u16::from_le_bytes([h[6], h[7]]));
    p.height = u32::from(u16::from_le_bytes([h[8], h[9]]));
    if h[10] & 0x80 != 0 {
        skip(r, 3 * (1i64 << ((h[10] & 7) + 1)), "GIF")?;
    }
    // Count frames, skipping their data; stop once past the limit (the check reports it).
    let mut frames = 0u64;
    while let Ok(block) = u8_at(r, "GIF") {
        match block {
            0x2C => {
                frames += 1;
                if frames > max_frames {
                    break;
                }
                let d = bytes_n::<R, 9>(r, "GIF")?;
                if d[8] & 0x80 != 0 {
                    skip(r, 3 * (1i64 << ((d[8] & 7) + 1)), "GIF")?;
                }
                skip(r, 1, "GIF")?; // LZW minimum code size
                skip_sub_blocks(r)?;
            }
            0x21 => {
                skip(r, 1, "GIF")?; // label
                skip_sub_blocks(r)?;
            }
            _ => break, // trailer (0x3B) or garbage: the decoder decides
        }
    }
    p.frames = frames.max(1);
    Ok(())
}

fn skip_sub_blocks<R: Read + Seek>(r: &mut R) -> Result<(), JobError> {
    loop {
        let n = u8_at(r, "GIF")?;
        if n == 0 {
            return Ok(());
        }
        skip(r, i64::from(n), "GIF")?;
    }
}

fn webp<R: Read + Seek>(r: &mut R, p: &mut Probe) -> Result<(), JobError> {
    skip(r, 12, "WebP")?;
    let mut frames = 0u64;
    let mut animated = false;
    for _ in 0..100_000 {
        let Ok(head) = bytes_n::<R, 8>(r, "WebP") else {
            break;
        };
        let len = i64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
        let padded = len + (len & 1);
        match &head[..4] {
            b"VP8 " => {
                let f = bytes_n::<R, 10>(r, "WebP")?;
                if f[3..6] != [0x9D, 0x01, 0x2A] {
                    return Err(corrupt("WebP VP8 frame has no start code"));
                }
                if p.width == 0 {
                    p.width = u32::from(u16::from_le_bytes([f[6], f[7]]) & 0x3FFF);
                    p.height = u32::from(u16::from_le_bytes([f[8], f[9]]) & 0x3FFF);
                }
                return Ok(());
            }
            b"VP8L" => {
                let f = bytes_n::<R, 5>(r, "WebP")?;
                if f[0] != 0x2F {
                    return Err(corrupt("WebP VP8L bitstream has no signature"));
                }
                let bits = u32::from_le_bytes([f[1], f[2], f[3], f[4]]);
                if p.width == 0 {
                    p.width = (bits & 0x3FFF) + 1;
                    p.height = ((bits >> 14) & 0x3FFF) + 1;
                }
                return Ok(());
            }
            b"VP8X" => {
                let f = bytes_n::<R, 10>(r, "WebP")?;
                animated = f[0] & 0x02 != 0;
                p.width = u32::from_le_bytes([f[4], f[5], f[6], 0]) + 1;
                p.height = u32::from_le_bytes([f[7], f[8], f[9], 0]) + 1;
                skip(r, padded - 10, "WebP")?;
            }
            b"ANMF" => {
                frames += 1;
                skip(r, padded, "WebP")?;
            }
            _ => skip(r, padded, "WebP")?,
        }
    }
    if animated {
        p.frames = frames.max(1);
    }
    Ok(())
}

fn tiff<R: Read + Seek>(r: &mut R, p: &mut Probe) -> Result<(), JobError> {
    let h = bytes_n::<R, 8>(r, "TIFF")?;
    let le = &h[..2] == b"II";
    let u16v = |b: [u8; 2]| {
        if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let u32v = |b: [u8; 4]| {
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let ifd = u32v([h[4], h[5], h[6], h[7]]);
    r.seek(SeekFrom::Start(u64::from(ifd)))
        .map_err(|e| io(e, "TIFF"))?;
    let count = u16v(bytes_n::<R, 2>(r, "TIFF")?);
    for _ in 0..count.min(1024) {
        let e = bytes_n::<R, 12>(r, "TIFF")?;
        let tag = u16v([e[0], e[1]]);
        let ty = u16v([e[2], e[3]]);
        let value = if ty == 3 {
            u32::from(u16v([e[8], e[9]]))
        } else {
            u32v([e[8], e[9], e[10], e[11]])
        };
        match tag {
            256 => p.width = value,
            257 => p.height = value,
            274 if (1..=8).contains(&value) => p.orientation = value as u8,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn probe(bytes: &[u8]) -> Result<Probe, JobError> {
        let limits = Limits::default();
        let p = probe_reader(&mut Cursor::new(bytes), bytes.len() as u64, &limits)?;
        check_limits(&p, &limits)?;
        Ok(p)
    }

    #[test]
    fn jpeg_sof_claiming_65000_square_is_refused_by_pixels() {
        let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
        jpg.extend_from_slice(&65000u16.to_be_bytes());
        jpg.extend_from_slice(&65000u16.to_be_bytes());
        jpg.extend_from_slice(&[3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]);
        let e = probe(&jpg).expect_err("too big");
        assert_eq!(e.code(), "limit_exceeded");
        assert!(
            e.to_string()
                .contains("max_pixels exceeded: 4225000000 > 100000000"),
            "{e}"
        );
    }

    #[test]
    fn random_bytes_are_unsupported_and_truncation_is_corrupt() {
        let e = probe(&[0x13, 0x37, 0x42, 0x99, 1, 2, 3, 4]).expect_err("random");
        assert_eq!(e.code(), "unsupported_format");
        let e = probe(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]).expect_err("cut");
        assert_eq!(e.code(), "corrupt_input", "{e}");
        let e = probe(b"\x89PNG\r\n\x1a\n\0\0").expect_err("cut png");
        assert_eq!(e.code(), "corrupt_input", "{e}");
    }

    #[test]
    fn jpeg_completeness_finds_eoi_past_scans_and_ignores_trailers() {
        // SOI, SOS (len 8), data with a stuffed FF00 and a restart marker, EOI.
        let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0];
        jpg.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        assert!(!jpeg_is_complete(&jpg), "no EOI yet: truncated");
        // A second scan (progressive) before the end.
        jpg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0, 0x78]);
        assert!(!jpeg_is_complete(&jpg));
        jpg.extend_from_slice(&[0xFF, 0xD9]);
        assert!(jpeg_is_complete(&jpg));
        // A Motion Photo: an MP4 (with no FF D9 in its last bytes) appended after EOI.
        jpg.extend_from_slice(b"\0\0\0\x18ftypmp42 trailing video bytes");
        assert!(jpeg_is_complete(&jpg));
    }

    #[test]
    fn exif_orientation_is_read_in_both_byte_orders() {
        let le = [
            b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0,
        ];
        assert_eq!(exif_orientation(&le), Some(6));
        let be = [
            b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 8, 0, 0,
        ];
        assert_eq!(exif_orientation(&be), Some(8));
        assert_eq!(exif_orientation(&le[..12]), None);
    }

    #[test]
    fn gif_screen_of_65535_square_is_refused() {
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0x3B]);
        let e = probe(&gif).expect_err("huge");
        assert_eq!(e.code(), "limit_exceeded");
    }
}
