//! Turning parsed EXIF fields into typed metadata entries.
//!
//! Keys: `camera.make`, `camera.model`, `lens.make`, `lens.model`, `lens.focal_length_mm`,
//! `exposure.time_s` (rational), `exposure.f_number`, `exposure.iso`, `taken_at`
//! (timestamp), `orientation` (1–8), and with `gps = "keep"`: `gps.position`.

use exif::{Exif, Field, In, Tag, Value};
use mediaflow_plugin_sdk::{GpsPosition, MetadataEntry, PluginError, Timestamp};

/// Entries from a raw EXIF block (TIFF structure).
pub fn entries(raw: Vec<u8>, keep_gps: bool) -> Result<Vec<MetadataEntry>, PluginError> {
    let exif = exif::Reader::new()
        .read_raw(raw)
        .map_err(|e| PluginError::InvalidInput(format!("malformed EXIF: {e}")))?;
    let mut out = Vec::new();
    for (tag, key) in [
        (Tag::Make, "camera.make"),
        (Tag::Model, "camera.model"),
        (Tag::LensMake, "lens.make"),
        (Tag::LensModel, "lens.model"),
    ] {
        if let Some(text) = ascii(&exif, tag) {
            out.push(MetadataEntry::text(key, text));
        }
    }
    if let Some(v) = field(&exif, Tag::ExposureTime).and_then(|f| urational(&f.value, 0)) {
        out.push(MetadataEntry::rational("exposure.time_s", v.0, v.1));
    }
    if let Some(f) = field(&exif, Tag::FNumber).and_then(|f| rational_f64(&f.value, 0)) {
        out.push(MetadataEntry::float("exposure.f_number", f));
    }
    if let Some(iso) = field(&exif, Tag::PhotographicSensitivity).and_then(|f| f.value.get_uint(0))
    {
        out.push(MetadataEntry::integer("exposure.iso", i64::from(iso)));
    }
    if let Some(mm) = field(&exif, Tag::FocalLength).and_then(|f| rational_f64(&f.value, 0)) {
        out.push(MetadataEntry::float("lens.focal_length_mm", mm));
    }
    if let Some(t) = taken_at(&exif) {
        out.push(MetadataEntry::timestamp("taken_at", t));
    }
    if let Some(o) = field(&exif, Tag::Orientation)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
    {
        out.push(MetadataEntry::integer("orientation", i64::from(o)));
    }
    if keep_gps && let Some(p) = gps(&exif) {
        out.push(MetadataEntry::gps("gps.position", p));
    }
    Ok(out)
}

fn field(exif: &Exif, tag: Tag) -> Option<&Field> {
    exif.get_field(tag, In::PRIMARY)
}

fn ascii(exif: &Exif, tag: Tag) -> Option<String> {
    match &field(exif, tag)?.value {
        Value::Ascii(parts) => {
            let text = parts
                .iter()
                .map(|p| String::from_utf8_lossy(p).trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            (!text.is_empty()).then_some(text)
        }
        _ => None,
    }
}

fn urational(v: &Value, i: usize) -> Option<(i64, i64)> {
    match v {
        Value::Rational(r) => r.get(i).map(|r| (i64::from(r.num), i64::from(r.denom))),
        Value::SRational(r) => r.get(i).map(|r| (i64::from(r.num), i64::from(r.denom))),
        _ => None,
    }
}

fn rational_f64(v: &Value, i: usize) -> Option<f64> {
    let (n, d) = urational(v, i)?;
    (d != 0).then(|| n as f64 / d as f64)
}

/// `DateTimeOriginal` ("YYYY:MM:DD HH:MM:SS"), with `OffsetTimeOriginal` ("+HH:MM") if present.
fn taken_at(exif: &Exif) -> Option<Timestamp> {
    let text = ascii(exif, Tag::DateTimeOriginal).or_else(|| ascii(exif, Tag::DateTime))?;
    let b = text.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    let mut t = Timestamp::from_civil(
        i32::try_from(num(0..4)?).ok()?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )?;
    if let Some(off) = ascii(exif, Tag::OffsetTimeOriginal) {
        let sign = match off.as_bytes().first() {
            Some(b'+') => 1i16,
            Some(b'-') => -1i16,
            _ => 0,
        };
        let h = off.get(1..3).and_then(|s| s.parse::<i16>().ok());
        let m = off.get(4..6).and_then(|s| s.parse::<i16>().ok());
        if let (true, Some(h), Some(m)) = (sign != 0, h, m) {
            t.utc_offset_minutes = Some(sign * (h * 60 + m));
        }
    }
    Some(t)
}

fn gps(exif: &Exif) -> Option<GpsPosition> {
    let coord = |value_tag: Tag, ref_tag: Tag, negative: u8| -> Option<f64> {
        let v = &field(exif, value_tag)?.value;
        let deg = rational_f64(v, 0)? + rational_f64(v, 1)? / 60.0 + rational_f64(v, 2)? / 3600.0;
        let r = ascii(exif, ref_tag).unwrap_or_default();
        Some(if r.as_bytes().first() == Some(&negative) {
            -deg
        } else {
            deg
        })
    };
    let latitude = coord(Tag::GPSLatitude, Tag::GPSLatitudeRef, b'S')?;
    let longitude = coord(Tag::GPSLongitude, Tag::GPSLongitudeRef, b'W')?;
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return None;
    }
    let altitude_m = field(exif, Tag::GPSAltitude)
        .and_then(|f| rational_f64(&f.value, 0))
        .map(|a| {
            let below =
                field(exif, Tag::GPSAltitudeRef).and_then(|f| f.value.get_uint(0)) == Some(1);
            if below { -a } else { a }
        });
    Some(GpsPosition {
        latitude,
        longitude,
        altitude_m,
    })
}
