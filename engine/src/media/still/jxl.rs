//! JPEG XL with `jxl-oxide` (pure Rust). The probe feeds the decoder only the first bytes it
//! needs for the image header — size (with the codestream's orientation applied), animation —
//! so a huge declared canvas is refused before anything is allocated; decoding then runs
//! under an allocation cap derived from the limits. 8- and 16-bit, float, grey, alpha and the
//! codestream orientation are handled by the renderer; output is 8-bit RGB(A) (sRGB unless the
//! file carries its own ICC profile, which is then kept).

use crate::config::Limits;
use crate::error::JobError;
use crate::media::Pixels;
use crate::media::decode::Decoded;
use crate::media::probe::Probe;
use jxl_oxide::{AllocTracker, InitializeResult, JxlImage, PixelFormat};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Most bytes read to reach the end of the image header (an ICC profile can precede the
/// first frame).
const MAX_HEADER_BYTES: u64 = 4 << 20;

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Width as displayed (orientation applied by the decoder).
    pub width: u32,
    /// Height as displayed.
    pub height: u32,
    /// Frames decoded (1: the first frame of an animation).
    pub frames: u64,
    /// Notes for the manifest.
    pub notes: Vec<String>,
}

fn corrupt(e: impl std::fmt::Display) -> JobError {
    JobError::CorruptInput(format!("JPEG XL: {e}"))
}

/// Read the image header of the JPEG XL file at the start of `r`. The size and orientation
/// come from our own read of the codestream's first bits (jxl-oxide goes on to frame headers,
/// which for a huge declared canvas it refuses as damage rather than as a size); within the
/// limits, jxl-oxide then checks the header and the first frame header.
pub fn header<R: Read + Seek>(r: &mut R, limits: &Limits) -> Result<Header, JobError> {
    r.seek(SeekFrom::Start(0)).map_err(corrupt)?;
    let mut head = Vec::new();
    r.by_ref()
        .take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(corrupt)?;
    let size = codestream_start(&head)
        .and_then(|at| size_header(&head[at..]))
        .ok_or_else(|| {
            JobError::CorruptInput("JPEG XL is truncated or has no codestream header".into())
        })?;
    let mut out = Header {
        width: size.0,
        height: size.1,
        frames: 1,
        notes: Vec::new(),
    };
    let pixels = u64::from(size.0) * u64::from(size.1);
    if pixels > limits.max_pixels || size.0.max(size.1) > limits.max_dimension {
        // The caller refuses it by the limits, naming the value.
        return Ok(out);
    }
    r.seek(SeekFrom::Start(0)).map_err(corrupt)?;
    let mut uninit = JxlImage::builder()
        .alloc_tracker(tracker(limits))
        .build_uninit();
    let mut read = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let image = loop {
        let n = r.read(&mut buf).map_err(corrupt)?;
        if n == 0 {
            return Err(JobError::CorruptInput(
                "JPEG XL is truncated: the file ends inside its header".into(),
            ));
        }
        read += n as u64;
        uninit.feed_bytes(&buf[..n]).map_err(corrupt)?;
        match uninit.try_init().map_err(corrupt)? {
            InitializeResult::Initialized(image) => break image,
            InitializeResult::NeedMoreData(more) => uninit = more,
        }
        if read > MAX_HEADER_BYTES {
            return Err(corrupt(format!(
                "no image header in the first {MAX_HEADER_BYTES} bytes"
            )));
        }
    };
    if (image.width(), image.height()) != size {
        return Err(corrupt(format!(
            "header sizes disagree ({}x{} vs {}x{})",
            size.0,
            size.1,
            image.width(),
            image.height()
        )));
    }
    if image.image_header().metadata.animation.is_some() {
        out.notes
            .push("animated JPEG XL: the first frame was used".into());
    }
    Ok(out)
}

/// Where the codestream starts: at 0 for a bare one (`FF 0A`), else inside the first `jxlc`
/// or `jxlp` box of the ISO BMFF container.
fn codestream_start(data: &[u8]) -> Option<usize> {
    if data.starts_with(&[0xFF, 0x0A]) {
        return Some(0);
    }
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().ok()?) as usize;
        let kind = &data[at + 4..at + 8];
        let (header, size) = match size {
            1 => {
                let big = u64::from_be_bytes(data.get(at + 8..at + 16)?.try_into().ok()?);
                (16, usize::try_from(big).ok()?)
            }
            0 => (8, data.len() - at),
            s => (8, s),
        };
        match kind {
            b"jxlc" => return Some(at + header),
            b"jxlp" => return Some(at + header + 4),
            _ => {}
        }
        if size < header {
            return None;
        }
        at = at.checked_add(size)?;
    }
    None
}

/// Reads bits least-significant first, as JPEG XL stores them.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for i in 0..n {
            let byte = *self.data.get((self.at + i) / 8)?;
            v |= u32::from(byte >> ((self.at + i) % 8) & 1) << i;
        }
        self.at += n;
        Some(v)
    }

    /// The `U32(1 + u(9), 1 + u(13), 1 + u(18), 1 + u(30))` distribution of sizes.
    fn size(&mut self) -> Option<u32> {
        let bits = [9, 13, 18, 30][self.read(2)? as usize];
        Some(self.read(bits)? + 1)
    }
}

