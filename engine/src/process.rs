//! `mediaflow process`: run the pipeline once per local file, with no queue and no AWS.
//! Writes `<out>/<stem>/` (renditions + `manifest.json`, the manifest last) and
//! `<out>/index.html`. Files run in parallel on a bounded pool; one bad file never stops the
//! others.

use crate::config::Config;
use crate::manifest::{Manifest, Status};
use crate::pipeline::{Job, Processor};
use crate::plugin::catalog::Catalog;
use crate::plugin::registry::RegistryWatch;
use crate::plugin::{HostConfig, PluginHost, default_cache_dir};
use crate::report;
use crate::storage::{FsStorage, Storage};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What to process.
#[derive(Debug, Clone)]
pub struct Options {
    /// Source files.
    pub files: Vec<PathBuf>,
    /// Output directory.
    pub out: PathBuf,
    /// Profile name (default: the config's default profile).
    pub profile: Option<String>,
    /// Config file.
    pub config: Option<PathBuf>,
    /// Files processed at once (default: the number of cores).
    pub jobs: Option<usize>,
    /// Stitch all the files (images) into one video instead of one job per file.
    pub slideshow: bool,
}

/// How a run went.
#[derive(Debug)]
pub struct Summary {
    /// Jobs that succeeded.
    pub succeeded: usize,
    /// Jobs that failed (their manifests say why).
    pub failed: usize,
    /// The HTML report.
    pub report: PathBuf,
}

/// Problems that stop the run before any job (exit code 2).
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
    /// Notification rules or sinks cannot be set up.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
}

/// Everything a `process` run needs, set up once.
#[derive(Debug)]
pub struct Engine {
    /// Keeps the epoch ticker (plugin deadlines) alive for as long as jobs run.
    _host: Arc<PluginHost>,
    /// The registry's plugins over the bundled and local ones.
    registry: RegistryWatch,
    /// The job runner.
    pub processor: Processor,
}

impl Engine {
    /// Load config, start the plugin host, the bundled and local plugins and the registry's.
    pub fn start(config_path: Option<&Path>) -> Result<Engine, SetupError> {
        Self::with_config(Config::load(config_path)?)
    }

    /// Start the plugin host, the bundled and local plugins and the registry for an already
    /// loaded `config`.
    pub fn with_config(config: Config) -> Result<Engine, SetupError> {
        let host = Arc::new(
            PluginHost::new(&HostConfig {
                cache_dir: config.plugins.cache_dir.clone().or_else(default_cache_dir),
                max_wasm_bytes: config.plugins.max_wasm_bytes,
                ..HostConfig::default()
            })
            .map_err(|e| SetupError::Plugins(e.to_string()))?,
        );
        let catalog = Catalog::with_local(&host, &config.plugins.local)
            .map_err(|e| SetupError::Plugins(e.to_string()))?;
        let registry = RegistryWatch::load(&config, host.clone(), catalog)
            .map_err(|e| SetupError::Plugins(e.to_string()))?;
        Ok(Engine {
            processor: Processor::live(Arc::new(config), registry.live()),
            registry,
            _host: host,
        })
    }

    /// Keep the registry's plugins current: poll it every `plugins.registry_poll_secs` (the
    /// worker does; a `process` run keeps what it loaded at start-up).
    pub fn poll_registry(&mut self) {
        self.registry.start_polling();
    }
}

/// Process `opts.files` into `opts.out`.
pub fn run(opts: &Options) -> Result<Summary, SetupError> {
    let engine = Engine::start(opts.config.as_deref())?;
    let processor = &engine.processor;
    let profile = opts
        .profile
        .clone()
        .unwrap_or_else(|| processor.config().default_profile.clone());
    processor
        .check_profile(&profile)
        .map_err(SetupError::Profile)?;
    let store = FsStorage::new(&opts.out).map_err(|e| SetupError::Output(e.to_string()))?;
    // Each job's `succeeded`/`failed` event goes through the configured rules and sinks (by
    // default: a log line), delivered in the background while the others run.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| SetupError::Output(format!("starting runtime: {e}")))?;
    let notifier = runtime.block_on(crate::notify::Notifier::start(
        &processor.config().notify,
        processor.catalog_source(),
    ))?;
    if opts.slideshow {
        return slideshow(processor, &store, opts, &profile, &runtime, &notifier);
    }

    let dirs = unique_dirs(&opts.files);
    let total = opts.files.len();
    let workers = opts
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .clamp(1, total.max(1));
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Manifest>>> = Mutex::new(vec![None; total]);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let manifest =
                        process_one(processor, &store, &opts.files[i], &dirs[i], &profile);
                    notifier.emit(&crate::notify::Event::from_manifest(&manifest));
                    match &progress {
                        Some(bar) => {
                            bar.inc(1);
                            bar.set_message(format!("{} {:?}", dirs[i], manifest.status));
                        }
                        None => tracing::info!(
                            source = %opts.files[i].display(),
                            status = ?manifest.status,
                            ms = manifest.timings_ms.get("total").copied().unwrap_or(0.0),
                            "processed"
                        ),
                    }
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(manifest);
                    }
                }
            });
        }
    });
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    runtime.block_on(notifier.shutdown());
    let manifests: Vec<Manifest> = results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let entries: Vec<report::Entry<'_>> = manifests
        .iter()
        .zip(&opts.files)
        .zip(&dirs)
        .map(|((m, f), d)| report::Entry {
            name: f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: d.clone(),
            manifest: m,
        })
        .collect();
    let html = report::render(&entries);
    store
        .put("index.html", html.as_bytes(), "text/html")
        .map_err(|e| SetupError::Output(e.to_string()))?;
    let succeeded = manifests
        .iter()
        .filter(|m| m.status == Status::Succeeded)
        .count();
    Ok(Summary {
        succeeded,
        failed: total - succeeded,
        report: store.root().join("index.html"),
    })
}

