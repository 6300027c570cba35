//! The bundled first-party plugins (`exif`, `watermark`, `notify-rules`) through the host on
//! real inputs written by the tests.

use crate::image_info;
use mediaflow::plugin::types::{JobStatus, MetadataValue, Size};
use mediaflow::plugin::{PluginErrorKind, SourceHandle, inspect::sample_event};
use mediaflow_tests::{
    CANON, bundled_plugin, exif_block, host, jpeg_with_exif, photo_like, png_with_exif,
    webp_with_exif,
};
use std::collections::BTreeMap;

fn entries_map(
    entries: Vec<mediaflow::plugin::types::MetadataEntry>,
) -> BTreeMap<String, MetadataValue> {
    entries.into_iter().map(|e| (e.key, e.value)).collect()
}

#[test]
fn exif_reads_known_fields_from_a_jpeg_and_strips_gps_by_default() {
    let (host, _dir) = host();
    let exif = bundled_plugin(&host, "exif", &[]);
    let jpeg = jpeg_with_exif(&photo_like(320, 240), &exif_block(&CANON));
    let info = image_info("file:///canon.jpg", "jpeg", 240, 320, jpeg.len());
    let m = entries_map(
        exif.extract(&info, &SourceHandle::from_bytes(jpeg))
            .expect("extract"),
    );
    assert_eq!(
        m.get("camera.make"),
        Some(&MetadataValue::Text("Canon".into()))
    );
    assert_eq!(
        m.get("camera.model"),
        Some(&MetadataValue::Text("Canon EOS R5".into()))
    );
    assert_eq!(m.get("orientation"), Some(&MetadataValue::Integer(6)));
    assert_eq!(m.get("exposure.iso"), Some(&MetadataValue::Integer(400)));
    match m.get("exposure.time_s") {
        Some(MetadataValue::Rational(r)) => assert_eq!((r.numerator, r.denominator), (1, 250)),
        other => panic!("exposure.time_s: {other:?}"),
    }
    match m.get("exposure.f_number") {
        Some(MetadataValue::Float(f)) => assert!((f - 2.8).abs() < 1e-9),
        other => panic!("exposure.f_number: {other:?}"),
    }
    match m.get("taken_at") {
        // 2024-06-01 14:30:05 wall clock, +02:00.
        Some(MetadataValue::Timestamp(t)) => {
            assert_eq!(t.seconds, 1_717_252_205);
            assert_eq!(t.utc_offset_minutes, Some(120));
        }
        other => panic!("taken_at: {other:?}"),
    }
    assert!(
        !m.contains_key("gps.position"),
        "GPS must be stripped unless gps = \"keep\""
    );
}

#[test]
fn exif_emits_gps_only_when_configured_to_keep_it() {
    let (host, _dir) = host();
    let exif = bundled_plugin(&host, "exif", &[("gps", "keep")]);
    let jpeg = jpeg_with_exif(&photo_like(64, 64), &exif_block(&CANON));
    let info = image_info("file:///gps.jpg", "jpeg", 64, 64, jpeg.len());
    let m = entries_map(
        exif.extract(&info, &SourceHandle::from_bytes(jpeg))
            .expect("extract"),
    );
    match m.get("gps.position") {
        Some(MetadataValue::Gps(p)) => {
            assert!((p.latitude - CANON.lat).abs() < 1e-5, "lat {}", p.latitude);
            assert!(
                (p.longitude - CANON.lon).abs() < 1e-5,
                "lon {}",
                p.longitude
            );
        }
        other => panic!("gps.position: {other:?}"),
    }
}

