//! Profiles: what to make of a source — renditions (size, fit, format, quality) and which
//! plugins to run (metadata extractors, a watermarker), each named by a semver requirement or
//! a registry channel.

use super::PluginLimits;
use serde::{Deserialize, Serialize};

/// A named recipe for a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The image renditions to produce.
    #[serde(default)]
    pub renditions: Vec<Rendition>,
    /// Metadata-extractor plugins run on the source; results go into the manifest.
    #[serde(default)]
    pub metadata: Vec<PluginUse>,
    /// Watermarker plugin, called once per rendition size.
    #[serde(default)]
    pub watermark: Option<PluginUse>,
    /// Copy the source's EXIF into JPEG and PNG outputs (orientation reset to upright).
    /// Default: strip all metadata. ICC profiles are always kept (see README).
    #[serde(default)]
    pub keep_metadata: bool,
    /// Fail the job when a metadata plugin reports an error (default: record it and go on).
    /// Traps and exceeded limits always fail the job.
    #[serde(default)]
    pub strict_metadata: bool,
    /// What to make of video sources (and of several images stitched into a video).
    #[serde(default)]
    pub video: VideoSettings,
    /// Largest upload the job API accepts for this profile, in bytes (413 beyond). Unset:
    /// `api.max_upload_bytes`.
    #[serde(default)]
    pub max_upload_bytes: Option<u64>,
    /// Content types an upload for this profile may declare (415 otherwise; `type/*` matches
    /// a family). Empty: `api.content_types`.
    #[serde(default)]
    pub upload_content_types: Vec<String>,
}

/// The adaptive-bitrate ladder, HLS, poster and thumbnails for video sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoSettings {
    /// Rungs, by the short side of the displayed picture (a 1920×1080 landscape and a
    /// 1080×1920 portrait source are both "1080"). Rungs above the source are skipped (never
    /// upscaled); a source smaller than every rung gets one rung at its own size.
    pub ladder: Vec<Rung>,
    /// Seconds between keyframes, aligned across rungs (HLS segments start on them).
    pub keyframe_interval_s: f64,
    /// Target HLS segment length in seconds (a whole number of keyframe intervals).
    pub segment_s: f64,
    /// Write HLS (CMAF fMP4 segments, a playlist per rung, a master playlist).
    pub hls: bool,
    /// Seconds into the video for the poster frame (clamped to the last frame).
    pub poster_offset_s: f64,
    /// JPEG quality for the poster and the thumbnail sprite.
    pub jpeg_quality: u8,
    /// Width of each seek-preview thumbnail in the sprite (height follows the aspect ratio).
    pub thumbnail_width: u32,
    /// Seconds between seek-preview thumbnails (raised so that at most 100 are made).
    pub thumbnail_interval_s: f64,
    /// Thumbnails per sprite row.
    pub sprite_columns: u32,
    /// How rung bitrates are chosen: `fixed` (default; each rung at its `bitrate_kbps`) or
    /// `auto` (content-aware: each rung encoded to the `quality` target with its
    /// `bitrate_kbps` as a cap, so easy content — a static shot, a slow pan — spends fewer
    /// bits and hard content up to the cap; AV1 rungs first probe a sample of the source to
    /// tell which; the bitrate each rung got is in the manifest).
    pub bitrate: BitrateMode,
    /// The quality target of `bitrate = "auto"`: 1 (fewest bits) … 10 (best picture), one
    /// scale for H.264 and AV1 rungs (each step ~2 H.264 QP, ~4 SVT-AV1 CRF; 9, the default,
    /// is H.264 QP 26 at the finest and AV1 CRF 31 at 1080p — a detailed 1080p picture at
    /// ~41 dB PSNR in H.264, ~43 dB in AV1).
    pub quality: u8,
    /// SVT-AV1 preset for AV1 rungs: 0 (slowest, smallest) … 13 (fastest). The default, 12,
    /// costs about x264 veryfast's CPU time; 10 and 11 save a few percent more bits for about
    /// twice that (tests/bench/video.sh measures it).
    pub av1_preset: u8,
    /// Images to video: seconds each image is shown.
    pub slideshow_image_s: f64,
    /// Images to video: crossfade between images, in seconds (0 = cut).
    pub slideshow_crossfade_s: f64,
    /// Images to video: output size (images are letterboxed into it) and frame rate.
    pub slideshow_width: u32,
    /// See `slideshow_width`.
    pub slideshow_height: u32,
    /// See `slideshow_width`.
    pub slideshow_fps: u32,
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Short side of the displayed picture, in pixels (720 → 1280×720 or 720×1280).
    pub size: u32,
    /// Target video bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Video codec: `h264` (default; plays everywhere) or `av1` (SVT-AV1: about half the
    /// bits for the same picture, played where the device decodes AV1). One size may have a
    /// rung of each.
    #[serde(default)]
    pub codec: VideoCodec,
    /// Name (file stem); default `<size>p`, `<size>p-av1` for AV1.
    #[serde(default)]
    pub name: Option<String>,
}

