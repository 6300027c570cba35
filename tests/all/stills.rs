//! Still inputs beyond the classic formats, end to end through `mediaflow process`: every
//! common BMP variant (built byte by byte, so the expected pixels are known exactly), TIFF
//! (16-bit, CMYK, multi-page), APNG, JPEG XL (made by Debian's `cjxl`), SVG (rasterised with
//! no external references), Ultra HDR and damaged JPEGs, broken EXIF; AVIF outputs. Outputs
//! are judged by independent decoders (the `image` crate, Debian's ffprobe/ffmpeg), and every
//! hostile variant must fail with its own error code while the rest of the run succeeds.

use crate::process::{ffprobe_size, manifest, outputs, run_measured, write};
use mediaflow_tests::{CANON, encode, exif_block, jpeg_with_exif, photo_like};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Known test pixels: a colour per (x, y), as a palette index or RGB.
fn index_at(x: u32, y: u32, colours: u32) -> u32 {
    (x * 7 + y * 13) % colours
}

fn palette(n: u32) -> Vec<[u8; 3]> {
    (0..n)
        .map(|i| {
            let v = (i * 255 / (n - 1).max(1)) as u8;
            [v, 255 - v, (i * 37 % 256) as u8]
        })
        .collect()
}

fn rgb_at(x: u32, y: u32) -> [u8; 3] {
    [
        (x * 19 % 256) as u8,
        (y * 31 % 256) as u8,
        ((x + y) * 11 % 256) as u8,
    ]
}

/// A BMP: file header, a DIB header of `dib` bytes (12 = OS/2 core, 40 = info, 108 = V4),
/// optional masks after a 40-byte header (bit fields), palette, pixel data.
struct Bmp {
    width: i32,
    height: i32,
    bits: u16,
    compression: u32,
    dib: u32,
    masks: Option<[u32; 4]>,
    palette: Vec<[u8; 3]>,
    data: Vec<u8>,
}

