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

#[cfg(test)]
mod tests {
    #[test]
    fn every_bundled_manifest_parses() {
        assert_eq!(super::all().len(), super::BUNDLED.len());
        assert!(super::get("exif").is_some());
    }
}
