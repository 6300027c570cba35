//! The one place the WIT contract becomes Rust on the host side: `bindgen!` for the three
//! plugin worlds. The shared interfaces (`types`, `host`, `input`) are generated once, with the
//! metadata-extractor world, and the other two worlds reuse them.
//!
//! Generated from the newest contract only (`wit/plugin.wit`). Plugins built against an older
//! compatible version (`0.1.0`, frozen in `wit/frozen/`) need no bindings of their own:
//! wasmtime matches names semver-compatibly both ways — their import of
//! `mediaflow:plugin/host@0.1.0` is satisfied by the linker's `host@0.1.1`, and the typed lookup
//! of `extractor@0.1.1` finds their export `extractor@0.1.0` — and then checks the types
//! structurally, which an additive change keeps equal.

#![allow(missing_docs, clippy::all)]

pub mod extractor {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mediaflow:plugin/metadata-extractor@0.1.1",
        with: {
            "mediaflow:plugin/input.source": crate::plugin::source::SourceHandle,
        },
        imports: { default: trappable },
        additional_derives: [PartialEq],
    });
}

pub mod watermarker {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mediaflow:plugin/watermarker@0.1.1",
        with: {
            "mediaflow:plugin/types": super::extractor::mediaflow::plugin::types,
            "mediaflow:plugin/host": super::extractor::mediaflow::plugin::host,
        },
    });
}

pub mod notifier {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mediaflow:plugin/notification-rule@0.1.1",
        with: {
            "mediaflow:plugin/types": super::extractor::mediaflow::plugin::types,
            "mediaflow:plugin/host": super::extractor::mediaflow::plugin::host,
        },
    });
}

use crate::media::overlay::Overlay;
pub use extractor::mediaflow::plugin::input::ReadError;
pub use extractor::mediaflow::plugin::types;

impl types::MediaInfo {
    /// Media info for a still image of `width` × `height` (display size) and `bytes` bytes.
    pub fn image(uri: &str, format: &str, width: u32, height: u32, bytes: u64) -> Self {
        Self {
            uri: uri.into(),
            kind: types::MediaKind::Image,
            format: format.into(),
            codec: None,
            width,
            height,
            orientation: 1,
            duration_s: None,
            fps: None,
            has_audio: false,
            bytes,
        }
    }
}

/// A watermarker's answer as the overlay the host blends (opacity clamped to 0..=1).
impl From<types::Overlay> for Overlay {
    fn from(o: types::Overlay) -> Self {
        Overlay {
            width: o.image.width,
            height: o.image.height,
            rgba: o.image.pixels,
            x: o.x,
            y: o.y,
            opacity: o.opacity.clamp(0.0, 1.0),
            tile: o.tile.map(|t| (t.gap_x, t.gap_y)),
        }
    }
}
