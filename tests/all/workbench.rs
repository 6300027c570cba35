//! The plugin author's loop as an author runs it, on crates `plugin new` scaffolds: `plugin
//! run` on a real file (a metadata extractor's entries, a watermark's overlay PNG and the
//! rendition it was blended into, a rule's notifications), `plugin test` on the scaffolded
//! fixture (passing) and on a broken expectation (failing, naming what differs), and a running
//! worker with the crate in `plugins.local` picking up each saved edit — and keeping the last
//! good build when an edit does not compile.

use crate::cli::text;
use crate::harness::{Workers, config_text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Where scaffolded crates build: shared with the other scaffold builds.
fn scaffold_target() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm-scaffold")
}

/// `mediaflow-cli ARGS` in `dir`, building plugin crates into the shared target.
fn author(dir: &Path, args: &[&str]) -> Output {
    crate::cli::command()
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .env("CARGO", env!("CARGO"))
        .env_remove("RUSTFLAGS")
        .env_remove("MEDIAFLOW_LOG")
        .output()
        .expect("running mediaflow")
}

/// `plugin new KIND NAME` in `dir`; the crate's directory.
fn scaffold(dir: &Path, kind: &str, name: &str) -> PathBuf {
    let out = author(dir, &["plugin", "new", kind, name]);
    assert!(out.status.success(), "{}", text(&out));
    dir.join(name)
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

#[test]
fn plugin_run_shows_what_each_world_returns_on_a_real_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sample = "fixtures/sample.png";

    // A metadata extractor: its entries, with --set over its plugin.toml.
    let meta = scaffold(tmp.path(), "metadata-extractor", "my-meta");
    let out = author(&meta, &["plugin", "run", ".", sample]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("my-meta@0.1.0: a metadata-extractor plugin"),
        "{shown}"
    );
    assert!(
        shown.contains("file.magic  \"89504e470d0a1a0a\""),
        "{shown}"
    );
    let doc = json(&author(
        &meta,
        &[
            "plugin",
            "run",
            ".",
            sample,
            "--set",
            "prefix=img",
            "--json",
        ],
    ));
    let entries = &doc["files"][0]["entries"];
    assert_eq!(entries["img.magic"], "89504e470d0a1a0a", "{doc}");
    let bytes = std::fs::metadata(meta.join(sample)).expect("sample").len();
    assert_eq!(entries["img.bytes"], bytes, "{doc}");
    assert_eq!(doc["files"][0]["status"], "succeeded");
    // The engine's config flag is not the plugin's.
    let out = author(
        &meta,
        &["plugin", "run", ".", sample, "--config", "prefix=x"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--set KEY=VALUE"), "{}", text(&out));

    // A watermarker: the overlay as a PNG, and the rendition it was blended into.
    let mark = scaffold(tmp.path(), "watermarker", "my-mark");
    let doc = json(&author(&mark, &["plugin", "run", ".", sample, "--json"]));
    let drawn = &doc["files"][0]["overlays"][0];
    assert_eq!(
        (drawn["width"].as_u64(), drawn["height"].as_u64()),
        (Some(96), Some(64)),
        "{doc}"
    );
    let overlay = &drawn["overlay"];
    let png = mark.join(overlay["png"].as_str().expect("png path"));
    let img = image::open(&png).expect("overlay png decodes").to_rgba8();
    assert_eq!(
        (img.width(), img.height()),
        (19, 3),
        "the scaffold's bar: a fifth of the width"
    );
    assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255, 200]);
    assert_eq!(overlay["inside"], true);
    let rendition = mark.join("plugin-run/sample/watermarked.png");
    let out_img = image::open(&rendition).expect("rendition").to_rgb8();
    let source = image::open(mark.join(sample)).expect("sample").to_rgb8();
    let (x, y) = (
        overlay["x"].as_u64().expect("x") as u32,
        overlay["y"].as_u64().expect("y") as u32,
    );
    let lighter = |p: [u8; 3], q: [u8; 3]| p.iter().zip(q).all(|(a, b)| *a >= b) && p != q;
    assert!(
        lighter(
            out_img.get_pixel(x + 2, y + 1).0,
            source.get_pixel(x + 2, y + 1).0
        ),
        "the white bar is blended into the rendition"
    );
    assert_eq!(
        out_img.get_pixel(2, 2),
        source.get_pixel(2, 2),
        "and nothing else"
    );

    // A rule: nothing for a success, one notification for a failure.
    let rule = scaffold(tmp.path(), "notification-rule", "my-rule");
    let doc = json(&author(&rule, &["plugin", "run", ".", sample, "--json"]));
    assert_eq!(doc["files"][0]["event_status"], "succeeded");
    assert_eq!(doc["files"][0]["notifications"], serde_json::json!([]));
    let out = author(&rule, &["plugin", "run", ".", sample, "--event", "failed"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("event `failed` → 1 notification(s)"),
        "{shown}"
    );
    assert!(shown.contains("to sink `alerts`: job failed:"), "{shown}");
    // A job's own manifest as the event.
    let manifest = rule.join("plugin-run/sample/manifest.json");
    let doc = json(&author(
        &rule,
        &[
            "plugin",
            "run",
            ".",
            sample,
            "--json",
            "--event",
            manifest.to_str().expect("utf-8"),
        ],
    ));
    assert_eq!(doc["files"][0]["event_status"], "succeeded");
    let out = author(
        &rule,
        &["plugin", "run", ".", sample, "--event", "exploded"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("name a status"), "{}", text(&out));

    // A .wasm named directly runs the same (named after its file without a plugin.toml).
    let wasm = scaffold_target().join("wasm32-wasip2/release/my_meta.wasm");
    let lone = tmp.path().join("lone_meta.wasm");
    std::fs::copy(&wasm, &lone).expect("copy wasm");
    let out = author(
        tmp.path(),
        &[
            "plugin",
            "run",
            "lone_meta.wasm",
            meta.join(sample).to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("lone-meta@0.0.0: a metadata-extractor plugin"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("file.magic"), "{}", text(&out));
}

#[test]
fn plugin_test_passes_the_scaffolded_fixtures_and_names_what_differs() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (kind, name) in [
        ("metadata-extractor", "t-meta"),
        ("watermarker", "t-mark"),
        ("notification-rule", "t-rule"),
    ] {
        let dir = scaffold(tmp.path(), kind, name);
        let out = author(&dir, &["plugin", "test"]);
        assert!(out.status.success(), "{kind}: {}", text(&out));
        assert!(text(&out).contains("ok    sample"), "{}", text(&out));
        assert!(text(&out).contains("1 passed, 0 failed"), "{}", text(&out));
    }
    // Broken expectations fail, each naming what it expected and what came back.
    let meta = tmp.path().join("t-meta");
    std::fs::write(
        meta.join("fixtures/wrong.toml"),
        "input = \"sample.png\"\n[expect]\nentries = { \"file.magic\" = \"ffd8\" }\nkeys = [\"file.mtime\"]\ncount = 5\n",
    )
    .expect("fixture");
    std::fs::write(
        meta.join("fixtures/config.toml"),
        "input = \"sample.png\"\n[config]\nprefix = \"img\"\n[expect]\nkeys = [\"img.magic\", \"img.bytes\"]\nabsent = [\"file.magic\"]\n",
    )
    .expect("fixture");
    let out = author(&meta, &["plugin", "test", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("ok    config"), "{shown}");
    assert!(shown.contains("ok    sample"), "{shown}");
    assert!(shown.contains("FAIL  wrong"), "{shown}");
    assert!(
        shown.contains("entry `file.magic`: expected \"ffd8\", got \"89504e470d0a1a0a\""),
        "{shown}"
    );
    assert!(shown.contains("entry `file.mtime`: missing"), "{shown}");
    assert!(shown.contains("expected 5 entries, got 2"), "{shown}");
    assert!(shown.contains("2 passed, 1 failed"), "{shown}");

    let rule = tmp.path().join("t-rule");
    std::fs::write(
        rule.join("fixtures/quiet.toml"),
        "input = \"sample.png\"\nevent = \"failed\"\n[expect]\nnotifications = []\n",
    )
    .expect("fixture");
    let out = author(&rule, &["plugin", "test", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("expected 0 notification(s), got 1 (to alerts)"),
        "{}",
        text(&out)
    );

    let mark = tmp.path().join("t-mark");
    std::fs::write(
        mark.join("fixtures/narrow.toml"),
        "input = \"sample.png\"\n[expect]\noverlay = { max_width_fraction = 0.1, tiled = true }\n",
    )
    .expect("fixture");
    let out = author(&mark, &["plugin", "test", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("96x64: expected tiled = true, got false"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("is 0.20 of the rendition"),
        "{}",
        text(&out)
    );

    // A fixture that is not one is a usage error naming the file.
    std::fs::write(mark.join("fixtures/typo.toml"), "inptu = \"sample.png\"\n").expect("fixture");
    let out = author(&mark, &["plugin", "test", "."]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("typo.toml"), "{}", text(&out));
}

#[test]
fn a_running_worker_reloads_a_plugin_crate_in_plugins_local_as_it_is_edited() {
    let tmp = tempfile::tempdir().expect("tmp");
    let krate = scaffold(tmp.path(), "metadata-extractor", "live-meta");
    // The profile uses the crate's plugin as `plugin new` says to; no registry.
    let local = format!(
        "[plugins]\nlocal = [\"{}\"]\nregistry = \"\"\n",
        krate.display()
    );
    let workers = Workers::new(
        |dir| {
            config_text(&dir.join("data"), "", &local).replace(
                "format = \"png\" }]\n",
                "format = \"png\" }]\nmetadata = [{ plugin = \"live-meta@^0.1\" }]\n",
            )
        },
        vec![
            (
                "CARGO_TARGET_DIR".into(),
                scaffold_target().display().to_string(),
            ),
            ("CARGO".into(), env!("CARGO").into()),
        ],
    );
    let mut worker = workers.spawn();
    let submit = |name: &str| {
        let p = workers.dir.path().join(name);
        std::fs::copy(krate.join("fixtures/sample.png"), &p).expect("copy");
        let out = workers
            .cmd(&["submit", p.to_str().expect("utf-8")])
            .output()
            .expect("submit");
        assert!(out.status.success(), "{}", text(&out));
    };
    let manifest = |name: &str| -> Option<serde_json::Value> {
        crate::harness::manifests_under(&workers.dir.path().join("data/buckets/renditions"))
            .into_iter()
            .find(|m| {
                m["source"]["uri"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(name))
            })
    };
    let keys = |m: &serde_json::Value| -> Vec<String> {
        m["metadata"]["live-meta"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    submit("one.png");
    workers.wait_until(
        "the first job",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || manifest("one.png").is_some(),
    );
    assert_eq!(
        keys(&manifest("one.png").expect("one")),
        ["file.bytes", "file.magic"]
    );

    // An edit that does not compile: the worker says so and keeps the last good build.
    let lib = krate.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).expect("lib.rs");
    std::fs::write(
        &lib,
        source.replace("Ok(vec![", "Ok(vec![ this is not rust"),
    )
    .expect("edit");
    workers.wait_until(
        "the failed rebuild logged",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || workers.logs().contains("plugins.local: not reloaded"),
    );
    submit("two.png");
    workers.wait_until(
        "the second job",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || manifest("two.png").is_some(),
    );
    let two = manifest("two.png").expect("two");
    assert_eq!(two["status"], "succeeded", "{two}");
    assert_eq!(keys(&two), ["file.bytes", "file.magic"]);

    // A good edit is built and loaded: the next job has the new entry, no publish needed.
    std::fs::write(
        &lib,
        source.replace("\"{prefix}.magic\"", "\"{prefix}.signature\""),
    )
    .expect("edit");
    workers.wait_until(
        "the reload",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || workers.logs().contains("plugins.local: reloaded"),
    );
    submit("three.png");
    workers.wait_until(
        "the third job",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || manifest("three.png").is_some(),
    );
    assert_eq!(
        keys(&manifest("three.png").expect("three")),
        ["file.bytes", "file.signature"]
    );
    crate::harness::signal(&worker, libc::SIGTERM);
    let status = worker.wait().expect("worker exits");
    assert!(status.success(), "{}", workers.logs());
}

#[test]
fn the_readme_sample_plugin_builds_without_warnings_and_runs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    // The block after "The whole plugin is one function:".
    let sample = readme
        .split("The whole plugin is one function:")
        .nth(1)
        .and_then(|rest| rest.split("```rust\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("the README's sample plugin");
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = scaffold(tmp.path(), "metadata-extractor", "readme-sample");
    std::fs::write(dir.join("src/lib.rs"), sample).expect("lib.rs");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo build");
    assert!(build.status.success(), "{}", text(&build));
    let said = String::from_utf8_lossy(&build.stderr);
    assert!(
        !said.contains("warning"),
        "the README's sample builds cleanly:\n{said}"
    );
    let doc = json(&author(
        &dir,
        &["plugin", "run", ".", "fixtures/sample.png", "--json"],
    ));
    assert_eq!(doc["files"][0]["entries"]["file.is_png"], true, "{doc}");
}

/// The `sh` or `toml` block of README.md that follows `after`.
fn readme_block(after: &str, lang: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    readme
        .split(after)
        .nth(1)
        .and_then(|rest| rest.split(&format!("```{lang}\n")).nth(1))
        .and_then(|block| block.split("```").next())
        .unwrap_or_else(|| panic!("README.md: a {lang} block after {after:?}"))
        .to_string()
}

#[test]
fn the_readme_author_path_works_as_written_from_any_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (work, elsewhere, photos, bin) = (
        tmp.path().join("work"),
        tmp.path().join("elsewhere"),
        tmp.path().join("photos"),
        tmp.path().join("bin"),
    );
    for d in [&work, &elsewhere, &photos, &bin] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mediaflow-cli"), bin.join("mediaflow"))
        .expect("mediaflow on PATH");
    // The "photo of the user's own" the README runs the plugin on: a HEIC, as phones write.
    let png = photos.join("photo.png");
    std::fs::write(
        &png,
        mediaflow_tests::encode(
            &mediaflow_tests::photo_like(64, 48),
            image::ImageFormat::Png,
        ),
    )
    .expect("png");
    let heic = photos.join("IMG_0001.HEIC");
    let made = Command::new("heif-enc")
        .arg(&png)
        .arg("-o")
        .arg(&heic)
        .output()
        .expect("heif-enc (bash .ci/setup installs it)");
    assert!(made.status.success(), "{}", text(&made));

    // The README's commands as written, but for the user's photo (here under $PHOTOS), the
    // crate's build going to the tests' shared target directory (linked as its `target/`) …
    let steps =
        readme_block("### From nothing to a plugin in use", "sh").replace("~/photos/", "$PHOTOS/");
    // … then used from another directory, with the README's profile in a config there.
    std::fs::write(
        elsewhere.join("mediaflow.toml"),
        readme_block("Then name it in a profile", "toml"),
    )
    .expect("config");
    let script = format!(
        r#"set -euo pipefail
cargo() {{ command cargo "$@"; ln -sfn "$CARGO_TARGET_DIR" target; }}
cd "$WORK"
{steps}
cd "$ELSEWHERE"
mediaflow plugin list --config mediaflow.toml
mediaflow process "$PHOTOS/IMG_0001.HEIC" --config mediaflow.toml --profile web --out out
"#
    );
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.clone()];
    paths.extend(std::env::split_paths(&path));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", std::env::join_paths(paths).expect("PATH"))
        .env("WORK", &work)
        .env("ELSEWHERE", &elsewhere)
        .env("PHOTOS", &photos)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .env_remove("RUSTFLAGS")
        .env_remove("MEDIAFLOW_CONFIG")
        .env("XDG_DATA_HOME", tmp.path().join("data"))
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("mediaflow-cli-test-cache"),
        )
        .env("MEDIAFLOW_LOG", "warn")
        .output()
        .expect("bash");
    let said = text(&out);
    assert!(out.status.success(), "{script}\n{said}");
    // Published into the per-user registry, and found there from the other directory.
    assert!(
        tmp.path()
            .join("data/mediaflow/buckets/renditions/plugins/my-plugin")
            .is_dir(),
        "{said}"
    );
    assert!(
        said.lines()
            .any(|l| l.contains("web") && l.ends_with("-> my-plugin@0.1.0 (registry)")),
        "plugin list from elsewhere resolves the profile's plugin:\n{said}"
    );
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(elsewhere.join("out/IMG_0001/manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(m["status"], "succeeded", "{m}");
    assert_eq!(m["plugins"][0]["name"], "my-plugin", "{m}");
    assert_eq!(m["plugins"][0]["version"], "0.1.0", "{m}");
    assert!(
        m["metadata"]["my-plugin"]
            .as_object()
            .is_some_and(|e| !e.is_empty()),
        "the plugin's entries are in the manifest: {m}"
    );
}
