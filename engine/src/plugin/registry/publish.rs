//! `mediaflow plugin publish` and `plugin channel`: validate a plugin the way an engine will
//! load it (world detection, size cap, a smoke call on sample input), compute its sha256, and
//! upload `NAME/VERSION/plugin.wasm` then `plugin.toml` — the toml last, written only if
//! absent, is the commit point. Published versions are immutable: the same wasm and manifest
//! again are a no-op, other bytes (or another default config) are refused. A channel file names a version; rewriting it is a
//! promotion or a rollback, and nothing is deleted.

use super::layout;
use super::{Registry, RegistryError};
use crate::plugin::catalog::spec_for;
use crate::plugin::descriptor::{PluginDescriptor, valid_name};
use crate::plugin::inspect::{self, Validation};
use crate::plugin::{PluginError, PluginHost, PluginSpec, bundled};
use semver::Version;

/// What the author gives besides the wasm: a `plugin.toml` (optional: world, description,
/// default config, limits) and command-line values that take precedence over it.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// The `plugin.toml` given, as a table (its `sha256` is replaced).
    pub manifest: Option<toml::Table>,
    /// `--name`.
    pub name: Option<String>,
    /// `--version`.
    pub version: Option<String>,
    /// `--description`.
    pub description: Option<String>,
}

impl Draft {
    /// A draft from the command line: the manifest at `manifest`, else `plugin.toml` beside
    /// `wasm` if there is one, and the values given.
    pub fn read(
        wasm: &std::path::Path,
        manifest: Option<&std::path::Path>,
        name: Option<String>,
        version: Option<String>,
        description: Option<String>,
    ) -> Result<Draft, PublishError> {
        let beside = wasm.with_file_name("plugin.toml");
        let path = manifest.or_else(|| beside.exists().then_some(beside.as_path()));
        let manifest = path
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| PublishError::Usage(format!("reading {}: {e}", p.display())))?;
                text.parse::<toml::Table>()
                    .map_err(|e| PublishError::Usage(format!("{}: {}", p.display(), e.message())))
            })
            .transpose()?;
        Ok(Draft {
            manifest,
            name,
            version,
            description,
        })
    }
}

/// A published (or already identically published) version.
#[derive(Debug)]
pub struct Published {
    /// The `plugin.toml` as uploaded (with its sha256).
    pub manifest: PluginDescriptor,
    /// Where its `plugin.toml` is.
    pub uri: String,
    /// The same bytes were already published: nothing was written.
    pub unchanged: bool,
    /// The local validation (the smoke call's summary and time).
    pub validation: Validation,
}

impl std::fmt::Display for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, v) = (&self.manifest, &self.validation);
        writeln!(f, "smoke call ({:.1} ms): {}", v.call_ms, v.summary)?;
        if self.unchanged {
            write!(
                f,
                "{}@{} is already published with these bytes ({}): nothing to do",
                m.name,
                m.version,
                v.plugin.digest()
            )
        } else {
            write!(
                f,
                "published {}@{} ({}, {} bytes, {}) to {}",
                m.name,
                m.version,
                m.world,
                v.plugin.size(),
                v.plugin.digest(),
                self.uri
            )?;
            match crate::plugin::bundled::shadowing(&m.name, &m.version) {
                Some(w) => write!(f, "\nwarning: {w}"),
                None => Ok(()),
            }
        }
    }
}

/// Why a publish (or a channel change) was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The name, version, manifest or channel given is unusable (a usage error).
    #[error("{0}")]
    Usage(String),
    /// The plugin failed local validation (not a component, unknown or wrong world, too
    /// large, its smoke call failed): nothing was uploaded.
    #[error("validation failed: {0}")]
    Invalid(#[from] PluginError),
    /// The version is already published with other bytes or another manifest.
    #[error(
        "{plugin} is already published with {existing}; published versions are immutable: \
         publish a new version"
    )]
    VersionExists {
        /// `name@version`.
        plugin: String,
        /// What the registry has for it (its digest, or what differs).
        existing: String,
    },
    /// The version is bundled with the engine, which would always prefer its own copy.
    #[error(
        "{0} is bundled with this engine, whose copy engines always use; publish another version"
    )]
    Bundled(String),
    /// A channel names a version that is neither published nor bundled.
    #[error("{0} is neither in the registry nor bundled: publish it first")]
    UnknownVersion(String),
    /// The registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Build the manifest to publish: the draft's `plugin.toml` with the command-line values laid
