//! The engine's long-lived parts, set up once at start-up by every command that runs jobs
//! (`worker`, `process`, and the job API): the plugin host (and its epoch ticker), the bundled,
//! local and registry plugins (the registry polled when asked), and the job processor that
//! resolves plugins from the live catalog.

use crate::config::Config;
use crate::pipeline::Processor;
use crate::plugin::registry::RegistryWatch;
use crate::plugin::reload::LocalPlugins;
use crate::plugin::{HostConfig, PluginHost, default_cache_dir};
use crate::shutdown::CancellationToken;
use std::path::Path;
use std::sync::Arc;

/// Problems that stop a run before any job (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The profile is unknown or names a plugin that cannot be resolved.
    #[error("profile: {0}")]
    Profile(crate::error::JobError),
    /// The plugin host or bundled plugins failed to start.
    #[error("plugins: {0}")]
    Plugins(String),
    /// The output directory cannot be used.
    #[error("output directory: {0}")]
    Output(String),
    /// The scratch directory cannot be used.
    #[error(
        "scratch directory {path}: {source} (set `scratch_dir`, MEDIAFLOW_SCRATCH_DIR, to a writable directory)"
    )]
    Scratch {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Notification rules or sinks cannot be set up.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
}

/// Everything a run needs, set up once.
#[derive(Debug)]
pub struct Services {
    /// Keeps the epoch ticker (plugin deadlines) alive for as long as jobs run.
    _host: Arc<PluginHost>,
    /// The registry's plugins over the bundled and local ones.
    registry: RegistryWatch,
    /// The job runner.
    pub processor: Processor,
}

impl Services {
    /// Load config, start the plugin host, the bundled and local plugins and the registry's.
    pub fn start(config_path: Option<&Path>) -> Result<Services, SetupError> {
        Self::with_config(Config::load(config_path)?)
    }

    /// Start the plugin host, the bundled and local plugins and the registry for an already
    /// loaded `config`.
    pub fn with_config(config: Config) -> Result<Services, SetupError> {
        let host = Arc::new(
            PluginHost::new(&HostConfig {
                cache_dir: config.plugins.cache_dir.clone().or_else(default_cache_dir),
                max_wasm_bytes: config.plugins.max_wasm_bytes,
                ..HostConfig::default()
            })
            .map_err(|e| SetupError::Plugins(e.to_string()))?,
        );
        let (local, catalog) = LocalPlugins::load(host.clone(), &config.plugins.local)
            .map_err(|e| SetupError::Plugins(e.to_string()))?;
        let registry = RegistryWatch::load(&config, host.clone(), local, catalog)
            .map_err(|e| SetupError::Plugins(e.to_string()))?;
        Ok(Services {
            processor: Processor::live(Arc::new(config), registry.live()),
            registry,
            _host: host,
        })
    }

    /// Keep the plugins current: poll the registry every `plugins.registry_poll_secs`, and the
    /// `plugins.local` files every second, until `stop` is cancelled (the worker and `serve`
    /// do; a `process` run keeps what it loaded at start-up).
    pub fn poll_registry(&mut self, stop: CancellationToken) {
        self.registry.start_polling(stop);
    }
}
