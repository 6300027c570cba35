//! Builds the FFmpeg mediaflow links: FFmpeg's pristine source (carried by the `ffmpeg-src`
//! crate, which unpacks it into its own build directory) configured from nothing up —
//! `--disable-everything`, then only the demuxers, decoders, parsers and filters listed
//! below — LGPL only (no `--enable-gpl`, no `--enable-nonfree`, no library found by
//! autodetection), static, with assembly (nasm), threads, zlib, the system's libdav1d
//! (BSD-2) to decode AV1 and its SVT-AV1 (BSD-2-Clause-Patent) to encode it. Then bindgen
//! writes the bindings for the headers it installed.
//!
//! Needs: a C compiler, make, nasm, pkg-config, libdav1d-dev, libsvtav1enc-dev, zlib1g-dev and
//! libclang-dev (bindgen); `.ci/setup` and `deploy/Dockerfile` install them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Containers we read.
const DEMUXERS: &[&str] = &["mov", "matroska", "mpegts", "avi"];
/// Video and audio decoders (AV1 through libdav1d: FFmpeg's own AV1 decoder needs hardware).
const DECODERS: &[&str] = &[
    // video
    "h264",
    "hevc",
    "vp8",
    "vp9",
    "libdav1d",
    "mpeg4",
    "h263",
    "msmpeg4v3",
    "mpeg1video",
    "mpeg2video",
    "mjpeg",
    "prores",
    "dnxhd",
    "dvvideo",
    // audio
    "aac",
    "aac_latm",
    "mp3float",
    "mp2float",
    "opus",
    "vorbis",
    "flac",
    "alac",
    "ac3",
    "eac3",
    "pcm_s16le",
    "pcm_s16be",
    "pcm_s24le",
    "pcm_s24be",
    "pcm_s32le",
    "pcm_s32be",
    "pcm_f32le",
    "pcm_f32be",
    "pcm_s8",
    "pcm_u8",
    "pcm_alaw",
    "pcm_mulaw",
    "adpcm_ima_qt",
];
/// Parsers the demuxers lean on to split and describe streams.
const PARSERS: &[&str] = &[
    "h264",
    "hevc",
    "vp8",
    "vp9",
    "av1",
    "mpeg4video",
    "mpegvideo",
    "mjpeg",
    "dnxhd",
    "aac",
    "aac_latm",
    "ac3",
    "mpegaudio",
    "opus",
    "vorbis",
    "flac",
];
/// Deinterlacing (both LGPL) and the graph ends.
const FILTERS: &[&str] = &["buffer", "buffersink", "bwdif", "yadif", "format"];
/// Audio that is not AAC is re-encoded with FFmpeg's own (LGPL) AAC-LC encoder; AV1 rungs are
/// encoded by the system's SVT-AV1 (BSD-2-Clause-Patent) through FFmpeg's wrapper.
const ENCODERS: &[&str] = &["aac", "libsvtav1"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let source = ffmpeg_source();
    let prefix = shared_prefix(&out, &source);
    let config = configure_args(&prefix);
    let complete = prefix.join("complete");
    if !complete.exists() {
        if prefix.exists() {
            std::fs::remove_dir_all(&prefix).expect("clean an unfinished FFmpeg build");
        }
        build(&source, &prefix.join("build"), &config);
        std::fs::remove_dir_all(prefix.join("build")).expect("remove FFmpeg's objects");
        std::fs::write(&complete, config.join("\n")).expect("write stamp");
    }
    link(&prefix);
    bindings(&prefix, &out);
    println!("cargo:root={}", prefix.display());
}

/// Where the build is installed: beside the profile's build directories, named by what it is
/// built from (source tree, configuration, compiler), so `cargo clippy` and `cargo test` — whose
/// build scripts run in different `OUT_DIR`s for a workspace crate — build FFmpeg once, not
/// twice (seven minutes each on two cores). Cargo's lock on the target directory keeps two
/// builds from writing it at once; the `complete` stamp is written last.
fn shared_prefix(out: &Path, source: &Path) -> PathBuf {
    let mut key = format!(
        "{}\n{}",
        source.display(),
        configure_args(Path::new("")).join("\n")
    );
    key.push_str(&std::env::var("CFLAGS").unwrap_or_default());
    // FNV-1a: stable across compilers, unlike std's hasher.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let profile_dir = out.ancestors().nth(3).expect("OUT_DIR has the usual depth");
    profile_dir.join(format!("ffmpeg-{hash:016x}"))
}

