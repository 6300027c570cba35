//! JPEG structure, read the way browsers read it. The marker walk tolerates what libjpeg only
//! warns about — stray bytes between segments, fill bytes, a stray `FF` inside entropy-coded
//! data — and stops at the primary image's end-of-image marker, so whatever follows it (an
//! Ultra HDR gain map or an MPO's second picture in MPF, a Motion Photo's video) is never
//! mistaken for damage. A JPEG whose image data never reaches an end-of-image marker is
//! truncated and stays refused. [`repaired`] rebuilds the stream with only what the decoder
//! needs (tables, frame, scans, Adobe transform) when the original does not decode cleanly.

use crate::error::JobError;

/// What the walk over a whole JPEG found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Offset just past the primary image's end-of-image marker.
    pub end: usize,
    /// Bytes that belong to no segment and no scan (skipped as libjpeg skips them).
    pub stray_bytes: usize,
}

/// A marker code that may stand between segments before the first scan.
fn header_marker(code: u8) -> bool {
    matches!(code, 0xC0..=0xCF | 0xD8 | 0xD9 | 0xDA..=0xDF | 0xE0..=0xEF | 0xFE | 0x01 | 0xD0..=0xD7)
}

/// A marker code that may stand between the scans of a progressive JPEG (or end the image).
fn between_scans_marker(code: u8) -> bool {
    matches!(code, 0xC4 | 0xCC | 0xDA..=0xDF | 0xE0..=0xEF | 0xFE)
}

/// Whether the decoder needs this segment to make pixels (everything else — APPn metadata,
/// comments — is read by us, not by libjpeg).
fn essential(code: u8) -> bool {
    matches!(code, 0xC0..=0xCF | 0xDA..=0xDF | 0xEE)
}

/// The length field of the marker segment starting at `i` (the `FF xx` bytes).
fn segment_len(data: &[u8], i: usize) -> Option<usize> {
    data.get(i + 2..i + 4)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .filter(|&l| l >= 2)
}

/// Walk `data` from SOI to the primary image's EOI, copying what the decoder needs into
/// `out` when given. `None` when the image data never reaches an end-of-image marker.
fn walk(data: &[u8], mut out: Option<&mut Vec<u8>>) -> Option<Layout> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut emit = |bytes: &[u8]| {
        if let Some(o) = out.as_deref_mut() {
            o.extend_from_slice(bytes);
        }
    };
    emit(&[0xFF, 0xD8]);
    let mut stray = 0usize;
    let mut i = 2;
    // Segments before the first scan.
    loop {
        // libjpeg's next_marker: skip to an FF, past fill FFs; FF 00 is not a marker.
        let byte = *data.get(i)?;
        if byte != 0xFF {
            stray += 1;
            i += 1;
            continue;
        }
        let code = *data.get(i + 1)?;
        match code {
            0xFF => i += 1,
            0xD8 | 0x01 | 0xD0..=0xD7 => i += 2,
            0xD9 => return None,
            c if !header_marker(c) => {
                stray += 2;
                i += 2;
            }
            c => {
                let len = segment_len(data, i)?;
                let seg = data.get(i..i + 2 + len)?;
                if essential(c) {
                    emit(seg);
                }
                i += 2 + len;
                if c == 0xDA {
                    break;
                }
            }
        }
    }
    // Entropy-coded data, with further scans and tables in between.
    let mut from = i;
    loop {
        let off = data.get(i..)?.iter().position(|&b| b == 0xFF)?;
        i += off;
        let code = *data.get(i + 1)?;
        match code {
            0x00 | 0xD0..=0xD7 => i += 2,
            0xFF => i += 1,
            0xD9 => {
                emit(&data[from..i]);
                emit(&[0xFF, 0xD9]);
                return Some(Layout {
                    end: i + 2,
                    stray_bytes: stray,
                });
            }
            c if between_scans_marker(c)
                && segment_len(data, i)
                    .and_then(|len| data.get(i + 2 + len))
                    .is_some_and(|&next| next == 0xFF || c == 0xDA) =>
            {
                let len = segment_len(data, i)?;
                emit(&data[from..i]);
                if essential(c) {
                    emit(&data[i..i + 2 + len]);
                }
                i += 2 + len;
                from = i;
            }
            // An FF that starts no valid marker: a damaged byte. Drop the FF, keep the next
            // byte as data (what the entropy decoder will resynchronise on anyway).
            _ => {
                emit(&data[from..i]);
                stray += 1;
                i += 1;
                from = i;
            }
        }
    }
}

/// The layout of a whole JPEG, or a `corrupt_input` error when it is truncated.
pub fn layout(data: &[u8]) -> Result<Layout, JobError> {
    walk(data, None).ok_or_else(|| {
        JobError::CorruptInput(
            "JPEG is truncated: its image data has no end-of-image marker".into(),
        )
    })
}

