//! The streaming ladder: one thread takes frames from the decoder child (or makes pictures,
//! for a slideshow) and hands each frame (shared, not copied) through a bounded queue to one
//! thread per rung, which resizes the planes, blends the rung's watermark, encodes and writes
//! the MP4 and HLS segments. AAC packets go to every rung and to one HLS audio rendition.
//! The queues hold a few frames, so memory does not grow with the duration.

use super::codec::{Encoded, EncoderSpec, Rate, RungEncoder};
use super::frame::{Frame, Scaler, YuvOverlay};
use super::mux::{self, Carry, HlsWriter, Mp4Writer, Segment};
use super::thumbs::Thumbs;
use crate::config::{VideoCodec, VideoSettings};
use crate::error::JobError;
use crate::media::decoder::protocol::Summary;
use crate::media::decoder::{Event, Session};
use shiguredo_mp4::TrackKind;
use shiguredo_mp4::boxes::SampleEntry;
use std::cell::Cell;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// One rung to produce.
#[derive(Debug, Clone)]
pub struct RungPlan {
    /// Name (file stem).
    pub name: String,
    /// Encoded (stored-orientation) size.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// Target bits per second; with `quality`, the most the rung may spend.
    pub bitrate_bps: u32,
    /// Content-aware (`bitrate = "auto"`): the quality target (1..=10).
    pub quality: Option<u8>,
    /// Content-aware AV1: what a constant-quality encode of a sample of the source spent a
    /// second at this size (`super::rate_probe`), which decides how the rung is encoded
    /// ([`RungPlan::rate`]).
    pub probe_bps: Option<u32>,
    /// Video codec.
    pub codec: VideoCodec,
}

/// A content-aware AV1 rung whose probe spent more than this times its cap is hard content:
/// it is encoded as a fixed rung, at its cap. (A probe encodes a keyframe interval on its
/// own, which costs ~10 % more than the same stretch inside the whole encode.)
const HARD_OVER_CAP: f64 = 1.1;

impl RungPlan {
    /// How the rung spends bits: fixed rungs at their bitrate; content-aware ones at the
    /// quality target under their cap, except an AV1 rung its probe found hard, at its cap —
    /// exactly as fixed, where SVT-AV1's capped CRF would overshoot the cap for a lower PSNR.
    pub fn rate(&self) -> Rate {
        match (self.quality, self.probe_bps) {
            (None, _) => Rate::Bitrate,
            (Some(_), Some(p)) if self.is_hard(f64::from(p)) => Rate::Bitrate,
            (Some(q), _) => Rate::Capped(q),
        }
    }

    /// Whether a probe that spent `probe_bps` found content too hard for the cap.
    pub fn is_hard(&self, probe_bps: f64) -> bool {
        probe_bps > HARD_OVER_CAP * f64::from(self.bitrate_bps)
    }

