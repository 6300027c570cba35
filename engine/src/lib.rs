//! mediaflow: a media-processing engine that turns uploads into renditions, extended by
//! sandboxed WebAssembly plugins.
//!
//! # Layout
//!
//! - [`aws`]: AWS clients from the standard environment.
//! - [`cli`]: the `mediaflow` command line (parsing, dispatch, exit codes); [`process`] runs
//!   jobs on local files.
//! - [`config`]: the typed configuration (TOML + `MEDIAFLOW_*`), profiles and routes.
//! - [`pipeline`]: one job start to finish — probe, metadata plugins, decode, renditions.
//! - [`media`]: probing, decoding, resizing, overlay blending, encoding.
//! - [`plugin`]: the WebAssembly plugin host — wasmtime engine, limits, world detection,
//!   compiled-code cache, bundled first-party plugins, catalog, inspect/validate/scaffold.
//! - [`storage`]: the object store trait and its filesystem backend.
//! - [`queue`]: job queues; the embedded local queue with SQS semantics.
//! - [`manifest`], [`report`]: what a job records, and the HTML report of a run.
//! - [`notify`]: job lifecycle events, notification-rule plugins, sinks (log, SNS, SQS,
//!   webhooks) delivered in the background.
//! - [`error`]: why a job failed, classed permanent or transient.
//! - [`licences`]: the native libraries in the binary and their licences.
//! - [`job`]: what a queue message asks for (S3 events, SNS, EventBridge, explicit jobs).
//! - [`worker`]: `mediaflow worker` (queue consumer) and `mediaflow submit`.
//! - [`telemetry`]: logs (text on a terminal, JSON otherwise, a span per job), Prometheus
//!   metrics, readiness, the `/healthz` `/readyz` `/metrics` listener, ECS task protection.
//!
//! The binary (`src/main.rs`) only calls [`cli::main`].

pub mod aws;
pub mod cli;
pub mod config;
pub mod error;
pub mod job;
pub mod licences;
pub mod manifest;
pub mod media;
pub mod notify;
pub mod pipeline;
pub mod plugin;
pub mod process;
pub mod queue;
pub mod report;
pub mod storage;
pub mod telemetry;
pub mod worker;