/// The source tree `ffmpeg-src` unpacked: its build script reports `<out>/sdk` as its root
/// and leaves the sources beside it in `<out>/sources/ffmpeg`.
fn ffmpeg_source() -> PathBuf {
    let root = std::env::var_os("DEP_FFMPEG_SRC_ROOT")
        .map(PathBuf::from)
        .expect("ffmpeg-src reports its root (DEP_FFMPEG_SRC_ROOT)");
    let source = root
        .parent()
        .map(|p| p.join("sources/ffmpeg"))
        .expect("ffmpeg-src root has a parent");
    assert!(
        source.join("configure").exists(),
        "FFmpeg sources not found at {} (ffmpeg-src's layout changed?)",
        source.display()
    );
    source
}

fn configure_args(prefix: &Path) -> Vec<String> {
    let list = |kind: &str, names: &[&str]| format!("--enable-{kind}={}", names.join(","));
    let mut args: Vec<String> = [
        "--disable-everything",
        "--disable-autodetect",
        "--disable-programs",
        "--disable-doc",
        "--disable-debug",
        "--disable-network",
        "--disable-avdevice",
        "--enable-static",
        "--disable-shared",
        "--enable-pic",
        "--enable-pthreads",
        "--enable-zlib",
        "--enable-libdav1d",
        "--enable-libsvtav1",
        "--enable-avcodec",
        "--enable-avformat",
        "--enable-avfilter",
        "--enable-swscale",
        "--enable-swresample",
        "--enable-protocol=file",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    args.push(list("demuxer", DEMUXERS));
    args.push(list("decoder", DECODERS));
    args.push(list("parser", PARSERS));
    args.push(list("filter", FILTERS));
    args.push(list("encoder", ENCODERS));
    args.push(format!("--prefix={}", prefix.display()));
    if let Ok(cc) = std::env::var("CC") {
        args.push(format!("--cc={cc}"));
    }
    args
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

fn build(source: &Path, build: &Path, config: &[String]) {
    if build.exists() {
        std::fs::remove_dir_all(build).expect("clean FFmpeg build dir");
    }
    std::fs::create_dir_all(build).expect("FFmpeg build dir");
    run(Command::new("sh")
        .arg(source.join("configure"))
        .args(config)
        .current_dir(build));
    let jobs = std::env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
    run(Command::new("make")
        .arg(format!("-j{jobs}"))
        .current_dir(build));
    run(Command::new("make")
        .args(["install-libs", "install-headers"])
        .current_dir(build));
}

fn link(prefix: &Path) {
    println!(
        "cargo:rustc-link-search=native={}",
        prefix.join("lib").display()
    );
    // Dependents before dependencies, as a static link wants them.
    for lib in [
        "avfilter",
        "avformat",
        "avcodec",
        "swscale",
        "swresample",
        "avutil",
    ] {
        println!("cargo:rustc-link-lib=static={lib}");
    }
    let system = [pkg_config_libs("dav1d"), pkg_config_libs("SvtAv1Enc")].concat();
    for flag in system {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        }
    }
    for lib in ["z", "m", "pthread"] {
        println!("cargo:rustc-link-lib={lib}");
    }
}

fn pkg_config_libs(name: &str) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(["--libs", name])
        .output()
        .unwrap_or_else(|e| panic!("pkg-config --libs {name}: {e} (install pkg-config)"));
    assert!(
        out.status.success(),
        "pkg-config finds no {name}: install its -dev package ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn bindings(prefix: &Path, out: &Path) {
    let include = prefix.join("include");
    bindgen::Builder::default()
        .header("src/wrapper.h")
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_function("(av|avutil|avcodec|avformat|avfilter|sws|swscale|swr|swresample)_.*")
        .allowlist_type("(AV|Sws|Swr).*")
        .allowlist_var("(AV|FF|SWS|SWR|LIBAV).*")
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen over FFmpeg's headers")
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings");
}
