//! The plugins an engine can use, by name and version, and resolving a profile's
//! `name@requirement` to the highest matching version (or `name@channel` to the version the
//! channel names). A catalog is immutable once built: the registry builds a new one when it
//! changes and swaps it into the [`LiveCatalog`], from which each job takes a snapshot when
//! it starts, so a job keeps the plugin versions it started with.

use super::descriptor::{PluginDescriptor, flatten_config};
use super::{Plugin, PluginError, PluginHost, PluginSpec, bundled};
use crate::config::{PluginUse, VersionPin};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Loaded plugins by name, each with every version, highest last; and channels.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    plugins: BTreeMap<String, Vec<(semver::Version, Plugin)>>,
    /// name → channel → version.
    channels: BTreeMap<String, BTreeMap<String, semver::Version>>,
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

    /// The bundled plugins plus those `local` names (`plugins.local`: a `.wasm` file, a
    /// plugin crate — built —, or a directory in the registry's layout; see [`super::dev`]).
    pub fn with_local(
        host: &PluginHost,
        local: &[std::path::PathBuf],
    ) -> Result<Catalog, PluginError> {
        let mut c = Catalog::bundled(host)?;
        for path in local {
            c.load_local(host, path)?;
        }
        Ok(c)
    }

    /// Add the plugin at `path` (see [`super::dev`]): validated (manifest, digest if the
    /// manifest states one, declared world) before it is added.
    pub fn load_local(
        &mut self,
        host: &PluginHost,
        path: &std::path::Path,
    ) -> Result<(), PluginError> {
        let dev = super::dev::DevPlugin::open(path)?;
        if let Some(m) = dev.descriptor.as_ref().filter(|m| m.sha256.is_some()) {
            verify_digest(m, &dev.wasm)?;
        }
        let plugin = host.load(dev.spec(), &dev.wasm)?;
        self.insert(dev.version(), plugin);
        Ok(())
    }

    /// Add (or replace) a version of a plugin.
    pub fn insert(&mut self, version: semver::Version, plugin: Plugin) {
        let versions = self.plugins.entry(plugin.name().to_string()).or_default();
        versions.retain(|(v, _)| *v != version);
        versions.push((version, plugin));
        versions.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// Point `channel` of plugin `name` at `version` (which need not be loaded: resolving the
    /// channel then finds nothing).
    pub fn set_channel(&mut self, name: &str, channel: &str, version: semver::Version) {
        self.channels
            .entry(name.to_string())
            .or_default()
            .insert(channel.to_string(), version);
    }

    /// The version `channel` of `name` names, if the channel exists.
    pub fn channel(&self, name: &str, channel: &str) -> Option<&semver::Version> {
        self.channels.get(name)?.get(channel)
    }

    /// Every (name, channel, version).
    pub fn channels(&self) -> Vec<(String, String, semver::Version)> {
        self.channels
            .iter()
            .flat_map(|(n, cs)| {
                cs.iter()
                    .map(move |(c, v)| (n.clone(), c.clone(), v.clone()))
            })
            .collect()
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

    /// `name` at `pin`: the highest version matching a requirement, or exactly the version a
    /// channel names.
    pub fn resolve_pin(&self, name: &str, pin: &VersionPin) -> Option<&Plugin> {
        match pin {
            VersionPin::Semver(req) => self.resolve(name, req),
            VersionPin::Channel(c) => {
                let version = self.channel(name, c)?;
                self.plugins
                    .get(name)?
                    .iter()
                    .find(|(v, _)| v == version)
                    .map(|(_, p)| p)
            }
        }
    }

    /// A profile's plugin use resolved, with the profile's config and limits applied.
    pub fn resolve_use(&self, u: &PluginUse) -> Option<Plugin> {
        let p = self.resolve_pin(&u.plugin.name, &u.plugin.req)?;
        Some(p.with_overrides(&flatten_config(&u.config), u.limits))
    }

    /// Whether `name@version` is held.
    pub fn contains(&self, name: &str, version: &semver::Version) -> bool {
        self.plugins
            .get(name)
            .is_some_and(|vs| vs.iter().any(|(v, _)| v == version))
    }

    /// `name@version`, if held.
    pub fn get(&self, name: &str, version: &semver::Version) -> Option<&Plugin> {
        self.plugins
            .get(name)?
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, p)| p)
    }

    /// Why `name` at `pin` does not resolve: the versions (or channels) there are, or the
    /// likely name meant.
    pub fn why_missing(&self, name: &str, pin: &VersionPin) -> String {
        let Some(versions) = self.plugins.get(name) else {
            let hint = crate::config::did_you_mean(name, self.plugins.keys().map(String::as_str))
                .map(|n| format!(" — did you mean `{n}`?"))
                .unwrap_or_default();
            return format!("no plugin named `{name}` is loaded{hint}");
        };
        let loaded: Vec<String> = versions.iter().map(|(v, _)| v.to_string()).collect();
        let loaded = loaded.join(", ");
        match pin {
            VersionPin::Semver(req) => {
                format!("the loaded versions of `{name}` are {loaded}, and none matches `{req}`")
            }
            VersionPin::Channel(c) => match self.channel(name, c) {
                Some(v) => {
                    format!("its channel `{c}` names {v}, which is not loaded (loaded: {loaded})")
                }
                None => format!("`{name}` has no channel `{c}` (loaded versions: {loaded})"),
            },
        }
    }

    /// Every (name, version) held.
    pub fn list(&self) -> Vec<(String, semver::Version)> {
        self.plugins
            .iter()
            .flat_map(|(n, vs)| vs.iter().map(move |(v, _)| (n.clone(), v.clone())))
            .collect()
    }
}

