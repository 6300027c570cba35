//! The video branch of a job: the decoder child describes the source and the limits are
//! checked, metadata plugins run, one watermark per rung size comes from the watermarker
//! (drawn upright, turned to the stored orientation, converted to YUV once), the streaming
//! transcode runs into the job's scratch directory, damage is weighed, and every file
//! written gets a manifest entry.

use super::{Body, Job, OutputFile, Processor, Run, plugin_record};
use crate::config::Profile;
use crate::config::{Limits, OnError};
use crate::error::{ErrorClass, JobError};
use crate::manifest;
use crate::media::decoder::protocol::{Mode, Start, Summary, TIMESCALE, VideoInfo};
use crate::media::decoder::{self, Session};
use crate::media::overlay::Overlay;
use crate::media::video::frame::{YuvOverlay, canvas};
use crate::media::video::source::Source;
use crate::media::video::{rate_probe, transcode};
use crate::plugin::types;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::time::Instant;

pub(super) fn scratch_err(e: std::io::Error) -> JobError {
    JobError::Storage {
        message: format!("scratch space: {e}"),
        class: ErrorClass::Transient,
    }
}

impl Processor {
    pub(super) fn video_stages(
        &self,
        job: &Job<'_>,
        run: &mut Run,
        profile: &Profile,
        sniffed: &'static str,
    ) -> Result<Vec<OutputFile>, JobError> {
        let limits = self.config.limits;
        let settings = decoder::Settings::from_limits(&limits);
        let req = decoder::session::request(job.path, Mode::Video, &job.source_uri);
        let (mut session, src) = run.timings.time("probe", || {
            let (session, header) = Session::open(req, &settings, &job.source_uri)?;
            Ok::<_, JobError>((session, Source::new(header, &limits, sniffed)?))
        })?;
        let (dw, dh) = src.display_size();
        run.source.media = Some(media_record(&src, (dw, dh)));
        self.notes_for(run, &src);
        let info = types::MediaInfo {
            uri: job.source_uri.clone(),
            kind: types::MediaKind::Video,
            format: src.container.into(),
            codec: Some(src.video.codec.clone()),
            width: dw,
            height: dh,
            orientation: 1,
            duration_s: Some(src.duration_s),
            fps: Some(src.fps),
            has_audio: src.header.audio.is_some(),
            bytes: run.source.bytes,
        };
        self.metadata(job, run, profile, &info)?;

        let mut rungs = transcode::plan(src.square, src.rotation, &profile.video);
        let overlays = self.video_overlays(run, profile, &info, &rungs, src.rotation)?;
        job.control.check()?;
        if rungs.iter().any(rate_probe::wanted) {
            let note = run.timings.time("rate_probe", || {
                probe_rates(job, &src, &mut rungs, profile, &settings)
            })?;
            run.notes.extend(note);
        }
        let dir = run.scratch_dir()?;
        let (work_w, work_h) = rungs.first().map_or(src.square, |r| (r.width, r.height));
        let audio = src.audio_entry();
        session.start(Start {
            width: work_w,
            height: work_h,
            audio: audio.is_some(),
            windows: Vec::new(),
        })?;
        let input = transcode_input(&src, (work_w, work_h), audio);
        let out = run.timings.time("transcode", || {
            transcode::run(
                &input,
                transcode::Frames::Decoded(&mut session),
                &rungs,
                &overlays,
                &profile.video,
                &dir,
                &|n| {
                    job.control.check()?;
                    job.control
                        .progress("transcode", n as f64 / src.frames.max(1) as f64);
                    Ok(())
                },
            )
        })?;
        drop(session);
        check_damage(&out.decode, &src, &limits)?;
        if let Some(m) = run.source.media.as_mut() {
            m.damaged_frames = Some(out.decode.damaged_frames + out.decode.rejected_packets);
        }
        if out.decode.damaged_frames + out.decode.rejected_packets > 0 {
            run.notes.push(format!(
                "damage concealed: {} frames decoded with errors, {} of {} packets undecodable",
                out.decode.damaged_frames, out.decode.rejected_packets, out.decode.packets
            ));
        }
        for r in &out.rungs {
            if r.frames + r.frames / 10 < src.frames {
                run.notes.push(format!(
                    "{}: {} of {} frames were encoded",
                    r.plan.name, r.frames, src.frames
                ));
            }
        }
        run.timings
            .time("hash", || collect(&dir, &out, src.rotation))
    }

