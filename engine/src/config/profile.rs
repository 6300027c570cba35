//! Profiles: what to make of a source — renditions (size, fit, format, quality) and which
//! plugins to run (metadata extractors, a watermarker), each named by a semver requirement.

use crate::plugin::Limits;
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
    /// JPEG/WebP quality, 1–100.
    #[serde(default = "default_quality")]
    pub quality: u8,
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
}

impl ImageFormat {
    /// File extension and manifest name.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
        }
    }

    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
        }
    }
}

/// A plugin named by a semver requirement, with its configuration and optional limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginUse {
    /// `name@requirement`, e.g. `exif@^1` (a bare name means any version).
    pub plugin: PluginRef,
    /// Configuration over the plugin's defaults.
    #[serde(default)]
    pub config: toml::Table,
    /// Limits over the plugin's own.
    #[serde(default)]
    pub limits: Option<Limits>,
}

/// `name@requirement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PluginRef {
    /// Plugin name.
    pub name: String,
    /// Version requirement.
    pub req: semver::VersionReq,
}

impl TryFrom<String> for PluginRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (name, req) = match s.split_once('@') {
            Some((n, r)) => (n, r),
            None => (s.as_str(), "*"),
        };
        if !crate::plugin::manifest::valid_name(name) {
            return Err(format!("{s:?}: plugin name must be a-z, 0-9 and '-'"));
        }
        let req = semver::VersionReq::parse(req)
            .map_err(|e| format!("{s:?}: bad version requirement: {e}"))?;
        Ok(PluginRef {
            name: name.to_string(),
            req,
        })
    }
}

impl From<PluginRef> for String {
    fn from(r: PluginRef) -> String {
        format!("{}@{}", r.name, r.req)
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