impl Bmp {
    fn bytes(&self) -> Vec<u8> {
        let mut dib = Vec::new();
        if self.dib == 12 {
            dib.extend_from_slice(&12u32.to_le_bytes());
            dib.extend_from_slice(&(self.width as u16).to_le_bytes());
            dib.extend_from_slice(&(self.height as u16).to_le_bytes());
            dib.extend_from_slice(&1u16.to_le_bytes());
            dib.extend_from_slice(&self.bits.to_le_bytes());
        } else {
            dib.extend_from_slice(&self.dib.to_le_bytes());
            dib.extend_from_slice(&self.width.to_le_bytes());
            dib.extend_from_slice(&self.height.to_le_bytes());
            dib.extend_from_slice(&1u16.to_le_bytes());
            dib.extend_from_slice(&self.bits.to_le_bytes());
            dib.extend_from_slice(&self.compression.to_le_bytes());
            dib.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
            dib.extend_from_slice(&2835u32.to_le_bytes());
            dib.extend_from_slice(&2835u32.to_le_bytes());
            dib.extend_from_slice(&(self.palette.len() as u32).to_le_bytes());
            dib.extend_from_slice(&0u32.to_le_bytes());
            if self.dib >= 52 {
                // Masks inside the header (V2+), then the rest of V4 zeroed (colour space).
                for m in self.masks.unwrap_or_default() {
                    dib.extend_from_slice(&m.to_le_bytes());
                }
                dib.resize(self.dib as usize, 0);
                // LCS_sRGB colour space type at offset 56.
                if self.dib >= 108 {
                    dib[56..60].copy_from_slice(b"BGRs");
                }
            } else if let Some(m) = self.masks {
                for m in &m[..3] {
                    dib.extend_from_slice(&m.to_le_bytes());
                }
            }
        }
        let mut pal = Vec::new();
        for c in &self.palette {
            pal.extend_from_slice(&[c[2], c[1], c[0]]);
            if self.dib != 12 {
                pal.push(0);
            }
        }
        let offset = 14 + dib.len() + pal.len();
        let mut out = b"BM".to_vec();
        out.extend_from_slice(&((offset + self.data.len()) as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(offset as u32).to_le_bytes());
        out.extend_from_slice(&dib);
        out.extend_from_slice(&pal);
        out.extend_from_slice(&self.data);
        out
    }
}

const W: u32 = 13;
const H: u32 = 7;

/// Rows in file order (bottom-up unless `top_down`), each padded to 4 bytes.
fn rows(top_down: bool, row: impl Fn(u32) -> Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..H {
        let y = if top_down { i } else { H - 1 - i };
        let mut r = row(y);
        r.resize(r.len().div_ceil(4) * 4, 0);
        out.extend_from_slice(&r);
    }
    out
}

fn packed(y: u32, bits: u32, colours: u32) -> Vec<u8> {
    let per = 8 / bits;
    (0..W.div_ceil(per))
        .map(|b| {
            (0..per).fold(0u8, |acc, k| {
                let x = b * per + k;
                let v = if x < W { index_at(x, y, colours) } else { 0 };
                acc | ((v as u8) << (8 - bits * (k + 1)))
            })
        })
        .collect()
}

/// RLE8/RLE4: each pixel as a run of one, end of line, end of bitmap (rows bottom-up).
fn rle(bits: u32, colours: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..H {
        let y = H - 1 - i;
        for x in 0..W {
            let v = index_at(x, y, colours) as u8;
            out.extend_from_slice(&[1, if bits == 4 { v << 4 | v } else { v }]);
        }
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(&[0, 1]);
    out
}

/// The RGBA a test pixel must decode to.
type Expect = Box<dyn Fn(u32, u32) -> [u8; 4]>;

/// Every BMP variant with the RGB(A) it must decode to.
fn bmp_variants() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let pal = |n: u32| {
        let p = palette(n);
        Box::new(move |x, y| {
            let c = p[index_at(x, y, n) as usize];
            [c[0], c[1], c[2], 255]
        }) as Expect
    };
    let rgb = || {
        Box::new(|x, y| {
            let c = rgb_at(x, y);
            [c[0], c[1], c[2], 255]
        }) as Expect
    };
    let bgr_row = |y: u32| -> Vec<u8> {
        (0..W)
            .flat_map(|x| {
                let c = rgb_at(x, y);
                [c[2], c[1], c[0]]
            })
            .collect()
    };
    let base = |bits, compression, palette_n: u32, data| Bmp {
        width: W as i32,
        height: H as i32,
        bits,
        compression,
        dib: 40,
        masks: None,
        palette: if palette_n > 0 {
            palette(palette_n)
        } else {
            Vec::new()
        },
        data,
    };
    // 5-bit channels expand to 8 bits by replicating the top bits.
    let c5 = |v: u8| (v >> 3) << 3 | (v >> 5);
    let c6 = |v: u8| (v >> 2) << 2 | (v >> 6);
    let rgb555 = Box::new(move |x, y| {
        let c = rgb_at(x, y);
        [c5(c[0]), c5(c[1]), c5(c[2]), 255]
    }) as Expect;
    let rgb565 = Box::new(move |x, y| {
        let c = rgb_at(x, y);
        [c5(c[0]), c6(c[1]), c5(c[2]), 255]
    }) as Expect;
    let alpha = |x: u32, y: u32| ((x * 255 / (W - 1)) as u8).max((y * 40) as u8 % 255);
    vec![
        (
            "bmp1",
            base(1, 0, 2, rows(false, |y| packed(y, 1, 2))).bytes(),
            pal(2),
        ),
        (
            "bmp4",
            base(4, 0, 16, rows(false, |y| packed(y, 4, 16))).bytes(),
            pal(16),
        ),
        (
            "bmp8",
            base(8, 0, 256, rows(false, |y| packed(y, 8, 256))).bytes(),
            pal(256),
        ),
        ("rle8", base(8, 1, 256, rle(8, 256)).bytes(), pal(256)),
        ("rle4", base(4, 2, 16, rle(4, 16)).bytes(), pal(16)),
        (
            "bmp16",
            base(
                16,
                0,
                0,
                rows(false, |y| {
                    (0..W)
                        .flat_map(|x| {
                            let c = rgb_at(x, y).map(|v| u16::from(v >> 3));
                            (c[0] << 10 | c[1] << 5 | c[2]).to_le_bytes()
                        })
                        .collect()
                }),
            )
            .bytes(),
            rgb555,
        ),
        (
            "bmp565",
            Bmp {
                masks: Some([0xF800, 0x07E0, 0x001F, 0]),
                ..base(
                    16,
                    3,
                    0,
                    rows(false, |y| {
                        (0..W)
                            .flat_map(|x| {
                                let c = rgb_at(x, y);
                                let v = u16::from(c[0] >> 3) << 11
                                    | u16::from(c[1] >> 2) << 5
                                    | u16::from(c[2] >> 3);
                                v.to_le_bytes()
                            })
                            .collect()
                    }),
                )
            }
            .bytes(),
            rgb565,
        ),
        ("bmp24", base(24, 0, 0, rows(false, bgr_row)).bytes(), rgb()),
        (
            "topdown",
            Bmp {
                height: -(H as i32),
                ..base(24, 0, 0, rows(true, bgr_row))
            }
            .bytes(),
            rgb(),
        ),
        (
            "os2",
            Bmp {
                dib: 12,
                ..base(24, 0, 0, rows(false, bgr_row))
            }
            .bytes(),
            rgb(),
        ),
        (
            "bmp32",
            base(
                32,
                0,
                0,
                rows(false, |y| {
                    (0..W)
                        .flat_map(|x| {
                            let c = rgb_at(x, y);
                            [c[2], c[1], c[0], 0]
                        })
                        .collect()
                }),
            )
            .bytes(),
            rgb(),
        ),
        (
            "bmp32a",
            Bmp {
                dib: 108,
                masks: Some([0x00FF_0000, 0x0000_FF00, 0x0000_00FF, 0xFF00_0000]),
                ..base(
                    32,
                    3,
                    0,
                    rows(false, |y| {
                        (0..W)
                            .flat_map(|x| {
                                let c = rgb_at(x, y);
                                [c[2], c[1], c[0], alpha(x, y)]
                            })
                            .collect()
                    }),
                )
            }
            .bytes(),
            Box::new(move |x, y| {
                let c = rgb_at(x, y);
                [c[0], c[1], c[2], alpha(x, y)]
            }),
        ),
    ]
}

const FULL: &str = r#"
default_profile = "full"
[profiles.full]
renditions = [{ name = "full", width = 4096, format = "png" }]
[profiles.exif]
renditions = [{ name = "full", width = 4096, format = "png" }]
metadata = [{ plugin = "exif@^1" }]
"#;

fn process(inputs: &[PathBuf], out: &Path, config: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut args: Vec<String> = vec!["process".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend([
        "--out".into(),
        out.display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text, _) = run_measured(&argv, env);
    (code, text)
}

fn notes(m: &Value) -> String {
    m["notes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

#[test]
fn every_bmp_variant_decodes_to_its_exact_pixels() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write(dir.path(), "full.toml", FULL.as_bytes());
    let variants = bmp_variants();
    let inputs: Vec<PathBuf> = variants
        .iter()
        .map(|(name, bytes, _)| write(dir.path(), &format!("{name}.bmp"), bytes))
        .collect();
    let out = dir.path().join("out");
    let (code, text) = process(&inputs, &out, &config, &[]);
    assert_eq!(code, 0, "{text}");
    for (name, _, expect) in &variants {
        let m = manifest(&out, name);
        assert_eq!(m["source"]["media"]["format"], "bmp", "{name}");
        let png = out.join(name).join("full.png");
        // ffmpeg reads the BMP itself the same size (an independent decoder of the input).
        assert_eq!(
            ffprobe_size(&dir.path().join(format!("{name}.bmp")).display().to_string()),
            (u64::from(W), u64::from(H)),
            "{name}: ffprobe"
        );
        let img = image::open(&png)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .to_rgba8();
        assert_eq!(img.dimensions(), (W, H), "{name}");
        for (x, y, px) in img.enumerate_pixels() {
            let want = expect(x, y);
            let close = px.0.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 1);
            assert!(close, "{name} at ({x},{y}): {:?} != {want:?}", px.0);
        }
    }
}

/// The Ultra HDR layout: the primary JPEG with an XMP packet naming the gain map and an APP2
/// MPF index, then the gain-map JPEG after the primary's EOI (what Pixel cameras write).
fn ultra_hdr(primary: &[u8], gain_map: &[u8]) -> Vec<u8> {
    fn segment(code: u8, body: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, code];
        s.extend_from_slice(
            &u16::try_from(body.len() + 2)
                .expect("segment")
                .to_be_bytes(),
        );
        s.extend_from_slice(body);
        s
    }
    let xmp = |length: usize| {
        let mut x = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
        x.extend_from_slice(
            format!(
                r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:Container="http://ns.google.com/photos/1.0/container/" xmlns:Item="http://ns.google.com/photos/1.0/container/item/" xmlns:hdrgm="http://ns.adobe.com/hdr-gain-map/1.0/" hdrgm:Version="1.0"><Container:Directory><rdf:Seq><rdf:li rdf:parseType="Resource"><Container:Item Item:Semantic="Primary" Item:Mime="image/jpeg"/></rdf:li><rdf:li rdf:parseType="Resource"><Container:Item Item:Semantic="GainMap" Item:Mime="image/jpeg" Item:Length="{length}"/></rdf:li></rdf:Seq></Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>"#
            )
            .as_bytes(),
        );
        x
    };
    // MPF: big-endian TIFF header, an index IFD of 3 entries, two 16-byte MP entries.
    let mpf = |primary_len: u32, gain_len: u32, gain_offset: u32| {
        let mut m = b"MPF\0MM\0*\0\0\0\x08".to_vec();
        m.extend_from_slice(&3u16.to_be_bytes());
        m.extend_from_slice(&[0xB0, 0x00, 0, 7, 0, 0, 0, 4, b'0', b'1', b'0', b'0']);
        m.extend_from_slice(&[0xB0, 0x01, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2]);
        m.extend_from_slice(&[0xB0, 0x02, 0, 7, 0, 0, 0, 32, 0, 0, 0, 50]);
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&0x0003_0000u32.to_be_bytes());
        m.extend_from_slice(&primary_len.to_be_bytes());
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&gain_len.to_be_bytes());
        m.extend_from_slice(&gain_offset.to_be_bytes());
        m.extend_from_slice(&[0; 4]);
        m
    };
    let head_len = segment(0xE1, &xmp(gain_map.len())).len() + segment(0xE2, &mpf(0, 0, 0)).len();
    let primary_len = primary.len() + head_len;
    // The MPF offset counts from the TIFF header inside the APP2 segment.
    let mpf_tiff_at = 2 + segment(0xE1, &xmp(gain_map.len())).len() + 4 + 4;
    let mut out = primary[..2].to_vec();
    out.extend_from_slice(&segment(0xE1, &xmp(gain_map.len())));
    out.extend_from_slice(&segment(
        0xE2,
        &mpf(
            primary_len as u32,
            gain_map.len() as u32,
            (primary_len - mpf_tiff_at) as u32,
        ),
    ));
    out.extend_from_slice(&primary[2..]);
    out.extend_from_slice(gain_map);
    out
}

