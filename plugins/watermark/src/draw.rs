//! Rasterising the mark: text with ab_glyph, the logo decoded from PNG and scaled, composed
//! into one straight-alpha RGBA image.

// Channel loops index several parallel arrays; iterators would obscure them.
#![allow(clippy::needless_range_loop)]

use crate::settings::Settings;
use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use mediaflow_plugin_sdk::{PluginError, RgbaImage, Size};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-Bold-Latin1.ttf");
/// Largest logo accepted (pixels per side) before scaling.
const MAX_LOGO_SIDE: u32 = 4096;

/// The mark for `target`, or `None` if it would be empty.
pub fn mark(s: &Settings, target: Size) -> Result<Option<RgbaImage>, PluginError> {
    let logo = match &s.logo_png {
        Some(png) => {
            let w = ((target.width as f32 * s.logo_size).round() as u32).max(1);
            Some(scale(&decode_png(png)?, w))
        }
        None => None,
    };
    let text = match &s.text {
        Some(t) => {
            let px = (target.height as f32 * s.text_size).max(8.0);
            text_image(t, px, s.color, s.outline)?
        }
        None => None,
    };
    let mark = match (logo, text) {
        (Some(l), Some(t)) => Some(stack(&l, &t, (t.height / 4).max(2))),
        (l, t) => l.or(t),
    };
    Ok(mark.map(|m| fit(m, target)))
}

/// `img`, scaled down (aspect kept) to fit inside `target` if it does not: the host refuses
/// overlays larger than the rendition.
fn fit(img: RgbaImage, target: Size) -> RgbaImage {
    if img.width <= target.width && img.height <= target.height {
        return img;
    }
    let by_width = target.width as f64 / img.width.max(1) as f64;
    let by_height = target.height as f64 / img.height.max(1) as f64;
    let width =
        ((img.width as f64 * by_width.min(by_height)).floor() as u32).clamp(1, target.width);
    let scaled = scale(&img, width);
    if scaled.height <= target.height {
        scaled
    } else {
        scale(&img, (width - 1).max(1))
    }
}

fn text_image(
    text: &str,
    px: f32,
    color: [u8; 3],
    outline: bool,
) -> Result<Option<RgbaImage>, PluginError> {
    let font = FontRef::try_from_slice(FONT)
        .map_err(|e| PluginError::Failed(format!("bundled font: {e}")))?;
    let scaled = font.as_scaled(PxScale::from(px));
    let pad = if outline {
        (px / 16.0).ceil().max(1.0) as i32
    } else {
        0
    };
    // Lay out one line with kerning.
    let mut caret = 0.0f32;
    let mut glyphs = Vec::new();
    let mut prev = None;
    for ch in text.chars().filter(|c| !c.is_control()) {
        let id = scaled.glyph_id(ch);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(px, ab_glyph::point(caret, scaled.ascent())));
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    let width = caret.ceil() as i32 + 2 * pad;
    let height = (scaled.ascent() - scaled.descent()).ceil() as i32 + 2 * pad;
    if width <= 2 * pad || height <= 0 || width > 16_384 || height > 16_384 {
        return Ok(None);
    }
    let (w, h) = (width as usize, height as usize);
    let mut coverage = vec![0f32; w * h];
    for g in glyphs {
        if let Some(outlined) = font.outline_glyph(g) {
            let b = outlined.px_bounds();
            outlined.draw(|gx, gy, c| {
                let x = b.min.x as i32 + gx as i32 + pad;
                let y = b.min.y as i32 + gy as i32 + pad;
                if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
                    let cell = &mut coverage[y as usize * w + x as usize];
                    *cell = (*cell + c).min(1.0);
                }
            });
        }
    }
    // Outline: the coverage dilated by `pad`, drawn dark beneath the text.
    let halo = if outline {
        dilate(&coverage, w, h, pad as usize)
    } else {
        vec![0.0; w * h]
    };
    let mut img = RgbaImage::transparent(width as u32, height as u32);
    for (i, px) in img.pixels.chunks_exact_mut(4).enumerate() {
        let (fg, bg) = (coverage[i], halo[i] * 0.8);
        let a = fg + bg * (1.0 - fg);
        if a <= 0.0 {
            continue;
        }
        for c in 0..3 {
            px[c] = ((color[c] as f32 * fg) / a).round().clamp(0.0, 255.0) as u8;
        }
        px[3] = (a * 255.0).round() as u8;
    }
    Ok(Some(img))
}

fn dilate(src: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    // Separable max filter: rows then columns.
    let mut tmp = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (lo, hi) = (x.saturating_sub(r), (x + r).min(w - 1));
            tmp[y * w + x] = src[y * w + lo..=y * w + hi]
                .iter()
                .copied()
                .fold(0.0, f32::max);
        }
    }
    let mut out = vec![0f32; w * h];
    for x in 0..w {
        for y in 0..h {
            let (lo, hi) = (y.saturating_sub(r), (y + r).min(h - 1));
            out[y * w + x] = (lo..=hi).map(|yy| tmp[yy * w + x]).fold(0.0, f32::max);
        }
    }
    out
}

