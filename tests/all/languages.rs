//! Plugins in other languages, built with their own toolchains and run through the engine:
//! the Python metadata extractor (`examples/plugins/header-facts-py`, componentize-py) inside
//! `mediaflow process`, the JavaScript notification rule (`examples/plugins/status-router-js`,
//! componentize-js) in the plugin host on events of every status and duration, and both
//! through `mediaflow plugin validate`; and the Python and JavaScript examples of the
//! reference pages (`wit/<world>.md`), built and run with `mediaflow plugin run`.
//!
//! The toolchains come from `bash .ci/setup`. A built component is cached under the cargo
//! target directory, keyed by a hash of its sources, the WIT and the tool's version, so only a
//! cold run (or a change) pays for the build; compiled code is cached the same way.

use mediaflow::plugin::catalog::spec_for;
use mediaflow::plugin::descriptor::PluginDescriptor;
use mediaflow::plugin::inspect::{sample_event, status_name};
use mediaflow::plugin::types::{JobError, JobOutput, JobStatus, Notification, PluginUse};
use mediaflow::plugin::{HostConfig, PluginErrorKind, PluginHost, World};
use mediaflow_tests::{CANON, encode, exif_block, jpeg_with_exif, photo_like};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The cargo target directory (the CLI under test lives in `<target>/<profile>/`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_mediaflow-cli"))
        .ancestors()
        .nth(2)
        .expect("target dir")
        .to_path_buf()
}

/// One example plugin and how its toolchain builds it.
struct Example {
    /// Directory under `examples/plugins/`.
    dir: &'static str,
    /// Files of the example that go into the build (hashed for the cache key).
    sources: &'static [&'static str],
    /// `plugin.toml`'s world.
    world: &'static str,
}

const PYTHON: Example = Example {
    dir: "header-facts-py",
    sources: &["app.py", "plugin.toml"],
    world: "metadata-extractor",
};

const JAVASCRIPT: Example = Example {
    dir: "status-router-js",
    sources: &[
        "plugin.js",
        "plugin.toml",
        "package.json",
        "package-lock.json",
    ],
    world: "notification-rule",
};

impl Example {
    fn path(&self) -> PathBuf {
        workspace().join("examples/plugins").join(self.dir)
    }

    fn manifest(&self) -> PluginDescriptor {
        let text = std::fs::read_to_string(self.path().join("plugin.toml")).expect("plugin.toml");
        PluginDescriptor::parse(&text).expect("valid plugin.toml")
    }

    fn is_python(&self) -> bool {
        self.dir == PYTHON.dir
    }

    /// Build the component (or take it from the cache): its path.
    fn build(&self) -> PathBuf {
        build_component(
            self.is_python(),
            &self.path(),
            self.sources,
            self.world,
            self.dir,
        )
    }

    /// The built component, once per test process, with its compiled code in the cache the
    /// tests' engines share (so no test compiles it again).
    fn wasm(&self) -> &'static Path {
        static PY: OnceLock<PathBuf> = OnceLock::new();
        static JS: OnceLock<PathBuf> = OnceLock::new();
        let cell = if self.is_python() { &PY } else { &JS };
        cell.get_or_init(|| {
            let wasm = self.build();
            let bytes = std::fs::read(&wasm).expect("built component");
            let started = Instant::now();
            let plugin = shared_cache_host()
                .load(spec_for(&self.manifest()), &bytes)
                .unwrap_or_else(|e| panic!("loading {}: {e}", self.dir));
            println!(
                "{}: {} in {:.2} s",
                self.dir,
                if plugin.from_cache() {
                    "compiled code loaded from the cache"
                } else {
                    "compiled by wasmtime"
                },
                started.elapsed().as_secs_f64()
            );
            wasm
        })
    }

    /// A `plugins.local` directory: the example's `plugin.toml` beside the built wasm.
    fn install(&self, into: &Path) -> PathBuf {
        let dir = into.join(self.dir);
        std::fs::create_dir_all(&dir).expect("plugin dir");
        std::fs::copy(self.path().join("plugin.toml"), dir.join("plugin.toml")).expect("toml");
        std::fs::copy(self.wasm(), dir.join("plugin.wasm")).expect("wasm");
        dir
    }
}

