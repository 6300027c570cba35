//! The plugin author's workbench. `plugin run` takes a plugin under development (a `.wasm`, a
//! crate, a published directory — [`crate::plugin::dev`]) and runs it on real files through
//! the real pipeline and sandbox: a job per file with a profile made for the plugin's world,
//! then — what the job cannot show — the watermark's overlay for each rendition size drawn
//! again and written as a PNG, and a rule's notifications for the job's own event (or a given
//! one). `plugin test` ([`fixture`]) checks the same results against fixtures.

pub mod fixture;

use crate::config::Config;
use crate::manifest::Manifest;
use crate::notify::Event;
use crate::plugin::descriptor::PluginDescriptor;
use crate::plugin::dev::DevPlugin;
use crate::plugin::{HostConfig, Plugin, PluginError, PluginHost, World, default_cache_dir, types};
use crate::process::{Options, SetupError};
use crate::services::Services;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why the workbench could not run a plugin (what the plugin itself did is a result).
#[derive(Debug, thiserror::Error)]
pub enum WorkbenchError {
    /// The plugin cannot be built, read or loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The engine could not be set up around it.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Bad input to the workbench (a fixture, an event file, an output directory).
    #[error("{0}")]
    Input(String),
}

/// A plugin loaded for trials.
#[derive(Debug)]
pub struct Bench {
    plugin: Plugin,
    /// The plugin in the registry's layout (`plugin.toml` + `plugin.wasm`): the trial jobs'
    /// `plugins.local`.
    staged: tempfile::TempDir,
    /// Configuration over its `plugin.toml`'s.
    config: BTreeMap<String, String>,
    /// Time to build, read and load it, in milliseconds.
    pub load_ms: f64,
}

/// What a plugin did with one file.
#[derive(Debug, Serialize)]
pub struct Trial {
    /// The file.
    pub file: PathBuf,
    /// Where the job's outputs and manifest are.
    pub dir: PathBuf,
    /// How the job ended (`succeeded`, `failed`) and why it failed.
    pub status: String,
    /// The job's error, if it failed.
    pub error: Option<String>,
    /// The time the plugin's calls took in the job, in milliseconds.
    pub plugin_ms: Option<f64>,
    /// The job's notes (a metadata extractor's error answer, a skipped plugin).
    pub notes: Vec<String>,
    /// A metadata extractor's entries.
    pub entries: BTreeMap<String, serde_json::Value>,
    /// A watermarker's overlay for each rendition size.
    pub overlays: Vec<Drawn>,
    /// A rule's notifications for the event.
    pub notifications: Vec<Sent>,
    /// The event the rule evaluated.
    pub event_status: Option<String>,
    /// The job's outputs (files under `dir`).
    pub outputs: Vec<String>,
}

/// A watermarker's answer for one rendition size.
#[derive(Debug, Serialize)]
pub struct Drawn {
    /// The rendition's size.
    pub width: u32,
    /// The rendition's size.
    pub height: u32,
    /// The overlay, if it drew one.
    pub overlay: Option<OverlayFacts>,
    /// The call's failure, if it failed.
    pub error: Option<String>,
}

/// What an overlay is.
#[derive(Debug, Serialize)]
pub struct OverlayFacts {
    /// Its size.
    pub width: u32,
    /// Its size.
    pub height: u32,
    /// Its top-left corner in the rendition.
    pub x: i32,
    /// Its top-left corner in the rendition.
    pub y: i32,
    /// Its opacity.
    pub opacity: f32,
    /// Whether it is tiled over the rendition.
    pub tiled: bool,
    /// Whether it lies wholly inside the rendition.
    pub inside: bool,
    /// Fraction of its pixels that are not fully transparent.
    pub visible_fraction: f64,
    /// The PNG it was written to.
    pub png: PathBuf,
}

/// A notification a rule returned.
#[derive(Debug, Serialize)]
pub struct Sent {
    /// The sink it names.
    pub sink: String,
    /// Its subject.
    pub subject: String,
    /// Its body.
    pub body: String,
    /// Its attributes.
    pub attributes: Vec<(String, String)>,
}

