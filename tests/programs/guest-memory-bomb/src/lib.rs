//! Hostile guest: allocates without bound. The host's memory cap must stop it.
use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(_info: MediaInfo, _src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 8 * 1024 * 1024]);
        std::hint::black_box(&hoard);
    }
}
