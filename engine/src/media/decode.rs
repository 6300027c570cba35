//! Decoding a probed image to 8-bit RGB(A) with the EXIF orientation applied. JPEGs go through
//! libjpeg-turbo, at the smallest DCT scale (M/8) that still covers every rendition
//! ("shrink-on-load": most of the IDCT and memory is skipped); CMYK JPEGs and every other
//! format go through the `image` decoders under `image::Limits` derived from the configured
//! limits.

use super::Pixels;
use super::probe::{Format, Probe};
use crate::config::Limits;
use crate::error::JobError;
use image::{DynamicImage, ImageDecoder, ImageReader};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// Read size for decoders: big reads, few syscalls.
const READ_BUFFER: usize = 1 << 20;

/// A decoded source.
#[derive(Debug)]
pub struct Decoded {
    /// Upright pixels.
    pub pixels: Pixels,
    /// The source's ICC profile, kept for the outputs.
    pub icc: Option<Vec<u8>>,
    /// The source's raw EXIF (TIFF structure), for `keep_metadata`.
    pub exif: Option<Vec<u8>>,
    /// The DCT scale used (1 = full size, 2, 4 or 8).
    pub shrink: u32,
}

fn map_image_error(e: image::ImageError) -> JobError {
    use image::ImageError as E;
    match e {
        E::Limits(l) => JobError::DecoderLimit(l.to_string()),
        E::Unsupported(u) => JobError::UnsupportedCodec(u.to_string()),
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            JobError::CorruptInput("truncated image data".into())
        }
        E::IoError(io) => JobError::CorruptInput(format!("reading image data: {io}")),
        other => JobError::CorruptInput(other.to_string()),
    }
}

/// Decode `path` (already probed as `probe`). `need` is the largest display size any rendition
/// needs; JPEGs are decoded at the smallest DCT scale (M/8) that still covers it.
pub fn decode(
    path: &Path,
    probe: &Probe,
    limits: &Limits,
    need: Option<(u32, u32)>,
) -> Result<Decoded, JobError> {
    if probe.format == Format::Jpeg {
        let data = std::fs::read(path)
            .map_err(|e| JobError::CorruptInput(format!("reading source: {e}")))?;
        if !super::probe::jpeg_is_complete(&data) {
            return Err(JobError::CorruptInput(
                "JPEG is truncated: its image data has no end-of-image marker".into(),
            ));
        }
        if !probe.cmyk {
            return decode_jpeg(&data, probe, need);
        }
        return decode_with_image(std::io::Cursor::new(data), probe, limits);
    }
    let file =
        File::open(path).map_err(|e| JobError::CorruptInput(format!("opening source: {e}")))?;
    decode_with_image(BufReader::with_capacity(READ_BUFFER, file), probe, limits)
}

fn decode_with_image<R: std::io::BufRead + std::io::Seek>(
    input: R,
    probe: &Probe,
    limits: &Limits,
) -> Result<Decoded, JobError> {
    let format = match probe.format {
        Format::Jpeg => image::ImageFormat::Jpeg,
        Format::Png => image::ImageFormat::Png,
        Format::Gif => image::ImageFormat::Gif,
        Format::Webp => image::ImageFormat::WebP,
        Format::Tiff => image::ImageFormat::Tiff,
        Format::Container(c) => {
            return Err(JobError::UnsupportedFormat(format!(
                "{} is decoded by the isolated decoder, not here",
                c.name()
            )));
        }
    };
    let mut reader = ImageReader::with_format(input, format);
    let mut l = image::Limits::default();
    let side = limits.max_dimension;
    l.max_image_width = Some(side);
    l.max_image_height = Some(side);
    // Room for the decoded frame at 16 bits × 4 channels, plus the decoder's working set.
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(l);
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let icc = decoder.icc_profile().ok().flatten();
    let exif = decoder.exif_metadata().ok().flatten();
    let mut img = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    if let Some(o) = image::metadata::Orientation::from_exif(probe.orientation) {
        img.apply_orientation(o);
    }
    let pixels = if img.color().has_alpha() {
        let rgba = img.into_rgba8();
        Pixels {
            width: rgba.width(),
            height: rgba.height(),
            channels: 4,
            data: rgba.into_raw(),
        }
    } else {
        let rgb = img.into_rgb8();
        Pixels {
            width: rgb.width(),
            height: rgb.height(),
            channels: 3,
            data: rgb.into_raw(),
        }
    };
    Ok(Decoded {
        pixels,
        icc,
        exif,
        shrink: 1,
    })
}

