//! Pictures in I420 (8-bit 4:2:0, three tightly packed planes) and what is done to them per
//! frame: resizing each plane directly with `fast_image_resize` (no RGB round trip),
//! blending a watermark that was converted to YUV once per rendition size, and converting
//! small pictures to RGB for the poster and thumbnails.

use crate::media::Pixels;
use crate::media::overlay::Overlay;
use fast_image_resize::{self as fr, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// One picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Luma width.
    pub width: u32,
    /// Luma height.
    pub height: u32,
    /// Luma plane, `width * height` bytes.
    pub y: Vec<u8>,
    /// Cb plane, `cw * ch` bytes (half size, rounded up).
    pub u: Vec<u8>,
    /// Cr plane.
    pub v: Vec<u8>,
}

impl Frame {
    /// Chroma plane size for a luma size.
    pub fn chroma_size(width: u32, height: u32) -> (u32, u32) {
        (width.div_ceil(2), height.div_ceil(2))
    }

    /// A frame of one colour.
    pub fn filled(width: u32, height: u32, (y, u, v): (u8, u8, u8)) -> Frame {
        let (cw, ch) = Self::chroma_size(width, height);
        Frame {
            width,
            height,
            y: vec![y; (width * height) as usize],
            u: vec![u; (cw * ch) as usize],
            v: vec![v; (cw * ch) as usize],
        }
    }

    /// Copy planes with strides into a packed frame.
    pub fn from_planes(
        width: u32,
        height: u32,
        (y, u, v): (&[u8], &[u8], &[u8]),
        (ys, us, vs): (usize, usize, usize),
    ) -> Option<Frame> {
        let (cw, ch) = Self::chroma_size(width, height);
        let copy = |src: &[u8], stride: usize, w: u32, h: u32| -> Option<Vec<u8>> {
            let (w, h) = (w as usize, h as usize);
            let mut out = Vec::with_capacity(w * h);
            for row in 0..h {
                out.extend_from_slice(src.get(row * stride..row * stride + w)?);
            }
            Some(out)
        };
        Some(Frame {
            width,
            height,
            y: copy(y, ys, width, height)?,
            u: copy(u, us, cw, ch)?,
            v: copy(v, vs, cw, ch)?,
        })
    }

    /// From RGB(A) pixels (BT.709, limited range), alpha ignored.
    pub fn from_rgb(p: &Pixels) -> Frame {
        let (w, h) = (p.width, p.height);
        let m = Matrix::BT709;
        let c = usize::from(p.channels);
        let (cw, ch) = Self::chroma_size(w, h);
        let mut f = Frame::filled(w, h, (16, 128, 128));
        for yy in 0..h as usize {
            for xx in 0..w as usize {
                let i = (yy * w as usize + xx) * c;
                let (r, g, b) = (p.data[i], p.data[i + 1], p.data[i + 2]);
                f.y[yy * w as usize + xx] = m.y(r, g, b);
            }
        }
        for cy in 0..ch as usize {
            for cx in 0..cw as usize {
                let (mut r, mut g, mut b, mut n) = (0u32, 0u32, 0u32, 0u32);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (x, y) = (cx * 2 + dx, cy * 2 + dy);
                    if x < w as usize && y < h as usize {
                        let i = (y * w as usize + x) * c;
                        r += u32::from(p.data[i]);
                        g += u32::from(p.data[i + 1]);
                        b += u32::from(p.data[i + 2]);
                        n += 1;
                    }
                }
                let (r, g, b) = ((r / n) as u8, (g / n) as u8, (b / n) as u8);
                let (u, v) = m.uv(r, g, b);
                f.u[cy * cw as usize + cx] = u;
                f.v[cy * cw as usize + cx] = v;
            }
        }
        f
    }

    /// To RGB (for posters and thumbnails).
    pub fn to_rgb(&self) -> Pixels {
        let m = Matrix::BT709;
        let (w, h) = (self.width as usize, self.height as usize);
        let cw = self.width.div_ceil(2) as usize;
        let mut data = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let yy = f32::from(self.y[y * w + x]);
                let ci = (y / 2) * cw + x / 2;
                let (r, g, b) = m.rgb(yy, f32::from(self.u[ci]), f32::from(self.v[ci]));
                let o = (y * w + x) * 3;
                data[o] = r;
                data[o + 1] = g;
                data[o + 2] = b;
            }
        }
        Pixels {
            width: self.width,
            height: self.height,
            channels: 3,
            data,
        }
    }
}

/// YCbCr coefficients (limited range).
#[derive(Debug, Clone, Copy)]
struct Matrix {
    kr: f32,
    kb: f32,
}

impl Matrix {
    /// Every frame the ladder sees is BT.709 (the decoder child converts SD BT.601 sources),
    /// and every output is tagged so.
    const BT709: Matrix = Matrix {
        kr: 0.2126,
        kb: 0.0722,
    };

    fn luma(self, r: u8, g: u8, b: u8) -> f32 {
        let kg = 1.0 - self.kr - self.kb;
        (self.kr * f32::from(r) + kg * f32::from(g) + self.kb * f32::from(b)) / 255.0
    }

