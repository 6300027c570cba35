//! Why a job failed, in terms the lifecycle acts on: the class (permanent → record a failure
//! manifest, then acknowledge the message; transient → record nothing and leave the message to
//! be retried) and a stable code for manifests, metrics and notifications.
//!
//! One rule for the machine itself: running out of something — disk space (`ENOSPC`,
//! `EDQUOT`), file descriptors (`EMFILE`, `ENFILE`), memory (`ENOMEM`) — is transient wherever
//! it happens ([`is_exhaustion`]), and so is any I/O error of the storage or the queue: a job is
//! never recorded as failed because the machine it ran on was in trouble.

pub use crate::job::control::CancelReason;
use crate::plugin::PluginError;
use serde::{Deserialize, Serialize};

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// The same input will fail the same way: record it, don't retry.
    Permanent,
    /// A passing fault (network, throttling, 5xx): retry later.
    Transient,
}

/// A job failure.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The bytes are not a format we read (named by what was found).
    #[error("unsupported format: {0}")]
    UnsupportedFormat(String),
    /// A format we read, with a codec or feature we don't.
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    /// A configured limit was exceeded; names the limit, the value found and the maximum.
    #[error("{limit} exceeded: {found} > {max}")]
    LimitExceeded {
        /// Name of the limit (`max_pixels`, …).
        limit: &'static str,
        /// The value found.
        found: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The decoder refused to allocate what the data asked for (image::Limits), although the
    /// header passed the probe: a lying header or a decompression bomb.
    #[error("limit exceeded while decoding: {0}")]
    DecoderLimit(String),
    /// The media is damaged (truncated, malformed headers or data).
    #[error("corrupt input: {0}")]
    CorruptInput(String),
    /// The decoder process died (a signal, or an exit without an answer) decoding this
    /// source: hostile or unlucky bytes hit a bug in C code. Retried by the queue (a machine
    /// fault looks the same), recorded as failed once the retries run out.
    #[error("decoder crashed: {0}")]
    DecoderCrashed(String),
    /// The decoder process stopped making progress and was killed.
    #[error("decode timed out: {0}")]
    DecodeTimeout(String),
    /// A plugin failed (trap, limit, error value, or could not be loaded).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A profile names a plugin no registry has at a matching version.
    #[error("plugin {plugin} is not available: {why}")]
    PluginNotFound {
        /// `name@requirement` as the profile says it.
        plugin: String,
        /// What was found instead, where it looked, what to do.
        why: String,
        /// A registry is watched, so publishing the plugin makes the job work: transient.
        waits: bool,
    },
    /// The profile asked for does not exist (the message lists those that do).
    #[error("{0}")]
    UnknownProfile(String),
    /// Reading or writing storage failed.
    #[error("storage: {message}")]
    Storage {
        /// What failed.
        message: String,
        /// Whether a retry may succeed.
        class: ErrorClass,
    },
    /// Encoding an output failed.
    #[error("encoding {format}: {message}")]
    Encode {
        /// Output format.
        format: &'static str,
        /// What failed.
        message: String,
    },
    /// A fail-closed notification rule could not decide the job's notifications: the job is
    /// not recorded, and its message is retried.
    #[error("notification rule {rule} failed and is fail_closed: {message}")]
    NotifyRule {
        /// `name@version` of the rule plugin.
        rule: String,
        /// What went wrong.
        message: String,
    },
    /// The machine ran out of something (disk space, file descriptors, memory) while the job
    /// ran: transient.
    #[error("{context}: {source}")]
    Exhausted {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The job was stopped before its end.
    #[error("{}", match .0 {
        CancelReason::Requested => "canceled on request",
        CancelReason::Shutdown => "stopped by a shutdown (released for another worker)",
        CancelReason::TimedOut => "stopped: it ran past worker.job_timeout_secs",
    })]
    Canceled(CancelReason),
}

