//! Why a job failed, in terms the worker acts on: the class (permanent → record a failure
//! manifest and drop the message; transient → leave it on the queue to be retried) and a
//! stable code for manifests, metrics and notifications.

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
    #[error("plugin {0} is not available (no loaded version matches)")]
    PluginNotFound(String),
    /// The profile asked for does not exist.
    #[error("unknown profile {0:?}")]
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
    #[error(transparent)]
    NotifyRule(#[from] crate::notify::RuleFailure),
}

impl JobError {
    /// Permanent or transient.
    pub fn class(&self) -> ErrorClass {
        match self {
            JobError::Storage { class, .. } => *class,
            JobError::NotifyRule(_) | JobError::DecoderCrashed(_) | JobError::DecodeTimeout(_) => {
                ErrorClass::Transient
            }
            _ => ErrorClass::Permanent,
        }
    }

    /// Stable code: `unsupported_format`, `unsupported_codec`, `limit_exceeded`,
    /// `corrupt_input`, `decoder_crashed`, `decode_timeout`, `plugin_failed`, `plugin_not_found`, `unknown_profile`, `storage`,
    /// `encode_failed`, `notify_rule_failed`.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::UnsupportedFormat(_) => "unsupported_format",
            JobError::UnsupportedCodec(_) => "unsupported_codec",
            JobError::LimitExceeded { .. } | JobError::DecoderLimit(_) => "limit_exceeded",
            JobError::CorruptInput(_) => "corrupt_input",
            JobError::DecoderCrashed(_) => "decoder_crashed",
            JobError::DecodeTimeout(_) => "decode_timeout",
            JobError::Plugin(_) => "plugin_failed",
            JobError::PluginNotFound(_) => "plugin_not_found",
            JobError::UnknownProfile(_) => "unknown_profile",
            JobError::Storage { .. } => "storage",
            JobError::Encode { .. } => "encode_failed",
            JobError::NotifyRule(_) => "notify_rule_failed",
        }
    }

    /// A refusal for exceeding `limit`.
    pub fn limit(limit: &'static str, found: u64, max: u64) -> Self {
        JobError::LimitExceeded { limit, found, max }
    }
}
