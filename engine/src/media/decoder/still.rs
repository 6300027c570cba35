//! The child's still-picture path: a HEIF/HEIC or AVIF file's primary picture — one coded
//! image, or a grid of tiles (every iPhone photo: 512×512 HEVC tiles) assembled on its canvas
//! and cropped — converted to 8-bit RGB with the picture's own matrix and range, with its
//! alpha plane (an auxiliary image, found by [`super::heif`]) when it has one. The display
//! transform (`irot`/`imir`), EXIF and ICC profile travel in the header; FFmpeg drops the
//! EXIF orientation of HEIF files because `irot` is the normative one, so exactly one of
//! them is applied.

use super::child::{Fail, Out, check_picture, corrupt, describe_video, read_start, unsupported};
use super::ffmpeg::{self as av, Decoder, Frame, Input, Packet, Scaler, Stream, TileGrid};
use super::protocol::{Header, PictureHead, Request, Summary, VideoInfo, tag};
use mediaflow_ffmpeg_sys as ff;
use std::collections::HashMap;
use std::io::{BufRead, Write};

const STILL_DEMUXERS: &str = "mov,mp4,m4a,3gp,3g2,mj2";

/// A picture made of one coded image or a grid of them.
#[derive(Debug, Clone)]
enum Item {
    Grid(TileGrid),
    Single(usize),
}

impl Item {
    /// The primary picture: the default grid, else the default (or first) image.
    fn primary(grids: &[TileGrid], streams: &[Stream<'_>]) -> Option<Item> {
        if let Some(g) = grids.iter().find(|g| g.default).or(grids.first()) {
            return Some(Item::Grid(g.clone()));
        }
        let video: Vec<_> = streams
            .iter()
            .filter(|s| s.media_type() == ff::AVMediaType::AVMEDIA_TYPE_VIDEO)
            .collect();
        video
            .iter()
            .find(|s| s.disposition() & ff::AV_DISPOSITION_DEFAULT as i32 != 0)
            .or(video.first())
            .map(|s| Item::Single(s.index()))
    }

    /// The item with HEIF id `id` (a grid's or a stream's).
    fn by_id(id: u32, grids: &[TileGrid], streams: &[Stream<'_>]) -> Option<Item> {
        if let Some(g) = grids.iter().find(|g| g.id == i64::from(id)) {
            return Some(Item::Grid(g.clone()));
        }
        streams
            .iter()
            .find(|s| s.id() == i64::from(id))
            .map(|s| Item::Single(s.index()))
    }

    /// Stream index → where its picture goes on the canvas.
    fn placements(&self) -> HashMap<usize, Vec<(i32, i32)>> {
        let mut m: HashMap<usize, Vec<(i32, i32)>> = HashMap::new();
        match self {
            Item::Grid(g) => {
                for t in &g.tiles {
                    if let Some(s) = t.stream {
                        m.entry(s).or_default().push((t.x, t.y));
                    }
                }
            }
            Item::Single(i) => {
                m.insert(*i, vec![(0, 0)]);
            }
        }
        m
    }

    /// Canvas size and the picture's rectangle on it (a single image: its own size).
    fn geometry(&self, single: (u32, u32)) -> ((usize, usize), (i32, i32, i32, i32)) {
        match self {
            Item::Grid(g) => (
                (
                    g.coded_width.max(1) as usize,
                    g.coded_height.max(1) as usize,
                ),
                g.crop,
            ),
            Item::Single(_) => (
                (single.0.max(1) as usize, single.1.max(1) as usize),
                (0, 0, single.0 as i32, single.1 as i32),
            ),
        }
    }
}

/// Decode the primary picture of `req.path` (and its alpha) and send it.
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
    let plan = Plan::new(req, &input)?;
    let header = Header {
        demuxer: input.format_name(),
        video: Some(plan.info.clone()),
        ..Header::default()
    };
    out.json(tag::HEADER, &header)?;
    out.0.flush()?;
    if read_start(stdin).is_none() {
        return Ok(());
    }
    super::child::inject(req.fault.as_deref());
    let (head, pixels) = plan.assemble(&input)?;
    out.parts(tag::PICTURE, &[&head.encode(), &pixels])?;
    out.json(tag::DONE, &Summary::default())?;
    out.0.flush()?;
    Ok(())
}

/// What to decode and where each coded picture goes.
struct Plan {
    primary: Item,
    alpha: Option<Item>,
    colour_at: HashMap<usize, Vec<(i32, i32)>>,
    alpha_at: HashMap<usize, Vec<(i32, i32)>>,
    info: VideoInfo,
}

impl Plan {
    /// The primary picture and its alpha, described (size, tiles, rotation, EXIF, ICC) and
    /// checked against the limits; streams not needed are discarded.
    fn new(req: &Request, input: &Input) -> Result<Plan, Fail> {
        let streams = input.streams();
        let grids = input.tile_grids();
        let primary =
            Item::primary(&grids, &streams).ok_or_else(|| corrupt("the file holds no picture"))?;
        let alpha = std::fs::File::open(&req.path)
            .ok()
            .and_then(|mut f| super::heif::alpha_item(&mut f))
            .and_then(|id| Item::by_id(id, &grids, &streams));
        let colour_at = primary.placements();
        let alpha_at = alpha.as_ref().map(Item::placements).unwrap_or_default();
        let lead = colour_at
            .keys()
            .min()
            .and_then(|i| streams.iter().find(|s| s.index() == *i))
            .copied()
            .ok_or_else(|| corrupt("the picture has no coded image"))?;
        for s in &streams {
            if !colour_at.contains_key(&s.index()) && !alpha_at.contains_key(&s.index()) {
                s.discard();
            }
        }
        let mut info = describe_video(input, &lead, None, false);
        let side = match &primary {
            Item::Grid(g) => {
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
            Item::Single(_) => lead.side_data(),
        };
        check_picture(req, info.width, info.height)?;
        let lead_side = lead.side_data();
        info.alpha = alpha.is_some();
        info.display_matrix = side.display_matrix.or(info.display_matrix);
        info.exif = side.exif.or(lead_side.exif);
        info.icc = side.icc.or(lead_side.icc);
        Ok(Plan {
            primary,
            alpha,
            colour_at,
            alpha_at,
            info,
        })
    }

    /// Decode every tile onto its canvas and cut the picture out: RGB, or RGBA with alpha.
    fn assemble(&self, input: &Input) -> Result<(PictureHead, Vec<u8>), Fail> {
        let streams = input.streams();
        let single = (self.info.width, self.info.height);
        let ((cw, ch), crop) = self.primary.geometry(single);
        let mut colour = Canvas::new(cw, ch, 3);
        let mut mask = self.alpha.as_ref().map(|a| {
            let ((aw, ah), _) = a.geometry(single);
            Canvas::new(aw, ah, 1)
        });
        let mut pkt = Packet::new()?;
        let mut frame = Frame::new()?;
        let mut placed = 0usize;
        while input.read(&mut pkt)? {
            let idx = pkt.stream();
            let (canvas, at) = match (
                self.colour_at.get(&idx),
                self.alpha_at.get(&idx),
                mask.as_mut(),
            ) {
                (Some(at), ..) => (&mut colour, at),
                (None, Some(at), Some(m)) => (m, at),
                _ => continue,
            };
            // Each tile is one coded picture: a fresh decoder per tile, dropped after it.
            let s = streams
                .iter()
                .find(|s| s.index() == idx)
                .ok_or_else(|| corrupt("a packet of an unknown stream"))?;
            let mut dec = Decoder::open(s, 1)?
                .ok_or_else(|| unsupported(format!("{} pictures", av::codec_name(s.codec_id()))))?;
            dec.send(Some(&pkt))?;
            dec.send(None)?;
            while dec.receive(&mut frame)? {
                for &(x, y) in at {
                    canvas.place(&frame, x, y)?;
                    placed += usize::from(self.colour_at.contains_key(&idx));
                }
            }
        }
        if placed == 0 {
            return Err(corrupt("no tile of the picture could be decoded"));
        }
        let (x0, y0, w, h) = crop;
        let (x0, y0, w, h) = (
            x0.max(0) as usize,
            y0.max(0) as usize,
            w.max(1) as usize,
            h.max(1) as usize,
        );
        let rgb = colour.crop(x0, y0, w, h);
        let (pixels, channels) = match &mask {
            Some(m) => {
                let a = m.crop(0, 0, w, h);
                let mut rgba = Vec::with_capacity(w * h * 4);
                for (px, alpha) in rgb.chunks_exact(3).zip(a) {
                    rgba.extend_from_slice(px);
                    rgba.push(alpha);
                }
                (rgba, 4)
            }
            None => (rgb, 3),
        };
        let head = PictureHead {
            width: w as u32,
            height: h as u32,
            channels,
        };
        Ok((head, pixels))
    }
}

/// A canvas the tiles are drawn on: RGB (3 channels) or an alpha plane (1).
struct Canvas {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<u8>,
    tile: Vec<u8>,
    scaler: Option<((i32, i32, i32), Scaler)>,
}

impl Canvas {
    fn new(width: usize, height: usize, channels: usize) -> Canvas {
        Canvas {
            width,
            height,
            channels,
            data: vec![if channels == 1 { 255 } else { 0 }; width * height * channels],
            tile: Vec::new(),
            scaler: None,
        }
    }

