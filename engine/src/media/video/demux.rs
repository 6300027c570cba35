//! MP4/MOV demuxing: finds and bounds the `moov` box (at the start or at the end, or an fMP4
//! init segment followed by fragments), describes the tracks (H.264 video with its `avcC`
//! and display matrix, AAC audio), refuses what we don't decode with the codec named, counts
//! the samples before any decoding (a table claiming millions of samples in a few bytes
//! fails here), and then yields samples in time order, each read from the file on demand.
//! Nothing but the current sample (or, for fMP4, the current fragment) is held in memory.

use crate::config::Limits;
use crate::error::JobError;
use shiguredo_mp4::boxes::{Avc1Box, MoovBox, SampleEntry, StszBox};
use shiguredo_mp4::demux::{DemuxError, Fmp4FileDemuxer, Input, Mp4FileDemuxer, RequiredInput};
use shiguredo_mp4::{BaseBox, Decode};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Largest `moov` we read (sample tables of a few hours of video fit in a few MiB).
const MAX_MOOV_BYTES: u64 = 64 << 20;
/// Largest fMP4 fragment (`moof` + `mdat`) we read at once.
const MAX_FRAGMENT_BYTES: u64 = 256 << 20;

fn corrupt(msg: impl Into<String>) -> JobError {
    JobError::CorruptInput(msg.into())
}

fn unsupported(msg: impl Into<String>) -> JobError {
    JobError::UnsupportedCodec(msg.into())
}

fn read_err(e: std::io::Error) -> JobError {
    JobError::Storage {
        message: format!("reading source: {e}"),
        class: crate::error::ErrorClass::Permanent,
    }
}

/// The H.264 video track.
#[derive(Debug, Clone)]
pub struct VideoTrack {
    /// Track id in the source.
    pub track_id: u32,
    /// Media timescale (ticks per second).
    pub timescale: u32,
    /// Coded picture size after cropping (as stored, before rotation).
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// The track's display matrix (`tkhd`), kept on the outputs.
    pub matrix: [i32; 9],
    /// Clockwise rotation to display the picture upright: 0, 90, 180 or 270.
    pub rotation: u16,
    /// The source's sample entry (SPS/PPS in its `avcC`).
    pub avc1: Avc1Box,
    /// Bytes of each NAL unit's length prefix.
    pub length_size: usize,
    /// `profile_idc`, `constraint flags`, `level_idc` of the SPS.
    pub profile: (u8, u8, u8),
}

impl VideoTrack {
    /// Displayed size (rotation applied).
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// An audio track we copy into the outputs.
#[derive(Debug, Clone)]
pub struct AudioTrack {
    /// Track id in the source.
    pub track_id: u32,
    /// Media timescale.
    pub timescale: u32,
    /// The sample entry, copied as is (`mp4a` with its `esds`).
    pub entry: SampleEntry,
    /// Media time where presentation starts (the edit list's skip, e.g. AAC priming).
    pub media_start: i64,
}

/// What a source holds, found before any sample is decoded.
#[derive(Debug, Clone)]
pub struct Movie {
    /// The video track.
    pub video: VideoTrack,
    /// AAC audio, copied into the outputs.
    pub audio: Option<AudioTrack>,
    /// Audio that is present but not copied (named), for the manifest's notes.
    pub dropped_audio: Option<String>,
    /// Fragmented MP4.
    pub fragmented: bool,
    /// Video samples (frames).
    pub frames: u64,
    /// Audio samples.
    pub audio_samples: u64,
    /// Duration of the video track in seconds.
    pub duration_s: f64,
    /// Average frames per second.
    pub fps: f64,
    /// Size of the file.
    pub bytes: u64,
}

/// One sample, read from the file.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Video (true) or audio.
    pub video: bool,
    /// Decode time in the track's timescale.
    pub dts: u64,
    /// Presentation time in the track's timescale.
    pub pts: i64,
    /// Duration in the track's timescale.
    pub duration: u32,
    /// A sync sample.
    pub keyframe: bool,
    /// The sample's bytes (length-prefixed NAL units for H.264, a raw AAC frame for audio).
    pub data: Vec<u8>,
}

