//! The first-party plugins compiled into the engine binary (`plugins/*`, built for
//! wasm32-wasip2 by `engine/build.rs`): available to every profile with no registry.

use super::descriptor::PluginDescriptor;

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// A plugin shipped inside the engine.
#[derive(Debug, Clone)]
pub struct BundledPlugin {
    /// Its `plugin.toml`.
    pub manifest: PluginDescriptor,
    /// The component bytes.
    pub wasm: &'static [u8],
}

/// Every bundled plugin. A malformed bundled `plugin.toml` is a build defect caught by tests.
pub fn all() -> Vec<BundledPlugin> {
    BUNDLED
        .iter()
        .filter_map(|(toml, wasm)| match PluginDescriptor::parse(toml) {
            Ok(manifest) => Some(BundledPlugin { manifest, wasm }),
            Err(e) => {
                tracing::error!(error = %e, "bundled plugin manifest is invalid");
                None
            }
        })
        .collect()
}

/// The bundled plugin called `name`.
pub fn get(name: &str) -> Option<BundledPlugin> {
    all().into_iter().find(|p| p.manifest.name == name)
}

/// When `name@version` is a newer version of a bundled plugin: what that does to profiles,
/// in words (a warning at publish and at load).
pub fn shadowing(name: &str, version: &semver::Version) -> Option<String> {
    let b = all()
        .into_iter()
        .find(|b| b.manifest.name == name && b.manifest.version < *version)?;
    let v = &b.manifest.version;
    Some(format!(
        "{name}@{version} shadows the bundled {name}@{v}: profiles asking for `{name}@^{}` (the \
         built-in ones too) get {version} instead; pin `{name}@={v}` to keep the bundled one, \
         or publish under another name",
        v.major
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_bundled_manifest_parses() {
        assert_eq!(super::all().len(), super::BUNDLED.len());
        assert!(super::get("exif").is_some());
    }
}