fn process_one(
    processor: &Processor,
    store: &FsStorage,
    file: &Path,
    dir: &str,
    profile: &str,
) -> Manifest {
    let uri = file_uri(file);
    let etag = file_etag(file);
    let job = Job {
        id: dir.to_string(),
        source_uri: uri,
        path: file,
        etag,
        profile: profile.to_string(),
    };
    store_result(store, dir, processor.run(&job))
}

/// `--slideshow`: every file is a picture of one video, written to `<out>/slideshow/`.
fn slideshow(
    processor: &Processor,
    store: &FsStorage,
    opts: &Options,
    profile: &str,
    runtime: &tokio::runtime::Runtime,
    notifier: &crate::notify::Notifier,
) -> Result<Summary, SetupError> {
    let dir = "slideshow";
    let slides: Vec<crate::pipeline::Slide<'_>> = opts
        .files
        .iter()
        .map(|f| crate::pipeline::Slide {
            uri: file_uri(f),
            etag: file_etag(f),
            path: f,
        })
        .collect();
    let job = crate::pipeline::Slideshow {
        id: dir.to_string(),
        slides,
        profile: profile.to_string(),
    };
    let manifest = store_result(store, dir, processor.run_slideshow(&job));
    notifier.emit(&crate::notify::Event::from_manifest(&manifest));
    runtime.block_on(notifier.shutdown());
    tracing::info!(
        sources = opts.files.len(),
        status = ?manifest.status,
        ms = manifest.timings_ms.get("total").copied().unwrap_or(0.0),
        "slideshow processed"
    );
    let entries = [report::Entry {
        name: format!("slideshow of {} images", opts.files.len()),
        dir: dir.to_string(),
        manifest: &manifest,
    }];
    let html = report::render(&entries);
    store
        .put("index.html", html.as_bytes(), "text/html")
        .map_err(|e| SetupError::Output(e.to_string()))?;
    let ok = manifest.status == Status::Succeeded;
    Ok(Summary {
        succeeded: usize::from(ok),
        failed: usize::from(!ok),
        report: store.root().join("index.html"),
    })
}

/// Store a job's outputs under `dir/`, then its manifest (last: it marks the job complete).
fn store_result(store: &FsStorage, dir: &str, mut result: crate::pipeline::JobResult) -> Manifest {
    for f in &mut result.files {
        let key = format!("{dir}/{}", f.key);
        match f.store(store, &key) {
            Ok(_) => f.record.uri = store.uri(&key),
            Err(e) => {
                let e = crate::error::JobError::from(e);
                result.manifest.status = Status::Failed;
                result.manifest.error = Some((&e).into());
                break;
            }
        }
    }
    result.manifest.outputs = result.files.iter().map(|f| f.record.clone()).collect();
    if result.manifest.status == Status::Failed {
        result.manifest.outputs.clear();
    }
    if let Err(e) = store.put(
        &format!("{dir}/manifest.json"),
        &result.manifest.to_json(),
        "application/json",
    ) {
        tracing::error!(dir, error = %e, "could not write manifest");
    }
    result.manifest
}

/// `file://` + the canonical path.
fn file_uri(file: &Path) -> String {
    match file.canonicalize() {
        Ok(p) => format!("file://{}", p.display()),
        Err(_) => format!("file://{}", file.display()),
    }
}

/// A local file's version: modification time and size.
fn file_etag(file: &Path) -> String {
    std::fs::metadata(file)
        .ok()
        .and_then(|m| {
            Some(format!(
                "{:x}-{:x}",
                m.modified()
                    .ok()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_nanos(),
                m.len()
            ))
        })
        .unwrap_or_default()
}

/// An output folder name per file: its stem, made unique (`cat`, `cat-2`) and key-safe.
fn unique_dirs(files: &[PathBuf]) -> Vec<String> {
    let mut seen = HashSet::new();
    files
        .iter()
        .map(|f| {
            let stem: String = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let stem = if stem.is_empty() || stem.chars().all(|c| c == '.') {
                "source".to_string()
            } else {
                stem
            };
            let mut name = stem.clone();
            let mut n = 2;
            while !seen.insert(name.clone()) {
                name = format!("{stem}-{n}");
                n += 1;
            }
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_dirs_are_unique_and_safe() {
        let files: Vec<std::path::PathBuf> = ["a/cat.jpg", "b/cat.png", "x/../..", "we ird?.gif"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(
            super::unique_dirs(&files),
            vec!["cat", "cat-2", "source", "we_ird_"]
        );
    }
}
