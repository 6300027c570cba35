//! What can go wrong with a plugin, in terms a caller can act on: every error names the plugin
//! (name@version) and says which limit, capability or contract was involved.

use std::time::Duration;

/// A plugin failed to load or a call into it failed. For a job this is always a permanent
/// failure (`plugin_failed`): retrying the same input with the same plugin gives the same result.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` {kind}")]
pub struct PluginError {
    /// `name@version` of the plugin.
    pub plugin: String,
    /// What happened.
    pub kind: PluginErrorKind,
}

/// The ways a plugin fails.
#[derive(Debug, thiserror::Error)]
pub enum PluginErrorKind {
    /// The guest returned an error value (an expected failure, e.g. unsupported input).
    #[error("returned an error ({code}): {message}")]
    Guest {
        /// `bad_config`, `unsupported`, `invalid_input` or `failed`.
        code: &'static str,
        /// The guest's message.
        message: String,
    },
    /// A call ran past its wall-time limit and was interrupted.
    #[error(
        "exceeded its wall-time limit of {} ms and was stopped (raise `limits.timeout_ms` in its \
         plugin.toml or where the profile uses it; a guest can call `time-left-ms` to stop in \
         time)",
        limit.as_millis()
    )]
    Timeout {
        /// The limit in force.
        limit: Duration,
    },
    /// The guest tried to grow its memory past the cap.
    #[error(
        "exceeded its memory limit of {limit} bytes (tried to grow to {requested} bytes; the \
         setting is `limits.memory_bytes` in its plugin.toml or where the profile uses it)"
    )]
    MemoryLimit {
        /// The cap in bytes.
        limit: u64,
        /// What the guest asked for, all memories together.
        requested: u64,
    },
    /// The call used up its fuel budget.
    #[error(
        "ran out of fuel (budget {budget} units per call; the setting is `limits.fuel` in its \
         plugin.toml or where the profile uses it)"
    )]
    FuelExhausted {
        /// The budget in force.
        budget: u64,
    },
    /// The guest trapped: a panic, `unreachable`, stack overflow, out-of-bounds access…
    #[error("trapped: {reason}{}", stderr_suffix(stderr))]
    Trap {
        /// The trap as wasmtime describes it.
        reason: String,
        /// The last lines the guest wrote to stderr (a Rust panic message lands here).
        stderr: String,
    },
    /// The guest returned more than its bounds allow (a limit of `plugin.toml` `[limits]`, or
    /// of the profile's plugin use).
    #[error(
        "returned {found}, over its limit of {limit} (`limits.{setting}` in its plugin.toml, or \
         `limits = {{ {setting} = … }}` where the profile uses it)"
    )]
    OutputLimit {
        /// What it returned (`250000 metadata entries`).
        found: String,
        /// The bound.
        limit: u64,
        /// The setting that sets it.
        setting: &'static str,
    },
    /// The guest returned something malformed (e.g. an overlay whose pixel buffer does not
    /// match its size).
    #[error("returned malformed output: {0}")]
    BadOutput(String),
    /// The wasm file is larger than the configured cap; it was not compiled.
    #[error("is {size} bytes, over the {cap}-byte cap for plugin binaries")]
    TooLarge {
        /// Size of the file.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("is not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The component implements none of the mediaflow worlds.
    #[error(
        "implements no known mediaflow world: it exports [{exports}], but a plugin must export \
         one of mediaflow:plugin/extractor (metadata-extractor), mediaflow:plugin/watermark \
         (watermarker) or mediaflow:plugin/notifier (notification-rule) at a hosted version ({hosted})"
    )]
    UnknownWorld {
        /// What the component exports, comma-separated.
        exports: String,
        /// WIT versions this engine hosts.
        hosted: String,
    },
    /// The component implements a mediaflow world, but at a WIT version this engine does not
    /// host (a newer one than it knows, or an incompatible line).
    #[error(
        "is a {world} plugin built against mediaflow:plugin@{version}, which this engine does \
         not host (it hosts {hosted}): run it on an engine that hosts {version}, or rebuild it \
         against one of those"
    )]
    UnhostedWitVersion {
        /// The world it implements.
        world: &'static str,
        /// The WIT version it was built against.
        version: String,
        /// WIT versions this engine hosts.
        hosted: String,
    },
    /// The component is a different kind of plugin than the one asked for.
    #[error("is a {found} plugin, not a {expected}")]
    WrongWorld {
        /// The world asked for.
        expected: &'static str,
        /// The world it implements.
        found: &'static str,
    },
    /// The component needs something the sandbox does not provide (e.g. `wasi:http`).
    #[error("cannot be linked into the sandbox: {0}")]
    Link(String),
    /// Reading the plugin file or the compile cache failed.
    #[error("could not be read: {0}")]
    Io(String),
    /// The wasm is not the one its `plugin.toml` names (tampered or corrupted): not compiled.
    #[error("digest mismatch: plugin.toml says {expected}, plugin.wasm is {found}")]
    DigestMismatch {
        /// `sha256:<hex>` from `plugin.toml`.
        expected: String,
        /// `sha256:<hex>` of the wasm bytes.
        found: String,
    },
    /// Its `plugin.toml` is unusable (unparseable, no digest, or not matching where it lives).
    #[error("has an unusable plugin.toml: {0}")]
    BadManifest(String),
}

