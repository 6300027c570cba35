//! The few FFmpeg objects the decoder child uses, each behind a small owning type that frees
//! it on drop: an opened input (container whitelisted, files only), packets, frames, a
//! decoder, swscale for pixel formats and sizes, a deinterlacing filter graph, swresample
//! with an audio FIFO, the AAC encoder, and the AV1 encoder. This is the only module with
//! `unsafe` code for FFmpeg; all of it runs in the child process (see [`super::child`]) except
//! [`Av1Encoder`], which the worker's ladder uses on pictures it made itself.

#![allow(unsafe_code)]

use mediaflow_ffmpeg_sys as ff;
use std::ffi::{CStr, CString};
use std::path::Path;
use std::ptr;

/// An FFmpeg error code with what was being done.
#[derive(Debug, Clone)]
pub struct Error {
    /// The negative AVERROR code.
    pub code: i32,
    /// What failed.
    pub what: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, strerror(self.code))
    }
}

impl Error {
    fn new(code: i32, what: impl Into<String>) -> Self {
        Error {
            code,
            what: what.into(),
        }
    }

    /// The data is invalid (as opposed to memory or I/O trouble).
    pub fn is_invalid_data(&self) -> bool {
        self.code == AVERROR_INVALIDDATA
    }

    /// Memory could not be allocated.
    pub fn is_enomem(&self) -> bool {
        self.code == -libc::ENOMEM
    }
}

const fn tag(a: u8, b: u8, c: u8, d: u8) -> i32 {
    -((a as i32) | ((b as i32) << 8) | ((c as i32) << 16) | ((d as i32) << 24))
}

/// `AVERROR_EOF`.
pub const AVERROR_EOF: i32 = tag(b'E', b'O', b'F', b' ');
/// `AVERROR_INVALIDDATA`.
pub const AVERROR_INVALIDDATA: i32 = tag(b'I', b'N', b'D', b'A');
/// `AVERROR_DECODER_NOT_FOUND`.
pub const AVERROR_DECODER_NOT_FOUND: i32 = tag(0xF8, b'D', b'E', b'C');
const EAGAIN: i32 = -libc::EAGAIN;
/// `AV_NOPTS_VALUE`: no timestamp.
pub const AV_NOPTS_VALUE: i64 = i64::MIN;

/// FFmpeg's words for an error code.
pub fn strerror(code: i32) -> String {
    let mut buf = [0 as std::ffi::c_char; 128];
    // SAFETY: the buffer is writable for its length; av_strerror NUL-terminates.
    unsafe {
        ff::av_strerror(code, buf.as_mut_ptr(), buf.len());
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    }
}

fn check(code: i32, what: &str) -> Result<i32, Error> {
    if code < 0 {
        Err(Error::new(code, what))
    } else {
        Ok(code)
    }
}

/// Quiet FFmpeg's own logging down to errors (they go to stderr, which the engine logs).
pub fn set_log_level_errors() {
    // SAFETY: sets a global integer.
    unsafe { ff::av_log_set_level(ff::AV_LOG_ERROR as i32) }
}

/// A rational as a float (0 for a zero denominator).
pub fn q2d(q: ff::AVRational) -> f64 {
    if q.den == 0 {
        0.0
    } else {
        f64::from(q.num) / f64::from(q.den)
    }
}

/// Rescale `v` from time base `from` to `to` (rounding to nearest).
pub fn rescale(v: i64, from: ff::AVRational, to: ff::AVRational) -> i64 {
    // SAFETY: pure arithmetic.
    unsafe { ff::av_rescale_q(v, from, to) }
}

/// The name FFmpeg gives a codec id.
pub fn codec_name(id: ff::AVCodecID::Type) -> String {
    // SAFETY: returns a static string (or "unknown_codec").
    unsafe { cstr(ff::avcodec_get_name(id)) }
}

/// The profile name, when FFmpeg knows it.
pub fn profile_name(id: ff::AVCodecID::Type, profile: i32) -> Option<String> {
    // SAFETY: returns a static string or NULL.
    let p = unsafe { ff::avcodec_profile_name(id, profile) };
    (!p.is_null()).then(|| unsafe { cstr(p) })
}

/// Name of a pixel format.
pub fn pix_fmt_name(f: i32) -> String {
    // SAFETY: returns a static string or NULL.
    let p = unsafe { ff::av_get_pix_fmt_name(f) };
    if p.is_null() {
        format!("pix_fmt {f}")
    } else {
        unsafe { cstr(p) }
    }
}

/// What a pixel format is made of.
#[derive(Debug, Clone, Copy)]
pub struct PixFmtInfo {
    /// Bits per luma sample.
    pub depth: u8,
    /// log2 of the chroma subsampling (x, y).
    pub chroma_shift: (u8, u8),
    /// Has an alpha plane.
    pub alpha: bool,
    /// RGB rather than YUV.
    pub rgb: bool,
    /// Components (1 = grey).
    pub components: u8,
}

/// Describe a pixel format.
pub fn pix_fmt_info(f: i32) -> Option<PixFmtInfo> {
    // SAFETY: returns a static descriptor or NULL.
    let d = unsafe { ff::av_pix_fmt_desc_get(f) };
    if d.is_null() {
        return None;
    }
    // SAFETY: non-null descriptor.
    let d = unsafe { &*d };
    Some(PixFmtInfo {
        depth: d.comp[0].depth as u8,
        chroma_shift: (d.log2_chroma_w, d.log2_chroma_h),
        alpha: d.flags & u64::from(ff::AV_PIX_FMT_FLAG_ALPHA) != 0,
        rgb: d.flags & u64::from(ff::AV_PIX_FMT_FLAG_RGB) != 0,
        components: d.nb_components,
    })
}

unsafe fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: the caller passes a NUL-terminated string.
        unsafe { CStr::from_ptr(p).to_string_lossy().into_owned() }
    }
}

/// An opened container.
pub struct Input {
    ctx: *mut ff::AVFormatContext,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input").finish_non_exhaustive()
    }
}