enum Inner {
    Flat(Box<Mp4FileDemuxer>),
    Fragmented(Box<Fmp4FileDemuxer>),
}

/// Yields the samples of the chosen tracks in time order.
pub struct Demuxer {
    file: File,
    len: u64,
    inner: Inner,
    video_id: u32,
    audio_id: Option<u32>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Demuxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demuxer").field("len", &self.len).finish()
    }
}

struct Owned {
    track_id: u32,
    dts: u64,
    cto: i64,
    duration: u32,
    keyframe: bool,
    offset: u64,
    size: usize,
}

impl Demuxer {
    fn new(path: &Path, movie: &Movie) -> Result<Self, JobError> {
        let file = File::open(path).map_err(read_err)?;
        let inner = if movie.fragmented {
            Inner::Fragmented(Box::new(Fmp4FileDemuxer::new()))
        } else {
            Inner::Flat(Box::new(Mp4FileDemuxer::new()))
        };
        Ok(Self {
            file,
            len: movie.bytes,
            inner,
            video_id: movie.video.track_id,
            audio_id: movie.audio.as_ref().map(|a| a.track_id),
            buf: Vec::new(),
        })
    }

    fn next_owned(&mut self) -> Result<Option<Owned>, DemuxError> {
        let s = match &mut self.inner {
            Inner::Flat(d) => d.next_sample()?,
            Inner::Fragmented(d) => d.next_sample()?,
        };
        Ok(s.map(|s| Owned {
            track_id: s.track.track_id,
            dts: s.timestamp,
            cto: s.composition_time_offset.unwrap_or(0),
            duration: s.duration,
            keyframe: s.keyframe,
            offset: s.data_offset,
            size: s.data_size,
        }))
    }

    /// Read what the demuxer asked for, refusing boxes that claim to extend past the file.
    fn feed(&mut self, req: RequiredInput) -> Result<(), JobError> {
        let avail = self.len.saturating_sub(req.position);
        if req.position > self.len {
            return Err(corrupt(format!(
                "a box points to offset {} but the file has only {} bytes (truncated?)",
                req.position, self.len
            )));
        }
        let want = match req.size {
            Some(n) => n as u64,
            None => avail,
        };
        // Box headers are asked for with a 16–32-byte hint; a short (or empty, at the end of
        // an fMP4) read there is fine.
        if want > avail && want > 32 {
            return Err(corrupt(format!(
                "a box at offset {} claims {} bytes, beyond the end of the file ({} bytes): truncated or damaged",
                req.position, want, self.len
            )));
        }
        if want > MAX_FRAGMENT_BYTES {
            return Err(corrupt(format!(
                "a box at offset {} claims {want} bytes (more than {MAX_FRAGMENT_BYTES} in one piece)",
                req.position
            )));
        }
        let n = want.min(avail) as usize;
        self.buf.resize(n, 0);
        self.file
            .read_exact_at(&mut self.buf, req.position)
            .map_err(read_err)?;
        let input = Input {
            position: req.position,
            data: &self.buf,
        };
        match &mut self.inner {
            Inner::Flat(d) => d.handle_input(input),
            Inner::Fragmented(d) => d.handle_input(input),
        }
        Ok(())
    }