/// The primary image rebuilt with only what the decoder needs: SOI, tables, frame, scans
/// (entropy data with stray `FF`s dropped), EOI. Metadata segments are left out.
pub fn repaired(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    walk(data, Some(&mut out)).map(|_| out)
}

/// Whether libjpeg's message is one of its warnings (the image was decoded to the end, as a
/// browser would show it) rather than a fatal error.
pub fn is_libjpeg_warning(msg: &str) -> bool {
    const WARNINGS: [&str; 7] = [
        "Corrupt JPEG data",
        "Premature end of JPEG file",
        "Unknown Adobe color transform code",
        "Inconsistent progression sequence",
        "Warning: unknown JFIF revision number",
        "Invalid SOS parameters for sequential JPEG",
        "Application transferred too many scanlines",
    ];
    WARNINGS.iter().any(|w| msg.starts_with(w))
}

/// Metadata segments of the primary image, read before its first scan.
#[derive(Debug, Default)]
pub struct Segments {
    /// The ICC profile (APP2 `ICC_PROFILE` chunks, reassembled in order).
    pub icc: Option<Vec<u8>>,
    /// The EXIF block (APP1 `Exif`), from its TIFF header on.
    pub exif: Option<Vec<u8>>,
    /// An APP2 `MPF` segment: more pictures follow the primary (MPO, Ultra HDR gain map).
    pub mpf: bool,
    /// An XMP packet naming an Adobe/Google HDR gain map (`hdrgm:`): Ultra HDR.
    pub gain_map: bool,
}

/// Everything before the primary image's first scan.
#[derive(Debug, Default)]
pub struct Header {
    /// The first scan was reached (else the data ended before it).
    pub complete: bool,
    /// An end-of-image marker came before any scan: there is no picture.
    pub ends_before_scan: bool,
    /// Width from the frame header (0 before it).
    pub width: u32,
    /// Height from the frame header.
    pub height: u32,
    /// Colour components (1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK).
    pub components: u8,
    /// Metadata segments.
    pub segments: Segments,
    /// Bytes between segments that belong to none (skipped, as libjpeg does).
    pub stray_bytes: usize,
}

fn corrupt(msg: &str) -> JobError {
    JobError::CorruptInput(msg.into())
}