impl Input {
    /// Open `path`, letting only the demuxers in `formats` (comma-separated) read it and only
    /// the `file` protocol be used (no network, no playlists that point elsewhere).
    pub fn open(path: &Path, formats: &str) -> Result<Input, Error> {
        let cpath = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::new(-libc::EINVAL, "path holds a NUL byte"))?;
        let mut opts: *mut ff::AVDictionary = ptr::null_mut();
        let set = |opts: &mut *mut ff::AVDictionary, k: &str, v: &str| {
            let (k, v) = (
                CString::new(k).unwrap_or_default(),
                CString::new(v).unwrap_or_default(),
            );
            // SAFETY: valid C strings; av_dict_set copies them.
            unsafe { ff::av_dict_set(opts, k.as_ptr(), v.as_ptr(), 0) };
        };
        set(&mut opts, "format_whitelist", formats);
        set(&mut opts, "protocol_whitelist", "file");
        // SAFETY: allocation; checked below.
        let mut ctx = unsafe { ff::avformat_alloc_context() };
        if ctx.is_null() {
            return Err(Error::new(-libc::ENOMEM, "allocating the demuxer"));
        }
        // SAFETY: ctx is a fresh context; on failure avformat_open_input frees it and sets it
        // to NULL; opts is freed after.
        let r =
            unsafe { ff::avformat_open_input(&mut ctx, cpath.as_ptr(), ptr::null(), &mut opts) };
        unsafe { ff::av_dict_free(&mut opts) };
        check(r, "opening the container")?;
        let input = Input { ctx };
        // SAFETY: ctx is open.
        let r = unsafe { ff::avformat_find_stream_info(input.ctx, ptr::null_mut()) };
        check(r, "reading the stream headers")?;
        Ok(input)
    }

    /// The demuxer's name (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, `mpegts`, `avi`).
    pub fn format_name(&self) -> String {
        // SAFETY: ctx is open; iformat is set.
        unsafe { cstr((*(*self.ctx).iformat).name) }
    }

    /// Container duration in seconds, when known.
    pub fn duration_s(&self) -> Option<f64> {
        // SAFETY: ctx is open.
        let d = unsafe { (*self.ctx).duration };
        (d > 0).then(|| d as f64 / f64::from(ff::AV_TIME_BASE))
    }

    /// The streams.
    pub fn streams(&self) -> Vec<Stream<'_>> {
        // SAFETY: ctx is open; streams has nb_streams entries.
        unsafe {
            let n = (*self.ctx).nb_streams as usize;
            (0..n)
                .map(|i| Stream {
                    st: *(*self.ctx).streams.add(i),
                    _input: std::marker::PhantomData,
                })
                .collect()
        }
    }

    /// The stream groups (HEIF tile grids).
    pub fn tile_grids(&self) -> Vec<TileGrid> {
        let mut out = Vec::new();
        // SAFETY: ctx is open; stream_groups has nb_stream_groups entries, each of whose
        // params.tile_grid is valid for TILE_GRID groups.
        unsafe {
            let n = (*self.ctx).nb_stream_groups as usize;
            for i in 0..n {
                let g = *(*self.ctx).stream_groups.add(i);
                if (*g).type_ != ff::AVStreamGroupParamsType::AV_STREAM_GROUP_PARAMS_TILE_GRID {
                    continue;
                }
                let t = (*g).params.tile_grid;
                if t.is_null() {
                    continue;
                }
                let streams: Vec<usize> = (0..(*g).nb_streams as usize)
                    .map(|k| (**(*g).streams.add(k)).index as usize)
                    .collect();
                let tiles = (0..(*t).nb_tiles as usize)
                    .map(|k| {
                        let o = &*(*t).offsets.add(k);
                        Tile {
                            stream: streams.get(o.idx as usize).copied(),
                            x: o.horizontal,
                            y: o.vertical,
                        }
                    })
                    .collect();
                out.push(TileGrid {
                    id: (*g).id,
                    default: (*g).disposition & ff::AV_DISPOSITION_DEFAULT as i32 != 0,
                    coded_width: (*t).coded_width,
                    coded_height: (*t).coded_height,
                    crop: (
                        (*t).horizontal_offset,
                        (*t).vertical_offset,
                        (*t).width,
                        (*t).height,
                    ),
                    tiles,
                    side: SideData {
                        sd: (*t).coded_side_data,
                        n: (*t).nb_coded_side_data,
                    }
                    .owned(),
                });
            }
        }
        out
    }

    /// Move to the last keyframe of stream `stream` at or before `ts` (in that stream's time
    /// base): the next packets read start there.
    pub fn seek(&self, stream: usize, ts: i64) -> Result<(), Error> {
        let index = i32::try_from(stream).map_err(|_| Error::new(-libc::EINVAL, "stream"))?;
        // SAFETY: ctx is open; a seek only moves its read position (as `read` does).
        let r = unsafe { ff::av_seek_frame(self.ctx, index, ts, ff::AVSEEK_FLAG_BACKWARD as i32) };
        check(r, "seeking in the container").map(|_| ())
    }

    /// Read the next packet into `pkt`; `Ok(false)` at the end of the file.
    pub fn read(&self, pkt: &mut Packet) -> Result<bool, Error> {
        pkt.unref();
        // SAFETY: ctx is open (reading moves its file position and fills its internal
        // buffers, which the raw pointer allows through `&self`; stream pointers stay valid);
        // pkt is allocated.
        let r = unsafe { ff::av_read_frame(self.ctx, pkt.0) };
        if r == AVERROR_EOF {
            return Ok(false);
        }
        check(r, "reading the container").map(|_| true)
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        // SAFETY: ctx was opened by avformat_open_input.
        unsafe { ff::avformat_close_input(&mut self.ctx) }
    }
}

/// One tile of a HEIF grid.
#[derive(Debug, Clone, Copy)]
pub struct Tile {
    /// The stream holding it.
    pub stream: Option<usize>,
    /// Left edge on the canvas.
    pub x: i32,
    /// Top edge.
    pub y: i32,
}

/// A HEIF grid: tiles on a canvas, cropped to the picture.
#[derive(Debug, Clone)]
pub struct TileGrid {
    /// The grid item's id.
    pub id: i64,
    /// The primary item.
    pub default: bool,
    /// Canvas size.
    pub coded_width: i32,
    /// See `coded_width`.
    pub coded_height: i32,
    /// (x, y, width, height) of the picture on the canvas.
    pub crop: (i32, i32, i32, i32),
    /// The tiles.
    pub tiles: Vec<Tile>,
    /// Its side data (EXIF, ICC, display matrix).
    pub side: OwnedSideData,
}

/// Side data attached to a stream or grid, copied out.
#[derive(Debug, Clone, Default)]
pub struct OwnedSideData {
    /// A display matrix.
    pub display_matrix: Option<[i32; 9]>,
    /// EXIF (TIFF header first).
    pub exif: Option<Vec<u8>>,
    /// ICC profile.
    pub icc: Option<Vec<u8>>,
    /// Dolby Vision configuration: (profile, level, base-layer compatibility id).
    pub dovi: Option<(u8, u8, u8)>,
    /// Mastering display peak (cd/m²).
    pub mastering_peak_nits: Option<f64>,
    /// MaxCLL (cd/m²).
    pub max_cll: Option<u32>,
}

struct SideData {
    sd: *const ff::AVPacketSideData,
    n: i32,
}

impl SideData {
    fn get(&self, kind: ff::AVPacketSideDataType::Type) -> Option<&[u8]> {
        if self.sd.is_null() {
            return None;
        }
        // SAFETY: sd holds n entries; the returned entry's data holds size bytes.
        unsafe {
            let e = ff::av_packet_side_data_get(self.sd, self.n, kind);
            if e.is_null() || (*e).data.is_null() {
                None
            } else {
                Some(std::slice::from_raw_parts((*e).data, (*e).size))
            }
        }
    }

