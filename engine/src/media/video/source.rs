//! A video source as the decoder child described it, turned into what the ladder needs:
//! the limits checked (duration, frames, picture size), the container and codec named for
//! the manifest, the display geometry (rotation from the display matrix — kept on the outputs
//! — and non-square pixels, which the ladder squares), the size the child should deliver
//! frames at, and the AAC sample entry of the audio the outputs carry.

use crate::config::Limits;
use crate::error::JobError;
use crate::media::decoder::protocol::{AudioInfo, Header, VideoInfo};
use shiguredo_mp4::boxes::{AudioSampleEntryFields, EsdsBox, Mp4aBox, SampleEntry};
use shiguredo_mp4::descriptors::{
    DecoderConfigDescriptor, DecoderSpecificInfo, EsDescriptor, SlConfigDescriptor,
};
use shiguredo_mp4::{FixedPointNumber, Uint};

/// The identity display matrix (16.16 / 2.30 fixed point).
pub const IDENTITY: [i32; 9] = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000];

/// Clockwise rotation a display matrix encodes (16.16 fixed point `a b u / c d v / x y w`):
/// 0, 90, 180 or 270 (mirroring and other transforms count as 0).
pub fn rotation(m: &[i32; 9]) -> u16 {
    let (a, b, c, d) = (m[0], m[1], m[3], m[4]);
    match (a.signum(), b.signum(), c.signum(), d.signum()) {
        (0, 1, -1, 0) => 90,
        (-1, 0, 0, -1) => 180,
        (0, -1, 1, 0) => 270,
        _ => 0,
    }
}

/// What the ladder needs to know about a decoded video source.
#[derive(Debug, Clone)]
pub struct Source {
    /// The header as the child sent it.
    pub header: Header,
    /// Its video stream.
    pub video: VideoInfo,
    /// Container name for the manifest (`mp4`, `mov`, `webm`, `mkv`, `ts`, `avi`).
    pub container: &'static str,
    /// Display matrix kept on the outputs.
    pub matrix: [i32; 9],
    /// Clockwise display rotation.
    pub rotation: u16,
    /// Stored size with square pixels (the width stretched or squeezed by the pixel aspect).
    pub square: (u32, u32),
    /// Duration, seconds.
    pub duration_s: f64,
    /// Frames expected.
    pub frames: u64,
    /// Frames per second.
    pub fps: f64,
}

impl Source {
    /// Check `header` against `limits` and describe it; `sniffed` is the container the
    /// engine's own probe recognised (MOV and MP4 share FFmpeg's demuxer).
    pub fn new(header: Header, limits: &Limits, sniffed: &'static str) -> Result<Source, JobError> {
        let video = header
            .video
            .clone()
            .ok_or_else(|| JobError::CorruptInput("the file holds no video stream".into()))?;
        let (w, h) = (video.width, video.height);
        if w == 0 || h == 0 {
            return Err(JobError::CorruptInput(
                "the video has no picture size".into(),
            ));
        }
        if w.max(h) > limits.max_dimension {
            return Err(JobError::limit(
                "max_dimension",
                u64::from(w.max(h)),
                u64::from(limits.max_dimension),
            ));
        }
        let pixels = u64::from(w) * u64::from(h);
        if pixels > limits.max_pixels {
            return Err(JobError::limit("max_pixels", pixels, limits.max_pixels));
        }
        let fps = if video.fps > 0.0 { video.fps } else { 30.0 };
        let duration_s = video
            .scanned_duration_s
            .or(header.duration_s)
            .filter(|d| d.is_finite() && *d > 0.0)
            .unwrap_or_else(|| video.frames as f64 / fps);
        if duration_s > limits.max_duration_s as f64 {
            return Err(JobError::limit(
                "max_duration_s",
                duration_s.ceil() as u64,
                limits.max_duration_s,
            ));
        }
        let frames = if video.frames > 0 {
            video.frames
        } else {
            (duration_s * fps).round() as u64
        };
        if frames > limits.max_frames {
            return Err(JobError::limit("max_frames", frames, limits.max_frames));
        }
        let matrix = video.display_matrix.unwrap_or(IDENTITY);
        let (sn, sd) = video.sar;
        let square = if sn > 0 && sd > 0 && sn != sd {
            let sw = (f64::from(w) * f64::from(sn) / f64::from(sd))
                .round()
                .max(2.0) as u32;
            (sw, h)
        } else {
            (w, h)
        };
        Ok(Source {
            container: container_name(&header.demuxer, sniffed),
            rotation: rotation(&matrix),
            matrix,
            square,
            duration_s,
            frames,
            fps,
            video,
            header,
        })
    }

