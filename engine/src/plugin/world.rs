//! The three plugin worlds, and telling which one a component implements (and at which WIT
//! version) from its exports alone.

use semver::Version;
use serde::{Deserialize, Serialize};

/// WIT package versions of `mediaflow:plugin` this engine hosts. A component built against a
/// semver-compatible version (same major; same minor while 0.x) links.
pub const HOSTED_WIT_VERSIONS: &[&str] = &["0.1.0"];

/// A kind of plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Reads the source, returns metadata entries.
    MetadataExtractor,
    /// Returns an overlay per rendition size.
    Watermarker,
    /// Turns job events into notifications.
    NotificationRule,
}

impl World {
    /// Every world.
    pub const ALL: [World; 3] = [
        World::MetadataExtractor,
        World::Watermarker,
        World::NotificationRule,
    ];

    /// The world's WIT name.
    pub fn name(self) -> &'static str {
        match self {
            World::MetadataExtractor => "metadata-extractor",
            World::Watermarker => "watermarker",
            World::NotificationRule => "notification-rule",
        }
    }

    /// The interface the world exports, without version.
    pub fn export_interface(self) -> &'static str {
        match self {
            World::MetadataExtractor => "mediaflow:plugin/extractor",
            World::Watermarker => "mediaflow:plugin/watermark",
            World::NotificationRule => "mediaflow:plugin/notifier",
        }
    }

    /// Parse a world name (`metadata-extractor`, `watermarker`, `notification-rule`).
    pub fn parse(s: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.name() == s)
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a component's WIT version can be hosted.
pub fn is_hosted(version: &Version) -> bool {
    HOSTED_WIT_VERSIONS
        .iter()
        .filter_map(|v| Version::parse(v).ok())
        .any(|host| host.major == version.major && (host.major > 0 || host.minor == version.minor))
}

/// The world (and WIT version) a component implements, from its export names. `None` when no
/// export is a hosted mediaflow world, or when it exports more than one.
pub fn detect<'a>(exports: impl IntoIterator<Item = &'a str>) -> Option<(World, Version)> {
    let mut found = None;
    for name in exports {
        let Some((iface, version)) = name.split_once('@') else {
            continue;
        };
        let Some(world) = World::ALL
            .into_iter()
            .find(|w| w.export_interface() == iface)
        else {
            continue;
        };
        let Ok(version) = Version::parse(version) else {
            continue;
        };
        if !is_hosted(&version) {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some((world, version));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_world_from_its_export() {
        let (w, v) = detect(["mediaflow:plugin/watermark@0.1.0"]).expect("detected");
        assert_eq!((w, v.to_string().as_str()), (World::Watermarker, "0.1.0"));
        assert_eq!(
            detect(["mediaflow:plugin/extractor@0.1.3"]).map(|x| x.0),
            Some(World::MetadataExtractor)
        );
    }

    #[test]
    fn unknown_or_unhosted_or_ambiguous_exports_are_refused() {
        assert!(detect(["wasi:cli/run@0.2.6"]).is_none());
        assert!(detect(["mediaflow:plugin/extractor@0.2.0"]).is_none());
        assert!(
            detect([
                "mediaflow:plugin/extractor@0.1.0",
                "mediaflow:plugin/notifier@0.1.0"
            ])
            .is_none()
        );
    }
}
