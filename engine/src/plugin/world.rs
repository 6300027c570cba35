//! The three plugin worlds, and telling which one a component implements (and at which WIT
//! version) from its exports alone.

use semver::Version;
use serde::{Deserialize, Serialize};

/// WIT package versions of `mediaflow:plugin` this engine hosts, oldest first; the last is
/// `wit/plugin.wit`, the one the host's bindings are generated from. Older entries are
/// additive predecessors (frozen under `wit/frozen/`) that link against the newest through
/// wasmtime's semver-compatible name matching. A component built against any other version —
/// a newer patch this engine predates, or an incompatible line — is refused by name.
pub const HOSTED_WIT_VERSIONS: &[&str] = &["0.1.0", "0.1.1"];

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

/// Whether a component built against WIT `version` can be hosted: it is one of
/// [`HOSTED_WIT_VERSIONS`].
pub fn is_hosted(version: &Version) -> bool {
    HOSTED_WIT_VERSIONS
        .iter()
        .filter_map(|v| Version::parse(v).ok())
        .any(|host| host == *version)
}

/// The world (and WIT version) a component implements, from its export names. `None` when no
/// export is a hosted mediaflow world, or when it exports more than one.
pub fn detect<'a>(exports: impl IntoIterator<Item = &'a str>) -> Option<(World, Version)> {
    let mut found = None;
    for (world, version) in mediaflow_exports(exports) {
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

/// The first mediaflow world a component exports at a version this engine does not host (for
/// a precise refusal when [`detect`] finds nothing).
pub fn detect_unhosted<'a>(exports: impl IntoIterator<Item = &'a str>) -> Option<(World, Version)> {
    mediaflow_exports(exports).find(|(_, v)| !is_hosted(v))
}

/// Every `mediaflow:plugin/<world export>@<version>` among `exports`, at any version.
fn mediaflow_exports<'a>(
    exports: impl IntoIterator<Item = &'a str>,
) -> impl Iterator<Item = (World, Version)> {
    exports.into_iter().filter_map(|name| {
        let (iface, version) = name.split_once('@')?;
        let world = World::ALL
            .into_iter()
            .find(|w| w.export_interface() == iface)?;
        Some((world, Version::parse(version).ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_world_from_its_export() {
        let (w, v) = detect(["mediaflow:plugin/watermark@0.1.0"]).expect("detected");
        assert_eq!((w, v.to_string().as_str()), (World::Watermarker, "0.1.0"));
        let (w, v) = detect(["mediaflow:plugin/extractor@0.1.1"]).expect("detected");
        assert_eq!(
            (w, v.to_string().as_str()),
            (World::MetadataExtractor, "0.1.1")
        );
    }

    #[test]
    fn unknown_or_unhosted_or_ambiguous_exports_are_refused() {
        assert!(detect(["wasi:cli/run@0.2.6"]).is_none());
        assert!(detect(["mediaflow:plugin/extractor@0.2.0"]).is_none());
        // A newer patch than this engine knows may import host functions it lacks.
        assert!(detect(["mediaflow:plugin/extractor@0.1.2"]).is_none());
        assert_eq!(
            detect_unhosted(["wasi:cli/run@0.2.6", "mediaflow:plugin/extractor@0.1.2"])
                .map(|(w, v)| (w, v.to_string())),
            Some((World::MetadataExtractor, "0.1.2".to_string()))
        );
        assert!(
            detect([
                "mediaflow:plugin/extractor@0.1.0",
                "mediaflow:plugin/notifier@0.1.0"
            ])
            .is_none()
        );
    }

    #[test]
    fn the_newest_hosted_version_is_the_contract_in_wit() {
        let wit = include_str!("../../../wit/plugin.wit");
        let package = wit
            .lines()
            .find_map(|l| l.trim().strip_prefix("package mediaflow:plugin@"))
            .map(|v| v.trim_end_matches(';'));
        assert_eq!(package, HOSTED_WIT_VERSIONS.last().copied());
        for frozen in &HOSTED_WIT_VERSIONS[..HOSTED_WIT_VERSIONS.len() - 1] {
            let path = format!(
                "{}/../wit/frozen/{frozen}/plugin.wit",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                text.contains(&format!("package mediaflow:plugin@{frozen};")),
                "{path} holds the frozen {frozen} contract"
            );
        }
    }
}