fn stderr_suffix(stderr: &str) -> String {
    // Advice about backtraces cannot be followed inside the sandbox: left out.
    let useful = match stderr.find("note: run with `RUST_BACKTRACE") {
        Some(at) => {
            let rest = &stderr[at..];
            let end = rest.find(" | ").map_or(stderr.len(), |i| at + i + 3);
            format!("{}{}", &stderr[..at], &stderr[end..])
        }
        None => stderr.to_string(),
    };
    let useful = useful.trim().trim_end_matches('|').trim();
    if useful.is_empty() {
        String::new()
    } else {
        format!("; guest stderr: {useful}")
    }
}

impl PluginError {
    /// An error about `plugin` (`name@version`, or a path when the name is not known yet).
    pub fn new(plugin: impl Into<String>, kind: PluginErrorKind) -> Self {
        Self {
            plugin: plugin.into(),
            kind,
        }
    }

    /// Stable code for manifests and metrics: always `plugin_failed`, with the detail in
    /// [`PluginError::detail_code`].
    pub fn code(&self) -> &'static str {
        "plugin_failed"
    }

    /// A stable, finer-grained code: `guest_error`, `timeout`, `memory_limit`, `fuel`, `trap`,
    /// `too_large`, `invalid`, `unknown_world`, `unhosted_wit_version`, `wrong_world`, `link`,
    /// `io`, `digest_mismatch`, `bad_manifest`.
    pub fn detail_code(&self) -> &'static str {
        match self.kind {
            PluginErrorKind::Guest { .. } => "guest_error",
            PluginErrorKind::Timeout { .. } => "timeout",
            PluginErrorKind::MemoryLimit { .. } => "memory_limit",
            PluginErrorKind::FuelExhausted { .. } => "fuel",
            PluginErrorKind::Trap { .. } => "trap",
            PluginErrorKind::BadOutput(_) => "bad_output",
            PluginErrorKind::OutputLimit { .. } => "output_limit",
            PluginErrorKind::TooLarge { .. } => "too_large",
            PluginErrorKind::Invalid(_) => "invalid",
            PluginErrorKind::UnknownWorld { .. } => "unknown_world",
            PluginErrorKind::UnhostedWitVersion { .. } => "unhosted_wit_version",
            PluginErrorKind::WrongWorld { .. } => "wrong_world",
            PluginErrorKind::Link(_) => "link",
            PluginErrorKind::Io(_) => "io",
            PluginErrorKind::DigestMismatch { .. } => "digest_mismatch",
            PluginErrorKind::BadManifest(_) => "bad_manifest",
        }
    }
}
