//! What the engine and its decoder child say to each other. The engine writes one JSON line
//! on the child's stdin ([`Request`]); the child answers on stdout with a [`Header`]
//! describing the source; the engine checks it against the limits and writes a second line
//! ([`Start`]) — or kills the child; then the child streams frames, audio packets (or one
//! picture) and ends with a [`Summary`] or an [`Failure`]. Every message on stdout is a tag
//! byte, a little-endian `u32` length and that many bytes; frames and pictures are raw
//! planes behind a small fixed header, everything else JSON.

use serde::{Deserialize, Serialize};

/// Largest message either side accepts (a 16K 4:2:0 frame is ~200 MiB; anything bigger is
/// refused by the limits long before).
pub const MAX_MESSAGE: u32 = 512 << 20;

/// Tags on stdout.
pub mod tag {
    /// [`super::Header`] (JSON).
    pub const HEADER: u8 = b'H';
    /// A video frame: [`super::FrameHead`] then the Y, U and V planes.
    pub const FRAME: u8 = b'V';
    /// An audio packet: [`super::AudioHead`] then the AAC frame.
    pub const AUDIO: u8 = b'A';
    /// A still picture: [`super::PictureHead`] then its pixels.
    pub const PICTURE: u8 = b'P';
    /// [`super::Summary`] (JSON): the decode finished.
    pub const DONE: u8 = b'E';
    /// [`super::Failure`] (JSON): the decode failed for a reason the child understood.
    pub const FAILED: u8 = b'X';
}

/// What to decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The source file.
    pub path: std::path::PathBuf,
    /// Video (frames and audio) or a still (one picture).
    pub mode: Mode,
    /// Memory the child may map, bytes (enforced with `RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Largest picture (width × height) the child will allocate for.
    pub max_pixels: u64,
    /// Largest width or height.
    pub max_dimension: u32,
    /// Most video frames (a container that doesn't count them is scanned, up to this).
    #[serde(default)]
    pub max_frames: u64,
    /// A test-only fault to inject (`crash` or `hang`), honoured only when the engine was
    /// asked for it (see `super::FAULT_ENV`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// What kind of decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A movie: the best video stream and the default audio stream.
    Video,
    /// A still image in a video-codec container (HEIF/HEIC, AVIF).
    Still,
}

/// What the source holds, from its headers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Header {
    /// The demuxer that read it (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, `mpegts`, `avi`).
    pub demuxer: String,
    /// Container duration, seconds.
    pub duration_s: Option<f64>,
    /// The video (or the still's picture).
    pub video: Option<VideoInfo>,
    /// The audio stream used, if any.
    pub audio: Option<AudioInfo>,
    /// Audio streams present.
    pub audio_streams: u32,
}

/// The video stream (or still picture).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VideoInfo {
    /// Codec (`h264`, `hevc`, `vp9`, `av1`, `prores`, …).
    pub codec: String,
    /// Profile, when known (`High 10`, `Main 10`, `Profile 2`, …).
    pub profile: Option<String>,
    /// Stored width (before rotation and pixel aspect).
    pub width: u32,
    /// Stored height.
    pub height: u32,
    /// Sample (pixel) aspect ratio, `(num, den)`; `(1, 1)` for square pixels.
    pub sar: (u32, u32),
    /// Decoder output pixel format (`yuv420p10le`, …).
    pub pix_fmt: String,
    /// Bits per sample.
    pub bit_depth: u8,
    /// Chroma subsampling, `4:2:0`, `4:2:2`, `4:4:4` (or `4:0:0`).
    pub chroma: String,
    /// YCbCr matrix as FFmpeg names it (`bt709`, `bt470bg`, `bt2020nc`, `unknown`…).
    pub matrix: String,
    /// Primaries (`bt709`, `bt2020`, …).
    pub primaries: String,
    /// Transfer (`bt709`, `smpte2084`, `arib-std-b67`, …).
    pub transfer: String,
    /// Full-range samples.
    pub full_range: bool,
    /// `pq`, `hlg`, or none for SDR.
    pub hdr: Option<String>,
    /// Dolby Vision `(profile, level, base-layer compatibility id)`.
    pub dolby_vision: Option<(u8, u8, u8)>,
    /// Content peak for PQ (mastering display or MaxCLL), cd/m².
    pub peak_nits: Option<f64>,
    /// The display matrix (`tkhd` layout), when the container has one.
    pub display_matrix: Option<[i32; 9]>,
    /// Average frames per second (0 when unknown).
    pub fps: f64,
    /// The stream's base frame rate (FFmpeg's `r_frame_rate`: the lowest rate whose ticks
    /// hold every picture's time), above the average on a variable frame rate; 0 when unknown
    /// or interlaced (where it may be the field rate).
    #[serde(default)]
    pub base_fps: f64,
    /// Frames, counted by the container or estimated from the duration.
    pub frames: u64,
    /// Whether the container says frames are counted exactly (MP4/MOV sample tables).
    pub frames_exact: bool,
    /// Duration found by reading the whole container (when its headers had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanned_duration_s: Option<f64>,
    /// When the stream starts, in [`TIMESCALE`] units from the container's zero.
    pub start: i64,
    /// Interlaced (field order signalled).
    pub interlaced: bool,
    /// Has alpha (still pictures).
    pub alpha: bool,
    /// EXIF (stills; TIFF header first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exif: Option<Vec<u8>>,
    /// ICC profile (stills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icc: Option<Vec<u8>>,
    /// A tiled (grid) picture: tiles across × down.
    pub grid: Option<(u32, u32)>,
}

