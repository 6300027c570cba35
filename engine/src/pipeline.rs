//! The media work of one job, independent of where the source came from or where outputs go
//! (the [`crate::lifecycle`] fetches, stores and records): hash → probe (limits) → metadata
//! plugins → decode once → for each rendition: resize → watermark (plugin draws once per size,
//! host blends) → encode. The result is the output bytes plus a manifest; a failure at any
//! stage is a `failed` manifest with its error, never a panic. Stages are reported, and
//! cancellation checked between renditions, through the job's [`JobControl`].

use crate::config::{Config, OnError, Profile, Rendition};
use crate::error::JobError;
use crate::job::control::JobControl;
use crate::manifest::{self, Manifest, Status};
use crate::media::decode::{self, Decoded};
use crate::media::decoder::picture::Picture;
use crate::media::overlay::{self, Overlay};
use crate::media::probe::{self, Probe};
use crate::media::{Pixels, encode, resize};
use crate::plugin::catalog::{Catalog, CatalogSource, LiveCatalog};
use crate::plugin::{Plugin, PluginErrorKind, SourceHandle, types};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

mod slideshow;
mod video;

pub use slideshow::{Slide, Slideshow};

/// A source to process.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Job id (goes into the manifest).
    pub id: String,
    /// Where the source came from (`file://…`, `s3://…`).
    pub source_uri: String,
    /// The source's bytes on local disk.
    pub path: &'a Path,
    /// The source's storage version.
    pub etag: String,
    /// Profile name.
    pub profile: String,
    /// Cancellation, progress and scratch space.
    pub control: &'a JobControl,
}

/// One produced file, before it is stored.
#[derive(Debug, Clone)]
pub struct OutputFile {
    /// File name relative to the job's output prefix (`large.jpg`).
    pub key: String,
    /// MIME type.
    pub content_type: &'static str,
    /// The bytes, in memory or in a scratch file.
    pub body: Body,
    /// Its manifest entry (the caller fills in `uri`).
    pub record: manifest::Output,
}

/// An output's bytes: small ones in memory, video outputs in the job's scratch directory
/// (so memory does not grow with the duration).
#[derive(Debug, Clone)]
pub enum Body {
    /// In memory.
    Bytes(Vec<u8>),
    /// A file in [`JobResult::scratch`].
    File(std::path::PathBuf),
}

impl OutputFile {
    /// Store this output at `key`.
    pub fn store(
        &self,
        store: &dyn crate::storage::Storage,
        key: &str,
    ) -> Result<crate::storage::ObjectInfo, crate::storage::StorageError> {
        match &self.body {
            Body::Bytes(b) => store.put(key, b, self.content_type),
            Body::File(p) => store.put_file(key, p, self.content_type),
        }
    }
}

/// What a job produced: files to store, then the manifest (written last).
#[derive(Debug)]
pub struct JobResult {
    /// The manifest, `succeeded` or `failed`.
    pub manifest: Manifest,
    /// Output files (empty when failed).
    pub files: Vec<OutputFile>,
    /// Where file-backed outputs live until stored (removed when the result is dropped).
    pub scratch: Option<tempfile::TempDir>,
    /// Why it failed (the manifest's `error`, with its cause).
    pub error: Option<JobError>,
}

/// Runs jobs against a configuration and a plugin catalog. Cheap to share across threads.
#[derive(Debug, Clone)]
pub struct Processor {
    config: Arc<Config>,
    /// Live for the engine's processor; each job runs on a copy fixed to its snapshot.
    catalog: CatalogSource,
}

/// Accumulates per-stage timings, and reports each stage to the job's control.
struct Timings(BTreeMap<String, f64>, JobControl);

impl Timings {
    fn time<T>(&mut self, stage: &'static str, f: impl FnOnce() -> T) -> T {
        self.1.stage(stage);
        let t = Instant::now();
        let out = f();
        *self.0.entry(stage.to_string()).or_default() += t.elapsed().as_secs_f64() * 1e3;
        out
    }
}