    fn owned(&self) -> OwnedSideData {
        use ff::AVPacketSideDataType as T;
        let display_matrix = self.get(T::AV_PKT_DATA_DISPLAYMATRIX).and_then(|b| {
            (b.len() >= 36).then(|| {
                let mut m = [0i32; 9];
                for (i, c) in b.chunks_exact(4).take(9).enumerate() {
                    m[i] = i32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
                }
                m
            })
        });
        let dovi = self.get(T::AV_PKT_DATA_DOVI_CONF).and_then(|b| {
            (b.len() >= std::mem::size_of::<ff::AVDOVIDecoderConfigurationRecord>()).then(|| {
                // SAFETY: the buffer holds a whole record (checked size); read unaligned.
                let r: ff::AVDOVIDecoderConfigurationRecord = unsafe {
                    ptr::read_unaligned(b.as_ptr().cast::<ff::AVDOVIDecoderConfigurationRecord>())
                };
                (r.dv_profile, r.dv_level, r.dv_bl_signal_compatibility_id)
            })
        });
        let mastering_peak_nits = self
            .get(T::AV_PKT_DATA_MASTERING_DISPLAY_METADATA)
            .and_then(|b| {
                (b.len() >= std::mem::size_of::<ff::AVMasteringDisplayMetadata>()).then(|| {
                    // SAFETY: whole record (checked size); read unaligned.
                    let m: ff::AVMasteringDisplayMetadata = unsafe {
                        ptr::read_unaligned(b.as_ptr().cast::<ff::AVMasteringDisplayMetadata>())
                    };
                    (m.has_luminance != 0).then(|| q2d(m.max_luminance))
                })?
            });
        let max_cll = self.get(T::AV_PKT_DATA_CONTENT_LIGHT_LEVEL).and_then(|b| {
            (b.len() >= std::mem::size_of::<ff::AVContentLightMetadata>()).then(|| {
                // SAFETY: whole record (checked size); read unaligned.
                let m: ff::AVContentLightMetadata =
                    unsafe { ptr::read_unaligned(b.as_ptr().cast::<ff::AVContentLightMetadata>()) };
                m.MaxCLL
            })
        });
        OwnedSideData {
            display_matrix,
            exif: self.get(T::AV_PKT_DATA_EXIF).map(<[u8]>::to_vec),
            icc: self.get(T::AV_PKT_DATA_ICC_PROFILE).map(<[u8]>::to_vec),
            dovi,
            mastering_peak_nits,
            max_cll,
        }
    }
}

/// A stream of an [`Input`].
#[derive(Clone, Copy)]
pub struct Stream<'a> {
    st: *mut ff::AVStream,
    _input: std::marker::PhantomData<&'a Input>,
}

impl std::fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("index", &self.index())
            .finish()
    }
}

impl<'a> Stream<'a> {
    fn par(&self) -> &'a ff::AVCodecParameters {
        // SAFETY: every stream of an open input has codec parameters.
        unsafe { &*(*self.st).codecpar }
    }

    /// Index in the container.
    pub fn index(&self) -> usize {
        // SAFETY: valid stream.
        unsafe { (*self.st).index as usize }
    }

    /// Container-level id (the HEIF item id for HEIF items).
    pub fn id(&self) -> i64 {
        // SAFETY: valid stream.
        unsafe { i64::from((*self.st).id) }
    }

    /// Video, audio or other.
    pub fn media_type(&self) -> ff::AVMediaType::Type {
        self.par().codec_type
    }

    /// Codec id.
    pub fn codec_id(&self) -> ff::AVCodecID::Type {
        self.par().codec_id
    }

    /// The codec parameters.
    pub fn params(&self) -> &'a ff::AVCodecParameters {
        self.par()
    }

    /// Disposition flags (`AV_DISPOSITION_*`).
    pub fn disposition(&self) -> i32 {
        // SAFETY: valid stream.
        unsafe { (*self.st).disposition }
    }

    /// Time base.
    pub fn time_base(&self) -> ff::AVRational {
        // SAFETY: valid stream.
        unsafe { (*self.st).time_base }
    }

    /// First timestamp, in the time base, when known.
    pub fn start_time(&self) -> Option<i64> {
        // SAFETY: valid stream.
        let s = unsafe { (*self.st).start_time };
        (s != AV_NOPTS_VALUE).then_some(s)
    }

    /// Duration in the time base, when known.
    pub fn duration(&self) -> Option<i64> {
        // SAFETY: valid stream.
        let d = unsafe { (*self.st).duration };
        (d > 0 && d != AV_NOPTS_VALUE).then_some(d)
    }

    /// Frames, when the container counts them.
    pub fn frames(&self) -> Option<i64> {
        // SAFETY: valid stream.
        let n = unsafe { (*self.st).nb_frames };
        (n > 0).then_some(n)
    }

    /// Average frame rate.
    pub fn avg_frame_rate(&self) -> ff::AVRational {
        // SAFETY: valid stream.
        unsafe { (*self.st).avg_frame_rate }
    }

    /// Real base frame rate (what FFmpeg guesses when avg is unknown).
    pub fn r_frame_rate(&self) -> ff::AVRational {
        // SAFETY: valid stream.
        unsafe { (*self.st).r_frame_rate }
    }

    /// Sample aspect ratio (stream's, else the codec's).
    pub fn sample_aspect_ratio(&self) -> ff::AVRational {
        // SAFETY: valid stream.
        let s = unsafe { (*self.st).sample_aspect_ratio };
        if s.num > 0 && s.den > 0 {
            s
        } else {
            self.par().sample_aspect_ratio
        }
    }

    /// Side data (display matrix, Dolby Vision, HDR metadata, EXIF, ICC).
    pub fn side_data(&self) -> OwnedSideData {
        let p = self.par();
        SideData {
            sd: p.coded_side_data,
            n: p.nb_coded_side_data,
        }
        .owned()
    }

    /// Stop the demuxer returning this stream's packets.
    pub fn discard(&self) {
        // SAFETY: valid stream; discard is a plain field the demuxer reads.
        unsafe { (*self.st).discard = ff::AVDiscard::AVDISCARD_ALL }
    }
}

/// A packet.
pub struct Packet(*mut ff::AVPacket);

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet").finish_non_exhaustive()
    }
}

impl Packet {
    /// An empty packet.
    pub fn new() -> Result<Packet, Error> {
        // SAFETY: allocation, checked.
        let p = unsafe { ff::av_packet_alloc() };
        if p.is_null() {
            Err(Error::new(-libc::ENOMEM, "allocating a packet"))
        } else {
            Ok(Packet(p))
        }
    }

    fn unref(&mut self) {
        // SAFETY: allocated packet.
        unsafe { ff::av_packet_unref(self.0) }
    }

    fn raw(&self) -> &ff::AVPacket {
        // SAFETY: allocated packet.
        unsafe { &*self.0 }
    }

    /// Its stream's index.
    pub fn stream(&self) -> usize {
        self.raw().stream_index as usize
    }

    /// Presentation time, when set.
    pub fn pts(&self) -> Option<i64> {
        let p = self.raw().pts;
        (p != AV_NOPTS_VALUE).then_some(p)
    }

    /// Decode time, when set.
    pub fn dts(&self) -> Option<i64> {
        let p = self.raw().dts;
        (p != AV_NOPTS_VALUE).then_some(p)
    }

