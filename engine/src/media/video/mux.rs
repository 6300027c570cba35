//! Writing what the encoders produce: an MP4 per rung with the `moov` first (space is
//! reserved up front from the known sample counts, so the file plays while downloading) and
//! the source's display matrix and audio edit list kept; and HLS as CMAF fMP4 — an init
//! segment plus `.m4s` media segments cut on the aligned keyframes, and the playlists.
//! Samples go straight to disk; only the current HLS segment is held in memory.

use super::codec::Config;
use crate::error::JobError;
use shiguredo_mp4::boxes::{EdtsBox, ElstBox, ElstEntry, FtypBox, MoovBox, SampleEntry};
use shiguredo_mp4::mux::{
    Fmp4SegmentMuxer, Mp4FileMuxer, Mp4FileMuxerOptions, Sample, estimate_maximum_moov_box_size,
};
use shiguredo_mp4::{Decode, Encode, FixedPointNumber, TrackKind};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

fn err(message: impl std::fmt::Display) -> JobError {
    JobError::Encode {
        format: "mp4",
        message: message.to_string(),
    }
}

fn io_err(e: std::io::Error) -> JobError {
    JobError::Storage {
        message: format!("writing output: {e}"),
        class: crate::error::ErrorClass::Transient,
    }
}

/// The `avc1` sample entry for an encoder's parameter sets.
pub fn avc1_entry(sps: &[Vec<u8>], pps: &[Vec<u8>]) -> Result<SampleEntry, JobError> {
    let config = shiguredo_mp4::bitstream::h264::H264SampleEntryConfig {
        length_size: shiguredo_mp4::bitstream::h264::LengthSize::FourBytes,
    };
    shiguredo_mp4::bitstream::h264::build_avc1_box(sps, pps, &config)
        .map(SampleEntry::Avc1)
        .map_err(err)
}

/// The `av01` sample entry for an AV1 stream with these configOBUs (its sequence header).
pub fn av01_entry(config_obus: &[u8]) -> Result<SampleEntry, JobError> {
    let config = shiguredo_mp4::bitstream::av1::Av1SampleEntryConfig {
        initial_presentation_delay_minus_one: None,
    };
    shiguredo_mp4::bitstream::av1::build_av01_box_from_config_obus(config_obus, &config)
        .map(SampleEntry::Av01)
        .map_err(err)
}

/// The sample entry for an encoder's configuration.
pub fn sample_entry(config: &Config) -> Result<SampleEntry, JobError> {
    match config {
        Config::Avc { sps, pps } => avc1_entry(sps, pps),
        Config::Av1(obus) => av01_entry(obus),
    }
}

/// Track details the outputs carry over from the source.
#[derive(Debug, Clone)]
pub struct Carry {
    /// The video track's display matrix.
    pub matrix: [i32; 9],
    /// Audio: sample entry, timescale and the edit list's start (priming samples to skip, or
    /// when negative, a delay before the audio begins).
    pub audio: Option<(SampleEntry, NonZeroU32, i64)>,
}

/// Set the display matrix and the audio edit list on a `moov` built by a muxer.
fn patch_moov(moov: &mut MoovBox, carry: &Carry) {
    let movie_ts = u64::from(moov.mvhd_box.timescale.get());
    for trak in &mut moov.trak_boxes {
        match &trak.mdia_box.hdlr_box.handler_type {
            b"vide" => trak.tkhd_box.matrix = carry.matrix,
            b"soun" => {
                if let Some((_, ts, start)) = &carry.audio
                    && *start != 0
                {
                    let to_movie =
                        |samples: u64| samples.saturating_mul(movie_ts) / u64::from(ts.get());
                    let rate = FixedPointNumber::new(1, 0);
                    let entries = if *start > 0 {
                        // Skip the priming samples.
                        let skip = to_movie(*start as u64);
                        vec![ElstEntry {
                            edit_duration: trak.tkhd_box.duration.saturating_sub(skip),
                            media_time: *start,
                            media_rate: rate,
                        }]
                    } else {
                        // The audio begins after the video: an empty edit first.
                        let delay = to_movie(start.unsigned_abs());
                        vec![
                            ElstEntry {
                                edit_duration: delay,
                                media_time: -1,
                                media_rate: rate,
                            },
                            ElstEntry {
                                edit_duration: trak.tkhd_box.duration,
                                media_time: 0,
                                media_rate: rate,
                            },
                        ]
                    };
                    trak.edts_box = Some(EdtsBox {
                        elst_box: Some(ElstBox { entries }),
                        unknown_boxes: Vec::new(),
                    });
                }
            }
            _ => {}
        }
    }
}