/// How a ladder's bitrates are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitrateMode {
    /// Each rung at its `bitrate_kbps` (average).
    #[default]
    Fixed,
    /// Each rung at the profile's `quality`, at most its `bitrate_kbps`.
    Auto,
}

/// A rung's video codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// H.264 Constrained Baseline (OpenH264).
    #[default]
    H264,
    /// AV1 Main profile, 8-bit (SVT-AV1).
    Av1,
}

impl VideoCodec {
    /// Its name in profiles and manifests.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::Av1 => "av1",
        }
    }
}

impl Rung {
    /// The rung's name.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| match self.codec {
            VideoCodec::H264 => format!("{}p", self.size),
            VideoCodec::Av1 => format!("{}p-av1", self.size),
        })
    }
}

impl Default for VideoSettings {
    fn default() -> Self {
        let rung = |size, bitrate_kbps| Rung {
            size,
            bitrate_kbps,
            codec: VideoCodec::H264,
            name: None,
        };
        Self {
            ladder: vec![
                rung(1080, 5000),
                rung(720, 3000),
                rung(480, 1200),
                rung(360, 700),
            ],
            keyframe_interval_s: 2.0,
            segment_s: 6.0,
            hls: true,
            poster_offset_s: 1.0,
            jpeg_quality: 85,
            thumbnail_width: 160,
            thumbnail_interval_s: 5.0,
            sprite_columns: 10,
            bitrate: BitrateMode::Fixed,
            quality: 9,
            av1_preset: 12,
            slideshow_image_s: 3.0,
            slideshow_crossfade_s: 0.5,
            slideshow_width: 1280,
            slideshow_height: 720,
            slideshow_fps: 30,
        }
    }
}

impl VideoSettings {
    /// The quality target every rung is encoded to: `Some` only with `bitrate = "auto"`.
    pub fn quality_target(&self) -> Option<u8> {
        (self.bitrate == BitrateMode::Auto).then_some(self.quality)
    }

