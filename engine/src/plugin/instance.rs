//! A live plugin instance: one `Store` with the plugin's limits (memory, wall time through the
//! epoch deadline, fuel), made fresh for each job and dropped after it; calls within one job
//! reuse it. A trapped instance is discarded and the next call starts a fresh one. Each call is
//! counted in the plugin metrics with its outcome, duration and memory high-water mark.

use super::bindings::{extractor, notifier, types, watermarker};
use super::bounds;
use super::error::{PluginError, PluginErrorKind};
use super::limits::MemoryLimiter;
use super::loaded::{Plugin, Pre};
use super::source::SourceHandle;
use super::state::HostState;
use super::world::World;
use std::time::Instant;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// Bytes of stdout/stderr one instance may write; past that its writes fail.
const OUTPUT_CAP: usize = 1024 * 1024;

impl Plugin {
    pub(super) fn new_store(&self) -> Store<HostState> {
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

    pub(super) fn arm(&self, store: &mut Store<HostState>) {
        let limits = self.inner.spec.limits;
        let data = store.data_mut();
        data.deadline = Instant::now() + limits.timeout();
        data.timed_out = false;
        store.set_epoch_deadline(1);
        // Fuel is always metered (it is an engine-wide setting); unbudgeted calls get plenty.
        let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
    }

    pub(super) fn instantiate_in(
        &self,
        store: &mut Store<HostState>,
    ) -> Result<Bindings, PluginError> {
        self.arm(store);
        let result = match &*self.inner.pre {
            Pre::Extractor(p) => p.instantiate(&mut *store).map(Bindings::Extractor),
            Pre::Watermarker(p) => p.instantiate(&mut *store).map(Bindings::Watermarker),
            Pre::Notifier(p) => p.instantiate(&mut *store).map(Bindings::Notifier),
        };
        store.data_mut().flush_output();
        result.map_err(|e| self.classify(store, e))
    }
}

/// The world-typed bindings of an instance.
pub(super) enum Bindings {
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
    /// A fresh instance of `plugin`.
    pub(super) fn new(plugin: &Plugin) -> Result<PluginInstance, PluginError> {
        let mut store = plugin.new_store();
        let bindings = plugin.instantiate_in(&mut store)?;
        Ok(PluginInstance {
            plugin: plugin.clone(),
            store,
            bindings: Some(bindings),
        })
    }

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
        let entries = self.call(World::MetadataExtractor, |store, b| {
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
        })?;
        bounds::entries(&entries, &self.plugin.limits()).map_err(|k| self.plugin.err(k))?;
        Ok(entries)
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
            check_overlay(o, target)
                .map_err(|problem| self.plugin.err(PluginErrorKind::BadOutput(problem)))?;
        }
        Ok(overlay)
    }

    /// Ask a notification rule which notifications `event` deserves.
    pub fn evaluate(
        &mut self,
        event: &types::JobEvent,
    ) -> Result<Vec<types::Notification>, PluginError> {
        let notifications = self.call(World::NotificationRule, |store, b| {
            let Bindings::Notifier(b) = b else {
                unreachable!("world checked by call")
            };
            b.mediaflow_plugin_notifier().call_evaluate(store, event)
        })?;
        bounds::notifications(&notifications, &self.plugin.limits())
            .map_err(|k| self.plugin.err(k))?;
        Ok(notifications)
    }
}

/// Largest overlay side accepted from a watermarker.
const MAX_OVERLAY_SIDE: u32 = 16_384;

fn check_overlay(o: &types::Overlay, target: types::Size) -> Result<(), String> {
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
    if img.width > target.width || img.height > target.height {
        return Err(format!(
            "overlay is {}x{}, larger than the {}x{} rendition it is drawn for",
            img.width, img.height, target.width, target.height
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