    /// Convert `frame` (to RGB with its own matrix and range, or to its luma for alpha,
    /// taken as is) and copy it to (x, y), clipped to the canvas.
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
            let (dst, ranges) = if self.channels == 1 {
                (ff::AVPixelFormat::AV_PIX_FMT_GRAY8, (true, true))
            } else {
                (ff::AVPixelFormat::AV_PIX_FMT_RGB24, (full, true))
            };
            let s = Scaler::new(src, (r.width, r.height, dst), matrix, ranges)?;
            self.scaler = Some((src, s));
        }
        let c = self.channels;
        let (tw, th) = (r.width as usize, r.height as usize);
        self.tile.resize(tw * th * c, 0);
        if let Some((_, s)) = self.scaler.as_mut() {
            let mut planes: [&mut [u8]; 1] = [&mut self.tile];
            s.scale(frame, &mut planes, &[(tw * c) as i32])?;
        }
        let (x, y) = (x.max(0) as usize, y.max(0) as usize);
        for row in 0..th {
            let cy = y + row;
            if cy >= self.height || x >= self.width {
                break;
            }
            let n = tw.min(self.width - x) * c;
            let dst = (cy * self.width + x) * c;
            self.data[dst..dst + n].copy_from_slice(&self.tile[row * tw * c..row * tw * c + n]);
        }
        Ok(())
    }

    fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Vec<u8> {
        let c = self.channels;
        let mut out = vec![if c == 1 { 255 } else { 0 }; w * h * c];
        for row in 0..h {
            let sy = y + row;
            if sy >= self.height || x >= self.width {
                break;
            }
            let n = w.min(self.width - x) * c;
            let src = (sy * self.width + x) * c;
            out[row * w * c..row * w * c + n].copy_from_slice(&self.data[src..src + n]);
        }
        out
    }
}
