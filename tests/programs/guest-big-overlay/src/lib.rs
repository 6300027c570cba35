//! Hostile guest: a watermarker whose (well-formed) overlay is larger than the rendition it is
//! drawn for — `extra` pixels (config, default 1,000) wider and taller. The host must refuse it.
use mediaflow_plugin_sdk::{MediaInfo, Overlay, PluginError, RgbaImage, Size, config};

#[mediaflow_plugin_sdk::watermarker]
fn draw(_info: MediaInfo, target: Size) -> Result<Option<Overlay>, PluginError> {
    let extra: u32 = config::parse("extra")?.unwrap_or(1_000);
    let (width, height) = (target.width + extra, target.height + extra);
    let image = RgbaImage {
        width,
        height,
        pixels: vec![128; width as usize * height as usize * 4],
    };
    Ok(Some(Overlay {
        image,
        x: 0,
        y: 0,
        opacity: 0.5,
        tile: None,
    }))
}
