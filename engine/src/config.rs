//! Configuration: one typed struct read from a TOML file (`--config`), every field defaulted,
//! overridable by `MEDIAFLOW_*` environment variables (`MEDIAFLOW_LIMITS__MAX_PIXELS=5000000`:
//! `__` separates nesting levels). Profiles say what to make of a source (renditions, plugins);
//! routes map a bucket and key glob to a profile ([`Routes`], compiled once). Validated once at
//! start-up; every error names the field and the problem. The tables with more than a few
//! fields have their own module ([`WorkerConfig`], [`OpsConfig`], [`PluginsConfig`] with
//! [`PluginLimits`] and [`RegistryLocation`], [`NotifyConfig`], [`Profile`]). Configuration
//! depends on nothing else in the crate: every other module reads it.

mod api;
mod notify;
mod ops;
mod plugins;
mod profile;
mod routes;
mod worker;

pub use api::{
    ApiConfig, ConfiguredKey, DEFAULT_API_LISTEN, SCOPES, content_type_allowed, unknown_scope,
};
pub use notify::{
    LOG_SINK, LogSinkConfig, NotifyConfig, RuleConfig, Secret, SinkConfig, SnsSinkConfig,
    SqsSinkConfig, WebhookSinkConfig,
};
pub use ops::{DEFAULT_LISTEN, OpsConfig};
pub use plugins::{
    DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT_MS, MAX_MEMORY_BYTES, MAX_OUTPUT_BYTES, PluginLimits,
    PluginsConfig, RegistryLocation, searched as plugin_places, valid_plugin_name,
};
pub use profile::{
    BitrateMode, Fit, ImageFormat, OnError, PluginRef, PluginUse, Profile, Rendition, Rung,
    VersionPin, VideoCodec, VideoSettings,
};
pub use routes::Routes;
pub use worker::WorkerConfig;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The embedded default configuration: a `default` profile so `process` works with no file.
pub const DEFAULT_CONFIG: &str = include_str!("config/default.toml");

/// The whole engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Limits enforced on every source before decoding.
    pub limits: Limits,
    /// The plugin host.
    pub plugins: PluginsConfig,
    /// Named profiles.
    pub profiles: BTreeMap<String, Profile>,
    /// Bucket + key glob → profile, first match wins.
    pub routes: Vec<Route>,
    /// Profile used when no route matches and none is named.
    pub default_profile: String,
    /// The queue worker (`mediaflow worker`, `mediaflow submit`).
    pub worker: WorkerConfig,
    /// Health, readiness and metrics listener; ECS task scale-in protection.
    pub ops: OpsConfig,
    /// `mediaflow serve`: the job API, the job index, uploads, API keys.
    pub api: ApiConfig,
    /// Job lifecycle notifications: rules and sinks.
    pub notify: NotifyConfig,
    /// Where jobs keep their temporary files (source copies, video renditions before upload):
    /// each running engine owns a directory under it, every attempt a subdirectory removed when
    /// it ends, and an engine starting removes what stopped ones left. Default:
    /// `$TMPDIR/mediaflow-$USER` (one per user, so users sharing a machine don't collide).
    pub scratch_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            plugins: PluginsConfig::default(),
            profiles: BTreeMap::new(),
            routes: Vec::new(),
            default_profile: "default".into(),
            worker: WorkerConfig::default(),
            ops: OpsConfig::default(),
            api: ApiConfig::default(),
            notify: NotifyConfig::default(),
            scratch_dir: None,
        }
    }
}

/// Refusal limits, checked from headers before anything is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest source accepted, in bytes.
    pub max_input_bytes: u64,
    /// Largest image accepted, in pixels (width × height).
    pub max_pixels: u64,
    /// Largest width or height accepted, in pixels.
    pub max_dimension: u32,
    /// Most frames accepted in an animated image or a video.
    pub max_frames: u64,
    /// Longest video accepted, in seconds.
    pub max_duration_s: u64,
    /// Address space each decoder process may map, in bytes (FFmpeg decodes in a child
    /// process per source; past this it fails with `limit_exceeded` instead of taking the
    /// machine's memory).
    pub decoder_memory_bytes: u64,
    /// A decoder process that produces nothing for this many seconds while the engine waits
    /// for it is killed and the job fails with `decode_timeout`.
    pub decode_stall_secs: u64,
    /// Damaged video is accepted (its damaged frames concealed) while at most this share of
    /// its frames, in percent, was damaged or lost; past it the job fails `corrupt_input`.
    pub max_damaged_frames_percent: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 512 * 1024 * 1024,
            max_pixels: 100_000_000,
            max_dimension: 65_535,
            max_frames: 100_000,
            max_duration_s: 3 * 3600,
            decoder_memory_bytes: 3 << 30,
            decode_stall_secs: 60,
            max_damaged_frames_percent: 25,
        }
    }
}

