//! A plugin under development, named by a path — what `plugins.local`, `plugin run` and
//! `plugin test` take: a `.wasm` file (its `plugin.toml` beside it, or none: named after the
//! file, version 0.0.0, world detected), a Rust crate directory (built for `wasm32-wasip2` with
//! cargo, its `plugin.toml` in the crate), or a directory in the registry's layout
//! (`plugin.toml` + `plugin.wasm`). Also what to watch to see it changed.

use super::descriptor::PluginDescriptor;
use super::{PluginError, PluginErrorKind, PluginSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// The target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// A plugin read from a development path.
#[derive(Debug, Clone)]
pub struct DevPlugin {
    /// The path as named.
    pub path: PathBuf,
    /// The component file read.
    pub wasm_path: PathBuf,
    /// Its bytes.
    pub wasm: Vec<u8>,
    /// Its `plugin.toml`, if it has one.
    pub descriptor: Option<PluginDescriptor>,
}

/// What a path is.
enum Kind {
    Wasm,
    Crate,
    Published,
}

fn kind(path: &Path) -> Result<Kind, String> {
    if path.is_file() {
        return Ok(Kind::Wasm);
    }
    if !path.is_dir() {
        return Err("no such file or directory".into());
    }
    if path.join("Cargo.toml").is_file() {
        Ok(Kind::Crate)
    } else if path.join("plugin.wasm").is_file() {
        Ok(Kind::Published)
    } else {
        Err(
            "a directory with neither Cargo.toml (a plugin crate) nor plugin.wasm (the \
             registry's layout): name the crate, the .wasm file, or a directory holding \
             plugin.toml and plugin.wasm"
                .into(),
        )
    }
}

impl DevPlugin {
    /// Read (building a crate first) the plugin at `path`.
    pub fn open(path: &Path) -> Result<DevPlugin, PluginError> {
        let err = |why: String| {
            PluginError::new(
                path.display().to_string(),
                PluginErrorKind::Io(why.trim_end().to_string()),
            )
        };
        let (wasm_path, toml) = match kind(path).map_err(err)? {
            Kind::Wasm => (path.to_path_buf(), path.with_file_name("plugin.toml")),
            Kind::Published => (path.join("plugin.wasm"), path.join("plugin.toml")),
            Kind::Crate => (build(path).map_err(err)?, path.join("plugin.toml")),
        };
        let descriptor = match std::fs::read_to_string(&toml) {
            Ok(text) => Some(
                PluginDescriptor::parse(&text)
                    .map_err(|e| err(format!("{}: {e}", toml.display())))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(format!("{}: {e}", toml.display()))),
        };
        let wasm =
            std::fs::read(&wasm_path).map_err(|e| err(format!("{}: {e}", wasm_path.display())))?;
        Ok(DevPlugin {
            path: path.to_path_buf(),
            wasm_path,
            wasm,
            descriptor,
        })
    }

    /// How to load it: as its `plugin.toml` says, or named after its file at version 0.0.0
    /// with its world detected.
    pub fn spec(&self) -> PluginSpec {
        match &self.descriptor {
            Some(m) => super::catalog::spec_for(m),
            None => PluginSpec::new(self.fallback_name(), "0.0.0"),
        }
    }

    /// Its version (0.0.0 without a `plugin.toml`).
    pub fn version(&self) -> semver::Version {
        self.descriptor
            .as_ref()
            .map_or(semver::Version::new(0, 0, 0), |m| m.version.clone())
    }

    /// `my_plugin.wasm` → `my-plugin`; `NAME/plugin.wasm` → `NAME` (what componentize-py and
    /// jco are usually told to write); anything left that is not a plugin name → `plugin`.
    fn fallback_name(&self) -> String {
        let stem = self
            .wasm_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let named = if stem == "plugin" {
            self.wasm_path
                .parent()
                .and_then(|d| d.canonicalize().ok())
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or(stem)
        } else {
            stem
        };
        let dashed: String = named
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let name = dashed
            .trim_start_matches(|c: char| !c.is_ascii_lowercase())
            .trim_end_matches('-');
        if super::descriptor::valid_name(name) {
            name.to_string()
        } else {
            "plugin".to_string()
        }
    }
}

/// The newest modification time among the files `path`'s plugin is made from (a crate's
/// sources, manifests; a wasm file and its `plugin.toml`): when it moves, the plugin changed.
pub fn fingerprint(path: &Path) -> Option<SystemTime> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let files: Vec<PathBuf> = match kind(path).ok()? {
        Kind::Wasm => vec![path.to_path_buf(), path.with_file_name("plugin.toml")],
        Kind::Published => vec![path.join("plugin.wasm"), path.join("plugin.toml")],
        Kind::Crate => {
            let mut files = vec![
                path.join("Cargo.toml"),
                path.join("Cargo.lock"),
                path.join("plugin.toml"),
            ];
            walk(&path.join("src"), &mut files);
            walk(&path.join("wit"), &mut files);
            files
        }
    };
    files.iter().filter_map(|f| mtime(f)).max()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Build the crate at `dir` for [`TARGET`] (release) and return its component: the `.wasm`
/// cargo reports for the crate's library.
fn build(dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--quiet", "--release", "--target", TARGET])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running cargo to build the plugin crate: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build --release --target {TARGET}` failed ({}; its errors are above). If the \
             target is missing: `rustup target add {TARGET}`",
            out.status
        ));
    }
    let manifest = dir
        .join("Cargo.toml")
        .canonicalize()
        .map_err(|e| e.to_string())?;
    let wasm = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .find(|f| f.extension().is_some_and(|e| e == "wasm"));
    wasm.ok_or_else(|| {
        "the crate built no .wasm: its Cargo.toml needs `[lib] crate-type = [\"cdylib\"]` (as \
         `mediaflow plugin new` writes it)"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_told_apart_and_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let missing = DevPlugin::open(&dir.path().join("nope.wasm"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing.contains("no such file"), "{missing}");
        let empty = DevPlugin::open(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(empty.contains("neither Cargo.toml"), "{empty}");
        std::fs::write(dir.path().join("my_plugin.wasm"), b"\0asm")?;
        let p = DevPlugin::open(&dir.path().join("my_plugin.wasm"))?;
        assert_eq!(p.spec().name, "my-plugin");
        assert_eq!(p.version(), semver::Version::new(0, 0, 0));
        assert!(fingerprint(&p.wasm_path).is_some());
        // `plugin.wasm` as componentize-py and jco write it: named after its directory.
        let dir = dir.path().join("Header_Facts.py");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("plugin.wasm"), b"\0asm")?;
        assert_eq!(
            DevPlugin::open(&dir.join("plugin.wasm"))?.spec().name,
            "header-facts-py"
        );
        assert_eq!(DevPlugin::open(&dir)?.spec().name, "header-facts-py");
        Ok(())
    }
}
