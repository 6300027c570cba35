//! AV1 rungs beside H.264 ones, from one decode: each checked by Debian's ffprobe/ffmpeg
//! (codec, profile, size, frame count, duration, audio, keyframes on the shared grid, clean
//! decode), the manifest naming each output's codec, the HLS master listing both codec groups
//! with `CODECS` strings that match the streams, and the HTML report in Chromium playing AV1.

use crate::process::run_measured;
use crate::video::{decodes_clean, ffmpeg, manifest, num, probe, stream, top_box};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROFILE: &str = r#"
default_profile = "av"
[profiles.av]
renditions = []
[profiles.av.video]
keyframe_interval_s = 2.0
segment_s = 2.0
ladder = [
    { size = 720, bitrate_kbps = 2000 },
    { size = 720, bitrate_kbps = 1000, codec = "av1" },
    { size = 360, bitrate_kbps = 600 },
    { size = 360, bitrate_kbps = 300, codec = "av1" },
]
"#;

/// `ffprobe`'s packets of the video stream: (pts seconds, keyframe).
fn packets(path: &Path) -> Vec<(f64, bool)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=pts_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (t, flags) = l.split_once(',')?;
            Some((t.parse().ok()?, flags.starts_with('K')))
        })
        .collect()
}

/// The master playlist's variants in order: (URI, CODECS).
fn variants(master: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = master.lines();
    while let Some(l) = lines.next() {
        if let Some(attrs) = l.strip_prefix("#EXT-X-STREAM-INF:") {
            let codecs = attrs
                .split("CODECS=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_string();
            out.push((lines.next().unwrap_or("").to_string(), codecs));
        }
    }
    out
}

fn clip(dir: &Path, name: &str, video: &str, extra: &[&str], audio: bool) -> PathBuf {
    let path = dir.join(format!("{name}.mp4"));
    let mut args = vec!["-f", "lavfi", "-i", video];
    if audio {
        args.extend([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-shortest",
            "-c:a",
            "aac",
        ]);
    }
    args.extend(["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    args.extend(extra);
    let p = path.to_string_lossy().into_owned();
    args.push(&p);
    ffmpeg(&args);
    path
}

#[test]
fn av1_rungs_beside_h264_ones_pass_an_independent_decoder_and_players_see_both_codecs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let landscape = clip(
        dir.path(),
        "landscape",
        "testsrc2=size=1280x720:rate=30:duration=4",
        &["-bf", "3"],
        true,
    );
    // Portrait with a variable frame rate (a phone's), no audio.
    let portrait = clip(
        dir.path(),
        "portrait",
        "testsrc2=size=360x640:rate=30:duration=3",
        &[
            "-vf",
            "setpts='if(lt(N,20),N/30,(20+(N-20)*2)/30)/TB'",
            "-fps_mode",
            "vfr",
        ],
        false,
    );
    // Smaller than every rung: one H.264 rung at its own size (no AV1 below 64 px).
    let tiny = clip(
        dir.path(),
        "tiny",
        "testsrc2=size=160x90:rate=30:duration=2",
        &[],
        false,
    );
    let config = dir.path().join("av.toml");
    std::fs::write(&config, PROFILE).expect("config");
    let out = dir.path().join("out");
    let (code, log, rss) = run_measured(
        &[
            "process",
            &landscape.to_string_lossy(),
            &portrait.to_string_lossy(),
            &tiny.to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
            "--config",
            &config.to_string_lossy(),
        ],
        &[],
    );
    assert_eq!(code, 0, "every clip succeeds: {log}");
    assert!(rss < 600 * 1024, "peak RSS {rss} KiB");

    for (stem, src, av1_rungs) in [
        ("landscape", &landscape, vec!["720p-av1", "360p-av1"]),
        ("portrait", &portrait, vec!["360p-av1"]),
        ("tiny", &tiny, vec![]),
    ] {
        let m = manifest(&out, stem);
        assert_eq!(m["status"], "succeeded", "{stem}: {m}");
        let sp = probe(src);
        let src_frames = num(&stream(&sp, "video").expect("source video")["nb_read_frames"]);
        let src_dur = num(&sp["format"]["duration"]);
        let has_audio = stream(&sp, "audio").is_some();
        let outputs = m["outputs"].as_array().expect("outputs");
        let rungs: Vec<&Value> = outputs
            .iter()
            .filter(|o| o["kind"] == "video" && o["format"] == "mp4" && o["name"] != "hls")
            .filter(|o| !o["name"].as_str().unwrap_or("hls/").starts_with("hls/"))
            .collect();
        let av1: Vec<&str> = rungs
            .iter()
            .filter(|o| o["codec"].as_str().is_some_and(|c| c.starts_with("av01.")))
            .filter_map(|o| o["name"].as_str())
            .collect();
        assert_eq!(av1, av1_rungs, "{stem}: the AV1 rungs");
        for r in &rungs {
            let name = r["name"].as_str().expect("name");
            let codec = r["codec"].as_str().expect("every rung names its codec");
            let path = out.join(stem).join(format!("{name}.mp4"));
            let data = std::fs::read(&path).expect("rung");
            assert!(
                top_box(&data, b"moov") < top_box(&data, b"mdat"),
                "{stem}/{name}: moov first"
            );
            let p = probe(&path);
            let v = stream(&p, "video").expect("video stream");
            let is_av1 = codec.starts_with("av01.");
            assert_eq!(
                v["codec_name"],
                if is_av1 { "av1" } else { "h264" },
                "{stem}/{name}"
            );
            if is_av1 {
                assert_eq!(v["profile"], "Main", "{stem}/{name}");
                assert_eq!(v["pix_fmt"], "yuv420p", "{stem}/{name}");
                assert_eq!(v["color_space"], "bt709", "{stem}/{name}");
                // The RFC 6381 string is the stream's: profile 0, its level, Main tier, 8-bit.
                let level = num(&v["level"]) as u32;
                assert_eq!(codec, format!("av01.0.{level:02}M.08"), "{stem}/{name}");
            } else {
                // Main profile (CABAC), its level, as the stream says.
                assert_eq!(v["profile"], "Main", "{stem}/{name}");
                let level = num(&v["level"]) as u32;
                assert!(codec.starts_with("avc1.4d"), "{stem}/{name}: {codec}");
                assert!(
                    codec.ends_with(&format!("{level:02x}")),
                    "{stem}/{name}: {codec}, level {level}"
                );
            }
            // Stored and displayed sizes agree (no rotation here).
            assert_eq!(
                (num(&v["width"]) as u64, num(&v["height"]) as u64),
                (
                    r["width"].as_u64().unwrap_or(0),
                    r["height"].as_u64().unwrap_or(0)
                ),
                "{stem}/{name}"
            );
            let frames = num(&v["nb_read_frames"]);
            if is_av1 && stem == "portrait" {
                // A variable frame rate: the AV1 rung is given 30 pictures a second (the base
                // rate), repeats where the source has none, and loses none of the source's.
                assert!(
                    frames >= src_frames && frames <= (src_dur * 30.0).ceil() + 1.0,
                    "{stem}/{name}: {frames} frames vs {src_frames} in {src_dur} s"
                );
            } else {
                assert!(
                    (frames - src_frames).abs() <= 1.0,
                    "{stem}/{name}: {frames} frames vs {src_frames}"
                );
            }
            let dur = num(&p["format"]["duration"]);
            assert!(
                (dur - src_dur).abs() <= 0.1 + src_dur * 0.05,
                "{stem}/{name}: {dur} s vs {src_dur} s"
            );
            assert_eq!(
                stream(&p, "audio").is_some(),
                has_audio,
                "{stem}/{name}: audio"
            );
            decodes_clean(&path);
        }
        let text = std::fs::read_to_string(out.join(stem).join("hls/master.m3u8"))
            .expect("master playlist");
        let listed = variants(&text);
        assert_eq!(listed.len(), rungs.len(), "{stem}: {text}");
        // FRAME-RATE is the most pictures a second: 30 on every clip, the portrait's variable
        // rate included (its average is 17).
        assert!(
            text.lines()
                .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
                .all(|l| l.contains(",FRAME-RATE=30.000")),
            "{stem}: {text}"
        );
        // AV1 first (a player that decodes it starts there), then H.264.
        let firsts: Vec<bool> = listed.iter().map(|(_, c)| c.starts_with("av01.")).collect();
        let mut sorted = firsts.clone();
        sorted.sort_by_key(|a| !a);
        assert_eq!(firsts, sorted, "{stem}: AV1 variants first: {text}");
        for (uri, codecs) in &listed {
            let rung = uri.trim_end_matches("/index.m3u8");
            let r = rungs
                .iter()
                .find(|o| o["name"] == rung)
                .unwrap_or_else(|| panic!("{stem}: {uri} is no rung"));
            let want = match has_audio {
                true => format!("{},mp4a.40.2", r["codec"].as_str().unwrap_or("")),
                false => r["codec"].as_str().unwrap_or("").to_string(),
            };
            assert_eq!(codecs, &want, "{stem}: {uri}");
            let playlist = out.join(stem).join("hls").join(uri);
            decodes_clean(&playlist);
        }
    }

    // The AV1 rung's keyframes fall on the 2 s grid the H.264 rung uses, and only there —
    // also on the portrait's variable frame rate (30 fps, then 15), where counting pictures
    // would put them at 1.6 and 3.87 s.
    for (stem, names, want) in [
        ("landscape", ["720p-av1", "720p"], vec![0.0, 2.0]),
        ("portrait", ["360p-av1", "360p"], vec![0.0, 2.0, 4.0]),
    ] {
        for name in names {
            let keys: Vec<f64> = packets(&out.join(format!("{stem}/{name}.mp4")))
                .into_iter()
                .filter(|(_, k)| *k)
                .map(|(t, _)| t)
                .collect();
            assert_eq!(keys, want, "{stem}/{name}: keyframes");
        }
        // The HLS segments of both codecs are cut on the same times.
        let durations = |rung: &str| -> Vec<String> {
            std::fs::read_to_string(out.join(format!("{stem}/hls/{rung}/index.m3u8")))
                .expect("playlist")
                .lines()
                .filter(|l| l.starts_with("#EXTINF:"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(durations(names[0]), durations(names[1]), "{stem}");
        assert_eq!(durations(names[0]).len(), want.len(), "{stem}");
    }

    // The report: one player per picture size, AV1 offered first; Chromium decodes AV1, so it
    // picks and plays the AV1 file.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = Command::new("node")
        .current_dir(root.join("tests/browser"))
        .arg("report.mjs")
        .arg(out.join("index.html"))
        .output()
        .expect("node runs (installed by .ci/setup)");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["canPlayAv1"], "probably", "{seen}");
    let players = seen["players"].as_array().expect("players");
    let landscape_720 = players
        .iter()
        .find(|p| p["sources"][0]["src"] == "landscape/720p-av1.mp4")
        .unwrap_or_else(|| panic!("a 720p player offering AV1 first: {seen}"));
    assert_eq!(landscape_720["sources"][1]["src"], "landscape/720p.mp4");
    assert!(
        landscape_720["sources"][0]["type"]
            .as_str()
            .is_some_and(|t| t.contains("av01.0.")),
        "{seen}"
    );
    assert!(
        landscape_720["current"]
            .as_str()
            .is_some_and(|c| c.ends_with("/landscape/720p-av1.mp4")),
        "Chromium plays the AV1 file: {seen}"
    );
    assert_eq!(landscape_720["width"], 1280, "{seen}");
    for p in players {
        assert!(p["played"].as_f64() > Some(0.5), "every player plays: {p}");
    }
}
