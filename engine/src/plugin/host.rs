//! The sandboxed plugin host: one wasmtime `Engine` (pooling allocator, epoch interruption,
//! fuel) and one `Linker` with deny-by-default WASI p2 plus the mediaflow host interfaces.
//! [`PluginHost::load`] compiles a component once per digest (through the on-disk cache),
//! detects its world and keeps an `InstancePre`; [`Plugin::instantiate`] gives a fresh `Store`
//! with the plugin's limits, used for the calls of one job and then dropped.

use super::bindings::{extractor, notifier, types, watermarker};
use super::cache::CompileCache;
use super::error::{PluginError, PluginErrorKind};
use super::limits::{Limits, MAX_MEMORY_BYTES, MemoryLimiter};
use super::source::SourceHandle;
use super::world::{self, World};
use semver::Version;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the epoch advances; the wall-time limit is checked at this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Bytes of stdout/stderr one instance may write; past that its writes fail.
const OUTPUT_CAP: usize = 1024 * 1024;
/// Linear memory kept resident per pooled slot between instances.
const KEEP_RESIDENT_BYTES: usize = 4 * 1024 * 1024;
/// Idle pooled slots kept warm (resident) for reuse.
const WARM_SLOTS: u32 = 16;
/// Log lines (host `log` calls) one instance may emit; the rest are counted and dropped.
const MAX_LOG_LINES: u32 = 1_000;
/// Longest log line kept, in bytes.
const MAX_LOG_LINE: usize = 4 * 1024;

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
    pub limits: Limits,
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
            limits: Limits::default(),
            expect: None,
        }
    }

    fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
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
        extractor::MetadataExtractor::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(setup)?;

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
        Ok(Plugin {
            inner: Arc::new(PluginInner {
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
            }),
        })
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
        let component = Component::new(&self.engine, wasm)
            .map_err(|e| PluginError::new(label, PluginErrorKind::Invalid(first_line(&e))))?;
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

fn first_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

enum Pre {
    Extractor(extractor::MetadataExtractorPre<HostState>),
    Watermarker(watermarker::WatermarkerPre<HostState>),
    Notifier(notifier::NotificationRulePre<HostState>),
}

struct PluginInner {
    label: String,
    spec: PluginSpec,
    digest: String,
    world: World,
    wit_version: Version,
    size: u64,
    cached: bool,
    compile_ms: f64,
    engine: Engine,
    pre: Arc<Pre>,
}