    /// Duration in the stream's time base (0 if unknown).
    pub fn duration(&self) -> i64 {
        self.raw().duration
    }

    /// The payload.
    pub fn data(&self) -> &[u8] {
        let r = self.raw();
        if r.data.is_null() || r.size <= 0 {
            &[]
        } else {
            // SAFETY: data holds size bytes.
            unsafe { std::slice::from_raw_parts(r.data, r.size as usize) }
        }
    }

    /// Outside the container's edit list: needed by the decoder, not shown.
    pub fn discarded(&self) -> bool {
        self.raw().flags & ff::AV_PKT_FLAG_DISCARD as i32 != 0
    }
}

impl Drop for Packet {
    fn drop(&mut self) {
        // SAFETY: allocated by av_packet_alloc.
        unsafe { ff::av_packet_free(&mut self.0) }
    }
}

/// A decoded frame.
pub struct Frame(*mut ff::AVFrame);

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").finish_non_exhaustive()
    }
}

impl Frame {
    /// An empty frame.
    pub fn new() -> Result<Frame, Error> {
        // SAFETY: allocation, checked.
        let p = unsafe { ff::av_frame_alloc() };
        if p.is_null() {
            Err(Error::new(-libc::ENOMEM, "allocating a frame"))
        } else {
            Ok(Frame(p))
        }
    }

    /// The raw frame.
    pub fn raw(&self) -> &ff::AVFrame {
        // SAFETY: allocated frame.
        unsafe { &*self.0 }
    }

    /// Drop its buffers.
    pub fn unref(&mut self) {
        // SAFETY: allocated frame.
        unsafe { ff::av_frame_unref(self.0) }
    }

    /// Best-effort presentation time.
    pub fn pts(&self) -> Option<i64> {
        let r = self.raw();
        [r.best_effort_timestamp, r.pts]
            .into_iter()
            .find(|p| *p != AV_NOPTS_VALUE)
    }

    /// The decoder concealed errors in it, or flagged it corrupt.
    pub fn damaged(&self) -> bool {
        let r = self.raw();
        r.decode_error_flags != 0 || r.flags & ff::AV_FRAME_FLAG_CORRUPT as i32 != 0
    }

    /// Decoded only as a reference: outside the container's edit list.
    pub fn discarded(&self) -> bool {
        self.raw().flags & ff::AV_FRAME_FLAG_DISCARD as i32 != 0
    }

    /// Interlaced content.
    pub fn interlaced(&self) -> bool {
        self.raw().flags & ff::AV_FRAME_FLAG_INTERLACED as i32 != 0
    }

    /// Plane `i`: its bytes (rows × stride) and stride.
    pub fn plane(&self, i: usize, rows: usize) -> Option<(&[u8], usize)> {
        let r = self.raw();
        let (p, stride) = (*r.data.get(i)?, *r.linesize.get(i)?);
        if p.is_null() || stride <= 0 {
            return None;
        }
        let stride = stride as usize;
        // SAFETY: FFmpeg guarantees `rows` rows of `stride` bytes for a plane of this height.
        Some((
            unsafe { std::slice::from_raw_parts(p, stride * rows) },
            stride,
        ))
    }

    /// Samples per channel (audio).
    pub fn samples(&self) -> i32 {
        self.raw().nb_samples
    }

    fn ptr(&self) -> *mut ff::AVFrame {
        self.0
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        // SAFETY: allocated by av_frame_alloc.
        unsafe { ff::av_frame_free(&mut self.0) }
    }
}

/// An opened decoder for one stream.
pub struct Decoder {
    ctx: *mut ff::AVCodecContext,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    /// Open the decoder for `stream` with `threads` threads (0 = FFmpeg decides), keeping
    /// frames that hold concealed errors. `None` when this build has no decoder for it.
    pub fn open(stream: &Stream<'_>, threads: i32) -> Result<Option<Decoder>, Error> {
        let par = stream.params();
        // SAFETY: lookups and allocation; every pointer is checked.
        unsafe {
            let codec = ff::avcodec_find_decoder(par.codec_id);
            if codec.is_null() {
                return Ok(None);
            }
            let ctx = ff::avcodec_alloc_context3(codec);
            if ctx.is_null() {
                return Err(Error::new(-libc::ENOMEM, "allocating the decoder"));
            }
            let dec = Decoder { ctx };
            check(
                ff::avcodec_parameters_to_context(ctx, par),
                "configuring the decoder",
            )?;
            (*ctx).pkt_timebase = stream.time_base();
            (*ctx).thread_count = threads;
            (*ctx).flags |= ff::AV_CODEC_FLAG_OUTPUT_CORRUPT as i32;
            let opened = ff::avcodec_open2(ctx, codec, ptr::null_mut());
            if opened == -libc::EAGAIN {
                // The decoder's threads could not be started: under the child's address-space
                // cap, that is their stacks not fitting — memory, not the data.
                return Err(Error::new(
                    -libc::ENOMEM,
                    "opening the decoder (starting its threads)",
                ));
            }
            check(opened, "opening the decoder")?;
            Ok(Some(dec))
        }
    }

    /// Feed a packet (`None` = end of stream: drain).
    pub fn send(&mut self, pkt: Option<&Packet>) -> Result<(), Error> {
        // SAFETY: open decoder; a NULL packet starts draining.
        let r = unsafe { ff::avcodec_send_packet(self.ctx, pkt.map_or(ptr::null(), |p| p.0)) };
        if r == EAGAIN || r == AVERROR_EOF {
            return Ok(());
        }
        check(r, "decoding").map(|_| ())
    }

    /// Take the next decoded frame into `frame`; `Ok(false)` when it needs more input (or is
    /// drained).
    pub fn receive(&mut self, frame: &mut Frame) -> Result<bool, Error> {
        // SAFETY: open decoder, allocated frame.
        let r = unsafe { ff::avcodec_receive_frame(self.ctx, frame.0) };
        if r == EAGAIN || r == AVERROR_EOF {
            return Ok(false);
        }
        check(r, "decoding").map(|_| true)
    }

    /// Forget every packet and picture held (after a seek; also after draining, so it
    /// decodes again).
    pub fn reset(&mut self) {
        // SAFETY: open decoder.
        unsafe { ff::avcodec_flush_buffers(self.ctx) }
    }

    /// Pixel format the decoder outputs (after it has seen data).
    pub fn pix_fmt(&self) -> i32 {
        // SAFETY: open decoder.
        unsafe { (*self.ctx).pix_fmt }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: allocated by avcodec_alloc_context3.
        unsafe { ff::avcodec_free_context(&mut self.ctx) }
    }
}

/// A pixel-format and size conversion (swscale). Between YCbCr formats it leaves colours
/// alone (colour is [`crate::media::video::colour`]'s job); to RGB it applies the matrix.
pub struct Scaler {
    ctx: *mut ff::SwsContext,
    dst: (i32, i32, i32),
    src: (i32, i32, i32),
}

impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaler").field("dst", &self.dst).finish()
    }
}