/// The toolchain's identity, part of the cache key; panics with how to install it.
fn tool_version(python: bool) -> String {
    if python {
        let out = componentize_py(&["--version"])
            .output()
            .expect("running python3");
        assert!(
            out.status.success(),
            "componentize-py is not installed for python3 (bash .ci/setup installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        let package = JAVASCRIPT
            .path()
            .join("node_modules/@bytecodealliance/componentize-js/package.json");
        let text = std::fs::read_to_string(&package).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; componentize-js is installed by `npm ci` in {} (bash .ci/setup does it)",
                package.display(),
                JAVASCRIPT.path().display()
            )
        });
        let json: Value = serde_json::from_str(&text).expect("package.json");
        let node = Command::new("node")
            .arg("--version")
            .output()
            .expect("node (bash .ci/setup installs it)");
        format!(
            "componentize-js {} node {}",
            json["version"].as_str().unwrap_or("?"),
            String::from_utf8_lossy(&node.stdout).trim()
        )
    }
}

/// componentize-js's command line script, as the JavaScript example's `npm ci` installs it.
fn componentize_js() -> PathBuf {
    JAVASCRIPT
        .path()
        .join("node_modules/@bytecodealliance/componentize-js/src/cli.js")
}

/// The build command of `world`'s component from the sources in `src` (`app.py` or
/// `plugin.js`), writing it to `out`, against the WIT the engine writes out (`mediaflow
/// plugin wit DIR`, as the examples' READMEs say to: no engine checkout).
fn toolchain(python: bool, src: &Path, world: &str, out: &Path) -> Command {
    let wit = out.with_extension("wit.d");
    let written = crate::cli::mediaflow(&["plugin", "wit", wit.to_str().expect("utf-8")]);
    assert!(written.status.success(), "{}", crate::cli::text(&written));
    assert_eq!(
        std::fs::read(wit.join("plugin.wit")).expect("written wit"),
        std::fs::read(workspace().join("wit/plugin.wit")).expect("wit"),
        "plugin wit writes the contract as it is in the repository"
    );
    if python {
        let mut c = componentize_py(&["-d"]);
        c.arg(&wit)
            .args(["-w", world, "componentize", "-p"])
            .arg(src)
            .args(["app", "-o"])
            .arg(out);
        c
    } else {
        let mut c = Command::new("node");
        c.current_dir(src)
            .arg(componentize_js())
            .arg("plugin.js")
            .arg("--wit")
            .arg(&wit)
            .args(["-n", world, "-d", "http", "-d", "fetch-event", "-o"])
            .arg(out);
        c
    }
}

/// Build `world`'s component from `sources` in `src` — or take it from the cache under the
/// target directory, keyed by the sources, the WIT and the toolchain's version: its path.
fn build_component(python: bool, src: &Path, sources: &[&str], world: &str, name: &str) -> PathBuf {
    let mut key = Sha256::new();
    key.update(tool_version(python));
    for f in sources {
        key.update(f);
        key.update(std::fs::read(src.join(f)).expect("plugin source"));
    }
    key.update(std::fs::read(workspace().join("wit/plugin.wit")).expect("wit"));
    let key = hex::encode(key.finalize());
    let cache = target_dir().join("lang-plugins");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let wasm = cache.join(format!("{name}-{}.wasm", &key[..16]));
    if wasm.exists() {
        println!("{name}: built component cached at {}", wasm.display());
        return wasm;
    }
    let partial = cache.join(format!("{name}-{}.{}.tmp", &key[..16], std::process::id()));
    let started = Instant::now();
    let out = toolchain(python, src, world, &partial)
        .output()
        .expect("running the toolchain");
    assert!(
        out.status.success() && partial.exists(),
        "building {name} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &wasm).expect("rename built component");
    println!(
        "{name}: built in {:.1} s ({} bytes)",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0)
    );
    wasm
}

/// `componentize-py ARGS` through the same `python3` the tests use for moto.
fn componentize_py(args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.args([
        "-c",
        "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
    ])
    .args(args);
    c
}