/// Offsets of the entropy-coded data of a baseline JPEG's single scan.
fn scan_data(jpeg: &[u8]) -> std::ops::Range<usize> {
    let sos = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("SOS");
    let len = usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]));
    let eoi = jpeg
        .windows(2)
        .rposition(|w| w == [0xFF, 0xD9])
        .expect("EOI");
    sos + 2 + len..eoi
}

/// An EXIF block whose IFD0 claims 300 entries: nothing in it can be trusted.
fn exif_bad_count() -> Vec<u8> {
    let mut e = exif_block(&CANON);
    let le = e.starts_with(b"II");
    let at = if le {
        u32::from_le_bytes([e[4], e[5], e[6], e[7]])
    } else {
        u32::from_be_bytes([e[4], e[5], e[6], e[7]])
    } as usize;
    let count = if le {
        300u16.to_le_bytes()
    } else {
        300u16.to_be_bytes()
    };
    e[at..at + 2].copy_from_slice(&count);
    e
}

/// An EXIF block whose `Model` value points far outside it (the other entries are intact).
fn exif_bad_value() -> Vec<u8> {
    let mut e = exif_block(&CANON);
    let le = e.starts_with(b"II");
    let u16_at = |e: &[u8], o: usize| {
        if le {
            u16::from_le_bytes([e[o], e[o + 1]])
        } else {
            u16::from_be_bytes([e[o], e[o + 1]])
        }
    };
    let ifd = if le {
        u32::from_le_bytes([e[4], e[5], e[6], e[7]])
    } else {
        u32::from_be_bytes([e[4], e[5], e[6], e[7]])
    } as usize;
    let count = usize::from(u16_at(&e, ifd));
    let entry = (0..count)
        .map(|i| ifd + 2 + i * 12)
        .find(|&o| u16_at(&e, o) == 0x0110)
        .expect("Model entry");
    let far = if le {
        0x00FF_FF00u32.to_le_bytes()
    } else {
        0x00FF_FF00u32.to_be_bytes()
    };
    e[entry + 8..entry + 12].copy_from_slice(&far);
    e
}