impl Scaler {
    /// From `src` (width, height, pix_fmt) to `dst`; bicubic when the size changes. YCbCr is
    /// read with `matrix` (an `SWS_CS_*` value, used when converting to or from RGB) and
    /// `ranges` (full range in, full range out): equal ranges between two YCbCr formats
    /// leave the samples' meaning untouched.
    pub fn new(
        src: (i32, i32, i32),
        dst: (i32, i32, i32),
        matrix: i32,
        ranges: (bool, bool),
    ) -> Result<Scaler, Error> {
        let flags = ff::SwsFlags::SWS_BICUBIC as i32 | ff::SwsFlags::SWS_ACCURATE_RND as i32;
        // SAFETY: plain allocation with validated sizes; checked for NULL.
        let ctx = unsafe {
            ff::sws_getContext(
                src.0,
                src.1,
                src.2,
                dst.0,
                dst.1,
                dst.2,
                flags,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null(),
            )
        };
        if ctx.is_null() {
            return Err(Error::new(
                -libc::EINVAL,
                format!(
                    "no conversion from {} {}x{} to {} {}x{}",
                    pix_fmt_name(src.2),
                    src.0,
                    src.1,
                    pix_fmt_name(dst.2),
                    dst.0,
                    dst.1
                ),
            ));
        }
        // SAFETY: valid context; the coefficient table is static.
        unsafe {
            let table = ff::sws_getCoefficients(matrix);
            ff::sws_setColorspaceDetails(
                ctx,
                table,
                i32::from(ranges.0),
                table,
                i32::from(ranges.1),
                0,
                1 << 16,
                1 << 16,
            );
        }
        Ok(Scaler { ctx, dst, src })
    }

    /// Convert `frame` into `planes` (one buffer per plane, `strides` bytes per row, sized
    /// for the destination). Fails if the frame is not what the scaler was made for.
    pub fn scale(
        &mut self,
        frame: &Frame,
        planes: &mut [&mut [u8]],
        strides: &[i32],
    ) -> Result<(), Error> {
        let r = frame.raw();
        if (r.width, r.height, r.format) != self.src {
            return Err(Error::new(
                -libc::EINVAL,
                "the frame size or format changed mid-stream",
            ));
        }
        let mut dst = [ptr::null_mut::<u8>(); 4];
        let mut dst_stride = [0i32; 4];
        for (i, p) in planes.iter_mut().enumerate().take(4) {
            dst[i] = p.as_mut_ptr();
            dst_stride[i] = strides[i];
        }
        // SAFETY: source planes come from a decoded frame of the configured size and format;
        // destination buffers were sized by the caller for dst (checked by debug asserts in
        // the caller's allocation).
        let r = unsafe {
            ff::sws_scale(
                self.ctx,
                r.data.as_ptr().cast(),
                r.linesize.as_ptr(),
                0,
                r.height,
                dst.as_ptr(),
                dst_stride.as_ptr(),
            )
        };
        check(r, "converting pixels").map(|_| ())
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        // SAFETY: allocated by sws_getContext.
        unsafe { ff::sws_freeContext(self.ctx) }
    }
}

/// A filter graph `buffer → <filters> → buffersink` for video frames (deinterlacing).
pub struct VideoFilter {
    graph: *mut ff::AVFilterGraph,
    src: *mut ff::AVFilterContext,
    sink: *mut ff::AVFilterContext,
}

impl std::fmt::Debug for VideoFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoFilter").finish_non_exhaustive()
    }
}

impl VideoFilter {
    /// A graph for frames of `(width, height, pix_fmt)` in `time_base`, running `filters`
    /// (FFmpeg filter syntax, e.g. `bwdif=mode=send_frame:parity=auto:deint=interlaced`).
    pub fn new(
        (w, h, fmt): (i32, i32, i32),
        time_base: ff::AVRational,
        filters: &str,
    ) -> Result<VideoFilter, Error> {
        // SAFETY: graph construction with every return checked; on error Drop frees the graph.
        unsafe {
            let graph = ff::avfilter_graph_alloc();
            if graph.is_null() {
                return Err(Error::new(-libc::ENOMEM, "allocating a filter graph"));
            }
            let mut vf = VideoFilter {
                graph,
                src: ptr::null_mut(),
                sink: ptr::null_mut(),
            };
            (*graph).nb_threads = 1;
            let args = CString::new(format!(
                "video_size={w}x{h}:pix_fmt={fmt}:time_base={}/{}:pixel_aspect=1/1",
                time_base.num.max(1),
                time_base.den.max(1)
            ))
            .unwrap_or_default();
            let name = |s: &str| CString::new(s).unwrap_or_default();
            let (buffer, sink) = (name("buffer"), name("buffersink"));
            check(
                ff::avfilter_graph_create_filter(
                    &mut vf.src,
                    ff::avfilter_get_by_name(buffer.as_ptr()),
                    name("in").as_ptr(),
                    args.as_ptr(),
                    ptr::null_mut(),
                    graph,
                ),
                "creating the filter source",
            )?;
            check(
                ff::avfilter_graph_create_filter(
                    &mut vf.sink,
                    ff::avfilter_get_by_name(sink.as_ptr()),
                    name("out").as_ptr(),
                    ptr::null(),
                    ptr::null_mut(),
                    graph,
                ),
                "creating the filter sink",
            )?;
            let mut outputs = ff::avfilter_inout_alloc();
            let mut inputs = ff::avfilter_inout_alloc();
            if outputs.is_null() || inputs.is_null() {
                ff::avfilter_inout_free(&mut outputs);
                ff::avfilter_inout_free(&mut inputs);
                return Err(Error::new(-libc::ENOMEM, "allocating filter pads"));
            }
            (*outputs).name = ff::av_strdup(name("in").as_ptr());
            (*outputs).filter_ctx = vf.src;
            (*inputs).name = ff::av_strdup(name("out").as_ptr());
            (*inputs).filter_ctx = vf.sink;
            let spec = CString::new(filters).unwrap_or_default();
            let r = ff::avfilter_graph_parse_ptr(
                graph,
                spec.as_ptr(),
                &mut inputs,
                &mut outputs,
                ptr::null_mut(),
            );
            ff::avfilter_inout_free(&mut outputs);
            ff::avfilter_inout_free(&mut inputs);
            check(r, "parsing the filter graph")?;
            check(
                ff::avfilter_graph_config(graph, ptr::null_mut()),
                "configuring the filter graph",
            )?;
            Ok(vf)
        }
    }

    /// Push a frame in (`None` = end of stream).
    pub fn push(&mut self, frame: Option<&mut Frame>) -> Result<(), Error> {
        // SAFETY: configured graph; the frame's buffers are moved into the graph (the frame is
        // left blank), or NULL signals EOF.
        let r = unsafe {
            ff::av_buffersrc_add_frame_flags(
                self.src,
                frame.map_or(ptr::null_mut(), |f| f.ptr()),
                0,
            )
        };
        check(r, "filtering").map(|_| ())
    }

