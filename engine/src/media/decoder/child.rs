//! The decoder child: the `mediaflow` binary re-run with [`super::CHILD_ARG`]. It locks
//! itself down (no core dumps, an address-space cap, dies with its parent), reads a
//! [`Request`], opens the source with FFmpeg (whitelisted demuxers, files only), describes
//! it, waits for the engine's [`Start`], then decodes: video frames deinterlaced when they
//! are interlaced, scaled to the size asked for and normalised to 8-bit 4:2:0 BT.709 SDR
//! (tone-mapped when HDR); audio copied when it is AAC, else re-encoded to AAC-LC; or, for
//! HEIF/AVIF stills, the primary picture (tiles assembled) as 8-bit RGB(A).
//!
//! A crash or hang here costs only this process: the engine sees the exit signal or its
//! silence and fails the one job.

use super::ffmpeg::{self as av, AacEncoder, Decoder, Frame, Input, Packet, Scaler, VideoFilter};
use super::protocol::{
    AudioHead, AudioInfo, Failure, FrameHead, Header, Mode, Request, Start, Summary, TIMESCALE,
    VideoInfo, tag,
};
use crate::media::video::colour::{self, Conversion, Lut, Matrix, Primaries, Transfer};
use mediaflow_ffmpeg_sys as ff;
use std::io::{BufRead, Write};
use std::process::ExitCode;

/// Containers a video decode may open (FFmpeg demuxer names).
const VIDEO_DEMUXERS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpegts,avi";
/// Decoder threads (frame threading; the engine's encoders use the other cores).
const DECODE_THREADS: i32 = 2;

/// A failure to report: its code and words.
pub(super) struct Fail(pub(super) &'static str, pub(super) String);

impl From<av::Error> for Fail {
    fn from(e: av::Error) -> Self {
        if e.is_enomem() {
            Fail(
                "decoder_limit",
                format!("{e}: decoding needs more memory than limits.decoder_memory_bytes allows"),
            )
        } else {
            Fail("corrupt_input", e.to_string())
        }
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail("io", format!("writing to the engine: {e}"))
    }
}

pub(super) fn corrupt(m: impl Into<String>) -> Fail {
    Fail("corrupt_input", m.into())
}

pub(super) fn unsupported(m: impl Into<String>) -> Fail {
    Fail("unsupported_codec", m.into())
}

/// The child's `main`.
pub fn main() -> ExitCode {
    lock_down_early();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = String::new();
    if input.read_line(&mut line).is_err() {
        return ExitCode::from(3);
    }
    let Ok(req) = serde_json::from_str::<Request>(&line) else {
        return ExitCode::from(3);
    };
    cap_memory(req.memory_bytes);
    av::set_log_level_errors();
    let stdout = std::io::stdout();
    let mut out = Out(std::io::BufWriter::with_capacity(1 << 20, stdout.lock()));
    let result = match req.mode {
        Mode::Video => video(&req, &mut input, &mut out),
        Mode::Still => still(&req, &mut input, &mut out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail("io", _)) => ExitCode::from(4),
        Err(Fail(code, message)) => {
            let f = Failure {
                code: code.into(),
                message,
            };
            let _ = out.json(tag::FAILED, &f);
            let _ = out.0.flush();
            ExitCode::SUCCESS
        }
    }
}

/// No core dumps of hostile input, and die with the engine.
#[allow(unsafe_code)]
fn lock_down_early() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on this process with valid arguments.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // The parent may already be gone (we were orphaned before prctl took effect).
        if libc::getppid() == 1 {
            libc::_exit(5);
        }
    }
}

/// Cap the address space: a decoder asked to allocate more fails instead of taking the
/// machine's memory.
#[allow(unsafe_code)]
fn cap_memory(bytes: u64) {
    if bytes == 0 {
        return;
    }
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit on this process with a valid struct.
    unsafe {
        libc::setrlimit(libc::RLIMIT_AS, &lim);
    }
}

/// The test-only faults: a real signal death, or a busy loop that never answers.
#[allow(unsafe_code)]
pub(super) fn inject(fault: Option<&str>) {
    match fault {
        // SAFETY: restoring SIGSEGV's default action (Rust's runtime installs a handler for
        // stack overflows) and raising it on ourselves: the process dies as a decoder
        // touching a wild pointer would.
        Some("crash") => unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::raise(libc::SIGSEGV);
        },
        Some("hang") => loop {
            std::hint::spin_loop();
        },
        _ => {}
    }
}

/// Framed messages on stdout.
pub(super) struct Out<W: Write>(pub(super) W);

impl<W: Write> Out<W> {
    pub(super) fn head(&mut self, t: u8, len: usize) -> std::io::Result<()> {
        let len = u32::try_from(len).map_err(|_| std::io::Error::other("message too large"))?;
        self.0.write_all(&[t])?;
        self.0.write_all(&len.to_le_bytes())
    }

