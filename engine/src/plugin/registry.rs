//! The plugin registry: published plugins in an object store (an S3 prefix or a directory),
//! laid out as `NAME/VERSION/plugin.wasm` + `plugin.toml` and `NAME/channels/CHANNEL`
//! ([`layout`]). [`publish`] validates a plugin locally and uploads it (the wasm first, the
//! toml last as the commit point; versions are immutable). [`sync`] is the engine's side: it
//! lists the registry, fetches only objects whose ETag changed, verifies each digest before
//! compiling, and builds a new catalog; [`RegistryWatch`] loads the registry at start-up and
//! then polls it on its own thread, swapping each new catalog into the [`LiveCatalog`] that
//! jobs take their snapshot from.

pub mod layout;
pub mod listing;
pub mod publish;
pub mod sync;

use super::PluginHost;
use super::catalog::{Catalog, LiveCatalog};
use super::reload::LocalPlugins;
use crate::config::Config;
pub use crate::config::RegistryLocation as Location;
use crate::storage::{FsStorage, ObjectInfo, S3Storage, Storage, StorageError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use sync::{Change, Syncer, VersionState, Watcher};

/// Why the registry could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The location cannot be opened (bad setting, no runtime).
    #[error("plugin registry {location}: {message}")]
    Open {
        /// The registry.
        location: String,
        /// What went wrong.
        message: String,
    },
    /// Listing, reading or writing failed; [`StorageError::class`] says whether a retry helps.
    #[error("plugin registry {location}: {source}")]
    Storage {
        /// The registry.
        location: String,
        /// The storage error.
        source: StorageError,
    },
}

/// A tokio runtime for the S3 client, shut down without blocking when dropped (the registry
/// may be dropped inside another runtime).
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

enum Backend {
    /// A directory, opened when first needed: a missing directory is an empty registry, and
    /// reading never creates it.
    Dir(PathBuf),
    S3 {
        storage: S3Storage,
        prefix: String,
        _runtime: OwnedRuntime,
    },
}

