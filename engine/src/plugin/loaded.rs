//! A loaded plugin ([`Plugin`]): its identity and limits ([`PluginSpec`]), its world, digest
//! and compiled, linked `InstancePre`. Cheap to clone; [`Plugin::instantiate`] gives a fresh
//! instance for the calls of one job ([`super::instance`]).

use super::bindings::{extractor, notifier, types, watermarker};
use super::error::{PluginError, PluginErrorKind};
use super::instance::PluginInstance;
use super::limits::PluginLimits;
use super::source::SourceHandle;
use super::state::HostState;
use super::world::World;
use semver::Version;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::Engine;

/// What to load: a plugin's identity, configuration and limits.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Plugin name (`exif`).
    pub name: String,
    /// Plugin version (`1.0.0`).
    pub version: String,
    /// Configuration the guest sees through `host.config`.
    pub config: BTreeMap<String, String>,
    /// Limits per instance and call.
    pub limits: PluginLimits,
    /// Refuse the component unless it implements this world.
    pub expect: Option<World>,
}

impl PluginSpec {
    /// A spec with default limits and no configuration.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            config: BTreeMap::new(),
            limits: PluginLimits::default(),
            expect: None,
        }
    }

    pub(super) fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// The world-typed `InstancePre` of a plugin.
pub(super) enum Pre {
    Extractor(extractor::MetadataExtractorPre<HostState>),
    Watermarker(watermarker::WatermarkerPre<HostState>),
    Notifier(notifier::NotificationRulePre<HostState>),
}

/// What every clone of a [`Plugin`] shares.
pub(super) struct PluginInner {
    pub label: String,
    pub spec: PluginSpec,
    pub digest: String,
    pub world: World,
    pub wit_version: Version,
    pub size: u64,
    pub cached: bool,
    pub compile_ms: f64,
    pub engine: Engine,
    pub pre: Arc<Pre>,
}

/// A loaded plugin: compiled, linked, ready to instantiate. Cheap to clone; a job keeps the
/// `Plugin` it started with even if the registry swaps in a new version meanwhile.
#[derive(Clone)]
pub struct Plugin {
    pub(super) inner: Arc<PluginInner>,
}

impl From<PluginInner> for Plugin {
    fn from(inner: PluginInner) -> Plugin {
        Plugin {
            inner: Arc::new(inner),
        }
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("plugin", &self.inner.label)
            .field("world", &self.inner.world)
            .field("digest", &self.inner.digest)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Plugin name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }
    /// Plugin version.
    pub fn version(&self) -> &str {
        &self.inner.spec.version
    }
    /// `sha256:<hex>` of the wasm bytes.
    pub fn digest(&self) -> String {
        format!("sha256:{}", self.inner.digest)
    }
    /// The world it implements.
    pub fn world(&self) -> World {
        self.inner.world
    }
    /// The `mediaflow:plugin` WIT version it was built against.
    pub fn wit_version(&self) -> &Version {
        &self.inner.wit_version
    }
    /// Size of the wasm in bytes.
    pub fn size(&self) -> u64 {
        self.inner.size
    }
    /// Whether the compiled code came from the on-disk cache.
    pub fn from_cache(&self) -> bool {
        self.inner.cached
    }
    /// Time spent compiling or loading from cache, in milliseconds.
    pub fn compile_ms(&self) -> f64 {
        self.inner.compile_ms
    }
    /// The limits in force.
    pub fn limits(&self) -> PluginLimits {
        self.inner.spec.limits
    }

    /// The same compiled plugin with `config` laid over its configuration and, if given,
    /// other limits (a profile's settings). Cheap: the compiled code is shared.
    pub fn with_overrides(
        &self,
        config: &BTreeMap<String, String>,
        limits: Option<PluginLimits>,
    ) -> Plugin {
        let mut spec = self.inner.spec.clone();
        spec.config
            .extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(l) = limits {
            spec.limits = l;
        }
        let i = &self.inner;
        Plugin {
            inner: Arc::new(PluginInner {
                label: i.label.clone(),
                spec,
                digest: i.digest.clone(),
                world: i.world,
                wit_version: i.wit_version.clone(),
                size: i.size,
                cached: i.cached,
                compile_ms: i.compile_ms,
                engine: i.engine.clone(),
                pre: i.pre.clone(),
            }),
        }
    }

    pub(super) fn err(&self, kind: PluginErrorKind) -> PluginError {
        PluginError::new(&self.inner.label, kind)
    }

    /// A fresh instance (new `Store`, fresh memory) for the calls of one job.
    pub fn instantiate(&self) -> Result<PluginInstance, PluginError> {
        PluginInstance::new(self)
    }

    /// One-shot: instantiate, extract, drop.
    pub fn extract(
        &self,
        info: &types::MediaInfo,
        source: &SourceHandle,
    ) -> Result<Vec<types::MetadataEntry>, PluginError> {
        self.instantiate()?.extract(info, source)
    }

    /// One-shot: instantiate, draw, drop.
    pub fn draw(
        &self,
        info: &types::MediaInfo,
        target: types::Size,
    ) -> Result<Option<types::Overlay>, PluginError> {
        self.instantiate()?.draw(info, target)
    }

    /// One-shot: instantiate, evaluate, drop.
    pub fn evaluate(
        &self,
        event: &types::JobEvent,
    ) -> Result<Vec<types::Notification>, PluginError> {
        self.instantiate()?.evaluate(event)
    }
}
