//! The child's still-picture path: a HEIF/HEIC or AVIF file's primary picture — one coded
//! image, or a grid of tiles (every iPhone photo: 512×512 HEVC tiles) assembled on its canvas
//! and cropped — converted to 8-bit RGB with the picture's own matrix and range. The display
//! transform (`irot`/`imir`), EXIF and ICC profile travel in the header; FFmpeg drops the
//! EXIF orientation of HEIF files because `irot` is the normative one, so exactly one of
//! them is applied.

use super::child::{Fail, Out, check_picture, corrupt, describe_video, read_start};
use super::ffmpeg::{self as av, Decoder, Frame, Input, Packet, Scaler, TileGrid};
use super::protocol::{Header, PictureHead, Request, tag};
use mediaflow_ffmpeg_sys as ff;
use std::collections::HashMap;
use std::io::{BufRead, Write};

const STILL_DEMUXERS: &str = "mov,mp4,m4a,3gp,3g2,mj2";

/// What to decode: a grid of tile streams, or one stream.
enum Primary {
    Grid(TileGrid),
    Single(usize),
}

/// Decode the primary picture of `req.path` and send it.
pub(super) fn decode(
    req: &Request,
    stdin: &mut impl BufRead,
    out: &mut Out<impl Write>,
) -> Result<(), Fail> {
    let input = Input::open(&req.path, STILL_DEMUXERS).map_err(|e| {
        corrupt(format!(
            "the HEIF container could not be read ({})",
            av::strerror(e.code)
        ))
    })?;
    let streams = input.streams();
    let grids = input.tile_grids();
    let primary = match grids.iter().find(|g| g.default).or(grids.first()) {
        Some(g) => Primary::Grid(g.clone()),
        None => {
            let video: Vec<_> = streams
                .iter()
                .filter(|s| s.media_type() == ff::AVMediaType::AVMEDIA_TYPE_VIDEO)
                .collect();
            let s = video
                .iter()
                .find(|s| s.disposition() & ff::AV_DISPOSITION_DEFAULT as i32 != 0)
                .or(video.first())
                .ok_or_else(|| corrupt("the file holds no picture"))?;
            Primary::Single(s.index())
        }
    };
    let wanted: Vec<usize> = match &primary {
        Primary::Grid(g) => g.tiles.iter().filter_map(|t| t.stream).collect(),
        Primary::Single(i) => vec![*i],
    };
    let first = *wanted
        .first()
        .ok_or_else(|| corrupt("the picture grid has no tiles"))?;
    let lead = streams
        .iter()
        .find(|s| s.index() == first)
        .copied()
        .ok_or_else(|| corrupt("a tile refers to a missing stream"))?;
    for s in &streams {
        if !wanted.contains(&s.index()) {
            s.discard();
        }
    }
    let mut info = describe_video(&input, &lead, None, false);
    let side = match &primary {
        Primary::Grid(g) => {
            let (_, _, w, h) = g.crop;
            check_picture(
                req,
                g.coded_width.max(0) as u32,
                g.coded_height.max(0) as u32,
            )?;
            info.width = w.max(0) as u32;
            info.height = h.max(0) as u32;
            let cols = g.tiles.iter().filter(|t| t.y == 0).count() as u32;
            info.grid = Some((cols, (g.tiles.len() as u32).div_ceil(cols.max(1))));
            g.side.clone()
        }
        Primary::Single(_) => lead.side_data(),
    };
    check_picture(req, info.width, info.height)?;
    info.display_matrix = side.display_matrix.or(info.display_matrix);
    info.exif = side.exif.clone().or_else(|| lead.side_data().exif);
    info.icc = side.icc.clone().or_else(|| lead.side_data().icc);
    let header = Header {
        demuxer: input.format_name(),
        duration_s: None,
        video: Some(info.clone()),
        audio: None,
        audio_streams: 0,
    };
    out.json(tag::HEADER, &header)?;
    out.0.flush()?;
    if read_start(stdin).is_none() {
        return Ok(());
    }
    super::child::inject(req.fault.as_deref());
    let (cw, ch, crop) = match &primary {
        Primary::Grid(g) => (g.coded_width, g.coded_height, g.crop),
        Primary::Single(_) => (
            info.width as i32,
            info.height as i32,
            (0, 0, info.width as i32, info.height as i32),
        ),
    };
    let mut canvas = Canvas::new(cw.max(1) as usize, ch.max(1) as usize);
    let positions: HashMap<usize, Vec<(i32, i32)>> = match &primary {
        Primary::Grid(g) => {
            let mut m: HashMap<usize, Vec<(i32, i32)>> = HashMap::new();
            for t in &g.tiles {
                if let Some(s) = t.stream {
                    m.entry(s).or_default().push((t.x, t.y));
                }
            }
            m
        }
        Primary::Single(i) => HashMap::from([(*i, vec![(0, 0)])]),
    };
    let mut pkt = Packet::new()?;
    let mut frame = Frame::new()?;
    let mut placed = 0usize;
    while input.read(&mut pkt)? {
        let idx = pkt.stream();
        let Some(at) = positions.get(&idx) else {
            continue;
        };
        // Each tile is one coded picture: a fresh decoder per tile, dropped after it.
        let s = streams
            .iter()
            .find(|s| s.index() == idx)
            .ok_or_else(|| corrupt("a packet of an unknown stream"))?;
        let mut dec = Decoder::open(s, 1)?.ok_or_else(|| {
            super::child::unsupported(format!("{} pictures", av::codec_name(s.codec_id())))
        })?;
        dec.send(Some(&pkt))?;
        dec.send(None)?;
        while dec.receive(&mut frame)? {
            for &(x, y) in at {
                canvas.place(&frame, x, y)?;
                placed += 1;
            }
        }
    }
    if placed == 0 {
        return Err(corrupt("no tile of the picture could be decoded"));
    }
    let (x0, y0, w, h) = crop;
    let pixels = canvas.crop(
        x0.max(0) as usize,
        y0.max(0) as usize,
        w.max(1) as usize,
        h.max(1) as usize,
    );
    let head = PictureHead {
        width: w.max(1) as u32,
        height: h.max(1) as u32,
        channels: 3,
    };
    out.parts(tag::PICTURE, &[&head.encode(), &pixels])?;
    out.json(tag::DONE, &super::protocol::Summary::default())?;
    out.0.flush()?;
    Ok(())
}

