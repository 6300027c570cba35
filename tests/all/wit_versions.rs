//! WIT versioning: the engine speaks `mediaflow:plugin@0.1.1` (an additive bump: `host` gained
//! `time-left-ms`) and still hosts plugins built against the frozen `0.1.0`
//! (`wit/frozen/0.1.0`) with no bindings of their own — wasmtime links their `host@0.1.0`
//! import to the `host@0.1.1` definition and finds their `extractor@0.1.0` export for the
//! `extractor@0.1.1` lookup. A plugin built against a version the engine does not host is
//! refused by name, by the host and by `plugin inspect`/`validate`.

use crate::cli::{mediaflow, text};
use crate::image_info;
use mediaflow::plugin::{
    HOSTED_WIT_VERSIONS, PluginErrorKind, PluginLimits, PluginSpec, SourceHandle, World, inspect,
};
use mediaflow_tests::{encode, guest, host, photo_like, programs};

fn jpeg() -> Vec<u8> {
    encode(&photo_like(32, 24), image::ImageFormat::Jpeg)
}

#[test]
fn the_engine_hosts_0_1_0_and_0_1_1() {
    assert_eq!(HOSTED_WIT_VERSIONS, &["0.1.0", "0.1.1"]);
}

#[test]
fn a_plugin_built_against_0_1_0_loads_is_detected_as_0_1_0_and_works() {
    let (host, _dir) = host();
    let wasm = std::fs::read(programs::WIT_0_1_0).expect("0.1.0 guest");

    // What it is: it imports and exports the 0.1.0 names, not 0.1.1 ones.
    let seen = inspect::inspect(&host, &wasm).expect("inspect");
    assert_eq!(seen.world, Some(World::MetadataExtractor));
    assert_eq!(seen.wit_version.as_deref(), Some("0.1.0"));
    assert!(seen.wit_hosted);
    assert!(
        seen.exports
            .contains(&"mediaflow:plugin/extractor@0.1.0".to_string()),
        "{:?}",
        seen.exports
    );
    for import in [
        "mediaflow:plugin/host@0.1.0",
        "mediaflow:plugin/input@0.1.0",
    ] {
        assert!(
            seen.imports.contains(&import.to_string()),
            "{import} in {:?}",
            seen.imports
        );
    }
    assert!(
        !seen.imports.iter().any(|i| i.contains("@0.1.1")),
        "{:?}",
        seen.imports
    );

    // It loads on the 0.1.1 host and every 0.1.0 import works: input (read, size), host
    // (config, config-keys, log), types.
    let mut spec = PluginSpec::new("old-timer", "1.0.0");
    spec.config.insert("label".into(), "from 2026".into());
    spec.config.insert("other".into(), "x".into());
    spec.expect = Some(World::MetadataExtractor);
    let plugin = guest(&host, programs::WIT_0_1_0, spec).expect("a 0.1.0 plugin loads");
    assert_eq!(plugin.world(), World::MetadataExtractor);
    assert_eq!(plugin.wit_version().to_string(), "0.1.0");
    let bytes = jpeg();
    let info = image_info("file:///old.jpg", "jpeg", 32, 24, bytes.len());
    let entries = plugin
        .extract(&info, &SourceHandle::from_bytes(bytes.clone()))
        .expect("extract on the 0.1.1 host");
    let get = |k: &str| {
        entries
            .iter()
            .find(|e| e.key == k)
            .map(|e| mediaflow::pipeline::metadata_json(e.value.clone()))
            .unwrap_or_else(|| panic!("{k} in {entries:?}"))
    };
    assert_eq!(get("file.magic"), "ffd8ffe0");
    assert_eq!(get("file.bytes"), bytes.len() as u64);
    assert_eq!(get("info.format"), "jpeg");
    assert_eq!(get("config.label"), "from 2026");
    assert_eq!(get("config.keys"), 2);

    // And through the CLI as an author would check it.
    let out = mediaflow(&["plugin", "validate", programs::WIT_0_1_0]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is a metadata-extractor plugin"),
        "{}",
        text(&out)
    );
    let out = mediaflow(&["plugin", "inspect", programs::WIT_0_1_0]);
    assert!(
        text(&out).contains("world:       metadata-extractor (mediaflow:plugin@0.1.0)"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_plugin_built_against_0_1_1_calls_the_new_host_function() {
    let (host, _dir) = host();
    let wasm = std::fs::read(programs::TIME_LEFT).expect("0.1.1 guest");
    let seen = inspect::inspect(&host, &wasm).expect("inspect");
    assert_eq!(seen.wit_version.as_deref(), Some("0.1.1"));
    assert!(
        seen.imports
            .contains(&"mediaflow:plugin/host@0.1.1".to_string()),
        "{:?}",
        seen.imports
    );

    let mut spec = PluginSpec::new("time-left", "0.1.0");
    spec.config.insert("busy_ms".into(), "300".into());
    spec.limits = PluginLimits {
        timeout_ms: 1_000,
        ..PluginLimits::default()
    };
    let plugin = guest(&host, programs::TIME_LEFT, spec).expect("load");
    assert_eq!(plugin.wit_version().to_string(), "0.1.1");
    let info = image_info("file:///x.jpg", "jpeg", 1, 1, 4);
    let mut instance = plugin.instantiate().expect("instance");
    // Each call gets the whole budget again, so both calls report the same shape.
    for call in 0..2 {
        let entries = instance
            .extract(
                &info,
                &SourceHandle::from_bytes(vec![0xFF, 0xD8, 0xFF, 0xD9]),
            )
            .expect("extract");
        let ms = |k: &str| {
            entries
                .iter()
                .find(|e| e.key == k)
                .and_then(|e| match e.value {
                    mediaflow::plugin::types::MetadataValue::Integer(i) => Some(i),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{k} in {entries:?}"))
        };
        let (before, after) = (ms("time_left.before_ms"), ms("time_left.after_ms"));
        assert!(
            (800..=1_000).contains(&before),
            "call {call}: {before} ms left at the start of a 1000 ms call"
        );
        assert!(
            after <= before - 300 && after >= 0,
            "call {call}: {after} ms left after 300 ms busy (started with {before})"
        );
    }
}

/// The 0.1.0 guest with its export renamed to `extractor@0.1.2`: a plugin from a newer patch
/// than this engine knows (same-length rename, so the component stays valid).
fn built_against_0_1_2() -> Vec<u8> {
    let mut wasm = std::fs::read(programs::WIT_0_1_0).expect("0.1.0 guest");
    let from = b"mediaflow:plugin/extractor@0.1.0";
    let to = b"mediaflow:plugin/extractor@0.1.2";
    let mut renamed = 0;
    let mut i = 0;
    while i + from.len() <= wasm.len() {
        if &wasm[i..i + from.len()] == from {
            wasm[i..i + from.len()].copy_from_slice(to);
            renamed += 1;
        }
        i += 1;
    }
    assert!(renamed > 0, "the export name is in the binary");
    wasm
}

#[test]
fn a_plugin_built_against_an_unhosted_version_is_refused_by_name() {
    let (host, dir) = host();
    let wasm = built_against_0_1_2();
    let err = host
        .load(PluginSpec::new("future", "1.0.0"), &wasm)
        .expect_err("0.1.2 is not hosted");
    assert!(
        matches!(err.kind, PluginErrorKind::UnhostedWitVersion { .. }),
        "{err}"
    );
    assert_eq!(err.detail_code(), "unhosted_wit_version");
    let msg = err.to_string();
    assert!(
        msg.contains("mediaflow:plugin@0.1.2") && msg.contains("it hosts 0.1.0, 0.1.1"),
        "{msg}"
    );

    let path = dir.path().join("future.wasm");
    std::fs::write(&path, &wasm).expect("write");
    let path = path.to_str().expect("utf-8");
    let out = mediaflow(&["plugin", "inspect", path]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("metadata-extractor (mediaflow:plugin@0.1.2, not hosted"),
        "{}",
        text(&out)
    );
    let out = mediaflow(&["plugin", "validate", path]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("which this engine does not host"),
        "{}",
        text(&out)
    );
}
