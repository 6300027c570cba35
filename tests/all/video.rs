//! The video pipeline end to end: clips of every kind generated with ffmpeg go through
//! `mediaflow process` in one run, and each ladder is checked by Debian's ffprobe/ffmpeg
//! (codec, size, frame count and duration against the source, audio kept, clean decode, the
//! HLS master playlist read back, PSNR of the top rung). Unsupported codecs and hostile files
//! fail with a clear code, quickly, in the same run as files that succeed.

use crate::process::run_measured;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs (installed by .ci/setup)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `seconds`-long 640×360 H.264 clip of noise at lossless quality: about 11 MB a second.
pub(crate) fn noisy_clip(path: &Path, seconds: f64) -> Vec<u8> {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=640x360:rate=25:duration={seconds}"),
        "-vf",
        "noise=alls=60:allf=t",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-qp",
        "0",
        "-pix_fmt",
        "yuv420p",
        path.to_str().expect("path"),
    ]);
    std::fs::read(path).expect("clip")
}

/// `ffprobe` JSON for a file's streams and format.
pub(crate) fn probe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
            "-count_frames",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

pub(crate) fn stream<'a>(p: &'a Value, kind: &str) -> Option<&'a Value> {
    p["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_type"] == kind))
}

pub(crate) fn num(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// `ffmpeg -v error -i X -f null -` prints nothing.
pub(crate) fn decodes_clean(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{} does not decode cleanly: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Offset of the first top-level box of `kind`.
pub(crate) fn top_box(data: &[u8], kind: &[u8; 4]) -> Option<usize> {
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().ok()?) as usize;
        if &data[pos + 4..pos + 8] == kind {
            return Some(pos);
        }
        let size = match size {
            1 => u64::from_be_bytes(data[pos + 8..pos + 16].try_into().ok()?) as usize,
            0 => return None,
            s => s,
        };
        pos += size;
    }
    None
}

struct Clip {
    name: &'static str,
    /// ffmpeg arguments after the inputs.
    args: Vec<&'static str>,
    /// Size of the generated picture (before rotation).
    size: &'static str,
    rate: u32,
    seconds: f64,
    audio: bool,
}

fn make_clip(dir: &Path, c: &Clip) -> PathBuf {
    let path = dir.join(format!("{}.mp4", c.name));
    let video = format!(
        "testsrc2=size={}:rate={}:duration={}",
        c.size, c.rate, c.seconds
    );
    let mut args: Vec<String> = vec!["-f".into(), "lavfi".into(), "-i".into(), video];
    if c.audio {
        args.extend(
            ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"].map(String::from),
        );
        args.extend(["-shortest", "-c:a", "aac", "-b:a", "64k"].map(String::from));
    }
    args.extend(c.args.iter().map(|s| s.to_string()));
    args.push(path.to_string_lossy().into_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&refs);
    path
}

pub(crate) fn manifest(out: &Path, stem: &str) -> Value {
    let text = std::fs::read_to_string(out.join(stem).join("manifest.json"))
        .unwrap_or_else(|e| panic!("{stem}: manifest: {e}"));
    serde_json::from_str(&text).expect("manifest JSON")
}

/// Manifest `m` records a failure with error code `code` and `words` in its message.
#[track_caller]
pub(crate) fn failed_with(m: &Value, code: &str, words: &str) {
    assert_eq!(m["error"]["code"], code, "{m}");
    assert!(
        m["error"]["message"].as_str().unwrap_or("").contains(words),
        "{m}"
    );
}