/// The compiled-plugin cache of the CLI runs in the tests (`XDG_CACHE_HOME` is
/// `$TMP/mediaflow-cli-test-cache` for them): Python and JS components take seconds to compile,
/// so the engines in these tests compile each once and then load it in milliseconds.
fn shared_cache_host() -> PluginHost {
    PluginHost::new(&HostConfig {
        cache_dir: Some(
            std::env::temp_dir()
                .join("mediaflow-cli-test-cache")
                .join("mediaflow")
                .join("plugins"),
        ),
        ..HostConfig::default()
    })
    .expect("plugin host")
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn python_extractor_runs_in_mediaflow_process_and_its_metadata_lands_in_the_manifest() {
    let dir = tempfile::tempdir().expect("tmp");
    let plugin = PYTHON.install(dir.path());
    let wasm = std::fs::read(PYTHON.wasm()).expect("wasm");

    // A JPEG whose EXIF says "rotate 90°" (the probe reports the displayed size, the header the
    // stored one) and a PNG.
    let jpeg = jpeg_with_exif(&photo_like(320, 200), &exif_block(&CANON));
    let png = encode(&photo_like(90, 60), image::ImageFormat::Png);
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).expect("mkdir");
    std::fs::write(inputs.join("photo.jpg"), &jpeg).expect("write");
    std::fs::write(inputs.join("chart.png"), &png).expect("write");
    let config = dir.path().join("mediaflow.toml");
    std::fs::write(
        &config,
        format!(
            r#"
default_profile = "langs"
[profiles.langs]
renditions = [{{ name = "s", width = 64, format = "png" }}]
metadata = [{{ plugin = "header-facts@^0.1", config = {{ hash_kb = 4 }} }}]
[profiles.strict]
renditions = [{{ name = "s", width = 64, format = "png" }}]
metadata = [{{ plugin = "header-facts@^0.1", config = {{ hash_kb = 0 }} }}]
strict_metadata = true
[plugins]
local = ["{}"]
"#,
            plugin.display()
        ),
    )
    .expect("config");

    let out = dir.path().join("out");
    let process = |out: &Path, profile: &str| {
        let args: Vec<String> = [
            "process".as_ref(),
            inputs.join("photo.jpg").as_os_str(),
            inputs.join("chart.png").as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
            "--profile".as_ref(),
            profile.as_ref(),
        ]
        .iter()
        .map(|a| a.to_str().expect("utf-8").to_string())
        .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::process::run_measured(&args, &[])
    };
    let started = Instant::now();
    let (code, log, _) = process(&out, "langs");
    println!(
        "mediaflow process (2 files) with the Python extractor: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 0, "{log}");

    let manifest = |stem: &str| -> Value {
        let text = std::fs::read_to_string(out.join(stem).join("manifest.json")).expect("manifest");
        serde_json::from_str(&text).expect("manifest JSON")
    };

    let m = manifest("photo");
    assert_eq!(m["status"], "succeeded", "{m:#}");
    let facts = &m["metadata"]["header-facts"];
    assert_eq!(facts["file.bytes"], jpeg.len() as u64, "{facts:#}");
    assert_eq!(facts["header.format"], "jpeg");
    assert_eq!(facts["header.width"], 320);
    assert_eq!(facts["header.height"], 200);
    assert_eq!(
        m["source"]["media"]["width"], 200,
        "probe shows the rotated size"
    );
    assert_eq!(facts["header.matches_probe"], true);
    assert_eq!(facts["jpeg.progressive"], false);
    assert_eq!(facts["jpeg.components"], 3);
    assert_eq!(facts["jpeg.bits_per_sample"], 8);
    // APP1 (EXIF) and the encoder's tables come before the frame header.
    assert!(
        facts["jpeg.segments_before_frame"].as_u64() >= Some(2),
        "{facts:#}"
    );
    assert_eq!(facts["file.sha256_head"], sha256_hex(&jpeg[..4096]));
    assert_eq!(facts["file.sha256_head_bytes"], 4096);
    assert_eq!(facts["file.sha256_head_complete"], true);
    let used = m["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["name"] == "header-facts")
        .unwrap_or_else(|| panic!("header-facts in {:#}", m["plugins"]));
    assert_eq!(used["version"], "0.1.0");
    assert_eq!(used["world"], "metadata-extractor");
    assert_eq!(used["digest"], format!("sha256:{}", sha256_hex(&wasm)));

    let m = manifest("chart");
    assert_eq!(m["status"], "succeeded", "{m:#}");
    let facts = &m["metadata"]["header-facts"];
    assert_eq!(facts["header.format"], "png", "{facts:#}");
    assert_eq!(facts["header.width"], 90);
    assert_eq!(facts["header.height"], 60);
    assert_eq!(facts["header.matches_probe"], true);
    assert_eq!(facts["png.bit_depth"], 8);
    assert_eq!(facts["png.color_type"], "rgb");
    assert_eq!(facts["png.interlaced"], false);
    let head = &png[..png.len().min(4096)];
    assert_eq!(facts["file.sha256_head"], sha256_hex(head));
    assert_eq!(facts["file.sha256_head_bytes"], head.len() as u64);

    // In the host directly: a fresh instance's first call, then calls on the reused instance,
    // each giving the same answer.
    let plugin = shared_cache_host()
        .load(spec_for(&PYTHON.manifest()), &wasm)
        .expect("load");
    let info = crate::image_info("file:///photo.jpg", "jpeg", 200, 320, jpeg.len());
    let source = mediaflow::plugin::SourceHandle::from_bytes(jpeg.clone());
    let t = Instant::now();
    let mut instance = plugin.instantiate().expect("instance");
    let first = instance.extract(&info, &source).expect("extract");
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut reused = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let again = instance.extract(&info, &source).expect("extract");
        reused.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(again, first, "a reused instance answers the same");
    }
    reused.sort_by(f64::total_cmp);
    println!(
        "header-facts: instantiate + first extract {first_ms:.2} ms, reused instance median {:.2} ms",
        reused[reused.len() / 2]
    );

    // With a call budget under its 100 ms reserve, `host.time-left-ms` (WIT 0.1.1) tells the
    // plugin to skip hashing: it still answers, in time, and says the hash is incomplete.
    let hurried = plugin.with_overrides(
        &Default::default(),
        Some(mediaflow::plugin::PluginLimits {
            timeout_ms: 90,
            ..plugin.limits()
        }),
    );
    let entries = hurried.extract(&info, &source).expect("extract in 90 ms");
    let value = |k: &str| {
        entries
            .iter()
            .find(|e| e.key == k)
            .map(|e| mediaflow::pipeline::metadata_json(e.value.clone()))
            .unwrap_or_else(|| panic!("{k} in {entries:?}"))
    };
    assert_eq!(value("file.sha256_head_complete"), false);
    assert_eq!(value("file.sha256_head_bytes"), 0);
    assert_eq!(value("header.width"), 320);

    // A bad configuration is the plugin's typed error (raised in Python), naming the key; with
    // strict metadata the job fails with it and the run exits 1.
    let strict_out = dir.path().join("strict");
    let (code, log, _) = process(&strict_out, "strict");
    assert_eq!(code, 1, "{log}");
    let text = std::fs::read_to_string(strict_out.join("photo").join("manifest.json"))
        .expect("failure manifest");
    let m: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(m["status"], "failed");
    assert_eq!(m["error"]["code"], "plugin_failed", "{m:#}");
    let message = m["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("header-facts@0.1.0")
            && message.contains("bad_config")
            && message.contains("hash_kb"),
        "{message}"
    );
}

fn event(status: JobStatus, duration_ms: f64) -> mediaflow::plugin::types::JobEvent {
    let mut e = sample_event(status);
    e.job_id = format!("job-{}-{}", status_name(status), duration_ms as u64);
    e.duration_ms = duration_ms;
    e.attempt = if status == JobStatus::Retrying { 2 } else { 1 };
    if status == JobStatus::Succeeded {
        e.outputs = vec![JobOutput {
            name: "large".into(),
            uri: "s3://renditions/web/cat.jpg/large.jpg".into(),
            kind: "image".into(),
            format: "jpeg".into(),
            width: 1600,
            height: 1067,
            // Past 2^53 would lose precision as a JSON number; this is a real-world size.
            bytes: 5_000_000_123,
        }];
        e.plugins = vec![PluginUse {
            name: "exif".into(),
            version: "1.0.0".into(),
            digest: "sha256:ab".into(),
        }];
    }
    if status == JobStatus::Retrying {
        e.error = Some(JobError {
            class: "transient".into(),
            code: "storage".into(),
            message: "S3 503".into(),
        });
    }
    e
}

fn attrs(n: &Notification) -> std::collections::BTreeMap<&str, &str> {
    n.attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn javascript_rule_routes_events_by_status_and_duration_to_the_configured_sinks() {
    let wasm = std::fs::read(JAVASCRIPT.wasm()).expect("wasm");
    let host = shared_cache_host();
    let manifest = JAVASCRIPT.manifest();
    let mut spec = spec_for(&manifest);
    spec.config.insert("slow_ms".into(), "1000".into());
    let started = Instant::now();
    let plugin = host.load(spec, &wasm).expect("the JS rule loads");
    println!(
        "status-router: loaded in {:.2} s ({}, {:.0} ms)",
        started.elapsed().as_secs_f64(),
        if plugin.from_cache() {
            "from the on-disk cache"
        } else {
            "compiled now"
        },
        plugin.compile_ms()
    );
    assert_eq!(plugin.world(), World::NotificationRule);
    assert_eq!(plugin.wit_version().to_string(), "0.1.1");

    let mut instance = plugin.instantiate().expect("instance");
    let mut calls = Vec::new();
    for status in [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Retrying,
        JobStatus::DeadLettered,
    ] {
        for duration in [250.0, 4_000.0] {
            let e = event(status, duration);
            let t = Instant::now();
            let got = instance.evaluate(&e).expect("evaluate");
            calls.push(t.elapsed().as_secs_f64() * 1e3);
            let slow = duration > 1000.0;
            let primary = match status {
                JobStatus::Succeeded => "events",
                JobStatus::Failed | JobStatus::DeadLettered => "alerts",
                JobStatus::Retrying => "ops",
            };
            let mut expected = vec![primary];
            if slow && primary != "ops" {
                expected.push("ops");
            }
            let sinks: Vec<&str> = got.iter().map(|n| n.sink.as_str()).collect();
            let name = status_name(status);
            assert_eq!(sinks, expected, "{name} after {duration} ms");

            for n in &got {
                assert!(
                    n.subject.contains(&e.job_id),
                    "{name}: subject {:?}",
                    n.subject
                );
                let body: Value = serde_json::from_str(&n.body)
                    .unwrap_or_else(|err| panic!("{name}: body is JSON ({err}): {}", n.body));
                assert_eq!(body["status"], name);
                assert_eq!(body["job_id"], e.job_id.as_str());
                assert_eq!(body["source"], e.source_uri.as_str());
                assert_eq!(body["duration_ms"], duration);
                assert_eq!(body["slow"], slow);
                assert_eq!(body["slow_ms"], 1000);
                assert_eq!(body["attempt"], e.attempt);
                let a = attrs(n);
                assert_eq!(a.get("status"), Some(&name));
                assert_eq!(a.get("profile"), Some(&"default"));
                assert_eq!(a.get("slow"), Some(&if slow { "true" } else { "false" }));
                assert_eq!(
                    a.get("error_code").copied(),
                    e.error.as_ref().map(|x| x.code.as_str())
                );
                match &e.error {
                    Some(err) => assert_eq!(body["error"]["code"], err.code.as_str()),
                    None => assert!(body["error"].is_null()),
                }
            }
            if let Some(err) = &e.error {
                assert!(
                    got[0].subject.contains(&format!("{name}: {}", err.code)),
                    "{:?}",
                    got[0].subject
                );
            }
            if slow && primary != "ops" {
                assert!(
                    got[1].subject.contains("slow") && got[1].subject.contains("4000 ms"),
                    "{:?}",
                    got[1].subject
                );
            }
            if status == JobStatus::Succeeded {
                let body: Value = serde_json::from_str(&got[0].body).expect("JSON");
                assert_eq!(body["outputs"][0]["name"], "large");
                assert_eq!(body["outputs"][0]["bytes"], 5_000_000_123u64);
                assert_eq!(body["plugins"][0]["name"], "exif");
            }
        }
    }
    calls.sort_by(f64::total_cmp);
    println!(
        "status-router: evaluate on a reused instance, median {:.3} ms, max {:.3} ms ({} calls)",
        calls[calls.len() / 2],
        calls[calls.len() - 1],
        calls.len()
    );

    // Sinks and the threshold come from the profile's config.
    let mut overrides = std::collections::BTreeMap::new();
    overrides.insert("events_sink".to_string(), "audit".to_string());
    overrides.insert("slow_ms".to_string(), "100".to_string());
    let custom = plugin.with_overrides(&overrides, None);
    let got = custom
        .evaluate(&event(JobStatus::Succeeded, 250.0))
        .expect("evaluate");
    let sinks: Vec<&str> = got.iter().map(|n| n.sink.as_str()).collect();
    assert_eq!(sinks, ["audit", "ops"]);

    // A bad threshold is the rule's typed error (thrown in JS), naming the key.
    let mut bad = std::collections::BTreeMap::new();
    bad.insert("slow_ms".to_string(), "\"soon\"".to_string());
    let err = plugin
        .with_overrides(&bad, None)
        .evaluate(&event(JobStatus::Failed, 10.0))
        .expect_err("bad config");
    match &err.kind {
        PluginErrorKind::Guest { code, message } => {
            assert_eq!(*code, "bad_config");
            assert!(message.contains("slow_ms"), "{message}");
        }
        other => panic!("expected a guest bad_config error, got {other:?}"),
    }
}

#[test]
fn plugin_validate_accepts_both_with_their_manifests() {
    for example in [&PYTHON, &JAVASCRIPT] {
        let wasm = example.wasm();
        let toml = example.path().join("plugin.toml");
        let started = Instant::now();
        let out = crate::cli::command()
            .args(["plugin", "validate"])
            .arg(wasm)
            .arg("--manifest")
            .arg(&toml)
            .env("MEDIAFLOW_LOG", "warn")
            .output()
            .expect("mediaflow plugin validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "plugin validate {}: {:.2} s",
            example.dir,
            started.elapsed().as_secs_f64()
        );
        assert!(out.status.success(), "{}: {text}", example.dir);
        let m = example.manifest();
        assert!(
            text.contains(&format!(
                "ok: {}@{} is a {} plugin (mediaflow:plugin@0.1.1)",
                m.name, m.version, example.world
            )),
            "{text}"
        );
    }
}

/// The `lang` example of the reference page of `world` (`wit/<world>.md`).
fn page_example(world: &str, lang: &str) -> String {
    let page = std::fs::read_to_string(workspace().join("wit").join(format!("{world}.md")))
        .expect("reference page");
    page.split(&format!("```{lang}\n"))
        .nth(1)
        .and_then(|block| block.split("```").next())
        .unwrap_or_else(|| panic!("wit/{world}.md has a {lang} example"))
        .to_string()
}

#[test]
fn the_reference_pages_python_and_javascript_examples_build_and_do_what_they_say() {
    let tmp = tempfile::tempdir().expect("tmp");
    let picture = tmp.path().join("sample.png");
    std::fs::write(
        &picture,
        encode(&photo_like(100, 60), image::ImageFormat::Png),
    )
    .expect("png");
    let bytes = std::fs::metadata(&picture).expect("sample").len();
    for world in ["metadata-extractor", "watermarker", "notification-rule"] {
        for (python, lang, file) in [(true, "python", "app.py"), (false, "js", "plugin.js")] {
            let src = tmp.path().join(format!("{world}-{lang}"));
            std::fs::create_dir_all(&src).expect("mkdir");
            std::fs::write(src.join(file), page_example(world, lang)).expect("source");
            let name = format!("page-{world}-{lang}");
            let wasm = build_component(python, &src, &[file], world, &name);
            let mut args = vec!["plugin", "run", wasm.to_str().expect("utf-8")];
            args.extend([picture.to_str().expect("utf-8"), "--json"]);
            if world == "notification-rule" {
                args.extend(["--event", "failed"]);
            }
            let out = crate::cli::command()
                .args(&args)
                .current_dir(&src)
                .output()
                .expect("plugin run");
            let said = crate::cli::text(&out);
            assert!(out.status.success(), "{name}: {said}");
            let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            let file = &doc["files"][0];
            match world {
                "metadata-extractor" => {
                    assert_eq!(file["entries"]["file.bytes"], bytes, "{name}: {doc}")
                }
                "watermarker" => {
                    // A white band a fifth of the width, a twentieth of the height, at the
                    // bottom right, half opaque.
                    let drawn = &file["overlays"][0];
                    let overlay = &drawn["overlay"];
                    let (w, h) = (
                        drawn["width"].as_u64().expect("width"),
                        drawn["height"].as_u64().expect("height"),
                    );
                    let png = src.join(overlay["png"].as_str().expect("overlay png"));
                    let img = image::open(&png).expect("overlay decodes").to_rgba8();
                    assert_eq!(
                        (u64::from(img.width()), u64::from(img.height())),
                        (w / 5, (h / 20).max(1)),
                        "{name}: {doc}"
                    );
                    assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255, 200], "{name}");
                    assert_eq!(
                        (overlay["x"].as_u64(), overlay["y"].as_u64()),
                        (Some(w - w / 5), Some(h - (h / 20).max(1))),
                        "{name}: {doc}"
                    );
                }
                _ => {
                    let sent = &file["notifications"];
                    assert_eq!(sent.as_array().map(Vec::len), Some(1), "{name}: {doc}");
                    assert_eq!(sent[0]["sink"], "alerts", "{name}: {doc}");
                    assert!(
                        sent[0]["subject"]
                            .as_str()
                            .is_some_and(|s| s.starts_with("job failed: ")),
                        "{name}: {doc}"
                    );
                }
            }
        }
    }
}