/// The display size from a codestream's `SizeHeader` and the orientation in its
/// `ImageMetadata` (5–8 swap the sides).
fn size_header(codestream: &[u8]) -> Option<(u32, u32)> {
    if !codestream.starts_with(&[0xFF, 0x0A]) {
        return None;
    }
    let mut b = Bits {
        data: &codestream[2..],
        at: 0,
    };
    let div8 = b.read(1)? == 1;
    let height = if div8 {
        8 * (b.read(5)? + 1)
    } else {
        b.size()?
    };
    let ratio = b.read(3)?;
    let width = match ratio {
        0 if div8 => 8 * (b.read(5)? + 1),
        0 => b.size()?,
        r => {
            let (num, den) =
                [(1, 1), (12, 10), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1)][r as usize - 1];
            u32::try_from(u64::from(height) * num / den).ok()?
        }
    };
    // ImageMetadata: all_default, then extra_fields, then the orientation.
    let orientation = if b.read(1)? == 1 || b.read(1)? == 0 {
        1
    } else {
        b.read(3)? + 1
    };
    Some(if orientation >= 5 {
        (height, width)
    } else {
        (width, height)
    })
}

/// Room for the frame at 32-bit float per channel (how jxl-oxide renders), four channels,
/// plus working set.
fn tracker(limits: &Limits) -> AllocTracker {
    let bytes = limits
        .max_pixels
        .saturating_mul(4 * 4 * 2)
        .saturating_add(256 << 20);
    AllocTracker::with_limit(usize::try_from(bytes).unwrap_or(usize::MAX))
}

/// Decode the first frame of the probed JPEG XL at `path`.
pub fn decode(path: &Path, probe: &Probe, limits: &Limits) -> Result<Decoded, JobError> {
    let file = std::fs::File::open(path).map_err(corrupt)?;
    let image = JxlImage::builder()
        .alloc_tracker(tracker(limits))
        .read(std::io::BufReader::new(file))
        .map_err(corrupt)?;
    let (w, h) = (image.width(), image.height());
    if (w, h) != (probe.width, probe.height) {
        return Err(corrupt(format!(
            "size changed between probe ({}x{}) and decode ({w}x{h})",
            probe.width, probe.height
        )));
    }
    let icc = image.original_icc().map(|_| image.rendered_icc());
    let format = image.pixel_format();
    let render = image.render_frame(0).map_err(corrupt)?;
    let mut stream = render.stream();
    let channels = stream.channels() as usize;
    let (sw, sh) = (stream.width(), stream.height());
    let len = (sw as usize)
        .checked_mul(sh as usize)
        .and_then(|p| p.checked_mul(channels))
        .ok_or_else(|| corrupt("frame size overflows"))?;
    let mut buf = vec![0u8; len];
    stream.write_to_buffer(&mut buf);
    let (out_channels, data): (u8, Vec<u8>) = match (format, channels) {
        (PixelFormat::Gray, 1) => (3, buf.iter().flat_map(|&g| [g, g, g]).collect()),
        (PixelFormat::Graya, 2) => (
            4,
            buf.chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect(),
        ),
        (PixelFormat::Rgb, 3) => (3, buf),
        (PixelFormat::Rgba, 4) => (4, buf),
        (other, n) => {
            return Err(JobError::UnsupportedCodec(format!(
                "JPEG XL with pixel format {other:?} ({n} channels)"
            )));
        }
    };
    Ok(Decoded {
        pixels: Pixels {
            width: sw,
            height: sh,
            channels: out_channels,
            data,
        },
        icc,
        exif: None,
        shrink: 1,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A bare codestream header declaring `w`×`h` with default metadata, then zero padding.
    fn codestream_claiming(w: u32, h: u32) -> Vec<u8> {
        let mut bits: Vec<bool> = Vec::new();
        let mut put = |v: u64, n: u32| (0..n).for_each(|i| bits.push(v >> i & 1 == 1));
        put(0, 1); // div8: no
        put(3, 2); // height: 1 + u(30)
        put(u64::from(h - 1), 30);
        put(0, 3); // no aspect ratio: width follows
        put(3, 2);
        put(u64::from(w - 1), 30);
        put(1, 1); // image metadata: all default
        let mut out = vec![0xFF, 0x0A];
        out.extend(bits.chunks(8).map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (i, &on)| b | (u8::from(on) << i))
        }));
        out.extend(std::iter::repeat_n(0u8, 64));
        out
    }

    #[test]
    fn a_huge_canvas_is_sized_from_the_header_alone() {
        let data = codestream_claiming(100_000, 100_000);
        let h = header(&mut Cursor::new(&data), &Limits::default()).expect("header parses");
        assert_eq!((h.width, h.height), (100_000, 100_000));
        let e = header(&mut Cursor::new(&data[..8]), &Limits::default()).expect_err("cut");
        assert_eq!(e.code(), "corrupt_input");
        // Orientation 6 (extra fields) swaps the sides; a ratio gives the width.
        let mut b = vec![0xFF, 0x0A];
        // div8=1, h=8*(1+1)=16, ratio=7 (2:1) → w=32; all_default=0, extra_fields=1, o=6.
        let bits: [(u32, u32); 6] = [(1, 1), (1, 5), (7, 3), (0, 1), (1, 1), (5, 3)];
        let mut acc = 0u64;
        let mut n = 0;
        for (v, w) in bits {
            acc |= u64::from(v) << n;
            n += w;
        }
        b.extend_from_slice(&acc.to_le_bytes()[..2]);
        assert_eq!(size_header(&b), Some((16, 32)));
    }
}