/// The catalog new jobs use: replaced whole (atomically) when the registry changes. A job
/// takes a [`LiveCatalog::snapshot`] when it starts and resolves every plugin from it.
#[derive(Debug)]
pub struct LiveCatalog {
    current: RwLock<Arc<Catalog>>,
}

impl LiveCatalog {
    /// Start with `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        Self {
            current: RwLock::new(Arc::new(catalog)),
        }
    }

    /// The current catalog (cheap: an `Arc` clone).
    pub fn snapshot(&self) -> Arc<Catalog> {
        match self.current.read() {
            Ok(c) => c.clone(),
            // A writer cannot panic while holding the lock (it only assigns), but stay total.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Make `catalog` the one new jobs use. Jobs already running keep theirs.
    pub fn replace(&self, catalog: Catalog) {
        let new = Arc::new(catalog);
        match self.current.write() {
            Ok(mut c) => *c = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

/// Where a processor resolves plugins: a fixed catalog (a job's snapshot), or the live one
/// (each call then sees the catalog current at that moment).
#[derive(Debug, Clone)]
pub enum CatalogSource {
    /// Always this catalog.
    Fixed(Arc<Catalog>),
    /// Whatever the registry last swapped in.
    Live(Arc<LiveCatalog>),
}

impl From<&Catalog> for CatalogSource {
    fn from(c: &Catalog) -> Self {
        CatalogSource::Fixed(Arc::new(c.clone()))
    }
}

impl From<Arc<Catalog>> for CatalogSource {
    fn from(c: Arc<Catalog>) -> Self {
        CatalogSource::Fixed(c)
    }
}

impl CatalogSource {
    /// The catalog as of now.
    pub fn snapshot(&self) -> Arc<Catalog> {
        match self {
            CatalogSource::Fixed(c) => c.clone(),
            CatalogSource::Live(l) => l.snapshot(),
        }
    }

    /// [`Catalog::resolve_use`] on the catalog as of now.
    pub fn resolve_use(&self, u: &PluginUse) -> Option<Plugin> {
        self.snapshot().resolve_use(u)
    }
}

/// Check that `wasm` is what `manifest.sha256` says; a manifest without a digest is refused.
pub fn verify_digest(manifest: &PluginDescriptor, wasm: &[u8]) -> Result<(), PluginError> {
    use sha2::Digest;
    let label = format!("{}@{}", manifest.name, manifest.version);
    let Some(expected) = &manifest.sha256 else {
        return Err(PluginError::new(
            label,
            super::PluginErrorKind::BadManifest(
                "no sha256 (a registry plugin must state its digest)".into(),
            ),
        ));
    };
    let found = format!("sha256:{}", hex::encode(sha2::Sha256::digest(wasm)));
    if *expected != found {
        return Err(PluginError::new(
            label,
            super::PluginErrorKind::DigestMismatch {
                expected: expected.clone(),
                found,
            },
        ));
    }
    Ok(())
}

/// The load spec a manifest describes.
pub fn spec_for(m: &PluginDescriptor) -> PluginSpec {
    let mut spec = PluginSpec::new(&m.name, m.version.to_string());
    spec.config = m.config_strings();
    spec.limits = m.limits;
    spec.expect = Some(m.world);
    spec
}
