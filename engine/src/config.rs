//! Configuration: one typed struct read from a TOML file (`--config`), every field defaulted,
//! overridable by `MEDIAFLOW_*` environment variables (`MEDIAFLOW_LIMITS__MAX_PIXELS=5000000`:
//! `__` separates nesting levels). Profiles say what to make of a source (renditions, plugins);
//! routes map a bucket and key glob to a profile. Validated once at start-up; every error
//! names the field and the problem.

mod notify;
mod profile;

pub use notify::{
    LOG_SINK, LogSinkConfig, NotifyConfig, RuleConfig, Secret, SinkConfig, SnsSinkConfig,
    SqsSinkConfig, WebhookSinkConfig,
};
pub use profile::{
    Fit, ImageFormat, PluginRef, PluginUse, Profile, Rendition, Rung, VersionPin, VideoSettings,
};

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
    pub ops: crate::telemetry::OpsConfig,
    /// Job lifecycle notifications: rules and sinks.
    pub notify: NotifyConfig,
}

/// Queue worker settings. With no AWS configured, the worker uses an embedded local queue and
/// filesystem buckets under `data_dir`, with the same semantics as SQS and S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Root of local mode: `queue.db` and `buckets/<bucket>/<key>`.
    pub data_dir: PathBuf,
    /// Bucket that `mediaflow submit` uploads sources to.
    pub source_bucket: String,
    /// Bucket outputs and manifests are written to.
    pub output_bucket: String,
    /// Prefix of every output key (empty, or ending in `/`).
    pub output_prefix: String,
    /// Jobs in flight per process; 0 = one per core.
    pub concurrency: usize,
    /// How long a received message stays hidden; a heartbeat extends it every third of this
    /// while its job runs.
    pub visibility_timeout_secs: u64,
    /// On SIGTERM/SIGINT, how long in-flight jobs may run before they are released.
    pub drain_timeout_secs: u64,
    /// Receives before a message is moved to the dead-letter queue.
    pub max_receive_count: u32,
    /// How often an idle worker polls the local queue.
    pub poll_interval_ms: u64,
    /// SQS queue URL. Set, the worker consumes SQS and reads and writes S3 (AWS settings come
    /// from the SDK's standard environment: `AWS_REGION`, `AWS_ENDPOINT_URL`, the credential
    /// chain including the ECS task role). Unset, it runs in local mode.
    pub queue_url: Option<String>,
    /// How long an SQS receive waits for messages (long polling; 0..=20, 0 = short polling).
    /// On SIGTERM the worker waits for an open receive to end, so that anything it returns is
    /// released at once: this also bounds how long an idle worker takes to exit.
    pub receive_wait_secs: u64,
    /// Path-style S3 addressing (`endpoint/bucket/key`), for S3-compatible endpoints.
    pub s3_path_style: bool,
    /// Outputs at least this large are uploaded to S3 in parts (multipart upload).
    pub s3_multipart_threshold_bytes: u64,
    /// Size of each part of a multipart upload but the last (S3: 5 MiB..=5 GiB).
    pub s3_part_bytes: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("mediaflow-data"),
            source_bucket: "uploads".into(),
            output_bucket: "renditions".into(),
            output_prefix: String::new(),
            concurrency: 0,
            visibility_timeout_secs: 120,
            drain_timeout_secs: 90,
            max_receive_count: 5,
            poll_interval_ms: 100,
            queue_url: None,
            receive_wait_secs: 20,
            s3_path_style: false,
            s3_multipart_threshold_bytes: crate::storage::s3::Multipart::default().threshold_bytes,
            s3_part_bytes: crate::storage::s3::Multipart::default().part_bytes,
        }
    }
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
            ops: crate::telemetry::OpsConfig::default(),
            notify: NotifyConfig::default(),
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

