//! Hostile guest: panics (a trap). The host must report it with the panic message.
use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(info: MediaInfo, _src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    panic!("deliberate panic while reading {}", info.uri);
}