    fn y(self, r: u8, g: u8, b: u8) -> u8 {
        (16.0 + 219.0 * self.luma(r, g, b))
            .round()
            .clamp(0.0, 255.0) as u8
    }

    fn uv(self, r: u8, g: u8, b: u8) -> (u8, u8) {
        let y = self.luma(r, g, b);
        let u = (f32::from(b) / 255.0 - y) / (2.0 * (1.0 - self.kb));
        let v = (f32::from(r) / 255.0 - y) / (2.0 * (1.0 - self.kr));
        let q = |c: f32| (128.0 + 224.0 * c).round().clamp(0.0, 255.0) as u8;
        (q(u), q(v))
    }

    fn rgb(self, y: f32, u: f32, v: f32) -> (u8, u8, u8) {
        let kg = 1.0 - self.kr - self.kb;
        let y = (y - 16.0) / 219.0;
        let u = (u - 128.0) / 224.0;
        let v = (v - 128.0) / 224.0;
        let r = y + 2.0 * (1.0 - self.kr) * v;
        let b = y + 2.0 * (1.0 - self.kb) * u;
        let g = (y - self.kr * r - self.kb * b) / kg;
        let q = |c: f32| (c * 255.0).round().clamp(0.0, 255.0) as u8;
        (q(r), q(g), q(b))
    }
}

/// Resizes frames plane by plane, keeping its scratch between frames.
pub struct Scaler {
    resizer: Resizer,
    options: ResizeOptions,
}

impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scaler")
    }
}

impl Default for Scaler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scaler {
    /// A scaler with a Catmull-Rom (bicubic) filter: ffmpeg's default quality at 4 taps.
    pub fn new() -> Self {
        Scaler {
            resizer: Resizer::new(),
            options: ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom)),
        }
    }

    /// `src` resized to `width` × `height` (both even or not; chroma follows).
    pub fn scale(&mut self, src: &Frame, width: u32, height: u32) -> Result<Frame, String> {
        if src.width == width && src.height == height {
            return Ok(src.clone());
        }
        let (scw, sch) = Frame::chroma_size(src.width, src.height);
        let (dcw, dch) = Frame::chroma_size(width, height);
        Ok(Frame {
            width,
            height,
            y: self.plane(&src.y, (src.width, src.height), (width, height))?,
            u: self.plane(&src.u, (scw, sch), (dcw, dch))?,
            v: self.plane(&src.v, (scw, sch), (dcw, dch))?,
        })
    }

    fn plane(&mut self, src: &[u8], from: (u32, u32), to: (u32, u32)) -> Result<Vec<u8>, String> {
        let src = fr::images::ImageRef::new(from.0, from.1, src, PixelType::U8)
            .map_err(|e| e.to_string())?;
        let mut dst = fr::images::Image::new(to.0, to.1, PixelType::U8);
        self.resizer
            .resize(&src, &mut dst, &self.options)
            .map_err(|e| e.to_string())?;
        Ok(dst.into_vec())
    }
}

/// `o` drawn onto a transparent `width` × `height` canvas (position, tiling and opacity
/// applied by the same code that blends image renditions), as straight-alpha RGBA.
pub fn canvas(o: &Overlay, width: u32, height: u32) -> Vec<u8> {
    let mut px = Pixels {
        width,
        height,
        channels: 4,
        data: vec![0u8; (width * height * 4) as usize],
    };
    crate::media::overlay::blend(&mut px, o);
    // Blending over transparent black leaves colour premultiplied by alpha: undo that.
    for p in px.data.chunks_exact_mut(4) {
        let a = u32::from(p[3]);
        if a > 0 && a < 255 {
            for c in &mut p[..3] {
                *c = ((u32::from(*c) * 255 + a / 2) / a).min(255) as u8;
            }
        }
    }
    px.data
}

/// A watermark overlay prepared for one frame size: per-plane alpha and colour over the
/// bounding box it covers, so blending a frame is two multiply-adds per covered sample.
#[derive(Debug, Clone)]
pub struct YuvOverlay {
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
    /// Luma: (alpha 0–255, value) per covered pixel.
    luma: Vec<(u8, u8)>,
    /// Chroma box (in chroma samples) and (alpha, u, v).
    cx0: usize,
    cy0: usize,
    cw: usize,
    ch: usize,
    chroma: Vec<(u8, u8, u8)>,
}

impl YuvOverlay {
    /// Rasterise `o` (position, tiling, opacity) for a `width` × `height` frame. `None` when
    /// nothing of it is visible.
    pub fn new(o: &Overlay, width: u32, height: u32) -> Option<YuvOverlay> {
        Self::from_canvas(&canvas(o, width, height), width, height)
    }