    /// Check values; the error is (field path, problem).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: String| Err((format!("video.{f}"), m));
        if self.ladder.is_empty() {
            return bad("ladder", "needs at least one rung".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.ladder.iter().enumerate() {
            if !(16..=2160).contains(&r.size) || !r.size.is_multiple_of(2) {
                return bad(
                    &format!("ladder[{i}].size"),
                    format!("{} must be even and within 16..=2160", r.size),
                );
            }
            if !(50..=100_000).contains(&r.bitrate_kbps) {
                return bad(
                    &format!("ladder[{i}].bitrate_kbps"),
                    format!("{} is outside 50..=100000", r.bitrate_kbps),
                );
            }
            if r.codec == VideoCodec::Av1 && r.size < 64 {
                return bad(
                    &format!("ladder[{i}].size"),
                    format!(
                        "{} is below 64, the smallest AV1 picture SVT-AV1 makes",
                        r.size
                    ),
                );
            }
            if !names.insert(r.name()) {
                return bad(
                    &format!("ladder[{i}].name"),
                    format!("{:?} is used twice", r.name()),
                );
            }
        }
        if !(0.1..=60.0).contains(&self.keyframe_interval_s) {
            return bad("keyframe_interval_s", "must be within 0.1..=60".into());
        }
        if self.segment_s < self.keyframe_interval_s || self.segment_s > 60.0 {
            return bad(
                "segment_s",
                "must be at least keyframe_interval_s and at most 60".into(),
            );
        }
        if !(1..=10).contains(&self.quality) {
            return bad("quality", "must be within 1..=10".into());
        }
        if self.av1_preset > 13 {
            return bad("av1_preset", "must be within 0..=13".into());
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad("jpeg_quality", "must be within 1..=100".into());
        }
        if !(16..=1024).contains(&self.thumbnail_width) || self.sprite_columns == 0 {
            return bad(
                "thumbnail_width",
                "thumbnail_width must be within 16..=1024 and sprite_columns at least 1".into(),
            );
        }
        if self.thumbnail_interval_s <= 0.0 || self.poster_offset_s < 0.0 {
            return bad(
                "thumbnail_interval_s",
                "intervals and offsets must be positive".into(),
            );
        }
        if self.slideshow_image_s <= 0.0
            || self.slideshow_crossfade_s < 0.0
            || self.slideshow_crossfade_s * 2.0 > self.slideshow_image_s
        {
            return bad(
                "slideshow_image_s",
                "must be positive, and at least twice slideshow_crossfade_s".into(),
            );
        }
        if !(16..=3840).contains(&self.slideshow_width)
            || !(16..=2160).contains(&self.slideshow_height)
            || !self.slideshow_width.is_multiple_of(2)
            || !self.slideshow_height.is_multiple_of(2)
            || !(1..=60).contains(&self.slideshow_fps)
        {
            return bad(
                "slideshow_width",
                "slideshow size must be even, at most 3840x2160, and fps within 1..=60".into(),
            );
        }
        Ok(())
    }
}

/// One output image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rendition {
    /// Name, unique in the profile; also the output file's stem.
    pub name: String,
    /// Target width in pixels (at least one of width/height).
    #[serde(default)]
    pub width: Option<u32>,
    /// Target height in pixels.
    #[serde(default)]
    pub height: Option<u32>,
    /// How to fit the source into width × height.
    #[serde(default)]
    pub fit: Fit,
    /// Output format.
    pub format: ImageFormat,
    /// JPEG/WebP/AVIF quality, 1–100.
    #[serde(default = "default_quality")]
    pub quality: u8,
    /// AVIF encoder speed, 1 (slowest, smallest) to 10 (fastest); default 8 (see README).
    /// Only AVIF renditions use it.
    #[serde(default)]
    pub speed: Option<u8>,
    /// Progressive JPEG.
    #[serde(default)]
    pub progressive: bool,
    /// Allow making the image larger than the source (default: never upscale).
    #[serde(default)]
    pub upscale: bool,
    /// Apply the profile's watermark to this rendition.
    #[serde(default = "yes")]
    pub watermark: bool,
}

fn default_quality() -> u8 {
    85
}

fn yes() -> bool {
    true
}

/// How a source is fitted to a rendition's box.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Scale to fit inside the box, keeping the aspect ratio.
    #[default]
    Contain,
    /// Scale to fill the box, keeping the aspect ratio, centre-cropping the excess.
    Cover,
    /// Stretch to exactly the box.
    Exact,
}

/// Output image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// JPEG (no alpha: transparent areas are flattened onto white).
    Jpeg,
    /// PNG (lossless, alpha kept).
    Png,
    /// WebP (lossy at `quality`, alpha kept).
    Webp,
    /// AVIF (AV1 at `quality` and `speed`, 8-bit 4:4:4, alpha kept).
    Avif,
}

