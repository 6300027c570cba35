//! `plugin.toml`, a plugin's descriptor (not to be confused with a job's `manifest.json`,
//! [`crate::manifest`]): its identity (name, version, world), description, default
//! configuration and limits, and — once published — the sha256 of its wasm.

use super::limits::PluginLimits;
use super::world::World;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The contents of a `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDescriptor {
    /// Plugin name: lowercase letters, digits and `-`.
    pub name: String,
    /// Semantic version of the plugin.
    pub version: semver::Version,
    /// The world it implements.
    pub world: World,
    /// One line on what it does.
    #[serde(default)]
    pub description: String,
    /// Default configuration; profiles override keys.
    #[serde(default)]
    pub config: toml::Table,
    /// Limits; each field defaults.
    #[serde(default)]
    pub limits: PluginLimits,
    /// `sha256:<hex>` of `plugin.wasm` (set on publish, verified on load from a registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Why a `plugin.toml` was refused.
#[derive(Debug, thiserror::Error)]
pub enum DescriptorError {
    /// Not valid TOML, or a field has the wrong type (the message names it).
    #[error("plugin.toml: {0}")]
    Parse(String),
    /// A field has a bad value.
    #[error("plugin.toml: `{field}` {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl PluginDescriptor {
    /// Parse and validate.
    pub fn parse(text: &str) -> Result<Self, DescriptorError> {
        let m: PluginDescriptor =
            toml::from_str(text).map_err(|e| DescriptorError::Parse(e.message().to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Check the name and limits.
    pub fn validate(&self) -> Result<(), DescriptorError> {
        if !valid_name(&self.name) {
            return Err(DescriptorError::Invalid {
                field: "name",
                problem: format!(
                    "{:?} must be 1-64 of a-z, 0-9 and '-', starting with a letter",
                    self.name
                ),
            });
        }
        self.limits
            .validate()
            .map_err(|problem| DescriptorError::Invalid {
                field: "limits",
                problem,
            })
    }

    /// The manifest as `plugin.toml` text.
    pub fn to_toml(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        toml::to_string(self).unwrap_or_default()
    }

    /// The default configuration flattened to the strings guests see.
    pub fn config_strings(&self) -> BTreeMap<String, String> {
        flatten_config(&self.config)
    }
}

pub use crate::config::valid_plugin_name as valid_name;

/// TOML config → the `key → string` map guests read: strings as they are, other values as TOML.
pub fn flatten_config(table: &toml::Table) -> BTreeMap<String, String> {
    table
        .iter()
        .map(|(k, v)| {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_manifest() -> Result<(), DescriptorError> {
        let m = PluginDescriptor::parse(
            r#"
            name = "exif"
            version = "1.2.0"
            world = "metadata-extractor"
            description = "EXIF"
            [config]
            gps = "strip"
            depth = 3
            [limits]
            timeout_ms = 500
            "#,
        )?;
        assert_eq!(m.world, World::MetadataExtractor);
        assert_eq!(m.limits.timeout_ms, 500);
        assert_eq!(m.limits.memory_bytes, crate::plugin::DEFAULT_MEMORY_BYTES);
        let cfg = m.config_strings();
        assert_eq!(cfg.get("gps").map(String::as_str), Some("strip"));
        assert_eq!(cfg.get("depth").map(String::as_str), Some("3"));
        Ok(())
    }

    #[test]
    fn bad_fields_are_named() {
        let e = PluginDescriptor::parse(
            "name = \"Bad Name\"\nversion = \"1.0.0\"\nworld = \"watermarker\"",
        )
        .err()
        .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("`name`")));
        let e = PluginDescriptor::parse("name = \"x\"\nversion = \"1.0.0\"\nworld = \"painter\"")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.is_some_and(|e| e.contains("painter")),
            "unknown world is named"
        );
    }
}