/// An RGB canvas the tiles are drawn on.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
    tile: Vec<u8>,
    scaler: Option<((i32, i32, i32), Scaler)>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            rgb: vec![0; width * height * 3],
            tile: Vec::new(),
            scaler: None,
        }
    }

    /// Convert `frame` to RGB and copy it to (x, y), clipped to the canvas.
    fn place(&mut self, frame: &Frame, x: i32, y: i32) -> Result<(), Fail> {
        let r = frame.raw();
        let src = (r.width, r.height, r.format);
        if r.width <= 0 || r.height <= 0 {
            return Err(corrupt("a tile without a size"));
        }
        if self.scaler.as_ref().map(|(s, _)| *s) != Some(src) {
            let matrix = match r.colorspace {
                ff::AVColorSpace::AVCOL_SPC_BT709 => ff::SWS_CS_ITU709,
                ff::AVColorSpace::AVCOL_SPC_BT2020_NCL | ff::AVColorSpace::AVCOL_SPC_BT2020_CL => {
                    ff::SWS_CS_BT2020
                }
                _ => ff::SWS_CS_ITU601,
            } as i32;
            let full = r.color_range == ff::AVColorRange::AVCOL_RANGE_JPEG;
            let s = Scaler::new(
                src,
                (r.width, r.height, ff::AVPixelFormat::AV_PIX_FMT_RGB24),
                matrix,
                (full, true),
            )?;
            self.scaler = Some((src, s));
        }
        let (tw, th) = (r.width as usize, r.height as usize);
        self.tile.resize(tw * th * 3, 0);
        if let Some((_, s)) = self.scaler.as_mut() {
            let mut planes: [&mut [u8]; 1] = [&mut self.tile];
            s.scale(frame, &mut planes, &[(tw * 3) as i32])?;
        }
        let (x, y) = (x.max(0) as usize, y.max(0) as usize);
        for row in 0..th {
            let cy = y + row;
            if cy >= self.height || x >= self.width {
                break;
            }
            let n = tw.min(self.width - x) * 3;
            let dst = (cy * self.width + x) * 3;
            self.rgb[dst..dst + n].copy_from_slice(&self.tile[row * tw * 3..row * tw * 3 + n]);
        }
        Ok(())
    }

    fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Vec<u8> {
        let mut out = vec![0u8; w * h * 3];
        for row in 0..h {
            let sy = y + row;
            if sy >= self.height || x >= self.width {
                break;
            }
            let n = w.min(self.width - x) * 3;
            let src = (sy * self.width + x) * 3;
            out[row * w * 3..row * w * 3 + n].copy_from_slice(&self.rgb[src..src + n]);
        }
        out
    }
}