#[test]
fn exif_reads_png_webp_and_tiff_containers() {
    let (host, _dir) = host();
    let exif = bundled_plugin(&host, "exif", &[]);
    let block = exif_block(&CANON);
    let img = photo_like(48, 32);
    for (format, bytes) in [
        ("png", png_with_exif(&img, &block)),
        ("webp", webp_with_exif(&img, &block)),
        // A TIFF whose IFD0 carries the tags (the EXIF block is itself TIFF-structured).
        ("tiff", block.clone()),
    ] {
        let info = image_info(&format!("file:///x.{format}"), format, 48, 32, bytes.len());
        let m = entries_map(
            exif.extract(&info, &SourceHandle::from_bytes(bytes))
                .unwrap_or_else(|e| panic!("{format}: {e}")),
        );
        assert_eq!(
            m.get("camera.model"),
            Some(&MetadataValue::Text("Canon EOS R5".into())),
            "{format}"
        );
    }
    // The PNG we wrote is also a PNG the image crate still decodes (chunk CRC right).
    let png = png_with_exif(&img, &block);
    assert!(image::load_from_memory(&png).is_ok());
}

#[test]
fn exif_reads_only_the_header_bytes_of_a_large_jpeg() {
    let (host, _dir) = host();
    let exif = bundled_plugin(&host, "exif", &[]);
    let jpeg = jpeg_with_exif(&photo_like(2000, 1500), &exif_block(&CANON));
    assert!(jpeg.len() > 500_000, "test image is {} bytes", jpeg.len());
    let source = SourceHandle::from_bytes(jpeg.clone());
    let info = image_info("file:///big.jpg", "jpeg", 2000, 1500, jpeg.len());
    let m = entries_map(exif.extract(&info, &source).expect("extract"));
    assert!(m.contains_key("camera.make"));
    assert!(
        source.bytes_served() <= 64 * 1024,
        "read {} of {} bytes",
        source.bytes_served(),
        jpeg.len()
    );

    // No EXIF at all: the walker stops at the frame header, still reading little.
    let plain = mediaflow_tests::encode(&photo_like(2000, 1500), image::ImageFormat::Jpeg);
    let source = SourceHandle::from_bytes(plain.clone());
    let entries = exif
        .extract(
            &image_info("file:///plain.jpg", "jpeg", 2000, 1500, plain.len()),
            &source,
        )
        .expect("extract");
    assert!(entries.is_empty());
    assert!(source.bytes_served() <= 64 * 1024);
}

