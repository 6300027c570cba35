//! Content-aware bitrates (`bitrate = "auto"`): an easy clip (a still picture, slowly panned)
//! and a hard one (temporal noise) through the same H.264 + AV1 ladder, fixed and auto, in
//! one run. Debian's ffprobe/ffmpeg check each rung (codec, size, frames, clean decode), the
//! bitrate the manifest records against the stream's, and PSNR against the source: auto
//! spends far fewer bits than the fixed ladder on the easy clip with the picture still at its
//! quality target, and on the hard one spends up to its cap without a lower PSNR than the
//! fixed ladder. The AV1 rung's rate probe is checked too: its figure in the manifest tells
//! the easy clip from the hard one, and the hard clip's rung is the fixed rung exactly.

use crate::process::run_measured;
use crate::video::{decodes_clean, ffmpeg, manifest, num, probe, stream};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// 360p rungs of both codecs; `{mode}` is `fixed` or `auto`.
const PROFILE: &str = r#"
default_profile = "p"
[profiles.p]
renditions = []
[profiles.p.video]
hls = false
bitrate = "{mode}"
ladder = [
    { size = 360, bitrate_kbps = 1500 },
    { size = 360, bitrate_kbps = 800, codec = "av1" },
]
"#;

/// Y PSNR of `rung` against `src` (same size), as ffmpeg computes it.
fn psnr(rung: &Path, src: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .arg("-i")
        .arg(rung)
        .arg("-i")
        .arg(src)
        .args(["-lavfi", "[0:v][1:v]psnr", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let text = String::from_utf8_lossy(&out.stderr);
    text.split(" y:")
        .last()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no PSNR: {text}"))
}

/// What a run made of one clip's rung: (manifest's rate record, ffprobe's video bit rate,
/// PSNR against the source, the manifest's notes).
struct Rung {
    rate: Value,
    probed_bps: f64,
    psnr: f64,
    notes: String,
}

fn rung(out: &Path, clip: &str, name: &str, src: &Path, codec: &str) -> Rung {
    let m = manifest(out, clip);
    assert_eq!(m["status"], "succeeded", "{clip}: {m}");
    let record = m["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == name && o["format"] == "mp4"))
        .unwrap_or_else(|| panic!("{clip}/{name} in {m}"))
        .clone();
    let path = out.join(clip).join(format!("{name}.mp4"));
    let p = probe(&path);
    let v = stream(&p, "video").expect("video stream");
    assert_eq!(v["codec_name"], codec, "{clip}/{name}");
    assert_eq!((num(&v["width"]), num(&v["height"])), (640.0, 360.0));
    assert_eq!(
        num(&v["nb_read_frames"]),
        100.0,
        "{clip}/{name}: every frame"
    );
    decodes_clean(&path);
    Rung {
        rate: record["rate"].clone(),
        probed_bps: num(&v["bit_rate"]),
        psnr: psnr(&path, src),
        notes: m["notes"].to_string(),
    }
}

#[test]
fn auto_bitrates_spend_little_on_easy_content_and_up_to_the_cap_on_hard_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
    // Easy: a still picture, slowly panned (a slide, a title, a calm shot).
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "mandelbrot=size=960x540:rate=1:end_pts=1,gblur=sigma=1.5",
        "-frames:v",
        "1",
        &d("still.png"),
    ]);
    let (still, easy, hard) = (d("still.png"), d("easy.mp4"), d("hard.mp4"));
    // Lossless, tagged BT.709 (what the rungs are): PSNR then measures the encoders alone.
    let lossless = [
        "-c:v",
        "libx264",
        "-qp",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-colorspace",
        "bt709",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
    ];
    let pan = ["-loop", "1", "-framerate", "25", "-i", &still, "-t", "4"];
    let pan_vf = ["-vf", "crop=640:360:x='t*20':y='t*10'"];
    ffmpeg(&[&pan[..], &pan_vf, &lossless, &[easy.as_str()]].concat());
    // Hard: temporal noise over a moving picture (film grain, a dark phone video).
    let noise = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=4",
    ];
    let noise_vf = ["-vf", "noise=alls=12:allf=t"];
    ffmpeg(&[&noise[..], &noise_vf, &lossless, &[hard.as_str()]].concat());

    for mode in ["fixed", "auto"] {
        std::fs::write(d(&format!("{mode}.toml")), PROFILE.replace("{mode}", mode))
            .expect("config");
        let (code, log, _) = run_measured(
            &[
                "process",
                &easy,
                &hard,
                "--out",
                &d(mode),
                "--config",
                &d(&format!("{mode}.toml")),
            ],
            &[],
        );
        assert_eq!(code, 0, "{mode}: {log}");
    }

    for (name, codec, cap) in [
        ("360p", "h264", 1_500_000.0),
        ("360p-av1", "av1", 800_000.0),
    ] {
        let get = |mode: &str, clip: &str, src: &str| {
            rung(&dir.path().join(mode), clip, name, Path::new(src), codec)
        };
        let (fixed_easy, auto_easy) = (get("fixed", "easy", &easy), get("auto", "easy", &easy));
        let (fixed_hard, auto_hard) = (get("fixed", "hard", &hard), get("auto", "hard", &hard));
        for (what, r, mode) in [
            ("fixed easy", &fixed_easy, "fixed"),
            ("auto easy", &auto_easy, "auto"),
            ("fixed hard", &fixed_hard, "fixed"),
            ("auto hard", &auto_hard, "auto"),
        ] {
            // The manifest says how the bitrate was chosen and what it came to, truly.
            assert_eq!(r.rate["mode"], mode, "{name} {what}: {}", r.rate);
            assert_eq!(num(&r.rate["requested_bps"]), cap, "{name} {what}");
            assert_eq!(
                r.rate.get("quality").and_then(Value::as_u64),
                (mode == "auto").then_some(9),
                "{name} {what}"
            );
            // Only an auto AV1 rung is probed, and every probe ran.
            let probe = r.rate.get("probe_bps").and_then(Value::as_f64);
            assert_eq!(
                probe.is_some(),
                mode == "auto" && codec == "av1",
                "{name} {what}: {}",
                r.rate
            );
            assert!(
                !r.notes.contains("rate probe"),
                "{name} {what}: {}",
                r.notes
            );
            let recorded = num(&r.rate["video_bps"]);
            assert!(
                (recorded / r.probed_bps - 1.0).abs() < 0.05,
                "{name} {what}: manifest {recorded} bit/s, ffprobe {} bit/s",
                r.probed_bps
            );
        }
        let kbps = |r: &Rung| num(&r.rate["video_bps"]) / 1000.0;
        let report = format!(
            "{name}: easy fixed {:.0} kbit/s {:.2} dB, auto {:.0} kbit/s {:.2} dB; \
             hard fixed {:.0} kbit/s {:.2} dB, auto {:.0} kbit/s {:.2} dB",
            kbps(&fixed_easy),
            fixed_easy.psnr,
            kbps(&auto_easy),
            auto_easy.psnr,
            kbps(&fixed_hard),
            fixed_hard.psnr,
            kbps(&auto_hard),
            auto_hard.psnr
        );
        eprintln!("{report}");
        // Easy content: far fewer bits than the fixed ladder, the picture still at the
        // quality target (measured at quality 9: H.264 210 against 947 kbit/s at 45.6 dB,
        // AV1 315 against 708 kbit/s at 54.6 dB — the fixed rungs' extra bits bought dB no eye
        // sees).
        assert!(kbps(&auto_easy) < 0.6 * kbps(&fixed_easy), "{report}");
        assert!(auto_easy.psnr > 42.0, "{report}");
        // Hard content: up to the cap, never a worse picture than the fixed ladder.
        assert!(kbps(&auto_hard) > 2.0 * kbps(&auto_easy), "{report}");
        assert!(
            kbps(&auto_hard) < 1.1 * kbps(&fixed_hard).max(cap / 1000.0),
            "{report}"
        );
        assert!(auto_hard.psnr > fixed_hard.psnr - 0.25, "{report}");
        if codec == "av1" {
            // The probe: the easy clip under its cap at the quality target (encoded at it,
            // capped), the hard one over it (encoded as the fixed rung: the same stream).
            let probe = |r: &Rung| num(&r.rate["probe_bps"]);
            let report = format!(
                "{report}; probe easy {:.0} kbit/s, hard {:.0} kbit/s",
                probe(&auto_easy) / 1000.0,
                probe(&auto_hard) / 1000.0
            );
            assert!(probe(&auto_easy) < 1.1 * cap, "{report}");
            assert!(probe(&auto_hard) > 1.1 * cap, "{report}");
            assert_eq!(auto_hard.psnr, fixed_hard.psnr, "{report}");
            assert_eq!(
                auto_hard.rate["video_bps"], fixed_hard.rate["video_bps"],
                "{report}"
            );
        }
    }
}