#[test]
fn ladders_for_every_kind_of_h264_source_pass_an_independent_decoder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let x264 = |profile: &'static str| {
        vec![
            "-c:v",
            "libx264",
            "-profile:v",
            profile,
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ]
    };
    let clips = vec![
        Clip {
            name: "baseline",
            args: x264("baseline"),
            size: "640x360",
            rate: 30,
            seconds: 2.0,
            audio: true,
        },
        Clip {
            name: "main",
            args: x264("main"),
            size: "640x360",
            rate: 30,
            seconds: 2.0,
            audio: false,
        },
        Clip {
            name: "high-bframes",
            args: [x264("high"), vec!["-bf", "3"]].concat(),
            size: "1280x720",
            rate: 30,
            seconds: 2.0,
            audio: true,
        },
        Clip {
            name: "sixty",
            args: x264("high"),
            size: "640x360",
            rate: 60,
            seconds: 2.0,
            audio: false,
        },
        Clip {
            name: "portrait",
            args: x264("high"),
            size: "360x640",
            rate: 30,
            seconds: 2.0,
            audio: true,
        },
        Clip {
            name: "vfr",
            args: [
                x264("high"),
                vec![
                    "-vf",
                    "setpts='if(lt(N,20),N/30,(20+(N-20)*2)/30)/TB'",
                    "-fps_mode",
                    "vfr",
                ],
            ]
            .concat(),
            size: "640x360",
            rate: 30,
            seconds: 2.0,
            audio: false,
        },
        Clip {
            name: "single",
            args: [x264("high"), vec!["-frames:v", "1"]].concat(),
            size: "640x360",
            rate: 30,
            seconds: 1.0,
            audio: false,
        },
        Clip {
            name: "moov-at-end",
            args: vec!["-c:v", "libx264", "-pix_fmt", "yuv420p"],
            size: "640x360",
            rate: 30,
            seconds: 2.0,
            audio: true,
        },
        Clip {
            name: "fragmented",
            args: vec![
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-g",
                "30",
                "-movflags",
                "frag_keyframe+empty_moov+default_base_moof",
            ],
            size: "640x360",
            rate: 30,
            seconds: 2.0,
            audio: true,
        },
    ];
    let mut files: Vec<PathBuf> = clips.iter().map(|c| make_clip(dir.path(), c)).collect();
    // Rotated: a display matrix added by a stream-copy pass.
    let rotated = dir.path().join("rotated.mp4");
    ffmpeg(&[
        "-i",
        &files[0].to_string_lossy(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        &rotated.to_string_lossy(),
    ]);
    files.push(rotated);

    let out = dir.path().join("out");
    let mut args = vec!["process".to_string()];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    args.extend(["--out".into(), out.to_string_lossy().into_owned()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, log, rss) = run_measured(&refs, &[]);
    assert_eq!(code, 0, "every clip succeeds: {log}");
    assert!(rss < 400 * 1024, "peak RSS {rss} KiB for the whole run");

    for file in &files {
        let stem = file.file_stem().and_then(|s| s.to_str()).expect("stem");
        let m = manifest(&out, stem);
        assert_eq!(m["status"], "succeeded", "{stem}: {m}");
        let src = probe(file);
        let sv = stream(&src, "video").expect("source video");
        let src_frames = num(&sv["nb_read_frames"]);
        let src_dur = num(&src["format"]["duration"]);
        let has_audio = stream(&src, "audio").is_some();
        assert_eq!(m["source"]["media"]["has_audio"], has_audio, "{stem}");
        let outputs = m["outputs"].as_array().expect("outputs");
        let videos: Vec<&Value> = outputs
            .iter()
            .filter(|o| {
                o["kind"] == "video"
                    && o["format"] == "mp4"
                    && !o["name"].as_str().unwrap_or("").starts_with("hls")
            })
            .collect();
        assert!(!videos.is_empty(), "{stem}: no rungs");
        for v in &videos {
            let path = out
                .join(stem)
                .join(format!("{}.mp4", v["name"].as_str().expect("name")));
            let data = std::fs::read(&path).expect("rung file");
            let (moov, mdat) = (top_box(&data, b"moov"), top_box(&data, b"mdat"));
            assert!(
                moov.is_some() && moov < mdat,
                "{stem}: moov first in {}",
                path.display()
            );
            let p = probe(&path);
            let ov = stream(&p, "video").expect("video stream");
            assert_eq!(ov["codec_name"], "h264", "{stem}");
            assert_eq!(ov["profile"], "Main", "{stem}: CABAC needs Main");
            assert_eq!(
                (num(&ov["width"]) as u64, num(&ov["height"]) as u64),
                {
                    // ffprobe reports the stored size; the manifest the displayed one.
                    let (w, h) = (
                        v["width"].as_u64().unwrap_or(0),
                        v["height"].as_u64().unwrap_or(0),
                    );
                    if stem == "rotated" { (h, w) } else { (w, h) }
                },
                "{stem}"
            );
            let frames = num(&ov["nb_read_frames"]);
            assert!(
                (frames - src_frames).abs() <= 1.0,
                "{stem}: {frames} frames vs {src_frames}"
            );
            let dur = num(&p["format"]["duration"]);
            assert!(
                (dur - src_dur).abs() <= 0.1 + src_dur * 0.05,
                "{stem}: {dur} s vs {src_dur} s"
            );
            assert_eq!(
                stream(&p, "audio").map(|a| a["codec_name"].clone()),
                has_audio.then(|| Value::from("aac")),
                "{stem}: audio"
            );
            if stem == "rotated" {
                let side = ov["side_data_list"].to_string();
                assert!(side.contains("rotation"), "{stem}: rotation kept: {side}");
            }
            decodes_clean(&path);
        }
        let master = out.join(stem).join("hls/master.m3u8");
        let text = std::fs::read_to_string(&master).expect("master playlist");
        assert!(
            text.contains("BANDWIDTH=")
                && text.contains("AVERAGE-BANDWIDTH=")
                && text.contains("RESOLUTION=")
                && text.contains("CODECS=\"avc1.")
                && text.contains("FRAME-RATE="),
            "{stem}: {text}"
        );
        assert_eq!(text.contains("TYPE=AUDIO"), has_audio, "{stem}: {text}");
        decodes_clean(&master);
        for f in ["poster.jpg", "thumbs.jpg", "thumbs.vtt"] {
            assert!(out.join(stem).join(f).exists(), "{stem}: {f}");
        }
        let vtt = std::fs::read_to_string(out.join(stem).join("thumbs.vtt")).expect("vtt");
        assert!(
            vtt.starts_with("WEBVTT") && vtt.contains("thumbs.jpg#xywh="),
            "{stem}: {vtt}"
        );
    }

    // The 720p top rung of the B-frame clip against the source: PSNR at default bitrates.
    let top = out.join("high-bframes/720p.mp4");
    let src = dir.path().join("high-bframes.mp4");
    let psnr = Command::new("ffmpeg")
        .args(["-i"])
        .arg(&top)
        .arg("-i")
        .arg(&src)
        .args(["-lavfi", "[0:v][1:v]psnr", "-f", "null", "-"])
        .output()
        .expect("ffmpeg psnr");
    let text = String::from_utf8_lossy(&psnr.stderr);
    let avg: f64 = text
        .split("average:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no PSNR in {text}"));
    assert!(avg >= 35.0, "PSNR {avg} dB");
}

