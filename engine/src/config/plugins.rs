//! `[plugins]`: the plugin host's settings, the sandbox limits a plugin runs under (its
//! `plugin.toml`, a profile or a rule may set them), where the registry of published plugins is,
//! and what a plugin name may be.

use super::{Config, valid_bucket_name, valid_key_prefix};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Plugin host settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Where compiled plugins are cached; default `$XDG_CACHE_HOME/mediaflow/plugins`.
    pub cache_dir: Option<PathBuf>,
    /// Largest plugin binary accepted, in bytes (checked before compiling).
    pub max_wasm_bytes: u64,
    /// Extra plugins from local paths, added to the bundled ones — each a `.wasm` component
    /// (with its `plugin.toml` beside it, or none: named after the file, version 0.0.0), a
    /// Rust plugin crate (built for `wasm32-wasip2` with cargo; its `plugin.toml`), or a
    /// directory holding `plugin.toml` and `plugin.wasm` (the registry's layout). A running
    /// worker or `serve` reloads one within a second or two of its files changing (a crate is
    /// rebuilt): the author's loop, with no publishing.
    pub local: Vec<PathBuf>,
    /// The plugin registry (`NAME/VERSION/plugin.{wasm,toml}`, `NAME/channels/CHANNEL`):
    /// `s3://BUCKET/PREFIX/`, `file:///DIR` or a directory. Unset: the output bucket's
    /// `plugins/` prefix (on S3 when `worker.queue_url` is set, else
    /// `DATA_DIR/buckets/OUTPUT_BUCKET/plugins/`). Empty: no registry.
    pub registry: Option<String>,
    /// Seconds between the worker's polls of the registry (a listing; only changed objects
    /// are fetched).
    pub registry_poll_secs: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_wasm_bytes: 64 * 1024 * 1024,
            local: Vec::new(),
            registry: None,
            registry_poll_secs: 30,
        }
    }
}

/// Default linear-memory cap per plugin instance.
pub const DEFAULT_MEMORY_BYTES: u64 = 128 * 1024 * 1024;
/// Default wall-time limit per call.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Largest memory cap a plugin may ask for (the pooling allocator reserves this per slot).
pub const MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;

/// Sandbox limits of one plugin. Every field has a default; `plugin.toml` and profiles override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Linear memory an instance may grow to, in bytes (all its memories together).
    pub memory_bytes: u64,
    /// Wall time one call may take, in milliseconds (enforced by epoch interruption).
    pub timeout_ms: u64,
    /// Optional fuel (roughly, wasm instructions) one call may burn; `None` = unmetered.
    pub fuel: Option<u64>,
    /// Most metadata entries one extractor call may return.
    pub max_entries: u32,
    /// Longest metadata key, in bytes.
    pub max_key_bytes: u32,
    /// Longest single value — a metadata text value, a notification's subject or body or an
    /// attribute — in bytes.
    pub max_value_bytes: u32,
    /// Most bytes one call may return in all (every key, value, subject, body and attribute
    /// together; numbers count 8 bytes). What a plugin returns goes into the manifest, the job
    /// index and notifications, whose sinks take 256 KB at most (SNS, SQS).
    pub max_output_bytes: u32,
    /// Most notifications one rule may ask for per event.
    pub max_notifications: u32,
}

/// Largest `max_output_bytes`: what still fits SNS's and SQS's 256 KB with an envelope.
pub const MAX_OUTPUT_BYTES: u32 = 200 * 1024;

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            fuel: None,
            max_entries: 256,
            max_key_bytes: 128,
            max_value_bytes: 16 * 1024,
            max_output_bytes: 32 * 1024,
            max_notifications: 16,
        }
    }
}

