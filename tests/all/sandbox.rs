//! Hostile guests against the sandbox: every escape attempt and runaway fails with a typed
//! error naming the plugin and the limit or capability, and the host keeps serving.

use crate::image_info;
use mediaflow::plugin::types::Size;
use mediaflow::plugin::{
    HostConfig, PluginErrorKind, PluginHost, PluginLimits, PluginSpec, SourceHandle, World,
};
use mediaflow_tests::{bundled_plugin, guest, host, programs};
use std::time::{Duration, Instant};

fn spec(name: &str) -> PluginSpec {
    PluginSpec::new(name, "0.1.0")
}

fn small_source() -> SourceHandle {
    SourceHandle::from_bytes(vec![0xFF, 0xD8, 0xFF, 0xD9])
}

/// After a hostile call, the same host still runs a well-behaved plugin.
fn host_still_serves(host: &PluginHost) {
    let exif = bundled_plugin(host, "exif", &[]);
    let jpeg = mediaflow_tests::encode(
        &mediaflow_tests::photo_like(16, 16),
        image::ImageFormat::Jpeg,
    );
    let info = image_info("file:///ok.jpg", "jpeg", 16, 16, jpeg.len());
    exif.extract(&info, &SourceHandle::from_bytes(jpeg))
        .expect("a good plugin still works after a hostile one");
}