#[test]
fn exif_reports_a_truncated_exif_segment_as_invalid_input() {
    let (host, _dir) = host();
    let exif = bundled_plugin(&host, "exif", &[]);
    let jpeg = jpeg_with_exif(&photo_like(64, 64), &exif_block(&CANON));
    let cut = jpeg[..60].to_vec();
    let err = exif
        .extract(
            &image_info("file:///cut.jpg", "jpeg", 64, 64, cut.len()),
            &SourceHandle::from_bytes(cut),
        )
        .expect_err("truncated");
    assert!(
        matches!(
            &err.kind,
            PluginErrorKind::Guest {
                code: "invalid_input",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("exif@1.0.0"), "{err}");
}

#[test]
fn watermark_places_text_at_the_anchor_and_scales_with_the_rendition() {
    let (host, _dir) = host();
    let wm = bundled_plugin(
        &host,
        "watermark",
        &[
            ("text", "© mediaflow"),
            ("position", "bottom-right"),
            ("margin", "0.05"),
        ],
    );
    let info = image_info("file:///a.jpg", "jpeg", 1920, 1080, 1000);
    let mut instance = wm.instantiate().expect("instance");
    let big = instance
        .draw(
            &info,
            Size {
                width: 1920,
                height: 1080,
            },
        )
        .expect("draw")
        .expect("overlay");
    let small = instance
        .draw(
            &info,
            Size {
                width: 640,
                height: 360,
            },
        )
        .expect("draw")
        .expect("overlay");
    assert_eq!(
        big.image.pixels.len(),
        (big.image.width * big.image.height * 4) as usize
    );
    // Bottom-right, margin 5% of the shorter side (54 px at 1080p).
    assert_eq!(big.x + big.image.width as i32, 1920 - 54);
    assert_eq!(big.y + big.image.height as i32, 1080 - 54);
    assert!(big.tile.is_none());
    let ratio = big.image.height as f64 / small.image.height as f64;
    assert!(
        (ratio - 3.0).abs() < 0.3,
        "text height scales with the rendition: ratio {ratio}"
    );
    assert!((0.0..=1.0).contains(&big.opacity));
    assert!(
        big.image.pixels.chunks_exact(4).any(|p| p[3] == 255),
        "some opaque ink"
    );
}

#[test]
fn watermark_tiles_and_draws_a_logo() {
    let (host, _dir) = host();
    // A 20x10 opaque red logo.
    let logo = mediaflow_tests::encode(
        &image::RgbImage::from_pixel(20, 10, image::Rgb([255, 0, 0])),
        image::ImageFormat::Png,
    );
    let b64 = {
        use base64_engine::encode;
        encode(&logo)
    };
    let wm = bundled_plugin(
        &host,
        "watermark",
        &[
            ("text", ""),
            ("logo_png_base64", &b64),
            ("logo_size", "0.25"),
            ("tile", "true"),
        ],
    );
    let o = wm
        .draw(
            &image_info("file:///a.png", "png", 800, 600, 1),
            Size {
                width: 800,
                height: 600,
            },
        )
        .expect("draw")
        .expect("overlay");
    assert_eq!(o.image.width, 200, "logo scaled to 25% of the width");
    assert_eq!(o.image.height, 100, "aspect kept");
    assert!(o.tile.is_some());
    let center = ((50 * 200 + 100) * 4) as usize;
    assert_eq!(&o.image.pixels[center..center + 4], &[255, 0, 0, 255]);
}

/// A minimal base64 encoder, so the test does not share the plugin's own.
mod base64_engine {
    pub fn encode(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[test]
fn watermark_refuses_a_bad_position_naming_the_key() {
    let (host, _dir) = host();
    let wm = bundled_plugin(&host, "watermark", &[("position", "upside-down")]);
    let err = wm
        .draw(
            &image_info("file:///a.jpg", "jpeg", 10, 10, 1),
            Size {
                width: 100,
                height: 100,
            },
        )
        .expect_err("bad config");
    assert!(
        matches!(&err.kind, PluginErrorKind::Guest { code: "bad_config", message } if message.contains("position")),
        "{err}"
    );
}

#[test]
fn notify_rules_route_by_status_and_duration() {
    let (host, _dir) = host();
    let rules = bundled_plugin(
        &host,
        "notify-rules",
        &[("slow_ms", "1000"), ("on_retrying", "ops")],
    );
    let mut instance = rules.instantiate().expect("instance");
    let sinks = |n: Vec<mediaflow::plugin::types::Notification>| {
        n.into_iter().map(|n| n.sink).collect::<Vec<_>>()
    };

    let ok = instance
        .evaluate(&sample_event(JobStatus::Succeeded))
        .expect("evaluate");
    assert_eq!(sinks(ok.clone()), vec!["events"]);
    let body: serde_json::Value = serde_json::from_str(&ok[0].body).expect("JSON body");
    assert_eq!(body["status"], "succeeded");
    assert!(
        ok[0]
            .attributes
            .contains(&("status".into(), "succeeded".into()))
    );

    let failed = instance
        .evaluate(&sample_event(JobStatus::Failed))
        .expect("evaluate");
    assert_eq!(sinks(failed.clone()), vec!["alerts"]);
    assert!(
        failed[0]
            .attributes
            .contains(&("error_code".into(), "corrupt_input".into()))
    );
    assert_eq!(
        sinks(
            instance
                .evaluate(&sample_event(JobStatus::Retrying))
                .expect("evaluate")
        ),
        vec!["ops"]
    );

    let mut slow = sample_event(JobStatus::Succeeded);
    slow.duration_ms = 5_000.0;
    assert_eq!(
        sinks(instance.evaluate(&slow).expect("evaluate")),
        vec!["events", "alerts"]
    );
}