impl Bench {
    /// Build (a crate), read and load the plugin at `path` with `config` over its own.
    pub fn open(path: &Path, config: BTreeMap<String, String>) -> Result<Bench, WorkbenchError> {
        let started = Instant::now();
        let host = PluginHost::new(&HostConfig {
            cache_dir: default_cache_dir(),
            ..HostConfig::default()
        })
        .map_err(|e| WorkbenchError::Input(e.to_string()))?;
        let dev = DevPlugin::open(path)?;
        let mut spec = dev.spec();
        spec.config.extend(config.clone());
        let limits = spec.limits;
        let plugin = host.load(spec, &dev.wasm)?;
        let descriptor = dev.descriptor.clone().unwrap_or_else(|| PluginDescriptor {
            name: plugin.name().to_string(),
            version: dev.version(),
            world: plugin.world(),
            description: String::new(),
            config: toml::Table::new(),
            limits,
            sha256: None,
        });
        let staged = tempfile::tempdir().map_err(|e| WorkbenchError::Input(e.to_string()))?;
        let stage = |name: &str, bytes: &[u8]| {
            std::fs::write(staged.path().join(name), bytes)
                .map_err(|e| WorkbenchError::Input(format!("staging the plugin: {e}")))
        };
        stage("plugin.wasm", &dev.wasm)?;
        stage("plugin.toml", descriptor.to_toml().as_bytes())?;
        Ok(Bench {
            plugin,
            staged,
            config,
            load_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The loaded plugin.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Run the plugin on each of `files`, writing under `out` (`<out>/<file stem>/`, and
    /// `<out>/index.html`); `event`: the event a rule evaluates instead of each job's own.
    pub fn run(
        &self,
        files: &[PathBuf],
        out: &Path,
        event: Option<&types::JobEvent>,
    ) -> Result<Vec<Trial>, WorkbenchError> {
        let config = self.config_for_jobs()?;
        let services = Services::with_config(config)?;
        let summary = crate::process::run_with(
            &services,
            &Options {
                files: files.to_vec(),
                out: out.to_path_buf(),
                profile: None,
                config: None,
                jobs: Some(1),
                slideshow: false,
            },
        )?;
        files
            .iter()
            .zip(summary.jobs)
            .map(|(file, (dir, manifest))| self.trial(file, &out.join(dir), &manifest, event))
            .collect()
    }

    /// The engine config of the trial jobs: no registry, this plugin over the bundled ones,
    /// one profile using it as its world does, the environment's cache and limits.
    fn config_for_jobs(&self) -> Result<Config, WorkbenchError> {
        let name = self.plugin.name();
        let mut using = toml::Table::new();
        using.insert(
            "plugin".into(),
            format!("{name}@={}", self.plugin.version()).into(),
        );
        using.insert(
            "config".into(),
            toml::Value::Table(
                self.config
                    .iter()
                    .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
                    .collect(),
            ),
        );
        let using = toml::Value::Table(using);
        let mut profile = toml::Table::new();
        let small_video = |size: i64| -> toml::Value {
            let mut rung = toml::Table::new();
            rung.insert("size".into(), size.into());
            rung.insert("bitrate_kbps".into(), 600.into());
            let mut v = toml::Table::new();
            v.insert("ladder".into(), vec![toml::Value::Table(rung)].into());
            v.insert("hls".into(), false.into());
            toml::Value::Table(v)
        };
        let rendition = |name: &str, width: i64, format: &str| -> toml::Value {
            let mut r = toml::Table::new();
            r.insert("name".into(), name.into());
            r.insert("width".into(), width.into());
            r.insert("format".into(), format.into());
            toml::Value::Table(r)
        };
        match self.plugin.world() {
            World::MetadataExtractor => {
                profile.insert("metadata".into(), vec![using].into());
                profile.insert("renditions".into(), toml::Value::Array(Vec::new()));
                profile.insert("video".into(), small_video(240));
            }
            World::Watermarker => {
                profile.insert("watermark".into(), using);
                profile.insert(
                    "renditions".into(),
                    vec![
                        rendition("watermarked", 1280, "png"),
                        rendition("small", 320, "png"),
                    ]
                    .into(),
                );
                profile.insert("video".into(), small_video(360));
            }
            World::NotificationRule => {
                profile.insert(
                    "renditions".into(),
                    vec![rendition("small", 320, "jpeg")].into(),
                );
                profile.insert("video".into(), small_video(240));
            }
        }
        let mut table = toml::Table::new();
        table.insert("default_profile".into(), "plugin-run".into());
        let mut profiles = toml::Table::new();
        profiles.insert("plugin-run".into(), toml::Value::Table(profile));
        table.insert("profiles".into(), toml::Value::Table(profiles));
        let mut plugins = toml::Table::new();
        plugins.insert("registry".into(), "".into());
        plugins.insert(
            "local".into(),
            vec![toml::Value::String(
                self.staged.path().display().to_string(),
            )]
            .into(),
        );
        table.insert("plugins".into(), toml::Value::Table(plugins));
        let text = toml::to_string(&table).map_err(|e| WorkbenchError::Input(e.to_string()))?;
        // Only what says how to run (the cache, the limits) comes from the environment: not
        // profiles, registries or sinks (a trial sends nothing).
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("MEDIAFLOW_LIMITS__")
                    || k == "MEDIAFLOW_PLUGINS__CACHE_DIR"
                    || k == "MEDIAFLOW_PLUGINS__MAX_WASM_BYTES"
            })
            .collect();
        Config::from_sources(Some(("plugin run", &text)), &env)
            .map_err(|e| WorkbenchError::Input(e.to_string()))
    }

    fn trial(
        &self,
        file: &Path,
        dir: &Path,
        m: &Manifest,
        event: Option<&types::JobEvent>,
    ) -> Result<Trial, WorkbenchError> {
        let name = self.plugin.name();
        let job_event = Event::from_manifest(m);
        let mut trial = Trial {
            file: file.to_path_buf(),
            dir: dir.to_path_buf(),
            status: m.status.to_string(),
            error: m
                .error
                .as_ref()
                .map(|e| format!("{} ({})", e.message, e.code)),
            plugin_ms: m
                .plugins
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.duration_ms),
            notes: m.notes.clone(),
            entries: m.metadata.get(name).cloned().unwrap_or_default(),
            overlays: Vec::new(),
            notifications: Vec::new(),
            event_status: None,
            outputs: m
                .outputs
                .iter()
                .map(|o| o.uri.rsplit('/').next().unwrap_or(&o.uri).to_string())
                .collect(),
        };
        match self.plugin.world() {
            World::MetadataExtractor => {}
            World::Watermarker => trial.overlays = self.draw_all(dir, m, &job_event)?,
            World::NotificationRule => {
                let event = event.cloned().unwrap_or_else(|| job_event.to_wit());
                trial.event_status =
                    Some(crate::plugin::inspect::status_name(event.status).to_string());
                let mut instance = self.plugin.instantiate()?;
                trial.notifications = instance
                    .evaluate(&event)?
                    .into_iter()
                    .map(|n| Sent {
                        sink: n.sink,
                        subject: n.subject,
                        body: n.body,
                        attributes: n.attributes,
                    })
                    .collect();
            }
        }
        Ok(trial)
    }

    /// Draw the overlay for each size among the job's watermarked outputs (images, video
    /// rungs, the poster; 1280×720 when it has none), writing each as `overlay-WxH.png` in
    /// `dir`.
    fn draw_all(
        &self,
        dir: &Path,
        m: &Manifest,
        event: &Event,
    ) -> Result<Vec<Drawn>, WorkbenchError> {
        let wit = event.to_wit();
        let info = wit
            .media
            .unwrap_or_else(|| types::MediaInfo::image(&m.source.uri, "unknown", 1280, 720, 0));
        let mut sizes: Vec<(u32, u32)> = m
            .outputs
            .iter()
            .filter(|o| matches!(o.kind.as_str(), "image" | "video" | "poster"))
            .filter(|o| o.width > 0 && o.height > 0)
            .map(|o| (o.width, o.height))
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.is_empty() {
            sizes.push((1280, 720));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| WorkbenchError::Input(format!("{}: {e}", dir.display())))?;
        let mut instance = self.plugin.instantiate()?;
        let mut drawn = Vec::new();
        for (width, height) in sizes {
            let result = instance.draw(&info, types::Size { width, height });
            let (overlay, error) = match result {
                Ok(Some(o)) => (Some(facts(&o, width, height, dir)?), None),
                Ok(None) => (None, None),
                Err(e) => (None, Some(e.to_string())),
            };
            drawn.push(Drawn {
                width,
                height,
                overlay,
                error,
            });
        }
        Ok(drawn)
    }
}

/// Describe overlay `o` on a `width`×`height` rendition and write it as a PNG in `dir`.
fn facts(
    o: &types::Overlay,
    width: u32,
    height: u32,
    dir: &Path,
) -> Result<OverlayFacts, WorkbenchError> {
    let img = &o.image;
    let png = dir.join(format!("overlay-{width}x{height}.png"));
    let pixels =
        image::RgbaImage::from_raw(img.width, img.height, img.pixels.clone()).ok_or_else(|| {
            WorkbenchError::Input("the overlay's pixels do not match its size".into())
        })?;
    pixels
        .save_with_format(&png, image::ImageFormat::Png)
        .map_err(|e| WorkbenchError::Input(format!("{}: {e}", png.display())))?;
    let total = (u64::from(img.width) * u64::from(img.height)).max(1);
    let visible = img.pixels.chunks_exact(4).filter(|p| p[3] > 0).count() as u64;
    let inside = o.x >= 0
        && o.y >= 0
        && i64::from(o.x) + i64::from(img.width) <= i64::from(width)
        && i64::from(o.y) + i64::from(img.height) <= i64::from(height);
    Ok(OverlayFacts {
        width: img.width,
        height: img.height,
        x: o.x,
        y: o.y,
        opacity: o.opacity,
        tiled: o.tile.is_some(),
        inside,
        visible_fraction: visible as f64 / total as f64,
        png,
    })
}

impl std::fmt::Display for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self
            .plugin_ms
            .map(|ms| format!(", the plugin's calls {ms:.1} ms"))
            .unwrap_or_default();
        writeln!(f, "{}: job {}{ms}", self.file.display(), self.status)?;
        if let Some(e) = &self.error {
            writeln!(f, "  error: {e}")?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        if !self.entries.is_empty() {
            let w = self.entries.keys().map(String::len).max().unwrap_or(0);
            writeln!(f, "  {} metadata entries:", self.entries.len())?;
            for (k, v) in &self.entries {
                writeln!(f, "    {k:<w$}  {v}")?;
            }
        }
        for d in &self.overlays {
            match (&d.overlay, &d.error) {
                (Some(o), _) => writeln!(
                    f,
                    "  {}x{}: overlay {}x{} at ({}, {}), opacity {:.2}{}{} → {}",
                    d.width,
                    d.height,
                    o.width,
                    o.height,
                    o.x,
                    o.y,
                    o.opacity,
                    if o.tiled { ", tiled" } else { "" },
                    if o.inside { "" } else { ", partly outside" },
                    o.png.display()
                )?,
                (None, Some(e)) => writeln!(f, "  {}x{}: failed: {e}", d.width, d.height)?,
                (None, None) => writeln!(f, "  {}x{}: no overlay", d.width, d.height)?,
            }
        }
        if let Some(status) = &self.event_status {
            writeln!(
                f,
                "  event `{status}` → {} notification(s)",
                self.notifications.len()
            )?;
            for n in &self.notifications {
                writeln!(f, "    to sink `{}`: {}", n.sink, n.subject)?;
                writeln!(f, "      {}", n.body)?;
                for (k, v) in &n.attributes {
                    writeln!(f, "      {k} = {v}")?;
                }
            }
        }
        if !self.outputs.is_empty() {
            writeln!(
                f,
                "  outputs in {}: {}",
                self.dir.display(),
                self.outputs.join(", ")
            )?;
        }
        Ok(())
    }
}

/// The event `name` names: a status (`succeeded`, `failed`, `retrying`, `dead-lettered`: a
/// sample event with it) or a job's `manifest.json` (that job's event).
pub fn event_named(name: &str) -> Result<types::JobEvent, WorkbenchError> {
    use crate::plugin::inspect::sample_event;
    let status = match name {
        "succeeded" => Some(types::JobStatus::Succeeded),
        "failed" => Some(types::JobStatus::Failed),
        "retrying" => Some(types::JobStatus::Retrying),
        "dead-lettered" => Some(types::JobStatus::DeadLettered),
        _ => None,
    };
    if let Some(status) = status {
        return Ok(sample_event(status));
    }
    let text = std::fs::read(name).map_err(|e| {
        WorkbenchError::Input(format!(
            "event {name:?}: {e} (name a status — succeeded, failed, retrying, dead-lettered — \
             or a job's manifest.json)"
        ))
    })?;
    let m: Manifest = serde_json::from_slice(&text)
        .map_err(|e| WorkbenchError::Input(format!("event {name:?}: not a manifest.json: {e}")))?;
    Ok(Event::from_manifest(&m).to_wit())
}
