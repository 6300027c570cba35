//! A well-behaved metadata extractor built with the SDK against `mediaflow:plugin@0.1.1`: it
//! uses the function 0.1.1 added, `host.time-left-ms`, reporting the time left before and after
//! busy-waiting `busy_ms` (config) on the guest's own clock.
use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source, config};
use std::time::{Duration, Instant};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(_info: MediaInfo, _src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    let busy = config::parse::<u64>("busy_ms")?.unwrap_or(0);
    let before = mediaflow_plugin_sdk::time_left();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(busy) {
        std::hint::spin_loop();
    }
    let after = mediaflow_plugin_sdk::time_left();
    Ok(vec![
        MetadataEntry::integer("time_left.before_ms", before.as_millis() as i64),
        MetadataEntry::integer("time_left.after_ms", after.as_millis() as i64),
        MetadataEntry::text("sdk.wit_version", mediaflow_plugin_sdk::WIT_VERSION),
    ])
}