    /// Displayed size: square pixels, rotation applied.
    pub fn display_size(&self) -> (u32, u32) {
        let (w, h) = self.square;
        if self.rotation % 180 == 90 {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// The audio the outputs carry: its sample entry and timescale (its sample rate).
    pub fn audio_entry(&self) -> Option<(SampleEntry, u32)> {
        let a = self.header.audio.as_ref()?;
        if a.asc.is_empty() || a.rate == 0 {
            return None;
        }
        Some((SampleEntry::Mp4a(mp4a(a)), a.rate))
    }
}

/// An `mp4a` sample entry carrying `a`'s AudioSpecificConfig as is (AAC-LC, HE-AAC …).
fn mp4a(a: &AudioInfo) -> Mp4aBox {
    Mp4aBox {
        audio: AudioSampleEntryFields {
            data_reference_index: AudioSampleEntryFields::DEFAULT_DATA_REFERENCE_INDEX,
            channelcount: a.out_channels.clamp(1, 8) as u16,
            samplesize: AudioSampleEntryFields::DEFAULT_SAMPLESIZE,
            samplerate: FixedPointNumber::new(u16::try_from(a.rate).unwrap_or(0), 0),
        },
        esds_box: EsdsBox {
            es: EsDescriptor {
                es_id: EsDescriptor::MIN_ES_ID,
                stream_priority: EsDescriptor::LOWEST_STREAM_PRIORITY,
                depends_on_es_id: None,
                url_string: None,
                ocr_es_id: None,
                dec_config_descr: DecoderConfigDescriptor {
                    object_type_indication:
                        DecoderConfigDescriptor::OBJECT_TYPE_INDICATION_AUDIO_ISO_IEC_14496_3,
                    stream_type: DecoderConfigDescriptor::STREAM_TYPE_AUDIO,
                    up_stream: DecoderConfigDescriptor::UP_STREAM_FALSE,
                    buffer_size_db: Uint::new(0),
                    max_bitrate: 0,
                    avg_bitrate: 0,
                    dec_specific_info: Some(DecoderSpecificInfo {
                        payload: a.asc.clone(),
                    }),
                },
                sl_config_descr: SlConfigDescriptor,
            },
        },
        unknown_boxes: Vec::new(),
    }
}

/// Our name for a container: FFmpeg's demuxer name, refined by what the probe saw.
fn container_name(demuxer: &str, sniffed: &'static str) -> &'static str {
    match demuxer.split(',').next().unwrap_or("") {
        "mov" => match sniffed {
            "mov" => "mov",
            _ => "mp4",
        },
        "matroska" => match sniffed {
            "webm" => "webm",
            _ => "mkv",
        },
        "mpegts" => "ts",
        "avi" => "avi",
        _ => sniffed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_reads_the_tkhd_matrix() {
        assert_eq!(rotation(&IDENTITY), 0);
        assert_eq!(
            rotation(&[0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x4000_0000]),
            90
        );
        assert_eq!(
            rotation(&[-0x10000, 0, 0, 0, -0x10000, 0, 0, 0, 0x4000_0000]),
            180
        );
        assert_eq!(
            rotation(&[0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x4000_0000]),
            270
        );
    }

    #[test]
    fn anamorphic_pixels_are_squared_and_limits_refuse() {
        let h = Header {
            demuxer: "mpegts".into(),
            duration_s: Some(2.0),
            video: Some(VideoInfo {
                codec: "mpeg2video".into(),
                width: 720,
                height: 576,
                sar: (16, 15),
                fps: 25.0,
                frames: 50,
                ..VideoInfo::default()
            }),
            ..Header::default()
        };
        let s = Source::new(h.clone(), &Limits::default(), "ts").expect("source");
        assert_eq!((s.square, s.container, s.frames), ((768, 576), "ts", 50));
        let tight = Limits {
            max_duration_s: 1,
            ..Limits::default()
        };
        let e = Source::new(h, &tight, "ts").expect_err("too long");
        assert_eq!(e.code(), "limit_exceeded");
    }
}