/// Mutable state of one running job, so a failure can still report what was learned.
struct Run {
    timings: Timings,
    source: manifest::Source,
    /// Every source, when the job has several (images to video).
    sources: Vec<manifest::Source>,
    metadata: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    plugins: Vec<manifest::PluginRecord>,
    notes: Vec<String>,
    scratch: Option<tempfile::TempDir>,
}

impl Run {
    fn new(uri: &str, etag: &str, control: &JobControl) -> Run {
        Run {
            timings: Timings(BTreeMap::new(), control.clone()),
            source: manifest::Source {
                uri: uri.to_string(),
                etag: etag.to_string(),
                bytes: 0,
                sha256: String::new(),
                media: None,
            },
            sources: Vec::new(),
            metadata: BTreeMap::new(),
            plugins: Vec::new(),
            notes: Vec::new(),
            scratch: None,
        }
    }

    /// The job's scratch directory (for file-backed outputs), made on first use in the
    /// attempt's scratch space and removed with the job's result.
    fn scratch_dir(&mut self) -> Result<std::path::PathBuf, JobError> {
        if self.scratch.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("mediaflow-job-")
                .tempdir_in(self.timings.1.scratch())
                .map_err(video::scratch_err)?;
            self.scratch = Some(dir);
        }
        Ok(self
            .scratch
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default())
    }
}

/// The job's result from how its stages went.
fn finish(
    id: &str,
    source_uri: &str,
    profile: &str,
    mut run: Run,
    outcome: Result<Vec<OutputFile>, JobError>,
    started: Instant,
) -> JobResult {
    run.timings
        .0
        .insert("total".into(), started.elapsed().as_secs_f64() * 1e3);
    let (status, error, files) = match outcome {
        Ok(files) => (Status::Succeeded, None, files),
        Err(e) => {
            // The lifecycle logs the job's failure once it decides what it means.
            tracing::debug!(job_id = %id, source = %source_uri, error_code = e.code(), error = %e, "pipeline stopped");
            (Status::Failed, Some(e), Vec::new())
        }
    };
    let manifest = Manifest {
        schema: manifest::SCHEMA,
        job_id: id.to_string(),
        status,
        source: run.source,
        sources: run.sources,
        profile: profile.to_string(),
        outputs: files.iter().map(|f| f.record.clone()).collect(),
        metadata: run.metadata,
        plugins: run.plugins,
        error: error.as_ref().map(manifest::ErrorRecord::from),
        timings_ms: run.timings.0,
        notes: run.notes,
    };
    JobResult {
        manifest,
        files,
        scratch: run.scratch,
        error,
    }
}

impl Processor {
    /// A processor for `config`, resolving plugins from `catalog`.
    pub fn new(config: Arc<Config>, catalog: Arc<Catalog>) -> Self {
        Self {
            config,
            catalog: CatalogSource::Fixed(catalog),
        }
    }

    /// A processor whose jobs each resolve plugins from the catalog `live` holds when they
    /// start, and keep it to the end whatever the registry swaps in meanwhile.
    pub fn live(config: Arc<Config>, live: Arc<LiveCatalog>) -> Self {
        Self {
            config,
            catalog: CatalogSource::Live(live),
        }
    }

