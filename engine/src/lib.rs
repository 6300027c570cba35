//! mediaflow: a media-processing engine that turns uploads into renditions, extended by
//! sandboxed WebAssembly plugins.
//!
//! # Layout
//!
//! In the order data flows — a message becomes a job, the job's media goes through plugins into
//! outputs, and the outcome is announced — with the base everything uses first:
//!
//! - [`config`]: the typed configuration (TOML + `MEDIAFLOW_*`): limits, plugins, profiles,
//!   routes (compiled once into a glob set), worker, ops, notifications, scratch directory.
//!   It depends on nothing else in the crate.
//! - [`error`]: why a job failed, classed permanent or transient (running out of disk,
//!   descriptors or memory is transient everywhere).
//! - [`shutdown`]: the one shutdown mechanism, three phases of cancellation tokens.
//! - [`job`]: what a message asks for (S3 events, SNS, EventBridge, explicit jobs) and
//!   [`job::control`], the handle a running job is watched and cancelled through.
//! - [`lifecycle`]: one job's life for every caller — fetch → pipeline → store outputs →
//!   manifest → notifications — under one set of failure rules; the engine's scratch space.
//! - [`pipeline`]: the media work of one job — probe, metadata plugins, decode, renditions, video.
//! - [`media`]: probing, decoding (FFmpeg in a child process per decode), resizing, overlay
//!   blending, encoding, video.
//! - [`plugin`]: the WebAssembly plugin host — engine and instances, limits, traps, the WIT host
//!   interfaces, compiled-code cache, bundled plugins, catalog, registry, authoring tools.
//! - [`storage`]: object stores (filesystem, S3) and buckets by name.
//! - [`manifest`], [`report`]: what a job records, and the HTML report of a `process` run.
//! - [`notify`]: job events, notification-rule plugins, sinks (log, SNS, SQS, webhooks)
//!   delivered in the background.
//! - [`queue`]: job queues (SQS, the embedded local queue with SQS semantics), batched deletes,
//!   dead letters with their reasons, metering.
//! - [`services`]: the long-lived parts a command sets up once (plugin host, registry,
//!   processor).
//! - [`index`]: the job index (SQLite locally, DynamoDB on AWS): one record per job, API keys;
//!   what the worker writes to it.
//! - [`worker`]: `mediaflow worker` (receive, heartbeat, settle, drain) and `mediaflow submit`.
//! - [`process`]: `mediaflow process`, jobs on local files.
//! - [`api`]: `mediaflow serve`, the job API (uploads, jobs, progress, cancel, keys).
//! - [`telemetry`]: logs (a span per message and per job), Prometheus metrics, readiness, the
//!   `/healthz` `/readyz` `/metrics` listener (axum), ECS task protection.
//! - [`aws`]: AWS clients from the standard environment.
//! - [`cli`]: the `mediaflow` command line (parsing, dispatch, exit codes).
//! - [`licences`]: the native libraries in the binary and their licences.
//!
//! The binary (`src/main.rs`) only calls [`cli::main`].

pub mod api;
pub mod aws;
pub mod cli;
pub mod config;
pub mod error;
pub mod index;
pub mod job;
pub mod licences;
pub mod lifecycle;
pub mod manifest;
pub mod media;
pub mod notify;
pub mod pipeline;
pub mod plugin;
pub mod process;
pub mod queue;
pub mod report;
pub mod services;
pub mod shutdown;
mod sqlite;
pub mod storage;
pub mod telemetry;
pub mod workbench;
pub mod worker;
