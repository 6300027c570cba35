//! Hostile guest: a metadata extractor that floods its result — `entries` entries (config,
//! default 250,000) whose values are `value_bytes` long (default 100): about 30 MB, well inside
//! its 128 MiB sandbox. The host must refuse the result, naming the bound and its setting.
use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source, config};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(_info: MediaInfo, _src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    let entries: usize = config::parse("entries")?.unwrap_or(250_000);
    let value_bytes: usize = config::parse("value_bytes")?.unwrap_or(100);
    let key_bytes: usize = config::parse("key_bytes")?.unwrap_or(0);
    let value = "v".repeat(value_bytes);
    Ok((0..entries)
        .map(|i| {
            let key = format!("flood.{i:06}{}", "k".repeat(key_bytes));
            MetadataEntry::text(key, value.clone())
        })
        .collect())
}