/// over it, the world detected from the component when the toml does not declare one.
fn manifest_for(
    host: &PluginHost,
    wasm: &[u8],
    draft: &Draft,
) -> Result<PluginDescriptor, PublishError> {
    let mut table = draft.manifest.clone().unwrap_or_default();
    table.remove("sha256");
    for (key, value) in [
        ("name", &draft.name),
        ("version", &draft.version),
        ("description", &draft.description),
    ] {
        if let Some(v) = value {
            table.insert(key.into(), toml::Value::String(v.clone()));
        }
    }
    let text = |k: &str| table.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let name = text("name").ok_or_else(|| {
        PublishError::Usage("no plugin name: pass --name or set `name` in plugin.toml".into())
    })?;
    let version = text("version").ok_or_else(|| {
        PublishError::Usage("no version: pass --version or set `version` in plugin.toml".into())
    })?;
    if !table.contains_key("world") {
        // Loading checks the size cap before compiling and names the world it finds.
        let found = host.load(PluginSpec::new(&name, &version), wasm)?;
        table.insert(
            "world".into(),
            toml::Value::String(found.world().name().into()),
        );
    }
    let text = toml::to_string(&table).map_err(|e| PublishError::Usage(e.to_string()))?;
    PluginDescriptor::parse(&text).map_err(|e| PublishError::Usage(e.to_string()))
}

/// Validate `wasm` locally and publish it to `registry` as the draft describes.
pub fn publish(
    registry: &Registry,
    host: &PluginHost,
    wasm: &[u8],
    draft: &Draft,
) -> Result<Published, PublishError> {
    let mut manifest = manifest_for(host, wasm, draft)?;
    let plugin = format!("{}@{}", manifest.name, manifest.version);
    // Loads it as an engine would (size cap, world declared vs found, linking), then calls it.
    let validation = inspect::validate(host, spec_for(&manifest), wasm)?;
    let digest = validation.plugin.digest();
    manifest.sha256 = Some(digest.clone());
    if bundled::all()
        .iter()
        .any(|b| b.manifest.name == manifest.name && b.manifest.version == manifest.version)
    {
        return Err(PublishError::Bundled(plugin));
    }
    let wasm_key = layout::wasm_key(&manifest.name, &manifest.version);
    let toml_key = layout::toml_key(&manifest.name, &manifest.version);
    // What the registry has for this version, compared with what we would write: the same
    // manifest (digest included) is a no-op; anything else is refused.
    let conflict = |bytes: Vec<u8>| -> Option<String> {
        let existing = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| PluginDescriptor::parse(t).ok());
        match existing {
            Some(m) if m == manifest => None,
            Some(m) if m.sha256.as_deref() == Some(digest.as_str()) => Some(
                "the same wasm but another plugin.toml (description, world, config or limits \
                 differ)"
                    .into(),
            ),
            Some(m) => Some(format!(
                "other bytes ({})",
                m.sha256.unwrap_or_else(|| "no digest".into())
            )),
            None => Some("an unreadable plugin.toml".into()),
        }
    };
    let unchanged = match registry.get_opt(&toml_key)? {
        Some(existing) => {
            if let Some(existing) = conflict(existing) {
                return Err(PublishError::VersionExists { plugin, existing });
            }
            // Committed with these bytes; put the wasm back if someone removed it.
            if registry.get_opt(&wasm_key)?.as_deref() != Some(wasm) {
                registry.put(&wasm_key, wasm, "application/wasm")?;
            }
            true
        }
        None => {
            // Not committed: a wasm left by an interrupted publish may be overwritten.
            registry.put(&wasm_key, wasm, "application/wasm")?;
            let toml = manifest.to_toml();
            if registry.put_if_absent(&toml_key, toml.as_bytes(), "application/toml")? {
                false
            } else {
                // Another publish committed this version first.
                match registry.get_opt(&toml_key)?.and_then(conflict) {
                    None => true,
                    Some(theirs) => {
                        return Err(PublishError::VersionExists {
                            plugin,
                            existing: format!(
                                "{theirs}, committed by a concurrent publish: its plugin.wasm \
                                 may now be ours, which engines refuse as a digest mismatch — \
                                 publish that version again"
                            ),
                        });
                    }
                }
            }
        }
    };
    Ok(Published {
        uri: registry.uri(&toml_key),
        manifest,
        unchanged,
        validation,
    })
}

/// Point `name`'s `channel` at `version` (published or bundled); the version it named before.
pub fn set_channel(
    registry: &Registry,
    name: &str,
    channel: &str,
    version: &Version,
) -> Result<Option<Version>, PublishError> {
    if !valid_name(name) {
        return Err(PublishError::Usage(format!(
            "{name:?} is not a plugin name"
        )));
    }
    if !valid_name(channel) {
        return Err(PublishError::Usage(format!(
            "{channel:?} is not a channel name (a-z, 0-9 and '-', starting with a letter)"
        )));
    }
    let bundled = bundled::get(name).is_some_and(|b| b.manifest.version == *version);
    if !bundled
        && registry
            .get_opt(&layout::toml_key(name, version))?
            .is_none()
    {
        return Err(PublishError::UnknownVersion(format!("{name}@{version}")));
    }
    let key = layout::channel_key(name, channel);
    let before = registry
        .get_opt(&key)?
        .and_then(|b| layout::parse_channel(&b).ok());
    registry.put(&key, format!("{version}\n").as_bytes(), "text/plain")?;
    Ok(before)
}
