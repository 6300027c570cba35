//! The rate probe behind content-aware AV1 rungs (`bitrate = "auto"`): before the ladder, a
//! few stretches of the source — one keyframe interval each, spread over it ([`windows`]) —
//! are decoded once more and encoded by SVT-AV1 at each such rung's size at the quality
//! target's constant rate factor ([`super::codec::av1_crf`]), uncapped. What a probe spends a
//! second tells easy content from hard ([`choose`]; the rung then takes its rate from
//! `RungPlan::rate`): content that reaches the target under the rung's cap is encoded at that
//! constant rate factor, capped — SVT-AV1 spends only what the picture needs, ~20 % under a
//! fixed rung's bits for the same PSNR on a detailed pan — and content that needs more than
//! the cap is encoded exactly as a fixed rung, in VBR at the cap, because SVT-AV1's capped CRF
//! held to a cap it cannot meet overshoots it for a lower PSNR (measured on temporal noise).
//! Why not a quantiser floor on a VBR encode (the first design): SVT-AV1 1.4 applies it to
//! every layer of its picture hierarchy, which cost ~0.7 dB at equal bits.

use super::codec::{EncoderSpec, Rate, RungEncoder};
use super::frame::{Frame, Scaler};
use super::transcode::RungPlan;
use crate::config::VideoCodec;
use crate::error::JobError;
use crate::media::decoder::protocol::Window;
use crate::media::decoder::{Event, Session};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Source seconds per sample window (a window in every this many, at least one).
const SECONDS_PER_WINDOW: f64 = 15.0;
/// Most windows: enough to see a long video's changes, few enough to stay cheap.
const MAX_WINDOWS: usize = 5;
/// Ticks per second of the times the probe gives its encoders.
const TIMESCALE: u32 = 90_000;

/// The stretches to sample from a source lasting `duration_s` (unknown: 0): one keyframe
/// interval (`keyframe_s`) in every 15 s of it, at least one and at most five, each centred
/// in its equal part of the source.
pub fn windows(duration_s: f64, keyframe_s: f64) -> Vec<Window> {
    let gop = if keyframe_s.is_finite() {
        keyframe_s.max(0.5)
    } else {
        2.0
    };
    if !duration_s.is_finite() || duration_s <= 0.0 {
        return vec![Window {
            from_s: 0.0,
            seconds: gop,
        }];
    }
    let len = gop.min(duration_s);
    let n = ((duration_s / SECONDS_PER_WINDOW) as usize).clamp(1, MAX_WINDOWS);
    (0..n)
        .map(|k| {
            let centre = (k as f64 + 0.5) / n as f64 * duration_s;
            Window {
                from_s: (centre - len / 2.0).clamp(0.0, duration_s - len),
                seconds: len,
            }
        })
        .collect()
}

/// Whether `r` takes its bitrate from the probe: an AV1 rung with a quality target.
pub fn wanted(r: &RungPlan) -> bool {
    r.codec == VideoCodec::Av1 && r.quality.is_some()
}

/// How the probe encodes: as the rungs will.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The rungs' frame rate.
    pub fps: f64,
    /// Seconds between keyframes.
    pub keyframe_s: f64,
    /// SVT-AV1 preset.
    pub av1_preset: u8,
}

/// Encode the pictures `session` sends (the [`windows`], `sample_s` seconds in all, at the
/// size of the largest rung [`wanted`]) for every rung [`wanted`] and set its `probe_bps`:
/// what its probe encode spent a second. A probe stops as soon as it has spent more than a
/// hard rung's share of the whole sample (its answer is then known, and hard content is where
/// a probe costs most). `tick` is called before each picture (an `Err`, a cancel, stops the
/// probe with it).
pub fn choose(
    session: &mut Session,
    rungs: &mut [RungPlan],
    s: Settings,
    sample_s: f64,
    tick: &dyn Fn() -> Result<(), JobError>,
) -> Result<(), JobError> {
    let targets: Vec<usize> = (0..rungs.len()).filter(|&i| wanted(&rungs[i])).collect();
    let measured = std::thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for &i in &targets {
            let (tx, rx) = sync_channel::<Arc<Frame>>(3);
            senders.push(tx);
            let r = &rungs[i];
            handles.push(scope.spawn(move || encode(rx, r, s, sample_s)));
        }
        let fed = feed(session, &senders, tick);
        drop(senders);
        let results: Vec<Result<f64, JobError>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(probe_err("a probe encoder panicked".into())))
            })
            .collect();
        // An encoder's own error first: the feed then only saw it stop.
        let measured = results
            .into_iter()
            .collect::<Result<Vec<f64>, JobError>>()?;
        fed.map(|()| measured)
    })?;
    for (&i, bps) in targets.iter().zip(measured) {
        rungs[i].probe_bps = Some(bps.round().min(f64::from(u32::MAX)) as u32);
    }
    Ok(())
}

