//! Video: H.264 in MP4/MOV to an adaptive-bitrate ladder (an MP4 per rung with the source's
//! AAC copied, HLS with CMAF segments, a poster and a seek-preview sprite), streamed frame by
//! frame. Submodules, in the order data flows: [`demux`], [`h264`], [`codec`], [`frame`],
//! [`mux`], [`thumbs`]; [`transcode`] wires them together with bounded queues. Images to
//! video: [`slideshow`] makes the frames that [`transcode`] encodes.

pub mod codec;
pub mod demux;
pub mod frame;
pub mod h264;
pub mod mux;
pub mod slideshow;
pub mod thumbs;
pub mod transcode;
