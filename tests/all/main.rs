//! mediaflow integration tests, one binary: real plugins compiled to wasm32-wasip2, hostile
//! guests, and the CLI as a user runs it.

mod av1;
mod aws;
mod bitrate;
mod cli;
mod deploy;
mod faults;
mod first_party;
mod harness;
mod heif;
mod inputs;
mod isolation;
mod languages;
mod notify;
mod ops;
mod process;
mod registry;
mod sandbox;
mod serve;
mod stills;
mod video;
mod wit_versions;
mod workbench;
mod worker;

/// Media info for an image source.
pub fn image_info(
    uri: &str,
    format: &str,
    w: u32,
    h: u32,
    bytes: usize,
) -> mediaflow::plugin::types::MediaInfo {
    mediaflow::plugin::types::MediaInfo::image(uri, format, w, h, bytes as u64)
}