    fn notes_for(&self, run: &mut Run, src: &Source) {
        let v = &src.video;
        if src.rotation != 0 {
            run.notes.push(format!(
                "stored {}x{} with a {}° display rotation, kept on the outputs",
                v.width, v.height, src.rotation
            ));
        }
        if src.square != (v.width, v.height) {
            run.notes.push(format!(
                "stored {}x{} with {}:{} pixels, shown as {}x{}",
                v.width, v.height, v.sar.0, v.sar.1, src.square.0, src.square.1
            ));
        }
        if let Some(hdr) = hdr_name(v) {
            run.notes.push(format!(
                "{hdr} HDR ({}, {} primaries) tone-mapped to SDR BT.709",
                v.transfer, v.primaries
            ));
        }
        if v.interlaced {
            run.notes.push("interlaced: deinterlaced (bwdif)".into());
        }
        if let Some(a) = &src.header.audio
            && !a.copied
        {
            run.notes.push(format!(
                "{} audio ({} Hz, {} channels) re-encoded to AAC-LC stereo at {} Hz",
                a.codec, a.source_rate, a.channels, a.rate
            ));
        }
        if src.header.audio_streams > 1 {
            run.notes.push(format!(
                "{} audio tracks: the default one was used",
                src.header.audio_streams
            ));
        }
    }

    /// One overlay per rung (drawn once per distinct size), in the stored orientation.
    pub(super) fn video_overlays(
        &self,
        run: &mut Run,
        profile: &Profile,
        info: &types::MediaInfo,
        rungs: &[transcode::RungPlan],
        rotation: u16,
    ) -> Result<Vec<Option<YuvOverlay>>, JobError> {
        let Some(u) = &profile.watermark else {
            return Ok(vec![None; rungs.len()]);
        };
        let plugin = self.plugin(u)?;
        let t = Instant::now();
        let mut instance = plugin.instantiate()?;
        let mut out = Vec::new();
        let mut skipped = None;
        for r in rungs {
            let (w, h) = r.display(rotation);
            let size = types::Size {
                width: w,
                height: h,
            };
            let drawn = match instance.draw(info, size) {
                Ok(drawn) => drawn,
                Err(e) if u.on_error == OnError::Skip => {
                    skipped.get_or_insert_with(|| e.to_string());
                    None
                }
                Err(e) => return Err(e.into()),
            };
            out.push(drawn.map(Overlay::from).and_then(|o| {
                if rotation == 0 {
                    YuvOverlay::new(&o, r.width, r.height)
                } else {
                    let upright = canvas(&o, w, h);
                    let stored = rotate_rgba(&upright, w, h, (360 - rotation) % 360);
                    YuvOverlay::from_canvas(&stored, r.width, r.height)
                }
            }));
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        *run.timings.0.entry("watermark".into()).or_default() += ms;
        let mut record = plugin_record(&plugin, ms);
        if let Some(why) = skipped {
            run.notes.push(format!(
                "watermark {why}: skipped (on_error = \"skip\"), rungs made without it"
            ));
            record.skipped = Some(why);
        }
        run.plugins.push(record);
        Ok(out)
    }
}

/// Rotate an RGBA buffer clockwise by 90/180/270.
fn rotate_rgba(src: &[u8], w: u32, h: u32, rotation: u16) -> Vec<u8> {
    let (w, h) = (w as usize, h as usize);
    let nw = if rotation % 180 == 90 { h } else { w };
    let mut out = vec![0u8; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            let (nx, ny) = match rotation {
                90 => (h - 1 - y, x),
                180 => (w - 1 - x, h - 1 - y),
                270 => (y, w - 1 - x),
                _ => (x, y),
            };
            let (s, d) = ((y * w + x) * 4, (ny * nw + nx) * 4);
            out[d..d + 4].copy_from_slice(&src[s..s + 4]);
        }
    }
    out
}