/// The rate probe seeks into the source: every container it may meet must let it, or the
/// job says the probe failed. Each clip goes through one auto AV1 rung; the manifest must
/// carry the probe's figure and no note of a failure, and the rung must decode clean with
/// every frame. The WebM lasts 30 s (two sample windows, the second past its middle).
#[test]
fn the_rate_probe_samples_every_container_people_upload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
    let src = |secs: u32| format!("testsrc2=size=320x240:rate=25:duration={secs}");
    let clips = [
        (
            "vp9.webm",
            30,
            vec![
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
            ],
        ),
        (
            "h264.ts",
            6,
            vec!["-c:v", "libx264", "-preset", "ultrafast", "-g", "100"],
        ),
        (
            "rotated.mov",
            6,
            vec![
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-metadata:s:v",
                "rotate=90",
            ],
        ),
    ];
    for (name, secs, codec) in &clips {
        let lavfi = src(*secs);
        ffmpeg(
            &[
                &["-f", "lavfi", "-i", lavfi.as_str()][..],
                codec,
                &[d(name).as_str()],
            ]
            .concat(),
        );
    }
    std::fs::write(
        d("auto.toml"),
        r#"
default_profile = "p"
[profiles.p]
renditions = []
[profiles.p.video]
hls = false
bitrate = "auto"
ladder = [{ size = 240, bitrate_kbps = 300, codec = "av1" }]
"#,
    )
    .expect("config");
    let inputs: Vec<String> = clips.iter().map(|c| d(c.0)).collect();
    let mut args = vec!["process"];
    args.extend(inputs.iter().map(String::as_str));
    let out = d("out");
    args.extend(["--out", out.as_str(), "--config"]);
    let config = d("auto.toml");
    args.push(&config);
    let (code, log, _) = run_measured(&args, &[]);
    assert_eq!(code, 0, "{log}");
    for (name, secs, _) in &clips {
        let stem = name.split('.').next().unwrap_or(name);
        let m = manifest(Path::new(&out), stem);
        assert_eq!(m["status"], "succeeded", "{name}: {m}");
        assert!(
            !m["notes"].to_string().contains("rate probe"),
            "{name}: {m}"
        );
        let rung = m["outputs"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["format"] == "mp4"))
            .unwrap_or_else(|| panic!("{name}: no rung in {m}"));
        let probe_bps = rung["rate"]["probe_bps"].as_f64().unwrap_or(0.0);
        assert!(probe_bps > 10_000.0, "{name}: {}", rung["rate"]);
        let path = Path::new(&out)
            .join(stem)
            .join(format!("{}.mp4", rung["name"].as_str().unwrap_or_default()));
        let p = probe(&path);
        let v = stream(&p, "video").expect("video stream");
        assert_eq!(v["codec_name"], "av1", "{name}");
        assert_eq!(num(&v["nb_read_frames"]), f64::from(secs * 25), "{name}");
        decodes_clean(&path);
    }
}