impl Limits {
    /// Check the values; `Err((field, problem))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (name, v) in [
            ("max_input_bytes", self.max_input_bytes),
            ("max_pixels", self.max_pixels),
            ("max_frames", self.max_frames),
            ("max_duration_s", self.max_duration_s),
            ("max_dimension", u64::from(self.max_dimension)),
            ("decoder_memory_bytes", self.decoder_memory_bytes),
            ("decode_stall_secs", self.decode_stall_secs),
        ] {
            if v == 0 {
                return Err((name.into(), "must be greater than 0".into()));
            }
        }
        if self.max_damaged_frames_percent > 100 {
            return Err((
                "max_damaged_frames_percent".into(),
                "must be at most 100".into(),
            ));
        }
        Ok(())
    }
}

/// S3's smallest part (all but the last part of a multipart upload).
pub const S3_MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// S3's largest part.
pub const S3_MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Whether `name` can name a bucket (an S3 bucket or a directory under `data_dir/buckets`):
/// one path segment, not `.` or `..`, no control characters or backslashes.
pub fn valid_bucket_name(name: &str) -> bool {
    !name.contains('/') && valid_key_prefix(name)
}

/// Whether `prefix` (without its trailing `/`) is a relative key path that stays inside its
/// store (see [`key_problem`]).
pub fn valid_key_prefix(prefix: &str) -> bool {
    key_problem(prefix).is_none()
}

/// What is wrong with `key` as an object key, if anything: it must be non-empty, relative, at
/// most 1024 bytes, with no empty, `.` or `..` segments and no control characters or
/// backslashes — so it can never escape its store's root.
pub fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("empty")
    } else if key.len() > 1024 {
        Some("longer than 1024 bytes")
    } else if key.starts_with('/') {
        Some("absolute path")
    } else if key.chars().any(|c| c.is_control() || c == '\\') {
        Some("control character or backslash")
    } else if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        Some("empty, '.' or '..' path segment")
    } else {
        None
    }
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Bucket name; `*` matches any.
    #[serde(default = "any")]
    pub bucket: String,
    /// Glob over the object key (`uploads/**/*.jpg`).
    pub key: String,
    /// Profile to use.
    pub profile: String,
}

fn any() -> String {
    "*".into()
}

/// A configuration problem, naming the field (and where it came from).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// TOML syntax or a field of the wrong type/unknown field.
    #[error("{origin}: {message}")]
    Parse {
        /// File name or "environment".
        origin: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A field has a bad value.
    #[error("config: `{field}` {problem}")]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

/// The candidate closest to `name`, if one is close enough to be a likely typo (a few edits,
/// relative to its length).
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c)
}

/// Fill in `worker.data_dir` when neither the file nor the environment set it: a per-user
/// directory, so that every command (`submit`, `worker`, `serve`, `plugin publish`/`list`,
/// `process`) finds the same queue, buckets and plugin registry from whatever directory it is
/// run — `$XDG_DATA_HOME/mediaflow`, else `$HOME/.local/share/mediaflow` (the XDG default),
/// else `mediaflow-data` in the current directory (no home directory at all).
fn default_data_dir(merged: &mut toml::Table, env: &[(String, String)]) {
    let worker = merged
        .entry("worker")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(worker) = worker.as_table_mut() else {
        return; // not a table: deserializing reports it
    };
    if worker.contains_key("data_dir") {
        return;
    }
    let var = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| PathBuf::from(v))
            .filter(|p| p.is_absolute())
    };
    let dir = var("XDG_DATA_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".local/share")))
        .map(|d| d.join("mediaflow"))
        .unwrap_or_else(|| PathBuf::from("mediaflow-data"));
    worker.insert(
        "data_dir".into(),
        toml::Value::String(dir.to_string_lossy().into_owned()),
    );
}

