//! Video: what people upload (decoded in an isolated child, see [`crate::media::decoder`]) to
//! an adaptive-bitrate ladder (an MP4 per rung with AAC audio, HLS with CMAF segments, a
//! poster and a seek-preview sprite), streamed frame by frame. Submodules, in the order data
//! flows: [`source`] (the decoded source described and checked), [`colour`] (normalisation
//! to 8-bit BT.709, HDR tone mapping), [`frame`], [`codec`] (H.264 and AV1 encoding, keyframes
//! placed by `cadence`; [`rate_probe`] samples the source for content-aware AV1 rungs),
//! [`mux`],
//! [`thumbs`]; [`transcode`] wires them together with bounded queues. Images to video:
//! [`slideshow`] makes the frames that [`transcode`] encodes.

mod cadence;
pub mod codec;
pub mod colour;
pub mod frame;
mod h264;
pub mod mux;
pub mod rate_probe;
pub mod slideshow;
pub mod source;
pub mod thumbs;
pub mod transcode;
