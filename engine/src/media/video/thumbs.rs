//! The poster (one JPEG at a configured offset) and the seek-preview sprite (a grid of small
//! thumbnails in one JPEG plus a WebVTT file pointing at each tile), taken from the same
//! decoded frames as the ladder, upright (rotation applied).

use super::frame::{Frame, Scaler};
use crate::error::JobError;
use crate::media::Pixels;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// (poster size, sprite size) as displayed.
pub type Written = ((u32, u32), (u32, u32));

/// Collects what the poster and sprite need while frames go by.
#[derive(Debug)]
pub struct Thumbs {
    poster_at: f64,
    poster: Option<Arc<Frame>>,
    last: Option<Arc<Frame>>,
    interval: f64,
    next: f64,
    tiles: Vec<(f64, Pixels)>,
    tile: (u32, u32),
    rotation: u16,
    scaler: Scaler,
}

/// Rotate RGB pixels clockwise by 0/90/180/270 degrees.
pub fn rotate(p: Pixels, rotation: u16) -> Pixels {
    if rotation.is_multiple_of(360) {
        return p;
    }
    let (w, h) = (p.width as usize, p.height as usize);
    let (nw, nh) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
    let mut data = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let (nx, ny) = match rotation % 360 {
                90 => (h - 1 - y, x),
                180 => (w - 1 - x, h - 1 - y),
                _ => (y, w - 1 - x),
            };
            let (s, d) = ((y * w + x) * 3, (ny * nw + nx) * 3);
            data[d..d + 3].copy_from_slice(&p.data[s..s + 3]);
        }
    }
    Pixels {
        width: nw as u32,
        height: nh as u32,
        channels: 3,
        data,
    }
}

fn even(v: f64) -> u32 {
    ((v / 2.0).round() as u32 * 2).max(2)
}

impl Thumbs {
    /// For a video of `duration` seconds whose stored frames are `width` × `height` and shown
    /// rotated by `rotation`.
    pub fn new(
        duration: f64,
        (width, height): (u32, u32),
        rotation: u16,
        poster_at: f64,
        interval: f64,
        tile_width: u32,
    ) -> Thumbs {
        let (dw, dh) = if rotation % 180 == 90 {
            (height, width)
        } else {
            (width, height)
        };
        let tw = tile_width.min(dw.max(2));
        let th = even(f64::from(tw) * f64::from(dh) / f64::from(dw.max(1)));
        // Stored orientation of a tile.
        let tile = if rotation % 180 == 90 {
            (th, even(f64::from(tw)))
        } else {
            (even(f64::from(tw)), th)
        };
        Thumbs {
            poster_at: poster_at.min(duration),
            poster: None,
            last: None,
            interval: interval.max(duration / 100.0).max(0.04),
            next: 0.0,
            tiles: Vec::new(),
            tile,
            rotation,
            scaler: Scaler::new(),
        }
    }

    /// A frame shown at `t` seconds.
    pub fn push(&mut self, f: &Arc<Frame>, t: f64) -> Result<(), JobError> {
        if self.poster.is_none() && t + 0.0005 >= self.poster_at {
            self.poster = Some(f.clone());
        }
        if t + 0.0005 >= self.next {
            let small = self
                .scaler
                .scale(f, self.tile.0, self.tile.1)
                .map_err(|e| JobError::Encode {
                    format: "jpeg",
                    message: e,
                })?;
            self.tiles.push((t, rotate(small.to_rgb(), self.rotation)));
            while self.next <= t + 0.0005 {
                self.next += self.interval;
            }
        }
        self.last = Some(f.clone());
        Ok(())
    }

    /// Write `poster.jpg` (at `size`, stored orientation), `thumbs.jpg` and `thumbs.vtt` into
    /// `dir`. Returns (poster size, sprite size) as displayed.
    pub fn finish(
        mut self,
        dir: &Path,
        size: (u32, u32),
        quality: u8,
        duration: f64,
    ) -> Result<Written, JobError> {
        let frame = self
            .poster
            .take()
            .or_else(|| self.last.take())
            .ok_or_else(|| JobError::CorruptInput("the video has no decodable frame".into()))?;
        let poster = self
            .scaler
            .scale(&frame, size.0, size.1)
            .map_err(|e| JobError::Encode {
                format: "jpeg",
                message: e,
            })?;
        let poster = rotate(poster.to_rgb(), self.rotation);
        write_jpeg(&dir.join("poster.jpg"), &poster, quality)?;

        let n = self.tiles.len().max(1) as u32;
        let (tw, th) = self
            .tiles
            .first()
            .map_or((2, 2), |(_, p)| (p.width, p.height));
        let cols = n.min(10);
        let rows = n.div_ceil(cols);
        let (sw, sh) = (tw * cols, th * rows);
        let mut sprite = Pixels {
            width: sw,
            height: sh,
            channels: 3,
            data: vec![0u8; (sw * sh * 3) as usize],
        };
        let mut vtt = String::from("WEBVTT\n\n");
        for (i, (t, p)) in self.tiles.iter().enumerate() {
            let (cx, cy) = (i as u32 % cols * tw, i as u32 / cols * th);
            for row in 0..th {
                let src = &p.data[(row * tw * 3) as usize..((row + 1) * tw * 3) as usize];
                let d = (((cy + row) * sw + cx) * 3) as usize;
                sprite.data[d..d + src.len()].copy_from_slice(src);
            }
            let end = self
                .tiles
                .get(i + 1)
                .map_or(duration.max(*t + 0.001), |(next, _)| *next);
            let _ = write!(
                vtt,
                "{} --> {}\nthumbs.jpg#xywh={cx},{cy},{tw},{th}\n\n",
                timestamp(*t),
                timestamp(end)
            );
        }
        write_jpeg(&dir.join("thumbs.jpg"), &sprite, quality)?;
        std::fs::write(dir.join("thumbs.vtt"), vtt).map_err(|e| JobError::Storage {
            message: format!("writing thumbs.vtt: {e}"),
            class: crate::error::ErrorClass::Transient,
        })?;
        Ok(((poster.width, poster.height), (sw, sh)))
    }
}

/// `HH:MM:SS.mmm`.
fn timestamp(t: f64) -> String {
    let ms = (t.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn write_jpeg(path: &Path, p: &Pixels, quality: u8) -> Result<(), JobError> {
    let (w, h) = (
        u16::try_from(p.width).unwrap_or(u16::MAX),
        u16::try_from(p.height).unwrap_or(u16::MAX),
    );
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(&p.data, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| JobError::Encode {
            format: "jpeg",
            message: e.to_string(),
        })?;
    std::fs::write(path, out).map_err(|e| JobError::Storage {
        message: format!("writing {}: {e}", path.display()),
        class: crate::error::ErrorClass::Transient,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_moves_pixels_clockwise() {
        // 2x1: red, green → rotated 90° clockwise is 1x2: red on top, green below.
        let p = Pixels {
            width: 2,
            height: 1,
            channels: 3,
            data: vec![255, 0, 0, 0, 255, 0],
        };
        let r = rotate(p, 90);
        assert_eq!((r.width, r.height), (1, 2));
        assert_eq!(r.data, vec![255, 0, 0, 0, 255, 0]);
        assert_eq!(timestamp(3723.5), "01:02:03.500");
    }
}