    pub(super) fn json<T: serde::Serialize>(&mut self, t: u8, v: &T) -> std::io::Result<()> {
        let body = serde_json::to_vec(v).map_err(std::io::Error::other)?;
        self.head(t, body.len())?;
        self.0.write_all(&body)
    }

    pub(super) fn parts(&mut self, t: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        self.head(t, parts.iter().map(|p| p.len()).sum())?;
        for p in parts {
            self.0.write_all(p)?;
        }
        Ok(())
    }
}

pub(super) fn read_start(input: &mut impl BufRead) -> Option<Start> {
    let mut line = String::new();
    input.read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

fn ratio(q: ff::AVRational) -> (u32, u32) {
    if q.num > 0 && q.den > 0 {
        (q.num as u32, q.den as u32)
    } else {
        (1, 1)
    }
}

/// Describe a video stream (codec, size, colour, HDR, Dolby Vision, frame rate).
pub(super) fn describe_video(
    input: &Input,
    s: &av::Stream<'_>,
    dur_s: Option<f64>,
    exact: bool,
) -> VideoInfo {
    let p = s.params();
    let side = s.side_data();
    let info = av::pix_fmt_info(p.format);
    let (matrix, primaries, transfer) =
        av::colour_names(p.color_space, p.color_primaries, p.color_trc);
    let hdr = match p.color_trc {
        ff::AVColorTransferCharacteristic::AVCOL_TRC_SMPTE2084 => Some("pq".to_string()),
        ff::AVColorTransferCharacteristic::AVCOL_TRC_ARIB_STD_B67 => Some("hlg".to_string()),
        _ => None,
    };
    let fps = [s.avg_frame_rate(), s.r_frame_rate()]
        .into_iter()
        .map(av::q2d)
        .find(|f| f.is_finite() && *f > 0.0 && *f < 1000.0)
        .unwrap_or(0.0);
    let interlaced = !matches!(
        p.field_order,
        ff::AVFieldOrder::AV_FIELD_UNKNOWN | ff::AVFieldOrder::AV_FIELD_PROGRESSIVE
    );
    // Interlaced video comes out a picture per frame (bwdif `send_frame`), where a base rate
    // may be the field rate: none then.
    let base_fps = Some(av::q2d(s.r_frame_rate()))
        .filter(|f| !interlaced && f.is_finite() && *f > 0.0 && *f < 1000.0)
        .unwrap_or(0.0);
    let dur = s
        .duration()
        .map(|d| d as f64 * av::q2d(s.time_base()))
        .or(dur_s)
        .or_else(|| input.duration_s());
    let frames = s
        .frames()
        .map(|n| n as u64)
        .or_else(|| dur.map(|d| (d * fps).round() as u64))
        .unwrap_or(0);
    let chroma = match info {
        Some(i) if i.components == 1 => "4:0:0",
        Some(i) => match i.chroma_shift {
            (1, 1) => "4:2:0",
            (1, 0) => "4:2:2",
            (0, 0) => "4:4:4",
            _ => "other",
        },
        None => "unknown",
    };
    let peak = side
        .mastering_peak_nits
        .filter(|n| *n > 0.0)
        .or(side.max_cll.filter(|n| *n > 0).map(f64::from));
    VideoInfo {
        codec: av::codec_name(p.codec_id),
        profile: av::profile_name(p.codec_id, p.profile),
        width: p.width.max(0) as u32,
        height: p.height.max(0) as u32,
        sar: ratio(s.sample_aspect_ratio()),
        pix_fmt: av::pix_fmt_name(p.format),
        bit_depth: info.map_or(8, |i| i.depth),
        chroma: chroma.into(),
        matrix,
        primaries,
        transfer,
        full_range: p.color_range == ff::AVColorRange::AVCOL_RANGE_JPEG,
        hdr,
        dolby_vision: side.dovi,
        peak_nits: peak,
        display_matrix: side.display_matrix,
        fps,
        base_fps,
        frames,
        frames_exact: exact && s.frames().is_some(),
        scanned_duration_s: None,
        start: s.start_time().map_or(0, |t| {
            av::rescale(
                t,
                s.time_base(),
                ff::AVRational {
                    num: 1,
                    den: TIMESCALE as i32,
                },
            )
        }),
        interlaced,
        alpha: info.is_some_and(|i| i.alpha),
        exif: None,
        icc: None,
        grid: None,
    }
}

fn is_video(s: &av::Stream<'_>) -> bool {
    s.media_type() == ff::AVMediaType::AVMEDIA_TYPE_VIDEO
        && s.disposition() & ff::AV_DISPOSITION_ATTACHED_PIC as i32 == 0
}

/// The default stream of a kind, else the first (video: else the largest).
fn pick<'a>(streams: &[av::Stream<'a>], video: bool) -> Option<av::Stream<'a>> {
    let of_kind: Vec<_> = streams
        .iter()
        .copied()
        .filter(|s| {
            if video {
                is_video(s)
            } else {
                s.media_type() == ff::AVMediaType::AVMEDIA_TYPE_AUDIO
            }
        })
        .collect();
    of_kind
        .iter()
        .copied()
        .find(|s| s.disposition() & ff::AV_DISPOSITION_DEFAULT as i32 != 0 && of_kind.len() > 1)
        .or_else(|| {
            if video {
                of_kind
                    .iter()
                    .copied()
                    .max_by_key(|s| i64::from(s.params().width) * i64::from(s.params().height))
            } else {
                of_kind.first().copied()
            }
        })
}

