//! Builds the guest programs in `tests/programs/` (well-behaved and hostile) for wasm32-wasip2
//! and exposes each one's path as a constant: `guest-spin` → `programs::SPIN`.

include!("../engine/build/guests.rs");

use std::fmt::Write as _;

fn main() {
    guests::rerun_if_changed(&["tests/programs", "sdk", "wit"]);
    let root = guests::workspace_root();
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("tests/programs"))
        .expect("reading tests/programs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    dirs.sort();
    let packages: Vec<String> = dirs.iter().map(|d| guests::package_name(d)).collect();
    let mut code = String::new();
    for (package, wasm) in guests::build(&packages) {
        let name = package
            .trim_start_matches("guest-")
            .replace('-', "_")
            .to_uppercase();
        writeln!(
            code,
            "/// `tests/programs/{package}` built for wasm32-wasip2."
        )
        .expect("fmt");
        writeln!(
            code,
            "pub const {name}: &str = {:?};",
            wasm.display().to_string()
        )
        .expect("fmt");
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("programs.rs"), code).expect("writing programs.rs");
}
