//! mediaflow: a media-processing engine that turns uploads into renditions, extended by
//! sandboxed WebAssembly plugins.
//!
//! # Layout
//!
//! - [`cli`]: the `mediaflow` command line (parsing, dispatch, exit codes).
//! - [`plugin`]: the WebAssembly plugin host — wasmtime engine, limits, world detection,
//!   compiled-code cache, bundled first-party plugins, inspect/validate/scaffold.
//! - [`telemetry`]: logging setup (human-readable on a terminal, JSON otherwise).
//!
//! The binary (`src/main.rs`) only calls [`cli::main`].

pub mod cli;
pub mod plugin;
pub mod telemetry;
