//! Recognising what the isolated decoder reads, from a source's first bytes: video
//! containers (MP4, QuickTime MOV — with or without an `ftyp` —, Matroska, WebM, MPEG-TS,
//! AVI) and the still formats that live in ISO BMFF (HEIF/HEIC, AVIF). The brands decide
//! between a movie and a picture: `heic`, `mif1`, `avif` … are pictures even when they carry
//! an image sequence too.

/// A container recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// ISO BMFF movie (`ftyp` with an MP4 brand).
    Mp4,
    /// QuickTime movie (`ftyp qt  `, or an old file starting with `moov`/`mdat`/`wide`…).
    Mov,
    /// Matroska (`.mkv`).
    Matroska,
    /// WebM (Matroska with the `webm` doctype).
    Webm,
    /// MPEG transport stream (188-byte packets).
    MpegTs,
    /// AVI (RIFF).
    Avi,
    /// HEIF/HEIC picture (ISO BMFF with a HEIF brand).
    Heif,
    /// AVIF picture.
    Avif,
}

impl Container {
    /// Lower-case name for manifests.
    pub fn name(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mov => "mov",
            Container::Matroska => "mkv",
            Container::Webm => "webm",
            Container::MpegTs => "ts",
            Container::Avi => "avi",
            Container::Heif => "heif",
            Container::Avif => "avif",
        }
    }

    /// A picture, not a movie.
    pub fn is_still(self) -> bool {
        matches!(self, Container::Heif | Container::Avif)
    }
}

/// How many leading bytes [`sniff`] wants (three MPEG-TS packets).
pub const HEAD: usize = 3 * 188 + 4;

/// The container, from the first bytes of a file (up to [`HEAD`]).
pub fn sniff(head: &[u8]) -> Option<Container> {
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some(iso_bmff(head));
    }
    if head.len() >= 8
        && matches!(
            &head[4..8],
            b"moov" | b"mdat" | b"wide" | b"free" | b"skip" | b"pnot"
        )
    {
        return Some(Container::Mov);
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        let webm = head.windows(4).take(64).any(|w| w == b"webm");
        return Some(if webm {
            Container::Webm
        } else {
            Container::Matroska
        });
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"AVI " {
        return Some(Container::Avi);
    }
    if head.len() > 2 * 188 && head[0] == 0x47 && head[188] == 0x47 && head[376] == 0x47 {
        return Some(Container::MpegTs);
    }
    None
}

/// Movie or picture, from the major and compatible brands of an `ftyp` box.
fn iso_bmff(head: &[u8]) -> Container {
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let end = size.clamp(16, head.len());
    let major = &head[8..12];
    let compatible: Vec<&[u8]> = head[16.min(end)..end].chunks_exact(4).collect();
    let brands = || std::iter::once(major).chain(compatible.iter().copied());
    let is = |set: &[&[u8; 4]]| set.iter().any(|b| major == &b[..]);
    let has = |set: &[&[u8; 4]]| brands().any(|b| set.iter().any(|s| b == &s[..]));
    if is(&[b"avif", b"avis"]) || (is(&[b"mif1", b"msf1"]) && has(&[b"avif", b"avis"])) {
        Container::Avif
    } else if is(&[
        b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"mif2",
    ]) {
        Container::Heif
    } else if is(&[b"qt  "]) {
        Container::Mov
    } else {
        Container::Mp4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compat: &[&[u8; 4]]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(16 + 4 * compat.len() as u32).to_be_bytes());
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0, 0, 0, 0]);
        for c in compat {
            b.extend_from_slice(*c);
        }
        b
    }

    #[test]
    fn brands_tell_movies_from_pictures() {
        assert_eq!(
            sniff(&ftyp(b"isom", &[b"isom", b"avc1"])),
            Some(Container::Mp4)
        );
        assert_eq!(sniff(&ftyp(b"qt  ", &[b"qt  "])), Some(Container::Mov));
        assert_eq!(
            sniff(&ftyp(b"heic", &[b"mif1", b"heic"])),
            Some(Container::Heif)
        );
        assert_eq!(
            sniff(&ftyp(b"mif1", &[b"mif1", b"heic"])),
            Some(Container::Heif)
        );
        assert_eq!(
            sniff(&ftyp(b"avif", &[b"mif1", b"avif"])),
            Some(Container::Avif)
        );
        assert_eq!(
            sniff(&ftyp(b"mif1", &[b"mif1", b"avif", b"miaf"])),
            Some(Container::Avif)
        );
        assert_eq!(sniff(b"\0\0\0\x08wide\0\0\0\x10mdat"), Some(Container::Mov));
    }

    #[test]
    fn ebml_riff_and_transport_streams() {
        let mut mkv = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x88];
        mkv.extend_from_slice(b"matroska");
        assert_eq!(sniff(&mkv), Some(Container::Matroska));
        let mut webm = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x84];
        webm.extend_from_slice(b"webm");
        assert_eq!(sniff(&webm), Some(Container::Webm));
        assert_eq!(sniff(b"RIFF\x10\0\0\0AVI LIST"), Some(Container::Avi));
        let mut ts = vec![0u8; 3 * 188];
        for i in 0..3 {
            ts[i * 188] = 0x47;
        }
        assert_eq!(sniff(&ts), Some(Container::MpegTs));
        assert_eq!(sniff(b"GIF89a garbage"), None);
    }
}