    /// Take a filtered frame into `frame`; `Ok(false)` when none is ready.
    pub fn pull(&mut self, frame: &mut Frame) -> Result<bool, Error> {
        frame.unref();
        // SAFETY: configured graph, allocated frame.
        let r = unsafe { ff::av_buffersink_get_frame(self.sink, frame.ptr()) };
        if r == EAGAIN || r == AVERROR_EOF {
            return Ok(false);
        }
        check(r, "filtering").map(|_| true)
    }
}

impl Drop for VideoFilter {
    fn drop(&mut self) {
        // SAFETY: the graph owns its filters.
        unsafe { ff::avfilter_graph_free(&mut self.graph) }
    }
}

/// Decoded audio → AAC-LC, stereo, at the source's rate (or 48 kHz when AAC has no such
/// rate): swresample into a FIFO, cut into the encoder's frame size, encoded.
pub struct AacEncoder {
    enc: *mut ff::AVCodecContext,
    swr: *mut ff::SwrContext,
    fifo: *mut ff::AVAudioFifo,
    frame: Frame,
    next_pts: i64,
    /// Output sample rate.
    pub sample_rate: i32,
}

impl std::fmt::Debug for AacEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacEncoder")
            .field("sample_rate", &self.sample_rate)
            .finish()
    }
}

/// Receives each encoded packet: (pts in samples, duration in samples, bytes).
pub type PacketSink<'a> = dyn FnMut(i64, i64, &[u8]) -> std::io::Result<()> + 'a;

/// Sample rates AAC signals directly.
const AAC_RATES: [i32; 12] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
];

impl AacEncoder {
    /// An encoder for audio decoded from `stream` (`bitrate` bits per second).
    pub fn new(stream: &Stream<'_>, bitrate: i64) -> Result<AacEncoder, Error> {
        let par = stream.params();
        let in_rate = par.sample_rate;
        if in_rate <= 0 {
            return Err(Error::new(AVERROR_INVALIDDATA, "audio has no sample rate"));
        }
        let rate = if AAC_RATES.contains(&in_rate) {
            in_rate
        } else {
            48000
        };
        // SAFETY: encoder lookup/allocation and swr setup, each checked; Drop frees them.
        unsafe {
            let codec = ff::avcodec_find_encoder(ff::AVCodecID::AV_CODEC_ID_AAC);
            if codec.is_null() {
                return Err(Error::new(AVERROR_DECODER_NOT_FOUND, "no AAC encoder"));
            }
            let enc = ff::avcodec_alloc_context3(codec);
            if enc.is_null() {
                return Err(Error::new(-libc::ENOMEM, "allocating the AAC encoder"));
            }
            let mut me = AacEncoder {
                enc,
                swr: ptr::null_mut(),
                fifo: ptr::null_mut(),
                frame: Frame::new()?,
                next_pts: 0,
                sample_rate: rate,
            };
            (*enc).sample_fmt = ff::AVSampleFormat::AV_SAMPLE_FMT_FLTP;
            (*enc).sample_rate = rate;
            (*enc).bit_rate = bitrate;
            (*enc).time_base = ff::AVRational { num: 1, den: rate };
            (*enc).flags |= ff::AV_CODEC_FLAG_GLOBAL_HEADER as i32;
            ff::av_channel_layout_default(&mut (*enc).ch_layout, 2);
            check(
                ff::avcodec_open2(enc, codec, ptr::null_mut()),
                "opening the AAC encoder",
            )?;
            let mut in_layout: ff::AVChannelLayout = std::mem::zeroed();
            if par.ch_layout.nb_channels > 0
                && par.ch_layout.order != ff::AVChannelOrder::AV_CHANNEL_ORDER_UNSPEC
            {
                check(
                    ff::av_channel_layout_copy(&mut in_layout, &par.ch_layout),
                    "reading the channel layout",
                )?;
            } else {
                ff::av_channel_layout_default(&mut in_layout, par.ch_layout.nb_channels.max(1));
            }
            let r = ff::swr_alloc_set_opts2(
                &mut me.swr,
                &(*enc).ch_layout,
                ff::AVSampleFormat::AV_SAMPLE_FMT_FLTP,
                rate,
                &in_layout,
                par.format,
                in_rate,
                0,
                ptr::null_mut(),
            );
            ff::av_channel_layout_uninit(&mut in_layout);
            check(r, "setting up the resampler")?;
            check(ff::swr_init(me.swr), "starting the resampler")?;
            me.fifo = ff::av_audio_fifo_alloc(ff::AVSampleFormat::AV_SAMPLE_FMT_FLTP, 2, 4096);
            if me.fifo.is_null() {
                return Err(Error::new(-libc::ENOMEM, "allocating the audio FIFO"));
            }
            Ok(me)
        }
    }

    /// AudioSpecificConfig (the encoder's extradata).
    pub fn asc(&self) -> Vec<u8> {
        // SAFETY: an open encoder.
        unsafe { context_extradata(self.enc) }
    }

    /// Time (in samples) of the first audio pushed.
    pub fn start_at(&mut self, pts: i64) {
        self.next_pts = pts;
    }

    /// Priming samples the encoder puts before the audio.
    pub fn priming(&self) -> u32 {
        // SAFETY: open encoder.
        unsafe { (*self.enc).initial_padding.max(0) as u32 }
    }

    /// Samples per AAC frame.
    pub fn frame_size(&self) -> i32 {
        // SAFETY: open encoder.
        unsafe { (*self.enc).frame_size.max(1) }
    }

    /// Resample a decoded frame (`None` = flush) and encode every full AAC frame; `out` gets
    /// (pts in samples, duration in samples, bytes).
    pub fn push(&mut self, frame: Option<&Frame>, out: &mut PacketSink<'_>) -> Result<(), Error> {
        let fs = self.frame_size();
        // SAFETY: every buffer below is allocated by FFmpeg with the sizes it reports.
        unsafe {
            let max_out = ff::swr_get_out_samples(self.swr, frame.map_or(0, Frame::samples)).max(0);
            if max_out > 0 {
                let mut buf: *mut *mut u8 = ptr::null_mut();
                let mut linesize = 0;
                check(
                    ff::av_samples_alloc_array_and_samples(
                        &mut buf,
                        &mut linesize,
                        2,
                        max_out,
                        ff::AVSampleFormat::AV_SAMPLE_FMT_FLTP,
                        0,
                    ),
                    "allocating audio",
                )?;
                let (inp, n) = match frame {
                    Some(f) => ((*f.0).extended_data as *mut *const u8, f.samples()),
                    None => (ptr::null_mut(), 0),
                };
                let got = ff::swr_convert(self.swr, buf, max_out, inp, n);
                let r = if got > 0 {
                    ff::av_audio_fifo_write(self.fifo, buf.cast(), got)
                } else {
                    got
                };
                ff::av_freep(buf.cast());
                ff::av_freep((&mut buf as *mut *mut *mut u8).cast());
                check(r, "resampling audio")?;
            }
            let flush = frame.is_none();
            while ff::av_audio_fifo_size(self.fifo) >= fs
                || (flush && ff::av_audio_fifo_size(self.fifo) > 0)
            {
                let n = ff::av_audio_fifo_size(self.fifo).min(fs);
                let f = self.frame.0;
                ff::av_frame_unref(f);
                (*f).nb_samples = fs;
                (*f).format = ff::AVSampleFormat::AV_SAMPLE_FMT_FLTP;
                (*f).sample_rate = self.sample_rate;
                check(
                    ff::av_channel_layout_copy(&mut (*f).ch_layout, &(*self.enc).ch_layout),
                    "audio layout",
                )?;
                check(ff::av_frame_get_buffer(f, 0), "allocating audio")?;
                ff::av_samples_set_silence(
                    (*f).extended_data,
                    0,
                    fs,
                    2,
                    ff::AVSampleFormat::AV_SAMPLE_FMT_FLTP,
                );
                check(
                    ff::av_audio_fifo_read(self.fifo, (*f).extended_data.cast(), n),
                    "reading audio",
                )?;
                (*f).pts = self.next_pts;
                self.next_pts += i64::from(fs);
                check(ff::avcodec_send_frame(self.enc, f), "encoding audio")?;
                self.drain(out)?;
            }
            if flush {
                check(
                    ff::avcodec_send_frame(self.enc, ptr::null()),
                    "encoding audio",
                )?;
                self.drain(out)?;
            }
        }
        Ok(())
    }