impl ImageFormat {
    /// File extension and manifest name.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
            ImageFormat::Avif => "avif",
        }
    }

    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
            ImageFormat::Avif => "avif",
        }
    }

    /// MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Avif => "image/avif",
        }
    }
}

/// A plugin named by a semver requirement or a channel, with its configuration and optional
/// limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginUse {
    /// `name@requirement` (`exif@^1`: the highest matching version; a bare name means any
    /// version) or `name@channel` (`exif@stable`: the version the registry's channel file
    /// names).
    pub plugin: PluginRef,
    /// Configuration over the plugin's defaults.
    #[serde(default)]
    pub config: toml::Table,
    /// Limits over the plugin's own.
    #[serde(default)]
    pub limits: Option<PluginLimits>,
    /// What a failure of this plugin does to the job — a trap, a timeout, a limit, malformed
    /// or oversized output: `fail` it (the default), or `skip` the plugin (no metadata from it,
    /// or renditions without the watermark) and record that in the manifest. (An error value a
    /// metadata extractor returns, such as "unsupported", is an answer, not a failure: it is
    /// recorded and the job goes on unless the profile sets `strict_metadata`.)
    #[serde(default)]
    pub on_error: OnError,
}

/// What a plugin's failure does to the job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The job fails.
    #[default]
    Fail,
    /// The plugin is skipped; the manifest says so.
    Skip,
}

/// `name@requirement` or `name@channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PluginRef {
    /// Plugin name.
    pub name: String,
    /// Which version.
    pub req: VersionPin,
}

/// How a profile picks a plugin's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPin {
    /// The highest version matching a semver requirement (`^1`, `~1.2`, `=1.2.3`, `*`).
    Semver(semver::VersionReq),
    /// The version a channel file names (`stable`): rollback is rewriting that file.
    Channel(String),
}

impl std::fmt::Display for VersionPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionPin::Semver(r) => write!(f, "{r}"),
            VersionPin::Channel(c) => f.write_str(c),
        }
    }
}

impl TryFrom<String> for PluginRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (name, req) = match s.split_once('@') {
            Some((n, r)) => (n, r),
            None => (s.as_str(), "*"),
        };
        if !super::valid_plugin_name(name) {
            return Err(format!("{s:?}: plugin name must be a-z, 0-9 and '-'"));
        }
        let req = match semver::VersionReq::parse(req) {
            Ok(r) => VersionPin::Semver(r),
            Err(_) if super::valid_plugin_name(req) => VersionPin::Channel(req.to_string()),
            Err(e) => {
                return Err(format!(
                    "{s:?}: bad version requirement ({e}); a channel name is a-z, 0-9 and '-', \
                     starting with a letter"
                ));
            }
        };
        Ok(PluginRef {
            name: name.to_string(),
            req,
        })
    }
}

impl From<PluginRef> for String {
    fn from(r: PluginRef) -> String {
        r.to_string()
    }
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.req)
    }
}