impl Config {
    /// Load: the embedded defaults, then `file` (if any), then `MEDIAFLOW_*` env overrides.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let text = match file {
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?,
            )),
            None => None,
        };
        Self::from_sources(text.as_ref().map(|(o, t)| (o.as_str(), t.as_str())), &env)
    }

    /// Load from text and an environment (testable form of [`Config::load`]).
    pub fn from_sources(
        file: Option<(&str, &str)>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let parse = |origin: &str, text: &str| -> Result<toml::Table, ConfigError> {
            // The full TOML error names the line and shows it; fold it onto one line.
            text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
                origin: origin.into(),
                message: e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            })
        };
        let mut merged = parse("embedded defaults", DEFAULT_CONFIG)?;
        if let Some((origin, text)) = file {
            let user = parse(origin, text)?;
            // A file that defines profiles replaces the embedded ones wholesale only for the
            // profiles it names; everything else merges key by key.
            merge(&mut merged, user);
        }
        let mut from_env = false;
        for (key, value) in env {
            let Some(path) = key.strip_prefix("MEDIAFLOW_") else {
                continue;
            };
            if matches!(path, "LOG" | "LOG_FORMAT" | "CONFIG") {
                continue;
            }
            from_env = true;
            let segments: Vec<String> = path.split("__").map(|s| s.to_ascii_lowercase()).collect();
            set_path(&mut merged, &segments, env_value(value));
        }
        default_data_dir(&mut merged, env);
        let origin = match (file, from_env) {
            (Some((o, _)), true) => format!("{o} + MEDIAFLOW_* environment"),
            (Some((o, _)), false) => o.to_string(),
            (None, true) => "MEDIAFLOW_* environment".into(),
            (None, false) => "embedded defaults".into(),
        };
        // serde_path_to_error names the field (`limits.max_pixels`) that a plain error omits.
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
                let path = e.path().to_string();
                let message = e.into_inner().message().trim().to_string();
                ConfigError::Parse {
                    origin,
                    message: if path == "." {
                        message
                    } else {
                        format!("`{path}`: {message}")
                    },
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Check values and cross-references.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: String, problem: String| ConfigError::Invalid { field, problem };
        self.limits
            .validate()
            .map_err(|(field, problem)| invalid(format!("limits.{field}"), problem))?;
        if !self.profiles.contains_key(&self.default_profile) {
            return Err(invalid(
                "default_profile".into(),
                format!(
                    "names profile {:?}, which is not defined",
                    self.default_profile
                ),
            ));
        }
        for (name, profile) in &self.profiles {
            profile
                .validate()
                .map_err(|(field, problem)| invalid(format!("profiles.{name}.{field}"), problem))?;
        }
        self.worker
            .validate()
            .map_err(|(field, problem)| invalid(format!("worker.{field}"), problem))?;
        plugins::validate(self).map_err(|(field, problem)| invalid(field.into(), problem))?;
        self.ops
            .validate()
            .map_err(|(field, problem)| invalid(format!("ops.{field}"), problem))?;
        self.notify
            .validate()
            .map_err(|(field, problem)| invalid(format!("notify.{field}"), problem))?;
        self.api
            .validate()
            .map_err(|(field, problem)| invalid(format!("api.{field}"), problem))?;
        for (i, route) in self.routes.iter().enumerate() {
            if !self.profiles.contains_key(&route.profile) {
                return Err(invalid(
                    format!("routes[{i}].profile"),
                    format!("names profile {:?}, which is not defined", route.profile),
                ));
            }
        }
        Routes::compile(&self.routes, &self.default_profile).map_err(|(i, e)| {
            invalid(
                format!("routes[{i}].key"),
                format!("is not a valid glob: {e}"),
            )
        })?;
        Ok(())
    }

    /// The routes, compiled (once, at start-up: every lookup then is one glob-set match).
    pub fn routes(&self) -> Routes {
        // Validated when loaded: every glob compiles.
        Routes::compile(&self.routes, &self.default_profile)
            .unwrap_or_else(|_| Routes::none(&self.default_profile))
    }

    /// The scratch directory's root: `scratch_dir`, else `$TMPDIR/mediaflow-$USER`
    /// (`$TMPDIR/mediaflow` without a user name).
    pub fn scratch_root(&self) -> PathBuf {
        self.scratch_dir.clone().unwrap_or_else(|| {
            let user = std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_default();
            let safe: String = user
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            let name = match safe.trim_start_matches('.') {
                "" => "mediaflow".to_string(),
                u => format!("mediaflow-{u}"),
            };
            std::env::temp_dir().join(name)
        })
    }

    /// The profile called `name`.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// Why `name` is not a profile: the profiles there are, and the likely one meant.
    pub fn unknown_profile(&self, name: &str) -> String {
        let names: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
        let hint = did_you_mean(name, names.iter().copied())
            .map(|n| format!(" — did you mean {n:?}?"))
            .unwrap_or_default();
        format!(
            "unknown profile {name:?}: the profiles are {}{hint}",
            names.join(", ")
        )
    }
}

/// Merge `overlay` into `base`: tables recursively, everything else replaced.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o))
                if k != "profiles" || b.is_empty() =>
            {
                merge(b, o)
            }
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                // Profiles: each named profile in the file replaces the embedded one whole.
                for (name, p) in o {
                    b.insert(name, p);
                }
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set_path(t, rest, value);
            }
        }
    }
}

