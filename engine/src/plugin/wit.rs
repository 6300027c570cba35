//! The WIT host interfaces the engine gives plugins, one small module each (wasmtime's
//! `wasi-config` is the model: the interface's `Host` trait implemented on the instance state
//! and its own `add_to_linker`): [`host_api`] (`mediaflow:plugin/host`: log, configuration,
//! time left) and [`input`] (`mediaflow:plugin/input`: the `source` a metadata extractor reads
//! lazily). `mediaflow:plugin/types` has no functions. Nothing else is linked: plugins never
//! reach the network or the filesystem.

pub mod host_api;
pub mod input;

use super::bindings::extractor::mediaflow::plugin::types;
use super::state::HostState;
use wasmtime::component::{HasSelf, Linker};

impl types::Host for HostState {}

/// Add every mediaflow host interface to `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    host_api::add_to_linker(linker)?;
    input::add_to_linker(linker)
}
