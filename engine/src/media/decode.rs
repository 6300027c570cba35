//! Decoding a probed image to 8-bit RGB(A) with the EXIF orientation applied. JPEGs go through
//! libjpeg-turbo, at the smallest DCT scale (M/8) that still covers every rendition
//! ("shrink-on-load": most of the IDCT and memory is skipped), and damaged ones are decoded as
//! a browser shows them (see `still::jpeg`); JPEG XL goes through `jxl-oxide` and SVG through
//! `resvg` (see `still::jxl`, `still::svg`); CMYK JPEGs and every other format go through the
//! `image` decoders under `image::Limits` derived from the configured limits.

use super::Pixels;
use super::probe::{Format, Probe};
use super::still;
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
    /// What the manifest should say about how the source was read (damage repaired…).
    pub notes: Vec<String>,
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
    guard(probe.format, || decode_probed(path, probe, limits, need))
}

/// Run a decoder, turning a panic inside it (a bug a crafted file can reach) into a
/// `corrupt_input` failure of this job instead of the loss of the thread running it.
pub fn guard<T>(format: Format, f: impl FnOnce() -> Result<T, JobError>) -> Result<T, JobError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(JobError::CorruptInput(format!(
            "the {} decoder failed on this file ({why})",
            format.name()
        )))
    })
}

fn decode_probed(
    path: &Path,
    probe: &Probe,
    limits: &Limits,
    need: Option<(u32, u32)>,
) -> Result<Decoded, JobError> {
    match probe.format {
        Format::Jpeg => {
            let data = std::fs::read(path)
                .map_err(|e| JobError::CorruptInput(format!("reading source: {e}")))?;
            decode_jpeg(&data, probe, limits, need)
        }
        Format::Jxl => still::jxl::decode(path, probe, limits),
        Format::Svg => still::svg::decode(path, probe, limits, need),
        _ => {
            let file = File::open(path)
                .map_err(|e| JobError::CorruptInput(format!("opening source: {e}")))?;
            decode_with_image(BufReader::with_capacity(READ_BUFFER, file), probe, limits)
        }
    }
}

/// A JPEG: the primary image up to its end-of-image marker (a truncated one is refused; what
/// follows — a gain map, a second picture, a video — is left alone). Decoded as is; when
/// libjpeg stops or warns, decoded again from a repaired copy (stray bytes dropped, metadata
/// segments left out), accepting what libjpeg only warns about, as browsers do.
fn decode_jpeg(
    data: &[u8],
    probe: &Probe,
    limits: &Limits,
    need: Option<(u32, u32)>,
) -> Result<Decoded, JobError> {
    let layout = still::jpeg::layout(data)?;
    let primary = &data[..layout.end];
    let segments = still::jpeg::header(primary)?.segments;
    let exif = segments.exif.filter(|_| !probe.exif_damaged);
    let first = if probe.cmyk {
        decode_with_image(std::io::Cursor::new(primary), probe, limits).map(|d| (d.pixels, 1, None))
    } else {
        decode_turbo(primary, probe, need)
    };
    // A warning comes only from the data (the header read before it would have failed), so
    // the pixels beside it are whole. An error gets one more try from a repaired copy.
    let (pixels, shrink, warning, repaired) = match first {
        Ok((pixels, shrink, warning)) => (pixels, shrink, warning, false),
        Err(e) => {
            let retry = still::jpeg::repaired(primary).map(|fixed| {
                if probe.cmyk {
                    decode_with_image(std::io::Cursor::new(&fixed[..]), probe, limits)
                        .map(|d| (d.pixels, 1, None))
                } else {
                    decode_turbo(&fixed, probe, need)
                }
            });
            match retry {
                Some(Ok((pixels, shrink, warning))) => (pixels, shrink, warning, true),
                // The repaired copy fails too: report the original's error.
                _ => return Err(e),
            }
        }
    };
    let mut notes = Vec::new();
    if layout.stray_bytes > 0 {
        notes.push(format!(
            "JPEG is damaged: {} stray bytes were skipped",
            layout.stray_bytes
        ));
    }
    if let Some(w) = warning {
        notes.push(format!(
            "JPEG image data is damaged (libjpeg: {w}); decoded as browsers show it"
        ));
    } else if repaired {
        notes.push("JPEG was decoded from a repaired copy of its image data".into());
    }
    Ok(Decoded {
        pixels,
        icc: segments.icc,
        exif,
        shrink,
        notes,
    })
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
        Format::Bmp => image::ImageFormat::Bmp,
        Format::Jxl | Format::Svg | Format::Container(_) => {
            return Err(JobError::UnsupportedFormat(format!(
                "{} is not decoded by the image crate",
                probe.format.name()
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
        exif: exif.filter(|_| !probe.exif_damaged),
        shrink: 1,
        notes: Vec::new(),
    })
}

/// JPEG with libjpeg-turbo: SIMD Huffman decoding and IDCT scaling by M/8. A libjpeg
/// warning comes back beside the pixels (which it decoded to the end, as browsers show them).
fn decode_turbo(
    data: &[u8],
    probe: &Probe,
    need: Option<(u32, u32)>,
) -> Result<(Pixels, u32, Option<String>), JobError> {
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
    let warning = match d.decompress(data, image.as_deref_mut()) {
        Ok(()) => None,
        Err(turbojpeg::Error::TurboJpegError(msg)) if still::jpeg::is_libjpeg_warning(&msg) => {
            Some(msg)
        }
        Err(e) => return Err(corrupt(e)),
    };
    let (w, h) = (scaled.width as u32, scaled.height as u32);
    let buf = image::RgbImage::from_raw(w, h, image.pixels)
        .ok_or_else(|| JobError::CorruptInput("JPEG buffer size mismatch".into()))?;
    let mut img = DynamicImage::ImageRgb8(buf);
    if let Some(o) = image::metadata::Orientation::from_exif(probe.orientation) {
        img.apply_orientation(o);
    }
    let rgb = img.into_rgb8();
    let pixels = Pixels {
        width: rgb.width(),
        height: rgb.height(),
        channels: 3,
        data: rgb.into_raw(),
    };
    Ok((
        pixels,
        (header.width / scaled.width.max(1)).max(1) as u32,
        warning,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoder_panic_fails_the_job_as_corrupt_input() {
        let r: Result<(), JobError> = guard(Format::Bmp, || panic!("index out of bounds"));
        let e = r.expect_err("caught");
        assert_eq!(e.code(), "corrupt_input");
        assert!(e.to_string().contains("bmp decoder failed"), "{e}");
        assert_eq!(guard(Format::Bmp, || Ok(7)).ok(), Some(7));
    }
}
