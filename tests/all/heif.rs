//! HEIF/HEIC and AVIF photos through `mediaflow process`: single images and the tiled (grid)
//! pictures iPhones write — built here the way an iPhone does (512×512 HEVC tiles on a
//! padded canvas, cropped by the grid, an `irot` and an EXIF orientation that agree) —,
//! 10-bit, alpha, AVIF grids. Each rendition is compared with a reference picture (PSNR)
//! and its alpha read back.

use crate::process::run_measured;
use crate::video::{ffmpeg, manifest};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A box: size, type, body.
fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(body);
    v
}

/// A full box: version and flags first.
fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&flags.to_be_bytes()[1..]);
    b.extend_from_slice(body);
    bx(kind, &b)
}

/// The body of the first box of `kind` found anywhere in `data` (a naive scan, fine for the
/// small files ffmpeg writes here).
fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    let at = data.windows(4).position(|w| w == kind).expect("box") - 4;
    let size = u32::from_be_bytes(data[at..at + 4].try_into().expect("4")) as usize;
    &data[at + 8..at + size]
}

/// `tiles.mp4` (one 512×512 tile per frame, all intra) → (hvcC box, each tile's bytes).
fn tiles_of(mp4: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let hvcc = find_box(mp4, b"hvcC").to_vec();
    let stsz = find_box(mp4, b"stsz");
    let count = u32::from_be_bytes(stsz[8..12].try_into().expect("4")) as usize;
    let sizes: Vec<usize> = (0..count)
        .map(|i| u32::from_be_bytes(stsz[12 + i * 4..16 + i * 4].try_into().expect("4")) as usize)
        .collect();
    let mdat_at = mp4.windows(4).position(|w| w == b"mdat").expect("mdat") + 4;
    let mut pos = mdat_at;
    let tiles = sizes
        .iter()
        .map(|&n| {
            let t = mp4[pos..pos + n].to_vec();
            pos += n;
            t
        })
        .collect();
    (bx(b"hvcC", &hvcc), tiles)
}

/// A HEIC like an iPhone's: a `grid` item (primary) of `cols`×`rows` hidden `hvc1` tiles,
/// output `width`×`height`, rotated by `irot` (anticlockwise quarter turns) and an `Exif`
/// item whose Orientation is `exif_orientation`.
fn grid_heic(
    hvcc: &[u8],
    tiles: &[Vec<u8>],
    (cols, rows): (u8, u8),
    (width, height): (u16, u16),
    irot: u8,
    exif_orientation: u16,
) -> Vec<u8> {
    let n = tiles.len() as u16;
    let grid_id = 1u16;
    let exif_id = n + 2;
    let mut exif = vec![0u8, 0, 0, 0];
    exif.extend_from_slice(b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01");
    exif.extend_from_slice(&exif_orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let grid_desc = [
        &[0u8, 0, rows - 1, cols - 1][..],
        &width.to_be_bytes(),
        &height.to_be_bytes(),
    ]
    .concat();
    let infe = |id: u16, kind: &[u8; 4], hidden: bool| {
        let mut b = id.to_be_bytes().to_vec();
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(kind);
        b.push(0);
        full(b"infe", 2, u32::from(hidden), &b)
    };
    let mut iinf_body = (n + 2).to_be_bytes().to_vec();
    iinf_body.extend(infe(grid_id, b"grid", false));
    for i in 0..n {
        iinf_body.extend(infe(i + 2, b"hvc1", true));
    }
    iinf_body.extend(infe(exif_id, b"Exif", false));
    let mut dimg = grid_id.to_be_bytes().to_vec();
    dimg.extend_from_slice(&n.to_be_bytes());
    for i in 0..n {
        dimg.extend_from_slice(&(i + 2).to_be_bytes());
    }
    let cdsc = [
        exif_id.to_be_bytes(),
        1u16.to_be_bytes(),
        grid_id.to_be_bytes(),
    ]
    .concat();
    let iref = full(
        b"iref",
        0,
        0,
        &[bx(b"dimg", &dimg), bx(b"cdsc", &cdsc)].concat(),
    );
    let ispe = |w: u32, h: u32| full(b"ispe", 0, 0, &[w.to_be_bytes(), h.to_be_bytes()].concat());
    let ipco = bx(
        b"ipco",
        &[
            hvcc.to_vec(),
            ispe(512, 512),
            ispe(u32::from(width), u32::from(height)),
            bx(b"irot", &[irot]),
        ]
        .concat(),
    );
    let mut ipma = Vec::new();
    ipma.extend_from_slice(&u32::from(n + 1).to_be_bytes());
    ipma.extend_from_slice(&grid_id.to_be_bytes());
    ipma.extend_from_slice(&[2, 0x03, 0x84]);
    for i in 0..n {
        ipma.extend_from_slice(&(i + 2).to_be_bytes());
        ipma.extend_from_slice(&[2, 0x81, 0x02]);
    }
    let iprp = bx(b"iprp", &[ipco, full(b"ipma", 0, 0, &ipma)].concat());
    let hdlr = full(
        b"hdlr",
        0,
        0,
        &[&[0u8; 4][..], b"pict", &[0u8; 13]].concat(),
    );
    let pitm = full(b"pitm", 0, 0, &grid_id.to_be_bytes());
    let idat = bx(b"idat", &grid_desc);
    let ftyp = bx(b"ftyp", b"heic\0\0\0\0mif1heicmiaf");
    // iloc v1: the grid from idat (construction method 1), tiles and EXIF from mdat.
    let build = |mdat_start: u32| {
        let mut b = vec![0x44, 0x00];
        b.extend_from_slice(&(n + 2).to_be_bytes());
        let entry = |b: &mut Vec<u8>, id: u16, method: u16, off: u32, len: u32| {
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&method.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 1]);
            b.extend_from_slice(&off.to_be_bytes());
            b.extend_from_slice(&len.to_be_bytes());
        };
        entry(&mut b, grid_id, 1, 0, grid_desc.len() as u32);
        let mut off = mdat_start;
        for (i, t) in tiles.iter().enumerate() {
            entry(&mut b, i as u16 + 2, 0, off, t.len() as u32);
            off += t.len() as u32;
        }
        entry(&mut b, exif_id, 0, off, exif.len() as u32);
        let iloc = full(b"iloc", 1, 0, &b);
        let meta = full(
            b"meta",
            0,
            0,
            &[
                hdlr.clone(),
                pitm.clone(),
                iinf_box(&iinf_body),
                iref.clone(),
                iprp.clone(),
                iloc,
                idat.clone(),
            ]
            .concat(),
        );
        [ftyp.clone(), meta].concat()
    };
    let head_len = build(0).len() as u32;
    let mut file = build(head_len + 8);
    let payload: Vec<u8> = tiles
        .iter()
        .flatten()
        .copied()
        .chain(exif.iter().copied())
        .collect();
    file.extend(bx(b"mdat", &payload));
    file
}

