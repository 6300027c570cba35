//! EXIF blocks (the TIFF structure inside a JPEG's APP1, a PNG's `eXIf`, a WebP's `EXIF`),
//! read with `kamadak-exif`. Only what the engine acts on is taken: the orientation. A damaged
//! block (a bad IFD offset, a truncated entry, a loop) is never a failure: whatever parsed is
//! used, and the damage is reported so the job can note it and leave the block out of outputs.

/// What an EXIF block tells the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExifFacts {
    /// The primary image's orientation tag, when present and valid (1–8).
    pub orientation: Option<u8>,
    /// Why the block is damaged, if it is (the parse went on past the damage).
    pub damage: Option<String>,
}

/// Read the EXIF block `tiff` (starting at the TIFF header, `II*\0` or `MM\0*`).
pub fn read(tiff: &[u8]) -> ExifFacts {
    let mut reader = exif::Reader::new();
    reader.continue_on_error(true);
    let (parsed, damage) = match reader.read_raw(tiff.to_vec()) {
        Ok(parsed) => (Some(parsed), None),
        Err(exif::Error::PartialResult(partial)) => {
            let (parsed, errors) = partial.into_inner();
            let what: Vec<String> = errors.iter().take(3).map(ToString::to_string).collect();
            (Some(parsed), Some(what.join("; ")))
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let orientation = parsed.as_ref().and_then(|p| {
        p.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
            .and_then(|f| f.value.get_uint(0))
            .and_then(|v| u8::try_from(v).ok())
            .filter(|v| (1..=8).contains(v))
    });
    ExifFacts {
        orientation,
        damage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IFD0 with one entry, Orientation = `o`, little- or big-endian.
    fn block(le: bool, o: u16) -> Vec<u8> {
        if le {
            let mut b = vec![
                b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0,
            ];
            b.extend_from_slice(&o.to_le_bytes());
            b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            b
        } else {
            let mut b = vec![
                b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1,
            ];
            b.extend_from_slice(&o.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            b
        }
    }

    #[test]
    fn orientation_is_read_in_both_byte_orders() {
        assert_eq!(read(&block(true, 6)).orientation, Some(6));
        assert_eq!(read(&block(false, 8)).orientation, Some(8));
        assert_eq!(read(&block(true, 6)).damage, None);
        assert_eq!(read(&block(true, 9)).orientation, None, "out of range");
    }

    #[test]
    fn damage_is_reported_never_fatal() {
        // Cut inside the entry: nothing to read, but no panic and no error either.
        let cut = read(&block(true, 6)[..12]);
        assert_eq!(cut.orientation, None);
        assert!(cut.damage.is_some());
        // A second IFD pointer that loops back to IFD0, and an entry whose value points
        // past the end: the orientation before the damage is still read.
        let mut looped = vec![b'I', b'I', 42, 0, 8, 0, 0, 0, 2, 0];
        looped.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 3, 0, 0, 0]);
        looped.extend_from_slice(&[0x0F, 0x01, 2, 0, 200, 0, 0, 0, 0xF0, 0xFF, 0, 0]);
        looped.extend_from_slice(&8u32.to_le_bytes());
        let f = read(&looped);
        assert_eq!(f.orientation, Some(3));
        assert!(f.damage.is_some(), "{f:?}");
        // Garbage.
        let g = read(b"not a tiff header at all");
        assert_eq!(g.orientation, None);
        assert!(g.damage.is_some());
    }
}
