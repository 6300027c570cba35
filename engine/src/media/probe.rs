//! Probing: what a source is, from its magic bytes and headers only — format, stored
//! dimensions, EXIF orientation, frame count, colour model — and refusing it, before anything
//! is decoded or allocated, when it exceeds a limit. Every refusal names the limit and value.

use super::container::{self, Container};
use super::still;
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
    /// TIFF (and BigTIFF).
    Tiff,
    /// BMP (Windows and OS/2 bitmaps).
    Bmp,
    /// JPEG XL (bare codestream or ISO BMFF container).
    Jxl,
    /// SVG (rasterised).
    Svg,
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
            Format::Bmp => "bmp",
            Format::Jxl => "jxl",
            Format::Svg => "svg",
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
    /// The EXIF block is damaged: it was read as far as it parsed and must not be copied
    /// into outputs.
    pub exif_damaged: bool,
    /// Things the manifest should say about the source (damage skipped, pages left out).
    pub notes: Vec<String>,
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
    let mut magic = [0u8; SNIFF_BYTES];
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
        exif_damaged: false,
        notes: Vec::new(),
    };
    match format {
        Format::Jpeg => jpeg(r, &mut p, limits)?,
        Format::Png => png(r, &mut p)?,
        Format::Gif => gif(r, &mut p, limits.max_frames)?,
        Format::Webp => webp(r, &mut p)?,
        Format::Tiff => tiff(r, &mut p, limits)?,
        Format::Bmp => bmp(r, &mut p, limits)?,
        Format::Jxl => {
            let h = super::decode::guard(format, || still::jxl::header(r, limits))?;
            (p.width, p.height, p.orientation) = (h.width, h.height, 1);
            p.frames = h.frames;
            p.notes.extend(h.notes);
        }
        Format::Svg => {
            let h = super::decode::guard(format, || still::svg::probe(r, bytes))?;
            (p.width, p.height) = (h.width, h.height);
            p.notes.extend(h.notes);
        }
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

/// How many leading bytes [`sniff`] looks at (an SVG may open with a long comment).
const SNIFF_BYTES: usize = 4096;

/// The format from the first bytes.
pub fn sniff(m: &[u8]) -> Option<Format> {
    if m.starts_with(&[0xFF, 0xD8, 0xFF]) || damaged_jpeg_start(m) {
        Some(Format::Jpeg)
    } else if m.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if m.starts_with(b"GIF87a") || m.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if m.len() >= 12 && &m[..4] == b"RIFF" && &m[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else if m.starts_with(b"II*\0")
        || m.starts_with(b"MM\0*")
        || m.starts_with(b"II+\0")
        || m.starts_with(b"MM\0+")
    {
        Some(Format::Tiff)
    } else if m.starts_with(b"BM")
        && m.get(14..18).is_some_and(|d| {
            matches!(
                u32::from_le_bytes([d[0], d[1], d[2], d[3]]),
                12 | 16 | 40 | 52 | 56 | 64 | 108 | 124
            )
        })
    {
        Some(Format::Bmp)
    } else if m.starts_with(&[0xFF, 0x0A]) || m.starts_with(b"\0\0\0\x0cJXL \r\n\x87\n") {
        Some(Format::Jxl)
    } else if let Some(c) = container::sniff(m) {
        Some(Format::Container(c))
    } else if still::svg::sniff(m) {
        Some(Format::Svg)
    } else {
        None
    }
}

/// SOI, then stray bytes before the first marker (libjpeg skips them with a warning).
fn damaged_jpeg_start(m: &[u8]) -> bool {
    m.starts_with(&[0xFF, 0xD8])
        && m.get(2..64).is_some_and(|r| {
            r.windows(2)
                .any(|w| w[0] == 0xFF && matches!(w[1], 0xC0..=0xFE))
        })
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

/// The most of a JPEG read to find its first scan (metadata segments before it are rarely
/// more than a few hundred KB; this bounds what a file of endless segments costs).
const MAX_JPEG_HEADER_BYTES: u64 = 16 << 20;

fn jpeg<R: Read + Seek>(r: &mut R, p: &mut Probe, limits: &Limits) -> Result<(), JobError> {
    let mut head = Vec::new();
    let mut want = 64 * 1024;
    let header = loop {
        head.clear();
        r.seek(SeekFrom::Start(0)).map_err(|e| io(e, "JPEG"))?;
        r.by_ref()
            .take(want)
            .read_to_end(&mut head)
            .map_err(|e| io(e, "JPEG"))?;
        let h = still::jpeg::header(&head)?;
        if h.width > 0 {
            // Refuse a huge claimed frame before reading any further.
            (p.width, p.height) = (h.width, h.height);
            check_limits(p, limits)?;
        }
        if h.ends_before_scan {
            return Err(corrupt("JPEG ends before its image data"));
        }
        if h.complete {
            break h;
        }
        if (head.len() as u64) < want {
            return Err(corrupt("truncated JPEG header"));
        }
        if want >= MAX_JPEG_HEADER_BYTES {
            return Err(corrupt(format!(
                "JPEG has no image data in its first {MAX_JPEG_HEADER_BYTES} bytes"
            )));
        }
        want *= 4;
    };
    p.cmyk = header.components == 4;
    // Stray bytes are counted (and noted) by the decoder's walk over the whole file.
    let s = &header.segments;
    if s.gain_map {
        p.notes.push(
            "Ultra HDR JPEG: the primary (SDR) image was used; its HDR gain map is not carried \
             into the renditions"
                .into(),
        );
    } else if s.mpf {
        p.notes
            .push("multi-picture JPEG (MPF): the first (primary) picture was used".into());
    }
    if let Some(exif) = &s.exif {
        exif_facts(p, exif);
    }
    Ok(())
}

/// Take the orientation from an EXIF block; a damaged block is noted, never fatal.
fn exif_facts(p: &mut Probe, tiff: &[u8]) {
    let facts = still::exif::read(tiff);
    p.orientation = facts.orientation.unwrap_or(1);
    if let Some(damage) = facts.damage {
        p.exif_damaged = true;
        p.notes.push(format!(
            "the EXIF block is damaged ({damage}): it was ignored{}",
            match facts.orientation {
                Some(o) if o != 1 => format!(" except its orientation ({o}), which parsed"),
                _ => String::new(),
            }
        ));
    }
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
    if frames == 0 {
        // A header and nothing after it: whatever size it claims, there is no picture.
        return Err(corrupt(
            "GIF has no image (the file is truncated after its header, or is not a GIF)",
        ));
    }
    p.frames = frames;
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

fn tiff<R: Read + Seek>(r: &mut R, p: &mut Probe, limits: &Limits) -> Result<(), JobError> {
    r.seek(SeekFrom::Start(0)).map_err(|e| io(e, "TIFF"))?;
    let h = still::tiff::header(r, p.bytes, limits.max_frames)?;
    (p.width, p.height, p.orientation) = (h.width, h.height, h.orientation);
    // Only the first page is decoded: the count is checked like an animation's frames.
    check_limits(p, limits)?;
    if h.pages > limits.max_frames {
        return Err(JobError::limit("max_frames", h.pages, limits.max_frames));
    }
    if h.pages > 1 {
        p.notes.push(format!(
            "TIFF with {} pages: the first page was used",
            h.pages
        ));
    }
    p.cmyk = h.photometric == 5;
    Ok(())
}

fn bmp<R: Read + Seek>(r: &mut R, p: &mut Probe, limits: &Limits) -> Result<(), JobError> {
    let h = still::bmp::header(r)?;
    (p.width, p.height) = (h.width, h.height);
    check_limits(p, limits)?;
    still::bmp::check_size(&h, p.bytes)
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
    fn gif_screen_of_65535_square_is_refused() {
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0]);
        // One image descriptor as large as the screen, one empty data block, the trailer.
        gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 2, 0, 0x3B]);
        let e = probe(&gif).expect_err("huge");
        assert_eq!(e.code(), "limit_exceeded");
    }

    #[test]
    fn a_gif_header_with_garbage_after_it_is_corrupt_not_a_limit() {
        let e = probe(b"GIF89a garbage").expect_err("no image");
        assert_eq!(e.code(), "corrupt_input", "{e}");
        assert!(e.to_string().contains("no image"), "{e}");
    }
}