/// An open registry: keys are relative to its root (`exif/1.0.0/plugin.toml`).
pub struct Registry {
    location: Location,
    backend: Backend,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("location", &self.location.to_string())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Open `location`. An S3 registry gets AWS settings from the SDK's standard environment
    /// (`AWS_REGION`, `AWS_ENDPOINT_URL`, the credential chain) and its own small runtime;
    /// `s3_path_style` selects path-style addressing. Must not be called from async code.
    pub fn open(location: Location, s3_path_style: bool) -> Result<Registry, RegistryError> {
        let backend = match &location {
            Location::Dir(d) => Backend::Dir(d.clone()),
            Location::S3 { bucket, prefix } => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("plugin-registry-io")
                    .enable_all()
                    .build()
                    .map_err(|e| RegistryError::Open {
                        location: location.to_string(),
                        message: format!("starting a runtime: {e}"),
                    })?;
                let clients = runtime.block_on(crate::aws::Clients::load(s3_path_style));
                Backend::S3 {
                    storage: S3Storage::new(clients.s3, bucket, runtime.handle().clone()),
                    prefix: prefix.clone(),
                    _runtime: OwnedRuntime(Some(runtime)),
                }
            }
        };
        Ok(Registry { location, backend })
    }

    /// The registry `config` names, opened; `None` when there is none.
    pub fn from_config(config: &Config) -> Result<Option<Registry>, RegistryError> {
        let location = Location::from_config(config).map_err(|message| RegistryError::Open {
            location: config.plugins.registry.clone().unwrap_or_default(),
            message,
        })?;
        location
            .map(|l| Registry::open(l, config.worker.s3_path_style))
            .transpose()
    }

    /// Where it is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// A URI for the object at `key`.
    pub fn uri(&self, key: &str) -> String {
        match &self.location {
            Location::Dir(d) => format!("file://{}", absolute(d).join(key).display()),
            Location::S3 { .. } => format!("{}{key}", self.location),
        }
    }

    fn err(&self, source: StorageError) -> RegistryError {
        RegistryError::Storage {
            location: self.location.to_string(),
            source,
        }
    }

    /// The directory store, if the directory exists (or `create`).
    fn dir(
        &self,
        root: &std::path::Path,
        create: bool,
    ) -> Result<Option<FsStorage>, RegistryError> {
        if !create && !root.is_dir() {
            return Ok(None);
        }
        FsStorage::new(root).map(Some).map_err(|e| self.err(e))
    }

    /// Every object, with its info, in key order.
    pub fn list(&self) -> Result<Vec<(String, ObjectInfo)>, RegistryError> {
        match &self.backend {
            Backend::Dir(root) => match self.dir(root, false)? {
                Some(fs) => fs.list("").map_err(|e| self.err(e)),
                None => Ok(Vec::new()),
            },
            Backend::S3 {
                storage, prefix, ..
            } => Ok(storage
                .list(prefix)
                .map_err(|e| self.err(e))?
                .into_iter()
                .filter_map(|(k, info)| Some((k.strip_prefix(prefix.as_str())?.to_string(), info)))
                .collect()),
        }
    }

    /// The object at `key`.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, RegistryError> {
        match &self.backend {
            Backend::Dir(root) => match self.dir(root, false)? {
                Some(fs) => fs.get(key),
                None => Err(StorageError::NotFound(self.uri(key))),
            },
            Backend::S3 {
                storage, prefix, ..
            } => storage.get(&format!("{prefix}{key}")),
        }
        .map_err(|e| self.err(e))
    }

    /// The object at `key`, or `None`.
    pub fn get_opt(&self, key: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        match self.get(key) {
            Ok(b) => Ok(Some(b)),
            Err(RegistryError::Storage {
                source: StorageError::NotFound(_),
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write `data` at `key`, replacing what is there.
    pub fn put(&self, key: &str, data: &[u8], content_type: &str) -> Result<(), RegistryError> {
        match &self.backend {
            Backend::Dir(root) => self
                .dir(root, true)?
                .map(|fs| fs.put(key, data, content_type))
                .transpose(),
            Backend::S3 {
                storage, prefix, ..
            } => storage
                .put(&format!("{prefix}{key}"), data, content_type)
                .map(Some),
        }
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// Write `data` at `key` only if nothing is there; `false` if something was.
    pub fn put_if_absent(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<bool, RegistryError> {
        match &self.backend {
            Backend::Dir(root) => match self.dir(root, true)? {
                Some(fs) => fs.put_if_absent(key, data, content_type),
                None => Ok(None),
            },
            Backend::S3 {
                storage, prefix, ..
            } => storage.put_if_absent(&format!("{prefix}{key}"), data, content_type),
        }
        .map(|o| o.is_some())
        .map_err(|e| self.err(e))
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The plugins an engine serves: the bundled and local ones plus the registry's, in a
/// [`LiveCatalog`]; loaded once at start-up, then — after [`RegistryWatch::start_polling`] —
/// kept current by a thread polling the registry (and the local plugins' files, see
/// [`super::reload`]).
#[derive(Debug)]
pub struct RegistryWatch {
    live: Arc<LiveCatalog>,
    syncer: Option<Syncer>,
    local: Option<LocalPlugins>,
    watcher: Option<Watcher>,
    every: Duration,
}

impl RegistryWatch {
    /// Load the registry `config` names (if any) over `base` (the bundled and `local`
    /// plugins). Fails when the registry cannot be listed; a plugin that fails validation is
    /// refused with a logged reason and the rest load.
    pub fn load(
        config: &Config,
        host: Arc<PluginHost>,
        local: LocalPlugins,
        base: Catalog,
    ) -> Result<RegistryWatch, RegistryError> {
        let every = Duration::from_secs(config.plugins.registry_poll_secs.max(1));
        let local = (!local.is_empty()).then_some(local);
        let Some(registry) = Registry::from_config(config)? else {
            return Ok(RegistryWatch {
                live: Arc::new(LiveCatalog::new(base)),
                syncer: None,
                local,
                watcher: None,
                every,
            });
        };
        let mut syncer = Syncer::new(registry, host, base, config.plugins.max_wasm_bytes);
        let changes = syncer.sync()?;
        tracing::info!(
            registry = %syncer.registry().location(),
            plugins = syncer.loaded().len(),
            refused = syncer.refused().len(),
            "plugin registry loaded"
        );
        for c in &changes {
            c.log(0.0);
        }
        Ok(RegistryWatch {
            live: Arc::new(LiveCatalog::new(syncer.catalog())),
            syncer: Some(syncer),
            local,
            watcher: None,
            every,
        })
    }

    /// The catalog jobs take their snapshots from.
    pub fn live(&self) -> Arc<LiveCatalog> {
        self.live.clone()
    }

    /// Poll the registry every `plugins.registry_poll_secs` (and the local plugins' files
    /// every second) on a thread of its own until `stop` is cancelled (or this is dropped).
    /// Does nothing with neither, or when already polling.
    pub fn start_polling(&mut self, stop: crate::shutdown::CancellationToken) {
        let (syncer, local) = (self.syncer.take(), self.local.take());
        if syncer.is_none() && local.is_none() {
            return;
        }
        match Watcher::start(syncer, local, self.live.clone(), self.every, stop) {
            Ok(w) => self.watcher = Some(w),
            Err(e) => {
                tracing::error!(error = %e, "could not start the registry poller: plugins stay as loaded at start-up")
            }
        }
    }
}