/// JPEG with libjpeg-turbo: SIMD Huffman decoding and IDCT scaling by M/8.
fn decode_jpeg(data: &[u8], probe: &Probe, need: Option<(u32, u32)>) -> Result<Decoded, JobError> {
    let corrupt = |e: turbojpeg::Error| JobError::CorruptInput(format!("JPEG: {e}"));
    let mut d = turbojpeg::Decompressor::new().map_err(corrupt)?;
    let header = d.read_header(data).map_err(corrupt)?;
    // The requirement in stored orientation.
    let (nw, nh) = match need {
        Some((w, h)) if (5..=8).contains(&probe.orientation) => (h as usize, w as usize),
        Some((w, h)) => (w as usize, h as usize),
        None => (header.width, header.height),
    };
    let factor = (1..=8)
        .map(|m| turbojpeg::ScalingFactor::new(m, 8))
        .find(|f| f.scale(header.width) >= nw && f.scale(header.height) >= nh)
        .unwrap_or(turbojpeg::ScalingFactor::ONE);
    d.set_scaling_factor(factor).map_err(corrupt)?;
    let scaled = header.scaled(factor);
    let mut image = turbojpeg::Image {
        pixels: vec![0u8; scaled.width * scaled.height * 3],
        width: scaled.width,
        pitch: scaled.width * 3,
        height: scaled.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    d.decompress(data, image.as_deref_mut()).map_err(corrupt)?;
    let (w, h) = (scaled.width as u32, scaled.height as u32);
    let buf = image::RgbImage::from_raw(w, h, image.pixels)
        .ok_or_else(|| JobError::CorruptInput("JPEG buffer size mismatch".into()))?;
    let mut img = DynamicImage::ImageRgb8(buf);
    if let Some(o) = image::metadata::Orientation::from_exif(probe.orientation) {
        img.apply_orientation(o);
    }
    let rgb = img.into_rgb8();
    let (icc, exif) = jpeg_app_segments(data);
    Ok(Decoded {
        pixels: Pixels {
            width: rgb.width(),
            height: rgb.height(),
            channels: 3,
            data: rgb.into_raw(),
        },
        icc,
        exif,
        shrink: (header.width / scaled.width.max(1)).max(1) as u32,
    })
}

/// The ICC profile (APP2 `ICC_PROFILE` chunks, reassembled in order) and EXIF (APP1) of a JPEG.
fn jpeg_app_segments(data: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut icc_chunks: Vec<(u8, &[u8])> = Vec::new();
    let mut exif = None;
    let mut i = 2;
    while i + 4 <= data.len() && data[i] == 0xFF {
        let code = data[i + 1];
        if code == 0xDA || code == 0xD9 {
            break;
        }
        if code == 0x01 || (0xD0..=0xD7).contains(&code) || code == 0xFF {
            i += if code == 0xFF { 1 } else { 2 };
            continue;
        }
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        let Some(seg) = data.get(i + 4..i + 2 + len) else {
            break;
        };
        if code == 0xE2 && seg.len() > 14 && seg.starts_with(b"ICC_PROFILE\0") {
            icc_chunks.push((seg[12], &seg[14..]));
        } else if code == 0xE1 && exif.is_none() && seg.starts_with(b"Exif\0\0") {
            exif = Some(seg[6..].to_vec());
        }
        i += 2 + len;
    }
    icc_chunks.sort_by_key(|c| c.0);
    let icc = (!icc_chunks.is_empty()).then(|| {
        icc_chunks
            .iter()
            .flat_map(|c| c.1.iter().copied())
            .collect()
    });
    (icc, exif)
}
