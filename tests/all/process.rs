//! `mediaflow process` end to end on generated inputs of every kind: outputs decoded
//! independently (the `image` crate and Debian's ffprobe), manifests checked, hostile inputs
//! refused with the right code while the other files of the same run succeed, and peak memory
//! of the whole run measured from outside.

use mediaflow_tests::{CANON, encode, exif_block, jpeg_with_exif, photo_like};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Exit code, stdout+stderr, and peak RSS (KiB) of `mediaflow-cli ARGS`: the child's own,
/// since its `exec` (it reports its `VmHWM`; see `tests/src/bin/mediaflow-cli.rs`).
#[allow(unsafe_code)] // wait4(2) reaps the child with its rusage (the fallback figure).
pub(crate) fn run_measured(args: &[&str], env: &[(&str, &str)]) -> (i32, String, u64) {
    let peak_file = tempfile::NamedTempFile::new().expect("peak RSS file");
    let mut cmd = crate::cli::command();
    cmd.args(args)
        .env("PEAK_RSS_REPORT_FILE", peak_file.path())
        .env("MEDIAFLOW_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Reaped below with wait4(2), which also reports its peak RSS.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().expect("spawn mediaflow");
    let out = {
        use std::io::Read;
        let mut s = String::new();
        let mut e = String::new();
        let mut so = child.stdout.take().expect("stdout");
        let mut se = child.stderr.take().expect("stderr");
        let t = std::thread::spawn(move || {
            let _ = se.read_to_string(&mut e);
            e
        });
        let _ = so.read_to_string(&mut s);
        s + &t.join().unwrap_or_default()
    };
    // wait4 for this child's own rusage (peak RSS), not the test process's other children.
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 writes it for the pid we spawned and own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: waiting for our own child; the Child handle is not waited on elsewhere.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // wait4's ru_maxrss includes this (test) process's own peak from before the child's exec:
    // only a fallback, when the child could not report (it crashed).
    let peak = std::fs::read_to_string(peak_file.path())
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(usage.ru_maxrss as u64);
    (code, out, peak)
}

pub(crate) fn manifest(out: &Path, dir: &str) -> Value {
    let text = std::fs::read_to_string(out.join(dir).join("manifest.json"))
        .unwrap_or_else(|e| panic!("{dir}/manifest.json: {e}"));
    serde_json::from_str(&text).expect("manifest JSON")
}

pub(crate) fn outputs(m: &Value) -> Vec<(String, u64, u64, String)> {
    m["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap_or_default().to_string(),
                o["width"].as_u64().unwrap_or(0),
                o["height"].as_u64().unwrap_or(0),
                o["uri"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches("file://")
                    .to_string(),
            )
        })
        .collect()
}

/// Dimensions as Debian's ffprobe reads them.
pub(crate) fn ffprobe_size(path: &str) -> (u64, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
            path,
        ])
        .output()
        .expect("ffprobe (installed by .ci/setup)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .trim()
        .split(',')
        .map(|v| v.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write input");
    p
}

fn cmyk_jpeg(w: u16, h: u16) -> Vec<u8> {
    let mut data = Vec::new();
    for y in 0..h {
        for x in 0..w {
            // White (no ink) on the left to full cyan on the right.
            let _ = y;
            data.extend_from_slice(&[(u32::from(x) * 255 / u32::from(w)) as u8, 0, 0, 0]);
        }
    }
    let mut out = Vec::new();
    let enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.encode(&data, w, h, jpeg_encoder::ColorType::Cmyk)
        .expect("CMYK JPEG");
    out
}

fn png16(w: u32, h: u32) -> Vec<u8> {
    let img = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
        image::Rgb([(x * 65535 / w) as u16, (y * 65535 / h) as u16, 30000])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb16(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("16-bit PNG");
    out.into_inner()
}

fn palette_alpha_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
        enc.set_trns(vec![255, 128, 0, 255]);
        let mut writer = enc.write_header().expect("header");
        let data: Vec<u8> = (0..w * h).map(|i| (i % 4) as u8).collect();
        writer.write_image_data(&data).expect("palette data");
    }
    out
}

fn animated_gif(w: u32, h: u32, frames: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
        for f in 0..frames {
            let img =
                image::RgbaImage::from_pixel(w, h, image::Rgba([(f * 80) as u8, 100, 200, 255]));
            enc.encode_frame(image::Frame::new(img)).expect("GIF frame");
        }
    }
    out
}