/// Read the segments of `data` up to the first scan; `complete` is false when `data` ends
/// before it (read more and call again). Errors for what no decoder can read.
pub fn header(data: &[u8]) -> Result<Header, JobError> {
    let mut h = Header::default();
    let mut icc_chunks: Vec<(u8, &[u8])> = Vec::new();
    let mut i = 2;
    loop {
        let Some(&byte) = data.get(i) else {
            return Ok(h);
        };
        if byte != 0xFF {
            h.stray_bytes += 1;
            i += 1;
            continue;
        }
        let Some(&code) = data.get(i + 1) else {
            return Ok(h);
        };
        match code {
            0xFF => {
                i += 1;
                continue;
            }
            0xD8 | 0x01 | 0xD0..=0xD7 => {
                i += 2;
                continue;
            }
            0xD9 => {
                h.ends_before_scan = true;
                return Ok(h);
            }
            c if !header_marker(c) => {
                h.stray_bytes += 2;
                i += 2;
                continue;
            }
            0xDA => {
                if h.width == 0 {
                    return Err(corrupt("JPEG has no frame header before its image data"));
                }
                icc_chunks.sort_by_key(|c| c.0);
                h.segments.icc = (!icc_chunks.is_empty()).then(|| {
                    icc_chunks
                        .iter()
                        .flat_map(|c| c.1.iter().copied())
                        .collect()
                });
                h.complete = true;
                return Ok(h);
            }
            _ => {}
        }
        let Some(len) = segment_len(data, i) else {
            if data.len() >= i + 4 {
                return Err(corrupt("JPEG segment length < 2"));
            }
            return Ok(h);
        };
        let Some(seg) = data.get(i + 4..i + 2 + len) else {
            return Ok(h);
        };
        match code {
            // Start of frame: precision, height, width, components.
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF if h.width == 0 => {
                let Some(f) = seg.get(..6) else {
                    return Err(corrupt("JPEG frame header is too short"));
                };
                let height = u32::from(u16::from_be_bytes([f[1], f[2]]));
                let width = u32::from(u16::from_be_bytes([f[3], f[4]]));
                if height == 0 {
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
                (h.width, h.height, h.components) = (width, height, f[5]);
            }
            0xE2 if seg.len() > 14 && seg.starts_with(b"ICC_PROFILE\0") => {
                icc_chunks.push((seg[12], &seg[14..]));
            }
            0xE2 if seg.starts_with(b"MPF\0") => h.segments.mpf = true,
            0xE1 if h.segments.exif.is_none() && seg.starts_with(b"Exif\0\0") => {
                h.segments.exif = Some(seg[6..].to_vec());
            }
            0xE1 if seg.starts_with(b"http://ns.adobe.com/xap/1.0/\0") => {
                h.segments.gain_map |= seg.windows(7).any(|w| w == b"hdrgm:V");
            }
            _ => {}
        }
        i += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, a small SOS (len 8), data with a stuffed FF00 and a restart marker.
    fn scan() -> Vec<u8> {
        let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0];
        jpg.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        jpg
    }

    #[test]
    fn completeness_finds_eoi_past_scans_and_ignores_trailers() {
        let mut jpg = scan();
        assert!(layout(&jpg).is_err(), "no EOI yet: truncated");
        // A second scan (progressive) before the end.
        jpg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0, 0x78]);
        assert!(layout(&jpg).is_err());
        jpg.extend_from_slice(&[0xFF, 0xD9]);
        let end = jpg.len();
        assert_eq!(layout(&jpg).ok().map(|l| l.end), Some(end));
        // A Motion Photo: an MP4 (with no FF D9 in its last bytes) appended after EOI; an
        // Ultra HDR gain map: a second JPEG.
        jpg.extend_from_slice(b"\0\0\0\x18ftypmp42 trailing video bytes");
        jpg.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xD9]);
        assert_eq!(layout(&jpg).ok().map(|l| l.end), Some(end));
    }

    #[test]
    fn stray_bytes_are_skipped_and_repaired_out() {
        // Garbage between SOI and SOS, and an FF 12 (no such marker) inside the data.
        let mut jpg = vec![0xFF, 0xD8, 0x00, 0x13, 0x37];
        jpg.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x04, b'J', b'F']);
        jpg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0]);
        jpg.extend_from_slice(&[0x12, 0xFF, 0x12, 0x34, 0xFF, 0xD9]);
        let l = layout(&jpg).expect("complete");
        assert_eq!(l.stray_bytes, 4);
        let fixed = repaired(&jpg).expect("repaired");
        // APP0 dropped (metadata), garbage dropped, the lone FF dropped.
        let mut want = vec![0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0];
        want.extend_from_slice(&[0x12, 0x12, 0x34, 0xFF, 0xD9]);
        assert_eq!(fixed, want);
        assert_eq!(layout(&fixed).map(|l| l.stray_bytes).ok(), Some(0));
    }

    #[test]
    fn a_marker_with_a_wild_length_inside_data_is_not_followed() {
        // FF DB (a table) whose length would run past EOI: damage, not a segment.
        let mut jpg = scan();
        jpg.extend_from_slice(&[0xFF, 0xDB, 0x7F, 0xFF, 0x01, 0xFF, 0xD9]);
        assert!(layout(&jpg).is_ok());
    }

    #[test]
    fn header_finds_frame_icc_exif_mpf_and_gain_map() {
        fn seg(jpg: &mut Vec<u8>, code: u8, body: &[u8]) {
            jpg.extend_from_slice(&[0xFF, code]);
            jpg.extend_from_slice(&u16::try_from(body.len() + 2).unwrap_or(0).to_be_bytes());
            jpg.extend_from_slice(body);
        }
        let mut jpg = vec![0xFF, 0xD8];
        seg(&mut jpg, 0xE1, b"Exif\0\0II*\0");
        seg(
            &mut jpg,
            0xE1,
            b"http://ns.adobe.com/xap/1.0/\0<x hdrgm:Version=\"1.0\"/>",
        );
        seg(&mut jpg, 0xE2, b"ICC_PROFILE\0\x02\x02BB");
        seg(&mut jpg, 0xE2, b"ICC_PROFILE\0\x01\x02AA");
        seg(&mut jpg, 0xE2, b"MPF\0MM\0*");
        assert!(
            !header(&jpg).expect("so far so good").complete,
            "needs more"
        );
        seg(&mut jpg, 0xC0, &[8, 0, 2, 0, 3, 1, 1, 0x11, 0]);
        jpg.extend_from_slice(&[0xFF, 0xDA]);
        let h = header(&jpg).expect("ok");
        assert!(h.complete);
        assert_eq!((h.width, h.height, h.components), (3, 2, 1));
        let s = h.segments;
        assert_eq!(s.exif.as_deref(), Some(&b"II*\0"[..]));
        assert_eq!(s.icc.as_deref(), Some(&b"AABB"[..]));
        assert!(s.mpf && s.gain_map);
    }

    #[test]
    fn warnings_are_told_from_errors() {
        assert!(is_libjpeg_warning(
            "Corrupt JPEG data: 3 extraneous bytes before marker 0xd9"
        ));
        assert!(is_libjpeg_warning("Corrupt JPEG data: bad Huffman code"));
        assert!(!is_libjpeg_warning("Unsupported marker type 0x12"));
        assert!(!is_libjpeg_warning("Bogus marker length"));
    }
}
