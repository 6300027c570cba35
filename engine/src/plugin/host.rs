//! The plugin host: one wasmtime `Engine` (pooling allocator, epoch interruption, fuel) and
//! one `Linker` with deny-by-default WASI p2 plus the mediaflow host interfaces ([`super::wit`]).
//! [`PluginHost::load`] compiles a component once per digest (through the on-disk cache),
//! detects its world and keeps an `InstancePre`, giving a [`Plugin`].

use super::bindings::{extractor, notifier, watermarker};
use super::cache::CompileCache;
use super::epoch::EpochTicker;
use super::error::{PluginError, PluginErrorKind};
use super::limits::MAX_MEMORY_BYTES;
use super::loaded::{Plugin, PluginInner, PluginSpec, Pre};
use super::state::HostState;
use super::traps::first_line;
use super::world::{self, World};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Linear memory kept resident per pooled slot between instances.
const KEEP_RESIDENT_BYTES: usize = 4 * 1024 * 1024;
/// Idle pooled slots kept warm (resident) for reuse.
const WARM_SLOTS: u32 = 16;

/// Settings of the plugin host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Directory for compiled plugins; `None` disables the on-disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Largest plugin binary accepted, checked before compiling.
    pub max_wasm_bytes: u64,
    /// Plugin instances that may be alive at once (pool size).
    pub max_instances: u32,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            max_wasm_bytes: 64 * 1024 * 1024,
            max_instances: 128,
        }
    }
}

/// `$XDG_CACHE_HOME/mediaflow/plugins`, else `$HOME/.cache/mediaflow/plugins`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("mediaflow").join("plugins"))
}

/// Errors setting up the host itself (not any one plugin).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// wasmtime refused the engine configuration or the linker setup.
    #[error("plugin host setup failed: {0}")]
    Setup(String),
}

/// The wasmtime engine, linker and cache shared by every plugin.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<CompileCache>,
    max_wasm_bytes: u64,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host with `config`.
    pub fn new(config: &HostConfig) -> Result<Self, HostError> {
        let setup = |e: wasmtime::Error| HostError::Setup(format!("{e:#}"));
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(true)
            .max_wasm_stack(512 * 1024);
        let n = config.max_instances.max(4);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memory_size(MAX_MEMORY_BYTES as usize)
            .max_memories_per_component(8)
            .max_memories_per_module(2)
            .max_tables_per_component(32)
            .max_tables_per_module(8)
            .max_core_instances_per_component(64)
            .table_elements(100_000)
            .max_core_instance_size(4 * 1024 * 1024)
            .max_component_instance_size(4 * 1024 * 1024)
            // Reuse warm slots without page faults: reset only the pages a guest dirtied
            // (PAGEMAP_SCAN on Linux ≥ 6.7) instead of decommitting them.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            // …which bounds what idle slots keep resident to WARM_SLOTS × KEEP_RESIDENT_BYTES.
            .max_unused_warm_slots(WARM_SLOTS)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(setup)?;

        let mut linker = Linker::<HostState>::new(&engine);
        // WASI p2 with nothing granted (see `new_store`); no wasi:http at all.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
        super::wit::add_to_linker(&mut linker).map_err(setup)?;

        let cache = match &config.cache_dir {
            Some(dir) => match CompileCache::new(dir, &engine) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "compiled-plugin cache disabled");
                    None
                }
            },
            None => None,
        };
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            cache,
            max_wasm_bytes: config.max_wasm_bytes,
            _ticker: ticker,
        })
    }

    /// The wasmtime engine (for inspection).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Read and load a plugin file; the size cap is checked before reading it whole.
    pub fn load_file(&self, spec: PluginSpec, path: &Path) -> Result<Plugin, PluginError> {
        let io = |e: std::io::Error| {
            PluginError::new(
                spec.label(),
                PluginErrorKind::Io(format!("{}: {e}", path.display())),
            )
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        self.check_size(&spec, size)?;
        let bytes = std::fs::read(path).map_err(io)?;
        self.load(spec, &bytes)
    }

    fn check_size(&self, spec: &PluginSpec, size: u64) -> Result<(), PluginError> {
        if size > self.max_wasm_bytes {
            return Err(PluginError::new(
                spec.label(),
                PluginErrorKind::TooLarge {
                    size,
                    cap: self.max_wasm_bytes,
                },
            ));
        }
        Ok(())
    }

    /// Compile (or load from cache) a component, detect its world, check it links, and keep an
    /// `InstancePre` for fast instantiation.
    pub fn load(&self, spec: PluginSpec, wasm: &[u8]) -> Result<Plugin, PluginError> {
        let label = spec.label();
        self.check_size(&spec, wasm.len() as u64)?;
        spec.limits.validate().map_err(|e| {
            PluginError::new(&label, PluginErrorKind::Invalid(format!("limits: {e}")))
        })?;
        let started = Instant::now();
        let Compiled {
            component,
            digest,
            cached,
        } = self.compile(&label, wasm)?;
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let (_, export_names) = self.interface_names(&component);
        let exports = || export_names.iter().map(String::as_str);
        let (world, wit_version) = world::detect(exports()).ok_or_else(|| {
            let hosted = world::HOSTED_WIT_VERSIONS.join(", ");
            let kind = match world::detect_unhosted(exports()) {
                Some((world, version)) => PluginErrorKind::UnhostedWitVersion {
                    world: world.name(),
                    version: version.to_string(),
                    hosted,
                },
                None => PluginErrorKind::UnknownWorld {
                    exports: export_names.join(", "),
                    hosted,
                },
            };
            PluginError::new(&label, kind)
        })?;
        if let Some(expected) = spec.expect
            && expected != world
        {
            return Err(PluginError::new(
                &label,
                PluginErrorKind::WrongWorld {
                    expected: expected.name(),
                    found: world.name(),
                },
            ));
        }
        let link =
            |e: wasmtime::Error| PluginError::new(&label, PluginErrorKind::Link(first_line(&e)));
        let pre = self.linker.instantiate_pre(&component).map_err(link)?;
        let pre = match world {
            World::MetadataExtractor => {
                Pre::Extractor(extractor::MetadataExtractorPre::new(pre).map_err(link)?)
            }
            World::Watermarker => {
                Pre::Watermarker(watermarker::WatermarkerPre::new(pre).map_err(link)?)
            }
            World::NotificationRule => {
                Pre::Notifier(notifier::NotificationRulePre::new(pre).map_err(link)?)
            }
        };
        tracing::debug!(plugin = %label, %world, %digest, cached, compile_ms, "plugin loaded");
        Ok(Plugin::from(PluginInner {
            label,
            spec,
            digest,
            world,
            wit_version,
            size: wasm.len() as u64,
            cached,
            compile_ms,
            engine: self.engine.clone(),
            pre: Arc::new(pre),
        }))
    }
}

