//! `mediaflow process`: run each local file through the job [`crate::lifecycle`] once, with no
//! queue and no AWS. Writes `<out>/<stem>/` (renditions + `manifest.json`, the manifest last)
//! and `<out>/index.html`. Files run in parallel on a bounded pool; one bad file never stops
//! the others. There is no second attempt: every failure, transient or not, is recorded.

use crate::error::JobError;
use crate::job::control::JobControl;
use crate::lifecycle::scratch::Scratch;
use crate::lifecycle::{
    Attempt, Destination, JobRequest, Lifecycle, ManifestWrite, Outcome, SourceLocation, SourceRef,
};
use crate::manifest::{Manifest, Status};
use crate::report;
use crate::services::Services;
use crate::storage::{FsStorage, Storage};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use crate::services::SetupError;

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
    /// Each job's directory under the output directory and its manifest, in file order.
    pub jobs: Vec<(String, Manifest)>,
}

/// Process `opts.files` into `opts.out`.
pub fn run(opts: &Options) -> Result<Summary, SetupError> {
    run_with(&Services::start(opts.config.as_deref())?, opts)
}

/// Process `opts.files` into `opts.out` with `services` already started (`opts.config` is
/// not read).
pub fn run_with(services: &Services, opts: &Options) -> Result<Summary, SetupError> {
    let processor = &services.processor;
    let profile = opts
        .profile
        .clone()
        .unwrap_or_else(|| processor.config().default_profile.clone());
    processor
        .check_profile(&profile)
        .map_err(SetupError::Profile)?;
    let store = Arc::new(FsStorage::new(&opts.out).map_err(|e| SetupError::Output(e.to_string()))?);
    // Each job's `succeeded`/`failed` event goes through the configured rules and sinks (by
    // default: a log line), delivered in the background while the others run.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| SetupError::Output(format!("starting runtime: {e}")))?;
    let notifier = Arc::new(runtime.block_on(crate::notify::Notifier::start(
        &processor.config().notify,
        processor.catalog_source(),
    ))?);
    let root = processor.config().scratch_root();
    let scratch =
        Scratch::open(&root).map_err(|source| SetupError::Scratch { path: root, source })?;
    let lifecycle = Lifecycle::new(processor.clone(), Arc::new(scratch), notifier.clone());
    let run = Run {
        lifecycle: &lifecycle,
        store: &store,
        profile: &profile,
    };
    let manifests = if opts.slideshow {
        vec![run.slideshow(&opts.files)]
    } else {
        run.each(opts)
    };
    runtime.block_on(notifier.shutdown());
    let _ = store.sweep();
    let entries: Vec<report::Entry<'_>> = if opts.slideshow {
        vec![report::Entry {
            name: format!("slideshow of {} images", opts.files.len()),
            dir: SLIDESHOW_DIR.to_string(),
            manifest: &manifests[0],
        }]
    } else {
        let dirs = unique_dirs(&opts.files);
        manifests
            .iter()
            .zip(&opts.files)
            .zip(dirs)
            .map(|((m, f), dir)| report::Entry {
                name: f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                dir,
                manifest: m,
            })
            .collect()
    };
    let html = report::render(&entries);
    let jobs = entries
        .iter()
        .map(|e| (e.dir.clone(), e.manifest.clone()))
        .collect();
    store
        .put("index.html", html.as_bytes(), "text/html")
        .map_err(|e| SetupError::Output(e.to_string()))?;
    let succeeded = manifests
        .iter()
        .filter(|m| m.status == Status::Succeeded)
        .count();
    Ok(Summary {
        succeeded,
        failed: manifests.len() - succeeded,
        report: store.root().join("index.html"),
        jobs,
    })
}

/// Where `--slideshow` writes its one video.
const SLIDESHOW_DIR: &str = "slideshow";

/// One `process` run's jobs.
struct Run<'a> {
    lifecycle: &'a Lifecycle,
    store: &'a Arc<FsStorage>,
    profile: &'a str,
}

impl Run<'_> {
    /// One job per file, on a bounded pool; their manifests in file order.
    fn each(&self, opts: &Options) -> Vec<Manifest> {
        let dirs = unique_dirs(&opts.files);
        let total = opts.files.len();
        let workers = opts
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, total.max(1));
        let progress = progress_bar(total);
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
                        let manifest = self.job(&[&opts.files[i]], &dirs[i]);
                        match &progress {
                            Some(bar) => {
                                bar.inc(1);
                                bar.set_message(format!("{} {}", dirs[i], manifest.status));
                            }
                            None => tracing::info!(
                                source = %opts.files[i].display(),
                                status = %manifest.status,
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
        results
            .into_inner()
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect()
    }

    /// `--slideshow`: every file is a picture of one video, written to `<out>/slideshow/`.
    fn slideshow(&self, files: &[PathBuf]) -> Manifest {
        let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let manifest = self.job(&paths, SLIDESHOW_DIR);
        tracing::info!(
            sources = files.len(),
            status = %manifest.status,
            ms = manifest.timings_ms.get("total").copied().unwrap_or(0.0),
            "slideshow processed"
        );
        manifest
    }

    /// Run the job of `files` into `<out>/<dir>/`; its manifest (one is made for the report
    /// even when it could not be written).
    fn job(&self, files: &[&Path], dir: &str) -> Manifest {
        let job = JobRequest {
            id: dir.to_string(),
            sources: files
                .iter()
                .map(|f| SourceRef {
                    uri: file_uri(f),
                    etag: file_etag(f),
                    size: None,
                    location: SourceLocation::File(f.to_path_buf()),
                })
                .collect(),
            profile: self.profile.to_string(),
            destination: Destination {
                storage: self.store.clone() as Arc<dyn Storage>,
                bucket: String::new(),
                prefix: format!("{dir}/"),
                manifest: ManifestWrite::Replace,
            },
        };
        let error = match self
            .lifecycle
            .run(&job, &Attempt::once(), &JobControl::detached(dir))
        {
            Outcome::Recorded(m) => return *m,
            Outcome::Unrecorded(e) | Outcome::Unrecordable(e) => e,
            Outcome::Duplicate | Outcome::Canceled | Outcome::Released => {
                JobError::Canceled(crate::error::CancelReason::Requested)
            }
        };
        crate::lifecycle::record::failure_manifest(&job, &error, None)
    }
}

/// A progress bar on a terminal.
fn progress_bar(total: usize) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    })
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