/// A loaded plugin: compiled, linked, ready to instantiate. Cheap to clone; a job keeps the
/// `Plugin` it started with even if the registry swaps in a new version meanwhile.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
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
    pub fn limits(&self) -> Limits {
        self.inner.spec.limits
    }

    /// The same compiled plugin with `config` laid over its configuration and, if given,
    /// other limits (a profile's settings). Cheap: the compiled code is shared.
    pub fn with_overrides(
        &self,
        config: &BTreeMap<String, String>,
        limits: Option<Limits>,
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

    fn err(&self, kind: PluginErrorKind) -> PluginError {
        PluginError::new(&self.inner.label, kind)
    }

    /// A fresh instance (new `Store`, fresh memory) for the calls of one job.
    pub fn instantiate(&self) -> Result<PluginInstance, PluginError> {
        let mut store = self.new_store();
        let bindings = self.instantiate_in(&mut store)?;
        Ok(PluginInstance {
            plugin: self.clone(),
            store,
            bindings: Some(bindings),
        })
    }

    fn new_store(&self) -> Store<HostState> {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAP);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAP);
        // Deny by default: no args, no env, no preopened directories, no network.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = self.inner.spec.limits;
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_bytes),
            plugin: self.inner.clone(),
            stdout,
            stderr,
            logged_out: 0,
            logged_err: 0,
            log_lines: 0,
            deadline: Instant::now() + limits.timeout(),
            timed_out: false,
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.deadline {
                state.timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }

    fn arm(&self, store: &mut Store<HostState>) {
        let limits = self.inner.spec.limits;
        let data = store.data_mut();
        data.deadline = Instant::now() + limits.timeout();
        data.timed_out = false;
        store.set_epoch_deadline(1);
        // Fuel is always metered (it is an engine-wide setting); unbudgeted calls get plenty.
        let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
    }

    fn instantiate_in(&self, store: &mut Store<HostState>) -> Result<Bindings, PluginError> {
        self.arm(store);
        let result = match &*self.inner.pre {
            Pre::Extractor(p) => p.instantiate(&mut *store).map(Bindings::Extractor),
            Pre::Watermarker(p) => p.instantiate(&mut *store).map(Bindings::Watermarker),
            Pre::Notifier(p) => p.instantiate(&mut *store).map(Bindings::Notifier),
        };
        store.data_mut().flush_output();
        result.map_err(|e| self.classify(store, e))
    }

    /// Turn a wasmtime error from a call into a typed error naming the limit involved.
    fn classify(&self, store: &Store<HostState>, e: wasmtime::Error) -> PluginError {
        let data = store.data();
        let limits = self.inner.spec.limits;
        if data.timed_out {
            return self.err(PluginErrorKind::Timeout {
                limit: limits.timeout(),
            });
        }
        if let Some(requested) = data.limiter.exceeded {
            return self.err(PluginErrorKind::MemoryLimit {
                limit: limits.memory_bytes,
                requested: requested as u64,
            });
        }
        let trap = e.downcast_ref::<Trap>().copied();
        if trap == Some(Trap::OutOfFuel)
            && let Some(budget) = limits.fuel
        {
            return self.err(PluginErrorKind::FuelExhausted { budget });
        }
        let reason = match trap {
            Some(Trap::StackOverflow) => "stack overflow (call stack exhausted)".to_string(),
            Some(t) => t.to_string(),
            None => first_line(&e),
        };
        self.err(PluginErrorKind::Trap {
            reason,
            stderr: data.stderr_tail(),
        })
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

enum Bindings {
    Extractor(extractor::MetadataExtractor),
    Watermarker(watermarker::Watermarker),
    Notifier(notifier::NotificationRule),
}

/// A live plugin instance: one `Store` with its own memory and limits. Calls may be repeated
/// (e.g. one `draw` per rendition size); each call gets the full time and fuel budget. After a
/// trap the instance is discarded and the next call starts a fresh one. Dropping it frees
/// everything: nothing survives into the next job.
pub struct PluginInstance {
    plugin: Plugin,
    store: Store<HostState>,
    bindings: Option<Bindings>,
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl PluginInstance {
    /// The plugin this is an instance of.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    fn wrong_world(&self, expected: World) -> PluginError {
        self.plugin.err(PluginErrorKind::WrongWorld {
            expected: expected.name(),
            found: self.plugin.world().name(),
        })
    }

    fn call<R>(
        &mut self,
        expected: World,
        f: impl FnOnce(
            &mut Store<HostState>,
            &Bindings,
        ) -> wasmtime::Result<Result<R, types::PluginError>>,
    ) -> Result<R, PluginError> {
        if self.plugin.world() != expected {
            return Err(self.wrong_world(expected));
        }
        let started = Instant::now();
        let result = self.call_inner(f);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.detail_code(),
        };
        crate::telemetry::metrics::plugin_call(
            self.plugin.name(),
            self.plugin.version(),
            outcome,
            started.elapsed(),
            self.store.data().limiter.peak as u64,
        );
        result
    }

    fn call_inner<R>(
        &mut self,
        f: impl FnOnce(
            &mut Store<HostState>,
            &Bindings,
        ) -> wasmtime::Result<Result<R, types::PluginError>>,
    ) -> Result<R, PluginError> {
        let bindings = match self.bindings.take() {
            Some(b) => b,
            None => {
                self.store = self.plugin.new_store();
                self.plugin.instantiate_in(&mut self.store)?
            }
        };
        self.plugin.arm(&mut self.store);
        let result = f(&mut self.store, &bindings);
        self.store.data_mut().flush_output();
        match result {
            Ok(Ok(value)) => {
                self.bindings = Some(bindings);
                Ok(value)
            }
            Ok(Err(guest)) => {
                self.bindings = Some(bindings);
                let (code, message) = match guest {
                    types::PluginError::BadConfig(m) => ("bad_config", m),
                    types::PluginError::Unsupported(m) => ("unsupported", m),
                    types::PluginError::InvalidInput(m) => ("invalid_input", m),
                    types::PluginError::Failed(m) => ("failed", m),
                };
                Err(self.plugin.err(PluginErrorKind::Guest { code, message }))
            }
            // A trapped instance may not be entered again: drop it, start fresh next time.
            Err(e) => Err(self.plugin.classify(&self.store, e)),
        }
    }

    /// Run a metadata extractor on `source`.
    pub fn extract(
        &mut self,
        info: &types::MediaInfo,
        source: &SourceHandle,
    ) -> Result<Vec<types::MetadataEntry>, PluginError> {
        self.call(World::MetadataExtractor, |store, b| {
            let Bindings::Extractor(b) = b else {
                unreachable!("world checked by call")
            };
            let handle = store.data_mut().table.push(source.clone())?;
            let borrowed = Resource::<SourceHandle>::new_borrow(handle.rep());
            let result = b
                .mediaflow_plugin_extractor()
                .call_extract(&mut *store, info, borrowed);
            let _ = store.data_mut().table.delete(handle);
            result
        })
    }

    /// Ask a watermarker for the overlay of one rendition size.
    pub fn draw(
        &mut self,
        info: &types::MediaInfo,
        target: types::Size,
    ) -> Result<Option<types::Overlay>, PluginError> {
        let overlay = self.call(World::Watermarker, |store, b| {
            let Bindings::Watermarker(b) = b else {
                unreachable!("world checked by call")
            };
            b.mediaflow_plugin_watermark()
                .call_draw(store, info, target)
        })?;
        if let Some(o) = &overlay {
            check_overlay(o)
                .map_err(|problem| self.plugin.err(PluginErrorKind::BadOutput(problem)))?;
        }
        Ok(overlay)
    }

    /// Ask a notification rule which notifications `event` deserves.
    pub fn evaluate(
        &mut self,
        event: &types::JobEvent,
    ) -> Result<Vec<types::Notification>, PluginError> {
        self.call(World::NotificationRule, |store, b| {
            let Bindings::Notifier(b) = b else {
                unreachable!("world checked by call")
            };
            b.mediaflow_plugin_notifier().call_evaluate(store, event)
        })
    }
}

