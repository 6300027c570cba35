//! OpenH264's encoder through its C API (the library `openh264-sys2` builds from source). The
//! `openh264` crate's wrapper always writes CAVLC (Constrained Baseline); the rungs want CABAC
//! (Main profile), which OpenH264 has but the wrapper does not expose: the same bits buy
//! ~0.7 dB more PSNR (measured: a detailed 720p pan at 1500 kbit/s, 40.39 → 41.09 dB), about a
//! fifth of the bits at equal quality. Every `unsafe` call on the encoder lives here: one owner
//! creates, initialises, uses and destroys the handle.

#![allow(unsafe_code)]

use openh264_sys2::{
    API, CAMERA_VIDEO_REAL_TIME, CONSTANT_ID, DEBLOCKING_IDC_0, DynamicAPI,
    ENCODER_OPTION_DATAFORMAT, ENCODER_OPTION_TRACE_CALLBACK, ENCODER_OPTION_TRACE_LEVEL,
    ISVCEncoder, MEDIUM_COMPLEXITY, PRO_MAIN, RC_BITRATE_MODE, SEncParamExt, SFrameBSInfo,
    SM_SINGLE_SLICE, SSourcePicture, WELS_LOG_ERROR, WelsTraceCallback, videoFormatI420,
    videoFrameTypeIDR, videoFrameTypeInvalid, videoFrameTypeSkip,
};
use std::ffi::{c_int, c_void};

/// What a rung asks of the encoder.
#[derive(Debug, Clone, Copy)]
pub(super) struct Params {
    /// Picture size (even, at most 3840×2160 either way round: OpenH264's limit).
    pub width: u32,
    pub height: u32,
    /// Nominal frame rate (rate control's budget per frame).
    pub fps: f32,
    /// Target bitrate, bits per second.
    pub bitrate_bps: u32,
    /// Lowest QP the rate control may use (0: no floor).
    pub min_qp: u8,
    /// `level_idc` (Table A-1), e.g. 40 for 4.0.
    pub level_idc: u8,
    /// Where OpenH264's log lines go (installed before the encoder is initialised).
    pub log: WelsTraceCallback,
}

/// What one `encode` call produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Picture {
    /// An IDR picture (with its parameter sets).
    Idr,
    /// Any other coded picture.
    Coded,
    /// Nothing (the rate control skipped the frame).
    Skipped,
}

/// One initialised OpenH264 encoder.
pub(super) struct OpenH264 {
    api: DynamicAPI,
    enc: *mut ISVCEncoder,
    info: Box<SFrameBSInfo>,
}

// SAFETY: the handle is owned by this value and only used through `&mut self`; OpenH264 keeps
// no thread-local state, so the value may move between threads (the `openh264` crate makes the
// same promise for its wrapper).
unsafe impl Send for OpenH264 {}

impl std::fmt::Debug for OpenH264 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenH264").finish_non_exhaustive()
    }
}

impl OpenH264 {
    /// Create and initialise an encoder: bitrate rate control without frame skipping, one
    /// slice, one thread, CABAC, Main profile at `p.level_idc`, BT.709 limited range in the
    /// VUI, keyframes only when asked for ([`OpenH264::force_idr`]).
    pub fn new(p: &Params) -> Result<OpenH264, String> {
        let (w, h) = (dim(p.width)?, dim(p.height)?);
        if w.max(h) > 3840 || w.min(h) > 2160 {
            return Err(format!(
                "OpenH264 encodes up to 3840×2160, this rung is {w}×{h}"
            ));
        }
        let bitrate = c_int::try_from(p.bitrate_bps).map_err(|_| "bitrate out of range")?;
        let api = DynamicAPI::from_source();
        let mut enc: *mut ISVCEncoder = std::ptr::null_mut();
        // SAFETY: the out pointer is valid; a null result is checked below.
        let rc = unsafe { api.WelsCreateSVCEncoder(&raw mut enc) };
        if rc != 0 || enc.is_null() {
            return Err(format!("creating the encoder failed ({rc})"));
        }
        let mut me = OpenH264 {
            api,
            enc,
            info: Box::new(SFrameBSInfo::default()),
        };
        let mut log = p.log;
        me.option(ENCODER_OPTION_TRACE_CALLBACK, (&raw mut log).cast())?;
        let mut params = SEncParamExt::default();
        // SAFETY: the vtable entry belongs to this live encoder; `params` is writable.
        let rc = unsafe {
            me.vtbl()?.GetDefaultParams.ok_or("no GetDefaultParams")?(enc, &raw mut params)
        };
        if rc != 0 {
            return Err(format!("reading the default parameters failed ({rc})"));
        }
        set_params(&mut params, p, w, h, bitrate);
        // SAFETY: as above; OpenH264 copies the parameters.
        let rc =
            unsafe { me.vtbl()?.InitializeExt.ok_or("no InitializeExt")?(enc, &raw const params) };
        if rc != 0 {
            return Err(format!("initialising the encoder failed ({rc})"));
        }
        let mut level: c_int = WELS_LOG_ERROR;
        me.option(ENCODER_OPTION_TRACE_LEVEL, (&raw mut level).cast())?;
        let mut format: c_int = videoFormatI420;
        me.option(ENCODER_OPTION_DATAFORMAT, (&raw mut format).cast())?;
        Ok(me)
    }