/// PSNR (dB) of `b` against `a`, both RGB8 of the same size.
fn psnr(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    let mse = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
}

#[test]
fn damaged_ultra_hdr_and_exif_broken_jpegs_decode_while_truncation_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write(dir.path(), "full.toml", FULL.as_bytes());
    let src = photo_like(320, 240);
    let clean = encode(&src, image::ImageFormat::Jpeg);
    let gain = encode(&photo_like(80, 60), image::ImageFormat::Jpeg);
    let uhdr = ultra_hdr(&clean, &gain);
    // Stray bytes between two header segments (after SOI) and before EOI.
    let mut between = clean[..2].to_vec();
    between.extend_from_slice(&[0x00, 0x13, 0x37]);
    between.extend_from_slice(&clean[2..clean.len() - 2]);
    between.extend_from_slice(&[0x42, 0x42, 0xFF, 0xD9]);
    // Bytes changed inside the entropy-coded data, and one lone FF 12 (no such marker).
    let mut inside = clean.clone();
    let data = scan_data(&inside);
    let mid = (data.start + data.end) / 2;
    for (k, b) in [0x5Au8, 0xA5, 0x3C].iter().enumerate() {
        inside[mid + k * 97] = *b;
    }
    inside.splice(mid + 500..mid + 500, [0xFF, 0x12]);
    let bad_value = jpeg_with_exif(&src, &exif_bad_value());
    let bad_count = jpeg_with_exif(&src, &exif_bad_count());
    let truncated = clean[..clean.len() * 2 / 3].to_vec();
    let inputs = vec![
        write(dir.path(), "uhdr.jpg", &uhdr),
        write(dir.path(), "between.jpg", &between),
        write(dir.path(), "inside.jpg", &inside),
        write(dir.path(), "badvalue.jpg", &bad_value),
        write(dir.path(), "badcount.jpg", &bad_count),
        write(dir.path(), "truncated.jpg", &truncated),
    ];
    // The exif plugin runs too: a broken block must not fail the job.
    let out = dir.path().join("out");
    let (code, text) = process(
        &inputs,
        &out,
        &config,
        &[("MEDIAFLOW_DEFAULT_PROFILE", "exif")],
    );
    assert_eq!(code, 1, "only the truncated one fails: {text}");
    let t = manifest(&out, "truncated");
    assert_eq!(t["error"]["code"], "corrupt_input", "{t}");
    assert!(
        t["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("truncated")),
        "{t}"
    );
    for name in ["uhdr", "between", "inside", "badvalue", "badcount"] {
        let m = manifest(&out, name);
        assert_eq!(m["status"], "succeeded", "{name}: {m}");
        let png = out.join(name).join("full.png");
        let mut got = image::open(&png).expect("decodes").to_rgb8();
        if name.starts_with("bad") {
            // Its orientation (6) parsed beside the damage: displayed upright, turned back.
            got = image::imageops::rotate270(&got);
        }
        assert_eq!(got.dimensions(), (320, 240), "{name}: {m}");
        // Clean decodes sit around 30 dB against the noisy source. Damaged entropy data
        // costs the blocks from the damage on (as in a browser), never the rows before it.
        let rows = if name == "inside" { 64 } else { 240 };
        let top = |i: &image::RgbImage| image::imageops::crop_imm(i, 0, 0, 320, rows).to_image();
        let p = psnr(&top(&src), &top(&got));
        assert!(
            p > 28.0,
            "{name}: PSNR {p:.1} dB over the first {rows} rows"
        );
    }
    assert!(notes(&manifest(&out, "uhdr")).contains("Ultra HDR"));
    assert!(notes(&manifest(&out, "between")).contains("stray bytes"));
    assert!(
        notes(&manifest(&out, "inside")).contains("damaged"),
        "{}",
        notes(&manifest(&out, "inside"))
    );
    let b = manifest(&out, "badvalue");
    assert!(notes(&b).contains("EXIF block is damaged"), "{}", notes(&b));
    assert_eq!(b["source"]["media"]["orientation"], 6, "{b}");
    assert_eq!(b["source"]["media"]["width"], 240, "{b}");
    let c = manifest(&out, "badcount");
    assert!(notes(&c).contains("EXIF block is damaged"), "{}", notes(&c));
    assert_eq!(c["source"]["media"]["orientation"], 6, "{c}");
    // The exif plugin reports its own failure as a note (the job does not fail).
    assert!(notes(&c).contains("plugin `exif"), "{}", notes(&c));
}