/// Largest overlay side accepted from a watermarker.
const MAX_OVERLAY_SIDE: u32 = 16_384;

fn check_overlay(o: &types::Overlay) -> Result<(), String> {
    let img = &o.image;
    if img.width == 0
        || img.height == 0
        || img.width > MAX_OVERLAY_SIDE
        || img.height > MAX_OVERLAY_SIDE
    {
        return Err(format!(
            "overlay is {}x{}; each side must be 1..={MAX_OVERLAY_SIDE}",
            img.width, img.height
        ));
    }
    let expected = img.width as usize * img.height as usize * 4;
    if img.pixels.len() != expected {
        return Err(format!(
            "overlay {}x{} carries {} bytes of pixels, expected {expected} (RGBA8)",
            img.width,
            img.height,
            img.pixels.len()
        ));
    }
    if !(0.0..=1.0).contains(&o.opacity) {
        return Err(format!(
            "overlay opacity {} is outside 0.0..=1.0",
            o.opacity
        ));
    }
    Ok(())
}

/// Per-instance state: WASI context (granting nothing), resources, limits, captured output.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    plugin: Arc<PluginInner>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    logged_out: usize,
    logged_err: usize,
    log_lines: u32,
    deadline: Instant,
    timed_out: bool,
}

impl HostState {
    /// Send what the guest wrote to stdout/stderr since last time to the engine log.
    fn flush_output(&mut self) {
        for (pipe, done, stream) in [
            (&self.stdout, &mut self.logged_out, "stdout"),
            (&self.stderr, &mut self.logged_err, "stderr"),
        ] {
            let all = pipe.contents();
            if all.len() <= *done {
                continue;
            }
            let text = String::from_utf8_lossy(&all[*done..]);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!(target: "mediaflow::plugin::guest", plugin = %self.plugin.label, stream, "{line}");
            }
            *done = all.len();
        }
    }

    fn stderr_tail(&self) -> String {
        let all = self.stderr.contents();
        let text = String::from_utf8_lossy(&all);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        let mut cut = tail.len().min(600);
        while !tail.is_char_boundary(cut) {
            cut -= 1;
        }
        tail[..cut].to_string()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl extractor::mediaflow::plugin::types::Host for HostState {}

impl extractor::mediaflow::plugin::host::Host for HostState {
    fn log(
        &mut self,
        level: extractor::mediaflow::plugin::host::LogLevel,
        message: String,
    ) -> wasmtime::Result<()> {
        use extractor::mediaflow::plugin::host::LogLevel;
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(plugin = %self.plugin.label, "plugin log line cap ({MAX_LOG_LINES}) reached; dropping further lines");
            }
            return Ok(());
        }
        let mut end = message.len().min(MAX_LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let msg = &message[..end];
        let plugin = &self.plugin.label;
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "mediaflow::plugin::guest", %plugin, "{msg}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "mediaflow::plugin::guest", %plugin, "{msg}")
            }
            LogLevel::Info => tracing::info!(target: "mediaflow::plugin::guest", %plugin, "{msg}"),
            LogLevel::Warn => tracing::warn!(target: "mediaflow::plugin::guest", %plugin, "{msg}"),
            LogLevel::Error => {
                tracing::error!(target: "mediaflow::plugin::guest", %plugin, "{msg}")
            }
        }
        Ok(())
    }

    fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.plugin.spec.config.get(&key).cloned())
    }

    fn config_keys(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.plugin.spec.config.keys().cloned().collect())
    }

    fn time_left_ms(&mut self) -> wasmtime::Result<u64> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        Ok(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }
}

impl extractor::mediaflow::plugin::input::Host for HostState {}

impl extractor::mediaflow::plugin::input::HostSource for HostState {
    fn size(&mut self, src: Resource<SourceHandle>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&src)?.size())
    }

    fn read(
        &mut self,
        src: Resource<SourceHandle>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, super::bindings::ReadError>> {
        use super::bindings::ReadError;
        let handle = self.table.get(&src)?;
        Ok(match handle.read_at(offset, len) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(ReadError::OutOfRange),
            Err(e) => Err(ReadError::Io(e.to_string())),
        })
    }

    fn drop(&mut self, src: Resource<SourceHandle>) -> wasmtime::Result<()> {
        // Guests only ever see borrows; the host owns and deletes the handle after the call.
        let _ = src;
        Ok(())
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
