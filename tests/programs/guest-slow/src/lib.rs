//! Test guest: a metadata extractor that takes `millis` (config) of wall time, for tests of
//! long jobs (visibility heartbeat, drain). Busy-waits on the WASI monotonic clock.
use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source, config};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(_info: MediaInfo, _src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    let millis = config::parse::<u64>("millis")?.unwrap_or(1000);
    let start = std::time::Instant::now();
    let mut spins = 0u64;
    while start.elapsed().as_millis() < u128::from(millis) {
        spins = std::hint::black_box(spins + 1);
    }
    Ok(vec![MetadataEntry::integer("slept_ms", millis as i64)])
}