impl Profile {
    /// Check values; the error is (field path within the profile, problem).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.renditions.iter().enumerate() {
            let field = |f: &str| format!("renditions[{i}]{f}");
            if r.width.is_none() && r.height.is_none() {
                return Err((
                    field(""),
                    format!("{:?} needs a width, a height or both", r.name),
                ));
            }
            if r.width == Some(0)
                || r.height == Some(0)
                || r.width.unwrap_or(1) > 16_384
                || r.height.unwrap_or(1) > 16_384
            {
                return Err((
                    field(""),
                    format!("{:?}: width and height must be 1..=16384", r.name),
                ));
            }
            if r.fit != Fit::Contain && (r.width.is_none() || r.height.is_none()) {
                return Err((
                    field(".fit"),
                    format!("{:?}: fit {:?} needs both width and height", r.name, r.fit),
                ));
            }
            if !(1..=100).contains(&r.quality) {
                return Err((
                    field(".quality"),
                    format!("{} is outside 1..=100", r.quality),
                ));
            }
            if let Some(speed) = r.speed
                && !(1..=10).contains(&speed)
            {
                return Err((field(".speed"), format!("{speed} is outside 1..=10")));
            }
            if r.name.is_empty()
                || !r
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err((
                    field(".name"),
                    format!("{:?} must be letters, digits, '-' or '_'", r.name),
                ));
            }
            if !names.insert(r.name.as_str()) {
                return Err((field(".name"), format!("{:?} is used twice", r.name)));
            }
        }
        self.video.validate()?;
        for (i, p) in self
            .metadata
            .iter()
            .chain(self.watermark.iter())
            .enumerate()
        {
            if let Some(l) = &p.limits {
                l.validate()
                    .map_err(|e| (format!("plugins[{i}].limits"), e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_refs_are_semver_requirements_or_channels() {
        let r = |s: &str| PluginRef::try_from(s.to_string());
        assert_eq!(
            r("exif@^1").map(|p| p.req),
            Ok(VersionPin::Semver(
                semver::VersionReq::parse("^1").expect("req")
            ))
        );
        assert_eq!(
            r("exif").map(|p| p.req),
            Ok(VersionPin::Semver(semver::VersionReq::STAR))
        );
        assert_eq!(
            r("exif@stable").map(|p| p.req),
            Ok(VersionPin::Channel("stable".into()))
        );
        assert_eq!(r("exif@stable").map(String::from), Ok("exif@stable".into()));
        assert!(r("exif@Stable!").is_err_and(|e| e.contains("channel name")));
        assert!(r("Exif@^1").is_err());
    }

    #[test]
    fn bitrates_are_fixed_unless_a_profile_says_auto_with_a_quality_from_1_to_10() {
        let v = VideoSettings::default();
        assert_eq!((v.bitrate, v.quality), (BitrateMode::Fixed, 9));
        let auto: VideoSettings = toml::from_str(r#"bitrate = "auto""#).expect("parses");
        assert_eq!((auto.bitrate, auto.quality), (BitrateMode::Auto, 9));
        assert_eq!(auto.validate(), Ok(()));
        for q in [0, 11] {
            let v: VideoSettings = toml::from_str(&format!(
                r#"bitrate = "auto"
quality = {q}"#
            ))
            .expect("parses");
            assert!(
                v.validate()
                    .is_err_and(|(f, m)| f == "video.quality" && m.contains("1..=10")),
                "{q}"
            );
        }
        let bad: Result<VideoSettings, _> = toml::from_str(r#"bitrate = "crf""#);
        assert!(bad.is_err_and(|e| e.to_string().contains("auto")));
    }

    #[test]
    fn rungs_default_to_h264_and_an_av1_rung_of_the_same_size_gets_its_own_name() {
        let v: VideoSettings = toml::from_str(
            r#"ladder = [{ size = 720, bitrate_kbps = 3000 }, { size = 720, bitrate_kbps = 1500, codec = "av1" }]"#,
        )
        .expect("parses");
        assert_eq!(v.ladder[0].codec, VideoCodec::H264);
        assert_eq!(v.ladder[1].codec, VideoCodec::Av1);
        assert_eq!(
            (v.ladder[0].name(), v.ladder[1].name()),
            ("720p".into(), "720p-av1".into())
        );
        assert_eq!(v.validate(), Ok(()));
        let bad: Result<VideoSettings, _> =
            toml::from_str(r#"ladder = [{ size = 720, bitrate_kbps = 3000, codec = "vp9" }]"#);
        assert!(bad.is_err_and(|e| e.to_string().contains("h264")));
        let small: VideoSettings =
            toml::from_str(r#"ladder = [{ size = 48, bitrate_kbps = 100, codec = "av1" }]"#)
                .expect("parses");
        assert!(
            small
                .validate()
                .is_err_and(|(f, m)| f == "video.ladder[0].size" && m.contains("64"))
        );
        let preset: VideoSettings = toml::from_str("av1_preset = 14").expect("parses");
        assert!(
            preset
                .validate()
                .is_err_and(|(f, _)| f == "video.av1_preset")
        );
    }
}