/// What the container promises, to tell a file cut short.
struct Promise {
    /// Frames its index counts exactly (MP4/MOV sample tables, AVI headers), if any.
    frames: Option<u64>,
    /// Frames a complete file may lack and still be whole (AVI headers count one or two
    /// more than muxers write).
    slack: u64,
    /// Duration it states (Matroska/WebM; MPEG-TS durations are estimates).
    seconds: Option<f64>,
}

impl Promise {
    /// Why the file looks cut short, if it does.
    fn broken(&self, summary: &Summary, ends_s: f64, fps: f64) -> Option<String> {
        if let Some(f) = self.frames
            && f > 0
            && summary.packets + self.slack < f
        {
            return Some(format!(
                "its index lists {f} video frames, the file holds {}",
                summary.packets
            ));
        }
        let d = self.seconds?;
        (ends_s + 1.0 / fps.max(1.0) < d * 0.9 - 0.25)
            .then(|| format!("it says it lasts {d:.1} s, its video ends at {ends_s:.1} s"))
    }
}

/// A movie opened and described: what goes in the header, and what decodes it.
struct Movie {
    input: Input,
    video: usize,
    time_base: ff::AVRational,
    decoder: Decoder,
    audio: Option<AudioPath>,
    info: VideoInfo,
    audio_streams: u32,
    promise: Promise,
}

impl Movie {
    fn open(req: &Request) -> Result<Movie, Fail> {
        let input = Input::open(&req.path, VIDEO_DEMUXERS).map_err(open_failure)?;
        let streams = input.streams();
        let is_audio = |s: &av::Stream<'_>| s.media_type() == ff::AVMediaType::AVMEDIA_TYPE_AUDIO;
        let vs = pick(&streams, true).ok_or_else(|| {
            if streams.iter().any(is_audio) {
                unsupported("an audio-only file: there is no video stream to make renditions of")
            } else {
                corrupt("the file holds no video stream")
            }
        })?;
        let audio_streams = streams.iter().filter(|s| is_audio(s)).count() as u32;
        let a_stream = pick(&streams, false);
        for s in &streams {
            if s.index() != vs.index() && a_stream.map(|a| a.index()) != Some(s.index()) {
                s.discard();
            }
        }
        let demuxer = input.format_name();
        let exact = demuxer.starts_with("mov") || demuxer == "avi";
        let mut info = describe_video(&input, &vs, None, exact);
        if vs.frames().is_none() || input.duration_s().is_none() {
            // Matroska/WebM (live recordings have no duration), MPEG-TS: count what is there.
            let (frames, seconds) = scan(req, vs.index())?;
            info.frames = frames;
            info.scanned_duration_s = Some(seconds);
        }
        check_picture(req, info.width, info.height)?;
        if let Some((5, ..)) = info.dolby_vision {
            return Err(unsupported(
                "Dolby Vision profile 5 has no HDR10, HLG or SDR base layer to show (profiles \
                 8.x, 7 and 4, whose base layer is playable, are accepted)",
            ));
        }
        let decoder = Decoder::open(&vs, DECODE_THREADS)?.ok_or_else(|| {
            unsupported(format!(
                "{} video (no decoder for it in this build)",
                info.codec
            ))
        })?;
        let audio = match a_stream {
            Some(a) => AudioPath::open(&a)?,
            None => None,
        };
        let promise = Promise {
            frames: exact.then_some(info.frames),
            slack: if demuxer == "avi" {
                (info.frames / 50).max(2)
            } else {
                0
            },
            seconds: demuxer
                .starts_with("matroska")
                .then(|| input.duration_s())
                .flatten(),
        };
        Ok(Movie {
            video: vs.index(),
            time_base: vs.time_base(),
            decoder,
            audio,
            info,
            audio_streams,
            promise,
            input,
        })
    }

