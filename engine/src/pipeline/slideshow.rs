//! Images to video as a job: several image sources become one slideshow — probed and checked
//! against the limits first (all of them, before any frame is made), then decoded one at a
//! time as the frames reach them, letterboxed into the profile's slideshow size, watermarked
//! once, and encoded through the same streaming ladder as video (a single rung named
//! `slideshow`, plus HLS, poster and sprite as the profile's video settings say).

use super::video::collect;
use super::{JobResult, OutputFile, Processor, Run, finish, hash_file};
use crate::config::Profile;
use crate::error::JobError;
use crate::manifest;
use crate::media::decode;
use crate::media::decoder::picture::Picture;
use crate::media::probe::{self, Probe};
use crate::media::video::frame::Frame;
use crate::media::video::{slideshow, transcode};
use crate::plugin::catalog::CatalogSource;
use crate::plugin::types;
use std::path::Path;
use std::time::Instant;

/// One picture of a slideshow.
#[derive(Debug, Clone)]
pub struct Slide<'a> {
    /// Where it came from (`file://…`, `s3://…`).
    pub uri: String,
    /// Its storage version.
    pub etag: String,
    /// Its bytes on local disk.
    pub path: &'a Path,
}

/// A job whose sources are several images, to be stitched into one video.
#[derive(Debug, Clone)]
pub struct Slideshow<'a> {
    /// Job id.
    pub id: String,
    /// The pictures, in order.
    pub slides: Vec<Slide<'a>>,
    /// Profile name (its `video` table sets the size, timing and bitrate).
    pub profile: String,
    /// Cancellation, progress and scratch space.
    pub control: &'a crate::job::control::JobControl,
}

/// The name of the slideshow's one rung (its MP4 is `slideshow.mp4`).
pub const RUNG: &str = "slideshow";

impl Processor {
    /// Run an images-to-video job. Never panics on bad input; failures become a `failed`
    /// manifest naming the picture at fault.
    pub fn run_slideshow(&self, job: &Slideshow<'_>) -> JobResult {
        if let CatalogSource::Live(_) = self.catalog {
            // The job's snapshot: its watermarker comes from one catalog, start to end.
            return Processor::new(self.config.clone(), self.catalog()).run_slideshow(job);
        }
        let started = Instant::now();
        let first = job.slides.first();
        let uri = first.map(|s| s.uri.clone()).unwrap_or_default();
        let mut run = Run::new(&uri, first.map_or("", |s| s.etag.as_str()), job.control);
        let outcome = self.slideshow_stages(job, &mut run);
        if let Some(s) = run.sources.first() {
            run.source = s.clone();
        }
        finish(&job.id, &uri, &job.profile, run, outcome, started)
    }

    fn slideshow_stages(
        &self,
        job: &Slideshow<'_>,
        run: &mut Run,
    ) -> Result<Vec<OutputFile>, JobError> {
        let profile = self
            .config
            .profile(&job.profile)
            .ok_or_else(|| JobError::UnknownProfile(self.config.unknown_profile(&job.profile)))?;
        if job.slides.is_empty() {
            return Err(JobError::UnsupportedFormat(
                "images to video needs at least one image".into(),
            ));
        }
        let v = &profile.video;
        let timing = slideshow::Timing {
            fps: v.slideshow_fps,
            image_s: v.slideshow_image_s,
            crossfade_s: v.slideshow_crossfade_s,
        };
        let limits = self.config.limits;
        let (frames, duration_s) = length(&timing, job.slides.len(), &limits)?;
        // Every picture is checked before any frame is made: a bad tenth image fails the job
        // in milliseconds, not after nine images' worth of encoding.
        let probes = probe_slides(job, run, &limits)?;
        run.notes.extend(notes(&timing, job.slides.len(), profile));
        let rung = rung_for(profile);
        let (width, height) = (rung.width, rung.height);
        let info = types::MediaInfo {
            uri: run.source.uri.clone(),
            kind: types::MediaKind::Video,
            format: "mp4".into(),
            codec: Some("h264".into()),
            width,
            height,
            orientation: 1,
            duration_s: Some(duration_s),
            fps: Some(f64::from(timing.fps)),
            has_audio: false,
            bytes: run.sources.iter().map(|s| s.bytes).sum(),
        };
        let rungs = vec![rung];
        let overlays = self.video_overlays(run, profile, &info, &rungs, 0)?;
        let input = transcode::Input {
            timescale: timing.timescale(),
            matrix: crate::media::video::source::IDENTITY,
            width,
            height,
            rotation: 0,
            fps: f64::from(timing.fps),
            base_fps: f64::from(timing.fps),
            frames,
            duration_s,
            audio: None,
            audio_samples: 0,
        };
        let dir = run.scratch_dir()?;
        let decode_ms = std::cell::Cell::new(0.0);
        let make: transcode::MakeFrames<'_> = Box::new(|emit| {
            let mut resizer = fast_image_resize::Resizer::new();
            let load = |i: usize| -> Result<Frame, JobError> {
                let t = Instant::now();
                let (slide, p) = (&job.slides[i], &probes[i]);
                let need = Some((width, height));
                let picture = if p.format.in_child() {
                    Picture::open(slide.path, p, &slide.uri, &limits).and_then(Picture::decode)
                } else {
                    decode::decode(slide.path, p, &limits, need)
                }
                .map_err(|e| at_slide(e, i, &slide.uri))?;
                let frame = slideshow::letterbox(&mut resizer, &picture.pixels, width, height);
                decode_ms.set(decode_ms.get() + t.elapsed().as_secs_f64() * 1e3);
                frame
            };
            slideshow::make(job.slides.len(), &timing, load, emit)
        });
        let out = run.timings.time("transcode", || {
            transcode::run(
                &input,
                transcode::Frames::Make(make),
                &rungs,
                &overlays,
                v,
                &dir,
                &|n| {
                    job.control.check()?;
                    job.control
                        .progress("transcode", n as f64 / frames.max(1) as f64);
                    Ok(())
                },
            )
        })?;
        *run.timings.0.entry("decode".into()).or_default() += decode_ms.get();
        run.timings.time("hash", || collect(&dir, &out, 0))
    }
}