    /// Displayed size.
    pub fn display(&self, rotation: u16) -> (u32, u32) {
        if rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

fn even(v: f64) -> u32 {
    ((v / 2.0).round() as u32 * 2).max(2)
}

/// The rungs for a source: those whose short side fits the source's (never upscaled),
/// largest first (H.264 before AV1 at one size); when none does, one H.264 rung at the
/// source's own size (the codec every player has).
pub fn plan((width, height): (u32, u32), rotation: u16, s: &VideoSettings) -> Vec<RungPlan> {
    let (dw, dh) = if rotation % 180 == 90 {
        (height, width)
    } else {
        (width, height)
    };
    let short = dw.min(dh);
    let mut rungs: Vec<_> = s
        .ladder
        .iter()
        .filter(|r| r.size <= short)
        .cloned()
        .collect();
    if rungs.is_empty() {
        let smallest = s.ladder.iter().min_by_key(|r| r.size);
        rungs.push(crate::config::Rung {
            size: short & !1,
            bitrate_kbps: smallest.map_or(700, |r| r.bitrate_kbps),
            codec: VideoCodec::H264,
            name: Some(format!("{}p", short & !1)),
        });
    }
    rungs.sort_by_key(|r| (std::cmp::Reverse(r.size), r.codec == VideoCodec::Av1));
    rungs
        .into_iter()
        .map(|r| {
            let f = f64::from(r.size.max(2)) / f64::from(short.max(1));
            let (w, h) = if dw <= dh {
                (r.size.max(2) & !1, even(f64::from(dh) * f))
            } else {
                (even(f64::from(dw) * f), r.size.max(2) & !1)
            };
            let (w, h) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
            RungPlan {
                name: r.name(),
                width: w,
                height: h,
                bitrate_bps: r.bitrate_kbps.saturating_mul(1000),
                quality: s.quality_target(),
                probe_bps: None,
                codec: r.codec,
            }
        })
        .collect()
}

/// What one rung produced.
#[derive(Debug, Clone)]
pub struct RungOutput {
    /// The plan.
    pub plan: RungPlan,
    /// The MP4 file.
    pub mp4: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Frames written.
    pub frames: u64,
    /// HLS segments (in `hls/<name>/`).
    pub segments: Vec<Segment>,
    /// Encoded video bytes (for the real bitrate).
    pub video_bytes: u64,
    /// Duration written, seconds.
    pub duration_s: f64,
    /// RFC 6381 codec string of the video (`avc1.4d4c1f`).
    pub codec: String,
}

/// What a transcode produced, all under its output directory.
#[derive(Debug, Clone)]
pub struct Output {
    /// How the decode went (damage concealed, truncation).
    pub decode: Summary,
    /// Rungs, largest first.
    pub rungs: Vec<RungOutput>,
    /// HLS audio segments (in `hls/audio/`), when the source had AAC.
    pub audio_segments: Option<Vec<Segment>>,
    /// Poster size (displayed).
    pub poster: (u32, u32),
    /// Sprite size.
    pub sprite: (u32, u32),
}

/// An AAC packet on its way to the rungs.
#[derive(Debug)]
pub struct AudioPacket {
    /// The raw AAC frame.
    pub data: Vec<u8>,
    /// Presentation time in samples (from the stream's zero).
    pub pts: i64,
    /// Duration in samples.
    pub duration: u32,
}

/// The audio the outputs carry.
#[derive(Debug, Clone)]
pub struct AudioTrack {
    /// Timescale (the sample rate).
    pub timescale: u32,
    /// The `mp4a` sample entry.
    pub entry: SampleEntry,
}

enum Msg {
    Video(Arc<Frame>, u64),
    /// Where the audio starts against the first picture, in samples: to skip (priming,
    /// audio that began earlier) or, when negative, to wait.
    AudioStart(i64),
    Audio(Arc<AudioPacket>),
}

/// What the ladder needs to know about its input, however its pictures are made.
#[derive(Debug, Clone)]
pub struct Input {
    /// Ticks per second of the presentation times handed to the rungs.
    pub timescale: u32,
    /// Display matrix kept on the outputs.
    pub matrix: [i32; 9],
    /// Stored picture size (before rotation).
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// Clockwise display rotation: 0, 90, 180 or 270.
    pub rotation: u16,
    /// Average frames per second.
    pub fps: f64,
    /// The base frame rate (above `fps` on a variable frame rate), 0 when unknown.
    pub base_fps: f64,
    /// Frames expected (sizes the moov reservation).
    pub frames: u64,
    /// Seconds.
    pub duration_s: f64,
    /// AAC copied to the outputs.
    pub audio: Option<AudioTrack>,
    /// Audio samples expected.
    pub audio_samples: u64,
}

impl Input {
    /// The average frame rate, 30 when unknown.
    fn frame_rate(&self) -> f64 {
        if self.fps > 0.0 { self.fps } else { 30.0 }
    }
}

/// Calls its argument once per picture, in presentation order, with the picture's time in
/// the input's timescale.
pub type MakeFrames<'a> = Box<
    dyn FnOnce(&mut dyn FnMut(Frame, i64) -> Result<(), JobError>) -> Result<(), JobError> + 'a,
>;

/// Where the pictures come from.
pub enum Frames<'a> {
    /// The decoder child, already started (audio comes along).
    Decoded(&'a mut Session),
    /// Pictures made by the caller (a slideshow); no audio.
    Make(MakeFrames<'a>),
}

/// Called with the number of pictures taken so far, before each is encoded: an `Err` (a
/// cancel) stops the transcode with that error.
pub type Tick<'a> = &'a dyn Fn(u64) -> Result<(), JobError>;

/// Transcode `input` (its pictures from `frames`) into `rungs`, writing into `dir`.
/// `overlays` holds each rung's watermark (by index) or `None`; `tick` is called per picture.
pub fn run(
    input: &Input,
    frames: Frames<'_>,
    rungs: &[RungPlan],
    overlays: &[Option<YuvOverlay>],
    s: &VideoSettings,
    dir: &Path,
    tick: Tick<'_>,
) -> Result<Output, JobError> {
    let timescale = NonZeroU32::new(input.timescale)
        .ok_or_else(|| JobError::CorruptInput("video timescale is 0".into()))?;
    let carry = Carry {
        matrix: input.matrix,
        audio: input
            .audio
            .as_ref()
            .and_then(|a| NonZeroU32::new(a.timescale).map(|ts| (a.entry.clone(), ts, 0))),
    };
    let io = |e: std::io::Error| JobError::Storage {
        message: format!("creating output directory: {e}"),
        class: crate::error::ErrorClass::Transient,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    // The variants' FRAME-RATE: the most pictures a second, as the AV1 rungs are given them.
    let fps = cadence_fps(input.frame_rate(), input.base_fps);

    std::thread::scope(|scope| -> Result<Output, JobError> {
        let mut senders: Vec<SyncSender<Msg>> = Vec::new();
        let mut handles = Vec::new();
        for (i, r) in rungs.iter().enumerate() {
            let (tx, rx) = sync_channel::<Msg>(3);
            senders.push(tx);
            let overlay = overlays.get(i).cloned().flatten();
            let ctx = RungCtx::new(input, r, overlay, s, dir, &carry, timescale);
            handles.push(scope.spawn(move || rung(rx, ctx)));
        }
        let top = rungs
            .first()
            .map_or((input.width, input.height), |r| (r.width, r.height));
        let mut thumbs = Thumbs::new(
            input.duration_s,
            (input.width, input.height),
            input.rotation,
            s.poster_offset_s,
            s.thumbnail_interval_s,
            s.thumbnail_width,
        );
        let mut audio_hls = match (&carry.audio, s.hls) {
            (Some((_, ts, _)), true) => Some(HlsWriter::new(
                &dir.join("hls").join("audio"),
                TrackKind::Audio,
                *ts,
                s.segment_s,
                carry.clone(),
            )?),
            _ => None,
        };
        let fed = feed(
            input,
            frames,
            &senders,
            &mut thumbs,
            &mut audio_hls,
            timescale,
            tick,
        );
        drop(senders);
        let (decode, outputs) = settle(input, fed, handles)?;
        let audio_segments = audio_hls.map(HlsWriter::finish).transpose()?;
        let (poster, sprite) = thumbs.finish(dir, top, s.jpeg_quality, input.duration_s)?;
        if s.hls {
            write_master(dir, input.rotation, fps, &outputs, &audio_segments, &carry)?;
        }
        Ok(Output {
            decode,
            rungs: outputs,
            audio_segments,
            poster,
            sprite,
        })
    })
}

/// The rate an AV1 rung takes pictures at (it keys every so many pictures, so on a variable
/// frame rate it is given repeats in gaps and loses pictures in bursts over this rate): the
/// base rate when it is a video rate, so a phone's or a screen recording's fast stretches
/// keep their pictures, but at most 2½ times the average (a base rate far over it is a
/// timestamp artefact, and every repeat costs an encode); else the average.
pub fn cadence_fps(avg: f64, base: f64) -> f64 {
    if base.is_finite() && base > avg && base <= 120.0 {
        base.min(avg * 2.5)
    } else {
        avg
    }
}

/// The feed's and the rungs' outcomes as one: the rungs' outputs, or the error that explains
/// the failure best.
fn settle(
    input: &Input,
    fed: Result<Summary, JobError>,
    handles: Vec<std::thread::ScopedJoinHandle<'_, Result<RungOutput, JobError>>>,
) -> Result<(Summary, Vec<RungOutput>), JobError> {
    let mut outputs = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => outputs.push(o),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(JobError::Encode {
                    format: "mp4",
                    message: "an encoder thread panicked".into(),
                });
            }
        }
    }
    let fed = match fed {
        Ok(s) if s.frames == 0 => Err(JobError::CorruptInput(format!(
            "none of the {} video frames could be decoded: the video data is damaged",
            input.frames
        ))),
        other => other,
    };
    let decode = match fed {
        Ok(s) => s,
        // A rung's own error explains a stopped feed better than "an encoder stopped";
        // anything else the feed met (the source, the decoder) explains the encoders'
        // complaints.
        Err(JobError::Encode { .. }) if first_err.is_some() => Summary::default(),
        Err(e) => return Err(e),
    };
    match first_err {
        Some(e) => Err(e),
        None => Ok((decode, outputs)),
    }
}

/// `hls/master.m3u8`: a variant per rung (its codec, size, peak and average bitrate with the
/// audio's) and the audio rendition. AV1 variants come first: a player that decodes AV1
/// starts there (fewer bits for the same picture); one that does not skips them by their
/// `CODECS` and takes the H.264 ones.
fn write_master(
    dir: &Path,
    rotation: u16,
    fps: f64,
    outputs: &[RungOutput],
    audio_segments: &Option<Vec<Segment>>,
    carry: &Carry,
) -> Result<(), JobError> {
    let audio_avg = audio_segments.as_ref().map_or(0, |a| avg_bps(a));
    let audio_peak = audio_segments.as_ref().map_or(0, |a| peak_bps(a));
    let mut ordered: Vec<&RungOutput> = outputs.iter().collect();
    ordered.sort_by_key(|o| o.plan.codec != VideoCodec::Av1);
    let variants: Vec<mux::Variant> = ordered
        .into_iter()
        .map(|o| {
            let (w, h) = o.plan.display(rotation);
            mux::Variant {
                dir: o.plan.name.clone(),
                width: w,
                height: h,
                codec: o.codec.clone(),
                peak_bps: peak_bps(&o.segments) + audio_peak,
                average_bps: avg_bps(&o.segments) + audio_avg,
                fps,
            }
        })
        .collect();
    let audio = match (audio_segments, &carry.audio) {
        (Some(_), Some((entry, ..))) => Some(mux::AudioRendition {
            dir: "audio".into(),
            codec: mux::codec_string(entry)?,
        }),
        _ => None,
    };
    let master = mux::master_playlist(&variants, audio.as_ref());
    std::fs::write(dir.join("hls").join("master.m3u8"), master).map_err(|e| JobError::Storage {
        message: format!("writing the master playlist: {e}"),
        class: crate::error::ErrorClass::Transient,
    })
}

fn peak_bps(segs: &[Segment]) -> u64 {
    segs.iter()
        .filter(|s| s.duration > 0.0)
        .map(|s| (s.bytes as f64 * 8.0 / s.duration) as u64)
        .max()
        .unwrap_or(0)
}

fn avg_bps(segs: &[Segment]) -> u64 {
    let (bytes, secs) = segs
        .iter()
        .fold((0u64, 0f64), |(b, d), s| (b + s.bytes, d + s.duration));
    if secs > 0.0 {
        (bytes as f64 * 8.0 / secs) as u64
    } else {
        0
    }
}

/// Take decoded (or made) pictures and fan frames and audio out; stops early when a rung
/// has failed.
fn feed(
    movie: &Input,
    frames: Frames<'_>,
    senders: &[SyncSender<Msg>],
    thumbs: &mut Thumbs,
    audio_hls: &mut Option<HlsWriter>,
    timescale: NonZeroU32,
    tick: Tick<'_>,
) -> Result<Summary, JobError> {
    let mut decoded = 0u64;
    let base: Cell<Option<i64>> = Cell::new(None);
    let ts = f64::from(timescale.get());
    let stopped = || JobError::Encode {
        format: "mp4",
        message: "an encoder stopped".into(),
    };
    let mut on_frame = |frame: Frame, pts: i64| -> Result<(), JobError> {
        let b = base.get().unwrap_or(pts);
        base.set(Some(b));
        let t = u64::try_from(pts - b).unwrap_or(0);
        tick(decoded)?;
        decoded += 1;
        let frame = Arc::new(frame);
        thumbs.push(&frame, t as f64 / ts)?;
        for tx in senders {
            tx.send(Msg::Video(frame.clone(), t))
                .map_err(|_| stopped())?;
        }
        Ok(())
    };
    let session = match frames {
        Frames::Make(make) => {
            make(&mut on_frame)?;
            return Ok(Summary {
                frames: decoded,
                ..Summary::default()
            });
        }
        Frames::Decoded(session) => session,
    };
    let mut audio = AudioFeed {
        track: movie.audio.clone(),
        video_ticks: ts,
        pending: Vec::new(),
        started: false,
        dts: 0,
    };
    while let Some(event) = session.next_event()? {
        match event {
            Event::Frame(head, frame) => {
                on_frame(frame, head.pts)?;
                audio.flush(base.get(), senders, audio_hls)?;
            }
            Event::Audio(head, data) => {
                audio.pending.push(AudioPacket {
                    data,
                    pts: head.pts,
                    duration: head.duration,
                });
                audio.flush(base.get(), senders, audio_hls)?;
            }
            Event::Picture(..) => {
                return Err(JobError::DecoderCrashed(
                    "the decoder process sent a still picture for a video".into(),
                ));
            }
            Event::Done(summary) => return Ok(summary),
        }
    }
    Ok(Summary {
        frames: decoded,
        ..Summary::default()
    })
}

/// Audio packets on their way out: held until the first picture's time is known, which
/// places the audio against it (the first packet's offset becomes the outputs' edit).
struct AudioFeed {
    track: Option<AudioTrack>,
    video_ticks: f64,
    pending: Vec<AudioPacket>,
    started: bool,
    dts: u64,
}

impl AudioFeed {
    fn flush(
        &mut self,
        base: Option<i64>,
        senders: &[SyncSender<Msg>],
        hls: &mut Option<HlsWriter>,
    ) -> Result<(), JobError> {
        let (Some(base), Some(track)) = (base, &self.track) else {
            return Ok(());
        };
        let stopped = || JobError::Encode {
            format: "mp4",
            message: "an encoder stopped".into(),
        };
        for p in self.pending.drain(..) {
            if !self.started {
                let rate = f64::from(track.timescale);
                let video_at = (base as f64 / self.video_ticks * rate).round() as i64;
                let start = video_at - p.pts;
                if let Some(h) = hls.as_mut() {
                    h.set_audio_start(start);
                }
                for tx in senders {
                    tx.send(Msg::AudioStart(start)).map_err(|_| stopped())?;
                }
                self.started = true;
            }
            if let Some(h) = hls.as_mut() {
                h.push(&p.data, true, self.dts, p.duration, &track.entry)?;
            }
            self.dts += u64::from(p.duration);
            let p = Arc::new(p);
            for tx in senders {
                tx.send(Msg::Audio(p.clone())).map_err(|_| stopped())?;
            }
        }
        Ok(())
    }
}

struct RungCtx {
    plan: RungPlan,
    overlay: Option<YuvOverlay>,
    fps: f64,
    timescale: NonZeroU32,
    frames_hint: u64,
    audio_hint: u64,
    carry: Carry,
    mp4: PathBuf,
    hls: Option<PathBuf>,
    keyframe_s: f64,
    segment_s: f64,
    av1_preset: u8,
}

impl RungCtx {
    fn new(
        input: &Input,
        r: &RungPlan,
        overlay: Option<YuvOverlay>,
        s: &VideoSettings,
        dir: &Path,
        carry: &Carry,
        timescale: NonZeroU32,
    ) -> RungCtx {
        let fps = input.frame_rate();
        let (fps, frames_hint) = match r.codec {
            VideoCodec::H264 => (fps, input.frames),
            // An AV1 rung may hold repeats: room for its rate over the duration and one
            // more keyframe interval (a late keyframe's GOP is full nonetheless).
            VideoCodec::Av1 => {
                let fps = cadence_fps(fps, input.base_fps);
                let most = ((input.duration_s + s.keyframe_interval_s) * fps).ceil() as u64;
                (fps, input.frames.max(most))
            }
        };
        RungCtx {
            plan: r.clone(),
            overlay,
            fps,
            timescale,
            frames_hint,
            audio_hint: input.audio_samples,
            carry: carry.clone(),
            mp4: dir.join(format!("{}.mp4", r.name)),
            hls: s.hls.then(|| dir.join("hls").join(&r.name)),
            keyframe_s: s.keyframe_interval_s,
            segment_s: s.segment_s,
            av1_preset: s.av1_preset,
        }
    }
}

/// A picture waiting for its duration (known when the next one arrives).
struct Pending {
    enc: Encoded,
    t: u64,
}

fn rung(rx: Receiver<Msg>, c: RungCtx) -> Result<RungOutput, JobError> {
    let (w, h) = (c.plan.width, c.plan.height);
    let mut scaler = Scaler::new();
    let mut encoder = RungEncoder::new(&EncoderSpec {
        codec: c.plan.codec,
        width: w,
        height: h,
        fps: c.fps,
        timescale: c.timescale.get(),
        bitrate_bps: c.plan.bitrate_bps,
        rate: c.plan.rate(),
        keyframe_s: c.keyframe_s,
        av1_preset: c.av1_preset,
    })?;
    let mut out = RungWriter::new(&c)?;
    let ts = c.timescale.get();
    // The source's last picture and its interval from the one before: where the source ends,
    // so every rung (an AV1 one with repeats, an H.264 one that skipped a picture) ends there.
    let (mut src_last, mut src_gap) = (None::<u64>, 0u64);
    for msg in rx {
        match msg {
            Msg::AudioStart(start) => out.mp4.set_audio_start(start),
            Msg::Audio(p) => out.mp4.audio(&p.data, p.duration)?,
            Msg::Video(f, t) => {
                src_gap = src_last.map_or(0, |l| t.saturating_sub(l));
                src_last = Some(t);
                let mut img = scaler.scale(&f, w, h).map_err(|e| JobError::Encode {
                    format: "mp4",
                    message: format!("resize: {e}"),
                })?;
                if let Some(o) = &c.overlay {
                    o.blend(&mut img);
                }
                encoder.encode(img, t, ts, &mut |enc, t| out.picture(enc, t))?;
            }
        }
    }
    encoder.finish(&mut |enc, t| out.picture(enc, t))?;
    let end = src_last.filter(|_| src_gap > 0).map(|t| t + src_gap);
    out.finish(c, end)
}

/// A rung's outputs as encoded pictures arrive: the MP4 and, with HLS, its segments. Each
/// picture is written once the next one's time gives its duration.
struct RungWriter {
    mp4: Mp4Writer,
    hls: Option<HlsWriter>,
    /// The sample entry from the encoder's latest parameter sets.
    entry: Option<SampleEntry>,
    pending: Option<Pending>,
    frames: u64,
    video_bytes: u64,
    last_duration: u32,
    /// The end of the last picture written, in the timescale.
    end: u64,
}

impl RungWriter {
    fn new(c: &RungCtx) -> Result<RungWriter, JobError> {
        let mp4 = Mp4Writer::create(
            &c.mp4,
            c.frames_hint,
            c.audio_hint,
            c.timescale,
            c.carry.clone(),
        )?;
        let hls = match &c.hls {
            Some(d) => Some(HlsWriter::new(
                d,
                TrackKind::Video,
                c.timescale,
                c.segment_s,
                c.carry.clone(),
            )?),
            None => None,
        };
        Ok(RungWriter {
            mp4,
            hls,
            entry: None,
            pending: None,
            frames: 0,
            video_bytes: 0,
            last_duration: 0,
            end: 0,
        })
    }

