//! Notifications: job lifecycle events (`succeeded`, `failed`, `retrying`, `dead-lettered`),
//! the notification-rule plugins that turn each event into notifications for named sinks, and
//! the sinks that deliver them (`log`, SNS, SQS, signed webhooks) in the background.
//!
//! Rules run where the job runs, before the job is recorded (a fail-closed rule can still turn
//! the outcome into a retry); delivery never does: notifications go into a bounded queue that a
//! background task drains, so a slow or dead sink never delays acknowledging a job. What could
//! not be delivered — queue full, retries exhausted, refused, abandoned at shutdown — is logged
//! with the event id and counted per sink ([`Counters`], exported to `/metrics`).
//!
//! # Layout
//!
//! - [`event`]: the event and its JSON shape; to the plugins' WIT `job-event`.
//! - [`rules`]: rule plugins resolved from the catalog, the default rule, fail-open/closed.
//! - [`notifier`]: the bounded queue, the background delivery task, the flush at shutdown.
//! - [`counters`]: delivered/failed/dropped per sink, rule failures, unknown sinks (on `/metrics`).
//! - [`sink`] and its kinds [`log`], [`sns`], [`sqs`], [`webhook`] (with [`signature`]).

pub mod counters;
pub mod event;
pub mod log;
pub mod notifier;
pub mod rules;
pub mod signature;
pub mod sink;
pub mod sns;
pub mod sqs;
pub mod webhook;

pub use counters::{Counters, Snapshot};
pub use event::{Event, EventStatus};
pub use notifier::{Notifier, NotifyError, Pending};
pub use rules::RuleFailure;
pub use sink::DeliveryError;
