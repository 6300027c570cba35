//! What FFmpeg's HEIF reader leaves out: which item is the primary picture's alpha plane. A
//! HEIF/AVIF file keeps alpha as an auxiliary image (`auxl` reference to the master, an
//! `auxC` property naming the alpha URN); this reads just the `meta` box — `pitm`, `iref`,
//! `iprp` (`ipco` + `ipma`) — to find it. Bounds are checked on every read; a damaged box
//! means "no alpha", never a failure.

use std::io::{Read, Seek, SeekFrom};

/// Largest `meta` box read (item tables of a photo are a few KiB).
const MAX_META: u64 = 4 << 20;

/// The alpha URNs of HEVC (HEIF) and AV1/MIAF (AVIF).
const ALPHA_URNS: [&[u8]; 2] = [
    b"urn:mpeg:hevc:2015:auxid:1",
    b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha",
];

/// The item id of the primary picture's alpha plane, if the file has one.
pub fn alpha_item<R: Read + Seek>(r: &mut R) -> Option<u32> {
    let meta = read_top_box(r, b"meta")?;
    // `meta` is a FullBox: version and flags first.
    let body = meta.get(4..)?;
    let mut primary = None;
    let mut auxl: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut props: Vec<Vec<u8>> = Vec::new();
    let mut assoc: Vec<(u32, Vec<u16>)> = Vec::new();
    for (kind, b) in boxes(body) {
        match &kind {
            b"pitm" => primary = pitm(b),
            b"iref" => auxl = iref(b, b"auxl"),
            b"iprp" => {
                for (k, inner) in boxes(b) {
                    match &k {
                        b"ipco" => {
                            props = boxes(inner).map(|(k, v)| [&k[..], v].concat()).collect()
                        }
                        b"ipma" => assoc = ipma(inner),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let primary = primary?;
    auxl.into_iter()
        .filter(|(_, to)| to.contains(&primary))
        .map(|(from, _)| from)
        .find(|item| {
            assoc.iter().filter(|(i, _)| i == item).any(|(_, idx)| {
                idx.iter().any(|&p| {
                    props
                        .get(usize::from(p).wrapping_sub(1))
                        .is_some_and(|b| is_alpha_auxc(b))
                })
            })
        })
}

/// The body of the first top-level box of `kind`.
fn read_top_box<R: Read + Seek>(r: &mut R, kind: &[u8; 4]) -> Option<Vec<u8>> {
    r.seek(SeekFrom::Start(0)).ok()?;
    for _ in 0..64 {
        let mut h = [0u8; 8];
        r.read_exact(&mut h).ok()?;
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let (size, header) = match size32 {
            1 => {
                let mut l = [0u8; 8];
                r.read_exact(&mut l).ok()?;
                (u64::from_be_bytes(l), 16u64)
            }
            0 => return None,
            s => (u64::from(s), 8u64),
        };
        let len = size.checked_sub(header)?;
        if &h[4..8] == kind {
            if len > MAX_META {
                return None;
            }
            let mut body = vec![0u8; len as usize];
            r.read_exact(&mut body).ok()?;
            return Some(body);
        }
        r.seek(SeekFrom::Current(i64::try_from(len).ok()?)).ok()?;
    }
    None
}

/// The boxes in `data`, as (type, body); stops at the first malformed one.
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let h = data.get(pos..pos + 8)?;
        let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = [h[4], h[5], h[6], h[7]];
        if size < 8 {
            return None;
        }
        let body = data.get(pos + 8..pos + size)?;
        pos += size;
        Some((kind, body))
    })
}

fn be(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    Some(s.iter().fold(0u32, |v, &x| (v << 8) | u32::from(x)))
}

fn pitm(b: &[u8]) -> Option<u32> {
    let version = *b.first()?;
    be(b, 4, if version == 0 { 2 } else { 4 })
}

/// `iref` entries of `kind`: (from item, to items).
fn iref(b: &[u8], kind: &[u8; 4]) -> Vec<(u32, Vec<u32>)> {
    let Some(&version) = b.first() else {
        return Vec::new();
    };
    let w = if version == 0 { 2 } else { 4 };
    let mut out = Vec::new();
    for (k, e) in boxes(b.get(4..).unwrap_or(&[])) {
        if &k != kind {
            continue;
        }
        let (Some(from), Some(n)) = (be(e, 0, w), be(e, w, 2)) else {
            continue;
        };
        let to = (0..n as usize)
            .map_while(|i| be(e, w + 2 + i * w, w))
            .collect();
        out.push((from, to));
    }
    out
}

/// `ipma`: (item, property indices, 1-based).
fn ipma(b: &[u8]) -> Vec<(u32, Vec<u16>)> {
    let (Some(&version), Some(flags)) = (b.first(), be(b, 1, 3)) else {
        return Vec::new();
    };
    let Some(count) = be(b, 4, 4) else {
        return Vec::new();
    };
    let (idw, wide) = (if version < 1 { 2 } else { 4 }, flags & 1 == 1);
    let mut pos = 8;
    let mut out = Vec::new();
    for _ in 0..count.min(1 << 16) {
        let (Some(item), Some(n)) = (be(b, pos, idw), be(b, pos + idw, 1)) else {
            break;
        };
        pos += idw + 1;
        let mut idx = Vec::new();
        for _ in 0..n {
            let v = if wide {
                let v = be(b, pos, 2).map(|v| (v & 0x7fff) as u16);
                pos += 2;
                v
            } else {
                let v = be(b, pos, 1).map(|v| (v & 0x7f) as u16);
                pos += 1;
                v
            };
            match v {
                Some(v) => idx.push(v),
                None => return out,
            }
        }
        out.push((item, idx));
    }
    out
}

/// An `auxC` property (type + FullBox header + NUL-terminated URN) naming alpha.
fn is_alpha_auxc(b: &[u8]) -> bool {
    if b.get(..4) != Some(b"auxC") {
        return false;
    }
    let urn = b.get(8..).unwrap_or(&[]);
    let urn = urn.split(|&c| c == 0).next().unwrap_or(&[]);
    ALPHA_URNS.contains(&urn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn finds_the_alpha_item_of_the_primary_picture() {
        let pitm = bx(b"pitm", &[0, 0, 0, 0, 0, 1]);
        // auxl: item 2 → item 1.
        let iref = bx(
            b"iref",
            &[&[0u8, 0, 0, 0][..], &bx(b"auxl", &[0, 2, 0, 1, 0, 1])].concat(),
        );
        let auxc = bx(b"auxC", b"\0\0\0\0urn:mpeg:hevc:2015:auxid:1\0");
        let ispe = bx(b"ispe", &[0; 12]);
        let ipco = bx(b"ipco", &[ispe, auxc].concat());
        // item 1 → property 1; item 2 → properties 1 and 2.
        let ipma = bx(
            b"ipma",
            &[0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 1, 0x81, 0, 2, 2, 0x81, 0x82],
        );
        let iprp = bx(b"iprp", &[ipco, ipma].concat());
        let meta = bx(
            b"meta",
            &[&[0u8, 0, 0, 0][..], &pitm, &iref, &iprp].concat(),
        );
        let file = [bx(b"ftyp", b"heic\0\0\0\0mif1heic"), meta].concat();
        assert_eq!(alpha_item(&mut std::io::Cursor::new(&file)), Some(2));
        // No auxC: no alpha.
        let plain = file.clone();
        let cut = plain.len() - 40;
        assert_eq!(alpha_item(&mut std::io::Cursor::new(&plain[..cut])), None);
    }
}