fn png_header_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&mediaflow_tests::crc32(&ihdr).to_be_bytes());
    // A tiny IDAT that would inflate without end if anyone tried.
    png.extend_from_slice(&[0, 0, 0, 0, b'I', b'D', b'A', b'T', 0x35, 0xAF, 0x06, 0x1E]);
    png
}

fn jpeg_sof_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    jpg.extend_from_slice(&h.to_be_bytes());
    jpg.extend_from_slice(&w.to_be_bytes());
    jpg.extend_from_slice(&[3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]);
    jpg
}

fn gif_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&w.to_le_bytes());
    gif.extend_from_slice(&h.to_le_bytes());
    gif.extend_from_slice(&[0, 0, 0]);
    gif.extend_from_slice(&[0x2C, 0, 0, 0, 0]);
    gif.extend_from_slice(&w.to_le_bytes());
    gif.extend_from_slice(&h.to_le_bytes());
    gif.extend_from_slice(&[0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
    gif
}

const PROFILE: &str = r#"
default_profile = "test"
[profiles.test]
renditions = [
    { name = "w400", width = 400, format = "jpeg", quality = 85 },
    { name = "box300", width = 300, height = 300, format = "png" },
    { name = "sq100", width = 100, height = 100, fit = "cover", format = "webp" },
]
metadata = [{ plugin = "exif@^1" }]
"#;

#[test]
fn every_input_kind_becomes_correct_renditions_and_hostile_ones_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let out = dir.path().join("out");
    let config = write(dir.path(), "mediaflow.toml", PROFILE.as_bytes());

    // Good inputs: (file, display width, display height).
    let good: Vec<(PathBuf, u32, u32)> = vec![
        // Stored 800x600, EXIF orientation 6: displayed 600x800.
        (
            write(
                &input,
                "rotated.jpg",
                &jpeg_with_exif(&photo_like(800, 600), &exif_block(&CANON)),
            ),
            600,
            800,
        ),
        (write(&input, "cmyk.jpg", &cmyk_jpeg(640, 480)), 640, 480),
        (write(&input, "deep.png", &png16(500, 250)), 500, 250),
        (
            write(&input, "palette.png", &palette_alpha_png(256, 128)),
            256,
            128,
        ),
        (
            write(&input, "anim.gif", &animated_gif(120, 90, 3)),
            120,
            90,
        ),
        (
            write(
                &input,
                "photo.webp",
                &encode(&photo_like(320, 200), image::ImageFormat::WebP),
            ),
            320,
            200,
        ),
        (
            write(
                &input,
                "scan.tiff",
                &encode(&photo_like(450, 300), image::ImageFormat::Tiff),
            ),
            450,
            300,
        ),
        (
            write(
                &input,
                "big.jpg",
                &encode(&photo_like(3000, 2000), image::ImageFormat::Jpeg),
            ),
            3000,
            2000,
        ),
        // Regression: a Motion Photo carries an MP4 after the JPEG's end marker; not truncation.
        (
            write(
                &input,
                "motion.jpg",
                &motion_photo(&encode(&photo_like(640, 480), image::ImageFormat::Jpeg)),
            ),
            640,
            480,
        ),
    ];
    let full = jpeg_with_exif(&photo_like(600, 400), &exif_block(&CANON));
    let full_png = encode(&photo_like(300, 200), image::ImageFormat::Png);
    // Hostile inputs: (file, expected error.code).
    let hostile: Vec<(PathBuf, &str)> = vec![
        (write(&input, "empty.jpg", b""), "corrupt_input"),
        (
            write(&input, "cut.jpg", &full[..full.len() / 3]),
            "corrupt_input",
        ),
        (
            write(&input, "cut.png", &full_png[..full_png.len() / 2]),
            "corrupt_input",
        ),
        (
            write(
                &input,
                "noise.jpg",
                &(0..4096u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                    .collect::<Vec<_>>(),
            ),
            "unsupported_format",
        ),
        (
            write(&input, "huge.png", &png_header_claiming(100_000, 100_000)),
            "limit_exceeded",
        ),
        (
            write(&input, "huge.jpg", &jpeg_sof_claiming(65_000, 65_000)),
            "limit_exceeded",
        ),
        (
            write(&input, "huge.gif", &gif_claiming(65_535, 65_535)),
            "limit_exceeded",
        ),
    ];

    let mut args: Vec<String> = vec!["process".into()];
    args.extend(good.iter().map(|g| g.0.display().to_string()));
    args.extend(hostile.iter().map(|h| h.0.display().to_string()));
    args.extend([
        "--out".into(),
        out.display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text, peak_kib) = run_measured(&argv, &[]);
    assert_eq!(code, 1, "some inputs failed → exit 1: {text}");
    assert!(
        text.contains(&format!(
            "{} succeeded, {} failed",
            good.len(),
            hostile.len()
        )),
        "{text}"
    );
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB ≥ 200 MB");

    for (path, w, h) in &good {
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("stem");
        let m = manifest(&out, stem);
        assert_eq!(m["status"], "succeeded", "{stem}: {m}");
        assert_eq!(
            m["source"]["media"]["width"].as_u64(),
            Some(u64::from(*w)),
            "{stem} display width"
        );
        assert_eq!(
            m["source"]["media"]["height"].as_u64(),
            Some(u64::from(*h)),
            "{stem} display height"
        );
        let outs = outputs(&m);
        assert_eq!(outs.len(), 3, "{stem}");
        for (name, ow, oh, file) in &outs {
            // Independent decoders agree with the manifest.
            let decoded =
                image::open(file).unwrap_or_else(|e| panic!("{stem}/{name} decodes: {e}"));
            assert_eq!(
                (u64::from(decoded.width()), u64::from(decoded.height())),
                (*ow, *oh),
                "{stem}/{name} (image crate)"
            );
            assert_eq!(ffprobe_size(file), (*ow, *oh), "{stem}/{name} (ffprobe)");
            let (ew, eh) = expected(name, *w, *h);
            assert_eq!((*ow, *oh), (ew, eh), "{stem}/{name} dimensions");
        }
    }
    // Specific facts.
    let rotated = manifest(&out, "rotated");
    assert_eq!(rotated["metadata"]["exif"]["camera.model"], "Canon EOS R5");
    assert!(
        rotated["metadata"]["exif"].get("gps.position").is_none(),
        "GPS stripped by default"
    );
    assert_eq!(rotated["plugins"][0]["name"], "exif");
    assert!(
        rotated["plugins"][0]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    let anim = manifest(&out, "anim");
    assert_eq!(anim["source"]["media"]["frames"], 3);
    assert!(
        anim["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("first frame")),
        "{anim}"
    );
    // The palette PNG had translucent entries: the PNG output keeps alpha.
    let pal = image::open(out.join("palette/box300.png")).expect("decode");
    assert!(pal.color().has_alpha());
    // The CMYK source came out in colour (cyan→magenta), not inverted or grey.
    let cmyk = image::open(out.join("cmyk/w400.jpg"))
        .expect("decode")
        .to_rgb8();
    let left = cmyk.get_pixel(5, 150);
    assert!(
        left[0] > 200 && left[1] > 200 && left[2] > 200,
        "no ink at the left edge: {left:?}"
    );
    let right = cmyk.get_pixel(395, 150);
    assert!(
        right[0] < 80 && right[2] > 150,
        "cyan at the right edge: {right:?}"
    );
    // Metadata is stripped from outputs: no EXIF APP1 in the JPEG rendition.
    let w400 = std::fs::read(out.join("rotated/w400.jpg")).expect("read");
    assert!(!w400.windows(6).any(|w| w == b"Exif\0\0"), "EXIF stripped");

    for (path, code) in &hostile {
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("stem");
        let m = manifest(&out, stem_for(path, stem));
        assert_eq!(m["status"], "failed", "{}", path.display());
        assert_eq!(
            m["error"]["code"],
            *code,
            "{}: {}",
            path.display(),
            m["error"]
        );
        assert_eq!(m["error"]["class"], "permanent");
        assert!(m["outputs"].as_array().is_some_and(Vec::is_empty));
        if *code == "limit_exceeded" {
            let msg = m["error"]["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains("max_") && msg.chars().any(|c| c.is_ascii_digit()),
                "names the limit and the value: {msg}"
            );
        }
    }
    let report = std::fs::read_to_string(out.join("index.html")).expect("index.html");
    assert!(
        report.contains("9 succeeded, 7 failed"),
        "{}",
        report
            .lines()
            .find(|l| l.contains("class=\"sum\""))
            .unwrap_or_default()
    );
    assert!(report.contains("The file is damaged or incomplete"));
    assert!(report.contains(r#"<img src="rotated/w400.jpg""#));
}

/// A JPEG followed by 200 KB of "video" (an MP4 header, then bytes with no FF D9 in them).
fn motion_photo(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    out.extend_from_slice(b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom");
    out.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 & 0x7F));
    out
}

/// Output folder of a hostile input: stems repeat (cut.jpg, cut.png), so the second is `-2`.
fn stem_for<'a>(path: &Path, stem: &'a str) -> &'a str {
    match path.file_name().and_then(|n| n.to_str()) {
        Some("cut.png") => "cut-2",
        Some("huge.jpg") => "huge-2",
        Some("huge.gif") => "huge-3",
        _ => stem,
    }
}

/// What the test profile should produce from a `w`×`h` display-size source.
fn expected(name: &str, w: u32, h: u32) -> (u64, u64) {
    let (w, h) = (f64::from(w), f64::from(h));
    let round = |v: f64| (v.round() as u64).max(1);
    match name {
        "w400" => {
            let s = (400.0 / w).min(1.0);
            (round(w * s), round(h * s))
        }
        "box300" => {
            let s = (300.0 / w).min(300.0 / h).min(1.0);
            (round(w * s), round(h * s))
        }
        "sq100" => {
            let side = w.min(h).min(100.0);
            (round(side), round(side))
        }
        other => panic!("unknown rendition {other}"),
    }
}

#[test]
fn usage_and_config_errors_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = write(
        dir.path(),
        "a.jpg",
        &encode(&photo_like(64, 64), image::ImageFormat::Jpeg),
    );
    let out = dir.path().join("out");
    let img_s = img.display().to_string();
    let out_s = out.display().to_string();
    let (code, text, _) = run_measured(
        &["process", &img_s, "--out", &out_s, "--profile", "nope"],
        &[],
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("unknown profile \"nope\": the profiles are default, watermarked"),
        "{text}"
    );
    let (code, text, _) = run_measured(
        &[
            "process",
            &img_s,
            "--out",
            &out_s,
            "--profile",
            "watermarkd",
        ],
        &[],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("did you mean \"watermarked\"?"), "{text}");
    // A plugin the engine does not have: what it has instead, where it looked.
    for (wanted, says) in [
        (
            "exif@^9",
            "the loaded versions of `exif` are 1.0.0, and none matches `^9`",
        ),
        (
            "exfi@^1",
            "no plugin named `exfi` is loaded — did you mean `exif`?",
        ),
    ] {
        let cfg = write(
            dir.path(),
            "missing.toml",
            format!("[profiles.default]\nrenditions = [{{ name = \"s\", width = 16, format = \"png\" }}]\nmetadata = [{{ plugin = \"{wanted}\" }}]\n[plugins]\nregistry = \"\"\n").as_bytes(),
        );
        let cfg_s = cfg.display().to_string();
        let (code, text, _) = run_measured(
            &["process", &img_s, "--out", &out_s, "--config", &cfg_s],
            &[],
        );
        assert_eq!(code, 2, "{text}");
        assert!(
            text.contains(&format!(
                "plugin {wanted} (profile \"default\") is not available: {says}"
            )),
            "{text}"
        );
        assert!(
            text.contains("looked in the bundled plugins, no registry (plugins.registry is empty)"),
            "{text}"
        );
    }
    let bad = write(dir.path(), "bad.toml", b"[limits]\nmax_pixels = -5\n");
    let bad_s = bad.display().to_string();
    let (code, text, _) = run_measured(
        &["process", &img_s, "--out", &out_s, "--config", &bad_s],
        &[],
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("bad.toml") && text.contains("max_pixels"),
        "{text}"
    );
    let (code, text, _) = run_measured(
        &["process", &img_s, "--out", &out_s],
        &[("MEDIAFLOW_LIMITS__MAX_PIXELS", "100")],
    );
    assert_eq!(
        code, 1,
        "env override applies: a 64x64 image is over 100 pixels: {text}"
    );
    let m = manifest(&out, "a");
    assert_eq!(m["error"]["code"], "limit_exceeded");
    assert!(
        m["error"]["message"]
            .as_str()
            .is_some_and(|s| s.contains("max_pixels exceeded: 4096 > 100")),
        "{m}"
    );
}

#[test]
fn reprocessing_gives_byte_identical_outputs() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = write(
        dir.path(),
        "p.jpg",
        &jpeg_with_exif(&photo_like(900, 700), &exif_block(&CANON)),
    );
    let img_s = img.display().to_string();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for o in [&a, &b] {
        let o_s = o.display().to_string();
        let (code, text, _) = run_measured(
            &["process", &img_s, "--out", &o_s, "--profile", "watermarked"],
            &[],
        );
        assert_eq!(code, 0, "{text}");
    }
    let ma = manifest(&a, "p");
    let mb = manifest(&b, "p");
    let hashes = |m: &Value| {
        m["outputs"]
            .as_array()
            .map(|o| o.iter().map(|x| x["sha256"].clone()).collect::<Vec<_>>())
    };
    assert_eq!(hashes(&ma), hashes(&mb));
    assert_eq!(ma["plugins"][1]["name"], "watermark", "{ma}");
}

#[test]
fn icc_is_kept_and_exif_only_when_the_profile_keeps_metadata() {
    use image::ImageDecoder;
    let dir = tempfile::tempdir().expect("tmp");
    // A JPEG carrying an ICC profile (APP2) and EXIF with orientation 6.
    let icc: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let img = photo_like(300, 200);
    let mut src = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut src, 90);
    enc.add_icc_profile(&icc).expect("icc");
    enc.add_exif_metadata(&exif_block(&CANON)).expect("exif");
    enc.encode(img.as_raw(), 300, 200, jpeg_encoder::ColorType::Rgb)
        .expect("jpeg");
    let input = write(dir.path(), "icc.jpg", &src);
    let config = write(
        dir.path(),
        "keep.toml",
        br#"
[profiles.keep]
keep_metadata = true
renditions = [{ name = "j", width = 100, format = "jpeg" }, { name = "p", width = 100, format = "png" }]
[profiles.strip]
renditions = [{ name = "j", width = 100, format = "jpeg" }, { name = "p", width = 100, format = "png" }]
"#,
    );
    let input_s = input.display().to_string();
    let config_s = config.display().to_string();
    for profile in ["keep", "strip"] {
        let out = dir.path().join(profile);
        let out_s = out.display().to_string();
        let (code, text, _) = run_measured(
            &[
                "process",
                &input_s,
                "--out",
                &out_s,
                "--config",
                &config_s,
                "--profile",
                profile,
            ],
            &[],
        );
        assert_eq!(code, 0, "{text}");
        for file in ["icc/j.jpg", "icc/p.png"] {
            let path = out.join(file);
            let reader = image::ImageReader::open(&path)
                .expect("open")
                .with_guessed_format()
                .expect("format");
            let mut decoder = reader.into_decoder().expect("decoder");
            assert_eq!(
                decoder.icc_profile().ok().flatten().as_deref(),
                Some(&icc[..]),
                "{profile}/{file}: ICC kept byte for byte"
            );
            let exif = decoder.exif_metadata().ok().flatten();
            if profile == "keep" {
                let exif = exif.unwrap_or_else(|| panic!("{profile}/{file}: EXIF kept"));
                let parsed = exif::Reader::new().read_raw(exif).expect("EXIF parses");
                let orientation = parsed
                    .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
                    .and_then(|f| f.value.get_uint(0));
                assert_eq!(
                    orientation,
                    Some(1),
                    "{profile}/{file}: pixels are upright, so the tag says so"
                );
                let model = parsed
                    .get_field(exif::Tag::Model, exif::In::PRIMARY)
                    .map(|f| f.display_value().to_string());
                assert_eq!(model.as_deref(), Some("\"Canon EOS R5\""));
            } else {
                assert!(exif.is_none(), "{profile}/{file}: EXIF stripped");
            }
        }
        // Upright: 300x200 stored with orientation 6 is 200x300 displayed → 100x150.
        assert_eq!(
            image::image_dimensions(out.join("icc/j.jpg")).expect("dims"),
            (100, 150)
        );
    }
}