/// One progressive MP4, written as samples arrive.
pub struct Mp4Writer {
    file: BufWriter<File>,
    muxer: Mp4FileMuxer,
    pos: u64,
    video_entry: Option<SampleEntry>,
    audio_entry_sent: bool,
    video_timescale: NonZeroU32,
    carry: Carry,
    path: PathBuf,
}

impl std::fmt::Debug for Mp4Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mp4Writer")
            .field("path", &self.path)
            .finish()
    }
}

impl Mp4Writer {
    /// Create `path`, reserving room at the front for a `moov` of this many samples.
    pub fn create(
        path: &Path,
        video_samples: u64,
        audio_samples: u64,
        video_timescale: NonZeroU32,
        carry: Carry,
    ) -> Result<Self, JobError> {
        let reserve =
            estimate_maximum_moov_box_size(&[video_samples as usize, audio_samples as usize])
                + 4096;
        let muxer = Mp4FileMuxer::with_options(Mp4FileMuxerOptions {
            reserved_moov_box_size: reserve,
            ..Default::default()
        })
        .map_err(err)?;
        let mut file = BufWriter::with_capacity(256 * 1024, File::create(path).map_err(io_err)?);
        let head = muxer.initial_boxes_bytes();
        file.write_all(head).map_err(io_err)?;
        Ok(Mp4Writer {
            pos: head.len() as u64,
            file,
            muxer,
            video_entry: None,
            audio_entry_sent: false,
            video_timescale,
            carry,
            path: path.to_path_buf(),
        })
    }

    /// Append one encoded picture lasting `duration` ticks of the video timescale.
    pub fn video(
        &mut self,
        data: &[u8],
        keyframe: bool,
        duration: u32,
        entry: &SampleEntry,
    ) -> Result<(), JobError> {
        let new_entry = self.video_entry.as_ref() != Some(entry);
        if new_entry {
            self.video_entry = Some(entry.clone());
        }
        self.append(
            Sample {
                track_kind: TrackKind::Video,
                sample_entry: new_entry.then(|| entry.clone()),
                keyframe,
                timescale: self.video_timescale,
                duration,
                composition_time_offset: None,
                data_offset: self.pos,
                data_size: data.len(),
            },
            data,
        )
    }

    /// Where the audio starts relative to the video (see [`Carry::audio`]), once known.
    pub fn set_audio_start(&mut self, start: i64) {
        if let Some(a) = self.carry.audio.as_mut() {
            a.2 = start;
        }
    }

    /// Append one audio frame, copied from the source.
    pub fn audio(&mut self, data: &[u8], duration: u32) -> Result<(), JobError> {
        let Some((entry, timescale, _)) = &self.carry.audio else {
            return Ok(());
        };
        let sample = Sample {
            track_kind: TrackKind::Audio,
            sample_entry: (!self.audio_entry_sent).then(|| entry.clone()),
            keyframe: true,
            timescale: *timescale,
            duration,
            composition_time_offset: None,
            data_offset: self.pos,
            data_size: data.len(),
        };
        self.audio_entry_sent = true;
        self.append(sample, data)
    }

