//! Still-image formats that need more than the `image` crate's decoders: how each is
//! recognised, sized and checked against the limits at probe time, and decoded safely.

pub mod bmp;
pub mod exif;
pub mod jpeg;
pub mod jxl;
pub mod svg;
pub mod tiff;
