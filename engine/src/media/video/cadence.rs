//! Where a rung's keyframes go. Every rung keys on one time grid — the first picture at or
//! after each multiple of `keyframe_interval_s` ([`KeyGrid`]) — so the HLS segments of every
//! rung, of both codecs, are cut at the same pictures. OpenH264 takes a keyframe request at
//! any picture; SVT-AV1 (in VBR) only keys every `keyint` pictures it is given and cannot be
//! asked otherwise. [`Cadence`] chooses the pictures such an encoder is given: exactly
//! `keyint` per grid interval, the first being the picture the grid keys on — the source's
//! own pictures (at their own times) where they fall on the rung's nominal rate, a repeat of
//! the last one where the source leaves a gap (a variable frame rate; an NTSC rate's
//! 59.94-picture intervals), none where pictures come faster than the nominal rate.

/// Seconds of slack: a grid point missed by rounding still counts.
const SLACK_S: f64 = 0.0005;

/// The keyframe grid: the first picture at or after each multiple of the interval is a
/// keyframe (several multiples inside one gap give one keyframe).
#[derive(Debug, Clone)]
pub struct KeyGrid {
    interval: f64,
    next: f64,
}

impl KeyGrid {
    /// A grid every `interval_s` seconds, starting at 0.
    pub fn new(interval_s: f64) -> KeyGrid {
        KeyGrid {
            interval: if interval_s > 0.0 { interval_s } else { 1.0 },
            next: 0.0,
        }
    }

    /// Whether the picture at `t` seconds is a keyframe; when it is, the grid moves past `t`.
    pub fn due(&mut self, t: f64) -> bool {
        if t + SLACK_S < self.next {
            return false;
        }
        self.next = (((t + SLACK_S) / self.interval).floor() + 1.0) * self.interval;
        true
    }
}

/// One picture to give the encoder, with its presentation time (in the cadence's ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Give {
    /// The source's picture before the one just taken (the one shown until now), again.
    Repeat(u64),
    /// The picture just taken.
    This(u64),
}

/// Chooses the pictures an encoder that keys every `per_gop` pictures is given, so that its
/// keyframes are the grid's.
#[derive(Debug, Clone)]
pub struct Cadence {
    grid: KeyGrid,
    per_gop: u32,
    /// Ticks between two pictures at the nominal rate.
    slot: f64,
    ticks: f64,
    /// The source's time of this GOP's keyframe (nominal times count from it).
    start: u64,
    /// Pictures given since it (the keyframe included).
    given: u32,
    /// Time of the last picture given.
    last: Option<u64>,
}

impl Cadence {
    /// Pictures at a nominal `fps`, a keyframe every `keyframe_s` seconds, times in ticks of
    /// `timescale` per second.
    pub fn new(fps: f64, keyframe_s: f64, timescale: u32) -> Cadence {
        let fps = if fps.is_finite() && fps > 0.0 {
            fps
        } else {
            30.0
        };
        let ticks = f64::from(timescale.max(1));
        Cadence {
            grid: KeyGrid::new(keyframe_s),
            // Rounded up: a fraction of a picture is room for a repeat, never a drop.
            per_gop: (fps * keyframe_s - 1e-3).ceil().clamp(1.0, 100_000.0) as u32,
            slot: ticks / fps,
            ticks,
            start: 0,
            given: 0,
            last: None,
        }
    }

    /// Pictures per GOP: the encoder's keyframe interval.
    pub fn per_gop(&self) -> u32 {
        self.per_gop
    }

    /// Take the source's picture shown at `t` ticks; `out` gets what to encode, in order
    /// (nothing when the picture is dropped). Times given only ever increase.
    pub fn take(&mut self, t: u64, out: &mut Vec<Give>) {
        let key = self.grid.due(t as f64 / self.ticks);
        if self.last.is_none() || key {
            if self.last.is_some() {
                self.fill(t, out);
            }
            let at = self.after_last(t);
            out.push(Give::This(at));
            (self.start, self.given, self.last) = (t, 1, Some(at));
            return;
        }
        // Repeats for the nominal pictures the source left out (a gap over half a picture).
        self.repeat_while_before(t, out);
        // This picture, unless the GOP is full or it comes too early for its nominal time.
        if self.given < self.per_gop && t as f64 + self.slot / 2.0 >= self.nominal(self.given) {
            let at = self.after_last(t);
            out.push(Give::This(at));
            (self.given, self.last) = (self.given + 1, Some(at));
        }
    }

    /// Complete the GOP before the keyframe at `t`: repeats on their nominal times where those
    /// fall before `t`, the rest spread evenly between the last picture and `t`.
    fn fill(&mut self, t: u64, out: &mut Vec<Give>) {
        self.repeat_while_before(t, out);
        let left = self.per_gop.saturating_sub(self.given);
        let last = self.last.unwrap_or(0);
        let step = t.saturating_sub(last) as f64 / f64::from(left + 1);
        for i in 1..=left {
            self.repeat(last + (step * f64::from(i)).round() as u64, out);
        }
    }

    fn repeat_while_before(&mut self, t: u64, out: &mut Vec<Give>) {
        while self.given < self.per_gop {
            let s = self.nominal(self.given);
            if s + self.slot / 2.0 > t as f64 {
                break;
            }
            self.repeat(s.round() as u64, out);
        }
    }

    fn repeat(&mut self, at: u64, out: &mut Vec<Give>) {
        let at = self.after_last(at);
        out.push(Give::Repeat(at));
        (self.given, self.last) = (self.given + 1, Some(at));
    }

    /// The nominal time of this GOP's `i`-th picture.
    fn nominal(&self, i: u32) -> f64 {
        self.start as f64 + f64::from(i) * self.slot
    }