impl PluginLimits {
    /// The wall-time limit as a `Duration`.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Check the values are usable; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_bytes == 0 || self.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "memory_bytes = {} must be between 1 and {MAX_MEMORY_BYTES}",
                self.memory_bytes
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 10 * 60 * 1000 {
            return Err(format!(
                "timeout_ms = {} must be between 1 and 600000",
                self.timeout_ms
            ));
        }
        if self.fuel == Some(0) {
            return Err("fuel = 0 would stop every call; omit it for no fuel limit".into());
        }
        for (name, v) in [
            ("max_entries", self.max_entries),
            ("max_key_bytes", self.max_key_bytes),
            ("max_value_bytes", self.max_value_bytes),
            ("max_notifications", self.max_notifications),
        ] {
            if v == 0 {
                return Err(format!("{name} = 0 would refuse every result"));
            }
        }
        if self.max_output_bytes == 0 || self.max_output_bytes > MAX_OUTPUT_BYTES {
            return Err(format!(
                "max_output_bytes = {} must be between 1 and {MAX_OUTPUT_BYTES} (what fits a notification)",
                self.max_output_bytes
            ));
        }
        Ok(())
    }
}

/// Whether `name` is a valid plugin (or channel) name: 1-64 of a-z, 0-9 and `-`, starting
/// with a letter.
pub fn valid_plugin_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Where a registry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryLocation {
    /// `s3://BUCKET/PREFIX` (the prefix empty or ending in `/`).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix of the registry's root.
        prefix: String,
    },
    /// A directory.
    Dir(PathBuf),
}

impl RegistryLocation {
    /// Parse `s3://BUCKET/PREFIX/`, `file:///DIR` or a directory path.
    pub fn parse(s: &str) -> Result<RegistryLocation, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() || !valid_bucket_name(bucket) {
                return Err(format!("{s:?}: {bucket:?} is not a bucket name"));
            }
            let trimmed = prefix.trim_end_matches('/');
            if !trimmed.is_empty() && !valid_key_prefix(trimmed) {
                return Err(format!("{s:?}: {prefix:?} is not a key prefix"));
            }
            let prefix = if trimmed.is_empty() {
                String::new()
            } else {
                format!("{trimmed}/")
            };
            return Ok(RegistryLocation::S3 {
                bucket: bucket.into(),
                prefix,
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: a file:// URI needs an absolute path"));
            }
            return Ok(RegistryLocation::Dir(PathBuf::from(path)));
        }
        if s.contains("://") {
            return Err(format!(
                "{s:?}: use s3://BUCKET/PREFIX/, file:///DIR or a directory path"
            ));
        }
        Ok(RegistryLocation::Dir(PathBuf::from(s)))
    }

    /// The registry `config` names: `plugins.registry`, or by default the output bucket's
    /// `plugins/` prefix (S3 with a queue URL, else the local bucket). `None` when the
    /// setting is empty (no registry).
    pub fn from_config(config: &Config) -> Result<Option<RegistryLocation>, String> {
        let w = &config.worker;
        match config.plugins.registry.as_deref() {
            Some("") => Ok(None),
            Some(s) => RegistryLocation::parse(s).map(Some),
            None if w.queue_url.is_some() => Ok(Some(RegistryLocation::S3 {
                bucket: w.output_bucket.clone(),
                prefix: "plugins/".into(),
            })),
            None => Ok(Some(RegistryLocation::Dir(
                w.data_dir
                    .join("buckets")
                    .join(&w.output_bucket)
                    .join("plugins"),
            ))),
        }
    }
}

impl std::fmt::Display for RegistryLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            RegistryLocation::Dir(d) => {
                write!(
                    f,
                    "{}",
                    std::path::absolute(d).unwrap_or(d.clone()).display()
                )
            }
        }
    }
}

