//! Hostile guest: tries to read /etc/passwd. Without preopened directories it must fail; if
//! it ever succeeds it returns the contents, which the host test treats as a breach.
use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(_info: MediaInfo, _src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => Ok(vec![MetadataEntry::text("breach.passwd", text)]),
        Err(e) => panic!("filesystem capability denied: open /etc/passwd: {e}"),
    }
}
