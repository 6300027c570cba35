//! H.264 bitstream facts the pipeline needs without decoding a picture: what an SPS declares
//! (profile, chroma format, bit depth, interlacing, size) and whether we can decode it, and
//! the conversions between MP4's length-prefixed NAL units and Annex-B start codes.

use crate::error::JobError;
use shiguredo_mp4::bitstream::h264::parse_sps;

/// What an SPS declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    /// Width after cropping.
    pub width: u32,
    /// Height after cropping.
    pub height: u32,
}

fn unsupported(msg: String) -> JobError {
    JobError::UnsupportedCodec(msg)
}

/// Check that OpenH264 can decode what `sps` (a NAL unit with its header) declares: 8-bit
/// 4:2:0 progressive Baseline/Main/High. Anything else is `unsupported_codec`, named.
pub fn check_sps(sps: &[u8]) -> Result<SpsInfo, JobError> {
    let profile_idc = sps.get(1).copied().unwrap_or(0);
    // The coded size first, from our own reading: a hostile SPS may claim a picture far
    // beyond anything decodable (or representable), and that deserves its own words.
    let coded = coded_size(sps)?;
    if coded.width.max(coded.height) > MAX_SIDE || coded.width.min(coded.height) > MAX_SHORT_SIDE {
        return Err(unsupported(format!(
            "H.264 SPS claims a {}x{} picture: the largest supported is {MAX_SIDE}x{MAX_SHORT_SIDE}",
            coded.width, coded.height
        )));
    }
    let parsed = parse_sps(sps).map_err(|e| {
        JobError::CorruptInput(format!("H.264 SPS (profile_idc {profile_idc}): {e}"))
    })?;
    let profile = match profile_idc {
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4 Predictive",
        44 => "CAVLC 4:4:4 Intra",
        _ => "",
    };
    if parsed.bit_depth_luma_minus8 > 0 || parsed.bit_depth_chroma_minus8 > 0 {
        return Err(unsupported(format!(
            "H.264 {} with {}-bit samples: only 8-bit H.264 is supported",
            if profile.is_empty() {
                "stream"
            } else {
                profile
            },
            8 + parsed.bit_depth_luma_minus8
        )));
    }
    if parsed.chroma_format_idc != 1 {
        let chroma = match parsed.chroma_format_idc {
            0 => "4:0:0 (monochrome)",
            2 => "4:2:2",
            _ => "4:4:4",
        };
        return Err(unsupported(format!(
            "H.264 with {chroma} chroma: only 4:2:0 is supported"
        )));
    }
    if !matches!(profile_idc, 66 | 77 | 100) {
        return Err(unsupported(format!(
            "H.264 profile {} (profile_idc {profile_idc}): Baseline, Main and High are supported",
            if profile.is_empty() { "?" } else { profile }
        )));
    }
    if !coded.frame_mbs_only {
        return Err(unsupported(
            "interlaced H.264 (field or MBAFF coding): only progressive video is supported".into(),
        ));
    }
    Ok(SpsInfo {
        width: u32::from(parsed.width),
        height: u32::from(parsed.height),
    })
}

/// Largest picture side OpenH264 decodes (and we accept).
const MAX_SIDE: u64 = 3840;
/// Largest short side.
const MAX_SHORT_SIDE: u64 = 2160;

/// The coded size an SPS declares (whole macroblocks, before cropping) and whether it codes
/// frames only.
struct Coded {
    width: u64,
    height: u64,
    frame_mbs_only: bool,
}