    fn header(&self) -> Header {
        Header {
            demuxer: self.input.format_name(),
            duration_s: self.input.duration_s(),
            video: Some(self.info.clone()),
            audio: self.audio.as_ref().map(|a| a.info.clone()),
            audio_streams: self.audio_streams,
        }
    }

    /// Decode everything (or, asked for windows, a sample), sending frames and audio; the
    /// summary says how it went.
    fn decode(mut self, start: &Start, out: &mut Out<impl Write>) -> Result<Summary, Fail> {
        if !start.windows.is_empty() {
            return self.sample(start, out);
        }
        if !start.audio {
            self.audio = None;
        }
        let mut pipeline = FramePipeline::new(&self.info, start, self.time_base);
        let mut pkt = Packet::new()?;
        let mut frame = Frame::new()?;
        let mut summary = Summary::default();
        let audio_index = self.audio.as_ref().map(|a| a.index);
        loop {
            match self.input.read(&mut pkt) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if summary.frames > 0 || summary.packets > 0 => {
                    // A container cut short ("partial file"): the engine refuses it.
                    summary.truncated = Some(format!(
                        "reading stopped after {} video packets: {e}",
                        summary.packets
                    ));
                    break;
                }
                Err(e) => return Err(e.into()),
            }
            if pkt.stream() == self.video {
                self.video_packet(Some(&pkt), &mut frame, &mut pipeline, &mut summary, out)?;
            } else if Some(pkt.stream()) == audio_index
                && let Some(a) = self.audio.as_mut()
            {
                a.packet(&pkt, out)?;
            }
        }
        self.video_packet(None, &mut frame, &mut pipeline, &mut summary, out)?;
        if let Some(a) = self.audio.as_mut() {
            a.finish(out)?;
        }
        let ticks = f64::from(TIMESCALE);
        let ends_s =
            pipeline.last_pts.map_or(0.0, |p| p as f64 / ticks) - self.info.start as f64 / ticks;
        if summary.truncated.is_none() {
            summary.truncated = self.promise.broken(&summary, ends_s, self.info.fps);
        }
        Ok(summary)
    }

    /// Decode only `start.windows`, video only: for each, from the keyframe at or before its
    /// start up to its end, sending the pictures inside it.
    fn sample(mut self, start: &Start, out: &mut Out<impl Write>) -> Result<Summary, Fail> {
        let mut pkt = Packet::new()?;
        let mut frame = Frame::new()?;
        let mut summary = Summary::default();
        let ticks = f64::from(TIMESCALE);
        let pipe_base = ff::AVRational {
            num: 1,
            den: TIMESCALE as i32,
        };
        for w in &start.windows {
            let from = self.info.start + (w.from_s.max(0.0) * ticks) as i64;
            let end = from + (w.seconds * ticks).max(1.0) as i64;
            self.input
                .seek(self.video, av::rescale(from, pipe_base, self.time_base))?;
            self.decoder.reset();
            let mut pipeline = FramePipeline::new(&self.info, start, self.time_base);
            pipeline.window = Some((from, end));
            while !pipeline.past_window && self.input.read(&mut pkt)? {
                if pkt.stream() == self.video {
                    self.video_packet(Some(&pkt), &mut frame, &mut pipeline, &mut summary, out)?;
                }
            }
            if !pipeline.past_window {
                self.video_packet(None, &mut frame, &mut pipeline, &mut summary, out)?;
            }
        }
        Ok(summary)
    }

    /// Decode a video packet (`None`: the end — drain the decoder and the pipeline) and send
    /// the pictures it gives.
    fn video_packet(
        &mut self,
        pkt: Option<&Packet>,
        frame: &mut Frame,
        pipeline: &mut FramePipeline,
        summary: &mut Summary,
        out: &mut Out<impl Write>,
    ) -> Result<(), Fail> {
        match pkt {
            Some(pkt) => {
                summary.packets += 1;
                if let Err(e) = self.decoder.send(Some(pkt)) {
                    if !e.is_invalid_data() {
                        return Err(e.into());
                    }
                    summary.rejected_packets += 1;
                }
                drain(&mut self.decoder, frame, pipeline, summary, out)
            }
            None => {
                self.decoder.send(None)?;
                drain(&mut self.decoder, frame, pipeline, summary, out)?;
                pipeline.finish(frame, summary, out)
            }
        }
    }
}

fn video(req: &Request, stdin: &mut impl BufRead, out: &mut Out<impl Write>) -> Result<(), Fail> {
    let movie = Movie::open(req)?;
    out.json(tag::HEADER, &movie.header())?;
    out.0.flush()?;
    let Some(start) = read_start(stdin) else {
        return Ok(());
    };
    inject(req.fault.as_deref());
    let summary = movie.decode(&start, out)?;
    out.json(tag::DONE, &summary)?;
    out.0.flush()?;
    Ok(())
}

