//! `plugin new`: scaffold a Rust plugin crate for one world that builds as-is with
//! `cargo build --release --target wasm32-wasip2` and passes `plugin validate`.

use super::World;
use std::path::{Path, PathBuf};

/// Where the scaffolded crate gets the SDK from.
#[derive(Debug, Clone)]
pub enum SdkSource {
    /// A local checkout of `sdk/`.
    Path(PathBuf),
    /// A registry version requirement.
    Version(String),
}

impl SdkSource {
    /// The SDK this engine was built with, if its source is still where it was built;
    /// otherwise the registry version matching this engine.
    pub fn default_for_this_engine() -> Self {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
        match here.canonicalize() {
            Ok(p) if p.join("Cargo.toml").exists() => SdkSource::Path(p),
            _ => SdkSource::Version(env!("CARGO_PKG_VERSION").to_string()),
        }
    }

    fn dependency(&self) -> String {
        match self {
            SdkSource::Path(p) => format!("{{ path = {:?} }}", p.display().to_string()),
            SdkSource::Version(v) => format!("{v:?}"),
        }
    }
}

/// Why scaffolding failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a valid plugin name.
    #[error("invalid plugin name {0:?}: use 1-64 of a-z, 0-9 and '-', starting with a letter")]
    BadName(String),
    /// The target directory exists and is not empty.
    #[error("{0} already exists and is not empty")]
    Exists(PathBuf),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Create a plugin crate `name` of kind `world` in `dir`. Returns the files written.
pub fn scaffold(
    world: World,
    name: &str,
    dir: &Path,
    sdk: &SdkSource,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !super::descriptor::valid_name(name) {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let crate_name = name.replace('-', "_");
    let files = [
        ("Cargo.toml", cargo_toml(name, sdk).into_bytes()),
        ("plugin.toml", plugin_toml(world, name).into_bytes()),
        ("src/lib.rs", lib_rs(world, name).into_bytes()),
        ("README.md", readme(world, name, &crate_name).into_bytes()),
        (".gitignore", b"/target\n".to_vec()),
        ("fixtures/sample.toml", fixture(world).into_bytes()),
        (
            "fixtures/sample.png",
            super::inspect::sample_picture(96, 64, image::ImageFormat::Png),
        ),
    ];
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        let io = |source| ScaffoldError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}

fn cargo_toml(name: &str, sdk: &SdkSource) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
mediaflow-plugin-sdk = {dep}

# Small, self-contained components.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A standalone crate, not part of any enclosing workspace.
[workspace]
"#,
        dep = sdk.dependency()
    )
}

fn plugin_toml(world: World, name: &str) -> String {
    let config = match world {
        World::MetadataExtractor => "# prefix = \"file\"\n",
        World::Watermarker => "# color = \"#ffffff\"\n",
        World::NotificationRule => "# sink = \"alerts\"\n",
    };
    format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nworld = \"{world}\"\ndescription = \"\"\n\n[config]\n{config}\n[limits]\n# memory_bytes = 134217728\n# timeout_ms = 2000\n"
    )
}

fn lib_rs(world: World, name: &str) -> String {
    match world {
        World::MetadataExtractor => format!(
            r#"//! `{name}`: a mediaflow metadata extractor.

use mediaflow_plugin_sdk::{{MediaInfo, MetadataEntry, PluginError, Source, config}};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(info: MediaInfo, src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {{
    let prefix = config::get_or("prefix", "file");
    // Read only what you need: here, the first 8 bytes.
    let head = src.read(0, 8)?;
    let magic: String = head.iter().map(|b| format!("{{b:02x}}")).collect();
    Ok(vec![
        MetadataEntry::text(format!("{{prefix}}.magic"), magic),
        MetadataEntry::integer(format!("{{prefix}}.bytes"), info.bytes as i64),
    ])
}}
"#
        ),
        World::Watermarker => format!(
            r#"//! `{name}`: a mediaflow watermarker.

use mediaflow_plugin_sdk::{{MediaInfo, Overlay, PluginError, RgbaImage, Size}};

#[mediaflow_plugin_sdk::watermarker]
fn draw(_info: MediaInfo, target: Size) -> Result<Option<Overlay>, PluginError> {{
    // A translucent white bar, a fifth of the width, in the bottom-right corner.
    let (w, h) = ((target.width / 5).max(1), (target.height / 20).max(1));
    let mut image = RgbaImage::transparent(w, h);
    for px in image.pixels.chunks_exact_mut(4) {{
        px.copy_from_slice(&[255, 255, 255, 200]);
    }}
    let x = (target.width - w) as i32;
    let y = (target.height - h) as i32;
    Ok(Some(Overlay {{ image, x, y, opacity: 0.5, tile: None }}))
}}
"#
        ),
        World::NotificationRule => format!(
            r#"//! `{name}`: a mediaflow notification rule.

use mediaflow_plugin_sdk::{{JobEvent, JobStatus, Notification, PluginError, config}};

#[mediaflow_plugin_sdk::notification_rule]
fn evaluate(event: JobEvent) -> Result<Vec<Notification>, PluginError> {{
    if event.status != JobStatus::Failed {{
        return Ok(Vec::new());
    }}
    Ok(vec![Notification {{
        sink: config::get_or("sink", "alerts"),
        subject: format!("job failed: {{}}", event.source_uri),
        body: event.error.map(|e| e.message).unwrap_or_default(),
        attributes: vec![("status".into(), "failed".into())],
    }}])
}}
"#
        ),
    }
}

fn readme(world: World, name: &str, crate_name: &str) -> String {
    format!(
        "# {name}\n\nA mediaflow `{world}` plugin.\n\n```sh\nmediaflow plugin run . fixtures/sample.png   # build, run on a file, show the result\nmediaflow plugin test .                      # check fixtures/*.toml\ncargo build --release --target wasm32-wasip2\nmediaflow plugin publish target/wasm32-wasip2/release/{crate_name}.wasm --manifest plugin.toml\n```\n\nA profile uses it as `{name}@^0.1` (the version in plugin.toml and Cargo.toml).\n"
    )
}

/// A fixture the scaffolded plugin passes (`plugin test`).
fn fixture(world: World) -> String {
    let expect = match world {
        // The PNG signature, and the file's size.
        World::MetadataExtractor => {
            "[expect]\nentries = { \"file.magic\" = \"89504e470d0a1a0a\" }\nkeys = [\"file.bytes\"]\n"
        }
        World::Watermarker => {
            "[expect]\noverlay = { present = true, inside = true, tiled = false, max_width_fraction = 0.25 }\n"
        }
        World::NotificationRule => {
            "# A failed job: one notification to the configured sink.\nevent = \"failed\"\n\n[expect]\nnotifications = [{ sink = \"alerts\", subject_contains = \"job failed\" }]\n"
        }
    };
    format!(
        "# `mediaflow plugin test` runs the plugin on `input` in a real job and checks `expect`.\ninput = \"sample.png\"\n{expect}"
    )
}
