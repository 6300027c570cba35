//! The isolated decoder: FFmpeg (an LGPL build, see `engine/ffmpeg-sys`) demuxes and decodes
//! what people upload — video in MP4/MOV/Matroska/WebM/MPEG-TS/AVI, HEIF/HEIC and AVIF stills
//! — in a child process, one per decode, so that a crash or a hang in C code parsing hostile
//! bytes fails one job with `decoder_crashed` or `decode_timeout` while the worker and its
//! other jobs carry on.
//!
//! - [`session`]: the engine's side — spawn, the pipe protocol, the watchdog, exit status to
//!   [`crate::error::JobError`].
//! - [`child`]: the child's side (`mediaflow __mediaflow-decoder`), built on [`ffmpeg`].
//! - [`picture`]: the engine's side of a HEIF/AVIF picture.
//! - [`still`]: the child's HEIF/AVIF path (tile grids assembled, alpha from the auxiliary
//!   image `heif` finds).
//! - [`protocol`]: the messages between them.

pub mod child;
pub mod ffmpeg;
mod heif;
pub mod picture;
pub mod protocol;
pub mod session;
mod still;

pub use session::{Event, Session, Settings};

/// First argument that makes the `mediaflow` binary a decoder child.
pub const CHILD_ARG: &str = "__mediaflow-decoder";

/// Test-only fault injection, read by the engine (never by the child): a comma-separated list
/// of `crash:MARKER` / `hang:MARKER`; a source whose file name contains MARKER makes its
/// decoder child crash (SIGSEGV) or spin forever once decoding starts. Matched against the
/// job's source URI (the worker decodes a scratch copy with another name). Not a
/// `MEDIAFLOW_*` name: those are configuration overrides.
pub const FAULT_ENV: &str = "MF_TEST_DECODER_FAULT";

/// The fault to inject for the source `uri`, if the environment asks for one.
pub fn fault_for(uri: &str) -> Option<String> {
    let spec = std::env::var(FAULT_ENV).ok()?;
    let name = uri.rsplit('/').next().unwrap_or(uri);
    spec.split(',').find_map(|item| {
        let (kind, marker) = item.split_once(':')?;
        (matches!(kind, "crash" | "hang") && !marker.is_empty() && name.contains(marker))
            .then(|| kind.to_string())
    })
}