    /// From a straight-alpha RGBA canvas of the frame's size.
    pub fn from_canvas(rgba: &[u8], width: u32, height: u32) -> Option<YuvOverlay> {
        let (fw, fh) = (width as usize, height as usize);
        let canvas: Vec<[u8; 4]> = rgba
            .chunks_exact(4)
            .map(|p| [p[0], p[1], p[2], p[3]])
            .collect();
        if canvas.len() != fw * fh {
            return None;
        }
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for (i, px) in canvas.iter().enumerate() {
            if px[3] > 0 {
                let (x, y) = (i % fw, i / fw);
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x + 1);
                y1 = y1.max(y + 1);
            }
        }
        if x0 == usize::MAX {
            return None;
        }
        // Align the box to chroma samples.
        let (x0, y0) = (x0 & !1, y0 & !1);
        let (x1, y1) = ((x1 + 1).min(fw), (y1 + 1).min(fh));
        let m = Matrix::BT709;
        let (w, h) = (x1 - x0, y1 - y0);
        let mut luma = Vec::with_capacity(w * h);
        for y in y0..y1 {
            for x in x0..x1 {
                let [r, g, b, a] = canvas[y * fw + x];
                luma.push((a, m.y(r, g, b)));
            }
        }
        let (cx0, cy0) = (x0 / 2, y0 / 2);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut chroma = Vec::with_capacity(cw * ch);
        for cy in 0..ch {
            for cx in 0..cw {
                // Alpha-weighted average of the 2x2 pixels under this chroma sample.
                let (mut r, mut g, mut b, mut a, mut n) = (0f32, 0f32, 0f32, 0f32, 0f32);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (x, y) = (x0 + cx * 2 + dx, y0 + cy * 2 + dy);
                    if x < fw && y < fh {
                        let [pr, pg, pb, pa] = canvas[y * fw + x];
                        let pa = f32::from(pa);
                        r += f32::from(pr) * pa;
                        g += f32::from(pg) * pa;
                        b += f32::from(pb) * pa;
                        a += pa;
                        n += 1.0;
                    }
                }
                if a > 0.0 {
                    let (u, v) = m.uv((r / a) as u8, (g / a) as u8, (b / a) as u8);
                    chroma.push(((a / n).round() as u8, u, v));
                } else {
                    chroma.push((0, 128, 128));
                }
            }
        }
        Some(YuvOverlay {
            x0,
            y0,
            w,
            h,
            luma,
            cx0,
            cy0,
            cw,
            ch,
            chroma,
        })
    }

    /// Blend into `f` (which must have the size this overlay was made for).
    pub fn blend(&self, f: &mut Frame) {
        let fw = f.width as usize;
        let mix = |dst: &mut u8, a: u8, v: u8| {
            let a = u32::from(a);
            *dst = ((u32::from(*dst) * (255 - a) + u32::from(v) * a + 127) / 255) as u8;
        };
        for row in 0..self.h {
            let line = &mut f.y[(self.y0 + row) * fw + self.x0..][..self.w];
            for (dst, &(a, v)) in line.iter_mut().zip(&self.luma[row * self.w..][..self.w]) {
                if a > 0 {
                    mix(dst, a, v);
                }
            }
        }
        let (fcw, fch) = Frame::chroma_size(f.width, f.height);
        let (fcw, fch) = (fcw as usize, fch as usize);
        for row in 0..self.ch.min(fch.saturating_sub(self.cy0)) {
            let n = self.cw.min(fcw.saturating_sub(self.cx0));
            let start = (self.cy0 + row) * fcw + self.cx0;
            let src = &self.chroma[row * self.cw..][..n];
            for (i, &(a, u, v)) in src.iter().enumerate() {
                if a > 0 {
                    mix(&mut f.u[start + i], a, u);
                    mix(&mut f.v[start + i], a, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_yuv_round_trip_is_close() {
        let p = Pixels {
            width: 4,
            height: 2,
            channels: 3,
            data: [200u8, 30, 60].repeat(8),
        };
        let back = Frame::from_rgb(&p).to_rgb();
        for (a, b) in p.data.iter().zip(&back.data) {
            assert!(a.abs_diff(*b) <= 3, "{a} vs {b}");
        }
    }

    #[test]
    fn scaling_keeps_a_flat_colour_and_sizes_chroma() {
        let f = Frame::filled(64, 36, (100, 90, 160));
        let s = Scaler::new().scale(&f, 30, 17).expect("scale");
        assert_eq!((s.width, s.height, s.u.len()), (30, 17, 15 * 9));
        assert!(s.y.iter().all(|&v| v == 100) && s.v.iter().all(|&v| v == 160));
    }

    #[test]
    fn opaque_overlay_replaces_and_transparent_keeps() {
        let o = Overlay {
            width: 4,
            height: 4,
            rgba: [255u8, 255, 255, 255].repeat(16),
            x: 2,
            y: 2,
            opacity: 1.0,
            tile: None,
        };
        let yo = YuvOverlay::new(&o, 16, 16).expect("visible");
        let mut f = Frame::filled(16, 16, (16, 128, 128));
        yo.blend(&mut f);
        assert_eq!(f.y[3 * 16 + 3], 235);
        assert_eq!(f.y[0], 16);
        assert_eq!(f.y[15 * 16 + 15], 16);
        let hidden = Overlay { opacity: 0.0, ..o };
        assert!(YuvOverlay::new(&hidden, 16, 16).is_none());
    }
}
