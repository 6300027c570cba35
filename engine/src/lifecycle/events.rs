//! The events of jobs that end without a manifest: `retrying` (left to run again),
//! `dead-lettered` (after the queue's last receive, or never recordable), and the
//! `dead-lettered` event of a message that is not a job at all. Recorded jobs' `succeeded` and
//! `failed` events go out with their manifest ([`super::record`]).

use super::{Attempt, JobRequest};
use crate::error::{ErrorClass, JobError};
use crate::job::MessageError;
use crate::manifest::ErrorRecord;
use crate::notify::{Event, EventStatus, Notifier};

/// `retrying`, or `dead-lettered` on the last attempt, for a job left unrecorded by `error`.
pub(super) fn unrecorded(
    notifier: &Notifier,
    job: &JobRequest,
    attempt: &Attempt,
    error: &JobError,
) {
    let status = if !attempt.retries {
        // `mediaflow process`: no queue, no dead letters; the job failed.
        EventStatus::Failed
    } else if attempt.last || error.class() == ErrorClass::Permanent {
        EventStatus::DeadLettered
    } else {
        EventStatus::Retrying
    };
    let uri = job
        .sources
        .first()
        .map(|s| s.uri.clone())
        .unwrap_or_default();
    let event = Event::new(status, &job.id, uri, &job.profile)
        .with_error(error)
        .at(attempt.number, attempt.started.elapsed());
    notifier.emit(&event);
}

/// The `dead-lettered` event of message `message_id`, which is not a job (`e` says why): its
/// job id is the message id, its error code `bad_message`, and its source and profile are what
/// the message names of them, if anything.
pub fn bad_message(
    notifier: &Notifier,
    message_id: &str,
    attempt: &Attempt,
    e: &MessageError,
    body: &str,
) {
    let (source, profile) = crate::job::hints(body);
    let mut event = Event::new(EventStatus::DeadLettered, message_id, source, profile)
        .at(attempt.number, attempt.started.elapsed());
    event.error = Some(ErrorRecord {
        class: ErrorClass::Permanent,
        code: "bad_message".into(),
        message: e.to_string(),
    });
    notifier.emit(&event);
}