fn iinf_box(body: &[u8]) -> Vec<u8> {
    full(b"iinf", 0, 0, body)
}

/// PSNR of two pictures of the same size, as ffmpeg computes it (RGB).
fn psnr(a: &Path, b: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .arg("-i")
        .arg(a)
        .arg("-i")
        .arg(b)
        .args([
            "-lavfi",
            "[0:v]format=gbrp[x];[1:v]format=gbrp[y];[x][y]psnr",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    let text = String::from_utf8_lossy(&out.stderr);
    text.split("average:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no PSNR: {text}"))
}

/// RGBA of the pixel at (x, y) of a PNG, decoded by the `image` crate.
fn rgba_at(path: &Path, x: u32, y: u32) -> [u8; 4] {
    let img = image::open(path).expect("decode").to_rgba8();
    img.get_pixel(x, y).0
}

/// A profile writing one lossless PNG at the source's size.
const PNG_PROFILE: &str = r#"
default_profile = "png"
[profiles.png]
renditions = [{ name = "full", width = 4000, height = 4000, format = "png" }]
"#;

fn run(dir: &Path, files: &[&str]) -> std::path::PathBuf {
    std::fs::write(dir.join("config.toml"), PNG_PROFILE).expect("config");
    let out = dir.join("out");
    let mut args = vec!["process".to_string()];
    args.extend(
        files
            .iter()
            .map(|f| dir.join(f).to_string_lossy().into_owned()),
    );
    args.extend([
        "--out".into(),
        out.to_string_lossy().into_owned(),
        "--config".into(),
        dir.join("config.toml").to_string_lossy().into_owned(),
    ]);
    let (code, log, _) = run_measured(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(code, 0, "{log}");
    out
}

fn media(out: &Path, stem: &str) -> Value {
    let m = manifest(out, stem);
    assert_eq!(m["status"], "succeeded", "{stem}: {m}");
    m["source"]["media"].clone()
}

#[test]
fn iphone_style_grid_heic_is_assembled_cropped_and_turned_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // The photo: 1200x900, on a 3x2 grid of 512x512 tiles (a 1536x1024 canvas).
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1200x900:rate=1",
        "-frames:v",
        "1",
        &d("photo.png"),
    ]);
    ffmpeg(&[
        "-loop",
        "1",
        "-i",
        &d("photo.png"),
        "-vf",
        "pad=1536:1024,crop=512:512:'mod(n,3)*512':'floor(n/3)*512'",
        "-frames:v",
        "6",
        "-c:v",
        "libx265",
        "-x265-params",
        "keyint=1:log-level=error",
        "-crf",
        "12",
        "-tag:v",
        "hvc1",
        &d("tiles.mp4"),
    ]);
    let (hvcc, tiles) = tiles_of(&std::fs::read(d("tiles.mp4")).expect("tiles"));
    assert_eq!(tiles.len(), 6);
    // Held sideways: irot 3 (three anticlockwise quarter turns = one clockwise) and EXIF
    // Orientation 6 (the same turn) — applying both would turn it twice.
    std::fs::write(
        d("portrait.heic"),
        grid_heic(&hvcc, &tiles, (3, 2), (1200, 900), 3, 6),
    )
    .expect("write");
    std::fs::write(
        d("landscape.heic"),
        grid_heic(&hvcc, &tiles, (3, 2), (1200, 900), 0, 1),
    )
    .expect("write");
    ffmpeg(&[
        "-i",
        &d("photo.png"),
        "-vf",
        "transpose=1",
        &d("photo-cw.png"),
    ]);
    let out = run(dir.path(), &["portrait.heic", "landscape.heic"]);
    let m = media(&out, "landscape");
    assert_eq!(
        (
            m["format"].as_str(),
            m["width"].as_u64(),
            m["height"].as_u64()
        ),
        (Some("heif"), Some(1200), Some(900)),
        "{m}"
    );
    let p = psnr(&out.join("landscape/full.png"), Path::new(&d("photo.png")));
    assert!(
        p > 35.0,
        "the grid is assembled and cropped like the original: {p} dB"
    );
    let m = media(&out, "portrait");
    assert_eq!(
        (m["width"].as_u64(), m["height"].as_u64()),
        (Some(900), Some(1200)),
        "{m}"
    );
    let p = psnr(
        &out.join("portrait/full.png"),
        Path::new(&d("photo-cw.png")),
    );
    assert!(p > 35.0, "turned clockwise once: {p} dB");
}