    fn append(&mut self, sample: Sample, data: &[u8]) -> Result<(), JobError> {
        self.file.write_all(data).map_err(io_err)?;
        self.muxer.append_sample(&sample).map_err(err)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Write the `moov` (in the reserved space when it fits, else at the end) and close.
    /// Returns the file's size.
    pub fn finish(mut self) -> Result<u64, JobError> {
        let fin = self.muxer.finalize().map_err(err)?.clone();
        let mut moov = fin.moov_box().clone();
        patch_moov(&mut moov, &self.carry);
        let moov_bytes = moov.encode_to_vec().map_err(err)?;
        let pairs: Vec<(u64, Vec<u8>)> = fin
            .offset_and_bytes_pairs()
            .map(|(o, b)| (o, b.to_vec()))
            .collect();
        let mut file = self.file.into_inner().map_err(|e| io_err(e.into_error()))?;
        for (offset, bytes) in pairs {
            let bytes = if offset == 0 && fin.is_faststart_enabled() {
                // ftyp + moov + free: put our moov in and re-pad.
                let ftyp_len = bytes
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
                let room = bytes.len();
                let pad = room
                    .checked_sub(ftyp_len + moov_bytes.len())
                    .filter(|p| *p == 0 || *p >= 8)
                    .ok_or_else(|| err("the reserved moov space is too small"))?;
                let mut head = bytes[..ftyp_len].to_vec();
                head.extend_from_slice(&moov_bytes);
                if pad > 0 {
                    head.extend_from_slice(&(pad as u32).to_be_bytes());
                    head.extend_from_slice(b"free");
                    head.resize(room, 0);
                }
                head
            } else if !fin.is_faststart_enabled() && bytes.get(4..8) == Some(b"moov") {
                moov_bytes.clone()
            } else {
                bytes
            };
            file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
            file.write_all(&bytes).map_err(io_err)?;
        }
        file.sync_data().map_err(io_err)?;
        file.metadata().map(|m| m.len()).map_err(io_err)
    }
}

/// One HLS segment's facts.
#[derive(Debug, Clone)]
pub struct Segment {
    /// File name (`00001.m4s`).
    pub name: String,
    /// Seconds.
    pub duration: f64,
    /// Bytes.
    pub bytes: u64,
}

/// A CMAF fMP4 stream (one track) cut into segments, plus its media playlist.
pub struct HlsWriter {
    dir: PathBuf,
    muxer: Fmp4SegmentMuxer,
    kind: TrackKind,
    timescale: NonZeroU32,
    segment_ticks: u64,
    samples: Vec<Sample>,
    payload: Vec<u8>,
    seg_start: Option<u64>,
    next_cut: u64,
    entry: Option<SampleEntry>,
    carry: Carry,
    /// Segments written so far.
    pub segments: Vec<Segment>,
}

impl std::fmt::Debug for HlsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsWriter").field("dir", &self.dir).finish()
    }
}

impl HlsWriter {
    /// Segments of about `segment_s` seconds into `dir` (created).
    pub fn new(
        dir: &Path,
        kind: TrackKind,
        timescale: NonZeroU32,
        segment_s: f64,
        carry: Carry,
    ) -> Result<Self, JobError> {
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let segment_ticks = (segment_s * f64::from(timescale.get())).round() as u64;
        Ok(HlsWriter {
            dir: dir.to_path_buf(),
            muxer: Fmp4SegmentMuxer::new().map_err(err)?,
            kind,
            timescale,
            segment_ticks: segment_ticks.max(1),
            samples: Vec::new(),
            payload: Vec::new(),
            seg_start: None,
            next_cut: segment_ticks.max(1),
            entry: None,
            carry,
            segments: Vec::new(),
        })
    }

    /// Where the audio starts relative to the video (see [`Carry::audio`]), once known.
    pub fn set_audio_start(&mut self, start: i64) {
        if let Some(a) = self.carry.audio.as_mut() {
            a.2 = start;
        }
    }