    /// Make the next picture an IDR.
    pub fn force_idr(&mut self) -> Result<(), String> {
        // SAFETY: the vtable entry belongs to this live, initialised encoder.
        let rc =
            unsafe { self.vtbl()?.ForceIntraFrame.ok_or("no ForceIntraFrame")?(self.enc, true) };
        if rc != 0 {
            return Err(format!("forcing a keyframe failed ({rc})"));
        }
        Ok(())
    }

    /// Encode one I420 picture (`planes`: Y, U, V with their strides); `nal` gets each NAL
    /// unit it made, in order, without its start code (OpenH264 gives every unit's length).
    pub fn encode(
        &mut self,
        (width, height): (u32, u32),
        planes: [(&[u8], usize); 3],
        nal: &mut dyn FnMut(&[u8]),
    ) -> Result<Picture, String> {
        let (w, h) = (dim(width)?, dim(height)?);
        if width == 0 || height == 0 {
            return Err("an empty picture".into());
        }
        let rows = [
            height as usize,
            height.div_ceil(2) as usize,
            height.div_ceil(2) as usize,
        ];
        let cols = [
            width as usize,
            width.div_ceil(2) as usize,
            width.div_ceil(2) as usize,
        ];
        let mut src = SSourcePicture {
            iColorFormat: videoFormatI420,
            iPicWidth: w,
            iPicHeight: h,
            ..SSourcePicture::default()
        };
        for (i, ((plane, stride), (r, c))) in planes.iter().zip(rows.iter().zip(cols)).enumerate() {
            if *stride < c || plane.len() < stride * (r - 1) + c {
                return Err(format!(
                    "plane {i} is too small for a {width}×{height} picture"
                ));
            }
            src.iStride[i] = c_int::try_from(*stride).map_err(|_| "stride out of range")?;
            // OpenH264 only reads the source picture.
            src.pData[i] = plane.as_ptr().cast_mut();
        }
        *self.info = SFrameBSInfo::default();
        let encode_frame = self.vtbl()?.EncodeFrame.ok_or("no EncodeFrame")?;
        // SAFETY: `src` points at planes checked above to hold the picture; `info` is ours and
        // is filled with pointers into the encoder's buffer, read before the next call.
        let rc = unsafe { encode_frame(self.enc, &raw const src, &raw mut *self.info) };
        if rc != 0 {
            return Err(format!("encoding a picture failed ({rc})"));
        }
        let kind = match self.info.eFrameType {
            t if t == videoFrameTypeInvalid || t == videoFrameTypeSkip => {
                return Ok(Picture::Skipped);
            }
            t if t == videoFrameTypeIDR => Picture::Idr,
            _ => Picture::Coded,
        };
        let layers = usize::try_from(self.info.iLayerNum)
            .unwrap_or(0)
            .min(self.info.sLayerInfo.len());
        for layer in &self.info.sLayerInfo[..layers] {
            let nals = usize::try_from(layer.iNalCount).unwrap_or(0);
            if layer.pBsBuf.is_null() || layer.pNalLengthInByte.is_null() {
                continue;
            }
            // SAFETY: OpenH264 gives `iNalCount` lengths for the layer's buffer.
            let lengths = unsafe { std::slice::from_raw_parts(layer.pNalLengthInByte, nals) };
            let bytes: usize = lengths
                .iter()
                .map(|&l| usize::try_from(l).unwrap_or(0))
                .sum();
            // SAFETY: the layer's NAL units lie back to back in `pBsBuf`, `bytes` long in all.
            let mut buf = unsafe { std::slice::from_raw_parts(layer.pBsBuf, bytes) };
            for &l in lengths {
                let (unit, rest) = buf.split_at(usize::try_from(l).unwrap_or(0).min(buf.len()));
                buf = rest;
                let unit = without_start_code(unit);
                if !unit.is_empty() {
                    nal(unit);
                }
            }
        }
        Ok(kind)
    }