fn decode_png(bytes: &[u8]) -> Result<RgbaImage, PluginError> {
    let bad = |e: String| PluginError::BadConfig(format!("config key `logo_png_base64`: {e}"));
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("not a PNG: {e}")))?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w == 0 || h == 0 || w > MAX_LOGO_SIDE || h > MAX_LOGO_SIDE {
        return Err(bad(format!(
            "logo is {w}x{h}; at most {MAX_LOGO_SIDE} per side"
        )));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad("logo too large".into()))?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(format!("corrupt PNG: {e}")))?;
    let buf = &buf[..info.buffer_size()];
    let mut out = RgbaImage::transparent(w, h);
    let n = (w * h) as usize;
    match info.color_type {
        png::ColorType::Rgba => out.pixels.copy_from_slice(&buf[..n * 4]),
        png::ColorType::Rgb => {
            for (o, i) in out.pixels.chunks_exact_mut(4).zip(buf.chunks_exact(3)) {
                o.copy_from_slice(&[i[0], i[1], i[2], 255]);
            }
        }
        png::ColorType::GrayscaleAlpha => {
            for (o, i) in out.pixels.chunks_exact_mut(4).zip(buf.chunks_exact(2)) {
                o.copy_from_slice(&[i[0], i[0], i[0], i[1]]);
            }
        }
        png::ColorType::Grayscale => {
            for (o, &g) in out.pixels.chunks_exact_mut(4).zip(buf.iter()) {
                o.copy_from_slice(&[g, g, g, 255]);
            }
        }
        png::ColorType::Indexed => return Err(bad("palette was not expanded".into())),
    }
    Ok(out)
}

/// Bilinear resize to `width`, keeping the aspect ratio; colour weighted by alpha.
fn scale(src: &RgbaImage, width: u32) -> RgbaImage {
    let height = ((src.height as u64 * width as u64) / src.width.max(1) as u64).max(1) as u32;
    let mut out = RgbaImage::transparent(width, height);
    let (sw, sh) = (src.width as f32, src.height as f32);
    for y in 0..height {
        let fy = ((y as f32 + 0.5) * sh / height as f32 - 0.5).clamp(0.0, sh - 1.0);
        let (y0, ty) = (fy.floor() as u32, fy.fract());
        let y1 = (y0 + 1).min(src.height - 1);
        for x in 0..width {
            let fx = ((x as f32 + 0.5) * sw / width as f32 - 0.5).clamp(0.0, sw - 1.0);
            let (x0, tx) = (fx.floor() as u32, fx.fract());
            let x1 = (x0 + 1).min(src.width - 1);
            let mut acc = [0f32; 4];
            for (xx, yy, wgt) in [
                (x0, y0, (1.0 - tx) * (1.0 - ty)),
                (x1, y0, tx * (1.0 - ty)),
                (x0, y1, (1.0 - tx) * ty),
                (x1, y1, tx * ty),
            ] {
                let i = ((yy * src.width + xx) * 4) as usize;
                let a = src.pixels[i + 3] as f32 / 255.0 * wgt;
                for c in 0..3 {
                    acc[c] += src.pixels[i + c] as f32 * a;
                }
                acc[3] += a;
            }
            let o = ((y * width + x) * 4) as usize;
            if acc[3] > 0.0 {
                for c in 0..3 {
                    out.pixels[o + c] = (acc[c] / acc[3]).round().clamp(0.0, 255.0) as u8;
                }
                out.pixels[o + 3] = (acc[3] * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// `top` above `bottom`, both centred, `gap` pixels apart.
fn stack(top: &RgbaImage, bottom: &RgbaImage, gap: u32) -> RgbaImage {
    let width = top.width.max(bottom.width);
    let mut out = RgbaImage::transparent(width, top.height + gap + bottom.height);
    for (img, y0) in [(top, 0), (bottom, top.height + gap)] {
        let x0 = (width - img.width) / 2;
        for y in 0..img.height {
            let src = ((y * img.width) * 4) as usize;
            let dst = (((y0 + y) * width + x0) * 4) as usize;
            let len = (img.width * 4) as usize;
            out.pixels[dst..dst + len].copy_from_slice(&img.pixels[src..src + len]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_renders_opaque_ink_inside_its_box() {
        let img = text_image("Hi", 40.0, [255, 255, 255], true)
            .ok()
            .flatten()
            .expect("rendered");
        assert_eq!(img.pixels.len(), (img.width * img.height * 4) as usize);
        assert!(
            img.height >= 40 && img.width > 20,
            "{}x{}",
            img.width,
            img.height
        );
        let opaque = img.pixels.chunks_exact(4).filter(|p| p[3] == 255).count();
        assert!(opaque > 50, "some fully inked pixels, got {opaque}");
        let white = img
            .pixels
            .chunks_exact(4)
            .filter(|p| p[3] > 200 && p[0] > 240)
            .count();
        assert!(white > 20, "white text over a dark outline");
    }

    #[test]
    fn a_mark_larger_than_the_rendition_is_scaled_to_fit() {
        let wide = RgbaImage {
            width: 400,
            height: 50,
            pixels: vec![200; 400 * 50 * 4],
        };
        for (w, h) in [(100, 100), (399, 7), (1, 1), (400, 50)] {
            let fitted = fit(
                wide.clone(),
                Size {
                    width: w,
                    height: h,
                },
            );
            assert!(
                fitted.width <= w && fitted.height <= h && fitted.width >= 1,
                "{w}x{h}: {}x{}",
                fitted.width,
                fitted.height
            );
            assert_eq!(
                fitted.pixels.len(),
                (fitted.width * fitted.height * 4) as usize
            );
        }
    }

    #[test]
    fn scaling_keeps_aspect_and_stacking_sizes_add_up() {
        let src = RgbaImage {
            width: 4,
            height: 2,
            pixels: vec![200; 4 * 2 * 4],
        };
        let s = scale(&src, 8);
        assert_eq!((s.width, s.height), (8, 4));
        let st = stack(&s, &src, 3);
        assert_eq!((st.width, st.height), (8, 4 + 3 + 2));
    }
}