impl JobError {
    /// Permanent or transient.
    pub fn class(&self) -> ErrorClass {
        match self {
            JobError::Storage { class, .. } => *class,
            JobError::PluginNotFound { waits: true, .. } => ErrorClass::Transient,
            JobError::NotifyRule { .. }
            | JobError::DecoderCrashed(_)
            | JobError::DecodeTimeout(_)
            | JobError::Exhausted { .. }
            | JobError::Canceled(CancelReason::Shutdown) => ErrorClass::Transient,
            JobError::Canceled(CancelReason::Requested | CancelReason::TimedOut) => {
                ErrorClass::Permanent
            }
            // A module that lost the errno still says what happened: the machine running out
            // of something is never the input's fault.
            other if exhaustion_in(&other.to_string()) => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    /// Stable code: `unsupported_format`, `unsupported_codec`, `limit_exceeded`,
    /// `corrupt_input`, `decoder_crashed`, `decode_timeout`, `plugin_failed`, `plugin_not_found`,
    /// `unknown_profile`, `storage`, `encode_failed`, `notify_rule_failed`, `resource_exhausted`,
    /// `canceled`, `timed_out`.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::UnsupportedFormat(_) => "unsupported_format",
            JobError::UnsupportedCodec(_) => "unsupported_codec",
            JobError::LimitExceeded { .. } | JobError::DecoderLimit(_) => "limit_exceeded",
            JobError::CorruptInput(_) => "corrupt_input",
            JobError::DecoderCrashed(_) => "decoder_crashed",
            JobError::DecodeTimeout(_) => "decode_timeout",
            JobError::Plugin(_) => "plugin_failed",
            JobError::PluginNotFound { .. } => "plugin_not_found",
            JobError::UnknownProfile(_) => "unknown_profile",
            JobError::Storage { .. } => "storage",
            JobError::Encode { .. } => "encode_failed",
            JobError::NotifyRule { .. } => "notify_rule_failed",
            JobError::Exhausted { .. } => "resource_exhausted",
            JobError::Canceled(CancelReason::TimedOut) => "timed_out",
            JobError::Canceled(_) => "canceled",
        }
    }

    /// Whether a transient failure that happened on every receive of a message is the input's
    /// fault after all: a decoder that crashed or hung each time. On the queue's last receive
    /// such a job is recorded as failed (not dead-lettered), like a permanent failure.
    pub fn blames_input_when_repeated(&self) -> bool {
        matches!(
            self,
            JobError::DecoderCrashed(_) | JobError::DecodeTimeout(_)
        )
    }

    /// A refusal for exceeding `limit`.
    pub fn limit(limit: &'static str, found: u64, max: u64) -> Self {
        JobError::LimitExceeded { limit, found, max }
    }

    /// An I/O error of local disk (the scratch space, a source copy) while `context`:
    /// [`JobError::Exhausted`] when the machine ran out of something, else a storage error
    /// classed by [`io_class`].
    pub fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        let context = context.into();
        if is_exhaustion(&e) {
            JobError::Exhausted { context, source: e }
        } else {
            JobError::Storage {
                message: format!("{context}: {e}"),
                class: io_class(&e),
            }
        }
    }
}

/// Whether `e` means the machine ran out of something: disk space or quota, file
/// descriptors, memory.
pub fn is_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EDQUOT | libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    ) || matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull
            | std::io::ErrorKind::QuotaExceeded
            | std::io::ErrorKind::OutOfMemory
    )
}

/// The class of an I/O error of a store, a queue or the job's scratch space: transient, except
/// a missing file (the caller decides what that means) — disks, databases and networks that
/// fail now may work again, and the input is not to blame.
pub fn io_class(e: &std::io::Error) -> ErrorClass {
    match e.kind() {
        std::io::ErrorKind::NotFound => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

/// Whether an error's text reports the machine running out of something (for errors that
/// reach here as text: from C libraries, child processes, SQLite).
pub fn exhaustion_in(text: &str) -> bool {
    const SIGNS: [&str; 6] = [
        "No space left on device",
        "Disk quota exceeded",
        "Too many open files",
        "Cannot allocate memory",
        "database or disk is full",
        "out of memory",
    ];
    SIGNS.iter().any(|s| text.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_disk_descriptors_or_memory_is_transient_everywhere() {
        for errno in [
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
        ] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert!(is_exhaustion(&e), "{e}");
            let job = JobError::io("writing large.jpg", e);
            assert_eq!(job.class(), ErrorClass::Transient, "{job}");
            assert_eq!(job.code(), "resource_exhausted");
        }
        // A module that only kept the text: still transient.
        let encode = JobError::Encode {
            format: "mp4",
            message: "writing 720p.mp4: No space left on device (os error 28)".into(),
        };
        assert_eq!(encode.class(), ErrorClass::Transient);
        assert_eq!(
            JobError::CorruptInput("truncated".into()).class(),
            ErrorClass::Permanent
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(io_class(&denied), ErrorClass::Transient);
    }
}