    fn vtbl(&self) -> Result<&openh264_sys2::ISVCEncoderVtbl, String> {
        // SAFETY: `enc` is a live encoder created by WelsCreateSVCEncoder; its first field is
        // the vtable pointer, valid until WelsDestroySVCEncoder.
        unsafe { (*self.enc).as_ref() }.ok_or_else(|| "the encoder has no vtable".into())
    }

    fn option(
        &mut self,
        id: openh264_sys2::ENCODER_OPTION,
        value: *mut c_void,
    ) -> Result<(), String> {
        // SAFETY: the vtable entry belongs to this live encoder; each option's value is the type
        // OpenH264 documents for it, and it is copied during the call.
        let rc = unsafe { self.vtbl()?.SetOption.ok_or("no SetOption")?(self.enc, id, value) };
        if rc != 0 {
            return Err(format!("setting encoder option {id} failed ({rc})"));
        }
        Ok(())
    }
}

impl Drop for OpenH264 {
    fn drop(&mut self) {
        // SAFETY: the encoder is live; Uninitialize is harmless on one that failed to initialise,
        // and the handle is not used after it is destroyed.
        unsafe {
            if let Ok(v) = self.vtbl()
                && let Some(uninit) = v.Uninitialize
            {
                uninit(self.enc);
            }
            self.api.WelsDestroySVCEncoder(self.enc);
        }
    }
}

fn dim(v: u32) -> Result<c_int, String> {
    c_int::try_from(v).map_err(|_| format!("picture dimension {v} out of range"))
}

/// The rung's settings over OpenH264's defaults (what the `openh264` crate set before, plus
/// CABAC and the Main profile).
fn set_params(p: &mut SEncParamExt, want: &Params, w: c_int, h: c_int, bitrate: c_int) {
    p.iUsageType = CAMERA_VIDEO_REAL_TIME;
    p.iPicWidth = w;
    p.iPicHeight = h;
    p.iRCMode = RC_BITRATE_MODE;
    p.bEnableFrameSkip = false;
    p.iTargetBitrate = bitrate;
    p.bEnableDenoise = false;
    p.fMaxFrameRate = want.fps;
    p.eSpsPpsIdStrategy = CONSTANT_ID;
    p.iMultipleThreadIdc = 1;
    p.bEnableSceneChangeDetect = false;
    p.bEnableAdaptiveQuant = true;
    // Background detection is for video calls (it skips "static" areas); on transcodes it
    // costs quality: measured +0.4 dB PSNR at 720p and +1.3 dB at 360p without it, same
    // bitrate and speed (tests/bench/video.sh's clip).
    p.bEnableBackgroundDetection = false;
    p.bEnableLongTermReference = false;
    p.iComplexityMode = MEDIUM_COMPLEXITY;
    p.uiIntraPeriod = 0;
    p.iLoopFilterDisableIdc = DEBLOCKING_IDC_0;
    p.iMinQp = c_int::from(want.min_qp);
    p.iMaxQp = 51;
    p.iEntropyCodingModeFlag = 1;
    p.iSpatialLayerNum = 1;
    p.iTemporalLayerNum = 1;
    p.iLtrMarkPeriod = 30;
    let l = &mut p.sSpatialLayers[0];
    l.uiProfileIdc = PRO_MAIN;
    l.uiLevelIdc = c_int::from(want.level_idc);
    // Every frame is BT.709 limited range (see media::video::colour): say so in the SPS.
    l.bVideoSignalTypePresent = true;
    l.bColorDescriptionPresent = true;
    l.bFullRange = false;
    l.uiColorPrimaries = 1;
    l.uiTransferCharacteristics = 1;
    l.uiColorMatrix = 1;
    l.iMaxSpatialBitrate = bitrate;
    l.iSpatialBitrate = bitrate;
    l.fFrameRate = want.fps;
    l.iVideoWidth = w;
    l.iVideoHeight = h;
    l.sSliceArgument.uiSliceMode = SM_SINGLE_SLICE;
    l.sSliceArgument.uiSliceNum = 1;
}

