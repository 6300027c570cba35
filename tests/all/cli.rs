//! The `mediaflow plugin` commands as a user runs them: inspect and validate on the three
//! first-party plugins, refusal of each hostile guest, and `plugin new` producing a crate that
//! builds and validates.

use mediaflow::plugin::bundled;
use mediaflow_tests::programs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `mediaflow` command under test, kept off the user's own state: the compiled-plugin
/// cache the tests share, and a data directory of the tests' own (the per-user default would
/// read whatever the user published to their local registry).
pub(crate) fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mediaflow-cli"));
    c.env(
        "XDG_CACHE_HOME",
        std::env::temp_dir().join("mediaflow-cli-test-cache"),
    )
    .env(
        "XDG_DATA_HOME",
        std::env::temp_dir().join("mediaflow-cli-test-data"),
    );
    c
}

/// `mediaflow-cli ARGS` with the shared compile cache, its output captured.
pub(crate) fn mediaflow(args: &[&str]) -> Output {
    command()
        .args(args)
        .env("MEDIAFLOW_LOG", "warn")
        .output()
        .expect("running mediaflow")
}

/// stdout then stderr, as text.
pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Write each bundled plugin's wasm and plugin.toml into `dir`; returns (name, wasm path).
fn export_bundled(dir: &Path) -> Vec<(String, PathBuf)> {
    bundled::all()
        .into_iter()
        .map(|p| {
            let d = dir.join(&p.manifest.name);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("plugin.wasm"), p.wasm).expect("write wasm");
            std::fs::write(d.join("plugin.toml"), p.manifest.to_toml()).expect("write toml");
            (p.manifest.name.clone(), d.join("plugin.wasm"))
        })
        .collect()
}

#[test]
fn inspect_and_validate_accept_all_three_first_party_plugins() {
    let dir = tempfile::tempdir().expect("tmp");
    let plugins = export_bundled(dir.path());
    assert_eq!(plugins.len(), 3);
    for (name, wasm) in plugins {
        let wasm = wasm.to_str().expect("utf-8 path");
        let out = mediaflow(&["plugin", "inspect", wasm]);
        assert!(out.status.success(), "inspect {name}: {}", text(&out));
        let expected_world = match name.as_str() {
            "exif" => "metadata-extractor",
            "watermark" => "watermarker",
            _ => "notification-rule",
        };
        assert!(
            text(&out).contains(&format!(
                "world:       {expected_world} (mediaflow:plugin@0.1.1)"
            )),
            "{}",
            text(&out)
        );
        assert!(
            !text(&out).contains("wasi:http"),
            "no plugin imports wasi:http"
        );

        let out = mediaflow(&["plugin", "inspect", "--json", wasm]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect --json");
        assert_eq!(json["world"], expected_world);
        assert!(json["sha256"].as_str().is_some_and(|s| s.len() == 71));

        let out = mediaflow(&["plugin", "validate", wasm]);
        assert!(out.status.success(), "validate {name}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("ok: {name}@1.0.0 is a {expected_world} plugin")),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn validate_refuses_each_hostile_guest_with_a_clear_message() {
    for (path, expect) in [
        (
            programs::SPIN,
            "exceeded its wall-time limit of 2000 ms and was stopped (raise `limits.timeout_ms`",
        ),
        (
            programs::MEMORY_BOMB,
            "exceeded its memory limit of 134217728 bytes",
        ),
        (programs::DEEP_RECURSION, "stack overflow"),
        (programs::PANIC, "deliberate panic"),
        (programs::WRONG_WORLD, "implements no known mediaflow world"),
        (programs::FS_ESCAPE, "filesystem capability denied"),
        (programs::ENV_PEEK, "environment capability denied"),
        (programs::NET_CONNECT, "network capability denied"),
        (programs::BAD_OVERLAY, "returned malformed output"),
    ] {
        let out = mediaflow(&["plugin", "validate", path]);
        assert_eq!(out.status.code(), Some(1), "{path}: {}", text(&out));
        assert!(
            text(&out).contains("validation failed") && text(&out).contains(expect),
            "{path}: {}",
            text(&out)
        );
        // Advice that cannot be followed in the sandbox is left out.
        assert!(
            !text(&out).contains("RUST_BACKTRACE"),
            "{path}: {}",
            text(&out)
        );
    }
    // Not a component: what it is instead, and how to build one.
    let dir = tempfile::tempdir().expect("tmp");
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let out = mediaflow(&["plugin", "validate", core.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out)
            .contains("is a core WebAssembly module, not a component. Build it for wasm32-wasip2"),
        "{}",
        text(&out)
    );
    let readme = dir.path().join("README.md");
    std::fs::write(&readme, b"# not a plugin\n").expect("write");
    let out = mediaflow(&["plugin", "validate", readme.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("it is not WebAssembly at all (15 bytes starting \"#.not.a.\""),
        "{}",
        text(&out)
    );
    // inspect still describes the wrong-world component rather than failing.
    let out = mediaflow(&["plugin", "inspect", programs::WRONG_WORLD]);
    assert!(
        out.status.success()
            && text(&out).contains("world:       none")
            && text(&out).contains("wasi:cli/run"),
        "{}",
        text(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = mediaflow(&["plugin", "new", "painter", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("unknown plugin kind \"painter\""));
    let out = mediaflow(&["plugin", "validate", "/nonexistent/plugin.wasm"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn plugin_new_scaffolds_a_crate_that_builds_and_validates() {
    let dir = tempfile::tempdir().expect("tmp");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    // Share compiled dependencies with the guest builds.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm-scaffold");
    for (kind, name) in [
        ("metadata-extractor", "my-extractor"),
        ("watermarker", "my-mark"),
        ("notification-rule", "my-rule"),
    ] {
        let crate_dir = dir.path().join(name);
        let out = mediaflow(&[
            "plugin",
            "new",
            kind,
            name,
            "--dir",
            crate_dir.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let build = Command::new(env!("CARGO"))
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .output()
            .expect("cargo build");
        assert!(
            build.status.success(),
            "scaffolded {kind} builds: {}",
            text(&build)
        );
        let wasm = target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let manifest = crate_dir.join("plugin.toml");
        let out = mediaflow(&[
            "plugin",
            "validate",
            wasm.to_str().expect("utf-8"),
            "--manifest",
            manifest.to_str().expect("utf-8"),
        ]);
        assert!(
            out.status.success(),
            "validate scaffolded {kind}: {}",
            text(&out)
        );
        assert!(
            text(&out).contains(&format!("ok: {name}@0.1.0 is a {kind} plugin")),
            "{}",
            text(&out)
        );
    }
}
