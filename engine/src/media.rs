//! Media processing: probing sources, decoding images, resizing, blending overlays and
//! encoding renditions. Pure functions over files and pixel buffers; no storage, no plugins.
//! What C libraries decode (FFmpeg: video, HEIF, AVIF) runs in a child process per decode:
//! [`decoder`].

pub mod container;
pub mod decode;
pub mod decoder;
pub mod encode;
pub mod overlay;
pub mod probe;
pub mod resize;
pub mod still;
pub mod video;

/// An 8-bit image in memory: RGB or RGBA, rows top to bottom, no padding.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 3 (RGB) or 4 (RGBA).
    pub channels: u8,
    /// `width * height * channels` bytes.
    pub data: Vec<u8>,
}

impl Pixels {
    /// Whether there is an alpha channel.
    pub fn has_alpha(&self) -> bool {
        self.channels == 4
    }
}