/// Plugin host settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Where compiled plugins are cached; default `$XDG_CACHE_HOME/mediaflow/plugins`.
    pub cache_dir: Option<PathBuf>,
    /// Largest plugin binary accepted, in bytes (checked before compiling).
    pub max_wasm_bytes: u64,
    /// Extra plugins from local directories, each holding `plugin.toml` and `plugin.wasm`
    /// (the registry's layout), added to the bundled ones.
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
        let l = &self.limits;
        for (name, v) in [
            ("max_input_bytes", l.max_input_bytes),
            ("max_pixels", l.max_pixels),
            ("max_frames", l.max_frames),
            ("max_duration_s", l.max_duration_s),
            ("decoder_memory_bytes", l.decoder_memory_bytes),
            ("decode_stall_secs", l.decode_stall_secs),
        ] {
            if v == 0 {
                return Err(invalid(
                    format!("limits.{name}"),
                    "must be greater than 0".into(),
                ));
            }
        }
        if l.max_damaged_frames_percent > 100 {
            return Err(invalid(
                "limits.max_damaged_frames_percent".into(),
                "must be at most 100".into(),
            ));
        }
        if l.max_dimension == 0 {
            return Err(invalid(
                "limits.max_dimension".into(),
                "must be greater than 0".into(),
            ));
        }
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
        let w = &self.worker;
        if w.visibility_timeout_secs < 3 || w.visibility_timeout_secs > 43_200 {
            return Err(invalid(
                "worker.visibility_timeout_secs".into(),
                format!(
                    "{} must be 3..=43200 (SQS's range, heartbeat needs ≥ 3)",
                    w.visibility_timeout_secs
                ),
            ));
        }
        if w.receive_wait_secs > 20 {
            return Err(invalid(
                "worker.receive_wait_secs".into(),
                format!("{} must be 0..=20 (SQS's range)", w.receive_wait_secs),
            ));
        }
        let parts = crate::storage::s3::MIN_PART_BYTES..=crate::storage::s3::MAX_PART_BYTES;
        if !parts.contains(&w.s3_part_bytes) {
            return Err(invalid(
                "worker.s3_part_bytes".into(),
                format!(
                    "{} must be {}..={} (S3's part sizes)",
                    w.s3_part_bytes,
                    parts.start(),
                    parts.end()
                ),
            ));
        }
        if w.s3_multipart_threshold_bytes < w.s3_part_bytes {
            return Err(invalid(
                "worker.s3_multipart_threshold_bytes".into(),
                format!(
                    "{} must be at least worker.s3_part_bytes ({})",
                    w.s3_multipart_threshold_bytes, w.s3_part_bytes
                ),
            ));
        }
        if w.max_receive_count == 0 {
            return Err(invalid(
                "worker.max_receive_count".into(),
                "must be at least 1".into(),
            ));
        }
        if !(w.output_prefix.is_empty() || w.output_prefix.ends_with('/')) {
            return Err(invalid(
                "worker.output_prefix".into(),
                format!("{:?} must be empty or end with '/'", w.output_prefix),
            ));
        }
        for (name, bucket) in [
            ("worker.source_bucket", &w.source_bucket),
            ("worker.output_bucket", &w.output_bucket),
        ] {
            if crate::storage::validate_key(bucket).is_err() || bucket.contains('/') {
                return Err(invalid(
                    name.into(),
                    format!("{bucket:?} is not a bucket name"),
                ));
            }
        }
        crate::plugin::registry::validate_config(self)
            .map_err(|(field, problem)| invalid(field.into(), problem))?;
        self.ops
            .validate()
            .map_err(|(field, problem)| invalid(format!("ops.{field}"), problem))?;
        self.notify
            .validate()
            .map_err(|(field, problem)| invalid(format!("notify.{field}"), problem))?;
        for (i, route) in self.routes.iter().enumerate() {
            if !self.profiles.contains_key(&route.profile) {
                return Err(invalid(
                    format!("routes[{i}].profile"),
                    format!("names profile {:?}, which is not defined", route.profile),
                ));
            }
            globset::Glob::new(&route.key).map_err(|e| {
                invalid(
                    format!("routes[{i}].key"),
                    format!("is not a valid glob: {e}"),
                )
            })?;
        }
        Ok(())
    }

    /// The profile for an object: the first route whose bucket and key glob match, else the
    /// default profile.
    pub fn route(&self, bucket: &str, key: &str) -> &str {
        for route in &self.routes {
            let bucket_ok = route.bucket == "*" || route.bucket == bucket;
            let key_ok = globset::GlobBuilder::new(&route.key)
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher().is_match(key))
                .unwrap_or(false);
            if bucket_ok && key_ok {
                return &route.profile;
            }
        }
        &self.default_profile
    }

    /// The profile called `name`.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
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
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
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
        assert_eq!(c.route("uploads", "videos/2024/a.mp4"), "video");
        assert_eq!(c.route("other", "videos/a.mp4"), "default");
        assert_eq!(c.route("uploads", "images/a.jpg"), "default");
    }
}