fn sha256_file(path: &Path) -> Result<(u64, String), JobError> {
    let mut f = std::fs::File::open(path).map_err(scratch_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(scratch_err)?;
        if n == 0 {
            break;
        }
        n_total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((n_total, hex::encode(h.finalize())))
}

/// A manifest entry for every file the transcode wrote, in a stable order.
pub(super) fn collect(
    dir: &Path,
    out: &transcode::Output,
    rotation: u16,
) -> Result<Vec<OutputFile>, JobError> {
    let hls = dir.join("hls/master.m3u8").exists();
    written(out, rotation, hls)
        .into_iter()
        .map(|w| output_file(dir, w))
        .collect()
}

/// One file the transcode wrote, as the manifest names it.
struct Written {
    key: String,
    name: String,
    kind: &'static str,
    format: &'static str,
    size: (u32, u32),
    bitrate_bps: Option<u64>,
    codec: Option<String>,
    rate: Option<manifest::RungRate>,
}

impl Written {
    fn new(key: String, name: String, kind: &'static str, format: &'static str) -> Written {
        Written {
            key,
            name,
            kind,
            format,
            size: (0, 0),
            bitrate_bps: None,
            codec: None,
            rate: None,
        }
    }

    fn carrying(self, codec: &str) -> Written {
        Written {
            codec: Some(codec.to_string()),
            ..self
        }
    }

    fn sized(self, size: (u32, u32), bitrate_bps: Option<u64>) -> Written {
        Written {
            size,
            bitrate_bps,
            ..self
        }
    }
}

/// What the transcode needs to know of the source, its pictures delivered at `work` size.
fn transcode_input(
    src: &Source,
    (width, height): (u32, u32),
    audio: Option<(shiguredo_mp4::boxes::SampleEntry, u32)>,
) -> transcode::Input {
    transcode::Input {
        timescale: TIMESCALE,
        matrix: src.matrix,
        width,
        height,
        rotation: src.rotation,
        fps: src.fps,
        base_fps: src.video.base_fps,
        frames: src.frames,
        duration_s: src.duration_s,
        audio_samples: src.header.audio.as_ref().map_or(0, |a| {
            (src.duration_s * f64::from(a.rate) / f64::from(a.frame_samples.max(1))).ceil() as u64
                + 16
        }),
        audio: audio.map(|(entry, timescale)| transcode::AudioTrack { timescale, entry }),
    }
}

/// Content-aware AV1 rungs: a probe encode of a sample of the source (a second decoder
/// child) tells hard content from easy. A probe that fails for a reason other than a stop or
/// the machine (memory, disk, a process that cannot start) leaves those rungs at a capped
/// quality target and says so (the note returned): the job goes on, and the full decode that
/// follows judges the source. (A seek that crashes or stalls the child is the probe's own
/// failure: retrying the job would meet it again.)
fn probe_rates(
    job: &Job<'_>,
    src: &Source,
    rungs: &mut [transcode::RungPlan],
    profile: &Profile,
    settings: &decoder::Settings,
) -> Result<Option<String>, JobError> {
    let Some(top) = rungs.iter().find(|r| rate_probe::wanted(r)) else {
        return Ok(None);
    };
    let (width, height) = (top.width, top.height);
    let v = &profile.video;
    let mut probe = || -> Result<(), JobError> {
        let req = decoder::session::request(job.path, Mode::Video, &job.source_uri);
        let (mut session, _) = Session::open(req, settings, &job.source_uri)?;
        let windows = rate_probe::windows(src.duration_s, v.keyframe_interval_s);
        let sample_s = windows.iter().map(|w| w.seconds).sum();
        session.start(Start {
            width,
            height,
            audio: false,
            windows,
        })?;
        let s = rate_probe::Settings {
            fps: transcode::cadence_fps(src.fps, src.video.base_fps),
            keyframe_s: v.keyframe_interval_s,
            av1_preset: v.av1_preset,
        };
        rate_probe::choose(&mut session, rungs, s, sample_s, &|| job.control.check())
    };
    match probe() {
        Err(e)
            if matches!(e, JobError::Canceled(_))
                || (e.class() == ErrorClass::Transient
                    && !matches!(e, JobError::DecoderCrashed(_) | JobError::DecodeTimeout(_))) =>
        {
            Err(e)
        }
        Err(e) => {
            tracing::warn!(error = %e, "rate probe failed: AV1 rungs at a capped quality");
            Ok(Some(format!(
                "the rate probe failed ({e}): content-aware AV1 rungs were encoded at the \
                 quality target under their caps, without it"
            )))
        }
        Ok(()) => Ok(None),
    }
}

/// Bits per second of `bytes` lasting `seconds`.
fn rate(bytes: u64, seconds: f64) -> Option<u64> {
    (seconds > 0.0).then(|| (bytes as f64 * 8.0 / seconds) as u64)
}

/// How `r`'s bitrate was chosen and what it came to.
fn rung_rate(r: &transcode::RungOutput) -> manifest::RungRate {
    manifest::RungRate {
        mode: if r.plan.quality.is_some() {
            "auto"
        } else {
            "fixed"
        }
        .into(),
        requested_bps: u64::from(r.plan.bitrate_bps),
        quality: r.plan.quality,
        probe_bps: r.plan.probe_bps.map(u64::from),
        video_bps: rate(r.video_bytes, r.duration_s).unwrap_or(0),
    }
}

/// The files of `out`: the rungs' MP4s, poster, sprite and its WebVTT, and with `hls` the
/// master playlist and each stream's playlist, init segment and media segments.
fn written(out: &transcode::Output, rotation: u16, hls: bool) -> Vec<Written> {
    let mut files = Vec::new();
    for r in &out.rungs {
        let name = r.plan.name.clone();
        let mp4 = Written::new(format!("{name}.mp4"), name, "video", "mp4")
            .sized(r.plan.display(rotation), rate(r.bytes, r.duration_s))
            .carrying(&r.codec);
        files.push(Written {
            rate: Some(rung_rate(r)),
            ..mp4
        });
    }
    files.push(
        Written::new("poster.jpg".into(), "poster".into(), "poster", "jpeg")
            .sized(out.poster, None),
    );
    files.push(
        Written::new("thumbs.jpg".into(), "thumbs".into(), "sprite", "jpeg")
            .sized(out.sprite, None),
    );
    files.push(Written::new(
        "thumbs.vtt".into(),
        "thumbs-vtt".into(),
        "vtt",
        "vtt",
    ));
    if !hls {
        return files;
    }
    files.push(Written::new(
        "hls/master.m3u8".into(),
        "hls".into(),
        "playlist",
        "m3u8",
    ));
    type Stream<'a> = (
        String,
        (u32, u32),
        &'a [crate::media::video::mux::Segment],
        Option<&'a str>,
    );
    let mut streams: Vec<Stream<'_>> = out
        .rungs
        .iter()
        .map(|r| {
            (
                r.plan.name.clone(),
                r.plan.display(rotation),
                r.segments.as_slice(),
                Some(r.codec.as_str()),
            )
        })
        .collect();
    if let Some(a) = &out.audio_segments {
        streams.push(("audio".into(), (0, 0), a.as_slice(), None));
    }
    for (name, size, segments, codec) in streams {
        let kind = if name == "audio" { "audio" } else { "video" };
        let at = |file: &str| format!("hls/{name}/{file}");
        let tag = |w: Written| match codec {
            Some(c) => w.carrying(c),
            None => w,
        };
        files.push(tag(Written::new(
            at("index.m3u8"),
            format!("hls/{name}"),
            "playlist",
            "m3u8",
        )
        .sized(size, None)));
        files.push(tag(
            Written::new(at("init.mp4"), at("init"), kind, "mp4").sized(size, None)
        ));
        for s in segments {
            files.push(tag(Written::new(at(&s.name), at(&s.name), kind, "m4s")
                .sized(size, rate(s.bytes, s.duration))));
        }
    }
    files
}