/// The audio stream the outputs get.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AudioInfo {
    /// Source codec (`aac`, `mp3`, `opus`, `pcm_s16le`, …).
    pub codec: String,
    /// Source sample rate.
    pub source_rate: u32,
    /// Source channels.
    pub channels: u32,
    /// Copied as is (AAC) rather than re-encoded to AAC-LC.
    pub copied: bool,
    /// The AAC AudioSpecificConfig of what is sent.
    pub asc: Vec<u8>,
    /// Sample rate of what is sent (packet times are in samples at this rate).
    pub rate: u32,
    /// Channels of what is sent.
    pub out_channels: u32,
    /// Samples per AAC frame.
    pub frame_samples: u32,
}

/// The engine's go-ahead.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Start {
    /// Frame width to deliver (the source is scaled to it).
    pub width: u32,
    /// Frame height to deliver.
    pub height: u32,
    /// Send the audio.
    pub audio: bool,
    /// Only these stretches of the video, in order (no audio): a sample of the source. Empty:
    /// all of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
}

/// A stretch of the video, from its first picture's time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Where it starts, seconds.
    pub from_s: f64,
    /// How long it lasts, seconds.
    pub seconds: f64,
}

/// The fixed part of a frame message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Presentation time, in [`TIMESCALE`] units from the container's zero.
    pub pts: i64,
    /// The decoder concealed damage in it.
    pub damaged: bool,
    /// Luma width.
    pub width: u32,
    /// Luma height.
    pub height: u32,
}

/// Video timestamps on the pipe are in this timescale (90 kHz, MPEG's).
pub const TIMESCALE: u32 = 90_000;

impl FrameHead {
    /// Encoded size.
    pub const LEN: usize = 8 + 1 + 4 + 4;

    /// Bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.pts.to_le_bytes());
        b[8] = u8::from(self.damaged);
        b[9..13].copy_from_slice(&self.width.to_le_bytes());
        b[13..17].copy_from_slice(&self.height.to_le_bytes());
        b
    }

    /// From bytes (`None` if short).
    pub fn decode(b: &[u8]) -> Option<Self> {
        Some(FrameHead {
            pts: i64::from_le_bytes(b.get(0..8)?.try_into().ok()?),
            damaged: *b.get(8)? != 0,
            width: u32::from_le_bytes(b.get(9..13)?.try_into().ok()?),
            height: u32::from_le_bytes(b.get(13..17)?.try_into().ok()?),
        })
    }
}

/// The fixed part of an audio message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioHead {
    /// Presentation time in samples (at [`AudioInfo::rate`]) from the container's zero;
    /// negative for encoder priming.
    pub pts: i64,
    /// Duration in samples.
    pub duration: u32,
}

impl AudioHead {
    /// Encoded size.
    pub const LEN: usize = 12;

    /// Bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.pts.to_le_bytes());
        b[8..12].copy_from_slice(&self.duration.to_le_bytes());
        b
    }

    /// From bytes.
    pub fn decode(b: &[u8]) -> Option<Self> {
        Some(AudioHead {
            pts: i64::from_le_bytes(b.get(0..8)?.try_into().ok()?),
            duration: u32::from_le_bytes(b.get(8..12)?.try_into().ok()?),
        })
    }
}

/// The fixed part of a still picture: 8-bit RGB or RGBA, tightly packed, as stored (the
/// display matrix in the header says how to turn it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureHead {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// 3 (RGB) or 4 (RGBA).
    pub channels: u8,
}

impl PictureHead {
    /// Encoded size.
    pub const LEN: usize = 9;

    /// Bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&self.width.to_le_bytes());
        b[4..8].copy_from_slice(&self.height.to_le_bytes());
        b[8] = self.channels;
        b
    }

    /// From bytes.
    pub fn decode(b: &[u8]) -> Option<Self> {
        Some(PictureHead {
            width: u32::from_le_bytes(b.get(0..4)?.try_into().ok()?),
            height: u32::from_le_bytes(b.get(4..8)?.try_into().ok()?),
            channels: *b.get(8)?,
        })
    }
}

/// How the decode went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Video packets read.
    pub packets: u64,
    /// Packets the decoder rejected outright.
    pub rejected_packets: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Frames delivered with concealed damage.
    pub damaged_frames: u64,
    /// The file was cut short: what showed it (its index or stated duration promised more
    /// video than it holds, or reading stopped at damaged container data).
    pub truncated: Option<String>,
    /// Frames that were deinterlaced.
    pub deinterlaced: u64,
}

/// A failure the child understood.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// `corrupt_input`, `unsupported_codec`, `unsupported_format`, `limit_exceeded`,
    /// `decoder_limit`.
    pub code: String,
    /// Plain words.
    pub message: String,
}
