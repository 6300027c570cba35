//! Hostile guest: tries to open a TCP connection. The sandbox grants no network; if it ever
//! connects it says so, which the host test treats as a breach.
use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(info: MediaInfo, _src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    // The test passes the address of a listener it owns in `uri`.
    let addr = info.uri.trim_start_matches("tcp://").to_string();
    match std::net::TcpStream::connect(&addr) {
        Ok(_) => Ok(vec![MetadataEntry::text("breach.connected", addr)]),
        Err(e) => panic!("network capability denied: connect {addr}: {e}"),
    }
}
