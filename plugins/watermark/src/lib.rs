//! `watermark`: a watermarker plugin. Draws configured text (with the bundled DejaVu Sans Bold
//! subset) and/or a logo PNG into an RGBA overlay sized for each rendition, placed at one of 9
//! anchors with margins, or tiled over the whole rendition. The host blends it.
//!
//! Configuration (all optional but one of `text` / `logo_png_base64`): see `plugin.toml`.

mod draw;
mod settings;

use mediaflow_plugin_sdk::{MediaInfo, Overlay, PluginError, Size, Tiling};
use settings::Settings;

#[mediaflow_plugin_sdk::watermarker]
fn overlay(_info: MediaInfo, target: Size) -> Result<Option<Overlay>, PluginError> {
    let s = Settings::from_config()?;
    if target.width == 0 || target.height == 0 || target.width < s.min_target_width {
        return Ok(None);
    }
    let Some(image) = draw::mark(&s, target)? else {
        return Ok(None);
    };
    let (x, y, tile) = if s.tile {
        let gap_x = (image.width as f32 * s.tile_gap).round() as u32;
        let gap_y = (image.height as f32 * s.tile_gap).round() as u32;
        (0, 0, Some(Tiling { gap_x, gap_y }))
    } else {
        let (x, y) = s
            .position
            .place(target, image.width, image.height, s.margin_px(target));
        (x, y, None)
    };
    Ok(Some(Overlay {
        image,
        x,
        y,
        opacity: s.opacity,
        tile,
    }))
}
