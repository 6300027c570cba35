//! mediaflow integration tests, one binary: real plugins compiled to wasm32-wasip2, hostile
//! guests, and the CLI as a user runs it.

mod cli;
mod first_party;
mod process;
mod sandbox;

/// Media info for an image source.
pub fn image_info(
    uri: &str,
    format: &str,
    w: u32,
    h: u32,
    bytes: usize,
) -> mediaflow::plugin::types::MediaInfo {
    use mediaflow::plugin::types::{MediaInfo, MediaKind};
    MediaInfo {
        uri: uri.into(),
        kind: MediaKind::Image,
        format: format.into(),
        codec: None,
        width: w,
        height: h,
        orientation: 1,
        duration_s: None,
        fps: None,
        has_audio: false,
        bytes: bytes as u64,
    }
}
