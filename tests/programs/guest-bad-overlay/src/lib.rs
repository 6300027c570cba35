//! Hostile guest: a watermarker whose overlay claims more pixels than it carries.
use mediaflow_plugin_sdk::{MediaInfo, Overlay, PluginError, RgbaImage, Size};

#[mediaflow_plugin_sdk::watermarker]
fn draw(_info: MediaInfo, _target: Size) -> Result<Option<Overlay>, PluginError> {
    let image = RgbaImage {
        width: 4096,
        height: 4096,
        pixels: vec![255; 16],
    };
    Ok(Some(Overlay {
        image,
        x: 0,
        y: 0,
        opacity: 1.0,
        tile: None,
    }))
}