/// The output entry of `w`, its bytes counted and hashed from `dir`.
fn output_file(dir: &Path, w: Written) -> Result<OutputFile, JobError> {
    let path = dir.join(&w.key);
    let (bytes, sha256) = sha256_file(&path)?;
    let content_type = match w.format {
        "mp4" => "video/mp4",
        "m4s" => "video/iso.segment",
        "m3u8" => "application/vnd.apple.mpegurl",
        "jpeg" => "image/jpeg",
        "vtt" => "text/vtt",
        _ => "application/octet-stream",
    };
    Ok(OutputFile {
        key: w.key,
        content_type,
        body: Body::File(path),
        record: manifest::Output {
            name: w.name,
            uri: String::new(),
            kind: w.kind.into(),
            format: w.format.into(),
            width: w.size.0,
            height: w.size.1,
            bytes,
            sha256,
            bitrate_bps: w.bitrate_bps,
            codec: w.codec,
            rate: w.rate,
        },
    })
}

/// `hlg`, `pq`, with Dolby Vision named.
fn hdr_name(v: &VideoInfo) -> Option<String> {
    let base = v.hdr.clone()?;
    Some(match v.dolby_vision {
        Some((p, _, compat)) => format!("dolby_vision {p}.{compat}, {base}"),
        None => base,
    })
}