/// Read the size fields and `frame_mbs_only_flag` (0 = interlaced coding possible) of an SPS
/// NAL unit.
fn coded_size(sps: &[u8]) -> Result<Coded, JobError> {
    let rbsp = unescape(sps.get(1..).unwrap_or_default());
    let mut r = Bits {
        data: &rbsp,
        pos: 0,
    };
    let err = || JobError::CorruptInput("H.264 SPS ends early".into());
    let profile_idc = r.bits(8).ok_or_else(err)?;
    r.bits(16).ok_or_else(err)?; // constraint flags, level_idc
    r.ue().ok_or_else(err)?; // seq_parameter_set_id
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        let chroma = r.ue().ok_or_else(err)?;
        if chroma == 3 {
            r.bits(1).ok_or_else(err)?;
        }
        r.ue().ok_or_else(err)?;
        r.ue().ok_or_else(err)?;
        r.bits(1).ok_or_else(err)?;
        if r.bits(1).ok_or_else(err)? == 1 {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if r.bits(1).ok_or_else(err)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se().ok_or_else(err)? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue().ok_or_else(err)?; // log2_max_frame_num_minus4
    match r.ue().ok_or_else(err)? {
        0 => {
            r.ue().ok_or_else(err)?;
        }
        1 => {
            r.bits(1).ok_or_else(err)?;
            r.se().ok_or_else(err)?;
            r.se().ok_or_else(err)?;
            let n = r.ue().ok_or_else(err)?;
            if n > 255 {
                return Err(err());
            }
            for _ in 0..n {
                r.se().ok_or_else(err)?;
            }
        }
        _ => {}
    }
    r.ue().ok_or_else(err)?; // max_num_ref_frames
    r.bits(1).ok_or_else(err)?;
    let width_mbs = r.ue().ok_or_else(err)? + 1; // pic_width_in_mbs_minus1
    let height_units = r.ue().ok_or_else(err)? + 1; // pic_height_in_map_units_minus1
    let frame_mbs_only = r.bits(1).ok_or_else(err)? == 1;
    // Field coding: a map unit is two macroblock rows.
    let height_mbs = height_units * if frame_mbs_only { 1 } else { 2 };
    Ok(Coded {
        width: width_mbs * 16,
        height: height_mbs * 16,
        frame_mbs_only,
    })
}

/// Remove emulation-prevention bytes (`00 00 03` → `00 00`).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bits(&mut self, n: u32) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u64::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u64> {
        // At most 32 leading zeros: the value fits a u64 and a hostile run of zeros ends.
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 32 {
                return None;
            }
        }
        Some((1u64 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i64> {
        let k = self.ue()? as i64;
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Append the NAL units of an MP4 sample (each prefixed by its `length_size`-byte length)
/// to `out` in Annex-B form (each preceded by a 4-byte start code).
pub fn to_annexb(sample: &[u8], length_size: usize, out: &mut Vec<u8>) -> Result<(), JobError> {
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < length_size {
            return Err(JobError::CorruptInput(
                "H.264 sample ends inside a NAL length prefix".into(),
            ));
        }
        let n = rest[..length_size]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[length_size..];
        if n > rest.len() {
            return Err(JobError::CorruptInput(format!(
                "H.264 NAL unit claims {n} bytes but its sample has {} left",
                rest.len()
            )));
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    Ok(())
}

/// Split Annex-B data into NAL units (without start codes).
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut units = Vec::new();
    let mut i = 0;
    let mut start = None;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                let mut end = i;
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                units.push(&data[s..end]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start
        && s < data.len()
    {
        units.push(&data[s..]);
    }
    units
}

/// The RFC 6381 codec string (`avc1.PPCCLL`) for a profile triple.
pub fn codec_string(profile: (u8, u8, u8)) -> String {
    format!("avc1.{:02x}{:02x}{:02x}", profile.0, profile.1, profile.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_round_trip_and_bounds() {
        let sample = [0, 0, 0, 2, 0x65, 0xAA, 0, 0, 0, 1, 0x41];
        let mut out = Vec::new();
        to_annexb(&sample, 4, &mut out).expect("valid sample");
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0xAA, 0, 0, 0, 1, 0x41]);
        assert_eq!(nal_units(&out), vec![&[0x65, 0xAA][..], &[0x41][..]]);
        let lying = [0, 0, 0, 9, 0x65];
        assert!(to_annexb(&lying, 4, &mut Vec::new()).is_err());
    }

    #[test]
    fn exp_golomb() {
        // 1 → 0, 010 → 1, 011 → 2, 00100 → 3
        let data = [0b1010_0110, 0b0100_0000];
        let mut r = Bits {
            data: &data,
            pos: 0,
        };
        assert_eq!(
            (r.ue(), r.ue(), r.ue(), r.ue()),
            (Some(0), Some(1), Some(2), Some(3))
        );
    }
}
