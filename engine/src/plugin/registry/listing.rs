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

/// One row of the plugin table: name, version, world, source, digest (or why refused).
type Row = [String; 5];

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
    let mut rows = base_rows(&base, &bundled);
    let syncer = match Registry::from_config(config)? {
        Some(r) => {
            let how = if config.plugins.registry.is_some() {
                "plugins.registry".to_string()
            } else if config.worker.queue_url.is_some() {
                "the default: the output bucket's plugins/ prefix".to_string()
            } else {
                format!(
                    "the default, under worker.data_dir = {:?}: a worker with another data_dir, \
                     config or MEDIAFLOW_* environment reads another registry",
                    config.worker.data_dir.display().to_string()
                )
            };
            let _ = writeln!(out, "registry: {} ({how})", r.location());
            let mut s = Syncer::new(r, host, base.clone(), config.plugins.max_wasm_bytes);
            s.sync()?;
            rows.extend(registry_rows(&s));
            Some(s)
        }
        None => {
            let _ = writeln!(out, "registry: none (plugins.registry is empty)");
            None
        }
    };
    write_table(&mut out, rows);
    if let Some(s) = &syncer {
        write_channels(&mut out, s);
    }
    let catalog = syncer.as_ref().map(Syncer::catalog).unwrap_or(base);
    let source_of = |plugin: &crate::plugin::Plugin| {
        let is = |name: &str, version: &str| name == plugin.name() && version == plugin.version();
        if bundled.iter().any(|(n, v)| is(n, &v.to_string())) {
            "bundled"
        } else if syncer
            .as_ref()
            .is_some_and(|s| s.loaded().iter().any(|l| is(l.name(), l.version())))
        {
            "registry"
        } else {
            "local"
        }
    };
    let _ = writeln!(out, "\nprofiles:");
    for (profile, p) in &config.profiles {
        for u in p.metadata.iter().chain(p.watermark.iter()) {
            let resolved = match catalog.resolve_pin(&u.plugin.name, &u.plugin.req) {
                Some(plugin) => format!(
                    "{}@{} ({})",
                    plugin.name(),
                    plugin.version(),
                    source_of(plugin)
                ),
                None => format!(
                    "NOT AVAILABLE: {} (its jobs wait for it to be published, or fail without a \
                     registry)",
                    catalog.why_missing(&u.plugin.name, &u.plugin.req)
                ),
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

/// The bundled and local plugins' rows.
fn base_rows(base: &Catalog, bundled: &[(String, semver::Version)]) -> Vec<Row> {
    base.list()
        .into_iter()
        .filter_map(|(name, version)| {
            let source = if bundled.contains(&(name.clone(), version.clone())) {
                "bundled"
            } else {
                "local"
            };
            let p = base.get(&name, &version)?;
            Some([
                name.clone(),
                version.to_string(),
                p.world().name().into(),
                source.into(),
                p.digest(),
            ])
        })
        .collect()
}

/// Every registry version's row, loaded or refused (with the reason).
fn registry_rows(s: &Syncer) -> Vec<Row> {
    s.versions()
        .map(|(name, version, state)| match state {
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
        })
        .collect()
}

/// The plugin table, by name then version.
fn write_table(out: &mut String, mut rows: Vec<Row>) {
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
}

/// The registry's channels, if any.
fn write_channels(out: &mut String, s: &Syncer) {
    let channels: Vec<_> = s.channels().collect();
    if channels.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nchannels:");
    for (name, channel, target) in channels {
        let _ = match target {
            Ok(v) => writeln!(out, "  {name}/{channel} -> {v}"),
            Err(why) => writeln!(out, "  {name}/{channel} REFUSED: {why}"),
        };
    }
}

fn semver_key(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v).ok()
}
