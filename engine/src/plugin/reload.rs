//! The `plugins.local` plugins kept current, for the plugin author's loop: each path (a `.wasm`
//! file, a crate, a published-layout directory — see [`super::dev`]) is fingerprinted by its
//! files' modification times; the registry's poller looks every second and, when one moved,
//! rebuilds (a crate) and reloads the local plugins over the bundled ones. A reload that fails
//! keeps the plugins as they were and logs why.

use super::catalog::Catalog;
use super::{PluginError, PluginHost, dev};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the local plugins' files are looked at.
pub const EVERY: Duration = Duration::from_secs(1);

/// The bundled plugins and the local paths over them.
#[derive(Debug)]
pub struct LocalPlugins {
    host: Arc<PluginHost>,
    bundled: Catalog,
    paths: Vec<PathBuf>,
    /// Each path's fingerprint when last loaded.
    prints: Vec<Option<SystemTime>>,
}

impl LocalPlugins {
    /// Load the bundled plugins and those at `paths`; the catalog of them all.
    pub fn load(
        host: Arc<PluginHost>,
        paths: &[PathBuf],
    ) -> Result<(LocalPlugins, Catalog), PluginError> {
        let bundled = Catalog::bundled(&host)?;
        let mut me = LocalPlugins {
            host,
            bundled,
            paths: paths.to_vec(),
            prints: Vec::new(),
        };
        let catalog = me.build()?;
        Ok((me, catalog))
    }

    /// Whether there is anything to watch.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    fn build(&mut self) -> Result<Catalog, PluginError> {
        let prints: Vec<_> = self.paths.iter().map(|p| dev::fingerprint(p)).collect();
        let mut c = self.bundled.clone();
        for path in &self.paths {
            c.load_local(&self.host, path)?;
        }
        self.prints = prints;
        Ok(c)
    }

    /// When a path's files changed since the last load: the catalog reloaded (`None`: nothing
    /// changed, or the reload failed — logged, the previous plugins stay).
    pub fn reload_if_changed(&mut self) -> Option<Catalog> {
        let now: Vec<_> = self.paths.iter().map(|p| dev::fingerprint(p)).collect();
        if now == self.prints {
            return None;
        }
        let changed: Vec<String> = self
            .paths
            .iter()
            .zip(now.iter().zip(&self.prints))
            .filter(|(_, (a, b))| a != b)
            .map(|(p, _)| p.display().to_string())
            .collect();
        match self.build() {
            Ok(c) => {
                tracing::info!(changed = ?changed, "plugins.local: reloaded");
                Some(c)
            }
            Err(e) => {
                // Not again until the files move once more.
                self.prints = now;
                tracing::error!(changed = ?changed, "plugins.local: not reloaded, the plugins stay as they were: {e}");
                None
            }
        }
    }
}