    /// `t`, or just after the last picture given when `t` is not after it.
    fn after_last(&self, t: u64) -> u64 {
        self.last.map_or(t, |l| t.max(l + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `times`; the times given, whether each repeats, and which are keyframes for an
    /// encoder keying every `per_gop` pictures.
    fn run(c: &mut Cadence, times: &[u64]) -> Vec<(u64, bool, bool)> {
        let mut out = Vec::new();
        for &t in times {
            c.take(t, &mut out);
        }
        let per = c.per_gop() as usize;
        out.iter()
            .enumerate()
            .map(|(i, g)| match g {
                Give::Repeat(t) => (*t, true, i % per == 0),
                Give::This(t) => (*t, false, i % per == 0),
            })
            .collect()
    }

    /// The source times the grid keys on (what an H.264 rung keys on).
    fn grid_keys(times: &[u64], keyframe_s: f64, timescale: u32) -> Vec<u64> {
        let mut g = KeyGrid::new(keyframe_s);
        times
            .iter()
            .copied()
            .filter(|&t| g.due(t as f64 / f64::from(timescale)))
            .collect()
    }

    fn check(fps: f64, times: &[u64]) -> Vec<(u64, bool, bool)> {
        let mut c = Cadence::new(fps, 2.0, 90_000);
        let got = run(&mut c, times);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "times increase");
        let keys: Vec<u64> = got.iter().filter(|g| g.2).map(|g| g.0).collect();
        assert_eq!(keys, grid_keys(times, 2.0, 90_000), "keyframes on the grid");
        assert!(
            got.iter().filter(|g| g.2).all(|g| !g.1),
            "a keyframe is a source picture"
        );
        got
    }

    #[test]
    fn the_grid_keys_the_first_picture_at_or_after_each_multiple() {
        let mut g = KeyGrid::new(2.0);
        let keys: Vec<bool> = [0.0, 1.9, 1.9996, 2.1, 3.0, 7.5, 7.9, 8.0]
            .iter()
            .map(|&t| g.due(t))
            .collect();
        assert_eq!(
            keys,
            [true, false, true, false, false, true, false, true],
            "1.9996 is 2.0 by rounding; 4 and 6 fall in one gap"
        );
    }

    #[test]
    fn a_constant_rate_passes_through_unchanged() {
        for fps in [24.0, 25.0, 30.0, 60.0] {
            let step = 90_000.0 / fps;
            let times: Vec<u64> = (0..(fps as u64 * 9))
                .map(|i| (i as f64 * step).round() as u64)
                .collect();
            let got = check(fps, &times);
            let given: Vec<u64> = got.iter().map(|g| g.0).collect();
            assert_eq!(given, times, "{fps} fps: every picture, at its time");
        }
    }

    #[test]
    fn an_ntsc_rate_keeps_keyframes_on_the_grid_for_an_hour() {
        // 29.97 fps: 59.94 pictures per 2 s, so a count of 60 drifts a picture every 34 s.
        let times: Vec<u64> = (0..107_892u64).map(|i| i * 3003).collect();
        let got = check(30_000.0 / 1001.0, &times);
        let repeats = got.iter().filter(|g| g.1).count();
        let sources = got.len() - repeats;
        assert_eq!(sources, times.len(), "no picture dropped");
        // One repeat per ~17 GOPs (one per 34 s).
        assert!((100..=110).contains(&repeats), "{repeats} repeats");
    }

    #[test]
    fn a_variable_rate_repeats_into_gaps_and_drops_bursts() {
        // A phone's: 30 fps, a second at 15 fps, a 60 fps burst, a 1.3 s freeze, 30 fps.
        let mut times = Vec::new();
        let mut t = 0.0;
        for (n, fps) in [
            (45, 30.0),
            (15, 15.0),
            (60, 60.0),
            (1, 1.0 / 1.3),
            (200, 30.0),
        ] {
            for _ in 0..n {
                times.push((t * 90_000.0_f64).round() as u64);
                t += 1.0 / fps;
            }
        }
        let got = check(30.0, &times);
        let sources = got.iter().filter(|g| !g.1).count();
        let repeats = got.len() - sources;
        // The 60 fps second loses about half its pictures; the slow second and the freeze
        // are filled with repeats.
        assert!(
            (285..=300).contains(&sources),
            "{sources} of {}",
            times.len()
        );
        assert!((45..=60).contains(&repeats), "{repeats} repeats");
    }

    #[test]
    fn a_keyframe_interval_of_a_picture_and_a_half_keeps_every_picture() {
        // 14 fps, a keyframe every 0.1 s: 1.4 pictures per interval, so two a GOP.
        let times: Vec<u64> = (0..100u64).map(|i| i * 90_000 / 14).collect();
        let mut c = Cadence::new(14.0, 0.1, 90_000);
        assert_eq!(c.per_gop(), 2);
        let got = run(&mut c, &times);
        assert_eq!(got.iter().filter(|g| !g.1).count(), times.len());
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{got:?}");
    }

    #[test]
    fn a_coarse_timescale_still_gives_increasing_times() {
        // A tick per picture, 30 a second against a nominal 30.5: a repeat every ~30
        // pictures, with no tick of its own — it takes the next picture's, which moves on.
        let mut c = Cadence::new(30.5, 2.0, 30);
        let times: Vec<u64> = (0..300).collect();
        let got = run(&mut c, &times);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{got:?}");
        assert_eq!(got.iter().filter(|g| g.1).count(), 5, "{got:?}");
        assert_eq!(got.len(), 305, "every picture kept");
    }
}
