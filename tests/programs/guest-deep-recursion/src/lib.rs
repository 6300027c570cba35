//! Hostile guest: recurses without end (on the wasm stack only: scalar arguments, nothing
//! spilled to the linear-memory shadow stack). The host's wasm stack limit must stop it.
use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source};

#[inline(never)]
fn descend(n: u64, stop: u64) -> u64 {
    if n == stop {
        return n;
    }
    // Not a tail call, and not an accumulator LLVM can turn into a loop.
    descend(n.wrapping_add(1), stop).wrapping_mul(31) ^ n.rotate_left(7)
}

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(info: MediaInfo, _src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    let n = descend(info.bytes, u64::MAX);
    Ok(vec![MetadataEntry::integer("depth", n as i64)])
}
