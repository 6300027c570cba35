//! Builds the first-party plugins (`plugins/*`) for wasm32-wasip2 and embeds them in the
//! engine, so `mediaflow` ships with `exif`, `watermark` and `notify-rules` built in.

include!("build/guests.rs");

use std::fmt::Write as _;

fn main() {
    guests::rerun_if_changed(&["plugins", "sdk", "wit"]);
    let root = guests::workspace_root();
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("plugins"))
        .expect("reading plugins/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").exists() && p.join("plugin.toml").exists())
        .collect();
    dirs.sort();
    let packages: Vec<String> = dirs.iter().map(|d| guests::package_name(d)).collect();
    let built = guests::build(&packages);
    let mut code = String::from("pub(crate) static BUNDLED: &[(&str, &[u8])] = &[\n");
    for (dir, (_, wasm)) in dirs.iter().zip(&built) {
        writeln!(
            code,
            "    (include_str!({:?}), include_bytes!({:?})),",
            dir.join("plugin.toml").display().to_string(),
            wasm.display().to_string()
        )
        .expect("formatting");
    }
    code.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("bundled.rs"), code).expect("writing bundled.rs");
}
