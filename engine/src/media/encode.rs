//! Encoding renditions: JPEG (libjpeg-turbo's SIMD encoder: quality, optional progressive),
//! PNG (`image`), WebP (libwebp, lossy at quality, alpha kept), AVIF
//! (`ravif`/rav1e, 8-bit, quality and speed, alpha kept). The source's ICC profile is embedded
//! in JPEG and PNG outputs so colours stay right without converting; EXIF is added only when
//! the profile keeps metadata (orientation reset to upright, since pixels are).

use super::Pixels;
use crate::config::{ImageFormat, Rendition};
use crate::error::JobError;

/// What to embed besides pixels.
#[derive(Debug, Default)]
pub struct Embed<'a> {
    /// ICC profile to embed.
    pub icc: Option<&'a [u8]>,
    /// EXIF (TIFF structure) to embed.
    pub exif: Option<&'a [u8]>,
}

/// Encode `img` for rendition `r`.
pub fn encode(img: &Pixels, r: &Rendition, embed: &Embed<'_>) -> Result<Vec<u8>, JobError> {
    let fail = |format: ImageFormat, e: &dyn std::fmt::Display| JobError::Encode {
        format: format.name(),
        message: e.to_string(),
    };
    match r.format {
        ImageFormat::Jpeg => {
            if img.width > 65_535 || img.height > 65_535 {
                return Err(fail(r.format, &"JPEG is limited to 65535 pixels per side"));
            }
            let rgb;
            let data = if img.has_alpha() {
                rgb = flatten_on_white(img);
                &rgb
            } else {
                &img.data
            };
            let jpeg =
                jpeg_turbo(data, img.width, img.height, r).map_err(|e| fail(r.format, &e))?;
            let exif = embed.exif.map(upright_exif);
            with_app_segments(&jpeg, embed.icc, exif.as_deref()).map_err(|e| fail(r.format, &e))
        }
        ImageFormat::Png => {
            use image::ImageEncoder;
            let mut out = Vec::new();
            let mut enc = image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            );
            if let Some(icc) = embed.icc {
                enc.set_icc_profile(icc.to_vec())
                    .map_err(|e| fail(r.format, &e))?;
            }
            if let Some(exif) = embed.exif {
                enc.set_exif_metadata(upright_exif(exif))
                    .map_err(|e| fail(r.format, &e))?;
            }
            let ct = if img.has_alpha() {
                image::ExtendedColorType::Rgba8
            } else {
                image::ExtendedColorType::Rgb8
            };
            enc.write_image(&img.data, img.width, img.height, ct)
                .map_err(|e| fail(r.format, &e))?;
            Ok(out)
        }
        ImageFormat::Webp => {
            let enc = if img.has_alpha() {
                webp::Encoder::from_rgba(&img.data, img.width, img.height)
            } else {
                webp::Encoder::from_rgb(&img.data, img.width, img.height)
            };
            let mem = enc
                .encode_simple(false, f32::from(r.quality))
                .map_err(|e| fail(r.format, &format!("{e:?}")))?;
            Ok(mem.to_vec())
        }
        ImageFormat::Avif => avif(img, r).map_err(|e| fail(r.format, &e)),
    }
}

/// Default AVIF encoder speed (rav1e 1–10): see `Rendition::speed`.
pub const AVIF_DEFAULT_SPEED: u8 = 8;

/// AVIF: 8-bit YCbCr 4:4:4 (ravif's only layout), alpha as a second AV1 image at the same
/// quality. One encoder thread: jobs already run one per core.
fn avif(img: &Pixels, r: &Rendition) -> Result<Vec<u8>, String> {
    let speed = r.speed.unwrap_or(AVIF_DEFAULT_SPEED);
    let enc = ravif::Encoder::new()
        .with_quality(f32::from(r.quality))
        .with_alpha_quality(f32::from(r.quality))
        .with_speed(speed)
        .with_num_threads(Some(1));
    let (w, h) = (img.width as usize, img.height as usize);
    // The encoder's own pixel types (a copy: small beside an AV1 encode).
    let out = if img.has_alpha() {
        let px: Vec<ravif::RGBA8> = img
            .data
            .chunks_exact(4)
            .map(|p| ravif::RGBA8::new(p[0], p[1], p[2], p[3]))
            .collect();
        enc.encode_rgba(ravif::Img::new(&px[..], w, h))
    } else {
        let px: Vec<ravif::RGB8> = img
            .data
            .chunks_exact(3)
            .map(|p| ravif::RGB8::new(p[0], p[1], p[2]))
            .collect();
        enc.encode_rgb(ravif::Img::new(&px[..], w, h))
    };
    out.map(|o| o.avif_file).map_err(|e| e.to_string())
}