/// Big-endian bit reader/writer for rewriting an SPS (Exp-Golomb fields).
#[derive(Default)]
struct BitBuf {
    bits: Vec<bool>,
}

impl BitBuf {
    fn from_bytes(data: &[u8]) -> BitBuf {
        BitBuf {
            bits: data
                .iter()
                .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1 == 1))
                .collect(),
        }
    }

    fn read_ue(&self, pos: &mut usize) -> u64 {
        let mut zeros = 0;
        while !self.bits[*pos] {
            zeros += 1;
            *pos += 1;
        }
        *pos += 1;
        let mut v = 0u64;
        for _ in 0..zeros {
            v = (v << 1) | u64::from(self.bits[*pos]);
            *pos += 1;
        }
        (1u64 << zeros) - 1 + v
    }

    fn push_ue(&mut self, v: u64) {
        let n = 64 - (v + 1).leading_zeros();
        self.bits.extend(std::iter::repeat_n(false, n as usize - 1));
        self.bits
            .extend((0..n).rev().map(|i| ((v + 1) >> i) & 1 == 1));
    }

    fn to_bytes(&self) -> Vec<u8> {
        self.bits
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |b, (i, &x)| b | (u8::from(x) << (7 - i)))
            })
            .collect()
    }
}

/// A Baseline SPS NAL unit with `pic_width_in_mbs_minus1` replaced by `width_mbs - 1`.
fn sps_with_width(sps: &[u8], width_mbs: u64) -> Vec<u8> {
    let mut rbsp = Vec::new();
    let mut zeros = 0;
    for &b in &sps[1..] {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    assert_eq!(rbsp[0], 66, "a Baseline SPS");
    let bits = BitBuf::from_bytes(&rbsp);
    let mut pos = 24;
    bits.read_ue(&mut pos); // seq_parameter_set_id
    bits.read_ue(&mut pos); // log2_max_frame_num_minus4
    match bits.read_ue(&mut pos) {
        0 => {
            bits.read_ue(&mut pos);
        }
        2 => {}
        other => panic!("pic_order_cnt_type {other} not handled by this test"),
    }
    bits.read_ue(&mut pos); // max_num_ref_frames
    pos += 1; // gaps_in_frame_num_value_allowed_flag
    let before = pos;
    bits.read_ue(&mut pos); // pic_width_in_mbs_minus1
    let stop = bits.bits.iter().rposition(|&b| b).expect("rbsp stop bit");
    let mut out = BitBuf {
        bits: bits.bits[..before].to_vec(),
    };
    out.push_ue(width_mbs - 1);
    out.bits.extend_from_slice(&bits.bits[pos..stop]);
    out.bits.push(true);
    while !out.bits.len().is_multiple_of(8) {
        out.bits.push(false);
    }
    let mut nal = vec![sps[0]];
    let mut zeros = 0;
    for b in out.to_bytes() {
        if zeros >= 2 && b <= 3 {
            nal.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        nal.push(b);
    }
    nal
}

/// Rewrite every `avcC` box under `moov` with `f`, fixing the sizes of the boxes around it.
fn rewrite_avcc(data: &[u8], f: &dyn Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    fn walk(data: &[u8], f: &dyn Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + 8 <= data.len() {
            let size = u32::from_be_bytes(data[pos..pos + 4].try_into().expect("4")) as usize;
            let kind: [u8; 4] = data[pos + 4..pos + 8].try_into().expect("4");
            let body = &data[pos + 8..pos + size];
            let skip = match &kind {
                b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" => Some(0),
                b"stsd" => Some(8),
                b"avc1" => Some(78),
                _ => None,
            };
            let new_body = match (skip, &kind) {
                (_, b"avcC") => f(body),
                (Some(n), _) => [&body[..n], &walk(&body[n..], f)[..]].concat(),
                (None, _) => body.to_vec(),
            };
            out.extend_from_slice(&(new_body.len() as u32 + 8).to_be_bytes());
            out.extend_from_slice(&kind);
            out.extend_from_slice(&new_body);
            pos += size;
        }
        out
    }
    walk(data, f)
}

/// The same `avcC` with its first SPS claiming `width_mbs` macroblocks across.
fn avcc_with_wide_sps(avcc: &[u8], width_mbs: u64) -> Vec<u8> {
    let len = u16::from_be_bytes([avcc[6], avcc[7]]) as usize;
    let sps = sps_with_width(&avcc[8..8 + len], width_mbs);
    let mut out = avcc[..6].to_vec();
    out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    out.extend_from_slice(&sps);
    out.extend_from_slice(&avcc[8 + len..]);
    out
}

#[test]
fn unsupported_and_hostile_videos_fail_fast_with_a_clear_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let src = "testsrc2=size=320x240:rate=25:duration=1";
    let make = |name: &str, codec: &[&str]| {
        let mut a = vec!["-f", "lavfi", "-i", src];
        a.extend_from_slice(codec);
        let p = d(name);
        a.push(&p);
        ffmpeg(&a);
    };
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=duration=1",
        "-c:a",
        "aac",
        &d("audio-only.mp4"),
    ]);
    // Hostile files, made from a good clip with its moov at the end.
    make("good.mp4", &["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    let good = std::fs::read(d("good.mp4")).expect("good clip");
    let moov = top_box(&good, b"moov").expect("moov");
    let mdat = top_box(&good, b"mdat").expect("mdat");
    make(
        "good-fast.mp4",
        &[
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ],
    );
    let fast = std::fs::read(d("good-fast.mp4")).expect("faststart clip");
    std::fs::write(d("mdat-cut.mp4"), &fast[..fast.len() * 3 / 5]).expect("write");
    std::fs::write(d("moov-cut.mp4"), &good[..good.len() - 200]).expect("write");
    std::fs::write(d("box-beyond.mp4"), {
        let mut v = good.clone();
        v[moov..moov + 4].copy_from_slice(&0x7fff_ff00u32.to_be_bytes());
        v
    })
    .expect("write");
    std::fs::write(d("sample-bomb.mp4"), {
        // The first stts entry claims 4 billion samples.
        let mut v = good.clone();
        let at = v.windows(4).position(|w| w == b"stts").expect("stts");
        v[at + 12..at + 16].copy_from_slice(&0xF000_0000u32.to_be_bytes());
        v
    })
    .expect("write");
    std::fs::write(d("bit-flipped.mp4"), {
        let mut v = good.clone();
        for i in (mdat + 64..moov).step_by(97) {
            v[i] ^= 0x5a;
        }
        v
    })
    .expect("write");

    // The SPS claims a picture 100000 pixels wide (6250 macroblocks); the file is otherwise
    // the good clip (moov at the end, so sample offsets stay valid).
    make(
        "baseline.mp4",
        &[
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    let baseline = std::fs::read(d("baseline.mp4")).expect("baseline clip");
    std::fs::write(
        d("sps-wide.mp4"),
        rewrite_avcc(&baseline, &|a| avcc_with_wide_sps(a, 6250)),
    )
    .expect("write");
    // Control: the same rewrite keeping the real width must still decode.
    std::fs::write(
        d("sps-same.mp4"),
        rewrite_avcc(&baseline, &|a| avcc_with_wide_sps(a, 20)),
    )
    .expect("write");

    let expected = [
        ("audio-only", "unsupported_codec", "audio-only"),
        ("mdat-cut", "corrupt_input", "truncated"),
        ("moov-cut", "corrupt_input", "could not be read"),
        ("sample-bomb", "", ""),
        ("sps-wide", "limit_exceeded", "100000x240"),
    ];
    let mut args = vec!["process".to_string()];
    for (n, _, _) in &expected {
        args.push(d(&format!("{n}.mp4")));
    }
    args.extend([
        d("bit-flipped.mp4"),
        d("box-beyond.mp4"),
        d("good.mp4"),
        d("sps-same.mp4"),
    ]);
    args.extend(["--out".into(), d("out")]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let (code, log, rss) = run_measured(&refs, &[]);
    let took = started.elapsed();
    assert_eq!(code, 1, "some fail, the run goes on: {log}");
    assert!(
        took < Duration::from_secs(60),
        "the whole hostile run took {took:?}"
    );
    assert!(rss < 300 * 1024, "peak RSS {rss} KiB");
    assert!(!log.contains("panicked"), "{log}");
    let out = dir.path().join("out");
    for (name, code, words) in expected {
        let m = manifest(&out, name);
        assert_eq!(m["status"], "failed", "{name}: {m}");
        let msg = m["error"]["message"].as_str().unwrap_or("");
        if name == "sample-bomb" {
            // Inconsistent tables or the frame limit: refused before decoding, either way.
            let c = m["error"]["code"].as_str().unwrap_or("");
            assert!(c == "limit_exceeded" || c == "corrupt_input", "{name}: {m}");
        } else {
            assert_eq!(m["error"]["code"], code, "{name}: {m}");
            assert!(msg.contains(words), "{name}: {msg:?} should say {words:?}");
        }
        let ms = m["timings_ms"]["total"].as_f64().unwrap_or(f64::MAX);
        assert!(ms < 5000.0, "{name} took {ms} ms to fail");
    }
    // Damage a decoder can work around: concealed (and counted) or refused as corrupt —
    // like every FFmpeg-based pipeline, a moov whose size runs past the end of the file but
    // whose content is all there is read.
    for name in ["bit-flipped", "box-beyond"] {
        let m = manifest(&out, name);
        let ms = m["timings_ms"]["total"].as_f64().unwrap_or(f64::MAX);
        assert!(ms < 5000.0, "{name} took {ms} ms");
        assert!(
            m["status"] == "succeeded" || m["error"]["code"] == "corrupt_input",
            "{name}: decoded with concealment or refused as corrupt: {m}"
        );
    }
    assert_eq!(manifest(&out, "good")["status"], "succeeded");
    assert_eq!(
        manifest(&out, "sps-same")["status"],
        "succeeded",
        "the SPS rewrite is sound"
    );
}

/// RGB of the pixel at (`x`, `y`) of the frame shown at `t` seconds, decoded by ffmpeg.
fn pixel_at(video: &Path, t: f64, (w, h): (u32, u32), (x, y): (u32, u32)) -> [u8; 3] {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{t}"), "-i"])
        .arg(video)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), (w * h * 3) as usize, "one {w}x{h} frame");
    let i = ((y * w + x) * 3) as usize;
    [out.stdout[i], out.stdout[i + 1], out.stdout[i + 2]]
}

/// A profile `show` whose slideshows are 640x360 at 25 fps, 2 s per image with 0.4 s fades.
pub const SLIDESHOW_PROFILE: &str = r#"
[profiles.show]
renditions = [{ name = "t", width = 64, format = "png" }]
[profiles.show.video]
ladder = [{ size = 360, bitrate_kbps = 900 }]
slideshow_width = 640
slideshow_height = 360
slideshow_fps = 25
slideshow_image_s = 2.0
slideshow_crossfade_s = 0.4
"#;

#[test]
fn several_images_become_one_letterboxed_slideshow_with_crossfades() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let solid = |name: &str, colour: &str, size: &str| {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("color=c={colour}:size={size}"),
            "-frames:v",
            "1",
            &d(name),
        ]);
    };
    solid("blue.jpg", "blue", "800x600");
    solid("red.png", "red", "300x900");
    solid("green.jpg", "0x00ff00", "1920x1080");
    std::fs::write(d("config.toml"), SLIDESHOW_PROFILE).expect("config");
    let (code, log, _) = run_measured(
        &[
            "process",
            "--slideshow",
            &d("blue.jpg"),
            &d("red.png"),
            &d("green.jpg"),
            "--out",
            &d("out"),
            "--profile",
            "show",
            "--config",
            &d("config.toml"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{log}");
    let out = dir.path().join("out");
    let m = manifest(&out, "slideshow");
    assert_eq!(m["status"], "succeeded", "{m}");
    let sources = m["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 3, "{m}");
    assert_eq!(sources[1]["media"]["width"], 300);
    assert_eq!(m["source"]["uri"], sources[0]["uri"]);
    let video = out.join("slideshow/slideshow.mp4");
    decodes_clean(&video);
    let p = probe(&video);
    let v = stream(&p, "video").expect("video stream");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!((num(&v["width"]), num(&v["height"])), (640.0, 360.0));
    assert_eq!(num(&v["nb_read_frames"]), 150.0, "3 images x 2 s x 25 fps");
    assert!(
        (num(&p["format"]["duration"]) - 6.0).abs() < 0.1,
        "{}",
        p["format"]
    );
    assert!(stream(&p, "audio").is_none(), "a slideshow is silent");
    let record = m["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "slideshow"))
        .expect("slideshow output");
    assert_eq!(
        (record["width"].as_u64(), record["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert!(out.join("slideshow/poster.jpg").exists());
    decodes_clean(&out.join("slideshow/hls/master.m3u8"));

    let size = (640, 360);
    let near = |px: [u8; 3], want: [u8; 3]| px.iter().zip(want).all(|(a, b)| a.abs_diff(b) < 40);
    // Image 1 fills the height (800x600 → 480x360): black bars left and right.
    assert!(near(pixel_at(&video, 0.5, size, (320, 180)), [0, 0, 255]));
    assert!(near(pixel_at(&video, 0.5, size, (20, 180)), [0, 0, 0]));
    // Image 2, portrait (300x900 → 120x360), centred on black.
    assert!(near(pixel_at(&video, 3.0, size, (320, 180)), [255, 0, 0]));
    assert!(near(pixel_at(&video, 3.0, size, (200, 180)), [0, 0, 0]));
    // Image 3 is 16:9: no bars.
    assert!(near(pixel_at(&video, 5.0, size, (5, 180)), [0, 255, 0]));
    // Half way through the fade from blue to red (1.6 s → 2.0 s), both show.
    let mid = pixel_at(&video, 1.8, size, (320, 180));
    assert!(
        (60..200).contains(&mid[0]) && (60..200).contains(&mid[2]),
        "crossfade blends blue into red: {mid:?}"
    );

    // A damaged picture fails the whole slideshow, naming it, before any frame is made.
    std::fs::write(
        d("broken.jpg"),
        &std::fs::read(d("blue.jpg")).expect("jpeg")[..300],
    )
    .expect("write");
    let (code, log, _) = run_measured(
        &[
            "process",
            "--slideshow",
            &d("blue.jpg"),
            &d("broken.jpg"),
            "--out",
            &d("out2"),
            "--profile",
            "show",
            "--config",
            &d("config.toml"),
        ],
        &[],
    );
    assert_eq!(code, 1, "{log}");
    let m = manifest(&dir.path().join("out2"), "slideshow");
    assert_eq!(m["error"]["code"], "corrupt_input", "{m}");
    let msg = m["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("image 2 of the slideshow") && msg.contains("broken.jpg"),
        "{msg}"
    );
}

/// OpenH264's SIMD kernels are hand-written assembly, built only when `nasm` is present (its
/// build script silently falls back to C, ~2.35x slower to encode): the binary must carry
/// an assembly-only symbol.
#[cfg(target_arch = "x86_64")]
#[test]
fn openh264_is_built_with_its_assembly() {
    let bin = std::fs::read(env!("CARGO_BIN_EXE_mediaflow-cli")).expect("the CLI binary");
    // Symbol names are NUL-terminated strings in the symbol table.
    for symbol in ["WelsSampleSatd16x16_sse2", "WelsCPUId"] {
        assert!(
            bin.split(|&b| b == 0).any(|s| s == symbol.as_bytes()),
            "{symbol} (from OpenH264's .asm files) is missing: was nasm installed when \
             openh264-sys2 was built? (`cargo clean -p openh264-sys2` after installing it)"
        );
    }
}

/// OpenH264's own log lines (it warns about frame skipping, which is off on purpose, at every
/// encoder start) go through `tracing`: with JSON logs, stderr holds JSON lines only, that
/// line among them under the `openh264` target at debug level — not a plain `[OpenH264] …`
/// line that breaks the stream.
#[test]
fn openh264_and_svt_av1_log_through_tracing_and_the_json_stream_stays_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One H.264 and one AV1 rung: both encoders' own log lines.
    let config = dir.path().join("both.toml");
    std::fs::write(
        &config,
        "[profiles.default]\nrenditions = []\n[profiles.default.video]\nladder = [\n    { size = 240, bitrate_kbps = 300 },\n    { size = 240, bitrate_kbps = 200, codec = \"av1\" },\n]\n",
    )
    .expect("config");
    let clip = dir.path().join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25:duration=0.5",
        "-c:v",
        "libx264",
        &clip.to_string_lossy(),
    ]);
    let out = crate::cli::command()
        .arg("process")
        .arg(&clip)
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg("--config")
        .arg(&config)
        .env("MEDIAFLOW_LOG", "debug")
        .env("MEDIAFLOW_LOG_FORMAT", "json")
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert!(
        dir.path().join("out/clip/240p-av1.mp4").exists(),
        "the AV1 rung was made"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    let line = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["message"]
                .as_str()
                .unwrap_or("")
                .contains("bEnableFrameSkip")
        })
        .unwrap_or_else(|| panic!("OpenH264's line is logged: {stderr}"));
    assert_eq!(line["target"], "openh264", "{line}");
    assert_eq!(line["level"], "DEBUG", "{line}");
    // SVT-AV1 writes to its log file through stdio's full buffering, so its lines reach the
    // `svt_av1` target in 4 KB batches (a short run may end before one); what must never
    // happen is a raw line on stderr.
    assert!(!stderr.contains("Svt["), "no raw SVT-AV1 line: {stderr}");
}