const MIXED: &str = r#"
default_profile = "mixed"
[profiles.mixed]
renditions = [
    { name = "p", width = 200, format = "png" },
    { name = "a", width = 200, format = "avif", quality = 80 },
    { name = "j", width = 120, format = "jpeg" },
]
"#;

fn tiff_with(
    write: impl FnOnce(&mut tiff::encoder::TiffEncoder<&mut std::io::Cursor<Vec<u8>>>),
) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut enc = tiff::encoder::TiffEncoder::new(&mut out).expect("tiff encoder");
        write(&mut enc);
    }
    out.into_inner()
}

/// CMYK: no ink on the left, full cyan on the right.
fn cmyk_tiff(w: u32, h: u32) -> Vec<u8> {
    let data: Vec<u8> = (0..h)
        .flat_map(|_| (0..w).flat_map(move |x| [(x * 255 / (w - 1)) as u8, 0, 0, 0]))
        .collect();
    tiff_with(|e| {
        e.write_image::<tiff::encoder::colortype::CMYK8>(w, h, &data)
            .expect("CMYK TIFF");
    })
}

fn paged_tiff(pages: u32) -> Vec<u8> {
    let img = photo_like(64, 48);
    tiff_with(|e| {
        for _ in 0..pages {
            e.write_image::<tiff::encoder::colortype::RGB8>(64, 48, img.as_raw())
                .expect("page");
        }
    })
}

/// A little-endian TIFF whose second directory links back to the first.
fn looped_tiff() -> Vec<u8> {
    let mut t = paged_tiff(2);
    // Find IFD0's next pointer and IFD1's; point IFD1's back at IFD0.
    let ifd0 = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize;
    let count0 = usize::from(u16::from_le_bytes([t[ifd0], t[ifd0 + 1]]));
    let next0_at = ifd0 + 2 + count0 * 12;
    let ifd1 = u32::from_le_bytes([
        t[next0_at],
        t[next0_at + 1],
        t[next0_at + 2],
        t[next0_at + 3],
    ]) as usize;
    let count1 = usize::from(u16::from_le_bytes([t[ifd1], t[ifd1 + 1]]));
    let next1_at = ifd1 + 2 + count1 * 12;
    t[next1_at..next1_at + 4].copy_from_slice(&(ifd0 as u32).to_le_bytes());
    t
}