/// Baseline (or progressive) JPEG with libjpeg-turbo: 4:2:0 below quality 90, 4:4:4 from 90
/// (as the previous encoder did), standard Huffman tables: optimising them needs a whole-image
/// coefficient buffer and a second pass (measured: ~30 % more encoder CPU for ~7 % fewer bytes).
fn jpeg_turbo(rgb: &[u8], width: u32, height: u32, r: &Rendition) -> Result<Vec<u8>, String> {
    let e = |e: turbojpeg::Error| e.to_string();
    let mut c = turbojpeg::Compressor::new().map_err(e)?;
    c.set_quality(i32::from(r.quality)).map_err(e)?;
    c.set_subsamp(if r.quality < 90 {
        turbojpeg::Subsamp::Sub2x2
    } else {
        turbojpeg::Subsamp::None
    })
    .map_err(e)?;
    c.set_optimize(false).map_err(e)?;
    c.set_progressive(r.progressive).map_err(e)?;
    let image = turbojpeg::Image {
        pixels: rgb,
        width: width as usize,
        pitch: width as usize * 3,
        height: height as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    c.compress_to_vec(image).map_err(e)
}

/// Largest payload of one APPn segment (65535 minus the length field).
const MAX_SEGMENT: usize = 65_533;

/// `jpeg` with an APP1 EXIF segment and APP2 `ICC_PROFILE` chunks inserted after SOI and the
/// JFIF header, where readers look for them.
fn with_app_segments(
    jpeg: &[u8],
    icc: Option<&[u8]>,
    exif: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    if icc.is_none() && exif.is_none() {
        return Ok(jpeg.to_vec());
    }
    // After SOI, and after an APP0 (JFIF) segment when there is one.
    let mut at = 2;
    if jpeg.get(2..4) == Some(&[0xFF, 0xE0]) {
        let len = jpeg
            .get(4..6)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        at = (4 + len).min(jpeg.len());
    }
    let mut out = Vec::with_capacity(jpeg.len() + icc.map_or(0, <[u8]>::len) + 4096);
    out.extend_from_slice(&jpeg[..at]);
    let mut segment = |code: u8, parts: &[&[u8]]| {
        let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 2;
        out.extend_from_slice(&[0xFF, code]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        for p in parts {
            out.extend_from_slice(p);
        }
    };
    if let Some(exif) = exif {
        if exif.len() + 6 > MAX_SEGMENT {
            return Err(format!(
                "EXIF block of {} bytes does not fit a segment",
                exif.len()
            ));
        }
        segment(0xE1, &[b"Exif\0\0", exif]);
    }
    if let Some(icc) = icc {
        let chunks: Vec<&[u8]> = icc.chunks(MAX_SEGMENT - 14).collect();
        let count = u8::try_from(chunks.len())
            .map_err(|_| format!("ICC profile of {} bytes is too large", icc.len()))?;
        for (i, chunk) in chunks.iter().enumerate() {
            segment(0xE2, &[b"ICC_PROFILE\0", &[i as u8 + 1, count], chunk]);
        }
    }
    out.extend_from_slice(&jpeg[at..]);
    Ok(out)
}

/// RGBA → RGB over a white background.
fn flatten_on_white(img: &Pixels) -> Vec<u8> {
    img.data
        .chunks_exact(4)
        .flat_map(|p| {
            let a = u32::from(p[3]);
            let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
            [mix(p[0]), mix(p[1]), mix(p[2])]
        })
        .collect()
}

/// A copy of `exif` with the orientation tag set to 1 (pixels are already upright).
fn upright_exif(exif: &[u8]) -> Vec<u8> {
    let mut out = exif.to_vec();
    let le = match out.get(..4) {
        Some(b"II*\0") => true,
        Some(b"MM\0*") => false,
        _ => return out,
    };
    let rd16 = |b: &[u8], o: usize| {
        b.get(o..o + 2).map(|x| {
            if le {
                u16::from_le_bytes([x[0], x[1]])
            } else {
                u16::from_be_bytes([x[0], x[1]])
            }
        })
    };
    let Some(ifd) = out.get(4..8).map(|b| {
        let a = [b[0], b[1], b[2], b[3]];
        (if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }) as usize
    }) else {
        return out;
    };
    let count = rd16(&out, ifd).unwrap_or(0) as usize;
    for i in 0..count.min(512) {
        let e = ifd + 2 + i * 12;
        if rd16(&out, e) == Some(0x0112) {
            let one = if le {
                1u16.to_le_bytes()
            } else {
                1u16.to_be_bytes()
            };
            if let Some(slot) = out.get_mut(e + 8..e + 10) {
                slot.copy_from_slice(&one);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exif_orientation_is_reset_to_upright() {
        let le = [
            b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0,
            0,
        ];
        assert_eq!(crate::media::still::exif::read(&le).orientation, Some(6));
        assert_eq!(
            crate::media::still::exif::read(&upright_exif(&le)).orientation,
            Some(1)
        );
    }

    #[test]
    fn icc_and_exif_segments_go_after_jfif() {
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, b'J', b'F', 0xFF, 0xC0, 0, 11, 8, 0, 2, 0, 3, 1, 1, 0x11,
            0, 0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0x3F, 0, 0xFF, 0xD9,
        ];
        let icc = vec![7u8; 70_000];
        let out = with_app_segments(&jpeg, Some(&icc), Some(b"II*\0")).expect("fits");
        assert_eq!(&out[..8], &jpeg[..8]);
        assert_eq!(&out[8..10], &[0xFF, 0xE1]);
        let s = crate::media::still::jpeg::header(&out).expect("parses");
        assert_eq!(s.segments.icc.as_deref(), Some(&icc[..]));
        assert_eq!(s.segments.exif.as_deref(), Some(&b"II*\0"[..]));
        assert!(out.ends_with(&[0xFF, 0xD9]));
    }

    #[test]
    fn alpha_flattens_onto_white() {
        let img = Pixels {
            width: 1,
            height: 1,
            channels: 4,
            data: vec![0, 0, 0, 0],
        };
        assert_eq!(flatten_on_white(&img), vec![255, 255, 255]);
    }
}
