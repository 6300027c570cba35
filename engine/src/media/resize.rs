//! Fitting a source into a rendition's box (contain, cover, exact; never upscaling unless
//! asked) and resizing with `fast_image_resize` (SIMD convolution, Lanczos3; alpha
//! premultiplied during the filter so transparent edges don't bleed).

use super::Pixels;
use crate::config::{Fit, Rendition};
use fast_image_resize::{self as fr, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// Where to crop the source and what size to make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Source crop (left, top, width, height) in source pixels.
    pub crop: (f64, f64, f64, f64),
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
}

fn px(v: f64) -> u32 {
    (v.round() as u32).max(1)
}

/// Plan a rendition of a `sw`×`sh` source.
pub fn plan(sw: u32, sh: u32, r: &Rendition) -> Plan {
    let (fw, fh) = (f64::from(sw), f64::from(sh));
    let full = (0.0, 0.0, fw, fh);
    let cap = |s: f64| if r.upscale { s } else { s.min(1.0) };
    match (r.width, r.height, r.fit) {
        (Some(w), None, _) => {
            let s = cap(f64::from(w) / fw);
            Plan {
                crop: full,
                width: px(fw * s),
                height: px(fh * s),
            }
        }
        (None, Some(h), _) => {
            let s = cap(f64::from(h) / fh);
            Plan {
                crop: full,
                width: px(fw * s),
                height: px(fh * s),
            }
        }
        (Some(w), Some(h), Fit::Contain) => {
            let s = cap((f64::from(w) / fw).min(f64::from(h) / fh));
            Plan {
                crop: full,
                width: px(fw * s),
                height: px(fh * s),
            }
        }
        (Some(w), Some(h), Fit::Cover) => {
            let (bw, bh) = (f64::from(w), f64::from(h));
            // The largest centred region of the source with the box's aspect ratio.
            let (cw, ch) = if fw / fh > bw / bh {
                (fh * bw / bh, fh)
            } else {
                (fw, fw * bh / bw)
            };
            let s = cap(bw / cw);
            Plan {
                crop: ((fw - cw) / 2.0, (fh - ch) / 2.0, cw, ch),
                width: px(cw * s),
                height: px(ch * s),
            }
        }
        (Some(w), Some(h), Fit::Exact) => {
            let (bw, bh) = (f64::from(w), f64::from(h));
            let s = if r.upscale {
                1.0
            } else {
                (fw / bw).min(fh / bh).min(1.0)
            };
            Plan {
                crop: full,
                width: px(bw * s),
                height: px(bh * s),
            }
        }
        (None, None, _) => Plan {
            crop: full,
            width: sw.max(1),
            height: sh.max(1),
        },
    }
}

/// Resize `src` according to `plan` (Lanczos3). Returns a copy when nothing changes.
pub fn resize(resizer: &mut Resizer, src: &Pixels, plan: &Plan) -> Result<Pixels, String> {
    let full = plan.crop == (0.0, 0.0, f64::from(src.width), f64::from(src.height));
    if full && plan.width == src.width && plan.height == src.height {
        return Ok(src.clone());
    }
    let pt = if src.has_alpha() {
        PixelType::U8x4
    } else {
        PixelType::U8x3
    };
    let view = fr::images::ImageRef::new(src.width, src.height, &src.data, pt)
        .map_err(|e| e.to_string())?;
    let mut dst = fr::images::Image::new(plan.width, plan.height, pt);
    let (l, t, w, h) = plan.crop;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .crop(l, t, w, h);
    resizer
        .resize(&view, &mut dst, &options)
        .map_err(|e| e.to_string())?;
    Ok(Pixels {
        width: plan.width,
        height: plan.height,
        channels: src.channels,
        data: dst.into_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageFormat;

    fn r(w: Option<u32>, h: Option<u32>, fit: Fit, upscale: bool) -> Rendition {
        Rendition {
            name: "x".into(),
            width: w,
            height: h,
            fit,
            format: ImageFormat::Png,
            quality: 85,
            speed: None,
            progressive: false,
            upscale,
            watermark: true,
        }
    }

    #[test]
    fn contain_cover_exact_and_no_upscale() {
        assert_eq!(
            plan(4000, 3000, &r(Some(1600), None, Fit::Contain, false)).width,
            1600
        );
        assert_eq!(
            plan(4000, 3000, &r(Some(1600), None, Fit::Contain, false)).height,
            1200
        );
        let c = plan(4000, 3000, &r(Some(800), Some(800), Fit::Contain, false));
        assert_eq!((c.width, c.height), (800, 600));
        let c = plan(4000, 3000, &r(Some(200), Some(200), Fit::Cover, false));
        assert_eq!((c.width, c.height), (200, 200));
        assert_eq!(c.crop, (500.0, 0.0, 3000.0, 3000.0));
        let e = plan(4000, 3000, &r(Some(100), Some(300), Fit::Exact, false));
        assert_eq!((e.width, e.height), (100, 300));
        // Never upscale unless asked.
        let small = plan(300, 200, &r(Some(1600), None, Fit::Contain, false));
        assert_eq!((small.width, small.height), (300, 200));
        let up = plan(300, 200, &r(Some(600), None, Fit::Contain, true));
        assert_eq!((up.width, up.height), (600, 400));
        let cover_small = plan(300, 200, &r(Some(400), Some(400), Fit::Cover, false));
        assert_eq!((cover_small.width, cover_small.height), (200, 200));
    }

    #[test]
    fn resizes_rgba_without_dark_fringes() {
        // Left half opaque white, right half fully transparent black.
        let mut data = Vec::new();
        for _y in 0..8 {
            for x in 0..8 {
                data.extend_from_slice(if x < 4 {
                    &[255, 255, 255, 255]
                } else {
                    &[0, 0, 0, 0]
                });
            }
        }
        let src = Pixels {
            width: 8,
            height: 8,
            channels: 4,
            data,
        };
        let out = resize(
            &mut Resizer::new(),
            &src,
            &plan(8, 8, &r(Some(4), None, Fit::Contain, false)),
        )
        .expect("resize");
        for p in out.data.chunks_exact(4).filter(|p| p[3] > 0) {
            assert!(
                p[0] > 240,
                "premultiplied: partially transparent pixels stay white, got {p:?}"
            );
        }
    }
}