    /// The next sample's metadata (no data read), or `None` at the end.
    fn next_meta(&mut self) -> Result<Option<Owned>, JobError> {
        loop {
            match self.next_owned() {
                Ok(Some(s)) if s.track_id == self.video_id || Some(s.track_id) == self.audio_id => {
                    if s.offset
                        .checked_add(s.size as u64)
                        .is_none_or(|e| e > self.len)
                    {
                        return Err(corrupt(format!(
                            "sample data at offset {} ({} bytes) lies beyond the end of the file ({} bytes): the media data is truncated",
                            s.offset, s.size, self.len
                        )));
                    }
                    return Ok(Some(s));
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(None),
                Err(DemuxError::InputRequired(req)) => self.feed(req)?,
                Err(e) => return Err(corrupt(format!("MP4 structure: {e}"))),
            }
        }
    }

    /// The next sample with its bytes, or `None` at the end.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, JobError> {
        let Some(s) = self.next_meta()? else {
            return Ok(None);
        };
        let mut data = vec![0u8; s.size];
        self.file
            .read_exact_at(&mut data, s.offset)
            .map_err(read_err)?;
        Ok(Some(Packet {
            video: s.track_id == self.video_id,
            dts: s.dts,
            pts: i64::try_from(s.dts)
                .unwrap_or(i64::MAX)
                .saturating_add(s.cto),
            duration: s.duration,
            keyframe: s.keyframe,
            data,
        }))
    }
}

/// Open `path`: describe it (refusing what we don't support, over `limits`), count its samples
/// and check they lie inside the file, and return a demuxer positioned at the first sample.
pub fn open(path: &Path, limits: &Limits) -> Result<(Movie, Demuxer), JobError> {
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let moov = read_moov(&file, len)?;
    let mut movie = describe(&moov, len)?;
    let (w, h) = (movie.video.width, movie.video.height);
    if w.max(h) > 3840 || w.min(h) > 2160 {
        return Err(unsupported(format!(
            "H.264 at {w}x{h}: the largest supported picture is 3840x2160"
        )));
    }
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(JobError::limit(
            "max_pixels",
            u64::from(w) * u64::from(h),
            limits.max_pixels,
        ));
    }
    if !movie.fragmented {
        check_tables(&moov, &movie, len, limits)?;
    }
    // A metadata pass over every sample: counts, duration, and that each sample's bytes lie
    // inside the file, so a truncated file fails now rather than after minutes of encoding.
    let mut scan = Demuxer::new(path, &movie)?;
    let (mut frames, mut audio, mut end) = (0u64, 0u64, 0u64);
    let timescale = u64::from(movie.video.timescale);
    while let Some(s) = scan.next_meta()? {
        if s.track_id == movie.video.track_id {
            frames += 1;
            end = end.max(s.dts + u64::from(s.duration));
            if frames > limits.max_frames {
                return Err(JobError::limit("max_frames", frames, limits.max_frames));
            }
            if end / timescale > limits.max_duration_s {
                return Err(JobError::limit(
                    "max_duration_s",
                    end / timescale,
                    limits.max_duration_s,
                ));
            }
        } else {
            audio += 1;
            if audio > limits.max_frames.saturating_mul(4) {
                return Err(JobError::limit(
                    "max_frames (audio)",
                    audio,
                    limits.max_frames.saturating_mul(4),
                ));
            }
        }
    }
    if frames == 0 {
        return Err(corrupt("the video track has no samples"));
    }
    movie.frames = frames;
    movie.audio_samples = audio;
    movie.duration_s = end as f64 / timescale as f64;
    movie.fps = if movie.duration_s > 0.0 {
        frames as f64 / movie.duration_s
    } else {
        0.0
    };
    let demuxer = Demuxer::new(path, &movie)?;
    Ok((movie, demuxer))
}

