//! The handle a running job is driven through: whoever started it (the worker, `mediaflow
//! process`, the job API) can **watch** it — its state changes and its progress (stage and
//! percent) go to an [`Observer`] — and **cancel** it: a [`CancellationToken`] per job that the
//! pipeline checks between stages and renditions and the video frame loop checks per frame
//! ([`JobControl::check`], two atomic loads). It also names the job's scratch directory, the
//! one place its temporary files may go.

use crate::error::JobError;
use crate::shutdown::CancellationToken;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Why a job was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// Someone asked for it (the job API): its partial outputs are removed and its message is
    /// acknowledged.
    Requested,
    /// The engine is shutting down past its drain deadline: the message is released for
    /// another worker, to be done again there.
    Shutdown,
    /// It ran past `worker.job_timeout_secs`: recorded as failed (`timed_out`), its partial
    /// outputs removed.
    TimedOut,
}

/// Where a job is in its life, as an [`Observer`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// An attempt started (`attempt` counts from 1).
    Running {
        /// The attempt number (the message's receive count on a queue).
        attempt: u32,
    },
    /// Recorded: its manifest says `succeeded`.
    Succeeded,
    /// Recorded: its manifest says `failed`, with this error code.
    Failed {
        /// The manifest's `error.code`.
        code: String,
    },
    /// Already recorded by an earlier delivery: nothing was done.
    Duplicate,
    /// Not recorded this time (a transient failure): it will run again.
    Retrying {
        /// Why.
        reason: String,
    },
    /// Not recorded, and never will be: it is in the dead-letter queue with this reason.
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// Stopped on request; its partial outputs were removed.
    Canceled,
    /// Stopped by a shutdown; it will run again elsewhere.
    Released,
}

/// Progress within an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// The stage running now (`fetch`, `probe`, `decode`, `transcode`, `upload`…).
    pub stage: &'static str,
    /// How far the job is, 0..=100.
    pub percent: f32,
}

