//! Blending a watermarker's overlay (straight-alpha RGBA, position, opacity, optional tiling)
//! into an RGB or RGBA image, natively and once per rendition.

use super::Pixels;

/// An overlay ready to blend: the plugin's image with its placement.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// Width of `rgba`.
    pub width: u32,
    /// Height of `rgba`.
    pub height: u32,
    /// Straight-alpha RGBA8.
    pub rgba: Vec<u8>,
    /// Top-left x (may be negative).
    pub x: i32,
    /// Top-left y.
    pub y: i32,
    /// 0.0–1.0, multiplies the overlay's alpha.
    pub opacity: f32,
    /// Repeat with these gaps over the whole target.
    pub tile: Option<(u32, u32)>,
}

/// Blend `o` into `dst` (source-over).
pub fn blend(dst: &mut Pixels, o: &Overlay) {
    if o.width == 0
        || o.height == 0
        || o.opacity <= 0.0
        || o.rgba.len() < (o.width as usize * o.height as usize * 4)
    {
        return;
    }
    let opacity = (o.opacity * 256.0).round() as u32; // 0..=256
    match o.tile {
        None => blend_at(dst, o, o.x, o.y, opacity),
        Some((gx, gy)) => {
            let step_x = (o.width + gx) as i64;
            let step_y = (o.height + gy) as i64;
            // Start at the tile origin shifted left/up so the target is fully covered.
            let start_x =
                i64::from(o.x) - ((i64::from(o.x) + step_x - 1).div_euclid(step_x)) * step_x;
            let start_y =
                i64::from(o.y) - ((i64::from(o.y) + step_y - 1).div_euclid(step_y)) * step_y;
            let mut y = start_y;
            while y < i64::from(dst.height) {
                let mut x = start_x;
                while x < i64::from(dst.width) {
                    blend_at(dst, o, x as i32, y as i32, opacity);
                    x += step_x;
                }
                y += step_y;
            }
        }
    }
}

fn blend_at(dst: &mut Pixels, o: &Overlay, ox: i32, oy: i32, opacity: u32) {
    let ch = dst.channels as usize;
    let x0 = ox.max(0) as i64;
    let y0 = oy.max(0) as i64;
    let x1 = (i64::from(ox) + i64::from(o.width)).min(i64::from(dst.width));
    let y1 = (i64::from(oy) + i64::from(o.height)).min(i64::from(dst.height));
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    for y in y0..y1 {
        let sy = (y - i64::from(oy)) as usize;
        let src_row = &o.rgba[sy * o.width as usize * 4..(sy + 1) * o.width as usize * 4];
        let dst_row = &mut dst.data
            [y as usize * dst.width as usize * ch..(y as usize + 1) * dst.width as usize * ch];
        for x in x0..x1 {
            let sx = (x - i64::from(ox)) as usize;
            let s = &src_row[sx * 4..sx * 4 + 4];
            let a = (u32::from(s[3]) * opacity + 128) >> 8; // 0..=255, rounded
            if a == 0 {
                continue;
            }
            let d = &mut dst_row[x as usize * ch..x as usize * ch + ch];
            let inv = 255 - a;
            for c in 0..3 {
                d[c] = ((u32::from(s[c]) * a + u32::from(d[c]) * inv + 127) / 255) as u8;
            }
            if ch == 4 {
                d[3] = (a + (u32::from(d[3]) * inv + 127) / 255).min(255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(w: u32, h: u32) -> Pixels {
        Pixels {
            width: w,
            height: h,
            channels: 3,
            data: vec![100; (w * h * 3) as usize],
        }
    }

    fn red(w: u32, h: u32, x: i32, y: i32, opacity: f32) -> Overlay {
        Overlay {
            width: w,
            height: h,
            rgba: [255, 0, 0, 255].repeat((w * h) as usize),
            x,
            y,
            opacity,
            tile: None,
        }
    }

    #[test]
    fn blends_with_opacity_and_clips_at_edges() {
        let mut img = grey(10, 10);
        blend(&mut img, &red(4, 4, 8, -2, 0.5));
        let at = |img: &Pixels, x: usize, y: usize| {
            img.data[(y * 10 + x) * 3..(y * 10 + x) * 3 + 3].to_vec()
        };
        assert_eq!(at(&img, 9, 0), vec![178, 50, 50]);
        assert_eq!(at(&img, 9, 1), vec![178, 50, 50]);
        assert_eq!(at(&img, 9, 2), vec![100, 100, 100], "below the overlay");
        assert_eq!(at(&img, 7, 0), vec![100, 100, 100], "left of the overlay");
    }

    #[test]
    fn tiles_cover_the_whole_image() {
        let mut img = grey(20, 20);
        let mut o = red(2, 2, 3, 3, 1.0);
        o.tile = Some((2, 2));
        blend(&mut img, &o);
        let reds = img.data.chunks_exact(3).filter(|p| p[0] == 255).count();
        assert_eq!(reds, 100, "a quarter of the pixels are tile");
        // Tiles of 2 every 4 px from (3,3), extended up-left: they cover x,y ∈ {0, 3,4, 7,8, …}.
        let at = |x: usize, y: usize| img.data[(y * 20 + x) * 3..(y * 20 + x) * 3 + 3].to_vec();
        assert_eq!(at(0, 0), vec![255, 0, 0]);
        assert_eq!(at(1, 1), vec![100, 100, 100]);
        assert_eq!(at(3, 4), vec![255, 0, 0]);
        assert_eq!(at(5, 5), vec![100, 100, 100]);
    }
}