/// Walk the top-level boxes to `moov`, bounded and inside the file, and decode it.
fn read_moov(file: &File, len: u64) -> Result<MoovBox, JobError> {
    let mut pos = 0u64;
    loop {
        if pos + 8 > len {
            return Err(corrupt(
                "no moov box (the movie header) in the file: truncated or not a finished recording",
            ));
        }
        let mut h = [0u8; 16];
        let n = (len - pos).min(16) as usize;
        file.read_exact_at(&mut h[..n], pos).map_err(read_err)?;
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let kind = [h[4], h[5], h[6], h[7]];
        let size = match size32 {
            0 => len - pos,
            1 if n >= 16 => {
                u64::from_be_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]])
            }
            1 => return Err(corrupt(format!("box header at offset {pos} is cut off"))),
            s => u64::from(s),
        };
        if size < 8 {
            return Err(corrupt(format!(
                "box {:?} at offset {pos} declares an impossible size {size}",
                String::from_utf8_lossy(&kind)
            )));
        }
        if &kind == b"moov" {
            if size > len - pos {
                return Err(corrupt(format!(
                    "the moov box at offset {pos} claims {size} bytes but only {} remain: the file is truncated",
                    len - pos
                )));
            }
            if size > MAX_MOOV_BYTES {
                return Err(JobError::limit("moov box bytes", size, MAX_MOOV_BYTES));
            }
            let mut buf = vec![0u8; size as usize];
            file.read_exact_at(&mut buf, pos).map_err(read_err)?;
            return MoovBox::decode(&buf)
                .map(|(m, _)| m)
                .map_err(|e| corrupt(format!("moov box: {e}")));
        }
        pos = pos
            .checked_add(size)
            .ok_or_else(|| corrupt("box sizes overflow"))?;
    }
}

fn fourcc(entry: &SampleEntry) -> String {
    let t = entry.box_type();
    String::from_utf8_lossy(t.as_bytes()).into_owned()
}

/// Name a video codec we don't decode, from its sample entry.
fn video_codec_name(entry: &SampleEntry) -> String {
    let cc = fourcc(entry);
    let name = match cc.as_str() {
        "hev1" | "hvc1" => "HEVC (H.265)",
        "vp09" => "VP9",
        "vp08" => "VP8",
        "av01" => "AV1",
        "mp4v" => "MPEG-4 Part 2",
        "avc3" => "H.264 with in-band parameter sets (avc3)",
        "mjpa" | "mjpb" | "jpeg" => "Motion JPEG",
        "apch" | "apcn" | "apcs" | "apco" | "ap4h" => "Apple ProRes",
        "s263" | "h263" => "H.263",
        _ => "",
    };
    if name.is_empty() {
        format!("video codec {cc:?}")
    } else {
        format!("{name} ({cc})")
    }
}

fn describe(moov: &MoovBox, len: u64) -> Result<Movie, JobError> {
    let mut video = None;
    let mut audio = None;
    let mut dropped_audio = None;
    let mut other_video = None;
    for trak in &moov.trak_boxes {
        let handler = trak.mdia_box.hdlr_box.handler_type;
        let Some(entry) = trak.mdia_box.minf_box.stbl_box.stsd_box.entries.first() else {
            continue;
        };
        let timescale = trak.mdia_box.mdhd_box.timescale.get();
        let media_start = trak
            .edts_box
            .as_ref()
            .and_then(|e| e.elst_box.as_ref())
            .and_then(|l| l.entries.iter().find(|e| e.media_time >= 0))
            .map_or(0, |e| e.media_time);
        match (&handler, entry) {
            (b"vide", SampleEntry::Avc1(avc1)) if video.is_none() => {
                video = Some(video_track(
                    trak.tkhd_box.track_id,
                    timescale,
                    trak.tkhd_box.matrix,
                    avc1,
                )?);
            }
            (b"vide", e) => other_video = Some(video_codec_name(e)),
            (b"soun", e @ SampleEntry::Mp4a(_)) if audio.is_none() => {
                audio = Some(AudioTrack {
                    track_id: trak.tkhd_box.track_id,
                    timescale,
                    entry: e.clone(),
                    media_start,
                });
            }
            (b"soun", e) => {
                dropped_audio = Some(format!(
                    "audio track in {} was not copied (only AAC is); the outputs are silent",
                    fourcc(e)
                ));
            }
            _ => {}
        }
    }
    let Some(video) = video else {
        return Err(match (other_video, &audio, &dropped_audio) {
            (Some(name), _, _) => unsupported(format!("{name}: only H.264 video is supported")),
            (None, Some(_), _) | (None, None, Some(_)) => {
                unsupported("audio-only file: there is no video track to transcode")
            }
            (None, None, None) => corrupt("the file has no video track"),
        });
    };
    Ok(Movie {
        video,
        audio,
        dropped_audio,
        fragmented: moov.mvex_box.is_some(),
        frames: 0,
        audio_samples: 0,
        duration_s: 0.0,
        fps: 0.0,
        bytes: len,
    })
}

