//! Decoding a probed image to 8-bit RGB(A) with the EXIF orientation applied. Decoders run
//! under `image::Limits` derived from the configured limits. When every rendition is at most
//! half the source's size, JPEGs are decoded at a reduced DCT scale (1/2, 1/4, 1/8:
//! "shrink-on-load"), which skips most of the IDCT and memory.

use super::Pixels;
use super::probe::{Format, Probe};
use crate::config::Limits;
use crate::error::JobError;
use image::{DynamicImage, ImageDecoder, ImageReader};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

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
/// needs; a smaller DCT scale is used for JPEG when it still covers `need`.
pub fn decode(
    path: &Path,
    probe: &Probe,
    limits: &Limits,
    need: Option<(u32, u32)>,
) -> Result<Decoded, JobError> {
    if probe.format == Format::Jpeg
        && !probe.cmyk
        && let Some(need) = need
    {
        // The requirement in stored orientation.
        let (nw, nh) = if (5..=8).contains(&probe.orientation) {
            (need.1, need.0)
        } else {
            need
        };
        if nw.saturating_mul(2) <= probe.width && nh.saturating_mul(2) <= probe.height {
            return decode_jpeg_scaled(path, probe, nw, nh);
        }
    }
    decode_full(path, probe, limits)
}

fn decode_full(path: &Path, probe: &Probe, limits: &Limits) -> Result<Decoded, JobError> {
    let file =
        File::open(path).map_err(|e| JobError::CorruptInput(format!("opening source: {e}")))?;
    let format = match probe.format {
        Format::Jpeg => image::ImageFormat::Jpeg,
        Format::Png => image::ImageFormat::Png,
        Format::Gif => image::ImageFormat::Gif,
        Format::Webp => image::ImageFormat::WebP,
        Format::Tiff => image::ImageFormat::Tiff,
        Format::Mp4 => return Err(JobError::UnsupportedFormat("video is not an image".into())),
    };
    let mut reader = ImageReader::with_format(BufReader::new(file), format);
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

fn decode_jpeg_scaled(
    path: &Path,
    probe: &Probe,
    need_w: u32,
    need_h: u32,
) -> Result<Decoded, JobError> {
    let file =
        File::open(path).map_err(|e| JobError::CorruptInput(format!("opening source: {e}")))?;
    let mut d = jpeg_decoder::Decoder::new(BufReader::new(file));
    let corrupt = |e: jpeg_decoder::Error| match e {
        jpeg_decoder::Error::Unsupported(u) => JobError::UnsupportedCodec(format!("JPEG: {u:?}")),
        other => JobError::CorruptInput(format!("JPEG: {other}")),
    };
    d.read_info().map_err(corrupt)?;
    let clamp16 = |v: u32| v.clamp(1, u32::from(u16::MAX)) as u16;
    let (w, h) = d.scale(clamp16(need_w), clamp16(need_h)).map_err(corrupt)?;
    let info = d
        .info()
        .ok_or_else(|| JobError::CorruptInput("JPEG header unreadable".into()))?;
    let icc = d.icc_profile();
    let exif = d.exif_data().map(<[u8]>::to_vec);
    let data = d.decode().map_err(corrupt)?;
    let (w, h) = (u32::from(w), u32::from(h));
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => data,
        jpeg_decoder::PixelFormat::L8 => data.iter().flat_map(|&g| [g, g, g]).collect(),
        other => {
            return Err(JobError::UnsupportedCodec(format!(
                "JPEG pixel format {other:?}"
            )));
        }
    };
    if rgb.len() < (w as usize) * (h as usize) * 3 {
        return Err(JobError::CorruptInput(
            "JPEG decoded to fewer pixels than its header says".into(),
        ));
    }
    let buf = image::RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| JobError::CorruptInput("JPEG buffer size mismatch".into()))?;
    let mut img = DynamicImage::ImageRgb8(buf);
    if let Some(o) = image::metadata::Orientation::from_exif(probe.orientation) {
        img.apply_orientation(o);
    }
    let rgb = img.into_rgb8();
    let shrink = (probe.width / w.max(1)).max(1);
    Ok(Decoded {
        pixels: Pixels {
            width: rgb.width(),
            height: rgb.height(),
            channels: 3,
            data: rgb.into_raw(),
        },
        icc,
        exif,
        shrink,
    })
}
