//! The plugins an engine can use, by name and version, and resolving a profile's
//! `name@requirement` to the highest matching version. Today the catalog holds the bundled
//! first-party plugins; the S3/filesystem registry adds published ones.

use super::manifest::{PluginManifest, flatten_config};
use super::{Plugin, PluginError, PluginHost, PluginSpec, bundled};
use crate::config::PluginUse;
use std::collections::BTreeMap;

/// Loaded plugins by name, each with every version, highest last.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    plugins: BTreeMap<String, Vec<(semver::Version, Plugin)>>,
}

impl Catalog {
    /// A catalog of the bundled plugins, compiled (or loaded from the cache) by `host`.
    pub fn bundled(host: &PluginHost) -> Result<Catalog, PluginError> {
        let mut c = Catalog::default();
        for b in bundled::all() {
            let plugin = host.load(spec_for(&b.manifest), b.wasm)?;
            c.insert(b.manifest.version.clone(), plugin);
        }
        Ok(c)
    }

    /// Add the plugin in `dir` (`plugin.toml` + `plugin.wasm`): validated (manifest, digest if
    /// the manifest states one, declared world) before it is added.
    pub fn load_dir(
        &mut self,
        host: &PluginHost,
        dir: &std::path::Path,
    ) -> Result<(), PluginError> {
        let label = dir.display().to_string();
        let io = |e: String| PluginError::new(&label, super::PluginErrorKind::Io(e));
        let text = std::fs::read_to_string(dir.join("plugin.toml"))
            .map_err(|e| io(format!("plugin.toml: {e}")))?;
        let manifest = PluginManifest::parse(&text).map_err(|e| io(e.to_string()))?;
        let wasm =
            std::fs::read(dir.join("plugin.wasm")).map_err(|e| io(format!("plugin.wasm: {e}")))?;
        if let Some(expected) = &manifest.sha256 {
            use sha2::Digest;
            let actual = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&wasm)));
            if *expected != actual {
                return Err(PluginError::new(
                    format!("{}@{}", manifest.name, manifest.version),
                    super::PluginErrorKind::Invalid(format!(
                        "digest mismatch: plugin.toml says {expected}, plugin.wasm is {actual}"
                    )),
                ));
            }
        }
        let plugin = host.load(spec_for(&manifest), &wasm)?;
        self.insert(manifest.version.clone(), plugin);
        Ok(())
    }

    /// Add (or replace) a version of a plugin.
    pub fn insert(&mut self, version: semver::Version, plugin: Plugin) {
        let versions = self.plugins.entry(plugin.name().to_string()).or_default();
        versions.retain(|(v, _)| *v != version);
        versions.push((version, plugin));
        versions.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// The highest version of `name` matching `req`.
    pub fn resolve(&self, name: &str, req: &semver::VersionReq) -> Option<&Plugin> {
        self.plugins
            .get(name)?
            .iter()
            .rev()
            .find(|(v, _)| req.matches(v))
            .map(|(_, p)| p)
    }

    /// A profile's plugin use resolved, with the profile's config and limits applied.
    pub fn resolve_use(&self, u: &PluginUse) -> Option<Plugin> {
        let p = self.resolve(&u.plugin.name, &u.plugin.req)?;
        Some(p.with_overrides(&flatten_config(&u.config), u.limits))
    }

    /// Every (name, version) held.
    pub fn list(&self) -> Vec<(String, semver::Version)> {
        self.plugins
            .iter()
            .flat_map(|(n, vs)| vs.iter().map(move |(v, _)| (n.clone(), v.clone())))
            .collect()
    }
}

/// The load spec a manifest describes.
pub fn spec_for(m: &PluginManifest) -> PluginSpec {
    let mut spec = PluginSpec::new(&m.name, m.version.to_string());
    spec.config = m.config_strings();
    spec.limits = m.limits;
    spec.expect = Some(m.world);
    spec
}
