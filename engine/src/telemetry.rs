//! Telemetry: what the engine tells operators. Logs ([`logs`]: text on a terminal, JSON lines
//! otherwise, one span per job); Prometheus metrics ([`metrics`]); readiness of the queue, the
//! store and the plugins, and of the work itself ([`health`]); the HTTP listener serving
//! `/healthz`, `/readyz` and `/metrics` on axum ([`server`]); jobs in flight ([`activity`]) and
//! the ECS task scale-in protection they drive, called with the hyper client
//! ([`protection`]); job metrics as CloudWatch embedded-metric-format lines ([`emf`]); and
//! [`ops`], which starts them for the worker.

pub mod activity;
pub mod emf;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod ops;
pub mod protection;
pub mod server;

pub use logs::{LogFormat, init};
pub use ops::{Ops, OpsError};