fn probe_err(message: String) -> JobError {
    JobError::Encode {
        format: "mp4",
        message: format!("rate probe: {message}"),
    }
}

/// The session's pictures to every probe encoder still going; stops when none is.
fn feed(
    session: &mut Session,
    senders: &[SyncSender<Arc<Frame>>],
    tick: &dyn Fn() -> Result<(), JobError>,
) -> Result<(), JobError> {
    let mut going: Vec<&SyncSender<Arc<Frame>>> = senders.iter().collect();
    while let Some(ev) = session.next_event()? {
        match ev {
            Event::Frame(_, f) => {
                tick()?;
                let f = Arc::new(f);
                // A probe that has its answer (or failed, which its thread reports) is done.
                going.retain(|tx| tx.send(f.clone()).is_ok());
                if going.is_empty() {
                    break;
                }
            }
            Event::Done(_) => break,
            Event::Audio(..) | Event::Picture(..) => {}
        }
    }
    Ok(())
}

/// One rung's probe: its pictures, one frame interval apart (the windows end to end), at the
/// quality target's constant rate factor; bits per second of what came out — or, once more
/// came out than a hard rung's share of the `sample_s`-second sample, that share's rate.
fn encode(
    rx: Receiver<Arc<Frame>>,
    r: &RungPlan,
    s: Settings,
    sample_s: f64,
) -> Result<f64, JobError> {
    let fps = s.fps.clamp(1.0, 240.0);
    let mut enc = RungEncoder::new(&EncoderSpec {
        codec: VideoCodec::Av1,
        width: r.width,
        height: r.height,
        fps,
        timescale: TIMESCALE,
        bitrate_bps: r.bitrate_bps,
        rate: Rate::Constant(r.quality.unwrap_or(9)),
        keyframe_s: s.keyframe_s,
        av1_preset: s.av1_preset,
    })?;
    let step = f64::from(TIMESCALE) / fps;
    let mut scaler = Scaler::new();
    let mut pictures = 0u64;
    let bytes = std::cell::Cell::new(0u64);
    let mut count = |e: super::codec::Encoded, _| {
        bytes.set(bytes.get() + e.data.len() as u64);
        Ok(())
    };
    for f in rx {
        let img = scaler
            .scale(&f, r.width, r.height)
            .map_err(|e| probe_err(format!("resize: {e}")))?;
        let t = (pictures as f64 * step).round() as u64;
        enc.encode(img, t, TIMESCALE, &mut count)?;
        pictures += 1;
        let over_sample = bytes.get() as f64 * 8.0 / sample_s.max(0.1);
        if r.is_hard(over_sample) {
            return Ok(over_sample);
        }
    }
    enc.finish(&mut count)?;
    if pictures == 0 {
        return Err(probe_err("the sample held no picture".into()));
    }
    Ok(bytes.get() as f64 * 8.0 * fps / pictures as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_a_keyframe_interval_each_spread_over_the_source() {
        let w = windows(10.0, 2.0);
        assert_eq!(
            w,
            vec![Window {
                from_s: 4.0,
                seconds: 2.0
            }]
        );
        let w = windows(60.0, 2.0);
        let starts: Vec<f64> = w.iter().map(|w| w.from_s).collect();
        assert_eq!(starts, vec![6.5, 21.5, 36.5, 51.5]);
        assert_eq!(windows(3600.0, 2.0).len(), MAX_WINDOWS);
        // Shorter than a keyframe interval: all of it.
        assert_eq!(
            windows(1.5, 2.0),
            vec![Window {
                from_s: 0.0,
                seconds: 1.5
            }]
        );
        // Unknown or nonsense durations: the start.
        for d in [0.0, f64::NAN, f64::INFINITY] {
            assert_eq!(windows(d, 2.0)[0].from_s, 0.0, "{d}");
        }
    }
}
