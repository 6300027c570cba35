//! Where things live in a registry, relative to its root: `NAME/VERSION/plugin.wasm`, then
//! `NAME/VERSION/plugin.toml` (written last: its presence commits the version), and
//! `NAME/channels/CHANNEL`, a small text file holding a version. Any other key is not part of
//! the layout and is ignored.

use crate::plugin::descriptor::valid_name;
use semver::Version;

/// The component of a version.
pub const WASM: &str = "plugin.wasm";
/// The manifest of a version (the commit point).
pub const TOML: &str = "plugin.toml";
/// The directory of a plugin's channels.
pub const CHANNELS: &str = "channels";

/// Largest `plugin.toml` fetched, in bytes.
pub const MAX_TOML_BYTES: u64 = 256 * 1024;
/// Largest channel file fetched, in bytes.
pub const MAX_CHANNEL_BYTES: u64 = 1024;

/// `NAME/VERSION/plugin.wasm`.
pub fn wasm_key(name: &str, version: &Version) -> String {
    format!("{name}/{version}/{WASM}")
}

/// `NAME/VERSION/plugin.toml`.
pub fn toml_key(name: &str, version: &Version) -> String {
    format!("{name}/{version}/{TOML}")
}

/// `NAME/channels/CHANNEL`.
pub fn channel_key(name: &str, channel: &str) -> String {
    format!("{name}/{CHANNELS}/{channel}")
}

/// A key of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `NAME/VERSION/plugin.wasm`.
    Wasm(String, Version),
    /// `NAME/VERSION/plugin.toml`.
    Toml(String, Version),
    /// `NAME/channels/CHANNEL`.
    Channel(String, String),
}

/// What `key` is: `None` when it is not shaped like the layout at all (ignored silently),
/// `Some(Err(reason))` when it is but a part is invalid (worth a warning).
pub fn parse(key: &str) -> Option<Result<Key, String>> {
    let parts: Vec<&str> = key.split('/').collect();
    let [name, middle, last] = parts[..] else {
        return None;
    };
    let bad_name = || Err(format!("{key}: {name:?} is not a plugin name"));
    if middle == CHANNELS {
        if !valid_name(name) {
            return Some(bad_name());
        }
        if !valid_name(last) {
            return Some(Err(format!(
                "{key}: {last:?} is not a channel name (a-z, 0-9, '-', starting with a letter)"
            )));
        }
        return Some(Ok(Key::Channel(name.into(), last.into())));
    }
    if last != WASM && last != TOML {
        return None;
    }
    if !valid_name(name) {
        return Some(bad_name());
    }
    let version = match Version::parse(middle) {
        // One spelling per version, so two keys never name the same one.
        Ok(v) if v.to_string() == middle => v,
        _ => {
            return Some(Err(format!(
                "{key}: {middle:?} is not a semantic version (e.g. 1.2.0)"
            )));
        }
    };
    Some(Ok(if last == WASM {
        Key::Wasm(name.into(), version)
    } else {
        Key::Toml(name.into(), version)
    }))
}

/// A channel file's contents: one version, surrounding whitespace ignored.
pub fn parse_channel(bytes: &[u8]) -> Result<Version, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let text = text.trim();
    Version::parse(text).map_err(|e| format!("{text:?} is not a version: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("version")
    }

    #[test]
    fn keys_round_trip_and_strays_are_told_apart() {
        assert_eq!(
            parse(&wasm_key("exif", &v("1.2.0"))),
            Some(Ok(Key::Wasm("exif".into(), v("1.2.0"))))
        );
        assert_eq!(
            parse(&toml_key("exif", &v("1.2.0-rc.1"))),
            Some(Ok(Key::Toml("exif".into(), v("1.2.0-rc.1"))))
        );
        assert_eq!(
            parse(&channel_key("exif", "stable")),
            Some(Ok(Key::Channel("exif".into(), "stable".into())))
        );
        for ignored in ["README.md", "exif/1.0.0/notes.txt", "a/b/c/d", "exif/1.0.0"] {
            assert_eq!(parse(ignored), None, "{ignored}");
        }
        for bad in [
            "Exif/1.0.0/plugin.wasm",
            "exif/1.0/plugin.toml",
            "exif/01.0.0/plugin.toml",
            "exif/channels/Stable",
        ] {
            assert!(matches!(parse(bad), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn channel_files_hold_one_version() {
        assert_eq!(parse_channel(b"1.1.0\n"), Ok(v("1.1.0")));
        assert!(parse_channel(b"^1").is_err());
        assert!(parse_channel(b"\xff").is_err());
    }
}
