//! On-disk cache of compiled plugins, keyed by the wasm's sha256 and the engine's
//! compatibility (mediaflow version + wasmtime version + compiler settings). Only the engine
//! writes here: files are written to a temporary name and renamed, in a directory only the
//! engine's user can write. Loaded entries are mmapped, so a file is never modified in place:
//! truncating one under a running engine would fault it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of `<sha256>-<compat>.cwasm` files.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    compat: String,
}

impl CompileCache {
    /// A cache in `dir` (created, mode 0700) for components compiled by `engine`.
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut h = DefaultHasher::new();
        env!("CARGO_PKG_VERSION").hash(&mut h);
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Self {
            dir: dir.to_path_buf(),
            compat: format!("{:016x}", h.finish()),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.compat))
    }

    /// The cached compilation of `digest`, if present and loadable. A corrupt or incompatible
    /// entry is removed and `None` returned.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was produced by `Component::serialize` of this engine configuration
        // (the name carries the compatibility hash, wasmtime re-checks its header) and lives in a
        // directory only this engine's user can write.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping unusable compiled-plugin cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Store a compiled component. Failures are logged, not fatal: the cache is an optimisation.
    pub fn store(&self, digest: &str, component: &Component) {
        let result = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let mut tmp =
                    tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| e.to_string())?;
                std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| e.to_string())?;
                tmp.persist(self.path(digest)).map_err(|e| e.to_string())?;
                Ok(())
            });
        if let Err(e) = result {
            tracing::warn!(digest, error = %e, "could not write compiled-plugin cache entry");
        }
    }
}
