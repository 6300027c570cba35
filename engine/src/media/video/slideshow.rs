//! Images to video: each picture shown for a fixed time, letterboxed (scaled to fit, centred on
//! black) into the output size, with an optional crossfade into the next. Pictures are loaded
//! one at a time as the frames reach them and only the current and the next are held, so
//! memory does not grow with the number of images.

use super::frame::Frame;
use crate::error::JobError;
use crate::media::Pixels;
use crate::media::resize;

/// Black in limited-range YUV.
const BLACK: (u8, u8, u8) = (16, 128, 128);

/// How long each picture shows and how pictures change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Frames per second of the output.
    pub fps: u32,
    /// Seconds each picture is on screen (its crossfade into the next included).
    pub image_s: f64,
    /// Seconds of crossfade at the end of each picture but the last (0 = cut).
    pub crossfade_s: f64,
}

impl Timing {
    /// Frames of each picture's slot.
    fn slot_frames(&self) -> u64 {
        ((self.image_s * f64::from(self.fps)).round() as u64).max(1)
    }

    /// Frames of each crossfade (at most a slot's).
    fn fade_frames(&self) -> u64 {
        ((self.crossfade_s * f64::from(self.fps)).round() as u64).min(self.slot_frames())
    }

    /// Frames in a slideshow of `n` pictures.
    pub fn frames(&self, n: usize) -> u64 {
        self.slot_frames() * n as u64
    }

    /// Ticks per second of the frame times [`make`] emits.
    pub fn timescale(&self) -> u32 {
        self.fps.saturating_mul(1000)
    }
}

/// Scale `p` to fit `width`×`height` (upscaling allowed), flatten any alpha onto black, and
/// centre it on a black picture of that size. Offsets are even, so chroma stays aligned.
pub fn letterbox(
    resizer: &mut fast_image_resize::Resizer,
    p: &Pixels,
    width: u32,
    height: u32,
) -> Result<Frame, JobError> {
    let fit = crate::config::Rendition {
        name: "slide".into(),
        width: Some(width),
        height: Some(height),
        fit: crate::config::Fit::Contain,
        format: crate::config::ImageFormat::Png,
        quality: 100,
        speed: None,
        progressive: false,
        upscale: true,
        watermark: false,
    };
    let plan = resize::plan(p.width, p.height, &fit);
    let plan = resize::Plan {
        width: plan.width.min(width),
        height: plan.height.min(height),
        ..plan
    };
    let mut img = resize::resize(resizer, p, &plan).map_err(|e| JobError::Encode {
        format: "mp4",
        message: format!("slideshow resize: {e}"),
    })?;
    if img.channels == 4 {
        // Premultiply: transparent areas become the black of the bars.
        for px in img.data.chunks_exact_mut(4) {
            let a = u16::from(px[3]);
            for c in &mut px[..3] {
                *c = ((u16::from(*c) * a + 127) / 255) as u8;
            }
        }
    }
    let picture = Frame::from_rgb(&img);
    let mut out = Frame::filled(width, height, BLACK);
    let x0 = ((width - picture.width) / 2) & !1;
    let y0 = ((height - picture.height) / 2) & !1;
    paste(&picture.y, picture.width, &mut out.y, width, x0, y0);
    let (pcw, _) = Frame::chroma_size(picture.width, picture.height);
    let (ocw, _) = Frame::chroma_size(width, height);
    paste(&picture.u, pcw, &mut out.u, ocw, x0 / 2, y0 / 2);
    paste(&picture.v, pcw, &mut out.v, ocw, x0 / 2, y0 / 2);
    Ok(out)
}

/// Copy a plane `src` (rows of `sw`) into `dst` (rows of `dw`) at (`x0`, `y0`).
fn paste(src: &[u8], sw: u32, dst: &mut [u8], dw: u32, x0: u32, y0: u32) {
    let (sw, dw, x0, y0) = (sw as usize, dw as usize, x0 as usize, y0 as usize);
    for (row, line) in src.chunks_exact(sw).enumerate() {
        let at = (y0 + row) * dw + x0;
        if let Some(d) = dst.get_mut(at..at + sw) {
            d.copy_from_slice(line);
        }
    }
}

