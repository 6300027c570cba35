//! WebAssembly plugins: the sandboxed host ([`PluginHost`]), loaded plugins ([`Plugin`]) and
//! their per-job instances ([`PluginInstance`]), limits, world detection, the compiled-code
//! cache, the plugins bundled into the engine, the registry of published plugins (publish,
//! polling, hot swap, channels), and plugin authoring tools (inspect, scaffold).

mod bindings;
mod bounds;
pub mod bundled;
mod cache;
pub mod catalog;
pub mod descriptor;
pub mod dev;
mod epoch;
mod error;
mod host;
pub mod inspect;
mod instance;
mod limits;
mod loaded;
pub mod registry;
pub mod reload;
pub mod scaffold;
mod source;
mod state;
mod traps;
mod wit;
mod world;

pub use bindings::types;
pub use cache::CompileCache;
pub use error::{PluginError, PluginErrorKind};
pub use host::{HostConfig, HostError, PluginHost, default_cache_dir};
pub use instance::PluginInstance;
pub use limits::{DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT_MS, PluginLimits};
pub use loaded::{Plugin, PluginSpec};
pub use source::SourceHandle;
pub use world::{HOSTED_WIT_VERSIONS, World};

/// The newest WIT contract this engine hosts (`wit/plugin.wit`), as `plugin wit` writes it.
pub const WIT: &str = include_str!("../../wit/plugin.wit");