fn video_track(
    track_id: u32,
    timescale: u32,
    matrix: [i32; 9],
    avc1: &Avc1Box,
) -> Result<VideoTrack, JobError> {
    let avcc = &avc1.avcc_box;
    let sps = avcc
        .sps_list
        .first()
        .ok_or_else(|| corrupt("the H.264 track's avcC has no SPS"))?;
    let info = super::h264::check_sps(sps)?;
    let rotation = rotation(&matrix);
    Ok(VideoTrack {
        track_id,
        timescale,
        width: info.width,
        height: info.height,
        matrix: [
            matrix[0], matrix[1], 0, matrix[3], matrix[4], 0, 0, 0, matrix[8],
        ],
        rotation,
        avc1: avc1.clone(),
        length_size: usize::from(avcc.length_size_minus_one.get()) + 1,
        profile: (
            avcc.avc_profile_indication,
            avcc.profile_compatibility,
            avcc.avc_level_indication,
        ),
    })
}

/// Clockwise rotation encoded by a `tkhd` matrix (16.16 fixed point `a b u / c d v / x y w`).
pub fn rotation(m: &[i32; 9]) -> u16 {
    let (a, b, c, d) = (m[0], m[1], m[3], m[4]);
    match (a.signum(), b.signum(), c.signum(), d.signum()) {
        (0, 1, -1, 0) => 90,
        (-1, 0, 0, -1) => 180,
        (0, -1, 1, 0) => 270,
        _ => 0,
    }
}

/// Check the sample tables of a progressive MP4 before iterating them: counts within the
/// limits and consistent with the file's size (a "sample-count bomb" fails here).
fn check_tables(moov: &MoovBox, movie: &Movie, len: u64, limits: &Limits) -> Result<(), JobError> {
    for trak in &moov.trak_boxes {
        let id = trak.tkhd_box.track_id;
        if id != movie.video.track_id && Some(id) != movie.audio.as_ref().map(|a| a.track_id) {
            continue;
        }
        let stbl = &trak.mdia_box.minf_box.stbl_box;
        let count: u64 = stbl
            .stts_box
            .entries
            .iter()
            .map(|e| u64::from(e.sample_count))
            .sum();
        let max = if id == movie.video.track_id {
            limits.max_frames
        } else {
            limits.max_frames.saturating_mul(4)
        };
        if count > max {
            return Err(JobError::limit("max_frames", count, max));
        }
        if let StszBox::Fixed {
            sample_size,
            sample_count,
        } = &stbl.stsz_box
            && u64::from(sample_size.get()) * u64::from(*sample_count) > len
        {
            return Err(corrupt(format!(
                "the sample table claims {sample_count} samples of {sample_size} bytes, more than the file holds ({len} bytes)"
            )));
        }
        let last_chunk = match &stbl.stco_or_co64_box {
            shiguredo_mp4::Either::A(b) => b.chunk_offsets.iter().map(|&o| u64::from(o)).max(),
            shiguredo_mp4::Either::B(b) => b.chunk_offsets.iter().copied().max(),
        };
        if let Some(off) = last_chunk
            && off >= len
        {
            return Err(corrupt(format!(
                "media data for track {id} starts at offset {off}, beyond the end of the file ({len} bytes): the file is truncated"
            )));
        }
    }
    Ok(())
}
