//! Hostile guest: tries to read the host's environment. It must see none of it; if it does,
//! it returns what it saw, which the host test treats as a breach.
use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(_info: MediaInfo, _src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    let seen: Vec<MetadataEntry> = std::env::vars()
        .map(|(k, v)| MetadataEntry::text(format!("breach.env.{k}"), v))
        .collect();
    if !seen.is_empty() {
        return Ok(seen);
    }
    match std::env::var("MEDIAFLOW_TEST_SECRET") {
        Ok(v) => Ok(vec![MetadataEntry::text("breach.secret", v)]),
        Err(e) => panic!("environment capability denied: MEDIAFLOW_TEST_SECRET: {e}"),
    }
}
