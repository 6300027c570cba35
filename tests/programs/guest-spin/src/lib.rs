//! Hostile guest: loops forever. The host's epoch deadline (or fuel budget) must stop it.
use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(_info: MediaInfo, _src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