    /// Picture `enc`, shown at `t`: the one before it is written.
    fn picture(&mut self, enc: Encoded, t: u64) -> Result<(), JobError> {
        if let Some(config) = &enc.config {
            self.entry = Some(mux::sample_entry(config)?);
        }
        if let Some(prev) = self.pending.take() {
            let d = u32::try_from(t.saturating_sub(prev.t))
                .unwrap_or(u32::MAX)
                .max(1);
            self.last_duration = d;
            self.write(prev, d)?;
        }
        self.end = t;
        self.pending = Some(Pending { enc, t });
        Ok(())
    }

    fn write(&mut self, p: Pending, duration: u32) -> Result<(), JobError> {
        let entry = self.entry.as_ref().ok_or_else(|| JobError::Encode {
            format: "mp4",
            message: "the encoder gave no decoder configuration (SPS/PPS, sequence header)".into(),
        })?;
        self.mp4
            .video(&p.enc.data, p.enc.keyframe, duration, entry)?;
        if let Some(h) = self.hls.as_mut() {
            h.push(&p.enc.data, p.enc.keyframe, p.t, duration, entry)?;
        }
        self.frames += 1;
        self.video_bytes += p.enc.data.len() as u64;
        Ok(())
    }

    /// Write the last picture (lasting until the source's `end` when known, else as long as
    /// the one before it, else one frame at `fps`) and close the files.
    fn finish(mut self, c: RungCtx, end: Option<u64>) -> Result<RungOutput, JobError> {
        let ts = f64::from(c.timescale.get());
        if let Some(prev) = self.pending.take() {
            let d = match end.and_then(|e| u32::try_from(e.checked_sub(prev.t)?).ok()) {
                Some(d) if d > 0 => d,
                _ if self.last_duration > 0 => self.last_duration,
                _ => (ts / c.fps).round().max(1.0) as u32,
            };
            self.end += u64::from(d);
            self.write(prev, d)?;
        }
        let bytes = self.mp4.finish()?;
        let segments = match self.hls {
            Some(h) => h.finish()?,
            None => Vec::new(),
        };
        let codec = match (&self.entry, c.plan.codec) {
            (Some(e), _) => mux::codec_string(e)?,
            (None, VideoCodec::H264) => "avc1.4d4c1e".into(),
            (None, VideoCodec::Av1) => "av01.0.04M.08".into(),
        };
        Ok(RungOutput {
            plan: c.plan,
            mp4: c.mp4,
            bytes,
            frames: self.frames,
            segments,
            video_bytes: self.video_bytes,
            duration_s: self.end as f64 / ts,
            codec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BitrateMode;

    #[test]
    fn av1_rungs_take_the_base_rate_within_reason() {
        assert_eq!(cadence_fps(30.0, 30.0), 30.0);
        assert_eq!(cadence_fps(17.0, 30.0), 30.0, "a phone's variable rate");
        assert_eq!(
            cadence_fps(8.0, 30.0),
            20.0,
            "a screen recording: 2.5x the average"
        );
        assert_eq!(cadence_fps(30.0, 0.0), 30.0, "unknown");
        assert_eq!(cadence_fps(30.0, 500.0), 30.0, "a timestamp artefact");
        assert_eq!(cadence_fps(29.97, 29.0), 29.97);
    }

    #[test]
    fn ladder_never_upscales_and_handles_portrait() {
        let s = VideoSettings::default();
        let l = plan((1920, 1080), 0, &s);
        let sizes: Vec<(u32, u32)> = l.iter().map(|r| (r.width, r.height)).collect();
        assert_eq!(
            sizes,
            vec![(1920, 1080), (1280, 720), (854, 480), (640, 360)]
        );
        let l = plan((1280, 720), 90, &s);
        assert_eq!((l[0].width, l[0].height), (1280, 720));
        assert_eq!(l[0].display(90), (720, 1280));
        assert_eq!(l.len(), 3);
        let l = plan((320, 240), 0, &s);
        assert_eq!(
            (l.len(), l[0].width, l[0].height, l[0].name.as_str()),
            (1, 320, 240, "240p")
        );
    }

    #[test]
    fn auto_bitrates_give_every_rung_the_quality_target_and_keep_bitrates_as_caps() {
        let fixed = VideoSettings::default();
        assert!(
            plan((1920, 1080), 0, &fixed)
                .iter()
                .all(|r| r.quality.is_none())
        );
        let auto = VideoSettings {
            bitrate: BitrateMode::Auto,
            quality: 8,
            ..VideoSettings::default()
        };
        let got: Vec<(u32, Option<u8>)> = plan((1920, 1080), 0, &auto)
            .iter()
            .map(|r| (r.bitrate_bps, r.quality))
            .collect();
        let want: Vec<(u32, Option<u8>)> = auto
            .ladder
            .iter()
            .map(|r| (r.bitrate_kbps * 1000, Some(8)))
            .collect();
        assert_eq!(got, want);
        // The fallback rung of a small source too.
        assert_eq!(plan((200, 100), 0, &auto)[0].quality, Some(8));
    }

    #[test]
    fn a_probe_over_the_cap_makes_an_auto_rung_a_fixed_one() {
        let rung = |quality, probe_bps| RungPlan {
            name: "720p-av1".into(),
            width: 1280,
            height: 720,
            bitrate_bps: 1_000_000,
            quality,
            probe_bps,
            codec: VideoCodec::Av1,
        };
        // Fixed rungs stay fixed whatever a probe said.
        assert_eq!(rung(None, None).rate(), Rate::Bitrate);
        assert_eq!(rung(None, Some(100)).rate(), Rate::Bitrate);
        // Auto: the capped quality target unless the probe spent over 1.1 × the cap; no probe
        // (a slideshow, a probe that failed) keeps the capped target.
        assert_eq!(rung(Some(9), None).rate(), Rate::Capped(9));
        assert_eq!(rung(Some(9), Some(400_000)).rate(), Rate::Capped(9));
        assert_eq!(rung(Some(9), Some(1_100_000)).rate(), Rate::Capped(9));
        assert_eq!(rung(Some(9), Some(1_100_001)).rate(), Rate::Bitrate);
        assert_eq!(rung(Some(9), Some(u32::MAX)).rate(), Rate::Bitrate);
    }

    #[test]
    fn both_codecs_at_one_size_and_the_fallback_is_h264() {
        let rung = |size, codec| crate::config::Rung {
            size,
            bitrate_kbps: 1000,
            codec,
            name: None,
        };
        let s = VideoSettings {
            ladder: vec![
                rung(360, VideoCodec::Av1),
                rung(720, VideoCodec::Av1),
                rung(720, VideoCodec::H264),
            ],
            ..VideoSettings::default()
        };
        let l = plan((1920, 1080), 0, &s);
        let got: Vec<(&str, u32, VideoCodec)> = l
            .iter()
            .map(|r| (r.name.as_str(), r.width, r.codec))
            .collect();
        assert_eq!(
            got,
            vec![
                ("720p", 1280, VideoCodec::H264),
                ("720p-av1", 1280, VideoCodec::Av1),
                ("360p-av1", 640, VideoCodec::Av1),
            ]
        );
        let l = plan((200, 100), 0, &s);
        assert_eq!(
            (l.len(), l[0].codec, l[0].name.as_str()),
            (1, VideoCodec::H264, "100p")
        );
    }

    /// A 320x240 clip of `pictures` made pictures through one H.264 and one AV1 rung, each
    /// picture first passing `tick`; on a thread, failing the test past a minute.
    fn run_made(pictures: u64, tick: fn(u64) -> Result<(), JobError>) -> Result<usize, JobError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().expect("dir");
            let rung = |codec| crate::config::Rung {
                size: 240,
                bitrate_kbps: 300,
                codec,
                name: None,
            };
            let s = VideoSettings {
                ladder: vec![rung(VideoCodec::H264), rung(VideoCodec::Av1)],
                ..VideoSettings::default()
            };
            let rungs = plan((320, 240), 0, &s);
            let input = Input {
                timescale: 1000,
                matrix: [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000],
                width: 320,
                height: 240,
                rotation: 0,
                fps: 10.0,
                base_fps: 10.0,
                frames: pictures,
                duration_s: pictures as f64 / 10.0,
                audio: None,
                audio_samples: 0,
            };
            let make: MakeFrames<'_> = Box::new(move |put| {
                (0..pictures).try_for_each(|i| {
                    put(
                        Frame::filled(320, 240, ((i * 7) as u8, 120, 140)),
                        i as i64 * 100,
                    )
                })
            });
            let out = run(
                &input,
                Frames::Make(make),
                &rungs,
                &[None, None],
                &s,
                dir.path(),
                &tick,
            );
            let _ = tx.send(out.map(|o| o.rungs.len()));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the transcode returned within a minute")
    }

    fn cancel() -> Result<(), JobError> {
        Err(JobError::Canceled(crate::error::CancelReason::Requested))
    }

    #[test]
    fn a_cancel_at_any_picture_stops_the_av1_rungs_too() {
        // Before the first picture (nothing reached the encoders) and after three.
        let at_first: fn(u64) -> Result<(), JobError> = |_| cancel();
        let at_third: fn(u64) -> Result<(), JobError> = |n| if n >= 3 { cancel() } else { Ok(()) };
        for (k, tick) in [(0, at_first), (3, at_third)] {
            assert!(
                matches!(run_made(20, tick), Err(JobError::Canceled(_))),
                "canceled at picture {k}"
            );
        }
        assert_eq!(run_made(20, |_| Ok(())).expect("uncanceled"), 2);
    }

    #[test]
    fn a_source_without_a_picture_fails_as_corrupt_with_av1_rungs() {
        assert!(matches!(
            run_made(0, |_| Ok(())),
            Err(JobError::CorruptInput(_))
        ));
    }
}
