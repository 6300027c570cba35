//! Encoding renditions: JPEG (`jpeg-encoder`: quality, optional progressive, SIMD), PNG
//! (`image`), WebP (libwebp, lossy at quality, alpha kept), AVIF
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
            let (w, h) = (u16::try_from(img.width), u16::try_from(img.height));
            let (Ok(w), Ok(h)) = (w, h) else {
                return Err(fail(r.format, &"JPEG is limited to 65535 pixels per side"));
            };
            let rgb;
            let data = if img.has_alpha() {
                rgb = flatten_on_white(img);
                &rgb
            } else {
                &img.data
            };
            let mut out = Vec::with_capacity(data.len() / 8);
            let mut enc = jpeg_encoder::Encoder::new(&mut out, r.quality);
            enc.set_progressive(r.progressive);
            if let Some(icc) = embed.icc {
                enc.add_icc_profile(icc).map_err(|e| fail(r.format, &e))?;
            }
            if let Some(exif) = embed.exif {
                enc.add_exif_metadata(&upright_exif(exif))
                    .map_err(|e| fail(r.format, &e))?;
            }
            enc.encode(data, w, h, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| fail(r.format, &e))?;
            Ok(out)
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