/// The manifest's description of a video source.
fn media_record(src: &Source, (width, height): (u32, u32)) -> manifest::Media {
    let v = &src.video;
    manifest::Media {
        kind: "video".into(),
        format: src.container.into(),
        codec: Some(v.codec.clone()),
        width,
        height,
        duration_s: Some(src.duration_s),
        fps: Some(src.fps),
        has_audio: src.header.audio_streams > 0,
        frames: src.frames,
        orientation: 1,
        container: Some(src.container.into()),
        profile: v.profile.clone(),
        bit_depth: Some(v.bit_depth),
        chroma: Some(v.chroma.clone()),
        color: Some(manifest::Color {
            matrix: v.matrix.clone(),
            primaries: v.primaries.clone(),
            transfer: v.transfer.clone(),
            range: if v.full_range { "full" } else { "limited" }.into(),
        }),
        hdr: hdr_name(v),
        tone_mapped: v.hdr.is_some(),
        interlaced: v.interlaced,
        audio_codec: src.header.audio.as_ref().map(|a| a.codec.clone()),
        damaged_frames: None,
    }
}

/// Damage the decoder concealed is accepted up to `limits.max_damaged_frames_percent`; a
/// file cut short is refused.
fn check_damage(d: &Summary, src: &Source, limits: &Limits) -> Result<(), JobError> {
    if let Some(why) = &d.truncated {
        return Err(JobError::CorruptInput(format!(
            "the file is truncated: {why}"
        )));
    }
    let expected = src.frames.max(d.frames).max(1);
    let bad = d.damaged_frames + d.rejected_packets;
    let percent = bad * 100 / expected;
    if percent > u64::from(limits.max_damaged_frames_percent) {
        return Err(JobError::CorruptInput(format!(
            "{bad} of {expected} frames are damaged ({percent} %, over limits.max_damaged_frames_percent = {})",
            limits.max_damaged_frames_percent
        )));
    }
    Ok(())
}