    /// Add a sample starting at `t` ticks. Video segments are cut on keyframes once a segment
    /// is long enough; audio segments at the same time grid.
    pub fn push(
        &mut self,
        data: &[u8],
        keyframe: bool,
        t: u64,
        duration: u32,
        entry: &SampleEntry,
    ) -> Result<(), JobError> {
        let cut = match self.kind {
            TrackKind::Video => keyframe && t + u64::from(duration) / 2 >= self.next_cut,
            _ => t >= self.next_cut,
        };
        if cut && !self.samples.is_empty() {
            self.flush()?;
            while self.next_cut <= t + u64::from(duration) / 2 {
                self.next_cut += self.segment_ticks;
            }
        }
        let new_entry = self.entry.as_ref() != Some(entry);
        if new_entry {
            self.entry = Some(entry.clone());
        }
        self.seg_start.get_or_insert(t);
        self.samples.push(Sample {
            track_kind: self.kind,
            sample_entry: new_entry.then(|| entry.clone()),
            keyframe,
            timescale: self.timescale,
            duration,
            composition_time_offset: None,
            data_offset: self.payload.len() as u64,
            data_size: data.len(),
        });
        self.payload.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), JobError> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let head = self
            .muxer
            .create_media_segment_metadata(&self.samples)
            .map_err(err)?;
        let name = format!("{:05}.m4s", self.segments.len() + 1);
        let mut f = File::create(self.dir.join(&name)).map_err(io_err)?;
        f.write_all(&head).map_err(io_err)?;
        f.write_all(&self.payload).map_err(io_err)?;
        let ticks: u64 = self.samples.iter().map(|s| u64::from(s.duration)).sum();
        self.segments.push(Segment {
            name,
            duration: ticks as f64 / f64::from(self.timescale.get()),
            bytes: (head.len() + self.payload.len()) as u64,
        });
        self.samples.clear();
        self.payload.clear();
        self.seg_start = None;
        Ok(())
    }

    /// Write the last segment, `init.mp4` and `index.m3u8`.
    pub fn finish(mut self) -> Result<Vec<Segment>, JobError> {
        self.flush()?;
        let init = self.muxer.init_segment_bytes().map_err(err)?;
        let init = patch_init(&init, &self.carry)?;
        std::fs::write(self.dir.join("init.mp4"), &init).map_err(io_err)?;
        std::fs::write(self.dir.join("index.m3u8"), media_playlist(&self.segments))
            .map_err(io_err)?;
        Ok(self.segments)
    }
}

/// Patch the display matrix into an init segment (`ftyp` + `moov`).
fn patch_init(init: &[u8], carry: &Carry) -> Result<Vec<u8>, JobError> {
    let (_, ftyp_len) = FtypBox::decode(init).map_err(err)?;
    let (mut moov, _) = MoovBox::decode(&init[ftyp_len..]).map_err(err)?;
    patch_moov(&mut moov, carry);
    let mut out = init[..ftyp_len].to_vec();
    out.extend_from_slice(&moov.encode_to_vec().map_err(err)?);
    Ok(out)
}

/// A VOD media playlist over `segments` (init segment `init.mp4`).
pub fn media_playlist(segments: &[Segment]) -> String {
    let target = segments
        .iter()
        .map(|s| s.duration.round() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n"
    );
    for s in segments {
        out.push_str(&format!("#EXTINF:{:.6},\n{}\n", s.duration, s.name));
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// One variant of the master playlist.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Directory of its media playlist, relative to the master.
    pub dir: String,
    /// Picture size.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// RFC 6381 codec string of the video (`avc1.4d4c1f`).
    pub codec: String,
    /// Peak and average bits per second of video + audio.
    pub peak_bps: u64,
    /// See `peak_bps`.
    pub average_bps: u64,
    /// Frames per second.
    pub fps: f64,
}

/// The audio rendition of the master playlist.
#[derive(Debug, Clone)]
pub struct AudioRendition {
    /// Directory of its media playlist.
    pub dir: String,
    /// RFC 6381 codec string (`mp4a.40.2`).
    pub codec: String,
}

/// The RFC 6381 codec string of a sample entry (`avc1.4d4c1f`, `mp4a.40.2`).
pub fn codec_string(entry: &SampleEntry) -> Result<String, JobError> {
    shiguredo_mp4::codec_string::from_sample_entry(entry).map_err(err)
}

/// The master playlist: one `EXT-X-STREAM-INF` per rung, audio as a separate rendition.
pub fn master_playlist(variants: &[Variant], audio: Option<&AudioRendition>) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(AudioRendition { dir, .. }) = audio {
        out.push_str(&format!(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"Audio\",DEFAULT=YES,AUTOSELECT=YES,URI=\"{dir}/index.m3u8\"\n"
        ));
    }
    for v in variants {
        let codecs = match audio {
            Some(a) => format!("{},{}", v.codec, a.codec),
            None => v.codec.clone(),
        };
        out.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{codecs}\",FRAME-RATE={:.3}{}\n{}/index.m3u8\n",
            v.peak_bps.max(1),
            v.average_bps.max(1),
            v.width,
            v.height,
            v.fps,
            if audio.is_some() { ",AUDIO=\"audio\"" } else { "" },
            v.dir
        ));
    }
    out
}