/// A compiled component and its digest.
pub(crate) struct Compiled {
    pub component: Component,
    /// Hex sha256 of the wasm bytes.
    pub digest: String,
    /// Whether it came from the on-disk cache.
    pub cached: bool,
}

impl PluginHost {
    /// Compile `wasm` (or load its compilation from the cache). No world check.
    pub(crate) fn compile(&self, label: &str, wasm: &[u8]) -> Result<Compiled, PluginError> {
        let digest = hex::encode(Sha256::digest(wasm));
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, &digest))
        {
            return Ok(Compiled {
                component,
                digest,
                cached: true,
            });
        }
        let component = Component::new(&self.engine, wasm).map_err(|e| {
            PluginError::new(label, PluginErrorKind::Invalid(not_a_component(wasm, &e)))
        })?;
        if let Some(cache) = &self.cache {
            cache.store(&digest, &component);
        }
        Ok(Compiled {
            component,
            digest,
            cached: false,
        })
    }

    /// The import and export names of a component.
    pub(crate) fn interface_names(&self, component: &Component) -> (Vec<String>, Vec<String>) {
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        (imports, exports)
    }
}

/// Why `wasm` did not compile as a component, with what to do for the usual causes: a file
/// that is not wasm at all, or a core module (built for `wasm32-wasip1` or `wasm32-unknown-unknown`)
/// where a component (`wasm32-wasip2`) is needed.
fn not_a_component(wasm: &[u8], e: &wasmtime::Error) -> String {
    let full = format!("{e:#}").lines().collect::<Vec<_>>().join("; ");
    match wasm {
        [0, b'a', b's', b'm', 1, 0, 0, 0, ..] => format!(
            "it is a core WebAssembly module, not a component. Build it for wasm32-wasip2 \
             (`cargo build --release --target wasm32-wasip2`, as `mediaflow plugin new` sets \
             up), or make a component of it (`wasm-tools component new` with the WASI adapter; \
             componentize-py for Python, `jco componentize` for JavaScript) ({full})"
        ),
        [0, b'a', b's', b'm', ..] => full,
        _ => {
            let head: String = wasm
                .iter()
                .take(8)
                .map(|b| {
                    if b.is_ascii_graphic() {
                        char::from(*b)
                    } else {
                        '.'
                    }
                })
                .collect();
            format!(
                "it is not WebAssembly at all ({} bytes starting {head:?}; a component starts \
                 with \"\\0asm\"): name the .wasm file the build wrote, e.g. \
                 target/wasm32-wasip2/release/NAME.wasm",
                wasm.len()
            )
        }
    }
}
