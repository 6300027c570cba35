//! The engine's side of a HEIF/HEIC or AVIF picture: the decoder child describes it (size,
//! `irot`/`imir` as a display matrix, EXIF, ICC profile), the limits are checked on that,
//! and then the picture comes back as RGB pixels, turned upright here like an EXIF-oriented
//! JPEG. Between the two the child waits, so metadata plugins can run in between.

use super::protocol::{Mode, PictureHead, Start, VideoInfo};
use super::session::{self, Event, Session, Settings};
use crate::config::Limits;
use crate::error::JobError;
use crate::media::Pixels;
use crate::media::decode::Decoded;
use crate::media::probe::{self, Probe};
use std::path::Path;

/// EXIF orientation (1–8) for a display matrix (`tkhd` layout: `a b u / c d v / x y w`).
pub fn orientation_of(m: &[i32; 9]) -> u8 {
    let (a, b, c, d) = (m[0].signum(), m[1].signum(), m[3].signum(), m[4].signum());
    match (a, b, c, d) {
        (1, 0, 0, 1) => 1,
        (-1, 0, 0, 1) => 2,
        (-1, 0, 0, -1) => 3,
        (1, 0, 0, -1) => 4,
        (0, 1, 1, 0) => 5,
        (0, 1, -1, 0) => 6,
        (0, -1, -1, 0) => 7,
        (0, -1, 1, 0) => 8,
        _ => 1,
    }
}

/// A picture described and waiting to be decoded.
#[derive(Debug)]
pub struct Picture {
    session: Session,
    info: VideoInfo,
    /// What the probe would have found: stored size, orientation, the format.
    pub probe: Probe,
}

impl Picture {
    /// Have the child describe `path` (already sniffed as `sniffed`) and check the limits.
    pub fn open(
        path: &Path,
        sniffed: &Probe,
        uri: &str,
        limits: &Limits,
    ) -> Result<Picture, JobError> {
        let req = session::request(path, Mode::Still, uri);
        let (session, header) = Session::open(req, &Settings::from_limits(limits), uri)?;
        let info = header
            .video
            .ok_or_else(|| JobError::CorruptInput("the file holds no picture".into()))?;
        let probe = Probe {
            width: info.width,
            height: info.height,
            orientation: info.display_matrix.as_ref().map_or(1, orientation_of),
            frames: 1,
            ..sniffed.clone()
        };
        probe::check_limits(&probe, limits)?;
        Ok(Picture {
            session,
            info,
            probe,
        })
    }

    /// The codec of the picture (`hevc`, `av1`).
    pub fn codec(&self) -> &str {
        &self.info.codec
    }

    /// Bits per sample.
    pub fn bit_depth(&self) -> u8 {
        self.info.bit_depth
    }

    /// Tiles across and down, for a grid picture.
    pub fn grid(&self) -> Option<(u32, u32)> {
        self.info.grid
    }

    /// Decode it: upright pixels, with the source's ICC profile and EXIF.
    pub fn decode(mut self) -> Result<Decoded, JobError> {
        self.session.start(Start {
            width: self.info.width,
            height: self.info.height,
            audio: false,
            windows: Vec::new(),
        })?;
        let mut picture: Option<(PictureHead, Vec<u8>)> = None;
        while let Some(ev) = self.session.next_event()? {
            match ev {
                Event::Picture(head, data) => picture = Some((head, data)),
                Event::Done(_) => break,
                Event::Frame(..) | Event::Audio(..) => {}
            }
        }
        let (head, data) = picture
            .ok_or_else(|| JobError::CorruptInput("the picture could not be decoded".into()))?;
        if (head.width, head.height) != (self.info.width, self.info.height) {
            return Err(JobError::DecoderCrashed(format!(
                "the decoder process returned a {}x{} picture for a {}x{} one",
                head.width, head.height, self.info.width, self.info.height
            )));
        }
        let pixels = upright(
            Pixels {
                width: head.width,
                height: head.height,
                channels: head.channels,
                data,
            },
            self.probe.orientation,
        )?;
        Ok(Decoded {
            pixels,
            icc: self.info.icc.take(),
            exif: self.info.exif.take(),
            shrink: 1,
            notes: Vec::new(),
        })
    }
}

/// Apply an EXIF orientation to pixels.
fn upright(p: Pixels, orientation: u8) -> Result<Pixels, JobError> {
    let Some(o) = image::metadata::Orientation::from_exif(orientation) else {
        return Ok(p);
    };
    if orientation == 1 {
        return Ok(p);
    }
    let img = if p.channels == 4 {
        image::RgbaImage::from_raw(p.width, p.height, p.data).map(image::DynamicImage::ImageRgba8)
    } else {
        image::RgbImage::from_raw(p.width, p.height, p.data).map(image::DynamicImage::ImageRgb8)
    };
    let mut img =
        img.ok_or_else(|| JobError::CorruptInput("a picture whose size does not add up".into()))?;
    img.apply_orientation(o);
    let channels = if img.color().has_alpha() { 4 } else { 3 };
    let (width, height) = (img.width(), img.height());
    let data = if channels == 4 {
        img.into_rgba8().into_raw()
    } else {
        img.into_rgb8().into_raw()
    };
    Ok(Pixels {
        width,
        height,
        channels,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matrices_map_to_exif_orientations() {
        let one = 0x10000;
        assert_eq!(orientation_of(&[one, 0, 0, 0, one, 0, 0, 0, 1 << 30]), 1);
        assert_eq!(orientation_of(&[0, one, 0, -one, 0, 0, 0, 0, 1 << 30]), 6);
        assert_eq!(orientation_of(&[-one, 0, 0, 0, -one, 0, 0, 0, 1 << 30]), 3);
        assert_eq!(orientation_of(&[0, -one, 0, one, 0, 0, 0, 0, 1 << 30]), 8);
    }
}