fn tool(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cjxl` (Debian's libjxl-tools) from `input` with extra arguments.
fn cjxl(input: &Path, out: &Path, args: &[&str]) {
    tool(
        Command::new("cjxl")
            .arg(input)
            .arg(out)
            .args(args)
            .arg("--quiet"),
    );
}

/// An animated PNG (APNG) of `frames` frames, by ffmpeg.
fn apng(out: &Path, frames: u32) {
    tool(
        Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                &format!(
                    "testsrc=size=96x64:rate=10:duration={}",
                    f64::from(frames) / 10.0
                ),
                "-plays",
                "0",
                "-f",
                "apng",
            ])
            .arg(out),
    );
}

/// Decode `path` to RGB with ffmpeg (the independent judge for AVIF; Debian's ffmpeg 5.1
/// reads the primary AV1 image, not the alpha auxiliary image).
fn ffmpeg_rgb(path: &Path, w: u32, h: u32) -> image::RgbImage {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image::RgbImage::from_raw(w, h, out.stdout).expect("ffmpeg frame of the manifest's size")
}

/// `psnr` over the pixels that are opaque in `reference` (a transparent pixel's colour is
/// the encoder's to choose).
fn psnr_opaque(reference: &image::RgbaImage, b: &image::RgbImage) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (p, q) in reference.pixels().zip(b.pixels()) {
        if p.0[3] == 255 {
            for c in 0..3 {
                sum += (f64::from(p.0[c]) - f64::from(q.0[c])).powi(2);
            }
            n += 3;
        }
    }
    10.0 * (255.0 * 255.0 / (sum / n.max(1) as f64).max(1e-9)).log10()
}

/// A bare JPEG XL codestream header declaring `w`×`h` (default metadata), then padding.
fn jxl_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut bits: Vec<bool> = Vec::new();
    let mut put = |v: u64, n: u32| (0..n).for_each(|i| bits.push(v >> i & 1 == 1));
    put(0, 1); // not div8
    put(3, 2); // height: 1 + u(30)
    put(u64::from(h - 1), 30);
    put(0, 3); // no ratio: width follows
    put(3, 2);
    put(u64::from(w - 1), 30);
    put(1, 1); // metadata: all default
    let mut out = vec![0xFF, 0x0A];
    out.extend(bits.chunks(8).map(|c| {
        c.iter()
            .enumerate()
            .fold(0u8, |b, (i, &on)| b | (u8::from(on) << i))
    }));
    out.extend(std::iter::repeat_n(0u8, 64));
    out
}

const LOGO: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="50" viewBox="0 0 100 50">
  <script>alert(1)</script>
  <defs><rect id="sq" width="50" height="50"/></defs>
  <use xlink:href="#sq" fill="#ff0000"/>
  <circle cx="75" cy="25" r="20" fill="rgb(0,0,255)"/>
</svg>"##;

#[test]
fn jxl_svg_tiff_apng_become_renditions_avif_outputs_decode_and_hostile_files_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let config = write(d, "mixed.toml", MIXED.as_bytes());
    // JPEG XL: 8-bit lossy, 16-bit lossless, RGBA lossless, and a JPEG with EXIF orientation 6
    // transcoded losslessly (cjxl moves the orientation into the codestream).
    let photo = write(
        d,
        "photo-src.png",
        &encode(&photo_like(400, 300), image::ImageFormat::Png),
    );
    cjxl(&photo, &d.join("photo.jxl"), &["-d", "1"]);
    let deep = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(300, 200, |x, y| {
        image::Rgb([(x * 218) as u16, (y * 327) as u16, 40000])
    });
    let deep_png = d.join("deep-src.png");
    image::DynamicImage::ImageRgb16(deep)
        .save(&deep_png)
        .expect("16-bit PNG");
    cjxl(&deep_png, &d.join("deep.jxl"), &["-d", "0"]);
    let rgba = image::RgbaImage::from_fn(240, 160, |x, _| {
        image::Rgba([20, 200, 60, if x < 120 { 255 } else { 0 }])
    });
    let rgba_png = d.join("alpha-src.png");
    rgba.save(&rgba_png).expect("RGBA PNG");
    cjxl(&rgba_png, &d.join("alpha.jxl"), &["-d", "0"]);
    let rotated_jpg = write(
        d,
        "rotated-src.jpg",
        &jpeg_with_exif(&photo_like(320, 240), &exif_block(&CANON)),
    );
    cjxl(&rotated_jpg, &d.join("rotated.jxl"), &[]);
    apng(&d.join("anim.png"), 5);
    let red = write(
        d,
        "red.png",
        &encode(
            &image::RgbImage::from_pixel(8, 8, image::Rgb([255, 0, 0])),
            image::ImageFormat::Png,
        ),
    );
    let refs = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="80" height="80"><image href="file://{}" width="80" height="80"/><image href="https://example.com/a.png" width="80" height="80"/><image href="/etc/passwd" width="80" height="80"/><rect x="60" y="60" width="20" height="20" fill="#00ff00"/></svg>"##,
        red.display()
    );
    let mut laughs = String::from(r#"<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY l0 "lol">"#);
    for i in 1..10 {
        laughs.push_str(&format!(
            r#"<!ENTITY l{i} "{}">"#,
            format!("&l{};", i - 1).repeat(10)
        ));
    }
    laughs.push_str(r#"]><svg xmlns="http://www.w3.org/2000/svg"><text>&l9;</text></svg>"#);
    let mut uses = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><defs><rect id="u0" width="1" height="1"/>"#,
    );
    for i in 1..13 {
        uses.push_str(&format!(
            r#"<g id="u{i}">{}</g>"#,
            format!(r##"<use href="#u{}"/>"##, i - 1).repeat(10)
        ));
    }
    uses.push_str(r##"</defs><use href="#u12"/></svg>"##);
    let jxl = std::fs::read(d.join("photo.jxl")).expect("jxl");

    let good: Vec<(PathBuf, u32, u32)> = vec![
        (d.join("photo.jxl"), 400, 300),
        (d.join("deep.jxl"), 300, 200),
        (d.join("alpha.jxl"), 240, 160),
        (d.join("rotated.jxl"), 240, 320),
        (write(d, "logo.svg", LOGO.as_bytes()), 100, 50),
        (write(d, "refs.svg", refs.as_bytes()), 80, 80),
        (
            write(d, "deep.tiff", &{
                let img =
                    image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(320, 200, |x, y| {
                        image::Rgb([(x * 200) as u16, (y * 300) as u16, 1000])
                    });
                let mut c = std::io::Cursor::new(Vec::new());
                image::DynamicImage::ImageRgb16(img)
                    .write_to(&mut c, image::ImageFormat::Tiff)
                    .expect("tiff16");
                c.into_inner()
            }),
            320,
            200,
        ),
        (write(d, "cmyk.tiff", &cmyk_tiff(300, 100)), 300, 100),
        (write(d, "pages.tiff", &paged_tiff(3)), 64, 48),
        (d.join("anim.png"), 96, 64),
    ];
    let huge_bmp = Bmp {
        width: 100_000,
        height: 100_000,
        bits: 24,
        compression: 0,
        dib: 40,
        masks: None,
        palette: Vec::new(),
        data: vec![0; 64],
    }
    .bytes();
    let lying_bmp = Bmp {
        width: 5000,
        height: 5000,
        bits: 24,
        compression: 0,
        dib: 40,
        masks: None,
        palette: Vec::new(),
        data: vec![0; 1024],
    }
    .bytes();
    let hostile: Vec<(PathBuf, &str, &str)> = vec![
        (write(d, "huge.bmp", &huge_bmp), "limit_exceeded", "max_dimension exceeded: 100000"),
        (write(d, "lying.bmp", &lying_bmp), "corrupt_input", "truncated"),
        (write(d, "huge.jxl", &jxl_claiming(100_000, 100_000)), "limit_exceeded", "max_dimension exceeded: 100000"),
        (write(d, "cut.jxl", &jxl[..jxl.len() / 2]), "corrupt_input", "JPEG XL"),
        (write(d, "huge.svg", br#"<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><rect width="10" height="10"/></svg>"#), "limit_exceeded", "max_dimension exceeded: 100000"),
        (write(d, "laughs.svg", laughs.as_bytes()), "limit_exceeded", "max_svg_entity_expansion"),
        (write(d, "uses.svg", uses.as_bytes()), "limit_exceeded", "max_svg_elements"),
        (write(d, "broken.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\"><rect></svg>"), "corrupt_input", "well-formed"),
        (write(d, "loop.tiff", &looped_tiff()), "corrupt_input", "loop"),
    ];
    let mut inputs: Vec<PathBuf> = good.iter().map(|g| g.0.clone()).collect();
    inputs.extend(hostile.iter().map(|h| h.0.clone()));
    let out = d.join("out");
    let started = std::time::Instant::now();
    let (code, text) = process(&inputs, &out, &config, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "{} succeeded, {} failed",
            good.len(),
            hostile.len()
        )),
        "{text}"
    );
    assert!(
        started.elapsed().as_secs() < 120,
        "bombs were refused quickly"
    );

    let dir_of = |p: &Path| -> String {
        // Stems repeat across formats (deep.jxl, deep.tiff): the CLI suffixes later ones.
        match p.file_name().and_then(|n| n.to_str()) {
            Some("deep.tiff") => "deep-2".into(),
            Some("huge.jxl") => "huge-2".into(),
            Some("huge.svg") => "huge-3".into(),
            _ => p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .into(),
        }
    };
    for (path, w, h) in &good {
        let name = dir_of(path);
        let m = manifest(&out, &name);
        assert_eq!(m["status"], "succeeded", "{name}: {m}");
        assert_eq!(
            (
                m["source"]["media"]["width"].as_u64(),
                m["source"]["media"]["height"].as_u64()
            ),
            (Some(u64::from(*w)), Some(u64::from(*h))),
            "{name}"
        );
        for (rendition, ow, oh, file) in outputs(&m) {
            assert_eq!(ffprobe_size(&file), (ow, oh), "{name}/{rendition}: ffprobe");
            let scale =
                (f64::from(if rendition == "j" { 120 } else { 200 }) / f64::from(*w)).min(1.0);
            assert_eq!(
                ow,
                (f64::from(*w) * scale).round() as u64,
                "{name}/{rendition} width"
            );
            if rendition != "a" {
                let img = image::open(&file).unwrap_or_else(|e| panic!("{name}/{rendition}: {e}"));
                assert_eq!((u64::from(img.width()), u64::from(img.height())), (ow, oh));
            }
        }
        // The AVIF rendition decodes (ffmpeg's libdav1d) to the PNG one's picture.
        let png = image::open(out.join(&name).join("p.png"))
            .expect("png")
            .to_rgba8();
        let (pw, ph) = png.dimensions();
        let avif_path = out.join(&name).join("a.avif");
        let avif = ffmpeg_rgb(&avif_path, pw, ph);
        let p = psnr_opaque(&png, &avif);
        // A transparent source's AVIF carries an alpha plane (an auxiliary image, by URN).
        let has_alpha_item = std::fs::read(&avif_path)
            .expect("avif")
            .windows(10)
            .any(|w| w == b"auxiliary:");
        assert_eq!(
            has_alpha_item,
            png.pixels().any(|p| p.0[3] < 255),
            "{name}: alpha plane iff the source has transparency"
        );
        assert!(p > 28.0, "{name}: AVIF vs PNG rendition PSNR {p:.1} dB");
    }
    // Facts per kind.
    let logo = image::open(out.join("logo/p.png"))
        .expect("logo")
        .to_rgba8();
    assert_eq!(
        logo.dimensions(),
        (100, 50),
        "never upscaled past the declared size"
    );
    assert_eq!(
        logo.get_pixel(20, 25).0,
        [255, 0, 0, 255],
        "the <use>d square is red"
    );
    assert_eq!(
        logo.get_pixel(75, 25).0,
        [0, 0, 255, 255],
        "the circle is blue"
    );
    assert_eq!(
        logo.get_pixel(52, 2).0[3],
        0,
        "transparent background kept in PNG"
    );
    let refs_png = image::open(out.join("refs/p.png"))
        .expect("refs")
        .to_rgba8();
    assert_eq!(
        refs_png.get_pixel(10, 10).0[3],
        0,
        "the file:// image was never read"
    );
    assert_eq!(refs_png.get_pixel(70, 70).0, [0, 255, 0, 255]);
    assert!(
        notes(&manifest(&out, "refs")).contains("3 reference(s)"),
        "{}",
        notes(&manifest(&out, "refs"))
    );
    let alpha = image::open(out.join("alpha/p.png"))
        .expect("alpha")
        .to_rgba8();
    assert_eq!(alpha.get_pixel(10, 10).0, [20, 200, 60, 255]);
    assert_eq!(alpha.get_pixel(190, 10).0[3], 0, "JPEG XL alpha kept");
    let deep_out = image::open(out.join("deep/p.png")).expect("deep").to_rgb8();
    let px = deep_out.get_pixel(100, 100).0;
    assert!(
        px[2].abs_diff(156) <= 2,
        "16-bit blue 40000/65535 → ~156: {px:?}"
    );
    let cmyk = image::open(out.join("cmyk/p.png")).expect("cmyk").to_rgb8();
    let (l, r) = (cmyk.get_pixel(2, 30).0, cmyk.get_pixel(197, 30).0);
    assert!(l.iter().all(|&c| c > 230), "no ink is white: {l:?}");
    assert!(r[0] < 40 && r[1] > 200 && r[2] > 200, "full cyan: {r:?}");
    assert!(notes(&manifest(&out, "pages")).contains("3 pages"));
    let anim = manifest(&out, "anim");
    assert_eq!(anim["source"]["media"]["frames"], 5, "{anim}");
    assert!(notes(&anim).contains("first frame"));
    for (path, code, says) in &hostile {
        let name = dir_of(path);
        let m = manifest(&out, &name);
        assert_eq!(m["status"], "failed", "{name}");
        assert_eq!(m["error"]["code"], *code, "{name}: {}", m["error"]);
        assert!(
            m["error"]["message"]
                .as_str()
                .is_some_and(|s| s.contains(says)),
            "{name}: {}",
            m["error"]
        );
    }
}

#[test]
fn a_tiff_of_ten_thousand_pages_uses_its_first_page_or_is_refused_by_max_frames() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write(dir.path(), "full.toml", FULL.as_bytes());
    let pages = write(dir.path(), "pages.tiff", &{
        // 10,000 directories sharing one strip: small file, long chain.
        let mut t = paged_tiff(1);
        let ifd0 = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize;
        let count = usize::from(u16::from_le_bytes([t[ifd0], t[ifd0 + 1]]));
        let dir_bytes = t[ifd0..ifd0 + 2 + count * 12].to_vec();
        let mut next_at = ifd0 + 2 + count * 12;
        for _ in 1..10_000 {
            let at = t.len() as u32;
            t[next_at..next_at + 4].copy_from_slice(&at.to_le_bytes());
            t.extend_from_slice(&dir_bytes);
            next_at = t.len();
            t.extend_from_slice(&[0; 4]);
        }
        t
    });
    let out = dir.path().join("out");
    let t = std::time::Instant::now();
    let (code, text) = process(std::slice::from_ref(&pages), &out, &config, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(t.elapsed().as_secs() < 30);
    let m = manifest(&out, "pages");
    assert!(notes(&m).contains("10000 pages"), "{m}");
    let out2 = dir.path().join("out2");
    let (code, text) = process(
        &[pages],
        &out2,
        &config,
        &[("MEDIAFLOW_LIMITS__MAX_FRAMES", "1000")],
    );
    assert_eq!(code, 1, "{text}");
    let m = manifest(&out2, "pages");
    assert_eq!(m["error"]["code"], "limit_exceeded");
    assert!(
        m["error"]["message"]
            .as_str()
            .is_some_and(|s| s.contains("max_frames")),
        "{m}"
    );
}

/// `data` with the byte at each of `at` (fractions of the length, past the first 2 bytes)
/// replaced by its complement.
fn flipped(data: &[u8], at: f64) -> Vec<u8> {
    let mut d = data.to_vec();
    let i = (2 + ((d.len() - 3) as f64 * at) as usize).min(d.len() - 1);
    d[i] = !d[i];
    d
}

#[test]
fn bit_flipped_stills_fail_or_decode_but_never_take_the_run_down() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let config = write(d, "full.toml", FULL.as_bytes());
    let png = write(
        d,
        "src.png",
        &encode(&photo_like(64, 48), image::ImageFormat::Png),
    );
    cjxl(&png, &d.join("src.jxl"), &["-d", "1"]);
    let sources: Vec<(&str, Vec<u8>)> = vec![
        ("jxl", std::fs::read(d.join("src.jxl")).expect("jxl")),
        ("rle8", bmp_variants().swap_remove(3).1),
        ("bmp", bmp_variants().swap_remove(7).1),
        ("rle4", bmp_variants().swap_remove(4).1),
        ("svg", LOGO.as_bytes().to_vec()),
        ("tiff", paged_tiff(2)),
        (
            "jpg",
            jpeg_with_exif(&photo_like(64, 48), &exif_block(&CANON)),
        ),
    ];
    let mut inputs = Vec::new();
    for (kind, data) in &sources {
        for (k, at) in [0.0, 0.01, 0.03, 0.07, 0.15, 0.3, 0.5, 0.8, 0.97]
            .iter()
            .enumerate()
        {
            let ext = if kind.starts_with("rle") { "bmp" } else { kind };
            inputs.push(write(d, &format!("{kind}{k}.{ext}"), &flipped(data, *at)));
        }
    }
    let out = d.join("out");
    let t = std::time::Instant::now();
    let (code, text) = process(&inputs, &out, &config, &[]);
    assert!(code == 0 || code == 1, "exit {code}: {text}");
    assert!(t.elapsed().as_secs() < 120, "no hang");
    let mut failed = 0;
    for input in &inputs {
        let stem = input.file_stem().and_then(|s| s.to_str()).expect("stem");
        let m = manifest(&out, stem);
        match m["status"].as_str() {
            Some("succeeded") => {}
            Some("failed") => {
                failed += 1;
                let c = m["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    matches!(
                        c,
                        "corrupt_input"
                            | "unsupported_format"
                            | "unsupported_codec"
                            | "limit_exceeded"
                    ),
                    "{stem}: {m}"
                );
                assert!(
                    !m["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("decoder failed"),
                    "{stem}: a decoder panicked: {m}"
                );
            }
            other => panic!("{stem}: status {other:?}"),
        }
    }
    // Flips in headers must be caught somewhere: not every file can sail through.
    assert!(failed > 0, "{text}");
}