/// Read the container once without decoding: video packets and the last presentation time
/// (seconds), stopping past `max_frames`.
fn scan(req: &Request, video: usize) -> Result<(u64, f64), Fail> {
    let input = Input::open(&req.path, VIDEO_DEMUXERS).map_err(open_failure)?;
    let streams = input.streams();
    let mut tb = None;
    for s in &streams {
        if s.index() == video {
            tb = Some(s.time_base());
        } else {
            s.discard();
        }
    }
    let tb = tb.ok_or_else(|| corrupt("the video stream vanished"))?;
    let (mut n, mut first, mut last) = (0u64, None::<i64>, None::<i64>);
    let mut pkt = Packet::new()?;
    while input.read(&mut pkt).unwrap_or(false) {
        if pkt.stream() != video {
            continue;
        }
        n += 1;
        if let Some(p) = pkt.pts().or(pkt.dts()) {
            let end = p.saturating_add(pkt.duration().max(0));
            first = Some(first.map_or(p, |f| f.min(p)));
            last = Some(last.map_or(end, |l| l.max(end)));
        }
        if req.max_frames > 0 && n > req.max_frames {
            break;
        }
    }
    let seconds = match (first, last) {
        (Some(f), Some(l)) if l > f => (l - f) as f64 * av::q2d(tb),
        _ => 0.0,
    };
    Ok((n, seconds))
}

fn open_failure(e: av::Error) -> Fail {
    if e.is_invalid_data() || e.code == av::AVERROR_EOF {
        corrupt(format!(
            "the container could not be read ({})",
            av::strerror(e.code)
        ))
    } else {
        e.into()
    }
}

pub(super) fn check_picture(req: &Request, w: u32, h: u32) -> Result<(), Fail> {
    if w == 0 || h == 0 {
        return Err(corrupt("the video stream has no picture size"));
    }
    if w.max(h) > req.max_dimension || u64::from(w) * u64::from(h) > req.max_pixels {
        return Err(Fail(
            "limit_exceeded",
            format!(
                "a {w}x{h} picture is over the limits (max_dimension {}, max_pixels {})",
                req.max_dimension, req.max_pixels
            ),
        ));
    }
    Ok(())
}