    fn drain(&mut self, out: &mut PacketSink<'_>) -> Result<(), Error> {
        let mut pkt = Packet::new()?;
        loop {
            // SAFETY: open encoder, allocated packet.
            let r = unsafe { ff::avcodec_receive_packet(self.enc, pkt.0) };
            if r == EAGAIN || r == AVERROR_EOF {
                return Ok(());
            }
            check(r, "encoding audio")?;
            let (pts, dur) = (pkt.pts().unwrap_or(0), pkt.duration());
            out(pts, dur, pkt.data()).map_err(|e| Error::new(-libc::EPIPE, e.to_string()))?;
            pkt.unref();
        }
    }
}

impl Drop for AacEncoder {
    fn drop(&mut self) {
        // SAFETY: each was allocated by FFmpeg (or is NULL, which the free functions accept).
        unsafe {
            ff::avcodec_free_context(&mut self.enc);
            ff::swr_free(&mut self.swr);
            if !self.fifo.is_null() {
                ff::av_audio_fifo_free(self.fifo);
            }
        }
    }
}

/// A copy of an opened codec context's extradata (empty when it has none).
///
/// # Safety
/// `ctx` must point to an allocated codec context.
unsafe fn context_extradata(ctx: *const ff::AVCodecContext) -> Vec<u8> {
    // SAFETY: the caller's context; extradata holds extradata_size bytes.
    unsafe {
        let e = &*ctx;
        if e.extradata.is_null() || e.extradata_size <= 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(e.extradata, e.extradata_size as usize).to_vec()
        }
    }
}

/// How to set up [`Av1Encoder`].
#[derive(Debug, Clone)]
pub struct Av1Settings {
    /// Picture size (at least 64 × 64: SVT-AV1 1.x refuses less).
    pub width: i32,
    /// See `width`.
    pub height: i32,
    /// Ticks per second of the presentation times handed in.
    pub timescale: i32,
    /// Frames per second, as a fraction (for rate control and the keyframe interval).
    pub fps: (i32, i32),
    /// SVT-AV1 preset: 0 (slowest, best) … 13 (fastest).
    pub preset: i32,
    /// Rate control: a bitrate target (VBR) or a constant rate factor, capped or not.
    pub rate: Av1Rate,
    /// Frames between keyframes (closed GOP: each keyframe starts a segment cleanly).
    pub keyint: i32,
}

/// SVT-AV1's rate control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Av1Rate {
    /// Average bits per second (VBR).
    Bitrate(i64),
    /// A constant rate factor: a quality, at the bits it takes, or at most `max` bits per
    /// second (SVT-AV1's capped CRF, which holds its cap over a window, not exactly: on content
    /// that needs far more it was measured ~20 % over it).
    Crf {
        /// 1..=63, lower is finer.
        crf: u8,
        /// The cap, bits per second.
        max: Option<i64>,
    },
}

/// One encoded AV1 temporal unit.
#[derive(Debug, Clone)]
pub struct Av1Packet {
    /// Presentation time, in the settings' timescale.
    pub pts: i64,
    /// A key frame (a sync sample).
    pub key: bool,
    /// The OBUs, low-overhead format.
    pub data: Vec<u8>,
}

/// Pictures in, AV1 out: SVT-AV1 through FFmpeg's `libsvtav1` wrapper. This one runs in the
/// worker, not the decoder child: it only ever sees pictures the engine made itself.
pub struct Av1Encoder {
    enc: *mut ff::AVCodecContext,
    frame: Frame,
    pkt: Packet,
}

// SAFETY: the encoder context is owned by this value alone and FFmpeg's encoders may be used
// from any one thread at a time.
unsafe impl Send for Av1Encoder {}

impl std::fmt::Debug for Av1Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Av1Encoder").finish_non_exhaustive()
    }
}

impl Av1Encoder {
    /// An encoder set up as `s` says.
    pub fn new(s: &Av1Settings) -> Result<Av1Encoder, Error> {
        let name = CString::new("libsvtav1").map_err(|_| Error::new(-libc::EINVAL, "name"))?;
        // One thread's worth of parallelism and the shortest look-ahead its temporal filter
        // allows (20): a 1080p encoder then holds ~150 MB instead of ~500 MB, for ~0.2 dB; the
        // ladder's rungs run in parallel anyway. Keyframes only on the grid (closed GOPs, no
        // scene-cut keyframes), so every HLS segment starts with one. Four hierarchy levels
        // (16-picture mini-GOPs) in every rate mode: SVT-AV1 1.4 picks five for CRF, which
        // measured 12 % fewer bits for 0.3 dB less on a detailed pan, worse than four.
        let mut params = format!(
            "keyint={}:irefresh-type=2:scd=0:lp=1:lookahead=20:hierarchical-levels=4",
            s.keyint.max(1)
        );
        if let Av1Rate::Crf { max: Some(max), .. } = s.rate {
            params.push_str(&format!(":mbr={}", (max / 1000).max(1)));
        }
        // SAFETY: encoder lookup, allocation and options, each checked; Drop frees the context.
        unsafe {
            let codec = ff::avcodec_find_encoder_by_name(name.as_ptr());
            if codec.is_null() {
                return Err(Error::new(
                    AVERROR_DECODER_NOT_FOUND,
                    "this build has no AV1 encoder (libsvtav1)",
                ));
            }
            let enc = ff::avcodec_alloc_context3(codec);
            if enc.is_null() {
                return Err(Error::new(-libc::ENOMEM, "allocating the AV1 encoder"));
            }
            let me = Av1Encoder {
                enc,
                frame: Frame::new()?,
                pkt: Packet::new()?,
            };
            let e = &mut *enc;
            e.width = s.width;
            e.height = s.height;
            e.pix_fmt = ff::AVPixelFormat::AV_PIX_FMT_YUV420P;
            e.time_base = ff::AVRational {
                num: 1,
                den: s.timescale,
            };
            e.framerate = ff::AVRational {
                num: s.fps.0,
                den: s.fps.1,
            };
            e.gop_size = s.keyint.max(2);
            e.flags |= (ff::AV_CODEC_FLAG_GLOBAL_HEADER | ff::AV_CODEC_FLAG_CLOSED_GOP) as i32;
            // Every picture is BT.709 limited range (see media::video::colour).
            e.color_primaries = ff::AVColorPrimaries::AVCOL_PRI_BT709;
            e.color_trc = ff::AVColorTransferCharacteristic::AVCOL_TRC_BT709;
            e.colorspace = ff::AVColorSpace::AVCOL_SPC_BT709;
            e.color_range = ff::AVColorRange::AVCOL_RANGE_MPEG;
            match s.rate {
                Av1Rate::Bitrate(b) => e.bit_rate = b,
                Av1Rate::Crf { crf, .. } => me.set("crf", &crf.clamp(1, 63).to_string())?,
            }
            me.set("preset", &s.preset.to_string())?;
            me.set("svtav1-params", &params)?;
            check(
                ff::avcodec_open2(enc, codec, ptr::null_mut()),
                "opening the AV1 encoder",
            )?;
            Ok(me)
        }
    }