/// The one H.264 rung a slideshow is made into: the profile's slideshow size, at the bitrate
/// of its largest rung that fits that size (else its smallest rung's), with its quality
/// target.
fn rung_for(profile: &Profile) -> transcode::RungPlan {
    let v = &profile.video;
    let (width, height) = (v.slideshow_width, v.slideshow_height);
    let short = width.min(height);
    let bitrate_bps = v
        .ladder
        .iter()
        .filter(|r| r.size <= short)
        .max_by_key(|r| r.size)
        .or_else(|| v.ladder.iter().min_by_key(|r| r.size))
        .map_or(3_000_000, |r| r.bitrate_kbps.saturating_mul(1000));
    transcode::RungPlan {
        name: RUNG.into(),
        width,
        height,
        bitrate_bps,
        quality: v.quality_target(),
        probe_bps: None,
        codec: crate::config::VideoCodec::H264,
    }
}

/// Name the picture an error is about (same class and code, the message says which).
fn at_slide(e: JobError, i: usize, uri: &str) -> JobError {
    let which = format!("image {} of the slideshow ({uri})", i + 1);
    match e {
        JobError::UnsupportedFormat(m) => JobError::UnsupportedFormat(format!("{which}: {m}")),
        JobError::UnsupportedCodec(m) => JobError::UnsupportedCodec(format!("{which}: {m}")),
        JobError::CorruptInput(m) => JobError::CorruptInput(format!("{which}: {m}")),
        JobError::DecoderLimit(m) => JobError::DecoderLimit(format!("{which}: {m}")),
        JobError::Storage { message, class } => JobError::Storage {
            message: format!("{which}: {message}"),
            class,
        },
        other => {
            tracing::warn!(image = i + 1, %uri, "slideshow image refused");
            other
        }
    }
}

/// The slideshow's frame count and seconds, within the limits.
fn length(
    timing: &slideshow::Timing,
    slides: usize,
    limits: &crate::config::Limits,
) -> Result<(u64, f64), JobError> {
    let frames = timing.frames(slides);
    if frames > limits.max_frames {
        return Err(JobError::limit("max_frames", frames, limits.max_frames));
    }
    let duration_s = frames as f64 / f64::from(timing.fps);
    if duration_s > limits.max_duration_s as f64 {
        return Err(JobError::limit(
            "max_duration_s",
            duration_s.ceil() as u64,
            limits.max_duration_s,
        ));
    }
    Ok((frames, duration_s))
}

/// Hash and probe every picture, recording each as a source of the run; the first that is
/// not a picture we read fails the job, named.
fn probe_slides(
    job: &Slideshow<'_>,
    run: &mut Run,
    limits: &crate::config::Limits,
) -> Result<Vec<Probe>, JobError> {
    let mut probes: Vec<Probe> = Vec::new();
    for (i, slide) in job.slides.iter().enumerate() {
        let which = |e: JobError| at_slide(e, i, &slide.uri);
        let (bytes, sha256) = run
            .timings
            .time("hash", || hash_file(slide.path))
            .map_err(which)?;
        let p = run
            .timings
            .time("probe", || {
                let p = probe::probe_file(slide.path, limits)?;
                if p.format.in_child() && p.format.is_image() {
                    // HEIF/AVIF: the decoder child reads the header.
                    return Ok(Picture::open(slide.path, &p, &slide.uri, limits)?.probe);
                }
                Ok(p)
            })
            .map_err(which)?;
        if !p.format.is_image() {
            return Err(which(JobError::UnsupportedFormat(format!(
                "images to video takes images; this is {}",
                p.format.name()
            ))));
        }
        let (w, h) = p.display_size();
        run.sources.push(manifest::Source {
            uri: slide.uri.clone(),
            etag: slide.etag.clone(),
            bytes,
            sha256,
            media: Some(manifest::Media {
                kind: "image".into(),
                format: p.format.name().into(),
                width: w,
                height: h,
                frames: p.frames,
                orientation: p.orientation,
                ..Default::default()
            }),
        });
        probes.push(p);
    }
    Ok(probes)
}

/// What the manifest says about a slideshow: its pictures and timing, and that metadata
/// plugins are not run on them.
fn notes(timing: &slideshow::Timing, slides: usize, profile: &Profile) -> Vec<String> {
    let crossfades = if timing.crossfade_s > 0.0 {
        format!(", {:.1} s crossfades", timing.crossfade_s)
    } else {
        String::new()
    };
    let mut notes = vec![format!(
        "images to video: {slides} images, {:.1} s each{crossfades}",
        timing.image_s
    )];
    if !profile.metadata.is_empty() {
        notes.push(
            "images to video: metadata plugins are not run on the pictures of a slideshow".into(),
        );
    }
    notes
}