fn drain(
    dec: &mut Decoder,
    frame: &mut Frame,
    pipeline: &mut FramePipeline,
    summary: &mut Summary,
    out: &mut Out<impl Write>,
) -> Result<(), Fail> {
    loop {
        match dec.receive(frame) {
            // Pictures before an edit list's start are decoded (later frames reference them)
            // but not shown.
            Ok(true) if frame.discarded() => {}
            Ok(true) => pipeline.push(frame, summary, out)?,
            Ok(false) => return Ok(()),
            Err(e) if e.is_invalid_data() => {
                summary.rejected_packets += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Decoded pictures → (deinterlace) → scale and convert → 8-bit 4:2:0 BT.709 → the pipe.
struct FramePipeline {
    start: Start,
    time_base: ff::AVRational,
    info: VideoInfo,
    deinterlace: Option<Option<VideoFilter>>,
    convert: Option<Convert>,
    last_pts: Option<i64>,
    step: i64,
    filtered: Option<Frame>,
    /// Only pictures at `[from, end)` pipe ticks are sent (a sample); `past_window` once one
    /// at or past `end` came, `in_window` once one was sent.
    window: Option<(i64, i64)>,
    past_window: bool,
    in_window: bool,
}

/// How frames of one format become output frames.
struct Convert {
    /// (width, height, pix_fmt) it was made for.
    src: (i32, i32, i32),
    /// Output size.
    width: usize,
    height: usize,
    scaler: Option<Scaler>,
    lut: Option<Lut>,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
    wide: Vec<u8>,
}

impl FramePipeline {
    fn new(info: &VideoInfo, start: &Start, time_base: ff::AVRational) -> FramePipeline {
        let fps = if info.fps > 0.0 { info.fps } else { 30.0 };
        FramePipeline {
            start: start.clone(),
            time_base,
            info: info.clone(),
            deinterlace: None,
            convert: None,
            last_pts: None,
            step: (f64::from(TIMESCALE) / fps).round().max(1.0) as i64,
            filtered: None,
            window: None,
            past_window: false,
            in_window: false,
        }
    }

    fn push(
        &mut self,
        frame: &mut Frame,
        summary: &mut Summary,
        out: &mut Out<impl Write>,
    ) -> Result<(), Fail> {
        if self.deinterlace.is_none() {
            let interlaced = frame.interlaced() || self.info.interlaced;
            let r = frame.raw();
            self.deinterlace = Some(if interlaced {
                Some(VideoFilter::new(
                    (r.width, r.height, r.format),
                    self.time_base,
                    "bwdif=mode=send_frame:parity=auto:deint=interlaced",
                )?)
            } else {
                None
            });
        }
        if let Some(Some(mut filter)) = self.deinterlace.take() {
            let damaged = frame.damaged();
            let interlaced = frame.interlaced();
            let mut f = self.filtered.take().map_or_else(Frame::new, Ok)?;
            let r = filter.push(Some(frame)).map_err(Fail::from).and_then(|()| {
                while filter.pull(&mut f)? {
                    summary.deinterlaced += u64::from(interlaced);
                    self.emit(&f, damaged, summary, out)?;
                }
                Ok(())
            });
            self.filtered = Some(f);
            self.deinterlace = Some(Some(filter));
            return r;
        }
        let damaged = frame.damaged();
        self.emit(frame, damaged, summary, out)
    }

    fn finish(
        &mut self,
        frame: &mut Frame,
        summary: &mut Summary,
        out: &mut Out<impl Write>,
    ) -> Result<(), Fail> {
        if let Some(Some(mut filter)) = self.deinterlace.take() {
            filter.push(None)?;
            while filter.pull(frame)? {
                self.emit(frame, false, summary, out)?;
            }
        }
        Ok(())
    }

    fn emit(
        &mut self,
        frame: &Frame,
        damaged: bool,
        summary: &mut Summary,
        out: &mut Out<impl Write>,
    ) -> Result<(), Fail> {
        let pts = match frame.pts() {
            Some(p) => av::rescale(
                p,
                self.time_base,
                ff::AVRational {
                    num: 1,
                    den: TIMESCALE as i32,
                },
            ),
            None => self.last_pts.map_or(0, |l| l + self.step),
        };
        // Out-of-order or repeated times (broken streams): keep time moving forward.
        let pts = match self.last_pts {
            Some(l) if pts <= l => l + 1,
            _ => pts,
        };
        self.last_pts = Some(pts);
        if let Some((mut from, mut end)) = self.window {
            if pts >= end && !self.in_window {
                // Nothing decodable inside it: a seek in a container without a keyframe index
                // (MPEG-TS) lands mid-GOP and decoding starts at the next keyframe. The window
                // starts at that picture instead.
                (from, end) = (pts, pts + (end - from));
                self.window = Some((from, end));
            }
            self.past_window |= pts >= end;
            if pts < from || pts >= end {
                return Ok(());
            }
            self.in_window = true;
        }
        let r = frame.raw();
        let src = (r.width, r.height, r.format);
        if self.convert.as_ref().map(|c| c.src) != Some(src) {
            self.convert = Some(Convert::new(src, frame, &self.info, &self.start)?);
        }
        let Some(conv) = self.convert.as_mut() else {
            return Ok(());
        };
        conv.run(frame)?;
        let head = FrameHead {
            pts,
            damaged,
            width: self.start.width,
            height: self.start.height,
        };
        out.parts(tag::FRAME, &[&head.encode(), &conv.y, &conv.u, &conv.v])?;
        summary.frames += 1;
        summary.damaged_frames += u64::from(damaged);
        Ok(())
    }
}

/// What a frame's colour properties mean (unspecified: BT.709 from 720 lines up, BT.601
/// below, as players assume).
fn colour_of(frame: &Frame) -> colour::Source {
    use ff::AVColorPrimaries as P;
    use ff::AVColorSpace as S;
    use ff::AVColorTransferCharacteristic as T;
    let r = frame.raw();
    let hd = r.height >= 720 || r.width >= 1280;
    let matrix = match r.colorspace {
        S::AVCOL_SPC_BT709 => Matrix::Bt709,
        S::AVCOL_SPC_BT470BG | S::AVCOL_SPC_SMPTE170M | S::AVCOL_SPC_FCC => Matrix::Bt601,
        S::AVCOL_SPC_BT2020_NCL | S::AVCOL_SPC_BT2020_CL => Matrix::Bt2020,
        _ if hd => Matrix::Bt709,
        _ => Matrix::Bt601,
    };
    let primaries = match r.color_primaries {
        P::AVCOL_PRI_BT2020 => Primaries::Bt2020,
        _ => Primaries::Bt709,
    };
    let transfer = match r.color_trc {
        T::AVCOL_TRC_SMPTE2084 => Transfer::Pq { peak_nits: 1000.0 },
        T::AVCOL_TRC_ARIB_STD_B67 => Transfer::Hlg,
        _ => Transfer::Sdr,
    };
    colour::Source {
        matrix,
        primaries,
        transfer,
        full_range: r.color_range == ff::AVColorRange::AVCOL_RANGE_JPEG,
    }
}

impl Convert {
    fn new(
        src: (i32, i32, i32),
        frame: &Frame,
        info: &VideoInfo,
        start: &Start,
    ) -> Result<Convert, Fail> {
        let (w, h) = (start.width as i32, start.height as i32);
        let mut colour = colour_of(frame);
        if let Transfer::Pq { .. } = colour.transfer {
            colour.transfer = Transfer::Pq {
                peak_nits: info.peak_nits.unwrap_or(1000.0),
            };
        }
        let fmt_info = av::pix_fmt_info(src.2)
            .ok_or_else(|| unsupported(format!("pixel format {}", av::pix_fmt_name(src.2))))?;
        let yuv420p = ff::AVPixelFormat::AV_PIX_FMT_YUV420P;
        let needs_lut = !fmt_info.rgb && !colour.is_bt709_sdr_limited();
        let (cw, ch) = ((w + 1) / 2, (h + 1) / 2);
        let luma = (w * h) as usize;
        let chroma = (cw * ch) as usize;
        let mut c = Convert {
            src,
            width: w as usize,
            height: h as usize,
            scaler: None,
            lut: None,
            y: vec![16; luma],
            u: vec![128; chroma],
            v: vec![128; chroma],
            wide: Vec::new(),
        };
        if needs_lut {
            let fmt = ff::AVPixelFormat::AV_PIX_FMT_YUV420P10LE;
            // Between YCbCr formats the scaler keeps the range; the table converts it.
            c.scaler = Some(Scaler::new(
                src,
                (w, h, fmt),
                ff::SWS_CS_ITU709 as i32,
                (colour.full_range, colour.full_range),
            )?);
            c.lut = Some(Lut::new(&Conversion::new(colour)));
            c.wide = vec![0u8; (luma + 2 * chroma) * 2];
        } else if src != (w, h, yuv420p) {
            c.scaler = Some(Scaler::new(
                src,
                (w, h, yuv420p),
                ff::SWS_CS_ITU709 as i32,
                (fmt_info.rgb, false),
            )?);
        }
        Ok(c)
    }

    fn run(&mut self, frame: &Frame) -> Result<(), Fail> {
        let (width, rows) = (self.width, self.height);
        let cw = width.div_ceil(2);
        match (&mut self.scaler, &self.lut) {
            (None, _) => {
                let r = frame.raw();
                let (fw, fh) = (r.width as usize, r.height as usize);
                copy_plane(frame, 0, fw, fh, &mut self.y)?;
                copy_plane(frame, 1, fw.div_ceil(2), fh.div_ceil(2), &mut self.u)?;
                copy_plane(frame, 2, fw.div_ceil(2), fh.div_ceil(2), &mut self.v)?;
            }
            (Some(s), None) => {
                let strides = [width as i32, cw as i32, cw as i32];
                let mut planes: [&mut [u8]; 3] = [&mut self.y, &mut self.u, &mut self.v];
                s.scale(frame, &mut planes, &strides)?;
            }
            (Some(s), Some(lut)) => {
                let (luma, chroma) = (self.y.len(), self.u.len());
                let (yb, rest) = self.wide.split_at_mut(luma * 2);
                let (ub, vb) = rest.split_at_mut(chroma * 2);
                let strides = [(width * 2) as i32, (cw * 2) as i32, (cw * 2) as i32];
                {
                    let mut planes: [&mut [u8]; 3] = [yb, ub, vb];
                    s.scale(frame, &mut planes, &strides)?;
                }
                let to16 = |b: &[u8]| -> Vec<u16> {
                    b.chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect()
                };
                let (y16, u16s, v16) = (
                    to16(&self.wide[..luma * 2]),
                    to16(&self.wide[luma * 2..(luma + chroma) * 2]),
                    to16(&self.wide[(luma + chroma) * 2..]),
                );
                lut.apply(
                    colour::Planes {
                        width,
                        height: rows,
                        y: &y16,
                        u: &u16s,
                        v: &v16,
                    },
                    &mut self.y,
                    &mut self.u,
                    &mut self.v,
                );
            }
        }
        Ok(())
    }
}

fn copy_plane(frame: &Frame, i: usize, w: usize, h: usize, dst: &mut [u8]) -> Result<(), Fail> {
    let (data, stride) = frame
        .plane(i, h)
        .ok_or_else(|| corrupt("a decoded frame lacks a plane"))?;
    if stride < w || dst.len() < w * h {
        return Err(corrupt("a decoded frame has an unexpected layout"));
    }
    for row in 0..h {
        dst[row * w..row * w + w].copy_from_slice(&data[row * stride..row * stride + w]);
    }
    Ok(())
}

/// The audio stream: AAC packets copied (their times already shifted by the container's
/// edit list, so priming shows as a negative start), anything else decoded and re-encoded.
struct AudioPath {
    index: usize,
    info: AudioInfo,
    time_base: ff::AVRational,
    transcode: Option<(Decoder, AacEncoder, Frame)>,
    next_pts: Option<i64>,
    /// The last packet before an edit list's start: kept back, sent only as the one packet
    /// of pre-roll the first shown packet needs (AAC frames overlap).
    preroll: Option<(AudioHead, Vec<u8>)>,
}

impl AudioPath {
    fn open(s: &av::Stream<'_>) -> Result<Option<AudioPath>, Fail> {
        let p = s.params();
        let codec = av::codec_name(p.codec_id);
        let channels = p.ch_layout.nb_channels.max(0) as u32;
        let asc = av::extradata(p);
        let rate = p.sample_rate.max(0) as u32;
        if p.codec_id == ff::AVCodecID::AV_CODEC_ID_AAC && !asc.is_empty() && rate > 0 {
            let frame_samples = if p.frame_size > 0 {
                p.frame_size as u32
            } else {
                1024
            };
            return Ok(Some(AudioPath {
                index: s.index(),
                info: AudioInfo {
                    codec,
                    source_rate: rate,
                    channels,
                    copied: true,
                    asc,
                    rate,
                    out_channels: channels,
                    frame_samples,
                },
                time_base: s.time_base(),
                transcode: None,
                next_pts: None,
                preroll: None,
            }));
        }
        let Some(dec) = Decoder::open(s, 1)? else {
            // An audio codec this build doesn't decode: the video still goes through silent.
            return Ok(None);
        };
        let enc = AacEncoder::new(s, 128_000)?;
        Ok(Some(AudioPath {
            index: s.index(),
            info: AudioInfo {
                codec,
                source_rate: rate,
                channels,
                copied: false,
                asc: enc.asc(),
                rate: enc.sample_rate as u32,
                out_channels: 2,
                frame_samples: enc.frame_size() as u32,
            },
            time_base: s.time_base(),
            transcode: Some((dec, enc, Frame::new()?)),
            next_pts: None,
            preroll: None,
        }))
    }

    fn to_samples(&self, pts: i64) -> i64 {
        av::rescale(
            pts,
            self.time_base,
            ff::AVRational {
                num: 1,
                den: self.info.rate as i32,
            },
        )
    }

    fn packet(&mut self, pkt: &Packet, out: &mut Out<impl Write>) -> Result<(), Fail> {
        if self.transcode.is_none() {
            let dur = self.info.frame_samples;
            let pts = match pkt.pts() {
                Some(p) => self.to_samples(p),
                None => self.next_pts.unwrap_or(0),
            };
            self.next_pts = Some(pts + i64::from(dur));
            let head = AudioHead { pts, duration: dur };
            if pkt.discarded() {
                self.preroll = Some((head, pkt.data().to_vec()));
                return Ok(());
            }
            if let Some((h, data)) = self.preroll.take() {
                out.parts(tag::AUDIO, &[&h.encode(), &data])?;
            }
            out.parts(tag::AUDIO, &[&head.encode(), pkt.data()])?;
            return Ok(());
        }
        let decoded = match self.transcode.as_mut() {
            Some((dec, ..)) => dec.send(Some(pkt)),
            None => Ok(()),
        };
        match decoded {
            Err(e) if !e.is_invalid_data() => Err(e.into()),
            // A damaged audio packet is skipped; the encoder's clock keeps sync.
            Err(_) => Ok(()),
            Ok(()) => self.encode_decoded(false, out),
        }
    }

    /// Encode whatever the decoder has ready (and, at the end, flush both).
    fn encode_decoded(&mut self, end: bool, out: &mut Out<impl Write>) -> Result<(), Fail> {
        let rate = self.info.rate as i32;
        let tb = self.time_base;
        let Some((dec, enc, frame)) = self.transcode.as_mut() else {
            return Ok(());
        };
        let mut write = |pts: i64, dur: i64, data: &[u8]| {
            let head = AudioHead {
                pts,
                duration: dur.max(0) as u32,
            };
            out.parts(tag::AUDIO, &[&head.encode(), data])
        };
        if end {
            let _ = dec.send(None);
        }
        while dec.receive(frame).unwrap_or(false) {
            if self.next_pts.is_none() {
                let start = frame.pts().map_or(0, |p| {
                    av::rescale(p, tb, ff::AVRational { num: 1, den: rate })
                });
                enc.start_at(start);
                self.next_pts = Some(start);
            }
            enc.push(Some(frame), &mut write)?;
        }
        if end {
            enc.push(None, &mut write)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Out<impl Write>) -> Result<(), Fail> {
        self.encode_decoded(true, out)
    }
}

fn still(req: &Request, stdin: &mut impl BufRead, out: &mut Out<impl Write>) -> Result<(), Fail> {
    super::still::decode(req, stdin, out)
}
