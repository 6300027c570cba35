//! `plugin inspect` and `plugin validate`: what a component is (world, WIT version, imports,
//! exports, size, digest) and whether it works (load it and run a smoke call on sample input).

use super::host::PluginHost;
use super::types;
use super::{Plugin, PluginError, PluginSpec, SourceHandle, World};
use std::time::Instant;

/// What a component is, from its bytes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>`.
    pub sha256: String,
    /// The mediaflow world it implements, if any.
    pub world: Option<World>,
    /// The `mediaflow:plugin` WIT version, if a world was found.
    pub wit_version: Option<String>,
    /// Whether this engine hosts that WIT version (false also when no world was found).
    pub wit_hosted: bool,
    /// Imported interfaces.
    pub imports: Vec<String>,
    /// Exported interfaces.
    pub exports: Vec<String>,
}

/// Compile `wasm` and describe it. Fails only if it is not a valid component.
pub fn inspect(host: &PluginHost, wasm: &[u8]) -> Result<Inspection, PluginError> {
    let compiled = host.compile("(inspect)", wasm)?;
    let (imports, exports) = host.interface_names(&compiled.component);
    let names = || exports.iter().map(String::as_str);
    let hosted = super::world::detect(names());
    let wit_hosted = hosted.is_some();
    let found = hosted.or_else(|| super::world::detect_unhosted(names()));
    Ok(Inspection {
        size: wasm.len() as u64,
        sha256: format!("sha256:{}", compiled.digest),
        wit_hosted,
        world: found.as_ref().map(|(w, _)| *w),
        wit_version: found.map(|(_, v)| v.to_string()),
        imports,
        exports,
    })
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.world, &self.wit_version) {
            (Some(w), Some(v)) if self.wit_hosted => {
                writeln!(f, "world:       {w} (mediaflow:plugin@{v})")?
            }
            (Some(w), Some(v)) => writeln!(
                f,
                "world:       {w} (mediaflow:plugin@{v}, not hosted by this engine: it hosts {})",
                super::HOSTED_WIT_VERSIONS.join(", ")
            )?,
            _ => writeln!(f, "world:       none (not a mediaflow plugin)")?,
        }
        writeln!(f, "size:        {} bytes", self.size)?;
        writeln!(
            f,
            "sha256:      {}",
            self.sha256.trim_start_matches("sha256:")
        )?;
        writeln!(f, "exports:")?;
        for e in &self.exports {
            writeln!(f, "  {e}")?;
        }
        writeln!(f, "imports:")?;
        for i in &self.imports {
            writeln!(f, "  {i}")?;
        }
        Ok(())
    }
}

/// The result of a successful smoke call.
#[derive(Debug)]
pub struct Validation {
    /// The loaded plugin.
    pub plugin: Plugin,
    /// What the smoke call returned, in a line or two.
    pub summary: String,
    /// Time to instantiate and call, in milliseconds.
    pub call_ms: f64,
}

/// Load `wasm` under `spec` (world detection, linking) and run a smoke call on sample input.
pub fn validate(
    host: &PluginHost,
    spec: PluginSpec,
    wasm: &[u8],
) -> Result<Validation, PluginError> {
    let plugin = host.load(spec, wasm)?;
    let started = Instant::now();
    let summary = match plugin.world() {
        World::MetadataExtractor => {
            let (info, bytes) = sample_image();
            let entries = plugin.extract(&info, &SourceHandle::from_bytes(bytes))?;
            format!(
                "extract on a {}x{} JPEG returned {} entries",
                info.width,
                info.height,
                entries.len()
            )
        }
        World::Watermarker => {
            let (info, _) = sample_image();
            let mut instance = plugin.instantiate()?;
            let mut parts = Vec::new();
            for (w, h) in [(1280, 720), (320, 180)] {
                let o = instance.draw(
                    &info,
                    types::Size {
                        width: w,
                        height: h,
                    },
                )?;
                parts.push(match o {
                    Some(o) => format!(
                        "{w}x{h} → {}x{} overlay at ({}, {})",
                        o.image.width, o.image.height, o.x, o.y
                    ),
                    None => format!("{w}x{h} → no overlay"),
                });
            }
            format!("draw: {}", parts.join("; "))
        }
        World::NotificationRule => {
            let mut instance = plugin.instantiate()?;
            let mut parts = Vec::new();
            for status in [types::JobStatus::Succeeded, types::JobStatus::Failed] {
                let n = instance.evaluate(&sample_event(status))?;
                let sinks: Vec<&str> = n.iter().map(|n| n.sink.as_str()).collect();
                parts.push(format!("{} → [{}]", status_name(status), sinks.join(", ")));
            }
            format!("evaluate: {}", parts.join("; "))
        }
    };
    Ok(Validation {
        plugin,
        summary,
        call_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// A `width`×`height` gradient encoded as `format`: sample input for smoke calls and
/// scaffolded fixtures.
pub(super) fn sample_picture(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 256 / width) as u8, (y * 256 / height) as u8, 128])
    });
    let mut bytes = Vec::new();
    // Encoding a fixed in-memory image cannot fail; an empty source would still be a fair
    // smoke test.
    let _ =
        image::DynamicImage::ImageRgb8(img).write_to(&mut std::io::Cursor::new(&mut bytes), format);
    bytes
}

/// A small generated JPEG and its media info.
fn sample_image() -> (types::MediaInfo, Vec<u8>) {
    let bytes = sample_picture(64, 48, image::ImageFormat::Jpeg);
    let info = types::MediaInfo::image("sample://validate.jpg", "jpeg", 64, 48, bytes.len() as u64);
    (info, bytes)
}

/// A sample job event with `status`.
pub fn sample_event(status: types::JobStatus) -> types::JobEvent {
    let failed = matches!(
        status,
        types::JobStatus::Failed | types::JobStatus::DeadLettered
    );
    types::JobEvent {
        id: "evt-sample".into(),
        status,
        job_id: "job-sample".into(),
        source_uri: "s3://uploads/sample.jpg".into(),
        media: None,
        profile: "default".into(),
        outputs: Vec::new(),
        metadata: Vec::new(),
        plugins: Vec::new(),
        timings: vec![types::Timing {
            stage: "total".into(),
            ms: 12.5,
        }],
        duration_ms: 12.5,
        attempt: 1,
        error: failed.then(|| types::JobError {
            class: "permanent".into(),
            code: "corrupt_input".into(),
            message: "sample failure".into(),
        }),
    }
}

/// The WIT name of a job status.
pub fn status_name(status: types::JobStatus) -> &'static str {
    match status {
        types::JobStatus::Succeeded => "succeeded",
        types::JobStatus::Failed => "failed",
        types::JobStatus::Retrying => "retrying",
        types::JobStatus::DeadLettered => "dead-lettered",
    }
}
