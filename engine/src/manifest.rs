//! `manifest.json`: one per job, written last, marking completion (schema 1, DESIGN §9).
//! Fields are only ever added, never renamed.

use crate::error::{ErrorClass, JobError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Current schema version.
pub const SCHEMA: u32 = 1;

/// A job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// Job id.
    pub job_id: String,
    /// Outcome.
    pub status: Status,
    /// The source (for images to video: the first image).
    pub source: Source,
    /// Every source, when the job has several (images to video), in order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub sources: Vec<Source>,
    /// Profile used.
    pub profile: String,
    /// Files produced.
    pub outputs: Vec<Output>,
    /// Metadata by plugin name, then key.
    pub metadata: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// Plugins that took part.
    pub plugins: Vec<PluginRecord>,
    /// Why it failed (status `failed`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorRecord>,
    /// Milliseconds per stage.
    pub timings_ms: BTreeMap<String, f64>,
    /// Things a reader should know that are not errors (e.g. "animated GIF: first frame used",
    /// "metadata plugin exif failed: …").
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notes: Vec<String>,
}

/// `succeeded` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every output was written.
    Succeeded,
    /// The job failed; see `error`.
    Failed,
}

impl Status {
    /// `succeeded` or `failed`, as in the manifest and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The source file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Where it came from.
    pub uri: String,
    /// Its ETag (storage version), if known.
    pub etag: String,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of its bytes (hex).
    pub sha256: String,
    /// What probing found (absent when probing failed).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub media: Option<Media>,
}

/// Probed media facts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Media {
    /// `image` or `video`.
    pub kind: String,
    /// Container/image format.
    pub format: String,
    /// Video codec.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub codec: Option<String>,
    /// Display width (orientation applied).
    pub width: u32,
    /// Display height (orientation applied).
    pub height: u32,
    /// Seconds (video).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration_s: Option<f64>,
    /// Frames per second (video).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fps: Option<f64>,
    /// Whether there is audio.
    pub has_audio: bool,
    /// Frames in the source (animated images, video).
    pub frames: u64,
    /// EXIF orientation as stored (1 = upright).
    pub orientation: u8,
    /// Container (video: `mp4`, `mov`, `webm`, `mkv`, `ts`, `avi`; stills decoded by the
    /// isolated decoder: `heif`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub container: Option<String>,
    /// Codec profile (`High 10`, `Main 10`, `Profile 2`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub profile: Option<String>,
    /// Bits per sample of the source's pictures.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bit_depth: Option<u8>,
    /// Chroma subsampling (`4:2:0`, `4:2:2`, `4:4:4`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chroma: Option<String>,
    /// The source's colour description.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub color: Option<Color>,
    /// High dynamic range: `hlg`, `pq`, with Dolby Vision named (`dolby_vision 8.4, hlg`);
    /// absent for SDR.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hdr: Option<String>,
    /// The pictures were tone-mapped to SDR BT.709 for the outputs.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub tone_mapped: bool,
    /// Interlaced source (deinterlaced for the outputs).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub interlaced: bool,
    /// Audio codec of the source (`aac`, `opus`, `pcm_s16le` …); outputs carry AAC.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub audio_codec: Option<String>,
    /// Frames the decoder had to conceal damage in (or lost).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub damaged_frames: Option<u64>,
}

/// A source's colour description, as FFmpeg names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Color {
    /// YCbCr matrix (`bt709`, `bt470bg`, `bt2020nc`, `unknown` …).
    pub matrix: String,
    /// Primaries (`bt709`, `bt2020` …).
    pub primaries: String,
    /// Transfer (`bt709`, `smpte2084`, `arib-std-b67` …).
    pub transfer: String,
    /// `limited` or `full`.
    pub range: String,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// Rendition name.
    pub name: String,
    /// Where it was written.
    pub uri: String,
    /// `image`, `video`, `playlist`, `poster`, `sprite`, `vtt`.
    pub kind: String,
    /// `jpeg`, `png`, `webp`, `mp4`, `m3u8`, `m4s`.
    pub format: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 (hex).
    pub sha256: String,
    /// Bitrate (video).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bitrate_bps: Option<u64>,
    /// The video it carries, as an RFC 6381 codec string (`avc1.4d4c1f`, `av01.0.08M.08`):
    /// on each rung's MP4, HLS playlist, init and media segment.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub codec: Option<String>,
    /// How a rung's bitrate was chosen and what it came to (on each rung's MP4).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rate: Option<RungRate>,
}

/// How a rung's bitrate was chosen, and the bitrate it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungRate {
    /// `fixed` (the rung's bitrate) or `auto` (content-aware: the quality target, capped).
    pub mode: String,
    /// Bits per second asked for: `fixed`, the target; `auto`, the cap.
    pub requested_bps: u64,
    /// `auto`: the quality target (1..=10).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub quality: Option<u8>,
    /// `auto` AV1 rungs: bits per second a constant-quality encode of a sample of the source
    /// spent at the rung's size. Over the cap (by 10 %), hard content: the rung was encoded
    /// at `requested_bps` as a fixed one; else at the quality target under the cap. Absent
    /// on H.264 rungs (a quantiser floor under the cap holds their target).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub probe_bps: Option<u64>,
    /// The video stream's average bits per second as written (audio not counted): for
    /// `auto`, the bitrate the content needed.
    pub video_bps: u64,
}

/// A plugin that took part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `sha256:<hex>` of its wasm.
    pub digest: String,
    /// Its world.
    pub world: String,
    /// Time spent in its calls.
    pub duration_ms: f64,
    /// Set when it failed and the profile said `on_error = "skip"`: why (its output is not in
    /// this job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// Permanent or transient.
    pub class: ErrorClass,
    /// Stable code (see [`JobError::code`]).
    pub code: String,
    /// Plain words.
    pub message: String,
}

impl From<&JobError> for ErrorRecord {
    fn from(e: &JobError) -> Self {
        ErrorRecord {
            class: e.class(),
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
}

impl Manifest {
    /// Serialise as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys and finite floats; serialisation cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}
