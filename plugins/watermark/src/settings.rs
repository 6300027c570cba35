//! The plugin's configuration, parsed and checked once per call.

use mediaflow_plugin_sdk::{PluginError, Size, config};

/// One of the 9 anchor positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// 0 = left, 1 = centre, 2 = right.
    pub col: u8,
    /// 0 = top, 1 = middle, 2 = bottom.
    pub row: u8,
}

impl Anchor {
    pub fn parse(s: &str) -> Option<Anchor> {
        let (row, col) = match s {
            "top-left" => (0, 0),
            "top" => (0, 1),
            "top-right" => (0, 2),
            "left" => (1, 0),
            "center" | "centre" => (1, 1),
            "right" => (1, 2),
            "bottom-left" => (2, 0),
            "bottom" => (2, 1),
            "bottom-right" => (2, 2),
            _ => return None,
        };
        Some(Anchor { col, row })
    }

    /// Top-left corner of a `w`×`h` mark in `target`, `margin` pixels from the edges.
    pub fn place(self, target: Size, w: u32, h: u32, margin: u32) -> (i32, i32) {
        let along = |slot: u8, outer: u32, inner: u32| -> i32 {
            let (outer, inner, margin) = (outer as i64, inner as i64, margin as i64);
            let v = match slot {
                0 => margin,
                1 => (outer - inner) / 2,
                _ => outer - inner - margin,
            };
            v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
        };
        (
            along(self.col, target.width, w),
            along(self.row, target.height, h),
        )
    }
}

pub struct Settings {
    pub text: Option<String>,
    pub logo_png: Option<Vec<u8>>,
    pub position: Anchor,
    pub margin: f32,
    pub opacity: f32,
    pub text_size: f32,
    pub logo_size: f32,
    pub color: [u8; 3],
    pub outline: bool,
    pub tile: bool,
    pub tile_gap: f32,
    pub min_target_width: u32,
}

fn bad(key: &str, problem: impl std::fmt::Display) -> PluginError {
    PluginError::BadConfig(format!("config key `{key}`: {problem}"))
}

fn fraction(key: &str, default: f32, max: f32) -> Result<f32, PluginError> {
    let v = config::parse::<f32>(key)?.unwrap_or(default);
    if !(0.0..=max).contains(&v) || !v.is_finite() {
        return Err(bad(key, format!("{v} is outside 0..={max}")));
    }
    Ok(v)
}

impl Settings {
    pub fn from_config() -> Result<Settings, PluginError> {
        use base64::Engine as _;
        let text = config::get("text")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let logo_png = match config::get("logo_png_base64") {
            Some(b64) if !b64.trim().is_empty() => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| bad("logo_png_base64", format!("not base64: {e}")))?,
            ),
            _ => None,
        };
        if text.is_none() && logo_png.is_none() {
            return Err(PluginError::BadConfig(
                "nothing to draw: set `text` and/or `logo_png_base64`".into(),
            ));
        }
        let position_text = config::get_or("position", "bottom-right");
        let position = Anchor::parse(position_text.trim()).ok_or_else(|| {
            bad("position", format!("{position_text:?} is not one of top-left, top, top-right, left, center, right, bottom-left, bottom, bottom-right"))
        })?;
        let color_text = config::get_or("color", "#ffffff");
        let color = parse_color(&color_text)
            .ok_or_else(|| bad("color", format!("{color_text:?} is not #rrggbb")))?;
        Ok(Settings {
            text,
            logo_png,
            position,
            margin: fraction("margin", 0.03, 0.5)?,
            opacity: fraction("opacity", 0.6, 1.0)?,
            text_size: fraction("text_size", 0.05, 1.0)?,
            logo_size: fraction("logo_size", 0.15, 1.0)?,
            color,
            outline: config::parse::<bool>("outline")?.unwrap_or(true),
            tile: config::parse::<bool>("tile")?.unwrap_or(false),
            tile_gap: fraction("tile_gap", 0.5, 10.0)?,
            min_target_width: config::parse::<u32>("min_target_width")?.unwrap_or(0),
        })
    }

    pub fn margin_px(&self, target: Size) -> u32 {
        (target.width.min(target.height) as f32 * self.margin).round() as u32
    }
}

fn parse_color(s: &str) -> Option<[u8; 3]> {
    let hex = s.trim().strip_prefix('#')?;
    if hex.len() != 6 {
        return None;
    }
    let v = u32::from_str_radix(hex, 16).ok()?;
    Some([(v >> 16) as u8, (v >> 8) as u8, v as u8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_place_marks_with_margins() {
        let t = Size {
            width: 1000,
            height: 500,
        };
        assert_eq!(
            Anchor::parse("bottom-right").map(|a| a.place(t, 100, 50, 10)),
            Some((890, 440))
        );
        assert_eq!(
            Anchor::parse("top-left").map(|a| a.place(t, 100, 50, 10)),
            Some((10, 10))
        );
        assert_eq!(
            Anchor::parse("center").map(|a| a.place(t, 100, 50, 10)),
            Some((450, 225))
        );
        assert!(Anchor::parse("middle-earth").is_none());
    }

    #[test]
    fn colours_parse() {
        assert_eq!(parse_color("#ff8000"), Some([255, 128, 0]));
        assert_eq!(parse_color("red"), None);
    }
}