/// Where an engine with `config` looks for plugins, in words: the bundled ones, each
/// `plugins.local` path, and the registry (or that there is none).
pub fn searched(config: &Config) -> String {
    let mut places = vec!["the bundled plugins".to_string()];
    if !config.plugins.local.is_empty() {
        let local: Vec<String> = config
            .plugins
            .local
            .iter()
            .map(|p| {
                std::path::absolute(p)
                    .unwrap_or(p.clone())
                    .display()
                    .to_string()
            })
            .collect();
        places.push(format!("plugins.local ({})", local.join(", ")));
    }
    places.push(match RegistryLocation::from_config(config) {
        Ok(Some(l)) if config.plugins.registry.is_some() => format!("the registry {l}"),
        Ok(Some(l)) => format!(
            "the registry {l} (the default: plugins.registry is unset, so the output bucket's \
             plugins/ prefix)"
        ),
        Ok(None) => "no registry (plugins.registry is empty)".into(),
        Err(e) => format!("no registry ({e})"),
    });
    places.join(", ")
}

/// Longest poll interval accepted.
const MAX_POLL_SECS: u64 = 86_400;

/// Check the `[plugins]` settings; the error is (field, problem).
pub(super) fn validate(config: &Config) -> Result<(), (&'static str, String)> {
    RegistryLocation::from_config(config).map_err(|p| ("plugins.registry", p))?;
    let secs = config.plugins.registry_poll_secs;
    if !(1..=MAX_POLL_SECS).contains(&secs) {
        return Err((
            "plugins.registry_poll_secs",
            format!("{secs} must be 1..={MAX_POLL_SECS}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_default_to_the_output_buckets_plugins_prefix() {
        assert_eq!(
            RegistryLocation::parse("s3://b/plugins"),
            Ok(RegistryLocation::S3 {
                bucket: "b".into(),
                prefix: "plugins/".into()
            })
        );
        assert_eq!(
            RegistryLocation::parse("s3://b"),
            Ok(RegistryLocation::S3 {
                bucket: "b".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            RegistryLocation::parse("file:///srv/reg"),
            Ok(RegistryLocation::Dir("/srv/reg".into()))
        );
        assert_eq!(
            RegistryLocation::parse("reg"),
            Ok(RegistryLocation::Dir("reg".into()))
        );
        for bad in ["s3://", "s3://b/../x", "file://relative", "http://x/"] {
            assert!(RegistryLocation::parse(bad).is_err(), "{bad}");
        }
        let c = Config::from_sources(None, &[]).expect("defaults");
        assert_eq!(
            RegistryLocation::from_config(&c),
            Ok(Some(RegistryLocation::Dir(
                "mediaflow-data/buckets/renditions/plugins".into()
            )))
        );
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c = Config::from_sources(
            None,
            &env(&[("MEDIAFLOW_WORKER__QUEUE_URL", "https://sqs.example/1/q")]),
        )
        .expect("sqs");
        assert_eq!(
            RegistryLocation::from_config(&c),
            Ok(Some(RegistryLocation::S3 {
                bucket: "renditions".into(),
                prefix: "plugins/".into()
            }))
        );
        let c =
            Config::from_sources(None, &env(&[("MEDIAFLOW_PLUGINS__REGISTRY", "")])).expect("none");
        assert_eq!(RegistryLocation::from_config(&c), Ok(None));
    }

    #[test]
    fn bad_registry_settings_name_the_field() {
        let e = Config::from_sources(
            Some(("f.toml", "[plugins]\nregistry = \"ftp://x/\"\n")),
            &[],
        )
        .expect_err("bad scheme");
        assert!(e.to_string().contains("plugins.registry"), "{e}");
        let e = Config::from_sources(Some(("f.toml", "[plugins]\nregistry_poll_secs = 0\n")), &[])
            .expect_err("zero");
        assert!(e.to_string().contains("plugins.registry_poll_secs"), "{e}");
    }

    #[test]
    fn limits_validate_names_the_field() {
        let bad = PluginLimits {
            timeout_ms: 0,
            ..PluginLimits::default()
        };
        assert!(
            bad.validate()
                .err()
                .is_some_and(|e| e.contains("timeout_ms"))
        );
        assert!(PluginLimits::default().validate().is_ok());
    }
}
