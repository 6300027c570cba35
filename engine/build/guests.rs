// Shared by build scripts (engine/build.rs, tests/build.rs) via `include!`: build guest crates
// of this workspace for wasm32-wasip2 with a nested `cargo build`, in a target directory of
// their own so the outer build's lock is never contended.

#[allow(dead_code)]
mod guests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// The workspace root (parent of the crate running this build script).
    pub fn workspace_root() -> PathBuf {
        let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
        manifest.parent().expect("crate is inside the workspace").to_path_buf()
    }

    /// Build `packages` and return `(package, path to .wasm)` for each.
    pub fn build(packages: &[String]) -> Vec<(String, PathBuf)> {
        let root = workspace_root();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("wasm-guests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root)
            .args(["build", "--quiet", "--target", "wasm32-wasip2", "--profile", "wasm-guest", "--target-dir"])
            .arg(&target_dir);
        for p in packages {
            cmd.arg("-p").arg(p);
        }
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd.status().expect("running cargo to build wasm guests");
        assert!(
            status.success(),
            "building wasm32-wasip2 guests {packages:?} failed; is the target installed? \
             (`rustup target add wasm32-wasip2`)"
        );
        packages
            .iter()
            .map(|p| {
                let file = target_dir
                    .join("wasm32-wasip2")
                    .join("wasm-guest")
                    .join(format!("{}.wasm", p.replace('-', "_")));
                assert!(file.exists(), "expected guest output {}", file.display());
                (p.clone(), file)
            })
            .collect()
    }

    /// Rebuild when anything under these workspace-relative paths changes.
    pub fn rerun_if_changed(paths: &[&str]) {
        let root = workspace_root();
        for p in paths {
            println!("cargo:rerun-if-changed={}", root.join(p).display());
        }
    }

    /// `[package] name` of a crate directory's Cargo.toml.
    pub fn package_name(dir: &Path) -> String {
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).expect("reading Cargo.toml");
        text.lines()
            .find_map(|l| {
                let l = l.trim();
                let rest = l.strip_prefix("name")?.trim_start().strip_prefix('=')?;
                Some(rest.trim().trim_matches('"').to_string())
            })
            .expect("package name in Cargo.toml")
    }
}