/// Watches jobs. Called on the job's own thread: implementations return quickly (an index
/// writer throttles its writes itself; [`JobControl`] already drops progress changes smaller
/// than one percent).
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Job `job_id` changed state.
    fn state(&self, job_id: &str, state: &JobState) {
        let _ = (job_id, state);
    }
    /// Job `job_id` made progress.
    fn progress(&self, job_id: &str, progress: Progress) {
        let _ = (job_id, progress);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl Observer for Unobserved {}

/// What every view of one job's control shares.
#[derive(Debug)]
struct Shared {
    job_id: String,
    /// Cancelled by a request or (as a child of `stop`) by a shutdown.
    cancel: CancellationToken,
    /// The shutdown's token for jobs.
    stop: CancellationToken,
    /// Set (before `cancel`) when the job ran out of time.
    timed_out: std::sync::atomic::AtomicBool,
    observer: Arc<dyn Observer>,
    /// The last progress reported, in whole percent, and its stage.
    last: Mutex<(&'static str, i32)>,
}

/// One job's control: cancellation, progress and scratch space. Cheap to clone; clones and
/// the views made by [`JobControl::with_scratch`] and [`JobControl::within`] share one
/// cancellation and one observer.
#[derive(Debug, Clone)]
pub struct JobControl {
    shared: Arc<Shared>,
    scratch: Arc<Path>,
    /// The part of the whole job this view's fractions cover, in percent.
    span: (f64, f64),
}

impl JobControl {
    /// Control of job `job_id`, stopped by `stop` (a shutdown) or its own cancellation,
    /// reporting to `observer`. Its scratch space is the system's temporary directory until
    /// the lifecycle gives it an attempt's own ([`JobControl::with_scratch`]).
    pub fn new(job_id: &str, stop: CancellationToken, observer: Arc<dyn Observer>) -> JobControl {
        JobControl {
            shared: Arc::new(Shared {
                job_id: job_id.to_string(),
                cancel: stop.child_token(),
                stop,
                timed_out: std::sync::atomic::AtomicBool::new(false),
                observer,
                last: Mutex::new(("", -1)),
            }),
            scratch: Arc::from(std::env::temp_dir().as_path()),
            span: (0.0, 100.0),
        }
    }

    /// A control nobody watches or cancels (tests, one-off runs).
    pub fn detached(job_id: &str) -> JobControl {
        Self::new(job_id, CancellationToken::new(), Arc::new(Unobserved))
    }

    /// The same control, keeping temporary files in `dir`.
    pub fn with_scratch(&self, dir: &Path) -> JobControl {
        JobControl {
            scratch: Arc::from(dir),
            ..self.clone()
        }
    }

    /// The same control, for a part of the job that covers `from..to` percent of the whole:
    /// its [`JobControl::progress`] fractions are scaled into that range.
    pub fn within(&self, from: f64, to: f64) -> JobControl {
        let (lo, hi) = self.span;
        let at = |p: f64| lo + (hi - lo) * p.clamp(0.0, 100.0) / 100.0;
        JobControl {
            span: (at(from), at(to)),
            ..self.clone()
        }
    }

    /// The job's id.
    pub fn job_id(&self) -> &str {
        &self.shared.job_id
    }

    /// Ask the job to stop at its next check; its partial outputs are removed.
    pub fn cancel(&self) {
        self.shared.cancel.cancel();
    }

    /// Stop the job at its next check because it ran out of time: it is recorded as failed.
    pub fn time_out(&self) {
        self.shared
            .timed_out
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.cancel.cancel();
    }

    /// The token cancelled when the job is to stop (for `select!` in async code).
    pub fn token(&self) -> &CancellationToken {
        &self.shared.cancel
    }

    /// Why the job is to stop, if it is.
    pub fn canceled(&self) -> Option<CancelReason> {
        if !self.shared.cancel.is_cancelled() {
            None
        } else if self.shared.stop.is_cancelled() {
            Some(CancelReason::Shutdown)
        } else if self
            .shared
            .timed_out
            .load(std::sync::atomic::Ordering::Acquire)
        {
            Some(CancelReason::TimedOut)
        } else {
            Some(CancelReason::Requested)
        }
    }

    /// `Err(JobError::Canceled)` once the job is to stop. Cheap enough to call per frame.
    pub fn check(&self) -> Result<(), JobError> {
        match self.canceled() {
            None => Ok(()),
            Some(reason) => Err(JobError::Canceled(reason)),
        }
    }

    /// Report that `stage` runs with `fraction` (0..=1) of this view's part done. Changes under
    /// one percent of the whole job within a stage are not passed on.
    pub fn progress(&self, stage: &'static str, fraction: f64) {
        let (lo, hi) = self.span;
        let percent = (lo + (hi - lo) * fraction.clamp(0.0, 1.0)) as i32;
        {
            let mut last = self.shared.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.0 == stage && last.1 == percent {
                return;
            }
            *last = (stage, percent);
        }
        self.shared.observer.progress(
            &self.shared.job_id,
            Progress {
                stage,
                percent: percent as f32,
            },
        );
    }

    /// Report that `stage` began, at the start of this view's part.
    pub fn stage(&self, stage: &'static str) {
        let at = {
            let last = self.shared.last.lock().unwrap_or_else(|e| e.into_inner());
            f64::from(last.1.max(0))
        };
        let (lo, hi) = self.span;
        let fraction = if hi > lo { (at - lo) / (hi - lo) } else { 0.0 };
        self.progress(stage, fraction.max(0.0));
    }

    /// Report a state change.
    pub fn state(&self, state: &JobState) {
        self.shared.observer.state(&self.shared.job_id, state);
    }

    /// The job's scratch directory: its temporary files go here and nowhere else.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Observer for Seen {
        fn state(&self, job_id: &str, state: &JobState) {
            self.0
                .lock()
                .expect("lock")
                .push(format!("{job_id} {state:?}"));
        }
        fn progress(&self, job_id: &str, p: Progress) {
            self.0
                .lock()
                .expect("lock")
                .push(format!("{job_id} {} {}", p.stage, p.percent));
        }
    }

    #[test]
    fn progress_is_passed_on_by_whole_percent_and_cancel_says_why() {
        let seen = Arc::new(Seen::default());
        let stop = CancellationToken::new();
        let c = JobControl::new("j", stop.clone(), seen.clone());
        c.progress("decode", 0.101);
        c.progress("decode", 0.104);
        c.progress("decode", 0.2);
        c.stage("encode");
        c.state(&JobState::Running { attempt: 1 });
        let pipeline = c.within(10.0, 90.0).with_scratch(Path::new("/x"));
        pipeline.progress("resize", 0.5);
        assert_eq!(pipeline.scratch(), Path::new("/x"));
        assert_eq!(
            *seen.0.lock().expect("lock"),
            [
                "j decode 10",
                "j decode 20",
                "j encode 20",
                "j Running { attempt: 1 }",
                "j resize 50"
            ]
        );
        assert!(c.check().is_ok());
        c.cancel();
        assert!(matches!(
            c.check(),
            Err(JobError::Canceled(CancelReason::Requested))
        ));
        assert!(pipeline.check().is_err(), "views share the cancellation");
        let other = JobControl::new("k", stop.clone(), seen);
        stop.cancel();
        assert_eq!(other.canceled(), Some(CancelReason::Shutdown));
    }
}