#[test]
fn infinite_loop_stops_within_1_1x_its_deadline() {
    let (host, _dir) = host();
    let mut s = spec("spin");
    s.limits = PluginLimits {
        timeout_ms: 1_000,
        ..PluginLimits::default()
    };
    let plugin = guest(&host, programs::SPIN, s).expect("load");
    let mut instance = plugin.instantiate().expect("instantiate");
    let started = Instant::now();
    let err = instance
        .extract(&image_info("file:///x", "jpeg", 1, 1, 4), &small_source())
        .expect_err("must be stopped");
    let took = started.elapsed();
    assert!(
        matches!(err.kind, PluginErrorKind::Timeout { limit } if limit == Duration::from_secs(1)),
        "{err}"
    );
    assert!(
        err.to_string().contains("spin@0.1.0") && err.to_string().contains("1000 ms"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(1_000),
        "stopped early: {took:?}"
    );
    assert!(
        took <= Duration::from_millis(1_100),
        "stopped late: {took:?}"
    );
    // The same instance handle recovers with a fresh instance: the next call is stopped again
    // (not refused with "cannot enter component instance").
    let again = instance
        .extract(&image_info("file:///x", "jpeg", 1, 1, 4), &small_source())
        .expect_err("still spins");
    assert!(
        matches!(again.kind, PluginErrorKind::Timeout { .. }),
        "{again}"
    );
    host_still_serves(&host);
}

#[test]
fn fuel_budget_stops_a_loop_deterministically() {
    let (host, _dir) = host();
    let mut s = spec("spin");
    s.limits = PluginLimits {
        fuel: Some(5_000_000),
        ..PluginLimits::default()
    };
    let plugin = guest(&host, programs::SPIN, s).expect("load");
    let err = plugin
        .extract(&image_info("file:///x", "jpeg", 1, 1, 4), &small_source())
        .expect_err("out of fuel");
    assert!(
        matches!(
            err.kind,
            PluginErrorKind::FuelExhausted { budget: 5_000_000 }
        ),
        "{err}"
    );
}

#[test]
fn unbounded_memory_growth_hits_the_memory_limit() {
    let (host, _dir) = host();
    let mut s = spec("memory-bomb");
    s.limits = PluginLimits {
        memory_bytes: 64 * 1024 * 1024,
        ..PluginLimits::default()
    };
    let plugin = guest(&host, programs::MEMORY_BOMB, s).expect("load");
    let err = plugin
        .extract(&image_info("file:///x", "jpeg", 1, 1, 4), &small_source())
        .expect_err("must be capped");
    match err.kind {
        PluginErrorKind::MemoryLimit { limit, requested } => {
            assert_eq!(limit, 64 * 1024 * 1024);
            assert!(requested > limit);
        }
        ref other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert!(
        err.to_string().contains("memory limit of 67108864 bytes"),
        "{err}"
    );
    host_still_serves(&host);
}

#[test]
fn deep_recursion_is_a_stack_overflow_trap() {
    let (host, _dir) = host();
    let plugin = guest(&host, programs::DEEP_RECURSION, spec("deep-recursion")).expect("load");
    let err = plugin
        .extract(&image_info("file:///x", "jpeg", 1, 1, 4), &small_source())
        .expect_err("overflow");
    assert!(
        matches!(&err.kind, PluginErrorKind::Trap { reason, .. } if reason.contains("stack overflow")),
        "{err}"
    );
    host_still_serves(&host);
}

#[test]
fn a_panic_is_a_trap_carrying_the_panic_message() {
    let (host, _dir) = host();
    let plugin = guest(&host, programs::PANIC, spec("panicky")).expect("load");
    let err = plugin
        .extract(
            &image_info("file:///doomed.jpg", "jpeg", 1, 1, 4),
            &small_source(),
        )
        .expect_err("trap");
    match &err.kind {
        PluginErrorKind::Trap { stderr, .. } => {
            assert!(
                stderr.contains("deliberate panic while reading file:///doomed.jpg"),
                "stderr: {stderr}"
            )
        }
        other => panic!("expected Trap, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("plugin `panicky@0.1.0` trapped"),
        "{err}"
    );
    host_still_serves(&host);
}

#[test]
fn no_filesystem_reading_etc_passwd_is_denied() {
    let (host, _dir) = host();
    let plugin = guest(&host, programs::FS_ESCAPE, spec("fs-escape")).expect("load");
    let err = plugin
        .extract(&image_info("file:///x", "jpeg", 1, 1, 4), &small_source())
        .expect_err("no filesystem");
    let text = err.to_string();
    assert!(
        text.contains("fs-escape@0.1.0")
            && text.contains("filesystem capability denied: open /etc/passwd"),
        "{text}"
    );
}

#[test]
fn no_environment_host_variables_are_invisible() {
    let (host, _dir) = host();
    let plugin = guest(&host, programs::ENV_PEEK, spec("env-peek")).expect("load");
    assert!(
        std::env::var_os("PATH").is_some(),
        "the host process has an environment to leak"
    );
    let err = plugin
        .extract(&image_info("file:///x", "jpeg", 1, 1, 4), &small_source())
        .expect_err("no env");
    let text = err.to_string();
    assert!(
        text.contains("env-peek@0.1.0") && text.contains("environment capability denied"),
        "{text}"
    );
}

#[test]
fn no_network_connecting_is_denied() {
    let (host, _dir) = host();
    // A listener the guest would reach if the sandbox let it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let plugin = guest(&host, programs::NET_CONNECT, spec("net-connect")).expect("load");
    let info = image_info(&format!("tcp://{addr}"), "jpeg", 1, 1, 4);
    let err = plugin
        .extract(&info, &small_source())
        .expect_err("no network");
    let text = err.to_string();
    assert!(
        text.contains("net-connect@0.1.0") && text.contains("network capability denied"),
        "{text}"
    );
    assert!(
        listener.accept().is_err(),
        "nothing connected to the listener"
    );
}

#[test]
fn a_command_component_is_refused_as_no_known_world() {
    let (host, _dir) = host();
    let err = guest(&host, programs::WRONG_WORLD, spec("wrong-world")).expect_err("refused");
    assert!(
        matches!(&err.kind, PluginErrorKind::UnknownWorld { exports, .. } if exports.contains("wasi:cli/run")),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("implements no known mediaflow world"),
        "{err}"
    );
}

#[test]
fn a_plugin_of_another_world_is_refused_when_a_kind_is_expected() {
    let (host, _dir) = host();
    let mut s = spec("panicky");
    s.expect = Some(World::Watermarker);
    let err = guest(&host, programs::PANIC, s).expect_err("refused");
    assert!(
        matches!(
            err.kind,
            PluginErrorKind::WrongWorld {
                expected: "watermarker",
                found: "metadata-extractor"
            }
        ),
        "{err}"
    );
}

#[test]
fn a_malformed_overlay_is_refused() {
    let (host, _dir) = host();
    let plugin = guest(&host, programs::BAD_OVERLAY, spec("bad-overlay")).expect("load");
    let err = plugin
        .draw(
            &image_info("file:///x", "jpeg", 100, 100, 4),
            Size {
                width: 100,
                height: 100,
            },
        )
        .expect_err("bad output");
    assert!(
        matches!(&err.kind, PluginErrorKind::BadOutput(m) if m.contains("expected 67108864")),
        "{err}"
    );
}

#[test]
fn not_a_component_and_oversized_binaries_are_refused_before_running() {
    let (host, _dir) = host();
    let err = host
        .load(spec("garbage"), b"\0asm\x01\0\0\0")
        .expect_err("core module, not a component");
    assert!(matches!(err.kind, PluginErrorKind::Invalid(_)), "{err}");
    let err = host
        .load(spec("noise"), b"definitely not wasm")
        .expect_err("not wasm");
    assert!(matches!(err.kind, PluginErrorKind::Invalid(_)), "{err}");

    let tiny = PluginHost::new(&HostConfig {
        cache_dir: None,
        max_wasm_bytes: 1024,
        ..HostConfig::default()
    })
    .expect("host");
    let err = tiny
        .load_file(spec("big"), std::path::Path::new(programs::PANIC))
        .expect_err("too large");
    assert!(
        matches!(err.kind, PluginErrorKind::TooLarge { cap: 1024, .. }),
        "{err}"
    );
}

#[test]
fn compiled_plugins_are_cached_on_disk_and_a_corrupt_entry_is_recompiled() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache_dir = dir.path().join("cache");
    let config = HostConfig {
        cache_dir: Some(cache_dir.clone()),
        ..HostConfig::default()
    };
    let wasm = std::fs::read(programs::PANIC).expect("wasm");

    let first = PluginHost::new(&config)
        .expect("host")
        .load(spec("p"), &wasm)
        .expect("load");
    assert!(!first.from_cache());
    let entries: Vec<_> = std::fs::read_dir(&cache_dir)
        .expect("cache dir")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(entries.len(), 1, "one compiled artifact");
    let name = entries[0].file_name().to_string_lossy().to_string();
    assert!(
        name.starts_with(first.digest().trim_start_matches("sha256:")),
        "keyed by digest: {name}"
    );

    // A second engine process (a new host) loads from the cache.
    let second = PluginHost::new(&config)
        .expect("host")
        .load(spec("p"), &wasm)
        .expect("load");
    assert!(second.from_cache());

    // Corrupt the entry: it is dropped and the plugin recompiled, not trusted. (Replaced by
    // rename, as the engine itself writes: compiled code is mmapped, so a file must never be
    // truncated in place under a live plugin.)
    drop(second);
    let garbage = cache_dir.join("garbage.tmp");
    std::fs::write(&garbage, b"garbage").expect("write");
    std::fs::rename(&garbage, entries[0].path()).expect("corrupt");
    let third = PluginHost::new(&config)
        .expect("host")
        .load(spec("p"), &wasm)
        .expect("load");
    assert!(!third.from_cache());
    let err = third
        .extract(&image_info("file:///x", "jpeg", 1, 1, 4), &small_source())
        .expect_err("still the same plugin");
    assert!(matches!(err.kind, PluginErrorKind::Trap { .. }));
}

#[test]
fn a_local_plugin_directory_is_verified_against_its_stated_digest() {
    use mediaflow::plugin::catalog::Catalog;
    let (host, dir) = host();
    let plugin = dir.path().join("slow");
    std::fs::create_dir_all(&plugin).expect("mkdir");
    std::fs::copy(programs::SLOW, plugin.join("plugin.wasm")).expect("copy");
    let bytes = std::fs::read(programs::SLOW).expect("read");
    let digest = mediaflow::plugin::inspect::inspect(&host, &bytes)
        .expect("inspect")
        .sha256;
    let manifest = |sha: &str| {
        format!(
            "name = \"slow\"\nversion = \"0.1.0\"\nworld = \"metadata-extractor\"\nsha256 = \"{sha}\"\n"
        )
    };
    std::fs::write(plugin.join("plugin.toml"), manifest(&digest)).expect("toml");
    let mut catalog = Catalog::default();
    catalog
        .load_local(&host, &plugin)
        .expect("matching digest loads");
    assert!(
        catalog
            .resolve("slow", &semver::VersionReq::parse("^0.1").expect("req"))
            .is_some()
    );
    // Tampered: the manifest's digest no longer matches the wasm.
    std::fs::write(
        plugin.join("plugin.toml"),
        manifest(&format!("sha256:{}", "0".repeat(64))),
    )
    .expect("toml");
    let err = Catalog::default()
        .load_local(&host, &plugin)
        .expect_err("refused");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    // A manifest naming another world is refused at load.
    std::fs::write(
        plugin.join("plugin.toml"),
        "name = \"slow\"\nversion = \"0.1.0\"\nworld = \"watermarker\"\n",
    )
    .expect("toml");
    let err = Catalog::default()
        .load_local(&host, &plugin)
        .expect_err("wrong world");
    assert!(
        matches!(err.kind, PluginErrorKind::WrongWorld { .. }),
        "{err}"
    );
}

/// `kind` names an output bound and its setting.
fn output_limit(kind: &PluginErrorKind) -> Option<&'static str> {
    match kind {
        PluginErrorKind::OutputLimit { setting, .. } => Some(setting),
        _ => None,
    }
}

/// A flooding guest of each world (30 MB of metadata, 100 MB of notifications, an overlay
/// larger than the rendition — all well inside the sandbox's memory) is refused with an error
/// naming the bound and its setting; the same guests within their bounds pass, and the host
/// keeps serving.
#[test]
fn what_a_plugin_returns_is_bounded_in_every_world() {
    let (host, _dir) = host();
    let info = image_info("file:///x.jpg", "jpeg", 100, 100, 4);
    let flood = guest(&host, programs::FLOOD_METADATA, spec("flood-metadata")).expect("load");
    let err = flood
        .extract(&info, &small_source())
        .expect_err("250,000 entries");
    assert_eq!(output_limit(&err.kind), Some("max_entries"), "{err}");
    assert!(
        err.to_string()
            .contains("returned 250000 metadata entries, over its limit of 256"),
        "{err}"
    );
    let mut few = spec("flood-metadata");
    few.config = [("entries", "3"), ("value_bytes", "100000")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let err = guest(&host, programs::FLOOD_METADATA, few.clone())
        .expect("load")
        .extract(&info, &small_source())
        .expect_err("a 100 KB value");
    assert_eq!(output_limit(&err.kind), Some("max_value_bytes"), "{err}");
    few.config.insert("value_bytes".into(), "10".into());
    let entries = guest(&host, programs::FLOOD_METADATA, few)
        .expect("load")
        .extract(&info, &small_source())
        .expect("within bounds");
    assert_eq!(entries.len(), 3);

    let rule = guest(&host, programs::FLOOD_NOTIFY, spec("flood-notify")).expect("load");
    let event = mediaflow::notify::Event::new(
        mediaflow::notify::EventStatus::Succeeded,
        "job-1",
        "s3://b/k.jpg",
        "web",
    )
    .to_wit();
    let err = rule.evaluate(&event).expect_err("1,000 notifications");
    assert_eq!(output_limit(&err.kind), Some("max_notifications"), "{err}");
    let mut one = spec("flood-notify");
    one.config = [("count", "1"), ("body_bytes", "300000")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let err = guest(&host, programs::FLOOD_NOTIFY, one.clone())
        .expect("load")
        .evaluate(&event)
        .expect_err("a 300 KB body: over any SNS/SQS message");
    assert_eq!(output_limit(&err.kind), Some("max_value_bytes"), "{err}");
    one.config.insert("body_bytes".into(), "1000".into());
    let sent = guest(&host, programs::FLOOD_NOTIFY, one)
        .expect("load")
        .evaluate(&event)
        .expect("within bounds");
    assert_eq!(sent.len(), 1);

    let big = guest(&host, programs::BIG_OVERLAY, spec("big-overlay")).expect("load");
    let err = big
        .draw(
            &info,
            Size {
                width: 100,
                height: 80,
            },
        )
        .expect_err("larger than the rendition");
    assert!(
        matches!(&err.kind, PluginErrorKind::BadOutput(m) if m.contains("1100x1080, larger than the 100x80 rendition")),
        "{err}"
    );
    host_still_serves(&host);
}

/// `on_error`: a plugin past its bounds fails the job by default; with `on_error = "skip"`
/// the job succeeds without it — no metadata from the extractor, renditions without the
/// watermark — and the manifest says which plugin was skipped and why.
#[test]
fn a_failing_plugin_fails_the_job_or_is_skipped_and_recorded() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut local = Vec::new();
    for (name, wasm, world) in [
        (
            "flood-metadata",
            programs::FLOOD_METADATA,
            "metadata-extractor",
        ),
        ("big-overlay", programs::BIG_OVERLAY, "watermarker"),
    ] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::copy(wasm, d.join("plugin.wasm")).expect("wasm");
        std::fs::write(
            d.join("plugin.toml"),
            format!("name = \"{name}\"\nversion = \"0.1.0\"\nworld = \"{world}\"\n"),
        )
        .expect("plugin.toml");
        local.push(format!("{:?}", d.display().to_string()));
    }
    let config = crate::process::write(
        dir.path(),
        "config.toml",
        format!(
            r#"
[plugins]
local = [{}]
[profiles.strict]
renditions = [{{ name = "s", width = 40, format = "png" }}]
metadata = [{{ plugin = "flood-metadata" }}]
[profiles.lenient]
renditions = [{{ name = "s", width = 40, format = "png", watermark = true }}]
metadata = [{{ plugin = "flood-metadata", on_error = "skip" }}]
watermark = {{ plugin = "big-overlay", on_error = "skip" }}
"#,
            local.join(", ")
        )
        .as_bytes(),
    );
    let png = mediaflow_tests::encode(
        &mediaflow_tests::photo_like(64, 48),
        image::ImageFormat::Png,
    );
    let input = crate::process::write(dir.path(), "in.png", &png);
    let run = |profile: &str| {
        let out = dir.path().join(profile);
        let (_, text, _) = crate::process::run_measured(
            &[
                "process",
                &input.display().to_string(),
                "--out",
                &out.display().to_string(),
                "--config",
                &config.display().to_string(),
                "--profile",
                profile,
            ],
            &[],
        );
        (crate::process::manifest(&out, "in"), text)
    };
    let (strict, text) = run("strict");
    assert_eq!(strict["status"], "failed", "{text}");
    assert!(
        strict["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limits.max_entries")),
        "{strict}"
    );
    let (lenient, text) = run("lenient");
    assert_eq!(lenient["status"], "succeeded", "{text}");
    assert_eq!(lenient["outputs"].as_array().map(Vec::len), Some(1));
    assert!(lenient["metadata"].get("flood-metadata").is_none());
    let skipped = |name: &str| {
        lenient["plugins"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name))
            .and_then(|p| p["skipped"].as_str())
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(
        skipped("flood-metadata").contains("max_entries"),
        "{lenient}"
    );
    assert!(
        skipped("big-overlay").contains("larger than the"),
        "{lenient}"
    );
}