    /// The catalog a job starting now would use.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.snapshot()
    }

    /// Where this processor resolves plugins (live: follows the registry).
    pub fn catalog_source(&self) -> CatalogSource {
        self.catalog.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Check that every plugin `profile` names can be resolved; the error names the first
    /// that cannot.
    pub fn check_profile(&self, name: &str) -> Result<(), JobError> {
        let profile = self
            .config
            .profile(name)
            .ok_or_else(|| JobError::UnknownProfile(self.config.unknown_profile(name)))?;
        for u in profile.metadata.iter().chain(profile.watermark.iter()) {
            self.plugin(u).map_err(|e| match e {
                JobError::PluginNotFound { plugin, why, waits } => JobError::PluginNotFound {
                    plugin: format!("{plugin} (profile {name:?})"),
                    why,
                    waits,
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// The plugin `u` names, resolved; when none is loaded, an error saying what is, where it
    /// looked and what to do (transient when a registry is watched: publishing it helps).
    fn plugin(&self, u: &crate::config::PluginUse) -> Result<Plugin, JobError> {
        if let Some(p) = self.catalog.resolve_use(u) {
            return Ok(p);
        }
        let catalog = self.catalog();
        let missing = catalog.why_missing(&u.plugin.name, &u.plugin.req);
        let waits = matches!(
            crate::config::RegistryLocation::from_config(&self.config),
            Ok(Some(_))
        );
        Err(JobError::PluginNotFound {
            plugin: u.plugin.to_string(),
            why: format!(
                "{missing}; looked in {} (publish it with `mediaflow plugin publish`, list \
                 what an engine with this config has with `mediaflow plugin list`, or fix the \
                 profile)",
                crate::config::plugin_places(&self.config)
            ),
            waits,
        })
    }

    /// Run `job`. Never panics on bad input; failures become a `failed` manifest.
    pub fn run(&self, job: &Job<'_>) -> JobResult {
        if let CatalogSource::Live(_) = self.catalog {
            // The job's snapshot: every plugin it uses comes from this one catalog.
            return Processor::new(self.config.clone(), self.catalog()).run(job);
        }
        let started = Instant::now();
        let mut run = Run::new(&job.source_uri, &job.etag, job.control);
        let outcome = self.run_stages(job, &mut run);
        finish(
            &job.id,
            &job.source_uri,
            &job.profile,
            run,
            outcome,
            started,
        )
    }

    fn run_stages(&self, job: &Job<'_>, run: &mut Run) -> Result<Vec<OutputFile>, JobError> {
        let profile = self
            .config
            .profile(&job.profile)
            .ok_or_else(|| JobError::UnknownProfile(self.config.unknown_profile(&job.profile)))?;
        let limits = self.config.limits;
        let (bytes, sha) = run.timings.time("hash", || hash_file(job.path))?;
        run.source.bytes = bytes;
        run.source.sha256 = sha;
        let probe = run
            .timings
            .time("probe", || probe::probe_file(job.path, &limits))?;
        if !probe.format.is_image() {
            return self.video_stages(job, run, profile, probe.format.name());
        }
        // HEIF/AVIF: the decoder child describes the picture, then waits to decode it.
        let (probe, picture) = if probe.format.in_child() {
            let p = run.timings.time("probe", || {
                Picture::open(job.path, &probe, &job.source_uri, &limits)
            })?;
            (p.probe.clone(), Some(p))
        } else {
            (probe, None)
        };
        let (dw, dh) = probe.display_size();
        run.source.media = Some(manifest::Media {
            kind: "image".into(),
            format: probe.format.name().into(),
            codec: None,
            width: dw,
            height: dh,
            duration_s: None,
            fps: None,
            has_audio: false,
            frames: probe.frames,
            orientation: probe.orientation,
            ..Default::default()
        });
        if probe.animated() {
            run.notes.push(format!(
                "animated {} with {} frames: the first frame was used",
                probe.format.name(),
                probe.frames
            ));
        }
        run.notes.extend(probe.notes.iter().cloned());
        if let (Some(p), Some(m)) = (&picture, run.source.media.as_mut()) {
            m.codec = Some(p.codec().to_string());
            m.bit_depth = Some(p.bit_depth());
            if let Some((cols, rows)) = p.grid() {
                run.notes
                    .push(format!("a grid of {cols}x{rows} tiles, assembled"));
            }
        }
        let info = media_info(&job.source_uri, &probe);
        self.metadata(job, run, profile, &info)?;

        let need = largest_need(dw, dh, &profile.renditions);
        let decoded = run.timings.time("decode", || match picture {
            Some(p) => p.decode(),
            None => decode::decode(job.path, &probe, &limits, need),
        })?;
        run.notes.extend(decoded.notes.iter().cloned());
        let files = self.renditions(job, run, profile, &info, &probe, &decoded)?;
        Ok(files)
    }

    /// Run the profile's metadata plugins; they read the source lazily through the host.
    fn metadata(
        &self,
        job: &Job<'_>,
        run: &mut Run,
        profile: &Profile,
        info: &types::MediaInfo,
    ) -> Result<(), JobError> {
        for u in &profile.metadata {
            let plugin = self.plugin(u)?;
            let source = SourceHandle::open(job.path).map_err(|e| JobError::Storage {
                message: format!("reopening source: {e}"),
                class: crate::error::ErrorClass::Permanent,
            })?;
            let t = Instant::now();
            let result = plugin.extract(info, &source);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            *run.timings.0.entry("metadata".into()).or_default() += ms;
            let mut record = plugin_record(&plugin, ms);
            match result {
                Ok(entries) => {
                    run.metadata.insert(
                        plugin.name().to_string(),
                        entries
                            .into_iter()
                            .map(|e| (e.key, metadata_json(e.value)))
                            .collect(),
                    );
                }
                Err(e)
                    if matches!(e.kind, PluginErrorKind::Guest { .. })
                        && !profile.strict_metadata =>
                {
                    run.notes.push(format!("metadata: {e}"));
                }
                Err(e) if u.on_error == OnError::Skip => {
                    run.notes
                        .push(format!("metadata {e}: skipped (on_error = \"skip\")"));
                    record.skipped = Some(e.to_string());
                }
                Err(e) => return Err(e.into()),
            }
            run.plugins.push(record);
        }
        Ok(())
    }

    fn renditions(
        &self,
        job: &Job<'_>,
        run: &mut Run,
        profile: &Profile,
        info: &types::MediaInfo,
        probe: &Probe,
        decoded: &Decoded,
    ) -> Result<Vec<OutputFile>, JobError> {
        let (dw, dh) = probe.display_size();
        let src = &decoded.pixels;
        let mut watermark = match &profile.watermark {
            Some(u) if profile.renditions.iter().any(|r| r.watermark) => {
                let plugin = self.plugin(u)?;
                Some(Watermarker::new(plugin, u.on_error)?)
            }
            _ => None,
        };
        let mut resizer = fast_image_resize::Resizer::new();
        let embed = encode::Embed {
            icc: decoded.icc.as_deref(),
            exif: if profile.keep_metadata {
                decoded.exif.as_deref()
            } else {
                None
            },
        };
        // Largest first, so smaller full-frame renditions can be cut from a larger one.
        let mut order: Vec<usize> = (0..profile.renditions.len()).collect();
        let plans: Vec<resize::Plan> = profile
            .renditions
            .iter()
            .map(|r| resize::plan(dw, dh, r))
            .collect();
        order.sort_by_key(|&i| {
            std::cmp::Reverse(u64::from(plans[i].width) * u64::from(plans[i].height))
        });
        let full_frame = (0.0, 0.0, f64::from(dw), f64::from(dh));
        let mut frames: Vec<Pixels> = Vec::new();
        let mut files: Vec<(usize, OutputFile)> = Vec::new();
        let count = order.len() as f64;
        for (done, i) in order.into_iter().enumerate() {
            // Between renditions: a canceled job stops here; progress counts renditions.
            job.control.check()?;
            job.control.progress("renditions", done as f64 / count);
            let (r, p) = (&profile.renditions[i], plans[i]);
            let (from, plan) = resize_source(&frames, src, (dw, dh), p);
            let mut img: Pixels = run
                .timings
                .time("resize", || resize::resize(&mut resizer, from, &plan))
                .map_err(|e| JobError::Encode {
                    format: r.format.name(),
                    message: format!("resize: {e}"),
                })?;
            if p.crop == full_frame
                && plans
                    .iter()
                    .any(|q| q.width * 2 <= img.width && q.height * 2 <= img.height)
            {
                frames.push(img.clone());
            }
            if r.watermark
                && let Some(w) = watermark.as_mut()
            {
                w.apply(&mut img, info, &mut run.timings)?;
            }
            let data = run
                .timings
                .time("encode", || encode::encode(&img, r, &embed))?;
            files.push((i, output_file(r, &img, data)));
        }
        files.sort_by_key(|(i, _)| *i);
        let files: Vec<OutputFile> = files.into_iter().map(|(_, f)| f).collect();
        if let Some(w) = watermark {
            let mut record = plugin_record(&w.plugin, w.ms);
            if let Some(why) = w.skipped {
                run.notes.push(format!(
                    "watermark {why}: skipped (on_error = \"skip\"), renditions made without it"
                ));
                record.skipped = Some(why);
            }
            run.plugins.push(record);
        }
        tracing::debug!(job_id = %job.id, outputs = files.len(), shrink = decoded.shrink, "renditions done");
        Ok(files)
    }
}

/// What rendition plan `p` (on the display size `display`) is resized from: a full-frame
/// rendition at most half the size of an already made one is cut from that (already
/// Lanczos-filtered) image — same quality, a fraction of the work; anything else from the
/// decoded source, its crop scaled from the display size to the decoded size.
fn resize_source<'a>(
    made: &'a [Pixels],
    src: &'a Pixels,
    display: (u32, u32),
    p: resize::Plan,
) -> (&'a Pixels, resize::Plan) {
    let (dw, dh) = (f64::from(display.0), f64::from(display.1));
    let cascade = (p.crop == (0.0, 0.0, dw, dh))
        .then(|| {
            made.iter()
                .filter(|f| f.width >= 2 * p.width && f.height >= 2 * p.height)
                .min_by_key(|f| u64::from(f.width) * u64::from(f.height))
        })
        .flatten();
    match cascade {
        Some(f) => (
            f,
            resize::Plan {
                crop: (0.0, 0.0, f64::from(f.width), f64::from(f.height)),
                ..p
            },
        ),
        None => {
            let (sx, sy) = (f64::from(src.width) / dw, f64::from(src.height) / dh);
            (
                src,
                resize::Plan {
                    crop: (p.crop.0 * sx, p.crop.1 * sy, p.crop.2 * sx, p.crop.3 * sy),
                    ..p
                },
            )
        }
    }
}

/// A job's watermark plugin: one instance, the overlay it drew for each rendition size, and
/// the time spent (for the manifest's plugin record).
struct Watermarker {
    plugin: Plugin,
    instance: crate::plugin::PluginInstance,
    ms: f64,
    drawn: HashMap<(u32, u32), Option<Overlay>>,
    on_error: OnError,
    /// Why it was skipped (it failed, and `on_error` is `skip`).
    skipped: Option<String>,
}

impl Watermarker {
    fn new(plugin: Plugin, on_error: OnError) -> Result<Watermarker, JobError> {
        let t = Instant::now();
        let instance = plugin.instantiate()?;
        Ok(Watermarker {
            plugin,
            instance,
            ms: t.elapsed().as_secs_f64() * 1e3,
            drawn: HashMap::new(),
            on_error,
            skipped: None,
        })
    }

    /// Blend the watermark into `img`: the plugin draws once per rendition size, the host
    /// blends natively.
    fn apply(
        &mut self,
        img: &mut Pixels,
        info: &types::MediaInfo,
        timings: &mut Timings,
    ) -> Result<(), JobError> {
        let t = Instant::now();
        let overlay = match self.drawn.entry((img.width, img.height)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let size = types::Size {
                    width: img.width,
                    height: img.height,
                };
                let drawn = match self.instance.draw(info, size) {
                    Ok(drawn) => drawn.map(Overlay::from),
                    Err(err) if self.on_error == OnError::Skip => {
                        self.skipped.get_or_insert_with(|| err.to_string());
                        None
                    }
                    Err(err) => return Err(err.into()),
                };
                e.insert(drawn)
            }
        };
        if let Some(o) = overlay {
            overlay::blend(img, o);
        }
        let elapsed = t.elapsed().as_secs_f64() * 1e3;
        self.ms += elapsed;
        *timings.0.entry("watermark".into()).or_default() += elapsed;
        Ok(())
    }
}

/// The largest decoded size any rendition needs, in display orientation (for shrink-on-load).
fn largest_need(dw: u32, dh: u32, renditions: &[Rendition]) -> Option<(u32, u32)> {
    let mut need: Option<(u32, u32)> = None;
    for r in renditions {
        let p = resize::plan(dw, dh, r);
        let nw = (f64::from(p.width) * f64::from(dw) / p.crop.2.max(1.0)).ceil() as u32;
        let nh = (f64::from(p.height) * f64::from(dh) / p.crop.3.max(1.0)).ceil() as u32;
        let (w, h) = need.unwrap_or((0, 0));
        need = Some((w.max(nw), h.max(nh)));
    }
    need
}

fn output_file(r: &Rendition, img: &Pixels, data: Vec<u8>) -> OutputFile {
    let content_type = r.format.content_type();
    let record = manifest::Output {
        name: r.name.clone(),
        uri: String::new(),
        kind: "image".into(),
        format: r.format.name().into(),
        width: img.width,
        height: img.height,
        bytes: data.len() as u64,
        sha256: hex::encode(Sha256::digest(&data)),
        bitrate_bps: None,
        codec: None,
        rate: None,
    };
    OutputFile {
        key: format!("{}.{}", r.name, r.format.extension()),
        content_type,
        body: Body::Bytes(data),
        record,
    }
}

fn plugin_record(p: &Plugin, ms: f64) -> manifest::PluginRecord {
    manifest::PluginRecord {
        name: p.name().into(),
        version: p.version().into(),
        digest: p.digest(),
        world: p.world().name().into(),
        duration_ms: ms,
        skipped: None,
    }
}

fn hash_file(path: &Path) -> Result<(u64, String), JobError> {
    let mut f = std::fs::File::open(path).map_err(|e| JobError::Storage {
        message: format!("opening source: {e}"),
        class: crate::error::ErrorClass::Permanent,
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| JobError::Storage {
            message: format!("reading source: {e}"),
            class: crate::error::ErrorClass::Permanent,
        })?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((total, hex::encode(h.finalize())))
}

/// The WIT media info for a probed image.
pub fn media_info(uri: &str, p: &Probe) -> types::MediaInfo {
    let (w, h) = p.display_size();
    types::MediaInfo {
        uri: uri.into(),
        kind: if !p.format.is_image() {
            types::MediaKind::Video
        } else {
            types::MediaKind::Image
        },
        format: p.format.name().into(),
        codec: None,
        width: w,
        height: h,
        orientation: p.orientation,
        duration_s: None,
        fps: None,
        has_audio: false,
        bytes: p.bytes,
    }
}

/// A metadata value as manifest JSON: scalars as JSON scalars, structured values as objects.
pub fn metadata_json(v: types::MetadataValue) -> serde_json::Value {
    use types::MetadataValue as V;
    match v {
        V::Text(s) => json!(s),
        V::Integer(i) => json!(i),
        V::Float(f) => json!(f),
        V::Boolean(b) => json!(b),
        V::Rational(r) => json!({ "numerator": r.numerator, "denominator": r.denominator }),
        V::Timestamp(t) => {
            json!({ "unix_seconds": t.seconds, "nanoseconds": t.nanoseconds, "utc_offset_minutes": t.utc_offset_minutes })
        }
        V::Gps(g) => {
            json!({ "latitude": g.latitude, "longitude": g.longitude, "altitude_m": g.altitude_m })
        }
    }
}