#[test]
fn heic_and_avif_photos_of_every_kind_decode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let sh = |cmd: &str, args: &[&str]| {
        let o = Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(
            o.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x480:rate=1",
        "-frames:v",
        "1",
        &d("photo.png"),
    ]);
    ffmpeg(&[
        "-i",
        &d("photo.png"),
        "-pix_fmt",
        "rgb48be",
        &d("photo16.png"),
    ]);
    // Left half opaque, right half a quarter opaque.
    ffmpeg(&[
        "-i",
        &d("photo.png"),
        "-vf",
        "format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='if(lt(X,320),255,64)'",
        &d("photo-alpha.png"),
    ]);
    sh(
        "heif-enc",
        &["-q", "90", &d("photo.png"), "-o", &d("single.heic")],
    );
    sh(
        "heif-enc",
        &["-q", "90", &d("photo16.png"), "-o", &d("ten-bit.heic")],
    );
    sh(
        "heif-enc",
        &["-q", "90", &d("photo-alpha.png"), "-o", &d("alpha.heic")],
    );
    sh(
        "avifenc",
        &[
            "--min",
            "8",
            "--max",
            "16",
            &d("photo.png"),
            &d("eight.avif"),
        ],
    );
    sh(
        "avifenc",
        &[
            "-d",
            "10",
            "--min",
            "8",
            "--max",
            "16",
            &d("photo.png"),
            &d("ten.avif"),
        ],
    );
    sh(
        "avifenc",
        &[
            "--grid",
            "2x2",
            "--min",
            "8",
            "--max",
            "16",
            &d("photo.png"),
            &d("grid.avif"),
        ],
    );
    sh(
        "avifenc",
        &[
            "--min",
            "8",
            "--max",
            "16",
            &d("photo-alpha.png"),
            &d("alpha-av1.avif"),
        ],
    );
    let files = [
        "single.heic",
        "ten-bit.heic",
        "alpha.heic",
        "eight.avif",
        "ten.avif",
        "grid.avif",
        "alpha-av1.avif",
    ];
    let out = run(dir.path(), &files);
    for (stem, format, depth) in [
        ("single", "heif", 8),
        ("ten-bit", "heif", 10),
        ("alpha", "heif", 8),
        ("eight", "avif", 8),
        ("ten", "avif", 10),
        ("grid", "avif", 8),
        ("alpha-av1", "avif", 8),
    ] {
        let m = media(&out, stem);
        assert_eq!(
            (
                m["format"].as_str(),
                m["width"].as_u64(),
                m["height"].as_u64()
            ),
            (Some(format), Some(640), Some(480)),
            "{stem}: {m}"
        );
        assert_eq!(m["bit_depth"].as_u64(), Some(depth), "{stem}: {m}");
        let png = out.join(stem).join("full.png");
        let p = psnr(&png, Path::new(&d("photo.png")));
        assert!(p > 30.0, "{stem}: {p} dB against the original");
    }
    for stem in ["alpha", "alpha-av1"] {
        let png = out.join(stem).join("full.png");
        let opaque = rgba_at(&png, 100, 240)[3];
        let faint = rgba_at(&png, 500, 240)[3];
        assert!(
            opaque >= 250 && (50..=80).contains(&faint),
            "{stem}: alpha kept ({opaque}, {faint})"
        );
    }
    let solid = rgba_at(&out.join("single/full.png"), 100, 240);
    assert_eq!(solid[3], 255, "no alpha: opaque");
}