    fn set(&self, key: &str, value: &str) -> Result<(), Error> {
        let (k, v) = match (CString::new(key), CString::new(value)) {
            (Ok(k), Ok(v)) => (k, v),
            _ => return Err(Error::new(-libc::EINVAL, format!("AV1 option {key}"))),
        };
        // SAFETY: allocated context; its priv_data holds the wrapper's options.
        let r = unsafe { ff::av_opt_set((*self.enc).priv_data, k.as_ptr(), v.as_ptr(), 0) };
        check(r, &format!("setting AV1 option {key}={value}")).map(|_| ())
    }

    /// The sequence header OBU (the `av1C` box's configOBUs).
    pub fn config_obus(&self) -> Vec<u8> {
        // SAFETY: an open encoder.
        unsafe { context_extradata(self.enc) }
    }

    /// Hand over a picture (8-bit 4:2:0 planes with their strides) shown at `pts`.
    pub fn send(&mut self, planes: [(&[u8], usize); 3], pts: i64) -> Result<(), Error> {
        let (w, h) = // SAFETY: open encoder.
            unsafe { ((*self.enc).width as usize, (*self.enc).height as usize) };
        let f = self.frame.0;
        // SAFETY: a fresh buffer per picture (the encoder may still hold the last one), sized
        // by FFmpeg; each row copy stays inside both the source plane and the buffer.
        unsafe {
            ff::av_frame_unref(f);
            (*f).width = w as i32;
            (*f).height = h as i32;
            (*f).format = ff::AVPixelFormat::AV_PIX_FMT_YUV420P;
            check(ff::av_frame_get_buffer(f, 0), "allocating a picture")?;
            for (i, (src, stride)) in planes.iter().enumerate() {
                let (pw, ph) = if i == 0 {
                    (w, h)
                } else {
                    (w.div_ceil(2), h.div_ceil(2))
                };
                if *stride < pw || src.len() < stride * (ph - 1) + pw {
                    return Err(Error::new(-libc::EINVAL, "picture planes too small"));
                }
                let dst = (*f).data[i];
                let dst_stride = (*f).linesize[i] as usize;
                for row in 0..ph {
                    ptr::copy_nonoverlapping(
                        src.as_ptr().add(row * stride),
                        dst.add(row * dst_stride),
                        pw,
                    );
                }
            }
            (*f).pts = pts;
            check(ff::avcodec_send_frame(self.enc, f), "encoding AV1")?;
        }
        Ok(())
    }

    /// No more pictures: the encoder gives out what it holds.
    pub fn flush(&mut self) -> Result<(), Error> {
        // SAFETY: open encoder; NULL frame means end of stream.
        let r = unsafe { ff::avcodec_send_frame(self.enc, ptr::null()) };
        if r == AVERROR_EOF {
            return Ok(());
        }
        check(r, "flushing the AV1 encoder").map(|_| ())
    }

    /// The next finished temporal unit, if one is ready.
    pub fn receive(&mut self) -> Result<Option<Av1Packet>, Error> {
        // SAFETY: open encoder, allocated packet.
        let r = unsafe { ff::avcodec_receive_packet(self.enc, self.pkt.0) };
        if r == EAGAIN || r == AVERROR_EOF {
            return Ok(None);
        }
        check(r, "encoding AV1")?;
        let out = Av1Packet {
            pts: self.pkt.pts().unwrap_or(0),
            key: self.pkt.raw().flags & ff::AV_PKT_FLAG_KEY as i32 != 0,
            data: self.pkt.data().to_vec(),
        };
        self.pkt.unref();
        Ok(Some(out))
    }
}

impl Drop for Av1Encoder {
    fn drop(&mut self) {
        // SAFETY: allocated by avcodec_alloc_context3.
        unsafe { ff::avcodec_free_context(&mut self.enc) }
    }
}

/// FFmpeg's names for colour properties: (matrix, primaries, transfer).
pub fn colour_names(matrix: u32, primaries: u32, transfer: u32) -> (String, String, String) {
    // SAFETY: each returns a static string or NULL.
    unsafe {
        (
            cstr(ff::av_color_space_name(matrix)),
            cstr(ff::av_color_primaries_name(primaries)),
            cstr(ff::av_color_transfer_name(transfer)),
        )
    }
}

/// A codec's extradata (AAC: the AudioSpecificConfig).
pub fn extradata(p: &ff::AVCodecParameters) -> Vec<u8> {
    if p.extradata.is_null() || p.extradata_size <= 0 {
        Vec::new()
    } else {
        // SAFETY: the parameters own extradata_size bytes at extradata.
        unsafe { std::slice::from_raw_parts(p.extradata, p.extradata_size as usize).to_vec() }
    }
}

/// Each FFmpeg library built in: name, version (`major.minor.micro`) and the licence its
/// build configuration gives it (`LGPL version 2.1 or later` for ours).
pub fn libraries() -> Vec<(&'static str, String, String)> {
    let v = |n: u32| format!("{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff);
    // SAFETY: version/licence getters return integers and static strings.
    unsafe {
        vec![
            (
                "libavutil",
                v(ff::avutil_version()),
                cstr(ff::avutil_license()),
            ),
            (
                "libavcodec",
                v(ff::avcodec_version()),
                cstr(ff::avcodec_license()),
            ),
            (
                "libavformat",
                v(ff::avformat_version()),
                cstr(ff::avformat_license()),
            ),
            (
                "libavfilter",
                v(ff::avfilter_version()),
                cstr(ff::avfilter_license()),
            ),
            (
                "libswscale",
                v(ff::swscale_version()),
                cstr(ff::swscale_license()),
            ),
            (
                "libswresample",
                v(ff::swresample_version()),
                cstr(ff::swresample_license()),
            ),
        ]
    }
}

/// FFmpeg's `configure` line, as built.
pub fn configuration() -> String {
    // SAFETY: returns a static string.
    unsafe { cstr(ff::avcodec_configuration()) }
}