/// An env value as TOML: numbers, booleans, arrays and inline tables parse as such; anything
/// else is a string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An environment of `MEDIAFLOW_*` pairs.
    pub(crate) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_give_a_default_profile() {
        let c = Config::from_sources(None, &[]).expect("defaults");
        let p = c.profile("default").expect("default profile");
        assert!(!p.renditions.is_empty());
        assert_eq!(c.limits.max_pixels, 100_000_000);
    }

    #[test]
    fn the_data_directory_is_per_user_unless_set() {
        let dir = |file: Option<&str>, pairs: &[(&str, &str)]| {
            Config::from_sources(file.map(|t| ("f.toml", t)), &env(pairs))
                .expect("valid")
                .worker
                .data_dir
        };
        let home = [("HOME", "/h/ann")];
        assert_eq!(
            dir(None, &home),
            PathBuf::from("/h/ann/.local/share/mediaflow")
        );
        assert_eq!(
            dir(None, &[("HOME", "/h/ann"), ("XDG_DATA_HOME", "/xdg/ann")]),
            PathBuf::from("/xdg/ann/mediaflow")
        );
        // The XDG spec ignores a relative XDG_DATA_HOME.
        assert_eq!(
            dir(None, &[("HOME", "/h/ann"), ("XDG_DATA_HOME", "rel")]),
            PathBuf::from("/h/ann/.local/share/mediaflow")
        );
        assert_eq!(dir(None, &[]), PathBuf::from("mediaflow-data"));
        assert_eq!(
            dir(Some("[worker]\ndata_dir = \"here\"\n"), &home),
            PathBuf::from("here")
        );
        assert_eq!(
            dir(
                None,
                &[
                    ("HOME", "/h/ann"),
                    ("MEDIAFLOW_WORKER__DATA_DIR", "/srv/mf")
                ]
            ),
            PathBuf::from("/srv/mf")
        );
    }

    #[test]
    fn a_file_and_env_override_fields() {
        let file = "[limits]\nmax_pixels = 1000\n[profiles.thumbs]\nrenditions = [{ name = \"t\", width = 100, format = \"png\" }]\n";
        let c = Config::from_sources(
            Some(("mediaflow.toml", file)),
            &env(&[
                ("MEDIAFLOW_LIMITS__MAX_FRAMES", "7"),
                ("MEDIAFLOW_DEFAULT_PROFILE", "thumbs"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.limits.max_pixels, 1000);
        assert_eq!(c.limits.max_frames, 7);
        assert_eq!(c.default_profile, "thumbs");
        assert!(c.profile("default").is_some(), "embedded profiles remain");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let e = Config::from_sources(
            Some(("f.toml", "[limits]\nmax_pixels = 3\nmax_pixels = 4\n")),
            &[],
        )
        .expect_err("duplicate");
        assert!(
            e.to_string().contains("line 3") && e.to_string().contains("duplicate key"),
            "{e}"
        );
        let e = Config::from_sources(Some(("f.toml", "[limits]\nmax_pixel = 3\n")), &[])
            .expect_err("typo");
        assert!(
            e.to_string().contains("max_pixel") && e.to_string().contains("f.toml"),
            "{e}"
        );
        let e = Config::from_sources(None, &env(&[("MEDIAFLOW_LIMITS__MAX_PIXELS", "0")]))
            .expect_err("zero");
        assert!(e.to_string().contains("limits.max_pixels"), "{e}");
        let e = Config::from_sources(
            Some((
                "f.toml",
                "[profiles.x]\nrenditions = [{ name = \"a\", format = \"png\" }]\n",
            )),
            &[],
        )
        .expect_err("no size");
        assert!(e.to_string().contains("profiles.x.renditions[0]"), "{e}");
        let e = Config::from_sources(
            Some(("f.toml", "[[routes]]\nkey = \"a/**\"\nprofile = \"nope\"\n")),
            &[],
        )
        .expect_err("bad route");
        assert!(e.to_string().contains("routes[0].profile"), "{e}");
    }

    #[test]
    fn routes_match_bucket_and_key_glob() {
        let file = "[profiles.video]\nrenditions = [{ name = \"a\", width = 10, format = \"png\" }]\n[[routes]]\nbucket = \"uploads\"\nkey = \"videos/**\"\nprofile = \"video\"\n";
        let c = Config::from_sources(Some(("f.toml", file)), &[]).expect("valid");
        let routes = c.routes();
        assert_eq!(routes.profile("uploads", "videos/2024/a.mp4"), "video");
        assert_eq!(routes.profile("other", "videos/a.mp4"), "default");
        assert_eq!(routes.profile("uploads", "images/a.jpg"), "default");
    }
}