/// A NAL unit as OpenH264 writes it (Annex B: `00 00 01` or `00 00 00 01` first), without
/// its start code.
fn without_start_code(unit: &[u8]) -> &[u8] {
    let zeros = unit.iter().take_while(|&&b| b == 0).count();
    match unit.get(zeros) {
        Some(1) if zeros >= 2 => &unit[zeros + 1..],
        _ => unit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(width: u32, height: u32) -> Params {
        Params {
            width,
            height,
            fps: 25.0,
            bitrate_bps: 300_000,
            min_qp: 0,
            level_idc: 30,
            log: None,
        }
    }

    /// A NAL unit: its type and the bytes after its header.
    type Unit = (u8, Vec<u8>);

    /// Encode one picture; its NAL units.
    fn encode(
        enc: &mut OpenH264,
        (w, h): (u32, u32),
        planes: [(&[u8], usize); 3],
    ) -> Result<(Picture, Vec<Unit>), String> {
        let mut units = Vec::new();
        let kind = enc.encode((w, h), planes, &mut |n: &[u8]| {
            if let (Some(b), Some(rest)) = (n.first(), n.get(1..)) {
                units.push((b & 0x1f, rest.to_vec()));
            }
        })?;
        Ok((kind, units))
    }

    #[test]
    fn start_codes_of_both_lengths_come_off() {
        assert_eq!(without_start_code(&[0, 0, 0, 1, 0x67, 9]), &[0x67, 9]);
        assert_eq!(without_start_code(&[0, 0, 1, 0x68]), &[0x68]);
        assert_eq!(without_start_code(&[0x65, 0, 0, 1]), &[0x65, 0, 0, 1]);
    }

    #[test]
    fn the_stream_is_main_profile_with_cabac() {
        let (w, h) = (64u32, 48u32);
        let mut enc = OpenH264::new(&params(w, h)).expect("encoder");
        let y = vec![100u8; (w * h) as usize];
        let c = vec![128u8; (w * h / 4) as usize];
        enc.force_idr().expect("idr");
        let (kind, units) =
            encode(&mut enc, (w, h), [(&y, w as usize), (&c, 32), (&c, 32)]).expect("encode");
        assert_eq!(kind, Picture::Idr);
        let sps = &units.iter().find(|(t, _)| *t == 7).expect("an SPS").1;
        assert_eq!(sps[0], 77, "profile_idc: Main");
        assert_eq!(sps[2], 30, "level_idc as asked");
        // PPS: pic_parameter_set_id ue(v) = 0 and seq_parameter_set_id ue(v) = 0 are one bit
        // each ('1'), then entropy_coding_mode_flag.
        let pps = &units.iter().find(|(t, _)| *t == 8).expect("a PPS").1;
        assert_eq!(pps[0] & 0xe0, 0xe0, "ids 0 and CABAC: {:08b}", pps[0]);
        assert!(units.iter().any(|(t, _)| *t == 5), "an IDR slice");
    }

    #[test]
    fn a_plane_too_small_for_the_picture_is_refused_not_read() {
        let (w, h) = (64u32, 48u32);
        let mut enc = OpenH264::new(&params(w, h)).expect("encoder");
        let y = vec![0u8; (w * h) as usize - 1];
        let c = vec![128u8; (w * h / 4) as usize];
        let err = encode(&mut enc, (w, h), [(&y, w as usize), (&c, 32), (&c, 32)])
            .expect_err("short luma plane");
        assert!(err.contains("plane 0"), "{err}");
        let err = encode(&mut enc, (w, h), [(&y[..], 16), (&c, 32), (&c, 32)])
            .expect_err("stride under the width");
        assert!(err.contains("plane 0"), "{err}");
    }

    #[test]
    fn oversized_pictures_are_refused_before_openh264_sees_them() {
        let err = OpenH264::new(&params(4096, 2304)).expect_err("over 3840x2160");
        assert!(err.contains("3840"), "{err}");
    }
}
