//! `mediaflow plugin list`: what an engine with this configuration would have — the bundled
//! and local plugins, every version in the registry (loaded exactly as an engine loads it, so
//! refused ones show why), the channels — and which version each profile's plugins resolve to.

use super::sync::{Syncer, VersionState};
use super::{Registry, RegistryError};
use crate::config::Config;
use crate::plugin::catalog::Catalog;
use crate::plugin::{PluginHost, bundled};
use std::fmt::Write as _;
use std::sync::Arc;

/// The listing as text. `base` is the bundled and local plugins.
pub fn describe(
    config: &Config,
    host: Arc<PluginHost>,
    base: Catalog,
) -> Result<String, RegistryError> {
    let mut out = String::new();
    let bundled: Vec<(String, semver::Version)> = bundled::all()
        .into_iter()
        .map(|b| (b.manifest.name, b.manifest.version))
        .collect();
    let mut rows: Vec<[String; 5]> = Vec::new();
    for (name, version) in base.list() {
        let source = if bundled.contains(&(name.clone(), version.clone())) {
            "bundled"
        } else {
            "local"
        };
        if let Some(p) = base.get(&name, &version) {
            rows.push([
                name,
                version.to_string(),
                p.world().name().into(),
                source.into(),
                p.digest(),
            ]);
        }
    }
    let registry = Registry::from_config(config)?;
    let syncer = match registry {
        Some(r) => {
            let _ = writeln!(out, "registry: {}", r.location());
            let mut s = Syncer::new(r, host, base.clone(), config.plugins.max_wasm_bytes);
            s.sync()?;
            for (name, version, state) in s.versions() {
                rows.push(match state {
                    VersionState::Loaded { plugin, .. } => [
                        name.into(),
                        version.to_string(),
                        plugin.world().name().into(),
                        "registry".into(),
                        plugin.digest(),
                    ],
                    VersionState::Refused { code, reason } => [
                        name.into(),
                        version.to_string(),
                        "-".into(),
                        "registry".into(),
                        format!("REFUSED ({code}): {reason}"),
                    ],
                });
            }
            Some(s)
        }
        None => {
            let _ = writeln!(out, "registry: none (plugins.registry is empty)");
            None
        }
    };
    rows.sort_by(|a, b| (&a[0], semver_key(&a[1])).cmp(&(&b[0], semver_key(&b[1]))));
    let _ = writeln!(
        out,
        "\n{:<16} {:<12} {:<20} {:<9} DIGEST",
        "NAME", "VERSION", "WORLD", "SOURCE"
    );
    for [name, version, world, source, digest] in &rows {
        let _ = writeln!(
            out,
            "{name:<16} {version:<12} {world:<20} {source:<9} {digest}"
        );
    }
    let catalog = syncer.as_ref().map(Syncer::catalog).unwrap_or(base);
    if let Some(s) = &syncer {
        let channels: Vec<_> = s.channels().collect();
        if !channels.is_empty() {
            let _ = writeln!(out, "\nchannels:");
            for (name, channel, target) in channels {
                let _ = match target {
                    Ok(v) => writeln!(out, "  {name}/{channel} -> {v}"),
                    Err(why) => writeln!(out, "  {name}/{channel} REFUSED: {why}"),
                };
            }
        }
    }
    let _ = writeln!(out, "\nprofiles:");
    for (profile, p) in &config.profiles {
        for u in p.metadata.iter().chain(p.watermark.iter()) {
            let resolved = match catalog.resolve_pin(&u.plugin.name, &u.plugin.req) {
                Some(plugin) => {
                    let source = if bundled
                        .iter()
                        .any(|(n, v)| n == plugin.name() && v.to_string() == plugin.version())
                    {
                        "bundled"
                    } else if syncer.as_ref().is_some_and(|s| {
                        s.loaded()
                            .iter()
                            .any(|l| l.name() == plugin.name() && l.version() == plugin.version())
                    }) {
                        "registry"
                    } else {
                        "local"
                    };
                    format!("{}@{} ({source})", plugin.name(), plugin.version())
                }
                None => "NOT AVAILABLE: jobs with this profile fail (plugin_not_found)".into(),
            };
            let _ = writeln!(
                out,
                "  {profile:<16} {:<24} -> {resolved}",
                u.plugin.to_string()
            );
        }
    }
    Ok(out)
}

fn semver_key(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v).ok()
}