/// `a` faded towards `b` by `t` (0.0 = `a`, 1.0 = `b`), plane by plane.
pub fn crossfade(a: &Frame, b: &Frame, t: f64) -> Frame {
    let w = (t.clamp(0.0, 1.0) * 256.0).round() as u32;
    let mix = |x: &[u8], y: &[u8]| -> Vec<u8> {
        x.iter()
            .zip(y)
            .map(|(&p, &q)| ((u32::from(p) * (256 - w) + u32::from(q) * w + 128) >> 8) as u8)
            .collect()
    };
    Frame {
        width: a.width,
        height: a.height,
        y: mix(&a.y, &b.y),
        u: mix(&a.u, &b.u),
        v: mix(&a.v, &b.v),
    }
}

/// Emit every frame of a slideshow of `n` pictures: `load(i)` gives picture `i` letterboxed
/// to the output size; `emit` gets each frame with its time in [`Timing::timescale`] ticks.
pub fn make(
    n: usize,
    timing: &Timing,
    mut load: impl FnMut(usize) -> Result<Frame, JobError>,
    emit: &mut dyn FnMut(Frame, i64) -> Result<(), JobError>,
) -> Result<(), JobError> {
    let slot = timing.slot_frames();
    let fade = timing.fade_frames();
    let tick = 1000i64;
    let mut current = if n > 0 { Some(load(0)?) } else { None };
    let mut next: Option<Frame> = None;
    let mut k = 0i64;
    for i in 0..n {
        let Some(cur) = current.take() else { break };
        for f in 0..slot {
            let fading = i + 1 < n && fade > 0 && f >= slot - fade;
            let frame = if fading {
                if next.is_none() {
                    next = Some(load(i + 1)?);
                }
                match &next {
                    // Reaches 1.0 on the next slot's first frame.
                    Some(b) => {
                        crossfade(&cur, b, (f + 1 - (slot - fade)) as f64 / (fade + 1) as f64)
                    }
                    None => cur.clone(),
                }
            } else {
                cur.clone()
            };
            emit(frame, k * tick)?;
            k += 1;
        }
        current = match next.take() {
            Some(f) => Some(f),
            None if i + 1 < n => Some(load(i + 1)?),
            None => None,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, rgb: [u8; 3]) -> Pixels {
        Pixels {
            width: w,
            height: h,
            channels: 3,
            data: rgb
                .iter()
                .copied()
                .cycle()
                .take((w * h * 3) as usize)
                .collect(),
        }
    }

    #[test]
    fn a_portrait_picture_gets_black_bars_left_and_right() {
        let mut r = fast_image_resize::Resizer::new();
        let f = letterbox(&mut r, &solid(100, 200, [255, 255, 255]), 320, 180).expect("fits");
        assert_eq!((f.width, f.height), (320, 180));
        // Scaled to 90x180, centred: columns 114..204 are white, the rest black.
        let row = &f.y[90 * 320..91 * 320];
        assert_eq!(row[10], 16, "left bar is black");
        assert_eq!(row[310], 16, "right bar is black");
        assert!(row[160] > 230, "the picture is in the middle: {}", row[160]);
    }

    #[test]
    fn frames_hold_each_picture_then_fade_into_the_next() {
        let timing = Timing {
            fps: 10,
            image_s: 1.0,
            crossfade_s: 0.3,
        };
        let lum = [40u8, 200u8];
        let mut loads = Vec::new();
        let mut seen: Vec<(u8, i64)> = Vec::new();
        make(
            2,
            &timing,
            |i| {
                loads.push(i);
                Ok(Frame::filled(4, 4, (lum[i], 128, 128)))
            },
            &mut |f, t| {
                seen.push((f.y[0], t));
                Ok(())
            },
        )
        .expect("made");
        assert_eq!(loads, vec![0, 1], "each picture is loaded once");
        assert_eq!(seen.len() as u64, timing.frames(2));
        assert_eq!(seen[0], (40, 0));
        assert_eq!(seen[6].0, 40, "still the first picture before the fade");
        let fade: Vec<u8> = seen[7..10].iter().map(|s| s.0).collect();
        assert!(
            fade.windows(2).all(|w| w[0] < w[1]) && fade[0] > 40 && fade[2] < 200,
            "crossfade rises between the two: {fade:?}"
        );
        assert_eq!(seen[10], (200, 10_000), "the second picture starts at 1 s");
        assert_eq!(seen[19].0, 200);
    }
}
