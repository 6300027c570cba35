//! FFmpeg's C API for mediaflow's isolated decoder: the bindings `bindgen` generates from the
//! headers of the FFmpeg this crate builds (`build.rs`: FFmpeg's own source from the
//! `ffmpeg-src` crate, configured LGPL-only with the demuxers, decoders, parsers and filters
//! listed there, linked statically; AV1 through the system's libdav1d).
//!
//! Nothing here is safe to call on its own: `mediaflow::media::decoder` wraps what it uses.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    missing_docs,
    clippy::all,
    unsafe_code,
    unnecessary_transmutes,
    unsafe_op_in_unsafe_fn
)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
